"""Validators' votes: who is drawn to validate, how their votes are tallied, and who the
verdict contradicted.

Validators are drawn by PoC weight (weighted sampling without replacement) among the
participants that may validate; a participant without weight is never drawn, so a free key
cannot become a validator. Votes count by the weight their validator was drawn with: a subject
passes when the valid votes hold more than half of the voting weight (the weight of the
validators that answered); it fails on votes alone only when the invalid ones hold more than
half of the network's weight (`verdict`), and otherwise, as on a tie, the node re-checks it.

Once the verdict on a subject is known, every vote on it is written to `validator_votes`
with `contradicted` set (1 when the verdict went the other way); settlement pays a validation
reward per agreed vote (`validator_outcomes`). Rows are written in one transaction with the
verdict, under the epoch in which the verdict is recorded (the PoC round's epoch for PoC
votes), so a settled epoch never gains votes afterwards.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS validator_votes (
    epoch INTEGER NOT NULL,
    validator TEXT NOT NULL,
    kind TEXT NOT NULL,            -- poc | inference
    subject TEXT NOT NULL,         -- the prover's address, or the inference id
    vote TEXT NOT NULL,            -- valid | invalid
    weight INTEGER NOT NULL,       -- the validator's PoC weight when it was drawn
    contradicted INTEGER,          -- 1 when the verdict went the other way (NULL: not known)
    PRIMARY KEY (epoch, validator, kind, subject)
);
CREATE INDEX IF NOT EXISTS validator_votes_by_validator ON validator_votes (validator, epoch);
"""

POC = "poc"
INFERENCE = "inference"
VALID = "valid"
INVALID = "invalid"


@dataclass(frozen=True)
class Vote:
    """One validator's answer on one subject."""

    validator: str
    vote: str  # valid | invalid
    weight: int

    @property
    def valid(self) -> bool:
        return self.vote == VALID


def draw(
    candidates: Iterable[str], weights: Mapping[str, int], k: int, rng: random.Random
) -> list[str]:
    """Up to `k` of `candidates`, drawn with probability proportional to their weight and
    without replacement; candidates without weight are never drawn."""
    pool = sorted({c for c in candidates if weights.get(c, 0) > 0})
    chosen: list[str] = []
    while pool and len(chosen) < k:
        total = sum(weights[c] for c in pool)
        point = rng.randrange(total)
        for index, candidate in enumerate(pool):
            point -= weights[candidate]
            if point < 0:
                chosen.append(pool.pop(index))
                break
    return chosen


def majority(votes: Sequence[Vote]) -> bool | None:
    """True when the valid votes hold more than half of the voting weight, False when the
    invalid ones do, None on a tie or with no vote."""
    total = sum(v.weight for v in votes)
    valid = sum(v.weight for v in votes if v.valid)
    if total <= 0:
        return None
    if 2 * valid > total:
        return True
    if 2 * (total - valid) > total:
        return False
    return None


def verdict(votes: Sequence[Vote], network_weight: int) -> bool | None:
    """The weighted majority, except that a conviction stands on votes alone only when the
    invalid votes hold more than half of the network's weight (mainnet's threshold for
    rejecting). A smaller convicting ballot gives None: the node re-checks the subject itself.
    So a validator with a sliver of weight, drawn alone or voting alone, can pass an answer
    but never convict one."""
    decided = majority(votes)
    if decided is False:
        invalid = sum(v.weight for v in votes if not v.valid)
        if 2 * invalid <= network_weight:
            return None
    return decided


def unanimous(votes: Sequence[Vote]) -> bool:
    return len({v.vote for v in votes}) <= 1


def selected_for_recheck(secret_hex: str, subject: str, share: float) -> bool:
    """Whether the node re-checks a disputed verdict itself: SHA-256(secret || subject) as a
    fraction of 2^256 below `share` (the epoch's secret, so a validator cannot know it)."""
    if share >= 1:
        return True
    digest = hashlib.sha256(bytes.fromhex(secret_hex) + subject.encode()).digest()
    return int.from_bytes(digest, "big") < int(share * 2**256)


def record_votes(
    db: sqlite3.Connection,
    epoch: int,
    kind: str,
    subject: str,
    votes: Sequence[Vote],
    verdict_valid: bool,
) -> list[str]:
    """Write the votes on `subject` with `contradicted` set against the verdict; returns the
    validators it contradicted. Call it inside the transaction that records the verdict."""
    contradicted = [v.validator for v in votes if v.valid != verdict_valid]
    db.executemany(
        "INSERT OR REPLACE INTO validator_votes VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (epoch, v.validator, kind, subject, v.vote, v.weight, int(v.valid != verdict_valid))
            for v in votes
        ],
    )
    return contradicted


def validator_outcomes(db: sqlite3.Connection, epoch: int) -> dict[str, tuple[int, int]]:
    """`address -> (agreed, contradicted)`: the votes of `epoch` whose verdict is known."""
    found: dict[str, tuple[int, int]] = {}
    for validator, agreed, contradicted in db.execute(
        "SELECT validator, SUM(contradicted = 0), SUM(contradicted = 1) FROM validator_votes "
        "WHERE epoch = ? AND contradicted IS NOT NULL GROUP BY validator ORDER BY validator",
        (epoch,),
    ):
        found[validator] = (int(agreed or 0), int(contradicted or 0))
    return found


def votes_on(db: sqlite3.Connection, kind: str, subject: str) -> list[tuple[int, Vote, int]]:
    """`(epoch, vote, contradicted)` of every recorded vote on `subject`."""
    return [
        (epoch, Vote(validator, vote, weight), contradicted)
        for epoch, validator, vote, weight, contradicted in db.execute(
            "SELECT epoch, validator, vote, weight, contradicted FROM validator_votes "
            "WHERE kind = ? AND subject = ? ORDER BY validator",
            (kind, subject),
        )
    ]
