"""`gonka bench run`: plan the measurements, run them step by step, build the result.

The run has steps (kernels per device; per model and device: PoC on torch, PoC on
onnxruntime, inference, replay, correctness; the share last), each in its own module under
`gonka_cli.bench.steps`; how hard each measures (quick or full, CPU or GPU) and which models
run come from `gonka_cli.bench.profiles`. This module plans them in order and runs them.
Before each step the `progress` callback hears about it, so a CLI can draw a bar; the core
itself never prints.

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

import datetime as dt
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from gonka_cli.bench import share
from gonka_cli.bench.devices import BenchDevice, Inventory, inventory, select_devices
from gonka_cli.bench.profiles import BACKENDS, BenchConfig, plan_models, select_models
from gonka_cli.bench.results import BenchResult
from gonka_cli.bench.steps import correctness, inference, models, poc
from gonka_cli.bench.steps import kernels as kernel_steps
from gonka_cli.bench.steps import share as share_steps
from gonka_cli.bench.steps.common import RunState, check_cuda, cuda_errors
from gonka_cli.errors import InputError

if TYPE_CHECKING:
    from gonka_cli.compute.models import ModelSpec

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "BenchConfig", "BenchInterrupted", "Progress", "plan_models", "run_bench"]


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


def _model_steps(
    run: RunState, spec: ModelSpec, named: bool, device: BenchDevice
) -> list[tuple[str, Callable[[], None]]]:
    config = run.config
    where = f"{spec.name} on {device.id}"
    steps: list[tuple[str, Callable[[], None]]] = [
        (f"{where}: building the model", partial(models.load_step, run, spec, named, device))
    ]
    if config.poc:
        for backend in config.backends:
            steps.append(
                (
                    f"{where}: PoC batch sweep on {backend}",
                    partial(poc.poc_step, run, spec, device, backend),
                )
            )
    if config.inference:
        steps.append(
            (f"{where}: prefill and decode", partial(inference.inference_step, run, spec, device))
        )
        steps.append(
            (f"{where}: replay validation", partial(inference.replay_step, run, spec, device))
        )
    if config.correctness:
        steps.append(
            (
                f"{where}: correctness check",
                partial(correctness.correctness_step, run, spec, device),
            )
        )
    return steps


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
    chosen = select_models(config)
    inv = devices_inventory or inventory()
    devices = select_devices(inv, config.devices)
    run = RunState(
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
            steps.append((f"{device.id}: checking CUDA", partial(check_cuda, device), None))
        if config.kernels:
            steps.extend((d, f, device) for d, f in kernel_steps.kernel_steps(run, device))
    for spec, named in chosen:
        for device in devices:
            steps.extend((d, f, device) for d, f in _model_steps(run, spec, named, device))
        steps.append(
            (f"{spec.name}: releasing memory", partial(models.release, run, spec.name), None)
        )
    order = [spec.name for spec, _ in chosen]
    steps.append(("estimating the share", partial(share_steps.share_step, run, order), None))

    total = len(steps)
    try:
        for index, (description, step, target) in enumerate(steps, start=1):
            if progress is not None:
                progress(Progress(index, total, description))
            log.debug("step %d/%d: %s", index, total, description)
            if target is None:
                step()
            else:
                cuda_errors(step, target)
    except KeyboardInterrupt:
        run.share = run.share or share.ShareEstimate("unknown", "the run was interrupted")
        raise BenchInterrupted(run.result(complete=False)) from None
    if progress is not None:
        progress(Progress(total, total, "done", done=True))
    return run.result(complete=True)
