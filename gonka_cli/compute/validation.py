"""PoC validation of one prover: sampling, answer checks and the binomial fraud test.

Reference §2, "Commitments and proofs". A prover has committed `(count, root)`, the sparse
Merkle sum tree of its artifacts keyed by nonce (`gonka_cli.compute.smst`). The validator:

1. samples leaf indices with `sample_indices(seed, count, sample_size)`, where `seed` is
   something the prover could not predict when it committed (a fresh block hash);
2. asks the prover for one `ProofAnswer` per sampled index (`build_answers` on the prover's
   side) and runs the structural checks of `check_answers`: exact coverage of the requested
   indices, 12 finite fp16 values each, the SMST proof against the committed `(count, root)`
   (path = the nonce's bits, rank = the sampled index, root count = the committed count),
   no nonce twice, and porosity `max|nonce| / count < max_porosity`;
3. recomputes the sampled nonces itself and counts mismatches (L2 distance above
   `dist_threshold`); with `k` mismatches of `n` samples the prover is a fraud when
   `P[X >= k] < alpha` for `X ~ Binomial(n, p_mismatch)` (`validate`).

Only the standard library is used; the recomputation is injected, so this module needs
neither torch nor numpy.

The fraud decision is exact: the binomial tail is summed in integer arithmetic and compared
with `alpha` exactly, so every validator implementation reaches the same verdict even when the
p-value lies within rounding error of `alpha`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from typing import Any

from gonka_cli.compute.artifacts import (
    ARTIFACT_BYTES,
    K_DIM,
    NONCE_MAX,
    NONCE_MIN,
    artifact_distance,
    check_nonce,
    decode_artifact,
    leaf_data,
    parse_leaf,
)
from gonka_cli.compute.smst import MAX_DEPTH, PROOF_ITEM_BYTES, SMST, verify_proof
from gonka_cli.errors import InvalidComputeInput, InvalidProof

log = logging.getLogger(__name__)

#: A sanity bound on `PocParams.sample_size` (the exact binomial test costs n^2).
MAX_SAMPLE_SIZE = 10_000
#: The largest count `sample_indices` draws from (a commitment proves at most
#: `smst.MAX_COUNT` leaves; larger counts are refused by the node and fail every proof).
MAX_SAMPLE_COUNT = 2**62
#: A proof has one item per level of the tree, at most 32; longer is malformed.
MAX_PROOF_ITEMS = MAX_DEPTH

_SAMPLE_DOMAIN = b"gonka-poc-sample-v1"
_LE64 = struct.Struct("<Q")


# --- parameters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PocParams:
    """The validation parameters of one model (governance values on a real chain).

    `dist_threshold` 0.15 is the devnet's value, calibrated by `scripts/calibrate_compute.py`
    on gonka-small (docs/compute.md, "Calibration"): 5x the largest honest fp32-vs-bf16
    distance measured, while every shortcut tried (other weights, skipped layers, a cut
    context, 4-bit weights) mismatches on 97% or more of its nonces. Mainnet's 0.4, set for
    FP8 hosts, lets a skipped last layer or 4-bit weights pass on most nonces. A prover is a
    fraud when the p-value of its mismatch count is below `alpha`.
    """

    k_dim: int = K_DIM
    dist_threshold: float = 0.15
    sample_size: int = 200
    p_mismatch: float = 0.1
    alpha: float = 0.05
    max_porosity: float = 100.0

    def __post_init__(self) -> None:
        def number(name: str) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidComputeInput(f"PoC parameter {name} must be a number, got {value!r}")
            try:
                finite = math.isfinite(value)
            except OverflowError:  # a JSON integer beyond float range
                finite = False
            if not finite:
                raise InvalidComputeInput(f"PoC parameter {name} must be finite, got {value!r:.40}")
            # Frozen, but from_dict may hand over JSON integers: store floats as declared.
            object.__setattr__(self, name, float(value))
            return float(value)

        if self.k_dim != K_DIM or isinstance(self.k_dim, bool):
            raise InvalidComputeInput(
                f"k_dim must be {K_DIM} (the artifact format), got {self.k_dim!r}"
            )
        if number("dist_threshold") <= 0:
            raise InvalidComputeInput(f"dist_threshold must be > 0, got {self.dist_threshold}")
        if not isinstance(self.sample_size, int) or isinstance(self.sample_size, bool):
            raise InvalidComputeInput(f"sample_size must be an integer, got {self.sample_size!r}")
        if not 1 <= self.sample_size <= MAX_SAMPLE_SIZE:
            raise InvalidComputeInput(
                f"sample_size must be in [1, {MAX_SAMPLE_SIZE}], got {self.sample_size}"
            )
        if not 0 < number("p_mismatch") < 1:
            raise InvalidComputeInput(f"p_mismatch must be in (0, 1), got {self.p_mismatch}")
        if not 0 < number("alpha") < 1:
            raise InvalidComputeInput(f"alpha must be in (0, 1), got {self.alpha}")
        if number("max_porosity") <= 0:
            raise InvalidComputeInput(f"max_porosity must be > 0, got {self.max_porosity}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PocParams:
        """Parameters from a mapping; missing keys take the defaults, unknown keys raise."""
        if not isinstance(data, Mapping):
            raise InvalidComputeInput("PoC parameters must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidComputeInput(f"unknown PoC parameter(s): {', '.join(map(str, unknown))}")
        return cls(**dict(data))


# --- sampling -----------------------------------------------------------------------------


def sample_indices(seed: str | bytes, count: int, sample_size: int) -> list[int]:
    """The leaf indices to check: `min(count, sample_size)` distinct indices in `[0, count)`.

    Part of the protocol, so any implementation must reproduce it bit for bit:

    - `seed` bytes are the seed as given (a `str` is encoded as UTF-8, so a block hash passed
      as text is hashed as that text); `s = SHA-256(seed bytes)`.
    - When `count <= sample_size` the answer is `[0, 1, ..., count - 1]` and nothing is drawn.
    - A stream of 64-bit words: block `j = 0, 1, 2, ...` is
      `SHA-256(b"gonka-poc-sample-v1" || s || LE64(count) || LE64(j))`, and each block gives
      four words, its bytes `[0:8]`, `[8:16]`, `[16:24]`, `[24:32]` read as little-endian
      unsigned integers, used in that order.
    - `draw(m)`, uniform in `[0, m)`: take the next word `w`; if
      `w >= 2**64 - (2**64 mod m)` discard it and take the next; return `w mod m`.
    - A partial Fisher-Yates shuffle of `a = [0, 1, ..., count - 1]`: for `i` in
      `0 .. sample_size - 1`, `j = i + draw(count - i)`, swap `a[i]` and `a[j]`.
    - The result is `a[0 : sample_size]` sorted ascending.
    """
    if isinstance(seed, str):
        try:
            seed_bytes = seed.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidComputeInput("the sampling seed holds a lone surrogate") from None
    elif isinstance(seed, (bytes, bytearray)):
        seed_bytes = bytes(seed)
    else:
        raise InvalidComputeInput("the sampling seed must be text or bytes")
    for name, value in (("count", count), ("sample_size", sample_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidComputeInput(f"{name} must be a non-negative integer, got {value!r}")
    if count > MAX_SAMPLE_COUNT:
        raise InvalidComputeInput(f"count must be at most {MAX_SAMPLE_COUNT}, got {count}")
    if count <= sample_size:
        return list(range(count))

    prefix = _SAMPLE_DOMAIN + hashlib.sha256(seed_bytes).digest() + _LE64.pack(count)
    words: list[int] = []
    block = 0

    def draw(m: int) -> int:
        nonlocal block
        limit = 2**64 - 2**64 % m
        while True:
            if not words:
                digest = hashlib.sha256(prefix + _LE64.pack(block)).digest()
                block += 1
                # Reversed so that pop() yields the words in stream order.
                words.extend(reversed(struct.unpack("<4Q", digest)))
            word = words.pop()
            if word < limit:
                return word % m

    # A dict stands in for the virtual array: only the touched positions are stored.
    moved: dict[int, int] = {}
    for i in range(sample_size):
        j = i + draw(count - i)
        moved[i], moved[j] = moved.get(j, j), moved.get(i, i)
    return sorted(moved.get(i, i) for i in range(sample_size))


# --- answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofAnswer:
    """A prover's answer for one sampled leaf.

    JSON (`to_dict`): `{"leaf_index": int, "nonce": int, "vector": base64 of the 24-byte
    artifact (standard alphabet, padded), "proof": [lower-case hex of each 36-byte item]}`,
    where an item is a sibling's hash and its LE32 leaf count, from the root down
    (`gonka_cli.compute.smst`). `leaf_index` is the nonce's rank in ascending uint32 order.
    """

    leaf_index: int
    nonce: int
    vector: bytes
    proof: tuple[bytes, ...]

    @property
    def leaf_data(self) -> bytes:
        """`LE32(nonce) || vector`; raises InvalidComputeInput when either is malformed."""
        return leaf_data(self.nonce, self.vector)

    def to_dict(self) -> dict[str, Any]:
        return {
            "leaf_index": self.leaf_index,
            "nonce": self.nonce,
            "vector": base64.b64encode(self.vector).decode("ascii"),
            "proof": [item.hex() for item in self.proof],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProofAnswer:
        """Parse one answer; raise InvalidProof (or InvalidComputeInput for the nonce or
        the vector's base64) when the JSON is malformed or has keys other than the four.

        The vector's length and values are not checked here but by `check_answers`, so one
        bad vector fails that leaf in the verdict rather than the whole message.
        """
        if not isinstance(data, Mapping):
            raise InvalidProof("a proof answer must be a JSON object")
        expected = {"leaf_index", "nonce", "vector", "proof"}
        if set(data) != expected:
            missing = sorted(expected - set(data))
            extra = sorted(map(str, set(data) - expected))
            raise InvalidProof(
                f"a proof answer has the keys {', '.join(sorted(expected))}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unexpected {', '.join(extra)}" if extra else "")
            )
        index = data["leaf_index"]
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidProof(f"leaf_index must be a non-negative integer, got {index!r}")
        nonce = check_nonce(data["nonce"])
        text = data["vector"]
        if not isinstance(text, str):
            raise InvalidComputeInput("vector must be a base64 string")
        try:
            vector = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidComputeInput("vector is not valid base64") from None
        items = data["proof"]
        if not isinstance(items, list) or len(items) > MAX_PROOF_ITEMS:
            raise InvalidProof(f"proof must be a list of at most {MAX_PROOF_ITEMS} hex items")
        proof = []
        for item in items:
            if not isinstance(item, str) or len(item) != 2 * PROOF_ITEM_BYTES:
                raise InvalidProof(f"each proof item is {2 * PROOF_ITEM_BYTES} hex characters")
            try:
                proof.append(bytes.fromhex(item))
            except ValueError:
                raise InvalidProof("a proof item is not valid hex") from None
        return cls(leaf_index=index, nonce=nonce, vector=vector, proof=tuple(proof))


def build_answers(
    tree: SMST, requested: Sequence[int], count: int | None = None
) -> tuple[ProofAnswer, ...]:
    """The prover's side: answers for `requested` against its commitment of `count` leaves.

    `count` is the count the prover committed (default: all leaves); the leaves and proofs
    are those of the tree of its first `count` leaves, and verify against
    `tree.root_at(count)`. Raises InvalidProof for an index outside `[0, count)`.
    """
    answers = []
    for index in requested:
        data, proof = tree.leaf_and_proof(index, count)
        nonce, vector = parse_leaf(data)
        answers.append(ProofAnswer(index, nonce, vector, tuple(proof)))
    return tuple(answers)


@dataclass(frozen=True)
class LeafCheck:
    """The structural outcome for one requested leaf; `reason` is empty when it passed."""

    leaf_index: int
    ok: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AnswerCheck:
    """The structural checks of one prover's answers (`check_answers`).

    `outcomes` has one entry per requested index, in the order requested. `failures` lists
    every failure as `(leaf_index, reason)`: the failed outcomes, answers for indices that
    were not requested, and a porosity failure (reported on the leaf with the largest |nonce|).
    """

    outcomes: tuple[LeafCheck, ...]
    failures: tuple[tuple[int, str], ...]
    porosity: float

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "porosity": self.porosity,
            "outcomes": [o.to_dict() for o in self.outcomes],
            "failures": [{"leaf_index": i, "reason": r} for i, r in self.failures],
        }


def _check_requested(count: int, requested: Sequence[int]) -> list[int]:
    """The validator's own list of indices: it must be distinct and inside `[0, count)`."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise InvalidComputeInput(f"count must be an integer, got {count!r}")
    indices = list(requested)
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise InvalidComputeInput(f"requested leaf index {index!r} is not in [0, {count})")
    if len(set(indices)) != len(indices):
        raise InvalidComputeInput("requested leaf indices must be distinct")
    if not indices:
        raise InvalidComputeInput("no leaf indices were requested")
    return indices


def _vector_problem(vector: object) -> str:
    """Why `vector` is not 12 finite fp16 values, or "" when it is."""
    if not isinstance(vector, (bytes, bytearray)):
        return "the vector is not bytes"
    if len(vector) != ARTIFACT_BYTES:
        return f"the vector is {len(vector)} bytes, expected {ARTIFACT_BYTES} ({K_DIM} fp16 values)"
    try:
        decode_artifact(bytes(vector))
    except InvalidComputeInput:
        return "the vector holds NaN or infinite values"
    return ""


def check_answers(
    root: bytes,
    count: int,
    requested: Sequence[int],
    answers: Sequence[ProofAnswer],
    params: PocParams | None = None,
) -> AnswerCheck:
    """Run the structural checks on a prover's answers against its commitment.

    Raises InvalidComputeInput only for the validator's own mistakes (`requested` not
    distinct indices in `[0, count)`); everything the prover got wrong is a failure in the
    result. Each requested leaf reports its first failure, in this order: no answer or
    several, a malformed vector, a nonce outside int32, a proof that does not match
    `(count, root)`, a nonce also answered for another leaf.
    """
    params = params or PocParams()
    indices = _check_requested(count, requested)
    wanted = set(indices)
    by_index: dict[int, list[ProofAnswer]] = {}
    extra: set[int] = set()
    for answer in answers:
        if isinstance(answer.leaf_index, bool) or not isinstance(answer.leaf_index, int):
            # ProofAnswer.from_dict never builds one; only a caller's own object can be this.
            raise InvalidProof(f"leaf_index must be an integer, got {answer.leaf_index!r}")
        by_index.setdefault(answer.leaf_index, []).append(answer)
        if answer.leaf_index not in wanted:
            extra.add(answer.leaf_index)

    reasons: dict[int, str] = {}
    checked: dict[int, ProofAnswer] = {}
    for index in indices:
        given = by_index.get(index, [])
        if not given:
            reasons[index] = "no answer for this requested leaf"
            continue
        if len(given) > 1:
            reasons[index] = f"answered {len(given)} times"
            continue
        answer = given[0]
        problem = _vector_problem(answer.vector)
        nonce = answer.nonce
        if problem:
            reasons[index] = problem
        elif isinstance(nonce, bool) or not isinstance(nonce, int):
            reasons[index] = "the nonce is not an integer"
        elif not NONCE_MIN <= nonce <= NONCE_MAX:
            reasons[index] = f"nonce {nonce} is outside int32"
        elif not verify_proof(root, count, index, answer.leaf_data, answer.proof):
            reasons[index] = (
                "the sum-tree proof does not match the committed root, count and leaf index"
            )
        else:
            checked[index] = answer

    holders: dict[int, list[int]] = {}
    for index, answer in checked.items():
        holders.setdefault(answer.nonce, []).append(index)
    for nonce, owners in holders.items():
        if len(owners) > 1:
            for index in owners:
                others = ", ".join(str(i) for i in owners if i != index)
                reasons[index] = f"nonce {nonce} is also committed at leaf {others}"

    failures = [(i, reasons[i]) for i in sorted(reasons)]
    failures += [(i, "answered but not requested") for i in sorted(extra)]
    porosity = 0.0
    if checked:
        widest = max(checked.values(), key=lambda a: (abs(a.nonce), a.leaf_index))
        # Nonces are handed out densely, so an honest prover has max|nonce| close to count.
        porosity = abs(widest.nonce) / count
        if porosity >= params.max_porosity:
            failures.append(
                (
                    widest.leaf_index,
                    f"porosity max|nonce|/count = {porosity:.4g} is not below "
                    f"{params.max_porosity:g}: the nonces are too sparse for the count",
                )
            )
    outcomes = tuple(LeafCheck(i, i not in reasons, reasons.get(i, "")) for i in indices)
    return AnswerCheck(outcomes=outcomes, failures=tuple(failures), porosity=porosity)


# --- the binomial test --------------------------------------------------------------------


def _check_binomial(k: int, n: int, p: float) -> None:
    for name, value in (("k", k), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidComputeInput(f"{name} must be an integer, got {value!r}")
    if n < 0:
        raise InvalidComputeInput(f"n must be >= 0, got {n}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise InvalidComputeInput(f"p must be a probability in [0, 1], got {p!r}")


def _ratio(p: float) -> tuple[int, int, int]:
    """`p = a / d` exactly (the float's binary value), and `b = d - a`."""
    a, d = Fraction(p).as_integer_ratio()
    return a, d - a, d


def _tail_ratio(k: int, n: int, p: float) -> tuple[int, int]:
    """`P[X >= k]` as an exact `(numerator, denominator)`."""
    if k <= 0 or p == 1:
        return (1, 1) if k <= n else (0, 1)
    if k > n or p == 0:
        return 0, 1
    a, b, d = _ratio(p)
    # sum_{i=k}^{n} C(n, i) a^i b^(n-i) over d^n, all in integers.
    term: int = math.comb(n, k) * a**k * b ** (n - k)
    total = term
    for i in range(k, n):
        # C(n, i+1) a^(i+1) b^(n-i-1) = term * (n-i) a / ((i+1) b), an exact division.
        term = term * (n - i) * a // ((i + 1) * b)
        total += term
    denominator: int = d**n
    return total, denominator


def _tail_below(k: int, n: int, p: float, alpha: float) -> bool:
    """Whether `P[X >= k] < alpha`, decided exactly."""
    num, den = _tail_ratio(k, n, p)
    alpha_num, alpha_den = Fraction(alpha).as_integer_ratio()
    return num * alpha_den < alpha_num * den


def binomial_tail(k: int, n: int, p: float) -> float:
    """`P[X >= k]` for `X ~ Binomial(n, p)`: the one-sided p-value of `k` mismatches.

    Exact: the sum is done in integers for the exact binary value of `p`, and the result is
    the correctly rounded float of that fraction. `k <= 0` gives 1.0 and `k > n` gives 0.0.
    The cost grows as n^2 (n-term sums of n-digit integers): about a millisecond for
    n = 200, a tenth of a second for n = 2,000.
    """
    _check_binomial(k, n, p)
    num, den = _tail_ratio(k, n, p)
    # int / int is correctly rounded in Python, even for numbers far beyond float range.
    return num / den


def fraud_cutoff(n: int, p: float, alpha: float) -> int:
    """The smallest mismatch count `k` with `P[X >= k] < alpha` (exactly); `n + 1` if none.

    With the mainnet values `fraud_cutoff(200, 0.1, 0.05)` is 28.
    """
    _check_binomial(0, n, p)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
        raise InvalidComputeInput(f"alpha must be in (0, 1], got {alpha!r}")
    if p in (0, 1):
        return next(k for k in range(n + 2) if _tail_below(k, n, p, alpha))
    a, b, d = _ratio(p)
    alpha_num, alpha_den = Fraction(alpha).as_integer_ratio()
    bound: int = alpha_num * d**n
    # Walk down from k = n, growing the tail one term at a time, until it reaches alpha.
    term: int = a**n
    tail = 0
    for i in range(n, 0, -1):
        tail += term
        if tail * alpha_den >= bound:
            return i + 1
        term = term * i * b // ((n - i + 1) * a)
    return 1  # P[X >= 0] = 1 >= alpha: at least one mismatch is needed


# --- the verdict --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The outcome of validating one prover.

    `valid` is whether its weight should be accepted: false after a structural failure
    (then nothing was recomputed: `p_value` and the distances are None) or when
    `fraud_detected` (the binomial test). `failures` lists `(leaf_index, reason)` for the
    structural failures, or else for each mismatched leaf. `mismatch_cutoff` is the number of
    mismatches that makes a fraud for this sample size.
    """

    valid: bool
    fraud_detected: bool
    reason: str
    n_sampled: int
    n_mismatches: int
    p_value: float | None
    max_distance: float | None
    mean_distance: float | None
    mismatch_cutoff: int
    failures: tuple[tuple[int, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failures"] = [{"leaf_index": i, "reason": r} for i, r in self.failures]
        return data


def validate(
    root: bytes,
    count: int,
    requested: Sequence[int],
    answers: Sequence[ProofAnswer],
    recompute: Callable[[list[int]], Sequence[bytes]],
    params: PocParams | None = None,
) -> Verdict:
    """Validate one prover's answers for `requested` against its commitment `(count, root)`.

    `recompute(nonces)` returns the validator's own artifacts (24 bytes each) for the
    nonces, in order; it is called once, only when the structural checks pass. A leaf
    mismatches when the L2 distance between the two artifacts exceeds `dist_threshold`.
    Raises InvalidComputeInput for the validator's own mistakes (bad `requested`, a
    `recompute` that returns the wrong number of artifacts or malformed ones).
    """
    params = params or PocParams()
    if isinstance(count, int) and not isinstance(count, bool) and count < 1:
        return Verdict(
            valid=False,
            fraud_detected=False,
            reason=f"invalid: the commitment holds no artifacts (count {count})",
            n_sampled=0,
            n_mismatches=0,
            p_value=None,
            max_distance=None,
            mean_distance=None,
            mismatch_cutoff=1,
        )
    n = len(_check_requested(count, requested))
    cutoff = fraud_cutoff(n, params.p_mismatch, params.alpha)
    check = check_answers(root, count, requested, answers, params)
    if not check.ok:
        first_index, first_reason = check.failures[0]
        reason = (
            f"invalid: {len(check.failures)} structural failure(s) in the answers for "
            f"{n} sampled leaves; first, leaf {first_index}: {first_reason}"
        )
        log.info("%s", reason)
        return Verdict(
            valid=False,
            fraud_detected=False,
            reason=reason,
            n_sampled=n,
            n_mismatches=0,
            p_value=None,
            max_distance=None,
            mean_distance=None,
            mismatch_cutoff=cutoff,
            failures=check.failures,
        )

    by_index = {a.leaf_index: a for a in answers}
    ordered = [by_index[i] for i in requested]
    nonces = [a.nonce for a in ordered]
    mine = list(recompute(nonces))
    if len(mine) != n:
        raise InvalidComputeInput(f"recompute returned {len(mine)} artifacts for {n} nonces")
    distances: list[float] = []
    mismatches: list[tuple[int, str]] = []
    for answer, own in zip(ordered, mine, strict=True):
        problem = _vector_problem(own)
        if problem:
            raise InvalidComputeInput(f"the recomputed artifact of nonce {answer.nonce}: {problem}")
        if _vector_problem(answer.vector):
            # Unreachable after check_answers; kept so a malformed vector can never pass.
            mismatches.append((answer.leaf_index, "malformed vector"))
            continue
        distance = artifact_distance(answer.vector, own)
        distances.append(distance)
        if distance > params.dist_threshold:
            mismatches.append(
                (
                    answer.leaf_index,
                    f"distance {distance:.4f} > threshold {params.dist_threshold:g}",
                )
            )

    k = len(mismatches)
    p_value = binomial_tail(k, n, params.p_mismatch)
    fraud = _tail_below(k, n, params.p_mismatch, params.alpha)
    summary = (
        f"{k} of {n} sampled artifacts mismatched (distance > {params.dist_threshold:g}), "
        f"p-value {p_value:.3g}"
    )
    if fraud:
        reason = f"fraud: {summary} < alpha {params.alpha:g} ({cutoff} or more is fraud)"
    else:
        reason = f"valid: {summary} >= alpha {params.alpha:g} ({cutoff} or more would be fraud)"
    log.info("%s", reason)
    return Verdict(
        valid=not fraud,
        fraud_detected=fraud,
        reason=reason,
        n_sampled=n,
        n_mismatches=k,
        p_value=p_value,
        max_distance=max(distances) if distances else None,
        mean_distance=math.fsum(distances) / len(distances) if distances else None,
        mismatch_cutoff=cutoff,
        failures=tuple(mismatches),
    )
