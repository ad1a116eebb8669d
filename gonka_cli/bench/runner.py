"""`gonka bench run`: plan the measurements, run them step by step, build the result.

The run has steps (kernels per device; per model and device: PoC on torch, PoC on
onnxruntime, inference, replay, correctness; the share last). Before each step the `progress`
callback hears about it, so a CLI can draw a bar; the core itself never prints.

What goes on when something does not work:

- a model that does not fit the device (`InsufficientMemory`, or a CUDA out-of-memory error):
  its rows are "skipped" with the reason; the run goes on;
- a model that would take too long on the device (estimated from the measured matmul rate)
  is skipped when the model was not named with `models`;
- onnxruntime without a usable CUDA provider on a GPU: the onnxruntime rows are skipped;
- a GPU that torch cannot use, or a CUDA error: `DeviceUnavailable` ends the run;
- Ctrl-C: `BenchInterrupted` carries the result of the steps that finished.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import logging
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from gonka_cli import __version__
from gonka_cli.bench import correctness as checks
from gonka_cli.bench import kernels, share, tuner, workloads
from gonka_cli.bench.devices import BenchDevice, Inventory, inventory, select_devices
from gonka_cli.bench.results import (
    BenchResult,
    CorrectnessResult,
    InferenceResult,
    KernelResult,
    PocResult,
    ReplaySpeed,
)
from gonka_cli.errors import (
    BackendUnavailable,
    DeviceUnavailable,
    InputError,
    InsufficientMemory,
    InvalidComputeInput,
)

if TYPE_CHECKING:
    import torch

    from gonka_cli.compute.models import GonkaModel, ModelSpec

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "BenchConfig", "BenchInterrupted", "Progress", "run_bench"]

BACKENDS = ("torch", "onnxruntime")
QUICK_MODELS = ("gonka-tiny", "gonka-small")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure. `None` devices or models mean the defaults (see docs/bench.md)."""

    devices: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    quick: bool = False
    kernels: bool = True
    poc: bool = True
    backends: tuple[str, ...] = BACKENDS
    inference: bool = True
    correctness: bool = True
    #: Nodes to ask for the network's weight (tried in order); empty: do not ask.
    share_urls: tuple[str, ...] = ()
    #: Why no node is asked, when `share_urls` is empty.
    share_reason: str = "no node was asked (offline)"


@dataclass(frozen=True)
class Progress:
    """A step is starting (`done` False) or the run has finished (`done` True)."""

    step: int
    total: int
    description: str
    done: bool = False


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: `result` holds what was measured before it."""

    def __init__(self, result: BenchResult) -> None:
        super().__init__("interrupted")
        self.result = result


@dataclass(frozen=True)
class _Settings:
    """How hard a run measures: quick or full, on a CPU or a GPU."""

    kernel_reps: int
    matmul_n: int
    copy_bytes: int
    host_copy_bytes: int
    sweep_budget_s: float
    point_reps: int
    point_time_s: float
    final_reps: int
    final_time_s: float
    inference_batches: tuple[int, ...]
    prompt_tokens: int
    decode_tokens: int
    inference_reps: int
    replay_tokens: int
    max_s_per_nonce: float
    reference_budget_s: float


_MIB = 1 << 20


def _settings(quick: bool, gpu: bool) -> _Settings:
    if gpu:
        return _Settings(
            kernel_reps=5 if quick else 10,
            matmul_n=8192,
            copy_bytes=(512 if quick else 1024) * _MIB,
            host_copy_bytes=(128 if quick else 256) * _MIB,
            sweep_budget_s=10.0 if quick else 60.0,
            point_reps=2 if quick else 3,
            point_time_s=0.2 if quick else 0.5,
            final_reps=3 if quick else 5,
            final_time_s=0.5 if quick else 2.0,
            inference_batches=(1, 32) if quick else (1, 16, 64, 256),
            prompt_tokens=64 if quick else 128,
            decode_tokens=16 if quick else 32,
            inference_reps=2 if quick else 3,
            replay_tokens=32 if quick else 128,
            max_s_per_nonce=0.05 if quick else 1.0,
            reference_budget_s=15.0 if quick else 90.0,
        )
    return _Settings(
        kernel_reps=5 if quick else 10,
        matmul_n=1024 if quick else 2048,
        copy_bytes=(128 if quick else 256) * _MIB,
        host_copy_bytes=0,
        sweep_budget_s=4.0 if quick else 20.0,
        point_reps=2,
        point_time_s=0.2 if quick else 0.5,
        final_reps=3 if quick else 5,
        final_time_s=0.5 if quick else 2.0,
        inference_batches=(1, 8) if quick else (1, 8, 32),
        prompt_tokens=64 if quick else 128,
        decode_tokens=16 if quick else 32,
        inference_reps=2 if quick else 3,
        replay_tokens=32 if quick else 128,
        max_s_per_nonce=1.0 if quick else 2.0,
        reference_budget_s=15.0 if quick else 90.0,
    )


# --- the run's state ---------------------------------------------------------------------------


@dataclass
class _Run:
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
        poc_rows = _mark_used_by_mine(self.poc)
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


def _mark_used_by_mine(rows: Sequence[PocResult]) -> list[PocResult]:
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


def _software(inv: Inventory) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "torch": inv.torch_version,
        "torch_cuda": inv.torch_cuda_version,
        "torch_threads": inv.torch_threads,
        "onnxruntime": inv.onnxruntime_version,
        "onnxruntime_providers": list(inv.onnxruntime_providers),
        "nvidia_driver": inv.nvidia.driver_version,
        "cuda_driver": inv.nvidia.cuda_driver_version,
    }


def _torch_device(device: BenchDevice) -> torch.device:
    import torch

    return torch.device(device.torch_device)


def _check_cuda(device: BenchDevice) -> None:
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


def _cuda_errors(fn: Callable[[], None], device: BenchDevice) -> None:
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


# --- kernels -----------------------------------------------------------------------------------


def _kernel_steps(run: _Run, device: BenchDevice) -> list[tuple[str, Callable[[], None]]]:
    s = _settings(run.config.quick, device.kind == "gpu")
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


def _matmul_step(run: _Run, device: BenchDevice, dtype: str, s: _Settings) -> None:
    gpu = device.kind == "gpu"
    unit, scale = ("TFLOP/s", 1e-12) if gpu else ("GFLOP/s", 1e-9)
    n = s.matmul_n
    problem = f"n={n}"
    try:
        measured = workloads.oom_as_insufficient_memory(
            lambda: kernels.matmul_rate(_torch_device(device), dtype, n, reps=s.kernel_reps),
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
        problem=f"{size / _MIB:g} MiB",
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


def _copy_step(run: _Run, device: BenchDevice, s: _Settings) -> None:
    size = s.copy_bytes
    free = _free_bytes(device)
    if free is not None:
        size = max(16 * _MIB, min(size, free // 4))
    measured = workloads.oom_as_insufficient_memory(
        lambda: kernels.copy_bandwidth(_torch_device(device), size, reps=s.kernel_reps),
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


def _host_copy_step(run: _Run, device: BenchDevice, direction: str, s: _Settings) -> None:
    measured = workloads.oom_as_insufficient_memory(
        lambda: kernels.host_device_bandwidth(
            _torch_device(device), s.host_copy_bytes, direction, reps=s.kernel_reps
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


# --- models --------------------------------------------------------------------------------------


def _device_gflops(run: _Run, device: BenchDevice) -> float:
    """The matmul rate PoC runs at on `device` (measured, else a conservative guess)."""
    key = f"{device.id}/{'bf16' if device.kind == 'gpu' else 'fp32'}"
    if key in run.matmul_gflops:
        return run.matmul_gflops[key]
    if device.kind == "gpu":
        peak = device.peaks.bf16_tflops if device.peaks else 50.0
        return peak * 1000 * 0.5
    return _cpu_gflops(run)


def _cpu_gflops(run: _Run) -> float:
    """The CPU's fp32 matmul GFLOP/s: from the kernels when measured, else measured now."""
    if "cpu/fp32" in run.matmul_gflops:
        return run.matmul_gflops["cpu/fp32"]
    if run.cpu_gflops is None:
        import torch

        rate = kernels.matmul_rate(torch.device("cpu"), "fp32", 512, reps=3, warmup=1)
        run.cpu_gflops = rate.median * 1e-9
    return run.cpu_gflops


def _model_steps(
    run: _Run, spec: ModelSpec, named: bool, device: BenchDevice
) -> list[tuple[str, Callable[[], None]]]:
    config = run.config
    where = f"{spec.name} on {device.id}"
    steps: list[tuple[str, Callable[[], None]]] = [
        (f"{where}: building the model", lambda: _load_step(run, spec, named, device))
    ]
    if config.poc:
        for backend in config.backends:
            steps.append(
                (
                    f"{where}: PoC batch sweep on {backend}",
                    partial(_poc_step, run, spec, device, backend),
                )
            )
    if config.inference:
        steps.append((f"{where}: prefill and decode", lambda: _inference_step(run, spec, device)))
        steps.append((f"{where}: replay validation", lambda: _replay_step(run, spec, device)))
    if config.correctness:
        steps.append((f"{where}: correctness check", lambda: _correctness_step(run, spec, device)))
    return steps


def _load_step(run: _Run, spec: ModelSpec, named: bool, device: BenchDevice) -> None:
    from gonka_cli.compute.models import load_model
    from gonka_cli.compute.poc import poc_flops

    s = _settings(run.config.quick, device.kind == "gpu")
    key = (spec.name, device.id)
    if not named:
        seconds = poc_flops(spec, spec.poc_seq_len) / (_device_gflops(run, device) * 1e9 * 0.5)
        if seconds > s.max_s_per_nonce:
            kind = "quick" if run.config.quick else "full"
            run.skip[key] = (
                f"too slow for a {kind} run on this device: about {seconds:.2g} s per nonce "
                "(estimated from its matmul rate); name it with --models to measure it anyway"
            )
            return
    try:
        run.models[key] = workloads.oom_as_insufficient_memory(
            lambda: load_model(spec.name, device.torch_device),
            f"loading {spec.name}",
            device.torch_device,
        )
    except InsufficientMemory as exc:
        run.skip[key] = str(exc)


def _release(run: _Run, name: str) -> None:
    """Forget a model's copies once its steps are done (GPU memory is for the next one)."""
    import torch

    from gonka_cli.compute.models import clear_model_cache

    for key in [k for k in run.models if k[0] == name]:
        del run.models[key]
    for key in [k for k in run.onnx if k[0] == name]:
        del run.onnx[key]
    clear_model_cache()
    gc.collect()
    if torch.cuda.is_available() and any(d.kind == "gpu" for d in run.devices):
        torch.cuda.empty_cache()


def _poc_step(run: _Run, spec: ModelSpec, device: BenchDevice, backend: str) -> None:
    from gonka_cli.compute import poc

    key = (spec.name, device.id)
    reason = run.skip.get(key)
    if reason is not None:
        run.poc.append(PocResult(device.id, spec.name, backend, "skipped", reason))
        return
    model = run.models[key]
    s = _settings(run.config.quick, device.kind == "gpu")
    provider = None
    if backend == "torch":
        compute = workloads.torch_poc(model)
        precision = str(model.dtype).removeprefix("torch.").replace("bfloat16", "bf16")
        precision = precision.replace("float32", "fp32").replace("float16", "fp16")
        cap = poc.choose_batch_size(model, spec.poc_seq_len)
    else:
        try:
            onnx_model, provider = _onnx_model(run, spec.name, device)
        except (BackendUnavailable, InsufficientMemory) as exc:
            run.poc.append(PocResult(device.id, spec.name, backend, "skipped", str(exc)))
            return
        compute = workloads.onnx_poc(onnx_model)
        precision = "fp32"
        cap = poc.choose_batch_size(model, spec.poc_seq_len)

    def cost(batch: int) -> float:
        import statistics

        times = workloads.poc_batch_seconds(
            compute, batch, device.torch_device, reps=s.point_reps, min_time_s=s.point_time_s
        )
        return statistics.median(times)

    try:
        tuned = tuner.tune_batch_size(cost, tuner.batch_candidates(cap), budget_s=s.sweep_budget_s)
        final = workloads.poc_batch_seconds(
            compute,
            tuned.batch_size,
            device.torch_device,
            reps=s.final_reps,
            min_time_s=s.final_time_s,
        )
    except InsufficientMemory as exc:
        run.poc.append(PocResult(device.id, spec.name, backend, "skipped", str(exc)))
        return
    except Exception as exc:
        if not workloads.is_onnxruntime_error(exc):
            raise
        reason = f"onnxruntime failed: {' '.join(str(exc).split())[:300]}"
        run.poc.append(PocResult(device.id, spec.name, backend, "failed", reason))
        return
    rates = kernels.summarize([tuned.batch_size / t for t in final])
    flops = poc.poc_flops(spec, spec.poc_seq_len)
    run.poc.append(
        PocResult(
            device=device.id,
            model=spec.name,
            backend=backend,
            precision=precision,
            provider=provider,
            seq_len=spec.poc_seq_len,
            batch_size=tuned.batch_size,
            curve=tuned.points,
            sweep_stopped=tuned.stopped,
            nonces_per_second=rates.median,
            nonces_per_minute=rates.median * 60,
            spread_percent=rates.spread_percent,
            reps=rates.reps,
            gflops_per_second=rates.median * flops / 1e9,
        )
    )


def _onnx_model(run: _Run, name: str, device: BenchDevice) -> tuple[Any, str]:
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


def _inference_step(run: _Run, spec: ModelSpec, device: BenchDevice) -> None:
    key = (spec.name, device.id)
    s = _settings(run.config.quick, device.kind == "gpu")
    reason = run.skip.get(key)
    for batch in s.inference_batches:
        if reason is not None:
            run.inference.append(InferenceResult(device.id, spec.name, batch, "skipped", reason))
            continue
        prompt = min(s.prompt_tokens, spec.max_seq_len // 2)
        decode = min(s.decode_tokens, spec.max_seq_len - prompt)
        try:
            prefill, decoded = workloads.inference_rates(
                run.models[key], batch, prompt, decode, reps=s.inference_reps
            )
        except InsufficientMemory as exc:
            run.inference.append(InferenceResult(device.id, spec.name, batch, "skipped", str(exc)))
            reason = f"a smaller batch already ran out of memory: {exc}"
            continue
        run.inference.append(
            InferenceResult(
                device=device.id,
                model=spec.name,
                batch_size=batch,
                prompt_tokens=prompt,
                decode_tokens=decode,
                prefill_tokens_per_second=prefill.median,
                decode_tokens_per_second=decoded.median,
                prefill_spread_percent=prefill.spread_percent,
                decode_spread_percent=decoded.spread_percent,
                reps=prefill.reps,
            )
        )


def _replay_step(run: _Run, spec: ModelSpec, device: BenchDevice) -> None:
    key = (spec.name, device.id)
    reason = run.skip.get(key)
    if reason is not None:
        run.replay.append(ReplaySpeed(device.id, spec.name, "skipped", reason))
        return
    s = _settings(run.config.quick, device.kind == "gpu")
    tokens = min(s.replay_tokens, spec.max_seq_len - 64)
    try:
        measured = workloads.oom_as_insufficient_memory(
            lambda: workloads.replay_speed(run.models[key], tokens, reps=s.inference_reps),
            "replay",
            device.torch_device,
        )
    except InsufficientMemory as exc:
        run.replay.append(ReplaySpeed(device.id, spec.name, "skipped", str(exc)))
        return
    run.replay.append(ReplaySpeed(device=device.id, model=spec.name, **measured))


def _reference(run: _Run, spec: ModelSpec, nonces: Sequence[int]) -> list[bytes]:
    """The CPU fp32 artifacts of `nonces` (computed once per model and run)."""
    from gonka_cli.compute import poc
    from gonka_cli.compute.models import load_model

    cached = run.references.get(spec.name)
    if cached is None or len(cached) < len(nonces):
        model = load_model(spec.name, "cpu", "fp32")
        cached = poc.compute_artifacts(
            model, checks.BLOCK_HASH, checks.PUBLIC_KEY, list(nonces), batch_size=len(nonces)
        )
        run.references[spec.name] = cached
    return cached[: len(nonces)]


def _correctness_nonces(run: _Run, spec: ModelSpec, device: BenchDevice) -> list[int]:
    """The fixed nonces whose CPU fp32 reference fits the time budget (at least 2)."""
    from gonka_cli.compute.poc import poc_flops

    s = _settings(run.config.quick, device.kind == "gpu")
    per_nonce_s = poc_flops(spec, spec.poc_seq_len) / (_cpu_gflops(run) * 1e9 * 0.5)
    count = min(len(checks.FIXED_NONCES), int(s.reference_budget_s / per_nonce_s))
    if count < 2:
        raise _Skip(
            f"the CPU fp32 reference would take about {2 * per_nonce_s:.0f} s for 2 nonces "
            f"(budget {s.reference_budget_s:g} s)"
        )
    return list(checks.FIXED_NONCES[:count])


class _Skip(Exception):
    """A step that cannot run here; the message is the reason recorded in its rows."""


def _candidate(
    run: _Run, spec: ModelSpec, device: BenchDevice, backend: str, nonces: list[int]
) -> list[bytes]:
    key = (spec.name, device.id)
    if backend == "torch":
        return list(workloads.torch_poc(run.models[key])(nonces))
    onnx_model, _ = _onnx_model(run, spec.name, device)
    return list(workloads.onnx_poc(onnx_model)(nonces))


def _correctness_step(run: _Run, spec: ModelSpec, device: BenchDevice) -> None:
    from gonka_cli.compute.validation import PocParams

    threshold = PocParams().dist_threshold

    def row(backend: str, status: str, reason: str, **fields: Any) -> None:
        run.correctness.append(
            CorrectnessResult(
                device.id, spec.name, backend, status, reason, threshold=threshold, **fields
            )
        )

    try:
        reason = run.skip.get((spec.name, device.id))
        if reason is not None:
            raise _Skip(reason)
        nonces = _correctness_nonces(run, spec, device)
    except _Skip as exc:
        for backend in run.config.backends:
            row(backend, "SKIPPED", str(exc))
        return
    try:
        reference = _reference(run, spec, nonces)
    except InsufficientMemory as exc:
        for backend in run.config.backends:
            row(backend, "SKIPPED", f"no room for the CPU fp32 reference: {exc}")
        return
    for backend in run.config.backends:
        try:
            candidate = _candidate(run, spec, device, backend, nonces)
        except (BackendUnavailable, InsufficientMemory) as exc:
            row(backend, "SKIPPED", str(exc))
            continue
        except InvalidComputeInput as exc:
            # artifacts_from_hidden refuses NaN or infinite hidden states: a broken device.
            row(
                backend,
                "FAIL",
                f"the device's computation failed: {exc}",
                nonces=len(nonces),
                mismatches=len(nonces),
            )
            continue
        except Exception as exc:
            if not workloads.is_onnxruntime_error(exc):
                raise
            row(backend, "SKIPPED", f"onnxruntime failed: {' '.join(str(exc).split())[:300]}")
            continue
        check = checks.compare_artifacts(nonces, candidate, reference, threshold)
        row(
            backend,
            check.status,
            check.reason,
            nonces=check.nonces,
            mismatches=check.mismatches,
            worst_distance=check.worst_distance,
            worst_nonce=check.worst_nonce,
        )


# --- the share ------------------------------------------------------------------------------------


def _share_step(run: _Run, order: Sequence[str]) -> None:
    """The largest model measured is the one mined; its devices' best rates add up.

    The nodes are asked only now, after the measurements, so the requests (and their TLS
    set-up, which holds the interpreter) cannot disturb them.
    """
    measured = [r for r in _mark_used_by_mine(run.poc) if r.used_by_mine]
    model = next((m for m in reversed(order) if any(r.model == m for r in measured)), None)
    weight = None
    if model is not None:
        weight = sum((r.nonces_per_minute or 0.0) for r in measured if r.model == model)
    if not weight:
        run.share = share.estimate_share(None, model, None)
        return
    network, reason, basis = None, run.config.share_reason, "nonces/min"
    if run.config.share_urls:
        try:
            network = share.fetch_weight(run.config.share_urls)
        except share.WeightUnavailable as exc:
            reason = f"the network's weight is unknown: {exc}"
    terms = share.poc_round(network.node_url) if network is not None else None
    if terms is not None:
        # A gonka node weighs the nonces proved in an epoch's generate phase, with its model.
        poc_model, generate_s = terms
        rate = sum((r.nonces_per_minute or 0.0) for r in measured if r.model == poc_model)
        if rate:
            model, weight = poc_model, rate / 60.0 * generate_s
            basis = f"nonces in a {generate_s:g} s generate phase"
    run.share = share.estimate_share(weight, model, network, reason, basis)


# --- the whole run ------------------------------------------------------------------------------


def _models(config: BenchConfig) -> list[tuple[ModelSpec, bool]]:
    """The models to run, smallest first, each with whether it was named explicitly."""
    from gonka_cli.compute.models import get_spec, list_models

    if config.models:
        named = [get_spec(name) for name in config.models]
        order = [s.name for s in list_models()]
        unique = {s.name: s for s in named}
        return [(unique[n], True) for n in order if n in unique]
    if config.quick:
        return [(get_spec(n), False) for n in QUICK_MODELS]
    return [(s, False) for s in list_models()]


def plan_models(config: BenchConfig) -> list[str]:
    """The names of the models a run with `config` considers (for help and tests)."""
    return [spec.name for spec, _ in _models(config)]


def run_bench(
    config: BenchConfig,
    progress: Callable[[Progress], None] | None = None,
    *,
    devices_inventory: Inventory | None = None,
) -> BenchResult:
    """Measure what `config` asks for and return the result (see the module doc).

    Raises InputError for an unknown device or model or backend, DeviceUnavailable for a GPU
    that does not work, and BenchInterrupted (with the partial result) on Ctrl-C.
    """
    unknown = [b for b in config.backends if b not in BACKENDS]
    if unknown or not config.backends:
        raise InputError(
            f"unknown backend {unknown[0]!r}; use {' or '.join(BACKENDS)}"
            if unknown
            else "no backend to measure"
        )
    models = _models(config)
    inv = devices_inventory or inventory()
    devices = select_devices(inv, config.devices)
    run = _Run(
        config=config,
        devices=devices,
        started=time.perf_counter(),
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        software=_software(inv),
        notes=list(inv.notes),
    )
    steps: list[tuple[str, Callable[[], None], BenchDevice | None]] = []
    for device in devices:
        if device.kind == "gpu":
            steps.append((f"{device.id}: checking CUDA", partial(_check_cuda, device), None))
        if config.kernels:
            steps.extend((d, f, device) for d, f in _kernel_steps(run, device))
    for spec, named in models:
        for device in devices:
            steps.extend((d, f, device) for d, f in _model_steps(run, spec, named, device))
        steps.append((f"{spec.name}: releasing memory", partial(_release, run, spec.name), None))
    order = [spec.name for spec, _ in models]
    steps.append(("estimating the share", lambda: _share_step(run, order), None))

    total = len(steps)
    try:
        for index, (description, step, target) in enumerate(steps, start=1):
            if progress is not None:
                progress(Progress(index, total, description))
            log.debug("step %d/%d: %s", index, total, description)
            if target is None:
                step()
            else:
                _cuda_errors(step, target)
    except KeyboardInterrupt:
        run.share = run.share or share.ShareEstimate("unknown", "the run was interrupted")
        raise BenchInterrupted(run.result(complete=False)) from None
    if progress is not None:
        progress(Progress(total, total, "done", done=True))
    return run.result(complete=True)
