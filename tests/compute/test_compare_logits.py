"""Gonka's CompareLogits and the verdict rules around it (spec §4), on hand-made answers.

Expected numbers are worked out here from Go's formulas: per validator entry
|v - o| / (1e-6 + |v| + |o|) / 2, o missing -> m0 - (m1 - m0) (single entry: m1 = m0 - 100),
sum / (max(100, N) * len(executor's first list)).
"""

from __future__ import annotations

import math

import pytest

from gonka_cli.compute.compare_logits import (
    LogprobEntry,
    PositionLogprobs,
    compare_logits,
    enforced_tokens,
    has_non_numeric_tokens,
    judge,
    parse_content,
    similarity,
    token_count_inflated,
)
from gonka_cli.errors import InvalidComputeInput


def position(token: str, *entries: tuple[str, float]) -> PositionLogprobs:
    tops = tuple(LogprobEntry(t, lp) for t, lp in entries)
    own = next((lp for t, lp in entries if t == token), 0.0)
    return PositionLogprobs(token, own, tops)


FIVE = (("10", -0.1), ("11", -2.5), ("12", -3.0), ("13", -4.0), ("14", -5.0))
ANSWER = [position("10", *FIVE) for _ in range(3)]


def term(v: float, o: float) -> float:
    return abs(v - o) / (1e-6 + abs(v) + abs(o)) / 2


def test_identical_answers_have_similarity_one() -> None:
    verdict = compare_logits(ANSWER, ANSWER, 0.9)
    assert verdict.passed and verdict.similarity == 1.0 and verdict.reason == "ok"


def test_distance_is_diluted_to_100_positions_and_the_first_lists_width() -> None:
    replayed = [position("10", ("10", -0.2), *FIVE[1:]) for _ in range(3)]
    expected = 1 - 3 * term(-0.2, -0.1) / (100 * 5)
    assert math.isclose(similarity(ANSWER, replayed), expected, rel_tol=1e-12)
    # 150 positions count as themselves.
    long_answer, long_replay = ANSWER * 50, replayed * 50
    assert math.isclose(
        similarity(long_answer, long_replay), 1 - 150 * term(-0.2, -0.1) / (150 * 5), rel_tol=1e-12
    )


def test_a_missing_entry_is_extrapolated_from_the_two_smallest() -> None:
    # The executor listed 3 tokens; the validator's token "99" is missing: o = -3 - (-2.5 + 3).
    answer = [position("10", ("10", -0.1), ("11", -2.5), ("12", -3.0))]
    replayed = [position("10", ("10", -0.1), ("99", -2.0))]
    o = -3.0 - (-2.5 - -3.0)
    assert math.isclose(similarity(answer, replayed), 1 - term(-2.0, o) / (100 * 3), rel_tol=1e-12)


def test_a_single_entry_extrapolates_to_m0_plus_100() -> None:
    answer = [position("10", ("10", -0.5))]
    replayed = [position("10", ("10", -0.5), ("7", -1.0))]
    o = -0.5 + 100.0  # Go: m1 = m0 - 100, o = m0 - (m1 - m0)
    assert math.isclose(similarity(answer, replayed), 1 - term(-1.0, o) / 100, rel_tol=1e-12)


def test_a_repeated_token_keeps_its_last_value_as_a_go_map() -> None:
    answer = [position("10", ("10", -0.1), ("11", -9.0), ("11", -2.0))]
    replayed = [position("10", ("10", -0.1), ("11", -2.0))]
    assert similarity(answer, replayed) == 1.0


def test_masked_entries_compare_as_their_floor() -> None:
    answer = [position("10", ("10", -0.01), ("0", -9999.0), ("1", -9999.0))]
    assert compare_logits(answer, answer, 0.9).similarity == 1.0
    # The replay masks nothing: its second token is far from the floor the executor wrote.
    replayed = [position("10", ("10", -0.01), ("0", -5.0), ("1", -9999.0))]
    expected = 1 - term(-5.0, -9999.0) / (100 * 3)
    assert math.isclose(similarity(answer, replayed), expected, rel_tol=1e-12)


def test_a_longer_replay_is_fine_and_a_shorter_one_fails() -> None:
    longer = compare_logits(ANSWER, [*ANSWER, position("2", ("2", -0.1))], 0.9)
    assert longer.passed and longer.similarity == 1.0
    shorter = compare_logits(ANSWER, ANSWER[:-1], 0.9)
    assert not shorter.passed and shorter.reason == "shorter_replay" and shorter.similarity == 0


def test_a_different_token_string_fails_at_its_position() -> None:
    replayed = [ANSWER[0], position("010", *FIVE), ANSWER[2]]  # "010" is not "10"
    verdict = compare_logits(ANSWER, replayed, 0.5)
    assert not verdict.passed and verdict.reason == "different_token" and verdict.position == 1


def test_empty_lists_make_the_similarity_zero() -> None:
    assert similarity([position("10")], [position("10", ("10", -0.1))]) == 0.0
    assert similarity([position("10", ("10", -0.1))], [position("10")]) == 0.0


def test_nan_and_negative_similarity_are_zero() -> None:
    # A NaN term is skipped, as Go does (JSON cannot carry NaN; a replay might).
    nan = [position("10", ("10", math.nan), ("11", -1.0))]
    assert similarity(nan, [position("10", ("10", -0.1))]) == 1.0
    # A distance above 1 needs lists far wider than the executor's first: 300 against 1.
    wide = [position("10", *[(str(i), -1.0) for i in range(300)])]
    narrow = [position("10", ("10", -1.0))]
    assert similarity(narrow, wide) == 0.0


@pytest.mark.parametrize(("threshold", "passes"), [(0.5, True), (0.999, True), (0.9999999, False)])
def test_the_pass_mark_is_the_models(threshold: float, passes: bool) -> None:
    replayed = [position("10", ("10", -0.11), *FIVE[1:]) for _ in range(3)]
    value = similarity(ANSWER, replayed)
    assert 0.999 < value < 0.9999999
    assert compare_logits(ANSWER, replayed, threshold).passed is passes


def test_judge_applies_every_rule_in_gonkas_order() -> None:
    good = judge(ANSWER, ANSWER, 0.9, claimed_usage=(20, 3), replay_usage=(20, 3))
    assert good.passed and good.reason == "ok"
    for status in (400, 422):
        rejected = judge(ANSWER, [], 0.9, validator_status=status)
        assert rejected.passed and rejected.reason == "validator_rejected"
    text = [position("Hello", ("Hello", -0.1))]
    assert judge(text, text, 0.9, validator_status=400).reason == "non_numeric_tokens"
    inflated = judge(ANSWER, ANSWER, 0.9, claimed_usage=(24, 3), replay_usage=(20, 3))
    assert not inflated.passed and inflated.reason == "inflated_token_counts"
    assert judge(ANSWER, ANSWER, 0.9, claimed_usage=(23, 6), replay_usage=(20, 3)).passed
    assert judge(ANSWER, [], 0.9).reason == "logprobs_presence"
    assert judge([], ANSWER, 0.9).reason == "logprobs_presence"
    assert judge([], [], 0.9).passed
    assert judge(ANSWER, ANSWER[:2], 0.9).reason == "shorter_replay"


def test_token_count_inflation_allows_three() -> None:
    assert not token_count_inflated(13, 10)
    assert token_count_inflated(14, 10)
    assert not token_count_inflated(5, 10)


@pytest.mark.parametrize(
    ("token", "numeric"),
    [
        ("151645", True),
        ("0", True),
        ("007", True),
        ("+5", True),
        ("-0", True),
        ("-1", False),
        ("a", False),
        ("", False),
        (" 1", False),
        ("1.0", False),
        ("9223372036854775807", True),
        ("9223372036854775808", False),
    ],
)
def test_numeric_tokens_as_go_atoi(token: str, numeric: bool) -> None:
    assert has_non_numeric_tokens([position(token, ("1", -0.1))]) is not numeric
    assert has_non_numeric_tokens([position("1", (token, -0.1))]) is not numeric


def test_parse_content_reads_the_openai_shape() -> None:
    content = [
        {
            "token": "10",
            "logprob": -0.1,
            "bytes": [49, 48],
            "top_logprobs": [{"token": "10", "logprob": -0.1, "bytes": [49, 48]}],
        },
        {"token": "11"},
    ]
    parsed = parse_content(content)
    assert parsed[0] == position("10", ("10", -0.1))
    assert parsed[1] == PositionLogprobs("11", 0.0, ())
    assert parse_content(None) == []
    assert enforced_tokens(parsed) == {
        "tokens": [{"token": "10", "top_tokens": ["10"]}, {"token": "11", "top_tokens": []}]
    }


@pytest.mark.parametrize(
    "content",
    [
        "x",
        [1],
        [{"token": 10, "logprob": -0.1}],
        [{"token": "10", "logprob": "-0.1"}],
        [{"token": "10", "logprob": 10**400}],
        [{"token": "10", "top_logprobs": {"a": 1}}],
        [{"token": "10", "top_logprobs": [{"token": "1", "logprob": True}]}],
    ],
)
def test_parse_content_refuses_what_go_cannot_unmarshal(content: object) -> None:
    with pytest.raises(InvalidComputeInput):
        parse_content(content)


@pytest.mark.parametrize("threshold", [-0.1, 1.0, math.nan, "0.9"])
def test_the_pass_mark_must_be_a_similarity(threshold: object) -> None:
    with pytest.raises(InvalidComputeInput):
        compare_logits(ANSWER, ANSWER, threshold)  # type: ignore[arg-type]
