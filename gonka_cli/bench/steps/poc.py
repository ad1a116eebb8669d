"""The PoC step: sweep the batch size, then measure the chosen one, per backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gonka_cli.bench import kernels, tuner, workloads
from gonka_cli.bench.devices import BenchDevice
from gonka_cli.bench.profiles import settings_for
from gonka_cli.bench.results import PocResult
from gonka_cli.bench.steps.common import RunState, onnx_session
from gonka_cli.errors import BackendUnavailable, InsufficientMemory

if TYPE_CHECKING:
    from gonka_cli.compute.models import ModelSpec

__all__ = ["poc_step"]


def poc_step(run: RunState, spec: ModelSpec, device: BenchDevice, backend: str) -> None:
    from gonka_cli.compute import poc

    key = (spec.name, device.id)
    reason = run.skip.get(key)
    if reason is not None:
        run.poc.append(PocResult(device.id, spec.name, backend, "skipped", reason))
        return
    model = run.models[key]
    s = settings_for(run.config.quick, device.kind == "gpu")
    provider = None
    if backend == "torch":
        compute = workloads.torch_poc(model)
        precision = str(model.dtype).removeprefix("torch.").replace("bfloat16", "bf16")
        precision = precision.replace("float32", "fp32").replace("float16", "fp16")
        cap = poc.choose_batch_size(model, spec.poc_seq_len)
    else:
        try:
            onnx_model, provider = onnx_session(run, spec.name, device)
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
