"""The last step: this host's estimated share of the network's weight (`bench.share`)."""

from __future__ import annotations

from collections.abc import Sequence

from gonka_cli.bench import share
from gonka_cli.bench.steps.common import RunState, mark_used_by_mine

__all__ = ["share_step"]


def share_step(run: RunState, order: Sequence[str]) -> None:
    """Each model's rate summed over the devices that would mine it, against the network.

    The nodes are asked only now, after the measurements, so the requests (and their TLS
    set-up, which holds the interpreter) cannot disturb them.
    """
    measured = [r for r in mark_used_by_mine(run.poc) if r.used_by_mine]
    rates = {
        m: sum((r.nonces_per_minute or 0.0) for r in measured if r.model == m)
        for m in order
        if any(r.model == m for r in measured)
    }
    network, reason, poc = None, run.config.share_reason, None
    if any(rates.values()) and run.config.share_urls:
        try:
            network = share.fetch_weight(run.config.share_urls)
        except share.WeightUnavailable as exc:
            reason = f"the network's weight is unknown: {exc}"
        if network is not None:
            poc = share.poc_round(network.node_url)
    run.share = share.estimate_share(rates, network, poc, reason)
