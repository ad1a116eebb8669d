"""The spec's logprob rules written out for tests, independently of the engine's code.

Spec §1.5 (vLLM's sampler, Gonka's `processed_logprobs`): logits / temperature, then top-k
keeps the scores >= the k-th best, top-p keeps a token when the probability of the tokens
ranked above it is below p; masked entries are -inf, written as -9999.0; the best n entries
per position, ties and masked entries to the smaller id.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["assert_matches", "expected_entries", "reference_processed"]


def reference_processed(
    logits: torch.Tensor, temperature: float, top_p: float = 1.0, top_k: int = 0
) -> torch.Tensor:
    """Spec §1.5: log-softmax after temperature, top-k, top-p; masked entries -inf.

    Written from the rule, not from the engine: top-k keeps the scores >= the k-th best;
    top-p keeps a token when the probability of the tokens ranked above it is below p.
    """
    if temperature < 1e-5:
        return torch.log_softmax(logits, dim=-1)
    out = []
    for row in logits / temperature:
        row = row.clone()
        if 0 < top_k < row.numel():
            kth = sorted(row.tolist(), reverse=True)[top_k - 1]
            row[row < kth] = -math.inf
        probs = torch.softmax(row, dim=-1).tolist()
        order = sorted(range(len(probs)), key=lambda i: -probs[i])
        above = 0.0
        for rank, i in enumerate(order):
            if rank > 0 and above >= top_p:
                row[i] = -math.inf
            above += probs[i]
        out.append(torch.log_softmax(row, dim=-1))
    return torch.stack(out)


def expected_entries(values: torch.Tensor, n: int = 5) -> list[tuple[int, float]]:
    """Best n (id, value), ties and -inf to the smaller id, floored at -9999."""
    ranked = sorted(range(values.numel()), key=lambda i: (-float(values[i]), i))[:n]
    return [(i, max(float(values[i]), -9999.0)) for i in ranked]


def assert_matches(answer: Any, reference: torch.Tensor, tol: float = 1e-4) -> None:
    for i, (token, own, entries) in enumerate(
        zip(answer.tokens, answer.token_logprobs, answer.top_logprobs, strict=True)
    ):
        want = expected_entries(reference[i])
        assert len(entries) == 5
        for (t, lp), (wt, wlp) in zip(entries, want, strict=True):
            if wlp == -9999.0 or abs(lp - wlp) > tol:
                assert (t, lp) == (wt, wlp), (i, entries, want)
            # Near-ties may swap on another summation order; values must still agree.
            assert abs(lp - float(max(reference[i, t], -9999.0))) < tol, (i, t)
        assert abs(own - max(float(reference[i, token]), -9999.0)) < tol, (i, token)
