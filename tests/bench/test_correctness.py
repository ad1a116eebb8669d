"""The correctness check against real artifacts: honest ones pass, perturbed ones fail."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import pytest
import torch

from gonka_cli.bench.correctness import BLOCK_HASH, FIXED_NONCES, PUBLIC_KEY, compare_artifacts
from gonka_cli.compute import poc
from gonka_cli.compute.artifacts import artifact_distance, decode_artifact, encode_artifact
from gonka_cli.compute.models import GonkaModel, load_model
from gonka_cli.compute.validation import PocParams
from gonka_cli.errors import InvalidComputeInput

NONCES = list(FIXED_NONCES)
THRESHOLD = PocParams().dist_threshold


@pytest.fixture(scope="module")
def reference() -> list[bytes]:
    """gonka-tiny's artifacts on the CPU in float32: what the check compares against."""
    model = load_model("gonka-tiny", "cpu", "fp32")
    return poc.compute_artifacts(model, BLOCK_HASH, PUBLIC_KEY, NONCES, batch_size=len(NONCES))


def shifted(artifact: bytes, coordinate: int, delta: float) -> bytes:
    values = list(decode_artifact(artifact))
    values[coordinate] += delta
    return encode_artifact(values)


def test_the_threshold_is_the_validators() -> None:
    assert THRESHOLD == 0.15


def test_honest_bf16_artifacts_pass(reference: list[bytes]) -> None:
    # A bf16 model is what a GPU runs: not bit-identical to fp32, but well within the threshold.
    bf16 = load_model("gonka-tiny", "cpu", "bf16")
    mine = poc.compute_artifacts(bf16, BLOCK_HASH, PUBLIC_KEY, NONCES, batch_size=len(NONCES))
    check = compare_artifacts(NONCES, mine, reference, THRESHOLD)
    assert check.status == "PASS" and check.passed
    assert check.mismatches == 0 and check.nonces == len(NONCES)
    distances = [artifact_distance(a, b) for a, b in zip(mine, reference, strict=True)]
    assert check.worst_distance == max(distances)
    assert 0 < check.worst_distance < THRESHOLD
    assert check.worst_nonce == NONCES[distances.index(max(distances))]


def test_identical_artifacts_pass_at_distance_zero(reference: list[bytes]) -> None:
    check = compare_artifacts(NONCES, list(reference), reference, THRESHOLD)
    assert (check.status, check.worst_distance) == ("PASS", 0.0)


def test_artifacts_shifted_beyond_the_threshold_fail(reference: list[bytes]) -> None:
    broken = [shifted(a, i % 12, 0.25) for i, a in enumerate(reference)]
    check = compare_artifacts(NONCES, broken, reference, THRESHOLD)
    assert check.status == "FAIL" and not check.passed
    assert check.mismatches == len(NONCES)
    # fp16 rounding moves the shift by at most a few thousandths.
    assert check.worst_distance == pytest.approx(0.25, abs=0.003)
    assert "8 of 8 artifacts at or beyond 0.15" in check.reason
    assert "validators would reject" in check.reason


def test_one_bad_artifact_is_enough(reference: list[bytes]) -> None:
    broken = list(reference)
    broken[5] = shifted(reference[5], 3, -0.2)
    check = compare_artifacts(NONCES, broken, reference, THRESHOLD)
    assert (check.status, check.mismatches, check.worst_nonce) == ("FAIL", 1, NONCES[5])
    assert check.worst_distance == pytest.approx(0.2, abs=0.003)
    assert f"worst distance {check.worst_distance:.4f} at nonce {NONCES[5]}" in check.reason


def test_a_shift_under_the_threshold_passes(reference: list[bytes]) -> None:
    nudged = [shifted(a, 0, 0.1) for a in reference]
    check = compare_artifacts(NONCES, nudged, reference, THRESHOLD)
    assert check.status == "PASS"
    assert check.worst_distance == pytest.approx(0.1, abs=0.003)


def test_artifacts_of_the_wrong_computation_fail(reference: list[bytes]) -> None:
    # Another model's forward (a device computing garbage looks the same to a validator).
    small = load_model("gonka-small", "cpu", "fp32")
    wrong = poc.compute_artifacts(small, BLOCK_HASH, PUBLIC_KEY, NONCES, batch_size=len(NONCES))
    check = compare_artifacts(NONCES, wrong, reference, THRESHOLD)
    assert check.status == "FAIL"
    assert check.mismatches >= len(NONCES) - 1
    assert check.worst_distance is not None and check.worst_distance > 0.5


def test_nan_artifacts_fail(reference: list[bytes]) -> None:
    nan = struct.pack("<12e", *([math.nan] * 12))
    check = compare_artifacts(NONCES, [nan, *reference[1:]], reference, THRESHOLD)
    assert (check.status, check.mismatches, check.worst_nonce) == ("FAIL", 1, NONCES[0])
    assert check.worst_distance is None
    assert "1 artifact(s) hold NaN, infinite or malformed values" in check.reason


def test_a_missing_artifact_fails(reference: list[bytes]) -> None:
    check = compare_artifacts(NONCES, reference[:-1], reference, THRESHOLD)
    assert check.status == "FAIL"
    assert check.reason == "the device returned 7 artifacts for 8 nonces"


def test_a_broken_reference_is_the_callers_error(reference: list[bytes]) -> None:
    with pytest.raises(InvalidComputeInput):
        compare_artifacts(NONCES, reference, [b"short", *reference[1:]], THRESHOLD)
    with pytest.raises(InvalidComputeInput):
        compare_artifacts(NONCES, reference, reference[:3], THRESHOLD)
    with pytest.raises(InvalidComputeInput):
        compare_artifacts([], [], [], THRESHOLD)
    with pytest.raises(InvalidComputeInput):
        compare_artifacts(NONCES, reference, reference, 0.0)


# --- the whole check in a run, on a device that computes wrong ---------------------------------


def run_check(monkeypatch: pytest.MonkeyPatch, damage: Callable[[GonkaModel], None]) -> Any:
    """A run whose device model is gonka-tiny with `damage` done to a private copy of it."""
    from gonka_cli.bench.runner import BenchConfig, run_bench
    from gonka_cli.compute import models

    real = models.load_model
    broken = models.build_model(models.get_spec("gonka-tiny"))
    damage(broken)

    def load(name: str, device: str = "cpu", dtype: Any = None) -> GonkaModel:
        # The device under test gets the broken copy; the CPU fp32 reference stays honest.
        return broken if dtype is None else real(name, device, dtype)

    monkeypatch.setattr(models, "load_model", load)
    config = BenchConfig(
        devices=("cpu",),
        models=("gonka-tiny",),
        quick=True,
        kernels=False,
        poc=False,
        inference=False,
        backends=("torch",),
    )
    (row,) = run_bench(config).correctness
    return row


def test_a_device_with_wrong_weights_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def skew(model: GonkaModel) -> None:
        # As if the device skipped the last layer's MLP.
        with torch.no_grad():
            model.layers[-1].feed_forward.w2.weight.zero_()

    row = run_check(monkeypatch, skew)
    assert (row.device, row.model, row.backend, row.status) == (
        "cpu",
        "gonka-tiny",
        "torch",
        "FAIL",
    )
    assert row.nonces == 8 and row.mismatches >= 6
    assert row.worst_distance is not None and row.worst_distance > THRESHOLD
    assert row.reason.startswith(f"{row.mismatches} of 8 artifacts at or beyond 0.15")


def test_a_device_computing_nan_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def poison(model: GonkaModel) -> None:
        with torch.no_grad():
            model.layers[0].attention.wq.weight[0, 0] = math.nan

    row = run_check(monkeypatch, poison)
    assert (row.status, row.mismatches, row.worst_distance) == ("FAIL", 8, None)
    assert row.reason == (
        "the device's computation failed: hidden states hold NaN or infinite values"
    )


def test_an_honest_device_passes_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    row = run_check(monkeypatch, lambda model: None)
    assert (row.status, row.mismatches, row.worst_distance) == ("PASS", 0, 0.0)
