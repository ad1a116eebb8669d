"""Building a model on a device (or recording why not) and releasing it after its steps."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

from gonka_cli.bench import workloads
from gonka_cli.bench.devices import BenchDevice
from gonka_cli.bench.profiles import settings_for
from gonka_cli.bench.steps.common import RunState, device_gflops
from gonka_cli.errors import InsufficientMemory

if TYPE_CHECKING:
    from gonka_cli.compute.models import ModelSpec

__all__ = ["load_step", "release"]


def load_step(run: RunState, spec: ModelSpec, named: bool, device: BenchDevice) -> None:
    from gonka_cli.compute.models import load_model
    from gonka_cli.compute.poc import poc_flops

    s = settings_for(run.config.quick, device.kind == "gpu")
    key = (spec.name, device.id)
    if not named:
        seconds = poc_flops(spec, spec.poc_seq_len) / (device_gflops(run, device) * 1e9 * 0.5)
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


def release(run: RunState, name: str) -> None:
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
