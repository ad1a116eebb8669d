"""Generation in mainnet's format, enforced tokens and replay on gonka-tiny.

The expected values are computed here from the model's logits with the rules of the spec
(§1.5, §4: vLLM's temperature / top-k / top-p masking, processed logprobs, -9999 floor),
written independently of the engine's code.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch

from gonka_cli.compute import tokenizer as tok
from gonka_cli.compute.compare_logits import compare_logits
from gonka_cli.compute.inference import (
    DEFAULT_REPLAY_THRESHOLD,
    MASKED_LOGPROB,
    Generation,
    generate,
    replay,
)
from gonka_cli.compute.models import GonkaModel, build_model, quantized_copy
from gonka_cli.errors import InvalidComputeInput
from tests.compute.logprob_reference import assert_matches, expected_entries, reference_processed

PROMPT = tok.chat_template([{"role": "user", "content": "Tell me about the Gonka network."}])
LONG = 150  # over the 100 positions below which the distance is diluted
SAMPLING = {"temperature": 0.7, "top_p": 0.9}


@pytest.fixture(scope="module")
def greedy(tiny: GonkaModel) -> Generation:
    return generate(tiny, PROMPT, LONG, stop_tokens=())


@pytest.fixture(scope="module")
def sampled(tiny: GonkaModel) -> Generation:
    return generate(tiny, PROMPT, LONG, seed=11, stop_tokens=(), **SAMPLING)


@pytest.fixture(scope="module")
def other_model(tiny: GonkaModel) -> GonkaModel:
    return build_model(dataclasses.replace(tiny.spec, weights_seed=2))


def _logits(model: Any, prompt: list[int], tokens: tuple[int, ...] | list[int]) -> torch.Tensor:
    """[len(tokens), V] float64 logits predicting each of `tokens`, by one full forward."""
    with torch.inference_mode():
        ids = torch.tensor([prompt + list(tokens)])
        out = model.forward_tokens(ids)[0].double()
    return out[len(prompt) - 1 : -1]


# --- generation ---------------------------------------------------------------------------


def test_greedy_reports_raw_logprobs(tiny: GonkaModel, greedy: Generation) -> None:
    assert len(greedy.tokens) == LONG and greedy.finish_reason == "length"
    logits = _logits(tiny, PROMPT, greedy.tokens)
    reference = reference_processed(logits, 0.0)
    assert_matches(greedy, reference)
    for i, (token, entries) in enumerate(zip(greedy.tokens, greedy.top_logprobs, strict=True)):
        assert entries[0][0] == token == int(torch.argmax(logits[i]))


def test_sampled_reports_processed_logprobs(tiny: GonkaModel, sampled: Generation) -> None:
    reference = reference_processed(_logits(tiny, PROMPT, sampled.tokens), **SAMPLING)
    assert_matches(sampled, reference)
    masked = sum(lp == MASKED_LOGPROB for entries in sampled.top_logprobs for _, lp in entries)
    assert masked > 0  # top-p 0.9 leaves fewer than 5 tokens at some positions
    assert all(own > MASKED_LOGPROB for own in sampled.token_logprobs)  # never a masked draw


def test_top_k_masks_and_fills_with_the_smallest_ids(tiny: GonkaModel) -> None:
    answer = generate(tiny, PROMPT, 20, temperature=1.3, top_k=3, seed=4, stop_tokens=())
    reference = reference_processed(_logits(tiny, PROMPT, answer.tokens), 1.3, top_k=3)
    assert_matches(answer, reference)
    for entries in answer.top_logprobs:
        assert all(lp > MASKED_LOGPROB for _, lp in entries[:3])
        rest = [t for t, _ in entries[3:]]
        kept = {t for t, _ in entries[:3]}
        assert rest == [t for t in range(10) if t not in kept][:2]
        assert all(lp == MASKED_LOGPROB for _, lp in entries[3:])


def test_top_k_one_is_greedy(tiny: GonkaModel, greedy: Generation) -> None:
    one = generate(tiny, PROMPT, 30, temperature=0.9, top_k=1, seed=8, stop_tokens=())
    assert one.tokens == greedy.tokens[:30]
    assert all(own == 0.0 for own in one.token_logprobs)


@pytest.mark.parametrize("mode", ["raw_logprobs", "raw_logits", "processed_logits"])
def test_other_logprobs_modes(tiny: GonkaModel, sampled: Generation, mode: str) -> None:
    answer = generate(tiny, PROMPT, 12, seed=11, stop_tokens=(), logprobs_mode=mode, **SAMPLING)
    assert answer.tokens == sampled.tokens[:12]  # the mode changes the report, not the draw
    logits = _logits(tiny, PROMPT, answer.tokens)
    if mode == "raw_logprobs":
        reference = torch.log_softmax(logits, dim=-1)
    elif mode == "raw_logits":
        reference = logits
    else:
        processed = reference_processed(logits, **SAMPLING)
        reference = torch.where(torch.isinf(processed), processed, logits / 0.7)
    assert_matches(answer, reference)


def test_seeded_sampling_repeats(tiny: GonkaModel, sampled: Generation) -> None:
    again = generate(tiny, PROMPT, LONG, seed=11, stop_tokens=(), **SAMPLING)
    assert again == sampled
    other = generate(tiny, PROMPT, LONG, seed=12, stop_tokens=(), **SAMPLING)
    assert other.tokens != sampled.tokens


def test_tiny_top_p_is_greedy(tiny: GonkaModel, greedy: Generation) -> None:
    nucleus = generate(tiny, PROMPT, 30, temperature=0.8, top_p=1e-9, seed=1, stop_tokens=())
    assert nucleus.tokens == greedy.tokens[:30]


@pytest.mark.parametrize("temperature", [1e-6, 1e-300, 1e-320])
def test_tiny_temperature_is_greedy(
    tiny: GonkaModel, greedy: Generation, temperature: float
) -> None:
    cold = generate(tiny, PROMPT, 10, temperature=temperature, seed=1, stop_tokens=())
    assert cold.tokens == greedy.tokens[:10]
    assert cold.top_logprobs == greedy.top_logprobs[:10]


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
    assert data["token_logprobs"] == list(greedy.token_logprobs)
    assert data["top_logprobs"][0][0] == {
        "token": greedy.top_logprobs[0][0][0],
        "logprob": greedy.top_logprobs[0][0][1],
    }


def test_mainnet_logprobs_content(sampled: Generation) -> None:
    content = json.loads(json.dumps(sampled.logprobs_content()))
    assert len(content) == LONG
    for token, own, entries, position in zip(
        sampled.tokens, sampled.token_logprobs, sampled.top_logprobs, content, strict=True
    ):
        assert position["token"] == str(token) and position["token"].isdigit()
        assert position["logprob"] == own
        assert position["bytes"] == list(str(token).encode())
        assert [(int(e["token"]), e["logprob"]) for e in position["top_logprobs"]] == list(entries)
        assert len(position["top_logprobs"]) == 5


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
        ([1], 5, {"top_k": -2}),
        ([1], 5, {"top_k": 1.5}),
        ([1], 5, {"seed": -(2**63) - 1}),
        ([1], 5, {"seed": 2**64}),
        ([1], 5, {"top_k_logprobs": 21}),
        ([1], 5, {"logprobs_mode": "logits"}),
        ([1], 5, {"enforced_tokens": [tok.VOCAB_SIZE]}),
        ([1], 5, {"enforced_tokens": "12"}),
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


# --- enforced tokens ----------------------------------------------------------------------


def forced_decoding(
    model: GonkaModel, prompt: list[int], tokens: list[int], temperature: float, top_p: float
) -> list[list[tuple[int, float]]]:
    """vLLM's way, written here: decode step by step with a KV cache, each step's token
    replaced by the enforced one after its logprobs are taken."""
    rows = []
    with torch.inference_mode():
        cache = model.new_cache(1, len(prompt) + len(tokens))
        step = torch.tensor([prompt])
        for token in tokens:
            logits = model.forward_tokens(step, cache, last_only=True)[0, -1].double()
            rows.append(expected_entries(reference_processed(logits[None], temperature, top_p)[0]))
            step = torch.tensor([[token]])
    return rows


def test_enforced_tokens_in_one_pass_agree_with_forced_decoding(
    tiny: GonkaModel, sampled: Generation
) -> None:
    tokens = list(sampled.tokens)
    one_pass = generate(
        tiny, PROMPT, LONG, stop_tokens=(), enforced_tokens=tokens, top_k_logprobs=5, **SAMPLING
    )
    assert one_pass.tokens == sampled.tokens and one_pass.finish_reason == "length"
    stepwise = forced_decoding(tiny, PROMPT, tokens, **SAMPLING)
    for mine, theirs in zip(one_pass.top_logprobs, stepwise, strict=True):
        assert [t for t, _ in mine] == [t for t, _ in theirs]
        assert max(abs(a - b) for (_, a), (_, b) in zip(mine, theirs, strict=True)) < 1e-4
    # ...and within the replay tolerance, by Gonka's comparison.
    verdict = compare_logits(sampled.positions(), one_pass.positions(), DEFAULT_REPLAY_THRESHOLD)
    assert verdict.passed and verdict.similarity > 0.9999, verdict
    # The executor's own logprobs are the model's: what the sampled run reported.
    for a, b in zip(one_pass.token_logprobs, sampled.token_logprobs, strict=True):
        assert abs(a - b) < 1e-4


def test_enforced_tokens_append_eos_and_stop_at_a_stop_token(
    tiny: GonkaModel, greedy: Generation
) -> None:
    tokens = [t for t in greedy.tokens[:10] if t not in tok.STOP_IDS]
    appended = generate(tiny, PROMPT, 20, enforced_tokens=tokens)
    assert appended.tokens == (*tokens, tok.EOS_ID) and appended.finish_reason == "stop"
    eos_row = reference_processed(_logits(tiny, PROMPT, appended.tokens), 0.0)[-1]
    assert abs(appended.token_logprobs[-1] - float(eos_row[tok.EOS_ID])) < 1e-4
    # An enforced stop token in the middle ends the answer there.
    cut = generate(tiny, PROMPT, 20, enforced_tokens=[*tokens[:3], tok.END_OF_TURN_ID, *tokens])
    assert cut.tokens == (*tokens[:3], tok.END_OF_TURN_ID) and cut.finish_reason == "stop"
    # max_tokens still bounds the answer.
    short = generate(tiny, PROMPT, 4, enforced_tokens=tokens)
    assert short.tokens == tuple(tokens[:4]) and short.finish_reason == "length"
    assert generate(tiny, PROMPT, 4, enforced_tokens=[], stop_tokens=()).tokens == ()


def test_an_enforced_masked_token_reports_the_floor(tiny: GonkaModel) -> None:
    # Under top-k 2 most tokens are masked: the enforced one reports -9999.
    answer = generate(tiny, PROMPT, 5, temperature=1.0, top_k=2, enforced_tokens=[7, 7, 7])
    logits = _logits(tiny, PROMPT, answer.tokens[:3])
    for i in range(3):
        masked = float(logits[i, 7]) < float(torch.topk(logits[i], 2).values[-1])
        assert (answer.token_logprobs[i] == MASKED_LOGPROB) is masked


# --- replay -------------------------------------------------------------------------------


def test_replay_passes_honest_answers(
    tiny: GonkaModel, tiny_bf16: GonkaModel, greedy: Generation, sampled: Generation
) -> None:
    for answer, kwargs in ((greedy, {}), (sampled, SAMPLING)):
        result = replay(tiny, PROMPT, answer.tokens, answer.top_logprobs, **kwargs)
        assert result.passed and result.reason == "ok", result
        assert result.similarity > 0.9999 and result.positions == LONG
        assert result.threshold == DEFAULT_REPLAY_THRESHOLD
        # A validator running the same model in bf16 agrees too.
        bf16 = replay(tiny_bf16, PROMPT, answer.tokens, answer.top_logprobs, **kwargs)
        assert bf16.passed and bf16.similarity > 0.98, bf16


def test_replay_needs_the_requests_sampling(tiny: GonkaModel, sampled: Generation) -> None:
    # Processed logprobs depend on temperature and top-p: judged at temperature 1, an
    # honest sampled answer looks like another model's.
    result = replay(tiny, PROMPT, sampled.tokens, sampled.top_logprobs)
    assert not result.passed, result


def test_replay_accepts_the_json_form(tiny: GonkaModel, sampled: Generation) -> None:
    data = json.loads(json.dumps(sampled.to_dict()))
    result = replay(tiny, PROMPT, data["tokens"], data["top_logprobs"], **SAMPLING)
    assert result.passed and result.similarity > 0.9999
    content = sampled.logprobs_content()
    as_text = [
        [{"token": e["token"], "logprob": e["logprob"]} for e in p["top_logprobs"]] for p in content
    ]
    assert replay(tiny, PROMPT, data["tokens"], as_text, **SAMPLING).similarity > 0.9999
    assert json.loads(json.dumps(result.to_dict()))["passed"] is True


def test_replay_fails_changed_tokens(tiny: GonkaModel, sampled: Generation) -> None:
    # The text a lazy host would make up: every token swapped for another byte.
    swapped = [(t + 1) % 256 for t in sampled.tokens]
    result = replay(tiny, PROMPT, swapped, sampled.top_logprobs, **SAMPLING)
    assert not result.passed, result


def test_replay_fails_another_model(
    tiny: GonkaModel, other_model: GonkaModel, greedy: Generation
) -> None:
    for kwargs in ({}, {"temperature": 1.0, "seed": 5}, {"seed": 5, **SAMPLING}):
        answer = generate(other_model, PROMPT, LONG, stop_tokens=(), **kwargs)
        judged = {k: v for k, v in kwargs.items() if k != "seed"}
        result = replay(tiny, PROMPT, answer.tokens, answer.top_logprobs, **judged)
        assert not result.passed, f"another model's answer scored {result.similarity:.4f}"
        assert result.similarity < DEFAULT_REPLAY_THRESHOLD - 0.02, result
        assert result.failed_position is None and "similarity" in result.reason
    reverse = replay(other_model, PROMPT, greedy.tokens, greedy.top_logprobs)
    assert not reverse.passed, reverse


@pytest.mark.parametrize(("bits", "passes"), [(8, True), (4, False), (3, False)])
def test_replay_judges_an_executor_of_another_precision(
    tiny: GonkaModel, bits: int, passes: bool
) -> None:
    # An executor serving the model with coarser weights than the network's: 8-bit stays
    # within the threshold (like bf16), 4 and 3 bits go beyond it.
    executor = quantized_copy(tiny, bits)
    for kwargs in ({}, {"temperature": 1.0}, SAMPLING):
        answer = generate(executor, PROMPT, LONG, seed=3, stop_tokens=(), **kwargs)
        result = replay(tiny, PROMPT, answer.tokens, answer.top_logprobs, **kwargs)
        assert result.passed is passes, (bits, kwargs, result.similarity)


def _scaled(answer: Generation, factor: float, shift: float = 0.0) -> list[list[tuple[int, float]]]:
    return [
        [(t, min(0.0, lp * factor + shift)) for t, lp in entries] for entries in answer.top_logprobs
    ]


def test_replay_fails_perturbed_logprobs(tiny: GonkaModel, greedy: Generation) -> None:
    doubled = replay(tiny, PROMPT, greedy.tokens, _scaled(greedy, 2.0))
    assert not doubled.passed, doubled
    # Per token |v - 2v| / (3|v|) / 2 = 1/6.
    assert abs(doubled.similarity - (1 - 1 / 6)) < 0.01, doubled
    flattened = replay(tiny, PROMPT, greedy.tokens, _scaled(greedy, 0.3))
    assert not flattened.passed, flattened
    jitter = replay(tiny, PROMPT, greedy.tokens, _scaled(greedy, 1.01, -0.005))
    assert jitter.passed and jitter.similarity > 0.99, jitter


def test_replay_extrapolates_missing_tokens_as_gonka(tiny: GonkaModel, greedy: Generation) -> None:
    # The executor lists only its best 3 (or 1): the validator's other entries get
    # o = m0 - (m1 - m0) from the two smallest listed, m1 = m0 - 100 for a single entry.
    n = 120
    tokens = greedy.tokens[:n]
    validator = reference_processed(_logits(tiny, PROMPT, tokens), 0.0)
    for keep in (3, 1):
        short = [entries[:keep] for entries in greedy.top_logprobs[:n]]
        total = 0.0
        for i, entries in enumerate(short):
            claimed = dict(entries)
            low = sorted(claimed.values())
            m0, m1 = (low[0], low[1]) if keep > 1 else (low[0], low[0] - 100)
            for token, v in expected_entries(validator[i]):
                o = claimed.get(token, m0 - (m1 - m0))
                total += abs(v - o) / (abs(v) + abs(o) + 1e-6) / 2
        expected = max(0.0, 1 - total / (max(100, n) * keep))
        result = replay(tiny, PROMPT, tokens, short)
        assert abs(result.similarity - expected) < 1e-4, (keep, result.similarity, expected)


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
        lambda tokens, tops: (tokens, [*tops[:-1], []]),  # Go: empty logprobs, distance inf
        lambda tokens, tops: (tokens, [*tops[:-1], [(tokens[-1], float("nan"))]]),
        lambda tokens, tops: (tokens, [*tops[:-1], [(tokens[-1], -1.0, 3)]]),
        lambda tokens, tops: (tokens, [*tops[:-1], [{"token": 1.5, "logprob": -1.0}]]),
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
    with pytest.raises(InvalidComputeInput, match="threshold"):
        replay(tiny, [1], [1], [[(1, -0.1)]], threshold=threshold)
