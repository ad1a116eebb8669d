"""Chat completions in mainnet's format, on the built-in model and on tiny Hugging Face
checkpoints, checked against `transformers` itself (the oracle) and the spec's rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from gonka_cli.compute.chat import ChatRequest, complete
from gonka_cli.compute.compare_logits import judge, parse_content
from gonka_cli.compute.inference import DEFAULT_REPLAY_THRESHOLD, generate
from gonka_cli.compute.models import GonkaModel, load_model
from gonka_cli.compute.tokenizer import tokenizer_for
from gonka_cli.errors import InvalidComputeInput
from tests.compute.logprob_reference import assert_matches, expected_entries, reference_processed

MESSAGES = [
    {"role": "system", "content": "You are a helpful host."},
    {"role": "user", "content": "Tell me about Gonka and proof of compute."},
]


def dapi_body(**changes: Any) -> dict[str, Any]:
    """A chat body as DAPI rewrites it (spec §1.5)."""
    body = {
        "model": "any",
        "messages": MESSAGES,
        "max_tokens": 40,
        "temperature": 0.8,
        "top_p": 0.95,
        "seed": 1234,
        "logprobs": True,
        "top_logprobs": 5,
        "skip_special_tokens": False,
        "return_token_ids": True,
        "logprobs_mode": "processed_logprobs",
    }
    body.update(changes)
    return body


def validator_body(answer: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """What a validator's DAPI sends to replay `answer` (spec §4)."""
    content = answer["choices"][0]["logprobs"]["content"]
    enforced = [
        {"token": p["token"], "top_tokens": [e["token"] for e in p["top_logprobs"]]}
        for p in content
    ]
    return dapi_body(enforced_tokens={"tokens": enforced}, stream=False, **changes)


def verdict(model: Any, answer: dict[str, Any], **changes: Any) -> Any:
    replayed = complete(model, ChatRequest.from_dict(validator_body(answer, **changes))).to_dict()
    usage, replay_usage = answer["usage"], replayed["usage"]
    return judge(
        parse_content(answer["choices"][0]["logprobs"]["content"]),
        parse_content(replayed["choices"][0]["logprobs"]["content"]),
        DEFAULT_REPLAY_THRESHOLD,
        claimed_usage=(usage["prompt_tokens"], usage["completion_tokens"]),
        replay_usage=(replay_usage["prompt_tokens"], replay_usage["completion_tokens"]),
    )


@pytest.fixture(scope="module")
def hf_qwen3(qwen3_checkpoint: Path) -> Any:
    """The oracle: the checkpoint loaded by `transformers` directly, float32."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(qwen3_checkpoint), dtype=torch.float32
    )
    return model.eval()


@pytest.fixture(scope="module")
def qwen3(qwen3_checkpoint: Path) -> GonkaModel:
    return load_model(str(qwen3_checkpoint), dtype="float32")


def hf_logits(hf_model: Any, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        out = hf_model(input_ids=torch.tensor([prompt + tokens])).logits[0].double()
    return out[len(prompt) - 1 : -1]


# --- the built-in model -------------------------------------------------------------------


def test_builtin_chat_answer_has_mainnet_shape(tiny: GonkaModel) -> None:
    answer = complete(tiny, ChatRequest.from_dict(dapi_body())).to_dict()
    json.dumps(answer)
    choice = answer["choices"][0]
    content = choice["logprobs"]["content"]
    assert len(content) == answer["usage"]["completion_tokens"] == len(choice["token_ids"])
    assert answer["prompt_token_ids"] == tokenizer_for(tiny).chat_ids(MESSAGES)
    for token_id, position in zip(choice["token_ids"], content, strict=True):
        assert position["token"] == str(token_id)
        assert len(position["top_logprobs"]) == 5
        assert all(e["token"].isdigit() for e in position["top_logprobs"])
    again = complete(tiny, ChatRequest.from_dict(dapi_body())).to_dict()
    assert again["choices"][0]["token_ids"] == choice["token_ids"]  # the seed repeats
    assert verdict(tiny, answer).passed


def test_builtin_chat_without_logprobs(tiny: GonkaModel) -> None:
    body = dapi_body(logprobs=None, top_logprobs=None, return_token_ids=None, max_tokens=5)
    answer = complete(tiny, ChatRequest.from_dict(body)).to_dict()
    assert answer["choices"][0]["logprobs"] is None
    assert "prompt_token_ids" not in answer and "token_ids" not in answer["choices"][0]


@pytest.mark.parametrize(
    "changes",
    [
        {"messages": []},
        {"messages": "hi"},
        {"max_tokens": 0},
        {"max_tokens": 1.5},
        {"temperature": -1},
        {"top_p": 0},
        {"top_k": -3},
        {"seed": "1"},
        {"logprobs": "yes"},
        {"top_logprobs": 21},
        {"logprobs": False, "top_logprobs": 5},
        {"logprobs_mode": "logits"},
        {"n": 2},
        {"stop": ["\n"]},
        {"enforced_tokens": [1, 2]},
        {"enforced_tokens": {"tokens": [{"token": 5}, {"token": None}]}},
    ],
)
def test_bad_bodies_name_the_field(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidComputeInput):
        ChatRequest.from_dict(dapi_body(**changes))


def test_a_changed_token_fails_validation(tiny: GonkaModel) -> None:
    answer = complete(tiny, ChatRequest.from_dict(dapi_body(max_tokens=120))).to_dict()
    content = answer["choices"][0]["logprobs"]["content"]
    for position in content:
        position["token"] = str((int(position["token"]) + 1) % 256)
    result = verdict(tiny, answer, max_tokens=120)
    assert not result.passed, result


# --- tiny Hugging Face checkpoints ------------------------------------------------------------


def test_checkpoint_chat_uses_its_own_template(qwen3: GonkaModel, qwen3_checkpoint: Path) -> None:
    import transformers

    hf_tok = transformers.AutoTokenizer.from_pretrained(str(qwen3_checkpoint))
    expected = hf_tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True)
    if isinstance(expected, dict) or hasattr(expected, "input_ids"):
        expected = expected["input_ids"]
    answer = complete(qwen3, ChatRequest.from_dict(dapi_body())).to_dict()
    assert answer["prompt_token_ids"] == list(expected)
    assert hf_tok.decode(expected).endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize(
    "sampling",
    [
        {"temperature": 0.0},
        {"temperature": 0.8, "top_p": 0.95},
        {"temperature": 1.2, "top_k": 4},
        {"temperature": 0.6, "top_p": 0.7, "top_k": 20},
    ],
)
def test_checkpoint_logprobs_match_transformers(
    qwen3: GonkaModel, hf_qwen3: Any, sampling: dict[str, Any]
) -> None:
    tokenizer = tokenizer_for(qwen3)
    prompt = tokenizer.chat_ids(MESSAGES)
    answer = generate(qwen3, prompt, 30, seed=7, stop_tokens=(), **sampling)
    logits = hf_logits(hf_qwen3, prompt, list(answer.tokens))
    reference = reference_processed(
        logits, sampling["temperature"], sampling.get("top_p", 1.0), sampling.get("top_k", 0)
    )
    assert_matches(answer, reference)


def test_llama_checkpoint_logprobs_match_transformers(llama_checkpoint: Path) -> None:
    import transformers

    ours = load_model(str(llama_checkpoint), dtype="float32")
    oracle = transformers.AutoModelForCausalLM.from_pretrained(
        str(llama_checkpoint), dtype=torch.float32
    ).eval()
    prompt = tokenizer_for(ours).chat_ids(MESSAGES)
    answer = generate(ours, prompt, 20, temperature=0.9, top_p=0.9, seed=2, stop_tokens=())
    assert_matches(
        answer, reference_processed(hf_logits(oracle, prompt, list(answer.tokens)), 0.9, 0.9)
    )


def test_padding_ids_past_the_tokenizer_are_handled(qwen3: GonkaModel) -> None:
    tokenizer = tokenizer_for(qwen3)
    assert tokenizer.vocab_size < qwen3.spec.vocab_size  # the tiny checkpoint pads its rows
    answer = complete(qwen3, ChatRequest.from_dict(dapi_body(temperature=1.0, top_p=1.0))).to_dict()
    choice = answer["choices"][0]
    padding = [t for t in choice["token_ids"] if t >= tokenizer.vocab_size]
    assert padding, "the random model emitted no padding id; pick another seed"
    listed = {e["token"] for p in choice["logprobs"]["content"] for e in p["top_logprobs"]}
    assert any(int(t) >= tokenizer.vocab_size for t in listed)
    # They have no text, and the decimal id stands for them in logprobs.
    known = [t for t in choice["token_ids"] if t < tokenizer.vocab_size]
    assert choice["message"]["content"] == tokenizer.decode(known)
    assert verdict(qwen3, answer, temperature=1.0, top_p=1.0).passed


def test_checkpoint_enforced_one_pass_agrees_with_forced_decoding(
    qwen3: GonkaModel, hf_qwen3: Any
) -> None:
    body = dapi_body(max_tokens=60)
    answer = complete(qwen3, ChatRequest.from_dict(body)).to_dict()
    replayed = complete(qwen3, ChatRequest.from_dict(validator_body(answer, max_tokens=60)))
    tokens = answer["choices"][0]["token_ids"]
    prompt = answer["prompt_token_ids"]
    # vLLM's way with transformers' own cache: each step's logprobs, then the enforced token.
    stepwise = []
    with torch.inference_mode():
        out = hf_qwen3(input_ids=torch.tensor([prompt]), use_cache=True)
        for token in tokens:
            row = out.logits[0, -1].double()[None]
            stepwise.append(expected_entries(reference_processed(row, 0.8, 0.95)[0]))
            out = hf_qwen3(input_ids=torch.tensor([[token]]), cache=out.cache, use_cache=True)
    one_pass = replayed.generation.top_logprobs[: len(tokens)]
    for mine, theirs in zip(one_pass, stepwise, strict=True):
        assert [t for t, _ in mine] == [t for t, _ in theirs]
        assert max(abs(a - b) for (_, a), (_, b) in zip(mine, theirs, strict=True)) < 1e-4
    result = verdict(qwen3, answer, max_tokens=60)
    assert result.passed and result.similarity > 0.9999, result


def test_enforced_text_tokens_are_tokenized(qwen3: GonkaModel) -> None:
    tokenizer = tokenizer_for(qwen3)
    ids = tokenizer.encode_text("Gonka")
    body = dapi_body(enforced_tokens={"tokens": [{"token": "Gonka"}, {"token": str(ids[0])}]})
    replayed = complete(qwen3, ChatRequest.from_dict(body))
    assert list(replayed.generation.tokens[: len(ids) + 1]) == [*ids, ids[0]]
    assert replayed.generation.tokens[-1] in tokenizer.stop_ids


def test_a_replay_without_logprobs_mode_guesses_it_as_vllm(tiny: GonkaModel) -> None:
    answer = complete(tiny, ChatRequest.from_dict(dapi_body(top_p=0.5, max_tokens=20))).to_dict()
    body = validator_body(answer, top_p=0.5, max_tokens=20)
    del body["logprobs_mode"]
    # top-p 0.5 masks most slots: their filler ids 0-3 say the answer was processed.
    assert ChatRequest.from_dict(body).sampling.logprobs_mode == "processed_logprobs"
    raw = complete(tiny, ChatRequest.from_dict(dapi_body(logprobs_mode="raw_logprobs"))).to_dict()
    body = validator_body(raw)
    del body["logprobs_mode"]
    assert ChatRequest.from_dict(body).sampling.logprobs_mode == "raw_logprobs"
    assert ChatRequest.from_dict(dapi_body(logprobs_mode=None)).sampling.logprobs_mode == (
        "processed_logprobs"
    )
