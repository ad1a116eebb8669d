"""The result of `gonka bench run`: one documented object (docs/bench.md), saved and loaded.

Rows carry a `status`: "ok" (measured), "skipped" (not measured, `reason` says why: the
model does not fit, the backend is unavailable, the run was quick...) or "failed" (it ran and
went wrong, `reason` says how). The correctness rows use "PASS", "FAIL" and "SKIPPED".
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gonka_cli.bench.share import ShareEstimate
from gonka_cli.bench.tuner import SweepPoint
from gonka_cli.errors import InputError
from gonka_cli.storage import atomic_write

__all__ = [
    "RUN_SCHEMA",
    "BenchResult",
    "CorrectnessResult",
    "InferenceResult",
    "KernelResult",
    "PocResult",
    "ReplaySpeed",
    "load_result",
    "save_result",
]

RUN_SCHEMA = "gonka.bench.run/1"
_SCHEMA_FAMILY = "gonka.bench.run/"


def _clean(value: Any) -> Any:
    """Round floats for JSON (6 significant digits) and turn inf/NaN into None."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class _Row:
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _clean(dataclasses.asdict(self))  # type: ignore[call-overload]
        return data


@dataclass(frozen=True)
class KernelResult(_Row):
    """One kernel figure: the median rate in `unit`, its range and its share of the peak."""

    device: str
    kernel: str
    dtype: str | None
    problem: str
    unit: str
    status: str = "ok"
    reason: str = ""
    median: float | None = None
    min: float | None = None
    max: float | None = None
    spread_percent: float | None = None
    reps: int = 0
    peak: float | None = None
    percent_of_peak: float | None = None
    peak_source: str | None = None


@dataclass(frozen=True)
class PocResult(_Row):
    """PoC throughput of one model on one device and backend, at the tuned batch size."""

    device: str
    model: str
    backend: str
    status: str = "ok"
    reason: str = ""
    precision: str | None = None
    provider: str | None = None
    seq_len: int | None = None
    batch_size: int | None = None
    curve: tuple[SweepPoint, ...] = ()
    sweep_stopped: str | None = None
    nonces_per_second: float | None = None
    nonces_per_minute: float | None = None
    spread_percent: float | None = None
    reps: int = 0
    gflops_per_second: float | None = None
    used_by_mine: bool = False


@dataclass(frozen=True)
class InferenceResult(_Row):
    """Prefill and decode tokens per second of one model at one batch size (torch)."""

    device: str
    model: str
    batch_size: int
    status: str = "ok"
    reason: str = ""
    prompt_tokens: int | None = None
    decode_tokens: int | None = None
    prefill_tokens_per_second: float | None = None
    decode_tokens_per_second: float | None = None
    prefill_spread_percent: float | None = None
    decode_spread_percent: float | None = None
    reps: int = 0


@dataclass(frozen=True)
class ReplaySpeed(_Row):
    """Replay validation: one prefill over N generated tokens, against generating them."""

    device: str
    model: str
    status: str = "ok"
    reason: str = ""
    tokens: int | None = None
    generate_tokens_per_second: float | None = None
    replay_tokens_per_second: float | None = None
    replay_over_generate: float | None = None
    similarity: float | None = None
    passed: bool | None = None


@dataclass(frozen=True)
class CorrectnessResult(_Row):
    """The device's artifacts for fixed nonces against the CPU fp32 reference."""

    device: str
    model: str
    backend: str
    status: str
    reason: str = ""
    nonces: int = 0
    mismatches: int = 0
    worst_distance: float | None = None
    worst_nonce: int | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class BenchResult:
    """Everything one `gonka bench run` measured (see docs/bench.md for every field)."""

    gonka_version: str
    created_at: str
    duration_s: float
    quick: bool
    complete: bool
    software: dict[str, Any]
    devices: tuple[dict[str, Any], ...]
    kernels: tuple[KernelResult, ...] = ()
    poc: tuple[PocResult, ...] = ()
    inference: tuple[InferenceResult, ...] = ()
    replay: tuple[ReplaySpeed, ...] = ()
    correctness: tuple[CorrectnessResult, ...] = ()
    share: ShareEstimate | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": RUN_SCHEMA,
            "gonka_version": self.gonka_version,
            "created_at": self.created_at,
            "duration_s": round(self.duration_s, 2),
            "quick": self.quick,
            "complete": self.complete,
            "software": dict(self.software),
            "devices": [dict(d) for d in self.devices],
            "kernels": [k.to_dict() for k in self.kernels],
            "poc": [p.to_dict() for p in self.poc],
            "inference": [i.to_dict() for i in self.inference],
            "replay": [r.to_dict() for r in self.replay],
            "correctness": [c.to_dict() for c in self.correctness],
            "share": None if self.share is None else _clean(self.share.to_dict()),
            "notes": list(self.notes),
        }


def save_result(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON to `path` atomically (`storage.atomic_write`)."""
    path = path.expanduser()
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"cannot save to {path}: directory {directory} does not exist")
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise InputError(f"cannot save to {path}: {exc.strerror or exc}") from None


def load_result(path: Path) -> dict[str, Any]:
    """A saved run (`--save`), checked enough to compare: InputError says what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"{path} does not exist; save a run with gonka bench run --save FILE"
        ) from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not a saved benchmark") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError(f"{path} is not JSON{where}: not a saved benchmark") from None
    if not isinstance(data, dict) or not isinstance(data.get("schema"), str):
        raise InputError(f"{path} is not a saved benchmark (no schema field)")
    schema = data["schema"]
    if not schema.startswith(_SCHEMA_FAMILY):
        raise InputError(f"{path} holds {schema[:60]!r}, not a saved gonka bench run")
    if schema != RUN_SCHEMA:
        raise InputError(
            f"{path} is a {schema[:60]!r} result; this gonka reads {RUN_SCHEMA} (upgrade gonka)"
        )
    for key in ("devices", "kernels", "poc", "inference", "replay", "correctness"):
        rows = data.get(key)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(f"{path} is malformed: {key!r} is not a list of objects")
    if data.get("share") is not None and not isinstance(data["share"], dict):
        raise InputError(f"{path} is malformed: 'share' is not an object")
    return data
