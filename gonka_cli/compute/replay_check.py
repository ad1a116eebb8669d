"""The devnet's replay that checks the tokens: stricter than mainnet's CompareLogits.

Mainnet's verdict (`compare_logits`) asks only whether the executor's logprobs are the
model's. An answer of any text, with the model's true logprobs for it from one cheap prefill
pass, passes it, and short answers are diluted by its max(100, N) divisor. The devnet's
validators (`check_answer`) replay the answer with its tokens enforced in one prefill pass, as
`inference.replay` does, and judge four things:

1. **Logprobs.** CompareLogits' per-position distance over the validator's 5 entries, divided
   by N (not max(100, N)) x the size of the executor's first list: `similarity = 1 - distance`
   must exceed the model's pass mark. Where executor and validator draw the top-p / top-k edge
   one token apart, the executor's values are first shifted to agree on the validator's best
   token, and an entry masked on one side only counts nothing when its token is at the edge
   (as do the validator's masked fillers, when the executor's extra tokens are at the edge).
2. **Tokens in the support.** At temperature 0 each token is the validator's argmax, or its raw
   logprob is within `GREEDY_TIE_NATS` of the argmax's (ties and rounding between backends).
   Otherwise each token's tempered logprob (logits / temperature, log-softmax, before the
   masks) is at least that of the weakest token the support keeps once widened for numeric
   noise (top-p + `TOP_P_MARGIN`, top-k + 1) minus `SUPPORT_MARGIN_NATS`, and never below
   `LOGPROB_FLOOR`. `support_margin` is the smallest room left over all positions (nats):
   negative fails.
3. **A likely answer** (temperature > 0). With q_i the distribution an honest host samples
   position i from (tempered, masked, renormalised) and s_i = log q_i(token_i) (a token just
   outside the support, within the margin, counts as if inside), the surprisal
   W = -sum(s_i) is compared with what honest sampling gives. Honest W obeys, for every
   lambda in (0, 1), P[W >= w] <= exp(-lambda w) prod_i sum_t q_i(t)^(1 - lambda) (Markov's
   inequality on exp(lambda W)), whatever the shape of the distributions, so `log10_p`, the
   smallest such bound over `LAMBDAS`, is an honest answer's chance of looking this unlikely:
   below `LIKELIHOOD_LOG10_P` fails. `z_score` = (sum(s_i) - sum(-H_i)) / sqrt(sum(Var_i)),
   H_i the entropy of q_i, is reported as well (a normal approximation, too light-tailed on
   short answers to convict on).
4. **A well-formed answer**: as `inference.replay`.

`passes(...)` is the rule on the reported statistics, so that a node can check that a
validator's `passed` agrees with them. torch loads only inside `check_answer`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gonka_cli.compute.compare_logits import LogprobEntry, PositionLogprobs
from gonka_cli.compute.inference import (
    DEFAULT_REPLAY_THRESHOLD,
    MASKED_LOGPROB,
    REPLAY_TOP_K,
    Sampling,
    _check_ids,
    _claimed_answer,
    _finite,
    _Malformed,
    _mask_top_k_top_p,
    _reported,
    _top_entries,
)
from gonka_cli.errors import InvalidComputeInput
from gonka_cli.validate import is_list

if TYPE_CHECKING:
    import torch

__all__ = [
    "GREEDY_TIE_NATS",
    "LAMBDAS",
    "LIKELIHOOD_LOG10_P",
    "LOGPROB_FLOOR",
    "SUPPORT_MARGIN_NATS",
    "TOP_P_MARGIN",
    "ReplayVerdict",
    "check_answer",
    "passes",
]

#: At temperature 0: a token whose raw logprob is this close to the argmax's is a tie.
GREEDY_TIE_NATS = 0.5
#: Sampled: the support is widened by this much probability mass (top-p) and one rank (top-k)
#: for numeric noise, where executor and validator draw its edge one token apart...
TOP_P_MARGIN = 0.05
#: ...and a token this far below the widened support's weakest token is still noise.
SUPPORT_MARGIN_NATS = 1.0
#: Sampled: a tempered logprob at or below this fails whatever the masks (an honest draw lands
#: there with probability below vocabulary x e^-30, 1.4e-8 on a 152k vocabulary).
LOGPROB_FLOOR = -30.0
#: An answer whose honest-sampling bound `log10_p` is below this fails (the bound over the
#: LAMBDAS grid: an honest answer fails with probability below len(LAMBDAS) x 10^this).
LIKELIHOOD_LOG10_P = -9.0
LAMBDAS = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85)
_CHUNK = 16
_DENOM_EPS = 1e-6
_SINGLE_ENTRY_GAP = 100.0


@dataclass(frozen=True)
class ReplayVerdict:
    """The devnet's verdict on one answer (see the module docstring).

    `reason` is `ok` or, in words, the first rule that failed; `failed_position` the position
    at fault where one is. `support_margin` (nats, None for an empty answer) is the smallest
    room a token left to its bound; `log10_p` and `z_score` are None at temperature 0 and for
    an empty answer. A malformed answer fails with similarity 0.
    """

    passed: bool
    reason: str
    similarity: float
    threshold: float
    positions: int
    greedy: bool
    support_margin: float | None
    log10_p: float | None
    z_score: float | None
    failed_position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def passes(
    similarity: float,
    threshold: float,
    support_margin: float | None,
    log10_p: float | None,
) -> bool:
    """The verdict from the statistics: logprobs alike, every token in the support, and an
    answer honest sampling could give."""
    return (
        similarity > threshold
        and (support_margin is None or support_margin >= 0.0)
        and (log10_p is None or log10_p >= LIKELIHOOD_LOG10_P)
    )


# --- the pieces -------------------------------------------------------------------------------


def _answer_logits(model: Any, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """[N, V] float32 logits on the CPU, row i predicting tokens[i]: one prefill pass."""
    import torch

    with torch.inference_mode():
        cache = model.new_cache(1, len(prompt) + len(tokens) - 1)
        ids = torch.tensor([prompt], dtype=torch.long, device=model.device)
        rows = [model.forward_tokens(ids, cache, last_only=True)[0].float().to("cpu")]
        if len(tokens) > 1:
            ids = torch.tensor([tokens[:-1]], dtype=torch.long, device=model.device)
            rows.append(model.forward_tokens(ids, cache)[0].float().to("cpu"))
    return torch.cat(rows)


def _masked(value: float) -> bool:
    return value <= MASKED_LOGPROB + 0.5


def _position_distance(
    claimed: Sequence[LogprobEntry], ours: Sequence[LogprobEntry], boundary: Collection[str]
) -> float:
    """CompareLogits' distance of one position (see `compare_logits`), with two allowances
    for top-p and top-k: the executor's values are first shifted to agree with ours on our
    best token (a support that differs by a token near its edge renormalises every value), and
    an entry masked on one side only counts nothing when its token is at the support's edge
    (`boundary`)."""
    if not claimed or not ours:
        return math.inf
    values = {e.token: e.logprob for e in claimed}
    ordered = sorted(values.values())
    m0 = ordered[0]
    m1 = ordered[1] if len(ordered) >= 2 else m0 - _SINGLE_ENTRY_GAP
    missing = m0 - (m1 - m0)
    best = ours[0]
    shift = 0.0
    if best.token in values and not _masked(best.logprob) and not _masked(values[best.token]):
        shift = best.logprob - values[best.token]
    # Where the validator keeps fewer than 5 tokens, its list ends with masked fillers (the
    # smallest ids); an executor that kept one more token at the edge lists that one instead.
    kept = {e.token for e in ours if not _masked(e.logprob)}
    extra = {t for t, lp in values.items() if not _masked(lp) and t not in kept}
    fillers_void = bool(extra) and extra <= set(boundary)
    total = 0.0
    for entry in ours:
        v, o = entry.logprob, values.get(entry.token, missing)
        if _masked(v) != _masked(o) and entry.token in boundary:
            continue
        if _masked(v) and fillers_void and entry.token not in values:
            continue
        if not _masked(o):
            o += shift
        total += abs(v - o) / (_DENOM_EPS + abs(v) + abs(o)) / 2.0
    return total


def _similarity(
    claimed: Sequence[PositionLogprobs],
    ours: Sequence[PositionLogprobs],
    boundaries: Sequence[Collection[str]],
) -> float:
    """1 - the mean distance per position and entry, over N positions (no max(100, N))."""
    distance = sum(
        _position_distance(c.top_logprobs, o.top_logprobs, b)
        for c, o, b in zip(claimed, ours, boundaries, strict=True)
    )
    width = len(claimed[0].top_logprobs) or 1
    value = 1.0 - distance / (len(claimed) * width)
    return value if math.isfinite(value) and value > 0 else 0.0


def _greedy_margins(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Per position: GREEDY_TIE_NATS minus the token's raw logprob gap to the argmax."""
    import torch

    lp = torch.log_softmax(logits.double(), dim=-1)
    gap = lp.max(dim=-1).values - lp.gather(1, tokens[:, None])[:, 0]
    return GREEDY_TIE_NATS - gap


@dataclass(frozen=True)
class _Support:
    """The sampling support per position: tempered log-softmax [N, V] (float32), which tokens
    top-k / top-p keep, the weakest kept token's tempered value (`weakest`), and the weakest
    token of the support widened by TOP_P_MARGIN and one more top-k rank (`lowest`; +inf
    where the widened support keeps every token)."""

    tempered: torch.Tensor
    kept: torch.Tensor | None  # None: every token (no top-k, top-p 1)
    weakest: torch.Tensor
    lowest: torch.Tensor

    @classmethod
    def of(cls, logits: torch.Tensor, sampling: Sampling) -> _Support:
        import torch

        scaled = logits.float() / sampling.temperature
        top_k, top_p = sampling.top_k, sampling.top_p
        if top_p >= 1.0 and (top_k <= 0 or top_k >= scaled.shape[-1]):
            # Nothing is masked: skip the [N, V] masks (a 150k vocabulary makes them costly).
            tempered = torch.log_softmax(scaled, dim=-1)
            everything = torch.full(tempered.shape[:1], math.inf)
            return cls(tempered, None, tempered.min(dim=-1).values, everything)
        kept = torch.isfinite(_mask_top_k_top_p(scaled, top_k, top_p))
        tempered = torch.log_softmax(scaled, dim=-1)
        weakest = tempered.masked_fill(~kept, math.inf).min(dim=-1).values
        wide_k = top_k + 1 if top_k > 0 else 0
        wide = torch.isfinite(_mask_top_k_top_p(scaled, wide_k, min(1.0, top_p + TOP_P_MARGIN)))
        lowest = tempered.masked_fill(~wide, math.inf).min(dim=-1).values
        lowest = lowest.masked_fill(wide.all(dim=-1), math.inf)
        return cls(tempered, kept, weakest, lowest)

    def floor(self) -> torch.Tensor:
        """Per position: the smallest tempered logprob a sampled token may have."""
        import torch

        return torch.clamp(self.lowest - SUPPORT_MARGIN_NATS, min=LOGPROB_FLOOR).nan_to_num(
            LOGPROB_FLOOR, posinf=LOGPROB_FLOOR
        )

    def boundary(self, position: int, candidates: Collection[str]) -> frozenset[str]:
        """Which of `candidates` (decimal ids) lie at the support's edge: from SUPPORT_MARGIN_NATS
        below the widened support's weakest token to as far above the support's own weakest
        (none when nothing is masked)."""
        if self.kept is None or bool(self.kept[position].all()):
            return frozenset()
        vocab = self.tempered.shape[-1]
        ids = [int(t) for t in candidates if t.isdigit() and int(t) < vocab]
        if not ids:
            return frozenset()
        top = float(self.weakest[position]) + SUPPORT_MARGIN_NATS
        bottom = min(float(self.lowest[position]), float(self.weakest[position]))
        bottom -= SUPPORT_MARGIN_NATS
        values = self.tempered[position, ids].tolist()
        return frozenset(str(t) for t, v in zip(ids, values, strict=True) if bottom <= v <= top)


@dataclass
class _Likelihood:
    """Sums over positions of the answer's surprisal, the entropies, their variances and, per
    lambda, log sum_t q(t)^(1 - lambda): enough for `log10_p` and the z-score."""

    surprisal: float = 0.0
    expected: float = 0.0
    variance: float = 0.0
    log_m: list[float] = dataclasses.field(default_factory=lambda: [0.0] * len(LAMBDAS))

    def add(self, support: _Support, tokens: torch.Tensor) -> torch.Tensor:
        """Take a chunk of positions in; return their support margins."""
        import torch

        tempered, kept = support.tempered, support.kept
        token_lp = tempered.gather(1, tokens[:, None])[:, 0]
        floor = support.floor()
        # q: the honest sampling distribution (support only, renormalised). A token outside
        # it (within the margin) counts its tempered value renormalised the same way.
        if kept is None:
            log_z = torch.zeros(tempered.shape[:1])
            q_log = tempered  # finite everywhere: q * q_log is 0 where q underflows
            q = q_log.exp()
            entropy = -(q * q_log).sum(dim=-1)
            second = (q * q_log * q_log).sum(dim=-1)
        else:
            log_z = torch.logsumexp(tempered.masked_fill(~kept, -math.inf), dim=-1)
            q_log = (tempered - log_z[:, None]).masked_fill(~kept, -math.inf)
            q = q_log.exp()
            zero = torch.zeros_like(q)
            entropy = -torch.where(kept, q * q_log, zero).sum(dim=-1)
            second = torch.where(kept, q * q_log * q_log, zero).sum(dim=-1)
        self.surprisal += float(-(token_lp - log_z).sum())
        self.variance += float(torch.clamp(second - entropy * entropy, min=0.0).sum())
        self.expected += float(entropy.sum())
        for k, lam in enumerate(LAMBDAS):
            # q_log <= 0 and the best token's term is >= 1/V: no overflow, no log(0).
            self.log_m[k] += float(torch.exp((1.0 - lam) * q_log).sum(dim=-1).log().sum())
        return token_lp - floor

    def log10_p(self) -> float:
        bound = min(
            0.0, *(m - lam * self.surprisal for m, lam in zip(self.log_m, LAMBDAS, strict=True))
        )
        return bound / math.log(10.0)

    def z_score(self) -> float:
        # A position sure of one token has no variance: any surprisal there is all the signal.
        return (self.expected - self.surprisal) / math.sqrt(max(self.variance, 1e-12))


# --- the check --------------------------------------------------------------------------------


def _sampling(value: Sampling | Mapping[str, Any]) -> Sampling:
    if isinstance(value, Sampling):
        return value
    if not isinstance(value, Mapping):
        raise InvalidComputeInput("sampling must be a Sampling or a mapping of its fields")
    fields = {"temperature", "top_p", "top_k", "logprobs_mode"}
    return Sampling(**{k: v for k, v in value.items() if k in fields and v is not None})


def _failed(
    threshold: float, n: int, greedy: bool, reason: str, position: int | None
) -> ReplayVerdict:
    return ReplayVerdict(False, reason, 0.0, threshold, n, greedy, None, None, None, position)


def check_answer(
    model: Any,
    prompt_tokens: Sequence[int],
    tokens: Sequence[Any],
    top_logprobs: Sequence[Any],
    sampling: Sampling | Mapping[str, Any] | None = None,
    threshold: float = DEFAULT_REPLAY_THRESHOLD,
) -> ReplayVerdict:
    """Judge an executor's answer the devnet's way (see the module docstring).

    `tokens` and `top_logprobs` are as `inference.replay` takes them (`Generation.to_dict()`'s
    form, or (id, logprob) pairs); `sampling` is the request's (a `Sampling`, or a mapping with
    `temperature`, `top_p`, `top_k`, `logprobs_mode`; None: vLLM's defaults, temperature 1).
    The answer's tokens are enforced as they are (no end of sequence appended). A bad prompt,
    threshold or sampling raises InvalidComputeInput; a malformed answer is a failed verdict.
    """
    import torch

    prompt = _check_ids(model, prompt_tokens, "prompt")
    if not _finite(threshold) or not 0 < threshold < 1:
        raise InvalidComputeInput(f"threshold must be a number in (0, 1), got {threshold!r:.40}")
    threshold = float(threshold)
    params = Sampling() if sampling is None else _sampling(sampling)
    greedy = params.greedy
    if not is_list(tokens) or not is_list(top_logprobs):
        n = len(tokens) if is_list(tokens) else 0
        return _failed(threshold, n, greedy, "tokens and top_logprobs must both be lists", None)
    n = len(tokens)
    try:
        claimed = _claimed_answer(model, prompt, tokens, top_logprobs)
    except _Malformed as bad:
        return _failed(threshold, n, greedy, bad.reason, bad.position)
    if n == 0:
        return ReplayVerdict(True, "ok", 1.0, threshold, 0, greedy, None, None, None)

    answer = list(tokens)
    logits = _answer_logits(model, prompt, answer)
    ids = torch.tensor(answer, dtype=torch.long)
    values = _reported(logits, params)
    ours = [
        PositionLogprobs(str(t), 0.0, tuple(LogprobEntry(str(i), v) for i, v in entries))
        for t, entries in zip(answer, _top_entries(values, REPLAY_TOP_K), strict=True)
    ]
    log10_p: float | None = None
    z: float | None = None
    boundaries: list[frozenset[str]] = [frozenset()] * n
    if greedy:
        margins = _greedy_margins(logits, ids)
    else:
        # In chunks of positions: a 150k vocabulary makes each [N, V] table large.
        likelihood, parts, boundaries = _Likelihood(), [], []
        for start in range(0, n, _CHUNK):
            rows = slice(start, start + _CHUNK)
            support = _Support.of(logits[rows], params)
            parts.append(likelihood.add(support, ids[rows]))
            boundaries += [
                support.boundary(i, {e.token for e in (*c.top_logprobs, *o.top_logprobs)})
                for i, (c, o) in enumerate(zip(claimed[rows], ours[rows], strict=True))
            ]
        margins = torch.cat(parts)
        log10_p, z = likelihood.log10_p(), likelihood.z_score()
    similarity = _similarity(claimed, ours, boundaries)
    margin_list = margins.tolist()
    support_margin = min(margin_list)
    passed = passes(similarity, threshold, support_margin, log10_p)
    position: int | None = None
    if passed:
        reason = "ok"
    elif support_margin < 0:
        position = next(i for i, m in enumerate(margin_list) if m < 0)
        if greedy:
            reason = f"position {position}: token {answer[position]} is not the argmax"
        else:
            reason = (
                f"position {position}: token {answer[position]} is outside the sampling "
                "support of the temperature, top-k and top-p"
            )
    elif similarity <= threshold:
        reason = f"similarity {similarity:.4f} is not above {threshold}"
    else:
        reason = (
            f"the answer is too unlikely under the model: an honest answer is this unlikely "
            f"with probability at most {len(LAMBDAS)} x 10^{log10_p:.1f}"
        )
    return ReplayVerdict(
        passed, reason, similarity, threshold, n, greedy, support_margin, log10_p, z, position
    )
