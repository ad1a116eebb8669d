"""The devnet's replay check: honest answers pass, each cheat of the adversarial table fails.

Honest answers are generated here (fp32 and bf16 executors) at every temperature / top-p of the
calibration and cut to 1 .. 64 tokens (a prefix of an honest answer is an honest answer of
that length). The cheats are the ones that passed mainnet's CompareLogits: any text with the
model's true logprobs from one prefill pass, a random 7-token answer, 20 tokens from another
model.
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest
import torch

from gonka_cli.compute import tokenizer as tok
from gonka_cli.compute.inference import DEFAULT_REPLAY_THRESHOLD, Generation, generate, replay
from gonka_cli.compute.models import GonkaModel, build_model, load_model
from gonka_cli.compute.replay_check import (
    GREEDY_TIE_NATS,
    LIKELIHOOD_LOG10_P,
    ReplayVerdict,
    check_answer,
    passes,
)
from gonka_cli.errors import InvalidComputeInput
from gonka_cli.protocol import ProtocolError, ValidationResult

PROMPT = tok.chat_template([{"role": "user", "content": "Tell me about the Gonka network."}])
SETTINGS = [
    pytest.param(0.0, 1.0, id="T=0"),
    pytest.param(0.7, 1.0, id="T=0.7"),
    pytest.param(0.7, 0.9, id="T=0.7-top_p=0.9"),
    pytest.param(1.0, 1.0, id="T=1.0"),
    pytest.param(1.0, 0.9, id="T=1.0-top_p=0.9"),
]
LENGTHS = (1, 2, 4, 7, 16, 32, 64)
TEXT = "The Gonka network is a decentralized compute network where hosts earn by running models."


def _sampling(temperature: float, top_p: float) -> dict[str, float]:
    return {"temperature": temperature, "top_p": top_p}


def _with_true_logprobs(
    model: Any, prompt: list[int], tokens: list[int], temperature: float, top_p: float
) -> Generation:
    """The cheater's answer: its own tokens, the model's logprobs for them from one prefill."""
    return generate(
        model, prompt, len(tokens), temperature, top_p, stop_tokens=(), enforced_tokens=tokens
    )


@pytest.fixture(scope="module")
def other(tiny: GonkaModel) -> GonkaModel:
    return build_model(dataclasses.replace(tiny.spec, weights_seed=2))


# --- honest answers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def answers(tiny: GonkaModel, tiny_bf16: GonkaModel) -> dict[tuple[str, float, float], list[Any]]:
    """64-token honest answers per (executor, temperature, top_p): two seeds when sampled."""
    out: dict[tuple[str, float, float], list[Any]] = {}
    for label, executor in (("fp32", tiny), ("bf16", tiny_bf16)):
        for param in SETTINGS:
            temperature, top_p = param.values
            out[label, temperature, top_p] = [
                generate(executor, PROMPT, 64, temperature, top_p, seed, stop_tokens=())
                for seed in range(2 if temperature > 0 else 1)
            ]
    return out


@pytest.mark.parametrize(("temperature", "top_p"), SETTINGS)
def test_honest_answers_pass_at_every_length(
    tiny: GonkaModel,
    tiny_bf16: GonkaModel,
    answers: dict[tuple[str, float, float], list[Any]],
    temperature: float,
    top_p: float,
) -> None:
    sampling = _sampling(temperature, top_p)
    pairs = (("fp32", tiny), ("fp32", tiny_bf16), ("bf16", tiny))
    for executor, validator in pairs:
        for answer in answers[executor, temperature, top_p]:
            for n in LENGTHS:
                tokens, tops = list(answer.tokens[:n]), list(answer.top_logprobs[:n])
                v = check_answer(validator, PROMPT, tokens, tops, sampling)
                assert v.passed and v.reason == "ok", (executor, n, v)
                assert v.positions == n and v.similarity > 0.98
                assert v.support_margin is not None and v.support_margin >= 0
                if temperature == 0:
                    assert v.greedy and v.log10_p is None and v.z_score is None
                else:
                    assert v.log10_p is not None and v.log10_p > LIKELIHOOD_LOG10_P / 3


def test_the_same_backend_agrees_exactly(tiny: GonkaModel) -> None:
    answer = generate(tiny, PROMPT, 32, 0.7, 0.9, 5, stop_tokens=())
    v = check_answer(tiny, PROMPT, list(answer.tokens), answer.top_logprobs, _sampling(0.7, 0.9))
    assert v.passed and v.similarity > 0.9999, v


def test_the_json_form_and_a_sampling_object_are_taken(tiny: GonkaModel) -> None:
    from gonka_cli.compute.inference import Sampling

    answer = generate(tiny, PROMPT, 16, 1.0, 1.0, 3, stop_tokens=())
    data = json.loads(json.dumps(answer.to_dict()))
    v = check_answer(tiny, PROMPT, data["tokens"], data["top_logprobs"], Sampling(1.0, 1.0))
    assert v.passed, v
    assert json.loads(json.dumps(v.to_dict())) == v.to_dict()


def test_an_empty_answer_passes(tiny: GonkaModel) -> None:
    v = check_answer(tiny, PROMPT, [], [])
    assert v.passed and v.positions == 0 and v.support_margin is None


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.compute.hf_checkpoints import write_checkpoint

    directory = write_checkpoint("qwen3", tmp_path_factory.mktemp("replay-check") / "qwen3")
    return load_model(str(directory), "cpu", "fp32"), load_model(str(directory), "cpu", "bf16")


@pytest.mark.parametrize(("temperature", "top_p"), SETTINGS)
def test_honest_answers_of_a_checkpoint_pass(qwen3: Any, temperature: float, top_p: float) -> None:
    fp32, bf16 = qwen3
    prompt = tok.tokenizer_for(fp32).chat_ids([{"role": "user", "content": "Hello there"}])
    for executor in (fp32, bf16):
        answer = generate(executor, prompt, 32, temperature, top_p, 7, stop_tokens=())
        for n in (1, 4, 32):
            tokens, tops = list(answer.tokens[:n]), list(answer.top_logprobs[:n])
            v = check_answer(fp32, prompt, tokens, tops, _sampling(temperature, top_p))
            assert v.passed, (n, v)


# --- ties at temperature 0 --------------------------------------------------------------------


class _TiedHead:
    """gonka-tiny with token `twin`'s logit raised to the argmax's: an exact tie everywhere."""

    def __init__(self, model: GonkaModel, twin: int) -> None:
        self.inner, self.twin = model, twin
        self.spec, self.device = model.spec, model.device

    def new_cache(self, batch: int, length: int) -> Any:
        return self.inner.new_cache(batch, length)

    def forward_tokens(self, tokens: torch.Tensor, cache: Any = None, **kw: Any) -> torch.Tensor:
        logits = self.inner.forward_tokens(tokens, cache, **kw).clone()
        logits[..., self.twin] = logits.max(dim=-1).values
        return logits


def test_ties_at_temperature_zero(tiny: GonkaModel) -> None:
    twin = 200
    tied = _TiedHead(tiny, twin)
    answer = generate(tied, PROMPT, 12, stop_tokens=())  # ties go to the smaller id
    greedy = _sampling(0.0, 1.0)
    assert check_answer(tied, PROMPT, list(answer.tokens), answer.top_logprobs, greedy).passed
    # The executor's backend broke the ties the other way: still the argmax, within the tie.
    other_way = [twin] * len(answer.tokens)
    claimed = _with_true_logprobs(tied, PROMPT, other_way, 0.0, 1.0)
    v = check_answer(tied, PROMPT, other_way, claimed.top_logprobs, greedy)
    assert v.passed and v.support_margin == pytest.approx(GREEDY_TIE_NATS), v
    # The second-best token beyond the tie tolerance is not the argmax.
    with torch.inference_mode():
        logits = tiny.forward_tokens(torch.tensor([PROMPT]))[0, -1]
    lp = torch.log_softmax(logits.double(), -1)
    ranked = torch.argsort(lp, descending=True).tolist()
    runner = next(t for t in ranked[1:] if lp[ranked[0]] - lp[t] > GREEDY_TIE_NATS)
    claimed = _with_true_logprobs(tiny, PROMPT, [runner], 0.0, 1.0)
    v = check_answer(tiny, PROMPT, [runner], claimed.top_logprobs, greedy)
    assert not v.passed and v.failed_position == 0 and "argmax" in v.reason, v


# --- cheats -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("temperature", "top_p"), SETTINGS)
def test_any_text_with_true_logprobs_fails(
    tiny: GonkaModel, temperature: float, top_p: float
) -> None:
    text = tok.encode(TEXT)
    for n in (7, 16, 64):
        claimed = _with_true_logprobs(tiny, PROMPT, text[:n], temperature, top_p)
        # Mainnet's comparison cannot tell: the logprobs are the model's own.
        mainnet = replay(
            tiny, PROMPT, claimed.tokens, claimed.top_logprobs, **_sampling(temperature, top_p)
        )
        assert mainnet.passed and mainnet.similarity > 0.9999
        v = check_answer(
            tiny, PROMPT, list(claimed.tokens), claimed.top_logprobs, _sampling(temperature, top_p)
        )
        assert not v.passed, (n, v)
        assert v.similarity > 0.9999  # it is the tokens that give it away
        if temperature > 0 and top_p == 1.0:
            assert v.log10_p is not None and v.log10_p < LIKELIHOOD_LOG10_P


@pytest.mark.parametrize(("temperature", "top_p"), SETTINGS)
def test_a_random_answer_of_7_tokens_fails(
    tiny: GonkaModel, temperature: float, top_p: float
) -> None:
    rnd = random.Random(7)
    for _ in range(10):
        tokens = [rnd.randrange(tiny.spec.vocab_size) for _ in range(7)]
        claimed = _with_true_logprobs(tiny, PROMPT, tokens, temperature, top_p)
        v = check_answer(tiny, PROMPT, tokens, claimed.top_logprobs, _sampling(temperature, top_p))
        assert not v.passed, v
        # With made-up logprobs the similarity alone fails it: no max(100, N) dilution.
        made_up = [[(t, -0.1), *((u, -5.0) for u in range(4))] for t in tokens]
        v = check_answer(tiny, PROMPT, tokens, made_up, _sampling(temperature, top_p))
        assert not v.passed and v.similarity < DEFAULT_REPLAY_THRESHOLD, v


@pytest.mark.parametrize(("temperature", "top_p"), SETTINGS)
def test_20_tokens_from_another_model_fail(
    tiny: GonkaModel, other: GonkaModel, temperature: float, top_p: float
) -> None:
    sampling = _sampling(temperature, top_p)
    for seed in range(4):
        theirs = generate(other, PROMPT, 20, temperature, top_p, seed, stop_tokens=())
        v = check_answer(tiny, PROMPT, list(theirs.tokens), theirs.top_logprobs, sampling)
        assert not v.passed, v
        claimed = _with_true_logprobs(tiny, PROMPT, list(theirs.tokens), temperature, top_p)
        v = check_answer(tiny, PROMPT, list(theirs.tokens), claimed.top_logprobs, sampling)
        assert not v.passed, v


def test_short_answers_are_not_diluted(tiny: GonkaModel) -> None:
    answer = generate(tiny, PROMPT, 3, stop_tokens=())
    doubled = [[(t, 2 * lp) for t, lp in entries] for entries in answer.top_logprobs]
    # Mainnet divides by max(100, N): 3 positions of doubled logprobs pass.
    assert replay(tiny, PROMPT, answer.tokens, doubled).passed
    v = check_answer(tiny, PROMPT, list(answer.tokens), doubled, _sampling(0.0, 1.0))
    assert not v.passed and v.similarity < DEFAULT_REPLAY_THRESHOLD, v
    assert v.reason.startswith("similarity")


def test_tokens_outside_the_top_p_support_fail(tiny: GonkaModel) -> None:
    with torch.inference_mode():
        logits = tiny.forward_tokens(torch.tensor([PROMPT]))[0, -1].double()
    worst = int(torch.argmin(logits))
    claimed = _with_true_logprobs(tiny, PROMPT, [worst], 1.0, 0.5)
    v = check_answer(tiny, PROMPT, [worst], claimed.top_logprobs, _sampling(1.0, 0.5))
    assert not v.passed and v.failed_position == 0 and "support" in v.reason, v


# --- input, the rule, the wire ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "tops"),
    [
        ([1, 2], [[(1, -0.1)]]),
        ([10**9], [[(1, -0.1)]]),
        ([1], [[("x", "y")]]),
        ("12", [[(1, -0.1)]]),
    ],
)
def test_malformed_answers_fail(tiny: GonkaModel, tokens: Any, tops: Any) -> None:
    v = check_answer(tiny, PROMPT, tokens, tops)
    assert not v.passed and v.similarity == 0.0, v


def test_bad_inputs_raise(tiny: GonkaModel) -> None:
    with pytest.raises(InvalidComputeInput):
        check_answer(tiny, [], [1], [[(1, -0.1)]])
    with pytest.raises(InvalidComputeInput):
        check_answer(tiny, PROMPT, [1], [[(1, -0.1)]], threshold=1.5)
    with pytest.raises(InvalidComputeInput):
        check_answer(tiny, PROMPT, [1], [[(1, -0.1)]], {"temperature": -1})


def test_the_rule_on_the_statistics() -> None:
    assert passes(0.99, 0.96, 0.1, -1.0)
    assert passes(0.99, 0.96, None, None)
    assert not passes(0.96, 0.96, 0.1, -1.0)
    assert not passes(0.99, 0.96, -0.01, -1.0)
    assert not passes(0.99, 0.96, 0.1, LIKELIHOOD_LOG10_P - 0.1)


def test_the_validation_result_carries_the_statistics(tiny: GonkaModel) -> None:
    from gonka_cli.miner.worker import run_validation

    answer = generate(tiny, PROMPT, 16, 0.7, 0.9, 1, stop_tokens=())
    item = {
        "prompt_tokens": PROMPT,
        **answer.to_dict(),
        "threshold": DEFAULT_REPLAY_THRESHOLD,
        "temperature": 0.7,
        "top_p": 0.9,
    }
    body = run_validation(tiny, item)
    assert body["passed"] is True and body["reason"] == "ok"
    result = ValidationResult.from_dict(json.loads(json.dumps(body)))
    assert result.to_dict() == body and result.log10_p is not None
    assert result.passed == passes(
        result.similarity, DEFAULT_REPLAY_THRESHOLD, result.support_margin, result.log10_p
    )
    # An older miner's body still reads; a positive log10_p is no bound.
    assert ValidationResult.from_dict({"passed": True, "similarity": 0.99}).log10_p is None
    with pytest.raises(ProtocolError):
        ValidationResult.from_dict({"passed": True, "similarity": 0.99, "log10_p": 1.0})


def test_verdict_to_dict(tiny: GonkaModel) -> None:
    v = check_answer(tiny, PROMPT, [], [])
    assert isinstance(v, ReplayVerdict) and set(v.to_dict()) >= {"passed", "similarity", "log10_p"}
