"""Gonka's inference validation verdict: CompareLogits and the rules around it (spec §4).

A validator replays an executor's answer with the executor's tokens enforced and compares the
two `choices[0].logprobs.content` lists. This module is the comparison, written from Gonka's
`decentralized-api/internal/validation/inference_validation.go` (`ExecuteValidation`,
`CompareLogits`, `customDistance`, `positionDistance`, `TokenCountInflated`,
`HasNonNumericTokens`), in this order:

1. the executor's tokens are not decimal token ids (text instead of ids): fail, before any
   replay;
2. the validator's own replay answered HTTP 400 or 422: **pass** (similarity 1);
3. claimed prompt or completion tokens exceed the replay's by more than 3: fail;
4. exactly one side has no logprobs: fail (both empty: pass);
5. the replay is shorter than the answer: fail;
6. a different `token` string at any position: fail;
7. else the similarity: per position, over the validator's top entries with validator logprob
   v and executor logprob o, `|v - o| / (1e-6 + |v| + |o|) / 2`; o missing from the
   executor's list is extrapolated from its two smallest logprobs m0 <= m1 as
   `m0 - (m1 - m0)` (a single entry m0 gives `m0 + 100`, as Go's `m1 = m0 - 100` does);
   `distance = sum / (max(100, N) * len(executor's first top list))`;
   `similarity = 1 - distance` (NaN, infinite or negative: 0); pass iff
   `similarity > threshold`, the model's own pass mark.

Only the standard library: a validator that never loads a model can use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from gonka_cli.errors import InvalidComputeInput
from gonka_cli.validate import is_list

__all__ = [
    "EMPTY_SENTINEL",
    "TOKEN_COUNT_TOLERANCE",
    "LogprobEntry",
    "PositionLogprobs",
    "Verdict",
    "compare_logits",
    "enforced_tokens",
    "has_non_numeric_tokens",
    "judge",
    "parse_content",
    "similarity",
    "token_count_inflated",
]

#: Claimed token counts may exceed the replay's by this much (Go `TokenCountInflated`).
TOKEN_COUNT_TOLERANCE = 3
#: The token an executor stores when it failed; the validator then replays unenforced.
EMPTY_SENTINEL = "<EMPTY>"
_MIN_POSITIONS = 100
_DENOM_EPS = 1e-6
_SINGLE_ENTRY_GAP = 100.0
_INT64_MAX = 2**63 - 1
_ATOI = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class LogprobEntry:
    """One `{token, logprob}` of a position's `top_logprobs`."""

    token: str
    logprob: float


@dataclass(frozen=True)
class PositionLogprobs:
    """One element of `choices[0].logprobs.content`."""

    token: str
    logprob: float
    top_logprobs: tuple[LogprobEntry, ...]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one validation.

    `reason` is one of `ok`, `validator_rejected` (a 400/422 replay: a pass),
    `non_numeric_tokens`, `inflated_token_counts`, `logprobs_presence`, `shorter_replay`,
    `different_token`, `below_threshold`. `position` names the first position at fault
    for `different_token`.
    """

    passed: bool
    similarity: float
    threshold: float
    reason: str
    positions: int = 0
    position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- parsing ------------------------------------------------------------------------------


def _number(value: object, where: str) -> float:
    # Go decodes a JSON number into float64; anything else fails the whole unmarshal.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidComputeInput(f"{where}: logprob {value!r:.40} is not a number")
    try:
        return float(value)
    except OverflowError:
        raise InvalidComputeInput(f"{where}: logprob is beyond float range") from None


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidComputeInput(f"{where}: token {value!r:.40} is not a string")
    return value


def parse_content(content: object) -> list[PositionLogprobs]:
    """`choices[0].logprobs.content` as parsed JSON -> positions.

    Missing fields take Go's zero values ("" and 0); a field of the wrong JSON type raises
    InvalidComputeInput, as Go's unmarshal fails on it.
    """
    if content is None:
        return []
    if not is_list(content):
        raise InvalidComputeInput("logprobs.content must be a list")
    positions = []
    for i, raw in enumerate(content):
        if not isinstance(raw, Mapping):
            raise InvalidComputeInput(f"logprobs.content[{i}] is not an object")
        where = f"logprobs.content[{i}]"
        tops_raw = raw.get("top_logprobs")
        if tops_raw is None:
            tops_raw = []
        if not is_list(tops_raw):
            raise InvalidComputeInput(f"{where}.top_logprobs must be a list")
        tops = []
        for j, entry in enumerate(tops_raw):
            if not isinstance(entry, Mapping):
                raise InvalidComputeInput(f"{where}.top_logprobs[{j}] is not an object")
            tops.append(
                LogprobEntry(
                    _string(entry.get("token", ""), f"{where}.top_logprobs[{j}]"),
                    _number(entry.get("logprob", 0.0), f"{where}.top_logprobs[{j}]"),
                )
            )
        positions.append(
            PositionLogprobs(
                _string(raw.get("token", ""), where),
                _number(raw.get("logprob", 0.0), where),
                tuple(tops),
            )
        )
    return positions


def _atoi_non_negative(text: str) -> bool:
    """Go's `strconv.Atoi(text)` succeeds with a value >= 0 (64-bit int)."""
    if not _ATOI.fullmatch(text):
        return False
    value = int(text)
    return 0 <= value <= _INT64_MAX


def has_non_numeric_tokens(positions: Sequence[PositionLogprobs]) -> bool:
    """Whether any token or top token is not a decimal token id (Go `HasNonNumericTokens`)."""
    return any(
        not _atoi_non_negative(p.token)
        or not all(_atoi_non_negative(e.token) for e in p.top_logprobs)
        for p in positions
    )


def enforced_tokens(positions: Sequence[PositionLogprobs]) -> dict[str, Any]:
    """The `enforced_tokens` body a validator sends for an executor's answer."""
    return {
        "tokens": [
            {"token": p.token, "top_tokens": [e.token for e in p.top_logprobs]} for p in positions
        ]
    }


def token_count_inflated(claimed: int, replayed: int) -> bool:
    """Claimed usage above the replay's by more than `TOKEN_COUNT_TOLERANCE`."""
    return claimed > replayed and claimed - replayed > TOKEN_COUNT_TOLERANCE


# --- the comparison -----------------------------------------------------------------------


def _position_distance(
    original: Sequence[LogprobEntry], validation: Sequence[LogprobEntry]
) -> float:
    if not original or not validation:
        return math.inf  # Go returns an error: the whole distance is then +Inf
    claimed: dict[str, float] = {}
    for entry in original:
        claimed[entry.token] = entry.logprob  # a repeated token keeps its last value, as a Go map
    ordered = sorted(claimed.values())
    m0 = ordered[0]
    m1 = ordered[1] if len(ordered) >= 2 else m0 - _SINGLE_ENTRY_GAP
    extrapolated = m0 - (m1 - m0)
    total = 0.0
    for entry in validation:
        v = entry.logprob
        o = claimed.get(entry.token, extrapolated)
        denom = _DENOM_EPS + abs(v) + abs(o)
        if math.isnan(denom) or denom == 0:
            continue
        term = abs(v - o) / denom / 2.0
        if not math.isnan(term):
            total += term
    return total


def similarity(
    original: Sequence[PositionLogprobs], validation: Sequence[PositionLogprobs]
) -> float:
    """Go's `customSimilarity`: 1 - distance, with NaN, infinite or negative values as 0.

    `validation` must be at least as long as `original`.
    """
    if not original:
        return 1.0
    distance = 0.0
    for o, v in zip(original, validation, strict=False):
        distance += _position_distance(o.top_logprobs, v.top_logprobs)
        if math.isinf(distance):
            return 0.0
    total = max(_MIN_POSITIONS, len(original))
    if original[0].top_logprobs:
        total *= len(original[0].top_logprobs)
    value = 1.0 - distance / total
    if math.isnan(value) or math.isinf(value) or value < 0:
        return 0.0
    return value


def compare_logits(
    original: Sequence[PositionLogprobs],
    validation: Sequence[PositionLogprobs],
    threshold: float,
) -> Verdict:
    """Go's `CompareLogits` with the model's pass mark: rules 5 to 7 of the module docstring."""
    _check_threshold(threshold)
    n = len(original)
    if len(validation) < n:
        return Verdict(False, 0.0, threshold, "shorter_replay", n)
    for i in range(n):
        if original[i].token != validation[i].token:
            return Verdict(False, 0.0, threshold, "different_token", n, i)
    value = similarity(original, validation)
    passed = value > threshold
    return Verdict(passed, value, threshold, "ok" if passed else "below_threshold", n)


def _check_threshold(threshold: float) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise InvalidComputeInput(f"the pass mark must be a number, got {threshold!r:.40}")
    if not 0 <= threshold < 1:
        raise InvalidComputeInput(f"the pass mark must be in [0, 1), got {threshold!r:.40}")


def judge(
    original: Sequence[PositionLogprobs],
    validation: Sequence[PositionLogprobs],
    threshold: float,
    *,
    validator_status: int = 200,
    claimed_usage: tuple[int, int] | None = None,
    replay_usage: tuple[int, int] | None = None,
) -> Verdict:
    """The whole verdict of Go's `ExecuteValidation` once the replay is in.

    `validator_status` is the HTTP status of the validator's own replay; the usages are
    `(prompt_tokens, completion_tokens)` as the executor claimed them and as the replay
    counted them (None: not checked, as Go does when the replay gives no usage).
    """
    _check_threshold(threshold)
    n = len(original)
    if has_non_numeric_tokens(original):
        return Verdict(False, 0.0, threshold, "non_numeric_tokens", n)
    if validator_status in (400, 422):
        return Verdict(True, 1.0, threshold, "validator_rejected", n)
    if claimed_usage is not None and replay_usage is not None:
        if any(
            token_count_inflated(c, r) for c, r in zip(claimed_usage, replay_usage, strict=True)
        ):
            return Verdict(False, 0.0, threshold, "inflated_token_counts", n)
    if (n == 0) != (len(validation) == 0):
        return Verdict(False, 0.0, threshold, "logprobs_presence", n)
    return compare_logits(original, validation, threshold)
