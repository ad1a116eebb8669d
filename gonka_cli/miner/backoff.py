"""Exponential backoff with full jitter, for every retry loop of the miner."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays that double from `base_s` up to `cap_s`, each drawn at random from the upper
    half of its ceiling so that miners retrying together do not hit a node in lockstep;
    `reset()` after a success starts again from `base_s`."""

    def __init__(self, base_s: float = 0.25, cap_s: float = 5.0) -> None:
        self.base_s, self.cap_s = base_s, cap_s
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next try, in seconds."""
        self.failures += 1
        ceiling = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret

    def reset(self) -> None:
        self.failures = 0
