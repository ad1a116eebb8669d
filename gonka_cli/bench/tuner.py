"""The batch-size sweep: measure throughput at growing batch sizes, keep the knee.

`tune_batch_size(cost, candidates)` calls `cost(batch_size)` (seconds for one batch of that
size) for the candidates in increasing order and turns each into items per second. It stops
early when

- a batch does not fit (`cost` raises one of `stop_on`, InsufficientMemory by default): the
  sizes above it would not fit either;
- throughput has not improved by more than `tolerance` for `patience` sizes in a row (the
  curve has flattened or turned down);
- `budget_s` has passed since the sweep started.

The chosen size is the smallest whose throughput is within `tolerance` of the best measured:
as fast as the largest batch, with less memory and latency. Pure Python (no torch), so the
rule is tested on made-up cost curves.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gonka_cli.errors import InputError, InsufficientMemory

__all__ = ["SweepPoint", "TuneResult", "batch_candidates", "tune_batch_size"]


@dataclass(frozen=True)
class SweepPoint:
    """One batch size of the sweep: its throughput, or why it could not run."""

    batch_size: int
    seconds_per_batch: float | None
    items_per_second: float | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TuneResult:
    """The measured curve, the chosen batch size and why the sweep stopped."""

    points: tuple[SweepPoint, ...]
    batch_size: int
    items_per_second: float
    stopped: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": [p.to_dict() for p in self.points],
            "batch_size": self.batch_size,
            "items_per_second": self.items_per_second,
            "stopped": self.stopped,
        }


def batch_candidates(maximum: int, minimum: int = 1) -> list[int]:
    """Powers of two from `minimum` up to `maximum`, with `maximum` itself last."""
    if minimum < 1 or maximum < minimum:
        raise InputError(f"batch sizes must satisfy 1 <= {minimum} <= {maximum}")
    sizes = []
    size = 1
    while size < minimum:
        size *= 2
    while size < maximum:
        sizes.append(size)
        size *= 2
    sizes.append(maximum)
    return sizes


def tune_batch_size(
    cost: Callable[[int], float],
    candidates: Sequence[int],
    *,
    tolerance: float = 0.03,
    patience: int = 2,
    budget_s: float | None = None,
    stop_on: tuple[type[BaseException], ...] = (InsufficientMemory,),
    clock: Callable[[], float] = time.perf_counter,
) -> TuneResult:
    """Sweep `candidates` (increasing) with `cost(batch) -> seconds per batch`; see module doc.

    Raises the first point's error when even the smallest batch does not fit, and InputError
    for an empty or unsorted candidate list.
    """
    sizes = list(candidates)
    if not sizes or any(b < 1 for b in sizes) or sizes != sorted(set(sizes)):
        raise InputError("batch size candidates must be increasing integers >= 1")
    started = clock()
    points: list[SweepPoint] = []
    best_rate = 0.0
    flat = 0
    stopped = "swept every candidate"
    for size in sizes:
        try:
            seconds = float(cost(size))
        except stop_on as exc:
            if not points:
                raise
            points.append(SweepPoint(size, None, None, " ".join(str(exc).split())))
            stopped = f"batch {size} does not fit"
            break
        rate = size / seconds if seconds > 0 else float("inf")
        points.append(SweepPoint(size, seconds, rate))
        if rate > best_rate * (1 + tolerance):
            flat = 0
        else:
            flat += 1
        best_rate = max(best_rate, rate)
        if flat >= patience:
            stopped = f"throughput flat for {patience} sizes"
            break
        if budget_s is not None and clock() - started >= budget_s and size != sizes[-1]:
            stopped = f"time budget of {budget_s:g} s spent"
            break
    measured = [p for p in points if p.items_per_second is not None]
    best = max(p.items_per_second or 0.0 for p in measured)
    chosen = next(p for p in measured if (p.items_per_second or 0.0) >= best * (1 - tolerance))
    return TuneResult(
        points=tuple(points),
        batch_size=chosen.batch_size,
        items_per_second=chosen.items_per_second or 0.0,
        stopped=stopped,
    )
