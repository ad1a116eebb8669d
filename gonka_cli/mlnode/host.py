"""The node-config entry that registers this ML node with a host's decentralized-api.

A host lists its ML nodes in the API's `node-config.json`, or adds one at run time with
`POST /admin/v1/nodes` on the API's admin port; both take an `InferenceNodeConfig`:

    {"id": "gonka1", "host": "gpu-box", "inference_port": 5000, "inference_segment": "",
     "poc_port": 8080, "poc_segment": "", "max_concurrent": 500,
     "models": {"Qwen/Qwen3-235B-A22B-Instruct-2507-FP8": {"args": []}},
     "hardware": [{"type": "NVIDIA H200 | 139GB", "count": 4}]}

The API builds the control URL as `http://{host}:{poc_port}{poc_segment}` and the inference
URL as `http://{host}:{inference_port}{inference_segment}`. `hardware` uses the API's own
grouping of `gpu/devices` (`"{name} | {total_memory_mb // 1024}GB"`), so the entry matches
what the API will report once it polls the node; a CPU node lists no hardware.

`fetch_status` is the other side: what `gonka mlnode status` reads from a running node
(`GET /api/v1/gonka/status` on the control port).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gonka_cli.miner.devices import MiningDevice

__all__ = [
    "DEFAULT_NODE_ID",
    "fetch_status",
    "hardware_entries",
    "node_config_entry",
    "reachable_host",
]

DEFAULT_NODE_ID = "gonka1"
#: Chat requests the API may send at once, per device: gonka's engine serves requests in
#: turn on each device, so more only queue inside the node.
CONCURRENT_PER_DEVICE = 4

_WILDCARDS = ("", "0.0.0.0", "::", "[::]")  # noqa: S104 - compared with, not bound to


def reachable_host(host: str) -> str:
    """The name the host's API should use for a server bound to `host`: the machine's name
    when it listens on every interface, else `host` itself."""
    return socket.gethostname() if host in _WILDCARDS else host


def hardware_entries(devices: Sequence[MiningDevice]) -> list[dict[str, Any]]:
    """The GPUs among `devices`, grouped as the API groups `gpu/devices`."""
    counts: dict[str, int] = {}
    for device in devices:
        if device.gpu_index is None:
            continue
        total = device.memory_total_bytes
        gigabytes = "?" if total is None else str(total // (1024 * 1024) // 1024)
        kind = f"{device.name} | {gigabytes}GB"
        counts[kind] = counts.get(kind, 0) + 1
    return [{"type": kind, "count": count} for kind, count in counts.items()]


def node_config_entry(
    *,
    host: str,
    control_port: int,
    inference_port: int,
    model: str | None,
    devices: Sequence[MiningDevice],
    node_id: str = DEFAULT_NODE_ID,
    max_concurrent: int | None = None,
) -> dict[str, Any]:
    """This node as an `InferenceNodeConfig` for `node-config.json` or `POST /admin/v1/nodes`.

    `model` is the id the node serves (the chain's model id, e.g. a Hugging Face repo id); the
    entry lists no model when there is none yet. `max_concurrent` defaults to
    `CONCURRENT_PER_DEVICE` per device.
    """
    concurrent = max_concurrent or max(1, CONCURRENT_PER_DEVICE * len(devices))
    return {
        "id": node_id,
        "host": reachable_host(host),
        "inference_port": inference_port,
        "inference_segment": "",
        "poc_port": control_port,
        "poc_segment": "",
        "max_concurrent": concurrent,
        "models": {model: {"args": []}} if model else {},
        "hardware": hardware_entries(devices),
    }


#: How `gonka mlnode status` ends its message when no node answers.
_START_HINT = "start the ML node with `gonka mlnode serve` (or pass --url of a running one)"


def fetch_status(url: str, *, token: str | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
    """A running node's `GET /api/v1/gonka/status` (`MlNode.status()`'s object).

    Raises `NodeUnreachable` (one line that says to start a node) when nothing answers at
    `url`, and `RequestRefused` when the node answers with an error (401: a token is needed).
    """
    from gonka_cli.errors import ConfigError, InputError, NodeResponseError, RequestRefused
    from gonka_cli.httpclient import FailoverSession
    from gonka_cli.settings import normalize_url

    try:
        base = normalize_url(url)
    except ConfigError:
        raise InputError(
            f"invalid --url {url!r}: give the node's control URL, e.g. http://127.0.0.1:8080"
        ) from None
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with FailoverSession(
        [base],
        timeout_s=timeout_s,
        headers=headers,
        hint=_START_HINT,
        failover_statuses=frozenset(),
    ) as session:
        reply = session.request("GET", "/api/v1/gonka/status")
    data = reply.data
    if reply.status == 401:
        raise RequestRefused(
            f"the ML node at {base} wants a token: pass --token (the one it was started with)",
            status=401,
        )
    if reply.status != 200:
        detail = data.get("detail") if isinstance(data, dict) else None
        raise RequestRefused(
            f"the ML node at {base} answered {reply.status}"
            + (f": {detail}" if detail else "; is this a gonka ML node's control port?"),
            status=reply.status,
        )
    if not isinstance(data, dict):
        raise NodeResponseError(f"the ML node at {base} answered a status that is not an object")
    return data
