"""The correctness step: the device's artifacts against a CPU fp32 reference, per backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gonka_cli.bench import correctness as checks
from gonka_cli.bench import workloads
from gonka_cli.bench.devices import BenchDevice
from gonka_cli.bench.profiles import settings_for
from gonka_cli.bench.results import CorrectnessResult
from gonka_cli.bench.steps.common import RunState, Skip, cpu_gflops, onnx_session
from gonka_cli.errors import BackendUnavailable, InsufficientMemory, InvalidComputeInput

if TYPE_CHECKING:
    from gonka_cli.compute.models import ModelSpec

__all__ = ["correctness_step"]


def _reference(run: RunState, spec: ModelSpec, nonces: Sequence[int]) -> list[bytes]:
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


def _correctness_nonces(run: RunState, spec: ModelSpec, device: BenchDevice) -> list[int]:
    """The fixed nonces whose CPU fp32 reference fits the time budget (at least 2)."""
    from gonka_cli.compute.poc import poc_flops

    s = settings_for(run.config.quick, device.kind == "gpu")
    per_nonce_s = poc_flops(spec, spec.poc_seq_len) / (cpu_gflops(run) * 1e9 * 0.5)
    count = min(len(checks.FIXED_NONCES), int(s.reference_budget_s / per_nonce_s))
    if count < 2:
        raise Skip(
            f"the CPU fp32 reference would take about {2 * per_nonce_s:.0f} s for 2 nonces "
            f"(budget {s.reference_budget_s:g} s)"
        )
    return list(checks.FIXED_NONCES[:count])


def _candidate(
    run: RunState, spec: ModelSpec, device: BenchDevice, backend: str, nonces: list[int]
) -> list[bytes]:
    key = (spec.name, device.id)
    if backend == "torch":
        return list(workloads.torch_poc(run.models[key])(nonces))
    onnx_model, _ = onnx_session(run, spec.name, device)
    return list(workloads.onnx_poc(onnx_model)(nonces))


def correctness_step(run: RunState, spec: ModelSpec, device: BenchDevice) -> None:
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
            raise Skip(reason)
        nonces = _correctness_nonces(run, spec, device)
    except Skip as exc:
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
