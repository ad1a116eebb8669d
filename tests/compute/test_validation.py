"""PoC validation: parameters, sampling, proof answers, structural checks, the exact binomial
test, and simulated honest and cheating provers over many seeds."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import pytest

from gonka_cli.compute.artifacts import encode_artifact, leaf_data
from gonka_cli.compute.smst import SMST, verify_proof
from gonka_cli.compute.validation import (
    PocParams,
    ProofAnswer,
    Verdict,
    binomial_tail,
    build_answers,
    check_answers,
    fraud_cutoff,
    sample_indices,
    validate,
)
from gonka_cli.errors import InvalidComputeInput, InvalidProof

PARAMS = PocParams()
FAR = encode_artifact([1.0] + [0.0] * 11)
NEAR_FAR = encode_artifact([0.0, 1.0] + [0.0] * 10)  # L2 sqrt(2) from FAR


def unit_vector(rnd: random.Random) -> list[float]:
    values = [rnd.gauss(0.0, 1.0) for _ in range(12)]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def perturbed(values: Sequence[float], rnd: random.Random, l2: float) -> list[float]:
    """`values` plus gaussian noise whose L2 norm is `l2` on average."""
    sigma = l2 / math.sqrt(len(values))
    return [v + rnd.gauss(0.0, sigma) for v in values]


def never_called(nonces: list[int]) -> list[bytes]:
    pytest.fail("recompute must not run after a structural failure")


# --- parameters ---------------------------------------------------------------------------


def test_params_defaults_and_round_trip() -> None:
    assert PARAMS.to_dict() == {
        "k_dim": 12,
        "dist_threshold": 0.15,
        "sample_size": 200,
        "p_mismatch": 0.1,
        "alpha": 0.05,
        "max_porosity": 100.0,
    }
    assert PocParams.from_dict(json.loads(json.dumps(PARAMS.to_dict()))) == PARAMS
    devnet = PocParams.from_dict({"dist_threshold": 1, "sample_size": 50})
    assert devnet.dist_threshold == 1.0 and isinstance(devnet.dist_threshold, float)
    assert devnet.sample_size == 50 and devnet.alpha == 0.05


@pytest.mark.parametrize(
    "bad",
    [
        {"k_dim": 8},
        {"k_dim": True},
        {"dist_threshold": 0},
        {"dist_threshold": -0.4},
        {"dist_threshold": math.nan},
        {"dist_threshold": "0.4"},
        {"dist_threshold": 10**400},  # a JSON integer too large for a float
        {"sample_size": 0},
        {"sample_size": 200.0},
        {"sample_size": 10**6},
        {"p_mismatch": 0},
        {"p_mismatch": 1},
        {"alpha": 1.0},
        {"alpha": math.inf},
        {"max_porosity": 0},
        {"dist_treshold": 0.4},
    ],
)
def test_params_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidComputeInput):
        PocParams.from_dict(bad)


# --- sampling -----------------------------------------------------------------------------


def reference_sample(seed: bytes, count: int, sample_size: int) -> list[int]:
    """`sample_indices` written again from its docstring, with a real list shuffled."""
    if count <= sample_size:
        return list(range(count))
    s = hashlib.sha256(seed).digest()
    stream = (
        int.from_bytes(block[t : t + 8], "little")
        for j in range(10**9)
        for block in [
            hashlib.sha256(
                b"gonka-poc-sample-v1" + s + count.to_bytes(8, "little") + j.to_bytes(8, "little")
            ).digest()
        ]
        for t in (0, 8, 16, 24)
    )

    def draw(m: int) -> int:
        for w in stream:
            if w < 2**64 - 2**64 % m:
                return w % m
        raise AssertionError

    a = list(range(count)) if count < 10**6 else None
    swaps: dict[int, int] = {}
    for i in range(sample_size):
        j = i + draw(count - i)
        if a is not None:
            a[i], a[j] = a[j], a[i]
        else:
            swaps[i], swaps[j] = swaps.get(j, j), swaps.get(i, i)
    chosen = a[:sample_size] if a is not None else [swaps.get(i, i) for i in range(sample_size)]
    return sorted(chosen)


def test_sample_known_answers() -> None:
    # Frozen: these are part of the protocol. A change here breaks every other validator.
    assert sample_indices("gonka", 1000, 12) == [
        116, 133, 186, 614, 621, 623, 629, 662, 682, 905, 910, 982,
    ]  # fmt: skip
    assert sample_indices(bytes(32), 10**9, 8) == [
        117352406, 228882048, 247030664, 263214283,
        338425548, 376944973, 553573701, 845906896,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("seed", "count", "size"),
    [
        (b"a", 201, 200),
        (b"b", 1000, 200),
        (b"c", 5, 3),
        ("\u00e9t\u00e9".encode(), 77, 76),
        (b"x", 2**61 + 1, 20),  # draws from m near 2**61 reject about 1 word in 8
        (b"y", 2**62, 5),
    ],
)
def test_sample_matches_the_documented_algorithm(seed: bytes, count: int, size: int) -> None:
    got = sample_indices(seed, count, size)
    assert got == reference_sample(seed, count, size)
    assert len(got) == size == len(set(got)) and got == sorted(got)
    assert all(0 <= i < count for i in got)


def test_sample_edges_and_inputs() -> None:
    assert sample_indices("h", 0, 200) == []
    assert sample_indices("h", 150, 200) == list(range(150))
    assert sample_indices("h", 200, 200) == list(range(200))
    assert sample_indices("h", 10, 0) == []
    assert sample_indices("\u00e9", 500, 9) == sample_indices("\u00e9".encode(), 500, 9)
    assert sample_indices("h1", 10**6, 200) != sample_indices("h2", 10**6, 200)
    for bad in (
        (None, 10, 2),
        ("h", -1, 2),
        ("h", 10, -2),
        ("h", 2**63, 2),
        ("h", True, 2),
        ("\ud800", 10, 2),
    ):
        with pytest.raises(InvalidComputeInput):
            sample_indices(*bad)


def test_sample_is_uniform() -> None:
    counts = [0] * 20
    for s in range(2000):
        for i in sample_indices(f"seed-{s}", 20, 5):
            counts[i] += 1
    # Each index is picked with probability 1/4: 500 expected of 2000; 4.5 sigma is ~87.
    assert all(abs(c - 500) < 90 for c in counts), counts


# --- proof answers ------------------------------------------------------------------------


def test_proof_answer_json() -> None:
    answer = ProofAnswer(3, -7, bytes(range(24)), (b"\xab" * 36, b"\x01" * 36))
    data = answer.to_dict()
    assert data == {
        "leaf_index": 3,
        "nonce": -7,
        "vector": base64.b64encode(bytes(range(24))).decode(),
        "proof": ["ab" * 36, "01" * 36],
    }
    assert ProofAnswer.from_dict(json.loads(json.dumps(data))) == answer
    upper = dict(data, proof=[h.upper() for h in data["proof"]])
    assert ProofAnswer.from_dict(upper) == answer
    assert answer.leaf_data == struct.pack("<i", -7) + bytes(range(24))


GOOD = {"leaf_index": 0, "nonce": 1, "vector": base64.b64encode(bytes(24)).decode(), "proof": []}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"leaf_index": -1}, InvalidProof),
        ({"leaf_index": True}, InvalidProof),
        ({"leaf_index": "0"}, InvalidProof),
        ({"nonce": 2**31}, InvalidComputeInput),
        ({"nonce": 1.0}, InvalidComputeInput),
        ({"vector": 7}, InvalidComputeInput),
        ({"vector": "not base64!"}, InvalidComputeInput),
        ({"proof": "ab" * 36}, InvalidProof),
        ({"proof": ["ab" * 32]}, InvalidProof),
        ({"proof": ["zz" * 36]}, InvalidProof),
        ({"proof": [b"\x00" * 36]}, InvalidProof),
        ({"proof": ["00" * 36] * 33}, InvalidProof),
        ({"extra": 1}, InvalidProof),
    ],
)
def test_proof_answer_rejects_malformed_json(
    change: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        ProofAnswer.from_dict({**GOOD, **change})


def test_proof_answer_rejects_non_objects_and_missing_keys() -> None:
    with pytest.raises(InvalidProof):
        ProofAnswer.from_dict([])  # type: ignore[arg-type]
    with pytest.raises(InvalidProof, match="missing proof"):
        ProofAnswer.from_dict({k: v for k, v in GOOD.items() if k != "proof"})


# --- the binomial test --------------------------------------------------------------------


def direct_tail(k: int, n: int, p: float) -> Fraction:
    q = Fraction(p)
    return sum(
        (math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(max(k, 0), n + 1)),
        Fraction(0),
    )


@pytest.mark.parametrize("p", [0.1, 0.5, 0.03, 1 / 3, 0.999])
def test_binomial_tail_is_exact(p: float) -> None:
    for n in (0, 1, 2, 5, 13, 40):
        for k in range(-1, n + 2):
            # Both sides are the correctly rounded value of the same exact fraction.
            assert binomial_tail(k, n, p) == float(direct_tail(k, n, p)), (k, n)
    for k in (1, 20, 27, 28, 29, 60, 199, 200):
        assert binomial_tail(k, 200, p) == float(direct_tail(k, 200, p))


def test_binomial_tail_agrees_with_floating_point() -> None:
    for k in range(0, 201, 7):
        approx = math.fsum(math.comb(200, i) * 0.1**i * 0.9 ** (200 - i) for i in range(k, 201))
        assert binomial_tail(k, 200, 0.1) == pytest.approx(approx, rel=1e-12, abs=1e-300)


def test_binomial_tail_edges() -> None:
    assert binomial_tail(0, 200, 0.1) == 1.0
    assert binomial_tail(-5, 200, 0.1) == 1.0
    assert binomial_tail(201, 200, 0.1) == 0.0
    assert binomial_tail(0, 0, 0.5) == 1.0
    assert binomial_tail(1, 10, 0.0) == 0.0
    assert binomial_tail(10, 10, 1.0) == 1.0
    assert binomial_tail(200, 200, 0.1) == pytest.approx(1e-200, rel=1e-12)
    tails = [binomial_tail(k, 200, 0.1) for k in range(202)]
    assert tails == sorted(tails, reverse=True)
    for bad in ((1, -1, 0.5), (1, 10, 1.5), (1, 10, -0.1), (1.0, 10, 0.5), (1, 10, math.nan)):
        with pytest.raises(InvalidComputeInput):
            binomial_tail(*bad)


def test_fraud_cutoff_is_28_of_200() -> None:
    # Reference: "fraud when the p-value < 0.05 (that is 28 or more mismatches of 200)".
    assert fraud_cutoff(200, 0.1, 0.05) == 28
    assert binomial_tail(28, 200, 0.1) < 0.05 <= binomial_tail(27, 200, 0.1)
    assert PocParams().sample_size == 200


def test_fraud_cutoff_matches_a_linear_scan() -> None:
    for n in (0, 1, 2, 7, 30):
        for p in (0.0, 0.1, 0.5, 1.0):
            for alpha in (1e-9, 0.05, 0.5, 1.0):
                limit = Fraction(alpha)
                expected = next(k for k in range(n + 2) if direct_tail(k, n, p) < limit)
                assert fraud_cutoff(n, p, alpha) == expected, (n, p, alpha)
    # Exact, where floats are not: P[X >= 1] = 1 - 2**-200 rounds to 1.0, yet is below 1.
    assert binomial_tail(1, 200, 0.5) == 1.0 and fraud_cutoff(200, 0.5, 1.0) == 1
    for p in (0.1, 0.5):
        for alpha in (1e-9, 0.05, 0.5):
            expected = next(k for k in range(202) if binomial_tail(k, 200, p) < alpha)
            assert fraud_cutoff(200, p, alpha) == expected, (p, alpha)
    with pytest.raises(InvalidComputeInput):
        fraud_cutoff(200, 0.1, 0.0)


# --- structural checks --------------------------------------------------------------------


@dataclass
class Prover:
    tree: SMST
    truth: dict[int, list[float]]  # nonce -> the honest 12 values
    requested: list[int]

    @property
    def root(self) -> bytes:
        return self.tree.root()

    @property
    def count(self) -> int:
        return self.tree.count

    def answers(self) -> list[ProofAnswer]:
        return list(build_answers(self.tree, self.requested))

    def recompute(self, nonces: list[int]) -> list[bytes]:
        return [encode_artifact(self.truth[n]) for n in nonces]


def honest_prover(count: int = 300, seed: int = 1) -> Prover:
    rnd = random.Random(seed)
    truth = {nonce: unit_vector(rnd) for nonce in range(count)}
    tree = SMST()
    tree.insert_many(leaf_data(n, encode_artifact(v)) for n, v in truth.items())
    return Prover(tree, truth, sample_indices(f"block-{seed}", count, PARAMS.sample_size))


def test_honest_answers_pass() -> None:
    prover = honest_prover()
    check = check_answers(prover.root, prover.count, prover.requested, prover.answers(), PARAMS)
    assert check.ok and check.failures == () and len(check.outcomes) == 200
    assert all(o.ok and o.reason == "" for o in check.outcomes)
    assert check.porosity < 1
    verdict = validate(
        prover.root, prover.count, prover.requested, prover.answers(), prover.recompute, PARAMS
    )
    assert verdict.valid and not verdict.fraud_detected
    assert verdict.n_sampled == 200 and verdict.n_mismatches == 0 and verdict.p_value == 1.0
    assert verdict.max_distance == 0.0 and verdict.mismatch_cutoff == 28
    assert verdict.reason.startswith("valid: 0 of 200 sampled artifacts mismatched")
    json.dumps(verdict.to_dict())
    json.dumps(check.to_dict())


def _drop(answers: list[ProofAnswer], i: int) -> list[ProofAnswer]:
    return [*answers[:i], *answers[i + 1 :]]


def _with(answers: list[ProofAnswer], i: int, **change: Any) -> list[ProofAnswer]:
    return [*answers[:i], replace(answers[i], **change), *answers[i + 1 :]]


def _flip_first_hash(a: ProofAnswer) -> tuple[bytes, ...]:
    return (bytes([a.proof[0][0] ^ 1]) + a.proof[0][1:], *a.proof[1:])


PROOF_FAILS = "sum-tree proof does not"
STRUCTURAL: list[tuple[str, Callable[[Prover, list[ProofAnswer]], list[ProofAnswer]], int, str]]
STRUCTURAL = [
    ("missing", lambda p, a: _drop(a, 5), 5, "no answer for this requested leaf"),
    ("twice", lambda p, a: [*a, a[3]], 3, "answered 2 times"),
    (
        "short vector",
        lambda p, a: _with(a, 7, vector=a[7].vector[:23]),
        7,
        "the vector is 23 bytes, expected 24",
    ),
    ("no vector", lambda p, a: _with(a, 7, vector="x" * 24), 7, "not bytes"),
    (
        "bad proof",
        lambda p, a: _with(a, 9, proof=_flip_first_hash(a[9])),
        9,
        PROOF_FAILS,
    ),
    ("short proof", lambda p, a: _with(a, 9, proof=a[9].proof[:-1]), 9, PROOF_FAILS),
    ("other nonce", lambda p, a: _with(a, 0, nonce=a[0].nonce + 1), 0, PROOF_FAILS),
    ("big nonce", lambda p, a: _with(a, 0, nonce=2**31), 0, "outside int32"),
    ("bool nonce", lambda p, a: _with(a, 0, nonce=True), 0, "not an integer"),
    (
        "vector of another leaf",
        lambda p, a: _with(a, 2, vector=a[3].vector),
        2,
        PROOF_FAILS,
    ),
    (
        "proof for an earlier count",
        lambda p, a: [*a[:1], *build_answers(p.tree, p.requested[1:2], count=299), *a[2:]],
        1,
        PROOF_FAILS,
    ),
]


@pytest.mark.parametrize(
    ("change", "position", "reason"),
    [(c, pos, r) for _, c, pos, r in STRUCTURAL],
    ids=[name for name, *_ in STRUCTURAL],
)
def test_structural_failures(
    change: Callable[[Prover, list[ProofAnswer]], list[ProofAnswer]], position: int, reason: str
) -> None:
    prover = honest_prover()
    answers = change(prover, prover.answers())
    index = prover.requested[position]
    check = check_answers(prover.root, prover.count, prover.requested, answers, PARAMS)
    assert not check.ok
    assert len(check.failures) == 1 and check.failures[0][0] == index
    assert reason in check.failures[0][1]
    assert [o.leaf_index for o in check.outcomes if not o.ok] == [index]
    verdict = validate(prover.root, prover.count, prover.requested, answers, never_called, PARAMS)
    assert not verdict.valid and not verdict.fraud_detected
    assert verdict.p_value is None and verdict.max_distance is None
    assert verdict.failures == check.failures
    assert verdict.reason.startswith("invalid: 1 structural failure(s)")
    assert f"leaf {index}: " in verdict.reason and reason in verdict.reason


def test_unrequested_answer_is_a_failure() -> None:
    prover = honest_prover()
    spare = next(i for i in range(prover.count) if i not in set(prover.requested))
    answers = prover.answers() + list(build_answers(prover.tree, [spare]))
    check = check_answers(prover.root, prover.count, prover.requested, answers, PARAMS)
    assert check.failures == ((spare, "answered but not requested"),)
    assert all(o.ok for o in check.outcomes)


def test_swapped_vectors_fail_both_leaves() -> None:
    prover = honest_prover()
    a = prover.answers()
    answers = _with(_with(a, 4, vector=a[6].vector), 6, vector=a[4].vector)
    check = check_answers(prover.root, prover.count, prover.requested, answers, PARAMS)
    assert [i for i, _ in check.failures] == [prover.requested[4], prover.requested[6]]


def test_one_nonce_cannot_stand_for_two_leaves() -> None:
    """The same leaf and proof offered for two ranks: the path and the rank bind it to one."""
    prover = honest_prover()
    a = prover.answers()
    answers = _with(a, 6, nonce=a[2].nonce, vector=a[2].vector, proof=a[2].proof)
    check = check_answers(prover.root, prover.count, prover.requested, answers, PARAMS)
    assert [i for i, _ in check.failures] == [prover.requested[6]]
    assert "sum-tree proof does not match" in check.failures[0][1]
    assert verify_proof(prover.root, prover.count, prover.requested[2], a[2].leaf_data, a[2].proof)


def test_non_finite_vector_fails() -> None:
    nan = b"\x00\x7e" + bytes(22)  # fp16 NaN first
    inf = b"\x00\x7c" + bytes(22)  # fp16 +inf first
    tree = SMST()
    tree.insert_many(leaf_data(n, v) for n, v in [(0, bytes(24)), (1, nan), (2, inf), (3, FAR)])
    answers = build_answers(tree, range(4))
    check = check_answers(tree.root(), 4, range(4), answers, PARAMS)
    assert check.failures == (
        (1, "the vector holds NaN or infinite values"),
        (2, "the vector holds NaN or infinite values"),
    )


@pytest.mark.parametrize(("widest", "fails"), [(999, False), (1000, True), (-1000, True)])
def test_porosity(widest: int, fails: bool) -> None:
    tree = SMST()
    nonces = [*range(9), widest]
    tree.insert_many(leaf_data(n, FAR) for n in nonces)
    check = check_answers(tree.root(), 10, range(10), build_answers(tree, range(10)), PARAMS)
    assert check.porosity == abs(widest) / 10
    if fails:
        assert len(check.failures) == 1 and check.failures[0][0] == 9
        assert "porosity max|nonce|/count = 100 is not below 100" in check.failures[0][1]
    else:
        assert check.ok
    loose = replace(PARAMS, max_porosity=101.0)
    assert check_answers(tree.root(), 10, range(10), build_answers(tree, range(10)), loose).ok


def test_validator_mistakes_raise() -> None:
    prover = honest_prover(count=50)
    root, answers = prover.root, prover.answers()
    for requested in ([0, 0], [50], [-1], [], [True], ["1"]):
        with pytest.raises(InvalidComputeInput):
            check_answers(root, 50, requested, answers, PARAMS)  # type: ignore[arg-type]
    with pytest.raises(InvalidComputeInput, match="returned 49 artifacts for 50"):
        validate(root, 50, prover.requested, answers, lambda ns: prover.recompute(ns)[1:], PARAMS)
    with pytest.raises(InvalidComputeInput, match="recomputed artifact of nonce"):
        validate(root, 50, prover.requested, answers, lambda ns: [b"x"] * len(ns), PARAMS)
    with pytest.raises(InvalidComputeInput):
        validate(root, "50", prover.requested, answers, prover.recompute)  # type: ignore[arg-type]


def test_empty_commitment_is_invalid() -> None:
    verdict = validate(bytes(32), 0, [], [], never_called, PARAMS)
    assert not verdict.valid and "holds no artifacts" in verdict.reason


def test_proofs_against_an_earlier_commitment() -> None:
    prover = honest_prover(count=300)
    root_250 = prover.tree.root_at(250)
    requested = sample_indices("later block", 250, 200)
    answers = build_answers(prover.tree, requested, count=250)
    assert check_answers(root_250, 250, requested, answers, PARAMS).ok
    assert not check_answers(prover.root, 300, requested, answers, PARAMS).ok
    with pytest.raises(InvalidProof):
        build_answers(prover.tree, [260], count=250)


# --- the statistical test on whole provers ------------------------------------------------


@pytest.mark.parametrize(
    ("mismatches", "fraud"), [(0, False), (27, False), (28, True), (200, True)]
)
def test_verdict_at_the_cutoff(mismatches: int, fraud: bool) -> None:
    prover = honest_prover()
    bad = set(prover.requested[:mismatches])
    nonce_of = {i: prover.tree.leaf(i) for i in prover.requested}
    bad_nonces = {struct.unpack("<i", nonce_of[i][:4])[0] for i in bad}

    def recompute(nonces: list[int]) -> list[bytes]:
        return [FAR if n in bad_nonces else encode_artifact(prover.truth[n]) for n in nonces]

    answers = prover.answers()
    verdict = validate(prover.root, prover.count, prover.requested, answers, recompute, PARAMS)
    assert verdict.n_mismatches == mismatches
    assert verdict.fraud_detected is fraud and verdict.valid is not fraud
    assert verdict.p_value == binomial_tail(mismatches, 200, 0.1)
    assert sorted(i for i, _ in verdict.failures) == sorted(bad)
    assert verdict.reason.startswith(f"{'fraud' if fraud else 'valid'}: {mismatches} of 200")


def simulate(
    seed: int, fake_rate: float, noise_l2: float, bad_rate: float = 0.0, count: int = 400
) -> tuple[Verdict, int]:
    """One prover of `count` artifacts, validated once.

    Each leaf is independently a fake (a random unit vector, committed by a cheater) with
    probability `fake_rate`, or an unlucky honest leaf that the validator's hardware
    reproduces badly (L2 noise 1.0) with probability `bad_rate`. Every other leaf is
    recomputed with gaussian noise of L2 about `noise_l2`. Returns the verdict and how many
    sampled leaves were fakes or unlucky.
    """
    rnd = random.Random(seed)
    nonces = list(range(count))
    rnd.shuffle(nonces)  # arrival order is not nonce order
    truth = {n: unit_vector(rnd) for n in nonces}
    kind = {n: rnd.random() for n in nonces}
    committed = {
        n: encode_artifact(unit_vector(rnd) if kind[n] < fake_rate else truth[n]) for n in nonces
    }
    tree = SMST()
    tree.insert_many(leaf_data(n, committed[n]) for n in nonces)
    requested = sample_indices(f"block-{seed}", count, PARAMS.sample_size)
    answers = [ProofAnswer.from_dict(a.to_dict()) for a in build_answers(tree, requested)]

    def recompute(asked: list[int]) -> list[bytes]:
        out = []
        for n in asked:
            unlucky = fake_rate <= kind[n] < fake_rate + bad_rate
            out.append(encode_artifact(perturbed(truth[n], rnd, 1.0 if unlucky else noise_l2)))
        return out

    verdict = validate(tree.root(), count, requested, answers, recompute, PARAMS)
    by_rank = sorted(nonces)  # the leaf index is the nonce's rank, not its arrival
    flagged = sum(kind[by_rank[i]] < fake_rate + bad_rate for i in requested)
    return verdict, flagged


def assert_rate_consistent(hits: int, trials: int, probability: float) -> None:
    """`hits` of `trials` is a plausible draw from Binomial(trials, probability) (two-sided
    tails above 1e-4; the seeds are fixed, so this is a check of the model, not a flake)."""
    assert binomial_tail(hits, trials, probability) > 1e-4, (hits, trials, probability)
    assert 1 - binomial_tail(hits + 1, trials, probability) > 1e-4, (hits, trials, probability)


SEEDS = range(50)


def test_honest_prover_is_never_flagged() -> None:
    for seed in SEEDS:
        verdict, _ = simulate(seed, fake_rate=0.0, noise_l2=0.05)
        assert verdict.valid and not verdict.fraud_detected, verdict.reason
        assert verdict.n_mismatches == 0
        assert verdict.max_distance is not None and verdict.max_distance < 0.2
        assert verdict.mean_distance is not None and 0.02 < verdict.mean_distance < 0.08


def test_cheater_with_15_percent_fakes() -> None:
    """Fakes are i.i.d. per leaf and the sample is independent of them, so the number of
    fakes among the 200 sampled leaves is Binomial(200, 0.15) (mean 30) and the detection
    probability per validation is exactly P[X >= 28] = 0.683: 15% is near the test's edge,
    a single validation misses such a cheater about one time in three."""
    p_detect = binomial_tail(fraud_cutoff(200, 0.1, 0.05), 200, 0.15)
    assert 0.68 < p_detect < 0.69
    caught = 0
    for seed in SEEDS:
        verdict, fakes = simulate(seed, fake_rate=0.15, noise_l2=0.05)
        # A random unit vector lands within 0.15 of the true one with negligible probability.
        assert verdict.n_mismatches == fakes
        assert verdict.fraud_detected is (fakes >= 28) and verdict.valid is (fakes < 28)
        caught += verdict.fraud_detected
    assert_rate_consistent(caught, len(SEEDS), p_detect)


def test_cheater_with_30_percent_fakes_is_always_caught() -> None:
    assert binomial_tail(28, 200, 0.3) > 1 - 1e-7  # misses 3.7e-8 of the time
    for seed in SEEDS:
        verdict, fakes = simulate(seed, fake_rate=0.3, noise_l2=0.05)
        assert verdict.fraud_detected and not verdict.valid and verdict.n_mismatches == fakes


def test_false_positive_rate_is_about_alpha() -> None:
    """An honest prover whose leaves mismatch at exactly the tolerated rate (10%) is flagged
    with probability P[X >= 28] = 0.043 < alpha."""
    p_flag = binomial_tail(28, 200, 0.1)
    flagged = 0
    for seed in SEEDS:
        verdict, unlucky = simulate(seed, fake_rate=0.0, noise_l2=0.05, bad_rate=0.1)
        assert verdict.n_mismatches <= unlucky  # noise of L2 ~1 can still land within 0.15
        flagged += verdict.fraud_detected
    assert_rate_consistent(flagged, len(SEEDS), p_flag)
