"""Kernel benchmarks: matmul FLOP/s and memory bandwidth, timed the way they should be.

Every figure is the median of `reps` timed repetitions after `warmup` untimed ones, with
its spread ((max - min) / median). A repetition runs the operation `inner` times back to back
(chosen so a repetition lasts about `TARGET_REP_S`) and counts the mean.

- On a GPU the time comes from CUDA events recorded on the device's stream around the
  repetition (no host round trip in the measurement); operands are preallocated and
  matmuls write into a preallocated output, so the allocator is never timed.
- TF32 is switched on only for the tf32 matmul (`torch.backends.cuda.matmul.allow_tf32`) and
  the previous setting is restored; fp32 is measured with TF32 off, on the CUDA cores.
- Memory bandwidth is a device-to-device copy of a large buffer, counted as 2 x its size
  (one read, one write), as STREAM's copy does.
- Host<->device bandwidth copies between the GPU and pinned (page-locked) host memory.
- On the CPU, `time.perf_counter` around the repetition.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gonka_cli.errors import InvalidComputeInput

if TYPE_CHECKING:
    import torch

__all__ = [
    "Measurement",
    "copy_bandwidth",
    "host_device_bandwidth",
    "matmul_rate",
    "summarize",
    "time_reps",
]

#: A repetition lasts about this long (several kernels back to back on a GPU).
TARGET_REP_S = 0.02
MAX_INNER = 200

MATMUL_DTYPES = ("fp32", "tf32", "fp16", "bf16")


@dataclass(frozen=True)
class Measurement:
    """The median of several timed repetitions of a rate, with its range."""

    median: float
    low: float
    high: float
    reps: int

    @property
    def spread_percent(self) -> float:
        """(max - min) / median, in percent: how steady the repetitions were."""
        return 0.0 if self.median == 0 else 100.0 * (self.high - self.low) / self.median

    def scaled(self, factor: float) -> Measurement:
        return Measurement(self.median * factor, self.low * factor, self.high * factor, self.reps)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["spread_percent"] = round(self.spread_percent, 2)
        return data


def summarize(rates: Sequence[float]) -> Measurement:
    """Median, min and max of rates from timed repetitions."""
    if not rates:
        raise InvalidComputeInput("no repetitions to summarize")
    return Measurement(statistics.median(rates), min(rates), max(rates), len(rates))


def _is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def _sync(device: torch.device) -> None:
    import torch

    if _is_cuda(device):
        torch.cuda.synchronize(device)


def time_reps(
    fn: Callable[[], Any],
    device: torch.device,
    *,
    reps: int,
    warmup: int = 2,
    inner: int | None = None,
) -> list[float]:
    """Seconds per call of `fn`, one value per timed repetition.

    `inner` calls per repetition; None picks it from one timed call after the warm-up so a
    repetition lasts about `TARGET_REP_S`.
    """
    import torch

    if reps < 1:
        raise InvalidComputeInput("reps must be >= 1")
    for _ in range(warmup):
        fn()
    _sync(device)
    if inner is None:
        started = time.perf_counter()
        fn()
        _sync(device)
        once = max(time.perf_counter() - started, 1e-7)
        inner = max(1, min(MAX_INNER, math.ceil(TARGET_REP_S / once)))
    seconds: list[float] = []
    if _is_cuda(device):
        with torch.cuda.device(device):
            for _ in range(reps):
                start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                start.record()
                for _ in range(inner):
                    fn()
                end.record()
                end.synchronize()
                seconds.append(start.elapsed_time(end) / 1000.0 / inner)
    else:
        for _ in range(reps):
            started = time.perf_counter()
            for _ in range(inner):
                fn()
            seconds.append((time.perf_counter() - started) / inner)
    return seconds


class _Tf32:
    """Switch TF32 matmuls on or off for a block, restoring the previous setting."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.previous: bool | None = None

    def __enter__(self) -> None:
        import torch

        self.previous = bool(torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = self.enabled

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.previous is not None:
            torch.backends.cuda.matmul.allow_tf32 = self.previous


def matmul_rate(
    device: torch.device, dtype: str, n: int, *, reps: int, warmup: int = 2
) -> Measurement:
    """FLOP/s of an n x n x n matmul (2 n^3 FLOPs) in `dtype`: fp32, tf32, fp16 or bf16.

    On the CPU only fp32 means anything (tf32 is a GPU format; fp16/bf16 matmuls on a CPU
    measure an emulation), so only fp32 is accepted there.
    """
    import torch

    if dtype not in MATMUL_DTYPES:
        raise InvalidComputeInput(f"unknown matmul dtype {dtype!r}: one of {MATMUL_DTYPES}")
    if not _is_cuda(device) and dtype != "fp32":
        raise InvalidComputeInput(f"{dtype} matmuls are measured on GPUs only")
    torch_dtype = {
        "fp32": torch.float32,
        "tf32": torch.float32,
        "fp16": torch.float16,
        "bf16": torch.bfloat16,
    }[dtype]
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch_dtype, generator=generator)
    b = torch.randn(n, n, device=device, dtype=torch_dtype, generator=generator)
    out = torch.empty(n, n, device=device, dtype=torch_dtype)

    def step() -> None:
        torch.matmul(a, b, out=out)

    with torch.inference_mode():
        if _is_cuda(device):
            with _Tf32(dtype == "tf32"):
                seconds = time_reps(step, device, reps=reps, warmup=warmup)
        else:
            seconds = time_reps(step, device, reps=reps, warmup=warmup)
    flops = 2.0 * n**3
    return summarize([flops / s for s in seconds])


def copy_bandwidth(
    device: torch.device, size_bytes: int, *, reps: int, warmup: int = 2
) -> Measurement:
    """Bytes/s of a device-memory copy of `size_bytes` (counted as 2 x size: read + write)."""
    import torch

    count = max(1, size_bytes // 4)
    src = torch.ones(count, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    seconds = time_reps(lambda: dst.copy_(src), device, reps=reps, warmup=warmup)
    moved = 2.0 * count * 4
    return summarize([moved / s for s in seconds])


def host_device_bandwidth(
    device: torch.device, size_bytes: int, direction: str, *, reps: int, warmup: int = 2
) -> Measurement:
    """Bytes/s of a copy between pinned host memory and the GPU.

    `direction` is "host_to_device" or "device_to_host". The host buffer is page-locked
    (pinned), so the copy is one DMA transfer at the PCIe (or NVLink-C2C) link's speed.
    """
    import torch

    if not _is_cuda(device):
        raise InvalidComputeInput("host<->device bandwidth is measured on GPUs only")
    if direction not in ("host_to_device", "device_to_host"):
        raise InvalidComputeInput(f"unknown direction {direction!r}")
    host = torch.ones(size_bytes, dtype=torch.uint8, pin_memory=True)
    gpu = torch.empty(size_bytes, dtype=torch.uint8, device=device)

    def to_device() -> None:
        gpu.copy_(host, non_blocking=True)

    def to_host() -> None:
        host.copy_(gpu, non_blocking=True)

    seconds = time_reps(
        to_device if direction == "host_to_device" else to_host,
        device,
        reps=reps,
        warmup=warmup,
        inner=1 if size_bytes >= 64 << 20 else None,
    )
    return summarize([size_bytes / s for s in seconds])
