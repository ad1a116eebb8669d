"""An OpenAI chat completion in mainnet's format: the body DAPI sends, the answer it reads.

`ChatRequest.from_dict(body)` checks the fields of spec §1.5 (a bad field raises
InvalidComputeInput naming it: an HTTP server answers 400) and `complete(model, request)`
runs it: the messages go through the model's own chat template (`tokenizer.tokenizer_for`),
then `inference.generate`, with `enforced_tokens` when a validator replays an answer.

| field | meaning |
| --- | --- |
| `messages` | OpenAI messages, through the checkpoint's chat template |
| `max_tokens` (or `max_completion_tokens`) | default: the rest of the context |
| `temperature`, `top_p`, `top_k`, `seed` | vLLM's sampling (null: the default) |
| `logprobs`, `top_logprobs` | report logprobs, with that many entries per position (0-20) |
| `logprobs_mode` | `processed_logprobs` (Gonka's; the default), or another vLLM mode |
| `skip_special_tokens` | leave special tokens out of `content` (default true) |
| `return_token_ids` | add `prompt_token_ids` and `choices[0].token_ids` |
| `enforced_tokens` | `{"tokens": [{"token": "<id>", "top_tokens": [...]}, ...]}`: emit these |

A replay (`enforced_tokens`) without `logprobs_mode` guesses it from the `top_tokens` as
vLLM does (`detect_logprobs_mode`). Other fields (`model`, `stream`, `stream_options`,
`user`, ...) are the server's business and ignored here. `n` must be 1 and `stop` null:
neither is supported.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gonka_cli.compute.inference import MAX_TOP_LOGPROBS, Generation, Sampling, generate
from gonka_cli.compute.tokenizer import ChatTokenizer, tokenizer_for
from gonka_cli.errors import InvalidComputeInput
from gonka_cli.validate import is_int, is_list

__all__ = [
    "ChatRequest",
    "ChatResult",
    "complete",
    "detect_logprobs_mode",
    "parse_enforced_tokens",
]


@dataclass(frozen=True)
class ChatRequest:
    """A checked chat completion body (see the module docstring)."""

    messages: tuple[Mapping[str, Any], ...]
    max_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    logprobs: bool = False
    top_logprobs: int = 0
    skip_special_tokens: bool = True
    return_token_ids: bool = False
    #: Token ids, or text to tokenize where an entry is not a decimal id (as vLLM does).
    enforced_tokens: tuple[int | str, ...] | None = None

    @classmethod
    def from_dict(cls, body: object) -> ChatRequest:
        if not isinstance(body, Mapping):
            raise InvalidComputeInput("the request body must be a JSON object")
        messages = body.get("messages")
        if not is_list(messages) or not messages:
            raise InvalidComputeInput("messages must be a non-empty list of {role, content}")
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_completion_tokens")
        if max_tokens is not None and (not is_int(max_tokens) or max_tokens < 1):
            raise InvalidComputeInput(f"max_tokens must be an integer >= 1, got {max_tokens!r:.40}")

        def pick(name: str, default: Any) -> Any:
            value = body.get(name)
            return default if value is None else value

        enforced = body.get("enforced_tokens")
        mode = body.get("logprobs_mode")
        if mode is None:
            mode = "processed_logprobs" if enforced is None else detect_logprobs_mode(enforced)
        sampling = Sampling(
            temperature=pick("temperature", 1.0),
            top_p=pick("top_p", 1.0),
            top_k=pick("top_k", 0),
            seed=body.get("seed"),
            logprobs_mode=mode,
        )
        flags = {}
        for name, default in (
            ("logprobs", False),
            ("skip_special_tokens", True),
            ("return_token_ids", False),
        ):
            value = pick(name, default)
            if not isinstance(value, bool):
                raise InvalidComputeInput(f"{name} must be true or false, got {value!r:.40}")
            flags[name] = value
        top = pick("top_logprobs", 0)
        if not is_int(top) or not 0 <= top <= MAX_TOP_LOGPROBS:
            raise InvalidComputeInput(
                f"top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], got {top!r:.40}"
            )
        if top and not flags["logprobs"]:
            raise InvalidComputeInput("top_logprobs needs logprobs: true")
        if pick("n", 1) != 1:
            raise InvalidComputeInput("n must be 1: one choice per request")
        if body.get("stop") not in (None, [], ""):
            raise InvalidComputeInput("stop sequences are not supported; leave stop null")
        return cls(
            messages=tuple(messages),
            max_tokens=max_tokens,
            sampling=sampling,
            logprobs=flags["logprobs"],
            top_logprobs=top,
            skip_special_tokens=flags["skip_special_tokens"],
            return_token_ids=flags["return_token_ids"],
            enforced_tokens=None if enforced is None else parse_enforced_tokens(enforced),
        )


def detect_logprobs_mode(enforced: object) -> str:
    """The mode an executor's answer was made in, from its `top_tokens` (vLLM's guess when a
    replay names none): processed logprobs fill masked slots with the smallest ids, so more
    than 10% of ids below 4 means `processed_logprobs`, else `raw_logprobs`."""
    tops: list[object] = []
    if isinstance(enforced, Mapping) and is_list(enforced.get("tokens")):
        for entry in enforced["tokens"]:
            if isinstance(entry, Mapping) and is_list(entry.get("top_tokens")):
                tops.extend(entry["top_tokens"])
    small = sum(
        1 for t in tops if isinstance(t, str) and t.isascii() and t.isdigit() and int(t) < 4
    )
    return "processed_logprobs" if tops and small > 0.1 * len(tops) else "raw_logprobs"


def parse_enforced_tokens(value: object) -> tuple[int | str, ...]:
    """`{"tokens": [{"token": "<id>", "top_tokens": [...]}, ...]}` -> the tokens, in order.

    A decimal string is a token id; any other string is text the model's tokenizer encodes
    (vLLM's fallback). `top_tokens` is not used: the replay computes its own.
    """
    if not isinstance(value, Mapping) or not is_list(value.get("tokens")):
        raise InvalidComputeInput('enforced_tokens must be {"tokens": [{"token": ...}, ...]}')
    tokens: list[int | str] = []
    for i, entry in enumerate(value["tokens"]):
        token = entry.get("token") if isinstance(entry, Mapping) else None
        if is_int(token):
            tokens.append(token)
        elif isinstance(token, str):
            tokens.append(int(token) if token.isascii() and token.isdigit() else token)
        else:
            raise InvalidComputeInput(f"enforced_tokens.tokens[{i}].token must be a string id")
    return tuple(tokens)


@dataclass(frozen=True)
class ChatResult:
    """A completed chat: the prompt's ids, the generation, and the answer's text."""

    model: str
    prompt_tokens: tuple[int, ...]
    generation: Generation
    content: str
    request: ChatRequest
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI `chat.completion` object, logprobs as mainnet's vLLM writes them."""
        gen = self.generation
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": self.content},
            "logprobs": {"content": gen.logprobs_content()} if self.request.logprobs else None,
            "finish_reason": gen.finish_reason,
        }
        answer: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": len(self.prompt_tokens),
                "completion_tokens": len(gen.tokens),
                "total_tokens": len(self.prompt_tokens) + len(gen.tokens),
            },
        }
        if self.request.return_token_ids:
            choice["token_ids"] = list(gen.tokens)
            answer["prompt_token_ids"] = list(self.prompt_tokens)
        return answer


def _enforced_ids(tokens: Sequence[int | str], tokenizer: Any) -> list[int]:
    ids: list[int] = []
    for token in tokens:
        if isinstance(token, int):
            ids.append(token)
            continue
        encode = getattr(tokenizer, "encode_text", None)
        if encode is None:
            raise InvalidComputeInput(f"enforced token {token!r:.40} is not a token id")
        ids.extend(encode(token))
    return ids


def complete(model: Any, request: ChatRequest, *, model_name: str | None = None) -> ChatResult:
    """Run one chat completion on `model` (built-in or checkpoint)."""
    tokenizer: ChatTokenizer = tokenizer_for(model)
    prompt = tokenizer.chat_ids(request.messages)
    room = int(model.spec.max_seq_len) - len(prompt)
    if room < 1:
        raise InvalidComputeInput(
            f"the prompt ({len(prompt)} tokens) fills the {model.spec.max_seq_len}-token context"
        )
    max_tokens = room if request.max_tokens is None else request.max_tokens
    sampling = request.sampling
    enforced = (
        None
        if request.enforced_tokens is None
        else _enforced_ids(request.enforced_tokens, tokenizer)
    )
    generation = generate(
        model,
        prompt,
        max_tokens,
        sampling.temperature,
        sampling.top_p,
        sampling.seed,
        request.top_logprobs,
        top_k=sampling.top_k,
        logprobs_mode=sampling.logprobs_mode,
        stop_tokens=tokenizer.stop_ids,
        enforced_tokens=enforced,
    )
    text_ids = list(generation.tokens)
    if generation.finish_reason == "stop":
        text_ids = text_ids[:-1]  # vLLM leaves the stop token out of the text
    content = tokenizer.decode(text_ids, skip_special=request.skip_special_tokens)
    return ChatResult(
        model_name or str(model.spec.name), tuple(prompt), generation, content, request
    )
