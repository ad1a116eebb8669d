"""Kernel steps: matmul per dtype, memory bandwidth, and host<->device bandwidth on GPUs."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from gonka_cli.bench import kernels, workloads
from gonka_cli.bench.devices import BenchDevice
from gonka_cli.bench.profiles import MIB, Settings, settings_for
from gonka_cli.bench.results import KernelResult
from gonka_cli.bench.steps.common import RunState, torch_device
from gonka_cli.errors import InsufficientMemory

__all__ = ["kernel_steps"]


def kernel_steps(run: RunState, device: BenchDevice) -> list[tuple[str, Callable[[], None]]]:
    s = settings_for(run.config.quick, device.kind == "gpu")
    steps: list[tuple[str, Callable[[], None]]] = []
    dtypes = kernels.MATMUL_DTYPES if device.kind == "gpu" else ("fp32",)
    for dtype in dtypes:
        steps.append(
            (
                f"{device.id}: {dtype} matmul",
                partial(_matmul_step, run, device, dtype, s),
            )
        )
    steps.append((f"{device.id}: memory bandwidth", lambda: _copy_step(run, device, s)))
    if device.kind == "gpu":
        for direction in ("host_to_device", "device_to_host"):
            steps.append(
                (
                    f"{device.id}: {direction.replace('_', ' ')} bandwidth",
                    partial(_host_copy_step, run, device, direction, s),
                )
            )
    return steps


def _percent(value: float, peak: float | None) -> float | None:
    return None if peak is None or peak <= 0 else 100.0 * value / peak


def _matmul_step(run: RunState, device: BenchDevice, dtype: str, s: Settings) -> None:
    gpu = device.kind == "gpu"
    unit, scale = ("TFLOP/s", 1e-12) if gpu else ("GFLOP/s", 1e-9)
    n = s.matmul_n
    problem = f"n={n}"
    try:
        measured = workloads.oom_as_insufficient_memory(
            lambda: kernels.matmul_rate(torch_device(device), dtype, n, reps=s.kernel_reps),
            f"a {problem} matmul",
            device.torch_device,
        ).scaled(scale)
    except InsufficientMemory as exc:
        run.kernels.append(
            KernelResult(device.id, "matmul", dtype, problem, unit, "skipped", str(exc))
        )
        return
    peak = device.peaks.matmul_peak_tflops(dtype) if device.peaks else None
    run.matmul_gflops[f"{device.id}/{dtype}"] = measured.median / scale * 1e-9
    run.kernels.append(
        KernelResult(
            device=device.id,
            kernel="matmul",
            dtype=dtype,
            problem=problem,
            unit=unit,
            median=measured.median,
            min=measured.low,
            max=measured.high,
            spread_percent=measured.spread_percent,
            reps=measured.reps,
            peak=peak,
            percent_of_peak=_percent(measured.median, peak),
            peak_source=(
                f"{device.peaks.name} datasheet, dense {dtype}" if device.peaks and peak else None
            ),
        )
    )


def _bandwidth_row(
    device: BenchDevice,
    kernel: str,
    size: int,
    measured: kernels.Measurement,
    peak: float | None,
    source: str | None,
) -> KernelResult:
    gbps = measured.scaled(1e-9)
    return KernelResult(
        device=device.id,
        kernel=kernel,
        dtype=None,
        problem=f"{size / MIB:g} MiB",
        unit="GB/s",
        median=gbps.median,
        min=gbps.low,
        max=gbps.high,
        spread_percent=gbps.spread_percent,
        reps=gbps.reps,
        peak=peak,
        percent_of_peak=_percent(gbps.median, peak),
        peak_source=source if peak else None,
    )


def _free_bytes(device: BenchDevice) -> int | None:
    import torch

    if device.kind != "gpu":
        return None
    free, _ = torch.cuda.mem_get_info(torch.device(device.torch_device))
    return int(free)


def _copy_step(run: RunState, device: BenchDevice, s: Settings) -> None:
    size = s.copy_bytes
    free = _free_bytes(device)
    if free is not None:
        size = max(16 * MIB, min(size, free // 4))
    measured = workloads.oom_as_insufficient_memory(
        lambda: kernels.copy_bandwidth(torch_device(device), size, reps=s.kernel_reps),
        "the bandwidth test",
        device.torch_device,
    )
    peaks = device.peaks
    run.kernels.append(
        _bandwidth_row(
            device,
            "memory_bandwidth",
            size,
            measured,
            peaks.memory_bandwidth_gbps if peaks else None,
            f"{peaks.name} datasheet" if peaks else None,
        )
    )


def _host_copy_step(run: RunState, device: BenchDevice, direction: str, s: Settings) -> None:
    measured = workloads.oom_as_insufficient_memory(
        lambda: kernels.host_device_bandwidth(
            torch_device(device), s.host_copy_bytes, direction, reps=s.kernel_reps
        ),
        "the host<->device test",
        device.torch_device,
    )
    run.kernels.append(
        _bandwidth_row(
            device,
            direction,
            s.host_copy_bytes,
            measured,
            device.pcie_peak_gbps,
            "the PCIe link's peak (generation x width, one direction)",
        )
    )
