"""Generation with logprobs and replay validation on gonka-tiny."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch

from gonka_cli.compute import tokenizer as tok
from gonka_cli.compute.inference import (
    DEFAULT_REPLAY_THRESHOLD,
    Generation,
    generate,
    replay,
)
from gonka_cli.compute.models import GonkaModel, build_model, quantized_copy
from gonka_cli.errors import InvalidComputeInput

PROMPT = tok.chat_template([{"role": "user", "content": "Tell me about the Gonka network."}])
LONG = 150  # over the 100 positions below which the distance is diluted


@pytest.fixture(scope="module")
def greedy(tiny: GonkaModel) -> Generation:
    return generate(tiny, PROMPT, LONG, stop_tokens=())


@pytest.fixture(scope="module")
def sampled(tiny: GonkaModel) -> Generation:
    return generate(tiny, PROMPT, LONG, temperature=1.0, top_p=0.95, seed=11, stop_tokens=())


@pytest.fixture(scope="module")
def other_model(tiny: GonkaModel) -> GonkaModel:
    return build_model(dataclasses.replace(tiny.spec, weights_seed=2))


def _validator_logprobs(model: GonkaModel, prompt: list[int], tokens: tuple[int, ...]) -> Any:
    with torch.inference_mode():
        ids = torch.tensor([prompt + list(tokens)])
        return torch.log_softmax(model.forward_tokens(ids)[0], dim=-1)[len(prompt) - 1 : -1]


def test_greedy_generation_shape(tiny: GonkaModel, greedy: Generation) -> None:
    assert len(greedy.tokens) == LONG and greedy.finish_reason == "length"
    assert len(greedy.top_logprobs) == len(greedy.token_logprobs) == LONG
    expected = _validator_logprobs(tiny, PROMPT, greedy.tokens)
    for i, (token, entries) in enumerate(zip(greedy.tokens, greedy.top_logprobs, strict=True)):
        assert len(entries) == 5
        assert entries[0][0] == token  # greedy emits the best token
        values = [lp for _, lp in entries]
        assert values == sorted(values, reverse=True)
        assert math.isclose(greedy.token_logprobs[i], entries[0][1])
        assert int(torch.argmax(expected[i])) == token
        assert abs(float(expected[i, token]) - entries[0][1]) < 1e-4


def test_sampled_tokens_are_always_listed(sampled: Generation) -> None:
    assert sampled.tokens != ()
    outside = 0
    for token, entries, logprob in zip(
        sampled.tokens, sampled.top_logprobs, sampled.token_logprobs, strict=True
    ):
        ids = [t for t, _ in entries]
        assert token in ids and dict(entries)[token] == logprob
        assert len(entries) in (5, 6)
        outside += len(entries) == 6
    assert outside > 0  # some sampled tokens lie outside the top 5 and are appended


def test_seeded_sampling_repeats(tiny: GonkaModel, sampled: Generation) -> None:
    again = generate(tiny, PROMPT, LONG, temperature=1.0, top_p=0.95, seed=11, stop_tokens=())
    assert again == sampled
    other = generate(tiny, PROMPT, LONG, temperature=1.0, top_p=0.95, seed=12, stop_tokens=())
    assert other.tokens != sampled.tokens


def test_tiny_top_p_is_greedy(tiny: GonkaModel, greedy: Generation) -> None:
    nucleus = generate(tiny, PROMPT, 30, temperature=0.8, top_p=1e-9, seed=1, stop_tokens=())
    assert nucleus.tokens == greedy.tokens[:30]


@pytest.mark.parametrize("temperature", [1e-300, 1e-320])
def test_tiny_temperature_is_greedy(
    tiny: GonkaModel, greedy: Generation, temperature: float
) -> None:
    # logits / 1e-320 overflow to inf, and a softmax of infinities is NaN.
    cold = generate(tiny, PROMPT, 10, temperature=temperature, seed=1, stop_tokens=())
    assert cold.tokens == greedy.tokens[:10]


def test_stops_at_eos(tiny: GonkaModel) -> None:
    with torch.inference_mode():
        logits = tiny.forward_tokens(torch.arange(tok.VOCAB_SIZE)[:, None])[:, 0]
    leads_to_eos = (torch.argmax(logits, dim=-1) == tok.EOS_ID).nonzero()
    assert leads_to_eos.numel(), "no single-token prompt makes gonka-tiny say <eos>"
    prompt = [int(leads_to_eos[0, 0])]
    result = generate(tiny, prompt, 20)
    assert result.tokens == (tok.EOS_ID,) and result.finish_reason == "stop"
    ignoring = generate(tiny, prompt, 3, stop_tokens=())
    assert ignoring.tokens[0] == tok.EOS_ID and ignoring.finish_reason == "length"


def test_custom_stop_tokens(tiny: GonkaModel, greedy: Generation) -> None:
    stop = greedy.tokens[4]
    first = greedy.tokens.index(stop)
    result = generate(tiny, PROMPT, LONG, stop_tokens={stop})
    assert result.tokens == greedy.tokens[: first + 1] and result.finish_reason == "stop"


def test_generation_to_dict_is_json(greedy: Generation) -> None:
    data = json.loads(json.dumps(greedy.to_dict()))
    assert data["tokens"] == list(greedy.tokens)
    assert data["top_logprobs"][0][0] == {
        "token": greedy.top_logprobs[0][0][0],
        "logprob": greedy.top_logprobs[0][0][1],
    }


@pytest.mark.parametrize(
    ("prompt", "max_tokens", "kwargs"),
    [
        ([], 5, {}),
        ("hello", 5, {}),
        ([tok.VOCAB_SIZE], 5, {}),
        ([-1], 5, {}),
        ([1, True], 5, {}),
        ([1], 0, {}),
        ([1] * 500, 13, {}),  # 513 positions; gonka-tiny holds 512
        ([1], 5, {"temperature": -0.1}),
        ([1], 5, {"temperature": float("nan")}),
        ([1], 5, {"temperature": 10**400}),
        ([1], 5, {"top_p": 0.0}),
        ([1], 5, {"top_p": 1.5}),
        ([1], 5, {"seed": -1}),
        ([1], 5, {"top_k_logprobs": 21}),
    ],
)
def test_generate_rejects_bad_inputs(
    tiny: GonkaModel, prompt: Any, max_tokens: int, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidComputeInput):
        generate(tiny, prompt, max_tokens, **kwargs)


def test_full_context_is_allowed(tiny: GonkaModel) -> None:
    result = generate(tiny, [1] * 510, 2, stop_tokens=())
    assert len(result.tokens) == 2


# --- replay -------------------------------------------------------------------------------


def test_replay_passes_honest_answers(
    tiny: GonkaModel, tiny_bf16: GonkaModel, greedy: Generation, sampled: Generation
) -> None:
    for answer in (greedy, sampled):
        result = replay(tiny, PROMPT, answer.tokens, answer.top_logprobs)
        assert result.passed and result.reason == "ok", result
        assert result.similarity > 0.9999 and result.positions == LONG
        assert result.threshold == DEFAULT_REPLAY_THRESHOLD
        # A validator running the same model in bf16 agrees too.
        bf16 = replay(tiny_bf16, PROMPT, answer.tokens, answer.top_logprobs)
        assert bf16.passed and bf16.similarity > 0.98, bf16


def test_replay_accepts_the_json_form(tiny: GonkaModel, sampled: Generation) -> None:
    data = sampled.to_dict()
    result = replay(tiny, PROMPT, data["tokens"], data["top_logprobs"])
    assert result.passed and result.similarity > 0.9999
    assert json.loads(json.dumps(result.to_dict()))["passed"] is True


def test_replay_fails_a_changed_token(tiny: GonkaModel, sampled: Generation) -> None:
    tokens = list(sampled.tokens)
    position = 40
    listed = {t for t, _ in sampled.top_logprobs[position]}
    tokens[position] = next(t for t in range(tok.VOCAB_SIZE) if t not in listed)
    result = replay(tiny, PROMPT, tokens, sampled.top_logprobs)
    assert not result.passed and result.failed_position == position
    assert result.similarity == 0.0 and "emitted token" in result.reason


def test_replay_fails_another_model(
    tiny: GonkaModel, other_model: GonkaModel, greedy: Generation
) -> None:
    for kwargs in ({}, {"temperature": 1.0, "seed": 5}):
        answer = generate(other_model, PROMPT, LONG, stop_tokens=(), **kwargs)
        result = replay(tiny, PROMPT, answer.tokens, answer.top_logprobs)
        assert not result.passed, f"another model's answer scored {result.similarity:.4f}"
        assert result.similarity < DEFAULT_REPLAY_THRESHOLD - 0.02, result
        assert result.failed_position is None and "similarity" in result.reason
    # The other way round too: tiny's honest answer checked on the other model.
    reverse = replay(other_model, PROMPT, greedy.tokens, greedy.top_logprobs)
    assert not reverse.passed, reverse


@pytest.mark.parametrize(("bits", "passes"), [(8, True), (4, False), (3, False)])
def test_replay_judges_an_executor_of_another_precision(
    tiny: GonkaModel, bits: int, passes: bool
) -> None:
    # An executor serving the model with coarser weights than the network's: 8-bit stays
    # within the threshold (like bf16), 4 and 3 bits go beyond it.
    executor = quantized_copy(tiny, bits)
    for kwargs in ({}, {"temperature": 1.0, "seed": 3}):
        answer = generate(executor, PROMPT, LONG, stop_tokens=(), **kwargs)
        result = replay(tiny, PROMPT, answer.tokens, answer.top_logprobs)
        assert result.passed is passes, (bits, kwargs, result.similarity)


def _scaled(answer: Generation, factor: float, shift: float = 0.0) -> list[list[tuple[int, float]]]:
    return [
        [(t, min(0.0, lp * factor + shift)) for t, lp in entries] for entries in answer.top_logprobs
    ]


def test_replay_fails_perturbed_logprobs(tiny: GonkaModel, sampled: Generation) -> None:
    doubled = replay(tiny, PROMPT, sampled.tokens, _scaled(sampled, 2.0))
    assert not doubled.passed, doubled
    # Per token |v - 2v| / (3|v|) / 2 = 1/6.
    assert abs(doubled.similarity - (1 - 1 / 6)) < 0.01, doubled
    flattened = replay(tiny, PROMPT, sampled.tokens, _scaled(sampled, 0.3))
    assert not flattened.passed, flattened
    jitter = replay(tiny, PROMPT, sampled.tokens, _scaled(sampled, 1.01, -0.005))
    assert jitter.passed and jitter.similarity > 0.99, jitter


def test_replay_extrapolates_missing_tokens_as_documented(
    tiny: GonkaModel, greedy: Generation
) -> None:
    # The executor lists only its best 3: the validator's 4th and 5th get o = s1 - (s2 - s1).
    n = 120
    tokens = greedy.tokens[:n]
    short = [entries[:3] for entries in greedy.top_logprobs[:n]]
    validator = _validator_logprobs(tiny, PROMPT, tokens)
    total = 0.0
    for i, entries in enumerate(short):
        claimed = dict(entries)
        s2, s1 = entries[1][1], entries[2][1]
        values, ids = torch.sort(validator[i], descending=True, stable=True)
        for token, v in zip(ids[:5].tolist(), values[:5].tolist(), strict=True):
            o = claimed.get(token, s1 - (s2 - s1))
            total += abs(v - o) / (abs(v) + abs(o) + 1e-6) / 2
    expected = 1 - total / (max(100, n) * 5)
    result = replay(tiny, PROMPT, tokens, short)
    assert abs(result.similarity - expected) < 1e-4, (result.similarity, expected)


def test_short_answers_are_diluted(tiny: GonkaModel, greedy: Generation) -> None:
    doubled = replay(tiny, PROMPT, greedy.tokens[:20], _scaled(greedy, 2.0)[:20])
    # 20 positions count as 100: the distance is a fifth of the long answer's.
    assert abs(doubled.distance - (1 / 6) * 20 / 100) < 0.005, doubled
    assert replay(tiny, PROMPT, [], []).passed


@pytest.mark.parametrize(
    "mutate",
    [
        lambda tokens, tops: (tokens, tops[:-1]),
        lambda tokens, tops: ([*tokens[:-1], tok.VOCAB_SIZE], tops),
        lambda tokens, tops: ([*tokens[:-1], "a"], tops),
        lambda tokens, tops: (tokens, [*tops[:-1], []]),
        lambda tokens, tops: (tokens, [*tops[:-1], [(tokens[-1], 0.5)]]),
        lambda tokens, tops: (tokens, [*tops[:-1], [(tokens[-1], float("nan"))]]),
        lambda tokens, tops: (tokens, [*tops[:-1], [(tokens[-1], -1.0), (tokens[-1], -2.0)]]),
        lambda tokens, tops: (tokens, [*tops[:-1], [(tokens[-1], -1.0), (999, -2.0)]]),
        lambda tokens, tops: (tokens, [*tops[:-1], [(tokens[-1], -1.0, 3)]]),
        lambda tokens, tops: (tokens * 4, tops * 4),  # longer than the context
        # JSON an executor may send: null, an object, a number too large for a float.
        lambda tokens, tops: (tokens, None),
        lambda tokens, tops: (None, tops),
        lambda tokens, tops: (tokens, {str(i): t for i, t in enumerate(tops)}),
        lambda tokens, tops: (tokens, dict(enumerate(tops))),
        lambda tokens, tops: (iter(tokens), tops),
        lambda tokens, tops: (tokens, [*tops[:-1], [(tokens[-1], -(10**400))]]),
        lambda tokens, tops: (tokens, [*tops[:-1], [{"token": tokens[-1], "logprob": 10**400}]]),
    ],
)
def test_replay_fails_malformed_answers(tiny: GonkaModel, greedy: Generation, mutate: Any) -> None:
    tokens, tops = mutate(list(greedy.tokens), [list(e) for e in greedy.top_logprobs])
    result = replay(tiny, PROMPT, tokens, tops)
    assert not result.passed and result.similarity == 0.0, result


def test_replay_rejects_a_bad_prompt(tiny: GonkaModel) -> None:
    with pytest.raises(InvalidComputeInput):
        replay(tiny, [], [1], [[(1, -0.1)]])
    with pytest.raises(InvalidComputeInput):
        replay(tiny, [1], [1], [[(1, -0.1)]], threshold="high")  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -1.0, 0.0, 1.0, 1.5, 10**400])
def test_replay_threshold_must_be_a_similarity(tiny: GonkaModel, threshold: float) -> None:
    # Similarity lies in [0.5, 1]: a threshold of 1 or more fails every answer, and one at
    # or below 0 (or NaN, which compares false) would make the verdict meaningless.
    with pytest.raises(InvalidComputeInput, match="threshold"):
        replay(tiny, [1], [1], [[(1, -0.1)]], threshold=threshold)
