"""The estimated share: this machine's PoC weight, in the network's unit, against its total.

A participant's weight is a count: the nonces it proved (and that validation accepted) in one
epoch's PoC generate phase, with the epoch's PoC model. The bench measures nonces per minute.
The two compare only through the length of the generate phase and on the same model, so the
share is estimated only when a node says both (`GET /v1/epochs/current` on a gonka node: the
PoC model, the generate phase's heights and the block time): this host's weight is then
`w = nonces_per_minute / 60 × generate_phase_s`, the network's total weight `W` comes from
`GET /v1/epochs/current/participants`, and the share if this host joined is `w / (W + w)`.

Otherwise the share is "unknown" with the reason, never a figure in mixed units: no node asked
or answering, a participants answer that is not one, no accepted weight yet, a node that does
not say its generate phase (Gonka's own API), or a PoC model this run did not measure. It never
fails a benchmark. Accepted participants answers: `{"participants": [{"weight": N, ...}, ...]}`,
optionally with `"total_weight"` and `"weight_epoch"` (as `gonka node` serves it,
docs/protocol.md), or the same list under `"active_participants"` (Gonka's API); weights are
integers or decimal strings.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from gonka_cli.validate import is_int, is_number

log = logging.getLogger(__name__)

__all__ = [
    "PARTICIPANTS_PATH",
    "NetworkWeight",
    "PocRound",
    "ShareEstimate",
    "estimate_share",
    "fetch_weight",
    "poc_round",
]

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
class PocRound:
    """What a gonka node says about its epochs' PoC: the model and the generate phase."""

    model: str
    generate_phase_s: float


@dataclass(frozen=True)
class ShareEstimate:
    """`status` is "estimated" (the share is known) or "unknown" (see `reason`).

    `nonces_per_minute` is the measured rate of `model` (summed over the devices); `weight` is
    what the network would count for it: the nonces of one `generate_phase_s` generate phase
    (None unless the node gave the phase), the unit of `network_total_weight`.
    """

    status: str
    reason: str
    model: str | None = None
    nonces_per_minute: float | None = None
    generate_phase_s: float | None = None
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
    if is_int(value):
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


def poc_round(url: str, timeout_s: float = TIMEOUT_S) -> PocRound | None:
    """The PoC model of a gonka node's current epoch and the seconds its generate phase
    lasts (`GET /v1/epochs/current`), or None when the node does not say."""
    import requests

    try:
        data = requests.get(url + "/v1/epochs/current", timeout=timeout_s).json()
        generate = data["phases"]["generate"]
        start, end = generate["start_height"], generate["end_height"]
        block_time_s = data["block_time_s"]
        model = data["poc"]["model"]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None
    if not (is_int(start) and is_int(end) and is_number(block_time_s) and isinstance(model, str)):
        return None
    seconds = (end - start + 1) * float(block_time_s)
    if not seconds > 0:
        return None
    return PocRound(model, seconds)


def estimate_share(
    rates: Mapping[str, float],
    network: NetworkWeight | None,
    poc: PocRound | None = None,
    reason: str = "",
) -> ShareEstimate:
    """This host's share of the network's weight, if it joined (see the module docstring).

    `rates` holds the measured nonces per minute by model (this host's devices summed), the
    model a miner would use last (the largest); `network` is the node's total weight, `poc`
    its PoC model and generate phase; `reason` says why `network` is None.
    """
    measured = {m: r for m, r in rates.items() if r and r > 0}
    if not measured:
        return ShareEstimate("unknown", "no PoC rate was measured")
    model = list(measured)[-1]
    if poc is not None and poc.model in measured:
        model = poc.model
    rate = measured[model]

    def unknown(why: str) -> ShareEstimate:
        return ShareEstimate(
            "unknown",
            why,
            model,
            rate,
            None if poc is None else poc.generate_phase_s,
            network_total_weight=None if network is None else network.total_weight,
            participants=None if network is None else network.participants,
            epoch=None if network is None else network.epoch,
            node_url=None if network is None else network.node_url,
        )

    if network is None:
        return unknown(reason or "the network's weight is unknown")
    if network.total_weight == 0:
        return unknown(
            f"the network has no accepted weight yet ({network.participants} participants; "
            "no epoch validated)"
        )
    if poc is None:
        return unknown(
            f"{network.node_url} does not say how long its PoC generate phase lasts "
            "(GET /v1/epochs/current): weights count the nonces of one generate phase, so "
            "nonces per minute cannot be compared with them"
        )
    if poc.model not in measured:
        return unknown(
            f"the network's PoC model is {poc.model}, which this run did not measure; "
            f"pass --models {poc.model}"
        )
    weight = rate / 60.0 * poc.generate_phase_s
    share = 100.0 * weight / (network.total_weight + weight)
    return ShareEstimate(
        status="estimated",
        reason=f"{weight:,.0f} nonces in a {poc.generate_phase_s:g} s generate phase "
        f"({rate:,.0f} nonces/min) against the {network.participants} participants' total "
        f"weight {network.total_weight:,}",
        model=model,
        nonces_per_minute=rate,
        generate_phase_s=poc.generate_phase_s,
        weight=weight,
        network_total_weight=network.total_weight,
        participants=network.participants,
        epoch=network.epoch,
        share_percent=share,
        node_url=network.node_url,
    )
