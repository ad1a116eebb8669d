"""What the steps of a run share: the run's state, CUDA checks, rates, the ONNX sessions."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gonka_cli import __version__
from gonka_cli.bench import kernels, share
from gonka_cli.bench.devices import BenchDevice
from gonka_cli.bench.profiles import BenchConfig
from gonka_cli.bench.results import (
    BenchResult,
    CorrectnessResult,
    InferenceResult,
    KernelResult,
    PocResult,
    ReplaySpeed,
)
from gonka_cli.errors import DeviceUnavailable

if TYPE_CHECKING:
    import torch

    from gonka_cli.compute.models import GonkaModel

__all__ = [
    "RunState",
    "Skip",
    "check_cuda",
    "cpu_gflops",
    "cuda_errors",
    "device_gflops",
    "mark_used_by_mine",
    "onnx_session",
    "torch_device",
]


@dataclass
class RunState:
    config: BenchConfig
    devices: list[BenchDevice]
    started: float
    created_at: str
    software: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    kernels: list[KernelResult] = field(default_factory=list)
    poc: list[PocResult] = field(default_factory=list)
    inference: list[InferenceResult] = field(default_factory=list)
    replay: list[ReplaySpeed] = field(default_factory=list)
    correctness: list[CorrectnessResult] = field(default_factory=list)
    share: share.ShareEstimate | None = None
    #: (model, device id) -> why this pair is skipped; absent when it runs.
    skip: dict[tuple[str, str], str] = field(default_factory=dict)
    models: dict[tuple[str, str], GonkaModel] = field(default_factory=dict)
    onnx: dict[tuple[str, str], tuple[Any, str]] = field(default_factory=dict)
    references: dict[str, list[bytes]] = field(default_factory=dict)
    matmul_gflops: dict[str, float] = field(default_factory=dict)
    cpu_gflops: float | None = None

    def result(self, complete: bool) -> BenchResult:
        poc_rows = mark_used_by_mine(self.poc)
        return BenchResult(
            gonka_version=__version__,
            created_at=self.created_at,
            duration_s=time.perf_counter() - self.started,
            quick=self.config.quick,
            complete=complete,
            software=self.software,
            devices=tuple(d.to_dict() for d in self.devices),
            kernels=tuple(self.kernels),
            poc=tuple(poc_rows),
            inference=tuple(self.inference),
            replay=tuple(self.replay),
            correctness=tuple(self.correctness),
            share=self.share,
            notes=tuple(self.notes),
        )


def mark_used_by_mine(rows: Sequence[PocResult]) -> list[PocResult]:
    """Per device and model, the faster measured backend is the one `gonka mine` uses."""
    best: dict[tuple[str, str], PocResult] = {}
    for row in rows:
        if row.status != "ok" or row.nonces_per_second is None:
            continue
        key = (row.device, row.model)
        current = best.get(key)
        if current is None or row.nonces_per_second > (current.nonces_per_second or 0.0):
            best[key] = row
    chosen = {id(r) for r in best.values()}
    return [dataclasses.replace(r, used_by_mine=id(r) in chosen) for r in rows]


class Skip(Exception):
    """A step that cannot run here; the message is the reason recorded in its rows."""


def torch_device(device: BenchDevice) -> torch.device:
    import torch

    return torch.device(device.torch_device)


def check_cuda(device: BenchDevice) -> None:
    """A tiny kernel on the GPU: a broken CUDA fails here, in one line, not mid-run."""
    import torch

    from gonka_cli.compute.models import resolve_device

    resolve_device(device.torch_device)
    try:
        value = torch.ones(16, device=device.torch_device).sum().item()
    except RuntimeError as exc:
        raise DeviceUnavailable(
            f"{device.id} ({device.name}) failed a test kernel: {' '.join(str(exc).split())[:200]}"
            "; check the driver with nvidia-smi"
        ) from None
    if value != 16:
        raise DeviceUnavailable(f"{device.id} ({device.name}) computed 1 x 16 = {value}")


def cuda_errors(fn: Callable[[], None], device: BenchDevice) -> None:
    """Run a step; a CUDA runtime error (not out-of-memory) is the device failing."""
    if device.kind != "gpu":
        fn()
        return
    try:
        fn()
    except RuntimeError as exc:
        text = " ".join(str(exc).split())
        if "CUDA" not in text and "cuda" not in text:
            raise
        raise DeviceUnavailable(
            f"{device.id} ({device.name}) failed: {text[:200]}; check the driver with nvidia-smi"
        ) from None


def device_gflops(run: RunState, device: BenchDevice) -> float:
    """The matmul rate PoC runs at on `device` (measured, else a conservative guess)."""
    key = f"{device.id}/{'bf16' if device.kind == 'gpu' else 'fp32'}"
    if key in run.matmul_gflops:
        return run.matmul_gflops[key]
    if device.kind == "gpu":
        peak = device.peaks.bf16_tflops if device.peaks else 50.0
        return peak * 1000 * 0.5
    return cpu_gflops(run)


def cpu_gflops(run: RunState) -> float:
    """The CPU's fp32 matmul GFLOP/s: from the kernels when measured, else measured now."""
    if "cpu/fp32" in run.matmul_gflops:
        return run.matmul_gflops["cpu/fp32"]
    if run.cpu_gflops is None:
        import torch

        rate = kernels.matmul_rate(torch.device("cpu"), "fp32", 512, reps=3, warmup=1)
        run.cpu_gflops = rate.median * 1e-9
    return run.cpu_gflops


def onnx_session(run: RunState, name: str, device: BenchDevice) -> tuple[Any, str]:
    """An onnxruntime model on `device` and the execution provider its session really uses.

    The first use exports the model to ONNX (cached on disk). On a GPU the session refuses a
    CUDA provider that would silently run on the CPU (BackendUnavailable).
    """
    from gonka_cli.compute.onnx_backend import OnnxModel

    key = (name, device.id)
    if key not in run.onnx:
        onnx_device = "cpu" if device.kind == "cpu" else device.torch_device
        model = OnnxModel(name, onnx_device)
        providers = model.providers
        run.onnx[key] = (model, providers[0] if providers else "unknown")
    return run.onnx[key]
