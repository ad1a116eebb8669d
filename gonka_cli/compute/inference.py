"""Generation with top-k logprobs, and its validation by replay (reference §3).

`generate` runs a built-in model with a KV cache: greedy at temperature 0, otherwise seeded
sampling (temperature, then nucleus top-p) that repeats exactly on the same backend. At each
position it reports the model's raw logprobs (temperature 1, before top-p, as vLLM and the
OpenAI API do): the `top_k_logprobs` best tokens, plus the emitted token when it is not among
them (so the emitted token's logprob is always stated).

`replay` is the validator's side: one prefill pass over prompt + the executor's tokens,
then Gonka's similarity between the validator's and the executor's logprobs.

What "a token the validator cannot reproduce as enforced" means here (outright failure,
similarity 0): at some position

- the token id is not an integer in [0, vocab_size), or prompt + tokens exceed the model's
  context;
- the executor's list for that position is missing or malformed (not (id, logprob) pairs,
  an id outside the vocabulary, a repeated id, a logprob that is not finite or above 0);
- the executor's list has no logprob for the token it emitted: an honest executor states
  the probability under which it emitted every token, and a token swapped in afterwards
  comes without one;
- the validator's model gives the token a logprob that is not finite.

Otherwise, per position, over the validator's top 5 tokens with validator logprob v and
executor logprob o: `|v - o| / (|v| + |o| + 1e-6) / 2`. When the executor's list lacks the
token, o is extrapolated from the two smallest logprobs among the executor's 5 best entries,
s1 <= s2: `o = s1 - (s2 - s1)` (`s1 - 1` when it gave a single entry). Then
`distance = total / (max(100, N) * 5)`, `similarity = 1 - distance`, and the replay passes
when `similarity > threshold`. Short answers are diluted by the max(100, N): a 10-token
answer from another model can pass, as on Gonka.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from gonka_cli.compute.tokenizer import STOP_IDS
from gonka_cli.errors import InvalidComputeInput

if TYPE_CHECKING:
    import torch

    from gonka_cli.compute.models import GonkaModel

__all__ = [
    "DEFAULT_REPLAY_THRESHOLD",
    "REPLAY_TOP_K",
    "Generation",
    "ReplayResult",
    "generate",
    "replay",
]

#: Pass mark for `replay`, calibrated by `scripts/calibrate_compute.py` on gonka-small
#: (docs/compute.md, "Calibration"): honest fp32/bf16 replays stay above 0.994 (a distance
#: 7x smaller than the threshold's), another model, gonka-tiny or 4-bit weights score at
#: most 0.88, and answers with 10% of their tokens edited at most 0.954. Gonka's mainnet
#: models use 0.90 to 0.94, which would pass those edited answers.
DEFAULT_REPLAY_THRESHOLD = 0.96
#: How many of the validator's best tokens each position compares.
REPLAY_TOP_K = 5
MAX_TOP_LOGPROBS = 20
_MIN_POSITIONS = 100
_DENOM_EPS = 1e-6
_LOGPROB_SLACK = 1e-3  # rounding may push a certain token's logprob a hair above 0

FinishReason = str  # "stop" | "length"
LogprobList = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class Generation:
    """Generated tokens and, per position, (token id, logprob) pairs best first.

    `top_logprobs[i]` holds the top-k tokens of position i, plus the emitted token last when
    it is not among them; `token_logprobs[i]` is the emitted token's logprob. The stop token,
    when one ended the generation, is the last token.
    """

    tokens: tuple[int, ...]
    top_logprobs: tuple[LogprobList, ...]
    token_logprobs: tuple[float, ...]
    finish_reason: FinishReason

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": list(self.tokens),
            "top_logprobs": [
                [{"token": t, "logprob": lp} for t, lp in entries] for entries in self.top_logprobs
            ],
            "token_logprobs": list(self.token_logprobs),
            "finish_reason": self.finish_reason,
        }


@dataclass(frozen=True)
class ReplayResult:
    """The verdict of one replay.

    `positions` is N, the number of generated tokens compared. After an outright failure
    `similarity` is 0, `distance` 1 and `failed_position` the position at fault (or None
    when the answer as a whole is malformed).
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


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: object) -> bool:
    """Whether `value` is a finite int or float (a JSON integer may exceed float range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_list(value: object) -> TypeGuard[Sequence[Any]]:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _check_prompt(model: GonkaModel, prompt_tokens: Sequence[int]) -> list[int]:
    if isinstance(prompt_tokens, (str, bytes)) or not isinstance(prompt_tokens, Sequence):
        raise InvalidComputeInput("the prompt must be a list of token ids")
    if not prompt_tokens:
        raise InvalidComputeInput("the prompt is empty: give at least one token")
    vocab = model.spec.vocab_size
    for i, token in enumerate(prompt_tokens):
        if not _is_int(token) or not 0 <= token < vocab:
            raise InvalidComputeInput(f"prompt token {i} is {token!r}, not an id in [0, {vocab})")
    return list(prompt_tokens)


def _check_sampling(temperature: float, top_p: float, seed: int | None, top_k: int) -> None:
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidComputeInput(f"{name} must be a number, got {value!r}")
        if not _finite(value):
            raise InvalidComputeInput(f"{name} must be finite, got {value!r:.40}")
    if temperature < 0:
        raise InvalidComputeInput(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise InvalidComputeInput(f"top_p must be in (0, 1], got {top_p}")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**63):
        raise InvalidComputeInput(f"seed must be an integer in [0, 2^63), got {seed!r}")
    if not _is_int(top_k) or not 0 <= top_k <= MAX_TOP_LOGPROBS:
        raise InvalidComputeInput(
            f"top_k_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], got {top_k!r}"
        )


# --- generation ---------------------------------------------------------------------------


def _sample(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> int:
    """Temperature then nucleus sampling by inverse CDF, in float64 on the CPU."""
    import torch

    scores = logits.double()
    # Shifted so the best score is 0: a tiny temperature cannot overflow it into inf - inf.
    probs = torch.softmax((scores - scores.max()) / temperature, dim=-1)
    sorted_probs, order = torch.sort(probs, descending=True, stable=True)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
    kept = torch.where(before < top_p, sorted_probs, torch.zeros_like(sorted_probs))
    cdf = torch.cumsum(kept, dim=-1)
    u = torch.rand((), generator=generator, dtype=torch.float64) * cdf[-1]
    index = int(torch.searchsorted(cdf, u.reshape(1), right=True).item())
    last_kept = int((kept > 0).sum().item()) - 1
    return int(order[min(index, last_kept)].item())


def _top_entries(logprobs: torch.Tensor, k: int, emitted: int) -> LogprobList:
    import torch

    values, ids = torch.sort(logprobs, descending=True, stable=True)
    pairs = zip(ids[:k].tolist(), values[:k].tolist(), strict=True)
    entries = [(int(t), float(v)) for t, v in pairs]
    if all(t != emitted for t, _ in entries):
        entries.append((emitted, float(logprobs[emitted].item())))
    return tuple(entries)


def generate(
    model: GonkaModel,
    prompt_tokens: Sequence[int],
    max_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    top_k_logprobs: int = 5,
    *,
    stop_tokens: Collection[int] = STOP_IDS,
) -> Generation:
    """Generate up to `max_tokens` tokens after `prompt_tokens`, stopping at a stop token.

    temperature 0 is greedy (ties go to the smaller id); otherwise sampling with a
    `torch.Generator` seeded by `seed` (fresh entropy when None), which repeats exactly on
    the same backend. Raises InvalidComputeInput for an empty or out-of-vocabulary prompt,
    prompt + max_tokens beyond the model's context, temperature < 0, top_p outside (0, 1].
    """
    import torch

    prompt = _check_prompt(model, prompt_tokens)
    _check_sampling(temperature, top_p, seed, top_k_logprobs)
    limit = model.spec.max_seq_len
    if not _is_int(max_tokens) or max_tokens < 1:
        raise InvalidComputeInput(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    if len(prompt) + max_tokens > limit:
        raise InvalidComputeInput(
            f"prompt ({len(prompt)} tokens) + max_tokens ({max_tokens}) exceeds the "
            f"{limit}-token context of {model.spec.name}"
        )
    stops = frozenset(stop_tokens)
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)

    tokens: list[int] = []
    tops: list[LogprobList] = []
    chosen: list[float] = []
    finish: FinishReason = "length"
    with torch.inference_mode():
        cache = model.new_cache(1, len(prompt) + max_tokens)
        ids = torch.tensor([prompt], dtype=torch.long, device=model.device)
        logits = model.forward_tokens(ids, cache, last_only=True)[0, -1].to("cpu")
        while True:
            logprobs = torch.log_softmax(logits, dim=-1)
            if temperature == 0:
                token = int(torch.argmax(logits).item())
            else:
                token = _sample(logits, temperature, top_p, generator)
            tokens.append(token)
            tops.append(_top_entries(logprobs, top_k_logprobs, token))
            chosen.append(float(logprobs[token].item()))
            if token in stops:
                finish = "stop"
                break
            if len(tokens) == max_tokens:
                break
            step = torch.tensor([[token]], dtype=torch.long, device=model.device)
            logits = model.forward_tokens(step, cache, last_only=True)[0, -1].to("cpu")
    return Generation(tuple(tokens), tuple(tops), tuple(chosen), finish)


# --- replay -------------------------------------------------------------------------------


class _Reject(Exception):
    def __init__(self, reason: str, position: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


def _parse_entries(raw: object, position: int, vocab: int) -> dict[int, float]:
    if not _is_list(raw) or not raw:
        raise _Reject(f"position {position}: no top logprobs", position)
    entries: dict[int, float] = {}
    for item in raw:
        if isinstance(item, Mapping):
            token, logprob = item.get("token"), item.get("logprob")
        elif _is_list(item) and len(item) == 2:
            token, logprob = item
        else:
            raise _Reject(f"position {position}: a logprob entry is not (token, logprob)", position)
        if not _is_int(token) or not 0 <= token < vocab:
            raise _Reject(f"position {position}: logprob for unknown token {token!r}", position)
        if isinstance(logprob, bool) or not isinstance(logprob, (int, float)):
            raise _Reject(f"position {position}: logprob {logprob!r} is not a number", position)
        if not _finite(logprob) or logprob > _LOGPROB_SLACK:
            raise _Reject(f"position {position}: impossible logprob {logprob!r:.40}", position)
        if token in entries:
            raise _Reject(f"position {position}: token {token} listed twice", position)
        entries[token] = float(logprob)
    return entries


def _missing_logprob(entries: dict[int, float]) -> float:
    best = sorted(entries.values(), reverse=True)[:REPLAY_TOP_K]
    if len(best) == 1:
        return best[0] - 1.0
    smallest, second = best[-1], best[-2]
    return smallest - (second - smallest)


def _position_distance(
    validator_top: Sequence[tuple[int, float]], entries: dict[int, float]
) -> float:
    fallback = _missing_logprob(entries)
    total = 0.0
    for token, v in validator_top:
        o = entries.get(token, fallback)
        total += abs(v - o) / (abs(v) + abs(o) + _DENOM_EPS) / 2.0
    return total


def _failed(threshold: float, n: int, reject: _Reject) -> ReplayResult:
    return ReplayResult(False, 0.0, 1.0, threshold, n, reject.reason, reject.position)


def replay(
    model: GonkaModel,
    prompt_tokens: Sequence[int],
    tokens: Sequence[int],
    top_logprobs: Sequence[Sequence[Any]],
    threshold: float = DEFAULT_REPLAY_THRESHOLD,
) -> ReplayResult:
    """Validate an executor's answer by one prefill pass over prompt + its tokens.

    `top_logprobs[i]` is the executor's list for position i: (token id, logprob) pairs or
    {"token", "logprob"} objects, as `Generation` gives them. See the module docstring for
    the outright failures and the similarity. The prompt is the validator's own input:
    a bad one raises InvalidComputeInput; a bad answer returns a failed ReplayResult.
    """
    import torch

    prompt = _check_prompt(model, prompt_tokens)
    if not _finite(threshold) or not 0 < threshold < 1:
        # Similarity lies in [0.5, 1]: 1 or more fails everything, NaN compares false.
        raise InvalidComputeInput(f"threshold must be a number in (0, 1), got {threshold!r:.40}")
    vocab = model.spec.vocab_size
    # The answer comes from the executor: anything malformed is a failed replay, not a crash.
    if not _is_list(tokens) or not _is_list(top_logprobs):
        reason = "tokens and top_logprobs must both be lists"
        return _failed(threshold, len(tokens) if _is_list(tokens) else 0, _Reject(reason, None))
    n = len(tokens)
    try:
        if len(top_logprobs) != n:
            raise _Reject(f"{n} tokens but {len(top_logprobs)} logprob lists", None)
        if len(prompt) + n > model.spec.max_seq_len:
            raise _Reject(
                f"prompt + answer ({len(prompt) + n} tokens) exceed the model's context", None
            )
        claimed: list[dict[int, float]] = []
        for i, token in enumerate(tokens):
            if not _is_int(token) or not 0 <= token < vocab:
                raise _Reject(f"position {i}: token {token!r} is not in the vocabulary", i)
            entries = _parse_entries(top_logprobs[i], i, vocab)
            if token not in entries:
                raise _Reject(f"position {i}: no logprob given for the emitted token", i)
            claimed.append(entries)
    except _Reject as reject:
        return _failed(threshold, n, reject)
    if n == 0:
        return ReplayResult(True, 1.0, 0.0, threshold, 0, "ok")

    with torch.inference_mode():
        ids = torch.tensor([prompt + list(tokens[:-1])], dtype=torch.long, device=model.device)
        logits = model.forward_tokens(ids)[0, len(prompt) - 1 :].to("cpu")
        logprobs = torch.log_softmax(logits, dim=-1)
        enforced = logprobs.gather(1, torch.tensor(list(tokens))[:, None])[:, 0]
        values, order = torch.sort(logprobs, dim=-1, descending=True, stable=True)
    bad = (~torch.isfinite(enforced)).nonzero()
    if bad.numel():
        position = int(bad[0, 0].item())
        reason = f"position {position}: the model cannot produce the enforced token"
        return _failed(threshold, n, _Reject(reason, position))
    top_ids = order[:, :REPLAY_TOP_K].tolist()
    top_values = values[:, :REPLAY_TOP_K].tolist()
    total = sum(
        _position_distance(list(zip(ids, vals, strict=True)), entries)
        for ids, vals, entries in zip(top_ids, top_values, claimed, strict=True)
    )
    distance = total / (max(_MIN_POSITIONS, n) * REPLAY_TOP_K)
    similarity = 1.0 - distance
    passed = similarity > threshold
    reason = "ok" if passed else f"similarity {similarity:.4f} is not above {threshold}"
    return ReplayResult(passed, similarity, distance, float(threshold), n, reason)
