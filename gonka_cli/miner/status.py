"""What the miner reports: its running totals, the live status and the final summary.

`Tally` holds the counters the miner's threads update (under its own lock). `snapshot()` turns
them, the chain as last seen and the pool's devices into the live status — the live view,
`/status`, `/metrics` — and `summary()` into `--json`'s last line. Both are plain JSON types;
docs/mine.md lists every field.

`earned_ngonka` is what the network paid this address while this miner ran — PoC rewards,
inference fees and validation rewards, as the node's earnings records say (`GET
/v1/participants/{address}/earnings?since_height=` the height at start) — never a change of
balance, which transfers and faucet fundings move too.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["ChainView", "Tally", "snapshot", "summary"]


class Tally:
    """The miner's running totals; every method is safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        #: Per epoch, the largest count the node acknowledged.
        self.committed: dict[int, int] = {}
        self.weight_accepted = 0
        self.balance_ngonka: int | None = None
        self.earned_ngonka: int | None = None
        #: The node's last earnings answer: heights and the sums by kind (amounts as strings).
        self.earnings: dict[str, Any] = {}
        self.outbox_pending = 0

    def add(self, counter: str, n: int = 1) -> None:
        with self._lock:
            self.counts[counter] += n

    def reject(self, reason_key: str) -> None:
        with self._lock:
            self.counts["rejected"] += 1
            self.rejections[reason_key] += 1

    def committed_count(self, epoch: int, count: int) -> bool:
        """Note an acknowledged commit; True when it is the epoch's first."""
        with self._lock:
            first = epoch not in self.committed
            self.committed[epoch] = max(self.committed.get(epoch, 0), count)
            return first

    def accepted_weight(self, weight: int) -> None:
        with self._lock:
            self.weight_accepted += weight
            self.counts["accepted"] += 1

    def totals(self, epoch: int | None) -> dict[str, Any]:
        with self._lock:
            counts = dict(self.counts)
            return {
                "artifacts_committed": sum(self.committed.values()),
                "proofs_answered": counts.get("proofs_answered", 0),
                "inference_tasks": counts.get("inference_tasks", 0),
                "validations": counts.get("validations", 0),
                "accepted": counts.get("accepted", 0),
                "rejected": counts.get("rejected", 0),
                "rejections": dict(self.rejections),
                "weight_estimated": self.committed.get(epoch, 0) if epoch is not None else 0,
                "weight_accepted": self.weight_accepted,
                "balance_ngonka": _text(self.balance_ngonka),
                "earned_ngonka": _text(self.earned_ngonka),
                "earnings": dict(self.earnings),
                "outbox_pending": self.outbox_pending,
            }


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class ChainView:
    """The chain as the miner last saw it (None: not known yet)."""

    epoch: int | None = None
    phase: str | None = None
    height: int | None = None
    phase_time_left_s: float | None = None
    #: Outside a generate phase: seconds until the next one begins.
    next_generate_in_s: float | None = None


def snapshot(
    *,
    address: str,
    node_url: str,
    node_reachable: bool,
    uptime_s: float,
    chain: ChainView,
    devices: list[dict[str, Any]],
    tally: Tally,
    job_epoch: int | None,
) -> dict[str, Any]:
    """The live status: plain JSON types."""
    totals = tally.totals(job_epoch)
    return {
        "address": address,
        "node_url": node_url,
        "node_reachable": node_reachable,
        "uptime_s": round(uptime_s, 1),
        "epoch": chain.epoch,
        "phase": chain.phase,
        "height": chain.height,
        "phase_time_left_s": _round(chain.phase_time_left_s),
        "next_generate_in_s": _round(chain.next_generate_in_s),
        "devices": devices,
        "totals": {"nonces": sum(d["nonces"] for d in devices), **totals},
    }


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(max(0.0, seconds), 1)


def summary(snap: dict[str, Any], generate_phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The final summary object (`--json`'s last line) from a last snapshot."""
    totals = snap["totals"]
    return {
        "event": "summary",
        "address": snap["address"],
        "duration_s": snap["uptime_s"],
        "nonces": totals["nonces"],
        "artifacts_committed": totals["artifacts_committed"],
        "weight_estimated": totals["weight_estimated"],
        "weight_accepted": totals["weight_accepted"],
        "proofs_answered": totals["proofs_answered"],
        "inference_tasks": totals["inference_tasks"],
        "validations": totals["validations"],
        "accepted": totals["accepted"],
        "rejected": totals["rejected"],
        "rejections": totals["rejections"],
        "balance_ngonka": totals["balance_ngonka"],
        "earned_ngonka": totals["earned_ngonka"],
        "earnings": totals["earnings"],
        "outbox_pending": totals["outbox_pending"],
        "devices": snap["devices"],
        "generate_phases": generate_phases,
    }
