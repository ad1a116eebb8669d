"""Inference steps: prefill and decode rates per batch size, and the validators' replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gonka_cli.bench import workloads
from gonka_cli.bench.devices import BenchDevice
from gonka_cli.bench.profiles import settings_for
from gonka_cli.bench.results import InferenceResult, ReplaySpeed
from gonka_cli.bench.steps.common import RunState
from gonka_cli.errors import InsufficientMemory

if TYPE_CHECKING:
    from gonka_cli.compute.models import ModelSpec

__all__ = ["inference_step", "replay_step"]


def inference_step(run: RunState, spec: ModelSpec, device: BenchDevice) -> None:
    key = (spec.name, device.id)
    s = settings_for(run.config.quick, device.kind == "gpu")
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


def replay_step(run: RunState, spec: ModelSpec, device: BenchDevice) -> None:
    key = (spec.name, device.id)
    reason = run.skip.get(key)
    if reason is not None:
        run.replay.append(ReplaySpeed(device.id, spec.name, "skipped", reason))
        return
    s = settings_for(run.config.quick, device.kind == "gpu")
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
