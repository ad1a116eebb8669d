"""The estimated share: this machine's PoC rate as a weight, against the network's total.

A host's weight in an epoch grows with the nonces it proves during the PoC stage, so the
measured nonces per minute stand for this host's weight. The network's current total weight
comes from a node's `GET /v1/epochs/current/participants` (the participants of the current
epoch and their weights). The share if this host joined is `w / (W + w)`.

This is optional: when no node answers, or the node has no such endpoint, or its answer is
not a participant list, the share is "unknown" with the reason; it never fails a benchmark.
Accepted answers: `{"participants": [{"weight": N, ...}, ...]}`, optionally with
`"total_weight"` and `"weight_epoch"` (as `gonka node` serves it, docs/protocol.md), or the same
list under `"active_participants"` (Gonka's API); weights are integers or decimal strings.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["PARTICIPANTS_PATH", "NetworkWeight", "ShareEstimate", "estimate_share", "fetch_weight"]

PARTICIPANTS_PATH = "/v1/epochs/current/participants"
TIMEOUT_S = 3.0


@dataclass(frozen=True)
class NetworkWeight:
    """The current epoch's total weight as one node reported it."""

    node_url: str
    total_weight: int
    participants: int
    epoch: int | None = None


@dataclass(frozen=True)
class ShareEstimate:
    """`status` is "estimated" (the share is known) or "unknown" (see `reason`)."""

    status: str
    reason: str
    model: str | None = None
    weight: float | None = None
    network_total_weight: int | None = None
    participants: int | None = None
    epoch: int | None = None
    share_percent: float | None = None
    node_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class WeightUnavailable(Exception):
    """Why the network's weight is unknown (a reason, never an error of the run)."""


def _weight(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a weight")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"weight {value[:20]!r} is not a number") from None
        if not parsed.is_finite() or parsed != parsed.to_integral_value():
            raise ValueError(f"weight {value[:20]!r} is not an integer")
        number = int(parsed)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise ValueError(f"weight {str(value)[:20]!r} is not an integer")
    if number < 0:
        raise ValueError("a weight is never negative")
    return number


def parse_participants(data: Any, node_url: str) -> NetworkWeight:
    """The total weight in a participants answer; ValueError when it is not one."""
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    holder = data.get("active_participants", data)
    if not isinstance(holder, dict):
        raise ValueError("active_participants is not an object")
    participants = holder.get("participants")
    if not isinstance(participants, list):
        raise ValueError("the answer has no participants list")
    weights = []
    for entry in participants:
        if not isinstance(entry, dict) or "weight" not in entry:
            raise ValueError("a participant has no weight")
        weights.append(_weight(entry["weight"]))
    total = sum(weights)
    if "total_weight" in data:
        total = _weight(data["total_weight"])
    epoch = None
    # The epoch the weights belong to: `weight_epoch` on gonka's node (the latest validated).
    for key in ("weight_epoch", "epoch", "epoch_index", "epoch_id", "epoch_group_id"):
        value = holder.get(key, data.get(key))
        if value is not None:
            try:
                epoch = _weight(value)
            except ValueError:
                continue
            break
    return NetworkWeight(node_url, total, len(weights), epoch)


def _ask(url: str, timeout_s: float) -> NetworkWeight | str:
    """One node's participants, or why not (a reason, never an exception)."""
    import requests

    try:
        response = requests.get(
            url + PARTICIPANTS_PATH, timeout=timeout_s, headers={"Accept": "application/json"}
        )
    except requests.Timeout:
        return f"{url}: no answer in {timeout_s:g} s"
    except requests.RequestException as exc:
        return f"{url}: unreachable ({type(exc).__name__})"
    if response.status_code in (404, 405, 501):
        return f"{url}: no {PARTICIPANTS_PATH} endpoint (HTTP {response.status_code})"
    if response.status_code != 200:
        return f"{url}: HTTP {response.status_code}"
    try:
        return parse_participants(response.json(), url)
    except (ValueError, RecursionError) as exc:
        return f"{url}: not a participant list ({exc})"


def fetch_weight(urls: Sequence[str], timeout_s: float = TIMEOUT_S) -> NetworkWeight:
    """Ask every node at once; the first in `urls` order that answers wins.

    Bounded: after about twice `timeout_s` the nodes still silent count as not answering
    (name resolution is outside requests' timeout). WeightUnavailable names why each failed.
    """
    import threading

    answers: list[NetworkWeight | str | None] = [None] * len(urls)

    def ask(i: int, url: str) -> None:
        answers[i] = _ask(url, timeout_s)

    threads = [
        threading.Thread(target=ask, args=(i, url), name="bench-share", daemon=True)
        for i, url in enumerate(urls)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 2 * timeout_s + 1
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for answer in answers:
        if isinstance(answer, NetworkWeight):
            return answer
    reasons = [
        a if isinstance(a, str) else f"{url}: no answer in time"
        for url, a in zip(urls, answers, strict=True)
    ]
    raise WeightUnavailable("; ".join(reasons) or "no node to ask")


def poc_round(url: str, timeout_s: float = TIMEOUT_S) -> tuple[str, float] | None:
    """The PoC model of a gonka node's current epoch and the seconds its generate phase
    lasts (`GET /v1/epochs/current`), or None when the node does not say."""
    import requests

    try:
        data = requests.get(url + "/v1/epochs/current", timeout=timeout_s).json()
        generate = data["phases"]["generate"]
        blocks = int(generate["end_height"]) - int(generate["start_height"]) + 1
        seconds = blocks * float(data["block_time_s"])
        model = data["poc"]["model"]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None
    if not isinstance(model, str) or not seconds > 0:
        return None
    return model, seconds


def estimate_share(
    weight: float | None,
    model: str | None,
    network: NetworkWeight | None,
    reason: str = "",
    basis: str = "nonces/min",
) -> ShareEstimate:
    """Combine this host's weight with the network's total; `basis` says what the weight
    counts (the nonces of one generate phase on a gonka node, else nonces per minute)."""
    if weight is None or weight <= 0:
        return ShareEstimate("unknown", reason or "no PoC rate was measured", model)
    if network is None:
        return ShareEstimate("unknown", reason or "the network's weight is unknown", model, weight)
    if network.total_weight == 0:
        return ShareEstimate(
            "unknown",
            f"the network has no accepted weight yet ({network.participants} participants; "
            "no epoch validated)",
            model,
            weight,
            0,
            network.participants,
            network.epoch,
            None,
            network.node_url,
        )
    share = 100.0 * weight / (network.total_weight + weight)
    return ShareEstimate(
        status="estimated",
        reason=f"{weight:,.0f} {basis} against the {network.participants} participants' "
        f"total weight {network.total_weight:,}",
        model=model,
        weight=weight,
        network_total_weight=network.total_weight,
        participants=network.participants,
        epoch=network.epoch,
        share_percent=share,
        node_url=network.node_url,
    )
