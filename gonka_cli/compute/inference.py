"""Generation in mainnet's format, enforced tokens, and replay validation (spec §1.5, §4).

`generate` runs a model (built-in or a checkpoint's adapter) with a KV cache. Sampling is
vLLM's: temperature below 1e-5 is greedy (ties to the smaller id); otherwise the logits are
divided by the temperature, then top-k and top-p mask tokens (-inf), and the token is drawn
from the softmax with a `torch.Generator` seeded by `seed`, which repeats exactly on the same
backend.

Logprobs follow `logprobs_mode` as vLLM computes them (`processed_logprobs` is Gonka's):

| mode | reported values |
| --- | --- |
| `processed_logprobs` | log-softmax after temperature, top-k, top-p (greedy: of the raw logits) |
| `processed_logits` | the logits after temperature, top-k, top-p (greedy: raw logits) |
| `raw_logprobs` | log-softmax of the raw logits |
| `raw_logits` | the raw logits |

At each position exactly `top_logprobs` entries, best first (ties and masked entries to the
smaller id), every value floored at -9999.0 (a masked -inf becomes -9999.0); the emitted
token's value is `token_logprobs[i]`, whether or not it is among them. Ids past the
tokenizer's vocabulary (padding rows of a checkpoint's embedding) are scored and may be
emitted like any other: their token string is their decimal id, and their text is empty.

`enforced_tokens` makes the answer exactly the given tokens, with the model's own logprobs
at each position, as vLLM's enforced decoding does (spec §4): the answer stops at the first
stop token among them, and gets an end-of-sequence token appended when the last one is not
a stop token (within `max_tokens`). All positions come from one prefill pass over prompt +
tokens (the prompt, then the tokens, through one KV cache) instead of a decode step per
token.

`replay` is mainnet's verdict on a replay: the executor's tokens enforced with the request's
sampling, then Gonka's CompareLogits (`compute.compare_logits`). The devnet's validators use
the stricter `replay_check.check_answer`, which also checks the tokens.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gonka_cli.compute.compare_logits import (
    LogprobEntry,
    PositionLogprobs,
    compare_logits,
)
from gonka_cli.compute.tokenizer import tokenizer_for
from gonka_cli.errors import InvalidComputeInput
from gonka_cli.validate import is_int, is_list

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_REPLAY_THRESHOLD",
    "LOGPROBS_MODES",
    "MASKED_LOGPROB",
    "REPLAY_TOP_K",
    "Generation",
    "ReplayResult",
    "Sampling",
    "generate",
    "replay",
    "replay_threshold",
]

#: The devnet's pass mark for the built-in models (similarity > it passes).
DEFAULT_REPLAY_THRESHOLD = 0.96
#: Pass marks per model; a model not listed uses DEFAULT_REPLAY_THRESHOLD. On Gonka each
#: model's `validation_threshold` is a chain parameter: pass it to `replay` explicitly.
REPLAY_THRESHOLDS: Mapping[str, float] = {}
#: How many entries per position DAPI asks for (`top_logprobs` is always 5 on Gonka).
REPLAY_TOP_K = 5
MAX_TOP_LOGPROBS = 20
#: What vLLM's OpenAI server writes for a masked (-inf) logprob.
MASKED_LOGPROB = -9999.0
LOGPROBS_MODES = ("processed_logprobs", "processed_logits", "raw_logprobs", "raw_logits")
#: vLLM's `_SAMPLING_EPS`: a smaller temperature is greedy.
GREEDY_TEMPERATURE = 1e-5

FinishReason = str  # "stop" | "length"
LogprobList = tuple[tuple[int, float], ...]


def replay_threshold(model_name: str) -> float:
    """The pass mark of a model: its own when listed, else DEFAULT_REPLAY_THRESHOLD."""
    return REPLAY_THRESHOLDS.get(model_name, DEFAULT_REPLAY_THRESHOLD)


@dataclass(frozen=True)
class Sampling:
    """The sampling fields of an OpenAI chat body, checked.

    `top_k` 0 or -1 keeps every token; `top_p` 1 keeps every token; `seed` None draws
    fresh entropy.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    logprobs_mode: str = "processed_logprobs"

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidComputeInput(f"{name} must be a number, got {value!r:.40}")
            if not _finite(value):
                raise InvalidComputeInput(f"{name} must be finite, got {value!r:.40}")
            object.__setattr__(self, name, float(value))
        if self.temperature < 0:
            raise InvalidComputeInput(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InvalidComputeInput(f"top_p must be in (0, 1], got {self.top_p}")
        if not is_int(self.top_k) or self.top_k < -1:
            raise InvalidComputeInput(
                f"top_k must be an integer >= -1 (0 or -1: all tokens), got {self.top_k!r:.40}"
            )
        # DAPI sends int32(inference id), which may be negative; torch takes any 64-bit seed.
        if self.seed is not None and (not is_int(self.seed) or not -(2**63) <= self.seed < 2**64):
            raise InvalidComputeInput(
                f"seed must be an integer in [-2^63, 2^64), got {self.seed!r:.40}"
            )
        if self.logprobs_mode not in LOGPROBS_MODES:
            known = ", ".join(LOGPROBS_MODES)
            raise InvalidComputeInput(
                f"logprobs_mode {self.logprobs_mode!r:.40} is not one of {known}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Generation:
    """Generated tokens and, per position, exactly `top_logprobs` (token id, value) pairs.

    `token_logprobs[i]` is the emitted token's value (in the request's `logprobs_mode`).
    The stop token, when one ended the generation, is the last token.
    """

    tokens: tuple[int, ...]
    top_logprobs: tuple[LogprobList, ...]
    token_logprobs: tuple[float, ...]
    finish_reason: FinishReason

    def to_dict(self) -> dict[str, Any]:
        """The devnet's wire form: integer ids."""
        return {
            "tokens": list(self.tokens),
            "top_logprobs": [
                [{"token": t, "logprob": lp} for t, lp in entries] for entries in self.top_logprobs
            ],
            "token_logprobs": list(self.token_logprobs),
            "finish_reason": self.finish_reason,
        }

    def logprobs_content(self) -> list[dict[str, Any]]:
        """`choices[0].logprobs.content` as mainnet's vLLM writes it.

        `token` is the decimal id as a string and `bytes` that string's UTF-8 bytes (the
        ML node's vLLM decodes every token to `str(token_id)`).
        """
        return [
            {
                "token": str(token),
                "logprob": own,
                "bytes": list(str(token).encode()),
                "top_logprobs": [
                    {"token": str(t), "logprob": lp, "bytes": list(str(t).encode())}
                    for t, lp in entries
                ],
            }
            for token, own, entries in zip(
                self.tokens, self.token_logprobs, self.top_logprobs, strict=True
            )
        ]

    def positions(self) -> list[PositionLogprobs]:
        """The answer as `compare_logits` reads it."""
        return [
            PositionLogprobs(str(token), own, tuple(LogprobEntry(str(t), lp) for t, lp in entries))
            for token, own, entries in zip(
                self.tokens, self.token_logprobs, self.top_logprobs, strict=True
            )
        ]


@dataclass(frozen=True)
class ReplayResult:
    """The verdict of one replay.

    `positions` is N, the number of the executor's tokens. `reason` is `ok` or what failed
    (compare_logits' reasons, or a malformed answer in words); an outright failure has
    similarity 0, distance 1 and `failed_position` the position at fault (None when the
    answer as a whole is at fault).
    """

    passed: bool
    similarity: float
    distance: float
    threshold: float
    positions: int
    reason: str
    failed_position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- input checks -------------------------------------------------------------------------


def _finite(value: object) -> bool:
    """Whether `value` is a finite int or float (a JSON integer may exceed float range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _vocab(model: Any) -> int:
    return int(model.spec.vocab_size)


def _check_ids(model: Any, ids: object, what: str, *, empty_ok: bool = False) -> list[int]:
    if not is_list(ids):
        raise InvalidComputeInput(f"the {what} must be a list of token ids")
    if not ids and not empty_ok:
        raise InvalidComputeInput(f"the {what} is empty: give at least one token")
    vocab = _vocab(model)
    for i, token in enumerate(ids):
        if not is_int(token) or not 0 <= token < vocab:
            raise InvalidComputeInput(
                f"{what} token {i} is {token!r:.40}, not an id in [0, {vocab})"
            )
    return list(ids)


def _check_counts(model: Any, prompt: list[int], max_tokens: object, n_logprobs: object) -> int:
    if not is_int(max_tokens) or max_tokens < 1:
        raise InvalidComputeInput(f"max_tokens must be an integer >= 1, got {max_tokens!r:.40}")
    if not is_int(n_logprobs) or not 0 <= n_logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidComputeInput(
            f"top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], got {n_logprobs!r:.40}"
        )
    limit = int(model.spec.max_seq_len)
    if len(prompt) + max_tokens > limit:
        raise InvalidComputeInput(
            f"prompt ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the "
            f"{limit}-token context of {model.spec.name}"
        )
    return max_tokens


# --- logits to reported values ------------------------------------------------------------


def _mask_top_k_top_p(scores: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """vLLM's `apply_top_k_top_p` on [N, V] float32 scores: masked entries become -inf.

    top-k keeps every score >= the k-th largest. top-p then masks a token when the
    probability of the tokens ranked above it reaches p (vLLM: ascending cumulative
    probability <= 1 - p), the best token always kept. Only the best tokens are sorted,
    as many as it takes to reach p (a full-vocabulary sort of every row costs more than a
    replay's forward pass on a 150k vocabulary).
    """
    import torch

    vocab = scores.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    if top_p >= 1.0:
        return scores
    probs = torch.softmax(scores, dim=-1)
    width = min(vocab, top_k if 0 < top_k < 256 else 256)
    while True:
        best, ids = torch.topk(probs, width, dim=-1)
        before = torch.cumsum(best, dim=-1) - best
        if width == vocab or bool((before[:, -1] >= top_p).all()):
            break
        width = vocab if width * 16 > vocab else width * 16
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, ids, before < top_p)
    return scores.masked_fill(~keep, -math.inf)


def _sampling_scores(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """The scores a random draw uses: logits / temperature, masked by top-k and top-p."""
    scaled = logits.float() / sampling.temperature
    return _mask_top_k_top_p(scaled, sampling.top_k, sampling.top_p)


def _reported(
    logits: torch.Tensor, sampling: Sampling, scores: torch.Tensor | None = None
) -> torch.Tensor:
    """[N, V] values reported as logprobs for raw float32 logits [N, V] (`scores`: their
    `_sampling_scores`, when already computed)."""
    import torch

    mode = sampling.logprobs_mode
    raw = logits.float()
    if mode == "raw_logits":
        return raw
    if mode == "raw_logprobs" or (mode == "processed_logprobs" and sampling.greedy):
        return torch.log_softmax(raw, dim=-1)
    if mode == "processed_logits" and sampling.greedy:
        return raw
    processed = _sampling_scores(raw, sampling) if scores is None else scores
    if mode == "processed_logits":
        return processed
    return torch.log_softmax(processed, dim=-1)


def _top_entries(values: torch.Tensor, n: int) -> list[LogprobList]:
    """The n best (id, value) per row of [N, V], ties to the smaller id, floored at -9999."""
    import torch

    rows = values.shape[0]
    if n == 0:
        return [() for _ in range(rows)]
    vocab = values.shape[-1]
    take = min(n + 1, vocab)
    best, ids = torch.topk(values, take, dim=-1)
    best_rows, id_rows = best.tolist(), ids.tolist()
    result: list[LogprobList] = []
    for r in range(rows):
        pairs = list(zip(id_rows[r], best_rows[r], strict=True))
        # topk orders ties arbitrarily: when the n-th value ties the next one, the row's
        # ties are taken in id order (for masked -inf rows: the smallest masked ids).
        if take > n and pairs[n - 1][1] == pairs[n][1]:
            tie = pairs[n - 1][1]
            above = [p for p in pairs if p[1] > tie]
            tied = torch.nonzero(values[r] == tie)[: n - len(above), 0].tolist()
            pairs = above + [(int(t), tie) for t in tied]
        pairs = sorted(pairs[:n], key=lambda pair: (-pair[1], pair[0]))
        result.append(tuple((int(t), _floor(float(v))) for t, v in pairs))
    return result


def _floor(value: float) -> float:
    return max(value, MASKED_LOGPROB)


# --- generation ---------------------------------------------------------------------------


def _draw(scores: torch.Tensor, generator: torch.Generator) -> int:
    """vLLM's random draw from sampling scores: argmax of softmax(scores) / Exponential(1)."""
    import torch

    probs = torch.softmax(scores.double(), dim=-1)
    noise = torch.empty(probs.shape, dtype=torch.float64).exponential_(generator=generator)
    return int(torch.argmax(probs / noise).item())


def generate(
    model: Any,
    prompt_tokens: Sequence[int],
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    top_k_logprobs: int = 5,
    *,
    top_k: int = 0,
    logprobs_mode: str = "processed_logprobs",
    stop_tokens: Collection[int] | None = None,
    enforced_tokens: Sequence[int] | None = None,
) -> Generation:
    """Generate up to `max_tokens` tokens after `prompt_tokens`, stopping at a stop token.

    `model` is a built-in `GonkaModel` or a checkpoint's adapter (`spec.vocab_size`,
    `spec.max_seq_len`, `spec.name`, `device`, `new_cache`, `forward_tokens`).
    `stop_tokens` None means the model's own (`tokenizer.tokenizer_for(model).stop_ids`).
    With `enforced_tokens` the answer is those tokens (see the module docstring; the first
    of `stop_tokens` is the appended end of sequence). Raises InvalidComputeInput for an empty
    or out-of-vocabulary prompt or enforced token, prompt + max_tokens beyond the model's
    context, or a bad sampling field.
    """
    import torch

    sampling = Sampling(temperature, top_p, top_k, seed, logprobs_mode)
    prompt = _check_ids(model, prompt_tokens, "prompt")
    _check_counts(model, prompt, max_tokens, top_k_logprobs)
    stops = tuple(tokenizer_for(model).stop_ids if stop_tokens is None else stop_tokens)
    if enforced_tokens is not None:
        forced = _check_ids(model, enforced_tokens, "enforced", empty_ok=True)
        return _enforced(model, prompt, forced, max_tokens, sampling, top_k_logprobs, stops)

    generator = torch.Generator(device="cpu")
    if sampling.seed is None:
        generator.seed()
    else:
        generator.manual_seed(sampling.seed)
    stop_set = frozenset(stops)
    tokens: list[int] = []
    tops: list[LogprobList] = []
    chosen: list[float] = []
    finish: FinishReason = "length"
    with torch.inference_mode():
        cache = model.new_cache(1, len(prompt) + max_tokens)
        ids = torch.tensor([prompt], dtype=torch.long, device=model.device)
        logits = model.forward_tokens(ids, cache, last_only=True)[0, -1].float().to("cpu")
        while True:
            scores = None
            if sampling.greedy:
                token = int(torch.argmax(logits).item())
            else:
                scores = _sampling_scores(logits[None], sampling)
                token = _draw(scores[0], generator)
            values = _reported(logits[None], sampling, scores)
            tokens.append(token)
            tops.extend(_top_entries(values, top_k_logprobs))
            chosen.append(_floor(float(values[0, token].item())))
            if token in stop_set:
                finish = "stop"
                break
            if len(tokens) == max_tokens:
                break
            step = torch.tensor([[token]], dtype=torch.long, device=model.device)
            logits = model.forward_tokens(step, cache, last_only=True)[0, -1].float().to("cpu")
    return Generation(tuple(tokens), tuple(tops), tuple(chosen), finish)


def _enforced(
    model: Any,
    prompt: list[int],
    forced: list[int],
    max_tokens: int,
    sampling: Sampling,
    n_logprobs: int,
    stops: tuple[int, ...],
) -> Generation:
    """Enforced tokens in one prefill pass (vLLM gets the same by decoding step by step)."""
    import torch

    stop_set = frozenset(stops)
    answer: list[int] = []
    for token in forced:
        answer.append(token)
        if token in stop_set:
            break  # vLLM stops as soon as an enforced stop token is emitted
    if stops and (not answer or answer[-1] not in stop_set):
        answer.append(stops[0])
    answer = answer[:max_tokens]
    if not answer:
        return Generation((), (), (), "length")
    with torch.inference_mode():
        # Row i of the logits predicts answer[i]: prompt + answer[:-1] is all the pass needs.
        # The prompt goes first through the cache so that only the answer's rows of logits
        # are made (a 4k-token prompt's rows would take GBs on a 150k vocabulary).
        cache = model.new_cache(1, len(prompt) + len(answer) - 1)
        ids = torch.tensor([prompt], dtype=torch.long, device=model.device)
        rows = [model.forward_tokens(ids, cache, last_only=True)[0].float().to("cpu")]
        if len(answer) > 1:
            ids = torch.tensor([answer[:-1]], dtype=torch.long, device=model.device)
            rows.append(model.forward_tokens(ids, cache)[0].float().to("cpu"))
        logits = torch.cat(rows)
        values = _reported(logits, sampling)
        own = values.gather(1, torch.tensor(answer)[:, None])[:, 0].tolist()
        tops = _top_entries(values, n_logprobs)
    finish = "stop" if answer[-1] in stop_set else "length"
    return Generation(tuple(answer), tuple(tops), tuple(_floor(v) for v in own), finish)


# --- replay -------------------------------------------------------------------------------


class _Malformed(Exception):
    def __init__(self, reason: str, position: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


def _entry(item: object, position: int) -> LogprobEntry:
    if isinstance(item, Mapping):
        token, logprob = item.get("token"), item.get("logprob")
    elif is_list(item) and len(item) == 2:
        token, logprob = item
    else:
        raise _Malformed(f"position {position}: a logprob entry is not (token, logprob)", position)
    if is_int(token):
        token = str(token)
    if not isinstance(token, str):
        raise _Malformed(f"position {position}: token {token!r:.40} is not an id", position)
    if not _finite(logprob):
        raise _Malformed(f"position {position}: logprob {logprob!r:.40} is not a number", position)
    return LogprobEntry(token, float(logprob))  # type: ignore[arg-type]


def _executor_positions(
    tokens: Sequence[Any], top_logprobs: Sequence[Any]
) -> list[PositionLogprobs]:
    if len(top_logprobs) != len(tokens):
        raise _Malformed(f"{len(tokens)} tokens but {len(top_logprobs)} logprob lists", None)
    positions = []
    for i, (token, raw) in enumerate(zip(tokens, top_logprobs, strict=True)):
        if not is_list(raw):
            raise _Malformed(f"position {i}: the top logprobs are not a list", i)
        entries = tuple(_entry(item, i) for item in raw)
        own = next((e.logprob for e in entries if e.token == str(token)), 0.0)
        positions.append(PositionLogprobs(str(token), own, entries))
    return positions


def _claimed_answer(
    model: Any, prompt: Sequence[int], tokens: Sequence[Any], top_logprobs: Sequence[Any]
) -> list[PositionLogprobs]:
    """The executor's positions, once its tokens are known to fit the vocabulary and the
    context; raises _Malformed otherwise (a failed replay, not an input error)."""
    claimed = _executor_positions(tokens, top_logprobs)
    vocab = _vocab(model)
    for i, token in enumerate(tokens):
        if not is_int(token) or not 0 <= token < vocab:
            raise _Malformed(f"position {i}: token {token!r:.40} is not in the vocabulary", i)
    if len(prompt) + len(tokens) > model.spec.max_seq_len:
        raise _Malformed(
            f"prompt + answer ({len(prompt) + len(tokens)} tokens) exceed the model's context",
            None,
        )
    return claimed


def replay(
    model: Any,
    prompt_tokens: Sequence[int],
    tokens: Sequence[int],
    top_logprobs: Sequence[Sequence[Any]],
    threshold: float = DEFAULT_REPLAY_THRESHOLD,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    logprobs_mode: str = "processed_logprobs",
    stop_tokens: Collection[int] = (),
) -> ReplayResult:
    """Validate an executor's answer: its tokens enforced, then Gonka's CompareLogits.

    `top_logprobs[i]` is the executor's list for position i: (token id, logprob) pairs or
    {"token", "logprob"} objects, as `Generation.to_dict()` gives them. The sampling fields
    must be the request's (processed logprobs depend on them; greedy answers are judged at
    the default temperature 1). The prompt is the validator's own input: a bad one raises
    InvalidComputeInput; a malformed answer, or a token the model cannot take, is a failed
    ReplayResult.
    """
    prompt = _check_ids(model, prompt_tokens, "prompt")
    if not _finite(threshold) or not 0 < threshold < 1:
        raise InvalidComputeInput(f"threshold must be a number in (0, 1), got {threshold!r:.40}")
    threshold = float(threshold)
    if not is_list(tokens) or not is_list(top_logprobs):
        n = len(tokens) if is_list(tokens) else 0
        return _failed(threshold, n, "tokens and top_logprobs must both be lists", None)
    n = len(tokens)
    try:
        claimed = _claimed_answer(model, prompt, tokens, top_logprobs)
    except _Malformed as bad:
        return _failed(threshold, n, bad.reason, bad.position)
    if n == 0:
        return ReplayResult(True, 1.0, 0.0, threshold, 0, "ok")
    room = int(model.spec.max_seq_len) - len(prompt)
    ours = generate(
        model,
        prompt,
        min(n + (1 if stop_tokens else 0), room),
        temperature,
        top_p,
        None,
        REPLAY_TOP_K,  # DAPI always asks the validator for 5
        top_k=top_k,
        logprobs_mode=logprobs_mode,
        stop_tokens=stop_tokens,
        enforced_tokens=list(tokens),
    )
    verdict = compare_logits(claimed, ours.positions(), threshold)
    reason = verdict.reason
    if reason == "below_threshold":
        reason = f"similarity {verdict.similarity:.4f} is not above {threshold}"
    return ReplayResult(
        verdict.passed,
        verdict.similarity,
        1.0 - verdict.similarity,
        threshold,
        n,
        reason,
        verdict.position,
    )


def _failed(threshold: float, n: int, reason: str, position: int | None) -> ReplayResult:
    return ReplayResult(False, 0.0, 1.0, threshold, n, reason, position)
