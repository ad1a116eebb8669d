"""PoC end to end on gonka-tiny: real artifacts committed to a sum tree, sampled, proved and
validated across precisions and backends; cheaters who commit fakes; structural failures.

The artifacts of 300 nonces are computed once per backend (fp32 and bf16 torch, onnxruntime
fp32, and another weights seed), so each validation below only builds a sum tree and checks 200
answers.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from gonka_cli.compute import onnx_backend, poc
from gonka_cli.compute.artifacts import artifact_distance, encode_artifact, leaf_data
from gonka_cli.compute.models import GonkaModel, build_model
from gonka_cli.compute.smst import SMST
from gonka_cli.compute.validation import (
    PocParams,
    ProofAnswer,
    Verdict,
    build_answers,
    fraud_cutoff,
    sample_indices,
    validate,
)

COUNT = 300
PARAMS = PocParams()
SAMPLE = PARAMS.sample_size
SEEDS = range(30)
# Node 1 of 3: nonces 1, 4, 7, ... (porosity max|nonce| / count about 3).
NONCES = list(itertools.islice(poc.nonce_iterator(node_id=1, node_count=3), COUNT))

Artifacts = dict[str, list[bytes]]


@pytest.fixture(scope="module")
def onnx_tiny(tmp_path_factory: pytest.TempPathFactory) -> onnx_backend.OnnxModel:
    directory: Path = tmp_path_factory.mktemp("onnx")
    return onnx_backend.OnnxModel("gonka-tiny", directory=directory)


@pytest.fixture(scope="module")
def artifacts(
    tiny: GonkaModel,
    tiny_bf16: GonkaModel,
    onnx_tiny: onnx_backend.OnnxModel,
    block_hash: str,
    public_key: str,
) -> Artifacts:
    """The artifacts of NONCES from each backend, and from a model with other weights."""
    other = build_model(dataclasses.replace(tiny.spec, weights_seed=2))
    return {
        "fp32": poc.compute_artifacts(tiny, block_hash, public_key, NONCES),
        "bf16": poc.compute_artifacts(tiny_bf16, block_hash, public_key, NONCES),
        "onnx": onnx_backend.compute_artifacts(onnx_tiny, block_hash, public_key, NONCES),
        "other": poc.compute_artifacts(other, block_hash, public_key, NONCES),
    }


def commit(leaves: Sequence[bytes], nonces: Sequence[int] = NONCES) -> SMST:
    tree = SMST()
    tree.insert_many(leaf_data(n, a) for n, a in zip(nonces, leaves, strict=True))
    return tree


def lookup(artifacts: Sequence[bytes]) -> Callable[[list[int]], list[bytes]]:
    """A validator's recompute that reads precomputed artifacts instead of running a model."""
    table = dict(zip(NONCES, artifacts, strict=True))
    return lambda nonces: [table[n] for n in nonces]


def never_called(nonces: list[int]) -> list[bytes]:
    pytest.fail("recompute must not run after a structural failure")


def requested_for(seed: int, count: int = COUNT) -> list[int]:
    return sample_indices(f"validation-block-{seed}", count, SAMPLE)


def answers_for(
    tree: SMST, requested: Sequence[int], count: int | None = None
) -> list[ProofAnswer]:
    """The prover's answers, sent through their JSON form as on the wire."""
    return [ProofAnswer.from_dict(a.to_dict()) for a in build_answers(tree, requested, count)]


def random_unit_artifact(rnd: random.Random) -> bytes:
    values = [rnd.gauss(0.0, 1.0) for _ in range(12)]
    norm = math.sqrt(sum(v * v for v in values))
    return encode_artifact([v / norm for v in values])


# --- honest provers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prover", "validator"),
    [("fp32", "bf16"), ("bf16", "fp32"), ("fp32", "onnx"), ("onnx", "bf16")],
)
def test_honest_prover_is_never_flagged(artifacts: Artifacts, prover: str, validator: str) -> None:
    tree = commit(artifacts[prover])
    worst = 0.0
    for seed in SEEDS:
        requested = requested_for(seed)
        verdict = validate(
            tree.root(),
            COUNT,
            requested,
            answers_for(tree, requested),
            lookup(artifacts[validator]),
        )
        assert verdict.valid and not verdict.fraud_detected, verdict.reason
        assert verdict.n_sampled == SAMPLE and verdict.n_mismatches == 0
        assert verdict.p_value == 1.0 and verdict.failures == ()
        assert verdict.max_distance is not None
        worst = max(worst, verdict.max_distance)
    # The default threshold leaves honest noise a wide margin (docs/compute.md, calibration).
    assert worst < PARAMS.dist_threshold / 2, f"{prover} vs {validator}: max distance {worst}"


def test_honest_prover_against_an_earlier_commitment_and_a_live_validator(
    artifacts: Artifacts, tiny_bf16: GonkaModel, block_hash: str, public_key: str
) -> None:
    # The prover committed (256, root) and kept appending; the validator recomputes for real.
    tree = commit(artifacts["fp32"])
    count = 256
    requested = requested_for(7, count)
    calls: list[list[int]] = []

    def recompute(nonces: list[int]) -> list[bytes]:
        calls.append(nonces)
        return poc.compute_artifacts(tiny_bf16, block_hash, public_key, nonces)

    answers = answers_for(tree, requested, count)
    verdict = validate(tree.root_at(count), count, requested, answers, recompute)
    assert verdict.valid and verdict.n_mismatches == 0, verdict.reason
    assert calls == [[NONCES[i] for i in requested]]
    # The current root is another commitment: the same proofs do not open under it.
    stale = validate(tree.root(), count, requested, answers, never_called)
    assert not stale.valid and not stale.fraud_detected


# --- cheaters -----------------------------------------------------------------------------


@pytest.mark.parametrize("fake_kind", ["random unit vectors", "another model"])
@pytest.mark.parametrize("n_fakes", [30, 28, 27])
def test_cheater_who_commits_fakes(artifacts: Artifacts, fake_kind: str, n_fakes: int) -> None:
    """Exactly `n_fakes` of the 200 sampled leaves are fakes the cheater committed to, so
    every proof is valid and only the recomputation can tell. 30 fakes is 15% of the sample;
    28 is the cutoff (`fraud_cutoff(200, 0.1, 0.05)`): 28 or more is fraud, 27 is not."""
    cutoff = fraud_cutoff(SAMPLE, PARAMS.p_mismatch, PARAMS.alpha)
    assert cutoff == 28
    honest, validator = artifacts["fp32"], artifacts["bf16"]
    for seed in SEEDS:
        rnd = random.Random(seed)
        requested = requested_for(seed)
        faked = set(rnd.sample(requested, n_fakes))
        leaves = list(honest)
        for i in sorted(faked):
            if fake_kind == "random unit vectors":
                leaves[i] = random_unit_artifact(rnd)
            else:
                leaves[i] = artifacts["other"][i]
            # Every fake is far from the truth, so the mismatch count is exactly n_fakes.
            assert artifact_distance(leaves[i], validator[i]) > PARAMS.dist_threshold
        tree = commit(leaves)
        verdict = validate(
            tree.root(), COUNT, requested, answers_for(tree, requested), lookup(validator)
        )
        assert verdict.n_sampled == SAMPLE and verdict.n_mismatches == n_fakes, verdict.reason
        assert {i for i, _ in verdict.failures} == faked
        assert verdict.fraud_detected is (n_fakes >= cutoff), verdict.reason
        assert verdict.valid is (n_fakes < cutoff)
        assert verdict.p_value is not None and (verdict.p_value < PARAMS.alpha) is (
            n_fakes >= cutoff
        )


# --- structural failures ------------------------------------------------------------------


def _assert_structural(verdict: Verdict, reason: str) -> None:
    assert not verdict.valid and not verdict.fraud_detected, verdict
    assert verdict.p_value is None and verdict.max_distance is None
    assert verdict.failures and reason in verdict.reason, verdict.reason


def test_proofs_against_another_root_are_invalid(artifacts: Artifacts) -> None:
    committed = commit(artifacts["fp32"])
    # Answers (honest artifacts, well-formed proofs) from another tree: here the bf16 one.
    other_tree = commit(artifacts["bf16"])
    for seed in range(5):
        requested = requested_for(seed)
        verdict = validate(
            committed.root(), COUNT, requested, answers_for(other_tree, requested), never_called
        )
        _assert_structural(verdict, "sum-tree proof")
        assert len(verdict.failures) == SAMPLE
    # One changed leaf changes the root, so every proof from that tree fails.
    leaves = list(artifacts["fp32"])
    leaves[0] = artifacts["bf16"][0]
    requested = requested_for(0)
    verdict = validate(
        committed.root(), COUNT, requested, answers_for(commit(leaves), requested), never_called
    )
    _assert_structural(verdict, "sum-tree proof")
    # Proofs from the right tree, but against an earlier count than the one committed.
    requested = requested_for(0, 256)
    answers = answers_for(committed, requested, 256)
    verdict = validate(committed.root(), COUNT, requested, answers, never_called)
    _assert_structural(verdict, "sum-tree proof")


def test_answers_for_other_nonces_are_invalid(artifacts: Artifacts) -> None:
    tree = commit(artifacts["fp32"])
    requested = requested_for(3)
    honest = answers_for(tree, requested)

    # The right leaf index and proof, but another nonce (with that nonce's real artifact).
    swapped = list(honest)
    other_index = next(i for i in range(COUNT) if i not in requested)
    swapped[5] = dataclasses.replace(
        honest[5], nonce=NONCES[other_index], vector=artifacts["fp32"][other_index]
    )
    verdict = validate(tree.root(), COUNT, requested, swapped, never_called)
    _assert_structural(verdict, "sum-tree proof")
    assert [i for i, _ in verdict.failures] == [requested[5]]

    # Valid answers for other leaves than the ones requested.
    unrequested = [i for i in range(COUNT) if i not in requested][:SAMPLE]
    verdict = validate(tree.root(), COUNT, requested, answers_for(tree, unrequested), never_called)
    _assert_structural(verdict, "no answer for this requested leaf")

    # One answer missing.
    verdict = validate(tree.root(), COUNT, requested, honest[:-1], never_called)
    _assert_structural(verdict, "no answer")
    assert [i for i, _ in verdict.failures] == [requested[-1]]


def test_sparse_nonces_fail_the_porosity_check(artifacts: Artifacts) -> None:
    # 300 leaves whose nonces are 1000 apart: max|nonce| / count is about 1000 >= 100.
    sparse = [1000 * i for i in range(COUNT)]
    tree = commit(artifacts["fp32"], sparse)
    requested = requested_for(1)
    verdict = validate(tree.root(), COUNT, requested, answers_for(tree, requested), never_called)
    _assert_structural(verdict, "porosity")
