"""The node's own recomputations: a priority queue in front of its worker threads, with a
budget of nonces per epoch.

The node recomputes PoC answers itself only when no weighted validator can (the first epochs),
when no validator answered, or to settle a dispute. At most one job per worker thread runs at a
time; the others wait here in priority order (the PoC round puts provers with weight from the
last epoch first, then by arrival), so a flood of committers without weight cannot push an
honest prover's verdict behind theirs. Each job costs its nonces from its epoch's budget; a job
that no longer fits is refused (its `refused` callback runs) rather than queued for ever.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(order=True)
class _Job:
    priority: tuple[Any, ...]
    seq: int
    epoch: int = field(compare=False)
    cost: int = field(compare=False)
    work: Callable[[], Coroutine[Any, Any, Any]] = field(compare=False)
    refused: Callable[[], None] = field(compare=False)


class Recomputer:
    """Runs queued recomputation jobs, `slots` at a time, highest priority (lowest tuple)
    first, within `budget_nonces` per epoch (0: no budget)."""

    def __init__(
        self,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        slots: int,
        budget_nonces: int,
    ) -> None:
        self._spawn = spawn
        self.slots = max(1, slots)
        self.budget_nonces = budget_nonces
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self.active = 0
        #: Nonces recomputed (or being recomputed) per epoch.
        self.spent: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._heap)

    def submit(
        self,
        epoch: int,
        cost: int,
        priority: tuple[Any, ...],
        work: Callable[[], Coroutine[Any, Any, Any]],
        refused: Callable[[], None],
    ) -> None:
        """Queue `work()` (a coroutine that runs the recomputation and records its outcome);
        `refused()` is called instead when the epoch's budget cannot pay `cost` nonces."""
        heapq.heappush(self._heap, _Job(priority, next(self._seq), epoch, cost, work, refused))
        self.pump()

    def left(self, epoch: int) -> int | None:
        """Nonces left in `epoch`'s budget (None: no budget)."""
        if self.budget_nonces <= 0:
            return None
        return max(0, self.budget_nonces - self.spent.get(epoch, 0))

    def pump(self) -> None:
        """Start queued jobs while a worker is free."""
        while self._heap and self.active < self.slots:
            job = heapq.heappop(self._heap)
            left = self.left(job.epoch)
            if left is not None and job.cost > left:
                log.info("epoch %d: recomputation budget spent, a job is refused", job.epoch)
                job.refused()
                continue
            self.spent[job.epoch] = self.spent.get(job.epoch, 0) + job.cost
            self.active += 1
            self._spawn(self._run(job))

    async def _run(self, job: _Job) -> None:
        try:
            await job.work()
        finally:
            self.active -= 1
            self.pump()

    def forget(self, before_epoch: int) -> None:
        """Drop the budgets of epochs before `before_epoch`."""
        self.spent = {e: n for e, n in self.spent.items() if e >= before_epoch}
