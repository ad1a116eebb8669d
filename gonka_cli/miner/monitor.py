"""Monitoring for `gonka mine --api-port`: Prometheus metrics and a JSON status over HTTP.

`MonitorServer` serves two read-only endpoints on a local address (127.0.0.1 unless told
otherwise) from a daemon thread while the miner works:

- `GET /metrics`: the Prometheus text exposition of the miner's snapshot (`metrics_text`);
- `GET /status`: the snapshot itself as JSON.

Any other path answers 404 and any other method 405, both with a JSON `{"error": ...}`.
The miner hands the server a callable that returns its current snapshot; the server calls
it once per request, from the request's thread, so it must be safe to call from any thread.
A snapshot that fails answers 500 and is logged; the server keeps serving.

The snapshot is a plain dict (any key may be missing or None when unknown)::

    {"address": str, "node_url": str, "uptime_s": float,
     "epoch": int, "phase": "starting" | "generate" | "validate" | "inference" | None,
     "height": int, "phase_time_left_s": float,
     "devices": [{"id": "cpu" | "gpu:0", "name": str, "state": str, "nonces": int,
                  "nonces_per_second": float, "temperature_c": float, "power_w": float,
                  "utilization_pct": float, "restarts": int}],
     "totals": {"nonces": int, "artifacts_committed": int, "proofs_answered": int,
                "inference_tasks": int, "validations": int, "accepted": int, "rejected": int,
                "rejections": {reason: int}, "weight_estimated": int, "weight_accepted": int,
                "balance_ngonka": "decimal string", "earned_ngonka": "decimal string",
                "outbox_pending": int}}

Metrics (all prefixed `gonka_miner_`; a counter's samples end in `_total`):

- per device, labels `device` (its id) and `name`: gauges `device_nonces_per_second`,
  `device_temperature_celsius`, `device_power_watts`, `device_utilization_ratio` (0..1),
  counters `device_nonces` and `device_restarts`; and `device_state` (labels `device`, `state`),
  1 for the device's state and 0 for the other known states;
- totals: counters `nonces`, `proofs_answered`, `inference_tasks`, `validations`, `accepted`
  and `rejected` (label `reason`, one sample per reason in `totals.rejections`: with no
  rejection yet there is no sample, since a reason is only known once it happens); gauges
  `artifacts_committed`, `weight_estimated`, `weight_accepted`, `balance_ngonka`,
  `earned_ngonka`, `outbox_pending`;
- the chain and the miner: gauges `epoch`, `block_height`, `phase_time_left_seconds`,
  `uptime_seconds`, and `phase` (label `phase`), 1 for the current phase and 0 for the others.

A value that is unknown (None, missing, not a number, NaN) has no sample, and a metric with
no sample at all is left out, so a scrape never carries made-up zeros or NaN.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from gonka_cli.errors import InputError, MinerError

logger = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]

PREFIX = "gonka_miner_"

#: States a device reports; each gets a `device_state` sample so that queries such as
#: `gonka_miner_device_state{state="failed"} == 1` work without the series coming and going.
DEVICE_STATES = ("starting", "mining", "idle", "paused", "restarting", "failed")
#: Phases of an epoch, exposed the same way by `gonka_miner_phase`.
PHASES = ("starting", "generate", "validate", "inference")

# (snapshot key, metric name without prefix, help, scale) for the per-device gauges.
_DEVICE_GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("nonces_per_second", "device_nonces_per_second", "Nonces the device computes a second.", 1),
    ("temperature_c", "device_temperature_celsius", "Temperature of the device.", 1),
    ("power_w", "device_power_watts", "Power drawn by the device.", 1),
    ("utilization_pct", "device_utilization_ratio", "Busy fraction of the device (0-1).", 0.01),
)
# (key in "totals", metric name without prefix, help) for the total counters.
_TOTAL_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("nonces", "nonces", "Nonces computed on all devices."),
    ("proofs_answered", "proofs_answered", "Proof challenges answered."),
    ("inference_tasks", "inference_tasks", "Inference tasks served."),
    ("validations", "validations", "Validations done for other participants."),
    ("accepted", "accepted", "Results the network accepted."),
)
# (key in "totals", metric name without prefix, help) for the total gauges.
_TOTAL_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("artifacts_committed", "artifacts_committed", "Artifacts committed to the network."),
    ("weight_estimated", "weight_estimated", "Weight the miner expects from its work."),
    ("weight_accepted", "weight_accepted", "Weight the network accepted."),
    ("balance_ngonka", "balance_ngonka", "Balance of the miner's account, in ngonka."),
    ("earned_ngonka", "earned_ngonka", "Rewards earned, in ngonka."),
    ("outbox_pending", "outbox_pending", "Messages waiting in the outbox to be sent."),
)
# (top-level key, metric name without prefix, help) for the chain and miner gauges.
_TOP_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("epoch", "epoch", "Current epoch of the network."),
    ("height", "block_height", "Latest block height the miner saw."),
    ("phase_time_left_s", "phase_time_left_seconds", "Time left in the current phase."),
    ("uptime_s", "uptime_seconds", "Time since the miner started."),
)

#: stop() waits up to one poll of the serving loop; short, so that stopping feels instant.
POLL_INTERVAL_S = 0.05
#: A client that stalls mid-request gives up its thread after this long.
REQUEST_TIMEOUT_S = 10.0
#: Largest request body read (and dropped) before answering 405: the connection then closes
#: without unread data, which would otherwise reset it before the client reads the answer.
MAX_DISCARDED_BODY_BYTES = 64 * 1024


# -- metrics ------------------------------------------------------------------------------


def metrics_text(snapshot: Mapping[str, Any]) -> bytes:
    """Return the Prometheus text exposition (`CONTENT_TYPE_LATEST`) of one snapshot.

    See the module's docstring for the snapshot's shape and the metrics. Missing keys and
    unknown values are left out rather than reported as zero.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)


class _SnapshotCollector:
    """A prometheus-client collector that reads its metrics from one snapshot."""

    def __init__(self, snapshot: Mapping[str, Any]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        devices = [d for d in _list(snapshot.get("devices")) if isinstance(d, Mapping)]
        totals = _mapping(snapshot.get("totals"))

        families: list[Metric] = []
        for key, name, help_text, scale in _DEVICE_GAUGES:
            gauge = GaugeMetricFamily(PREFIX + name, help_text, labels=["device", "name"])
            for device in devices:
                value = _number(device.get(key), name)
                labels = _device_labels(device)
                if value is not None and labels is not None:
                    gauge.add_metric(labels, value * scale)
            families.append(gauge)

        nonces = CounterMetricFamily(
            PREFIX + "device_nonces", "Nonces computed on the device.", labels=["device", "name"]
        )
        restarts = CounterMetricFamily(
            PREFIX + "device_restarts",
            "Times the device's worker was restarted.",
            labels=["device", "name"],
        )
        state = GaugeMetricFamily(
            PREFIX + "device_state",
            "1 for the device's current state, 0 for the other states.",
            labels=["device", "state"],
        )
        for device in devices:
            labels = _device_labels(device)
            if labels is None:
                continue
            value = _number(device.get("nonces"), "device_nonces")
            if value is not None:
                nonces.add_metric(labels, value)
            value = _number(device.get("restarts"), "device_restarts")
            if value is not None:
                restarts.add_metric(labels, value)
            current = device.get("state")
            if isinstance(current, str) and current:
                for name in _one_of(DEVICE_STATES, current):
                    state.add_metric([labels[0], name], 1.0 if name == current else 0.0)
        families += [nonces, restarts, state]

        for key, name, help_text in _TOTAL_COUNTERS:
            counter = CounterMetricFamily(PREFIX + name, help_text)
            value = _number(totals.get(key), name)
            if value is not None:
                counter.add_metric([], value)
            families.append(counter)

        rejected = CounterMetricFamily(
            PREFIX + "rejected", "Results the network rejected, by reason.", labels=["reason"]
        )
        for reason, count in _mapping(totals.get("rejections")).items():
            value = _number(count, "rejected")
            if value is not None:
                rejected.add_metric([str(reason)], value)
        families.append(rejected)

        for key, name, help_text in _TOTAL_GAUGES:
            families.append(_gauge(name, help_text, totals.get(key)))
        for key, name, help_text in _TOP_GAUGES:
            families.append(_gauge(name, help_text, snapshot.get(key)))

        phase = GaugeMetricFamily(
            PREFIX + "phase",
            "1 for the epoch's current phase, 0 for the other phases.",
            labels=["phase"],
        )
        current = snapshot.get("phase")
        if isinstance(current, str) and current:
            for name in _one_of(PHASES, current):
                phase.add_metric([name], 1.0 if name == current else 0.0)
        families.append(phase)

        # A family without samples would only add HELP/TYPE noise for what is unknown.
        yield from (family for family in families if family.samples)


def _gauge(name: str, help_text: str, raw: Any) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(PREFIX + name, help_text, labels=[])
    value = _number(raw, name)
    if value is not None:
        gauge.add_metric([], value)
    return gauge


def _device_labels(device: Mapping[str, Any]) -> list[str] | None:
    # Without an id the samples could not be told apart from another device's.
    device_id = device.get("id")
    if device_id is None or device_id == "":
        return None
    name = device.get("name")
    return [str(device_id), "" if name is None else str(name)]


def _one_of(known: tuple[str, ...], current: str) -> tuple[str, ...]:
    # A state this module does not know yet is still reported rather than dropped.
    return known if current in known else (*known, current)


def _number(raw: Any, what: str) -> float | None:
    """The float of a snapshot value, or None for unknown (None, not a number, NaN, inf)."""
    if raw is None:
        return None
    # bool is an int to Python, but a True where a count belongs is a bug, not a 1.
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        logger.debug("metric %s: ignoring a %s value", what, type(raw).__name__)
        return None
    try:
        # Balances arrive as decimal strings (they outgrow JSON's safe integers); Prometheus
        # values are float64 anyway.
        value = float(raw)
    except (ValueError, OverflowError):
        logger.debug("metric %s: ignoring %r", what, raw)
        return None
    return value if math.isfinite(value) else None


def _mapping(raw: Any) -> Mapping[str, Any]:
    return raw if isinstance(raw, Mapping) else {}


def _list(raw: Any) -> list[Any]:
    return list(raw) if isinstance(raw, (list, tuple)) else []


# -- status -------------------------------------------------------------------------------


def _status_json(snapshot: Mapping[str, Any]) -> bytes:
    # default=str keeps a stray Path or Decimal from failing the whole answer.
    return json.dumps(_finite(snapshot), indent=2, default=str).encode() + b"\n"


def _finite(value: Any) -> Any:
    # json.dumps writes NaN and Infinity, which are not JSON: unknown is null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# -- server -------------------------------------------------------------------------------


class MonitorServer:
    """Serves `/metrics` and `/status` for a running miner on `host:port`.

    `snapshot` is called once per request, from the request's thread. Use `start()` (or
    the server as a context manager) to bind and serve, `stop()` to close.

    Example::

        monitor = MonitorServer(miner.snapshot, port=9400).start()
        try:
            ...  # mine
        finally:
            monitor.stop()
    """

    def __init__(self, snapshot: Snapshot, port: int, host: str = "127.0.0.1") -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InputError(
                f"invalid --api-port {port!r}: give a port from 1 to 65535 (0 picks a free one)"
            )
        self._snapshot = snapshot
        self._host = host
        self._port = port
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        """The address the server binds to."""
        return self._host

    @property
    def port(self) -> int:
        """The port: the bound one once started (a free one for port 0), else the asked one."""
        return self._port

    @property
    def url(self) -> str:
        """The server's base URL, e.g. `http://127.0.0.1:9400`."""
        return f"http://{_host_port(self._host, self._port)}"

    @property
    def running(self) -> bool:
        """Whether the server is bound and serving."""
        return self._server is not None

    def start(self) -> MonitorServer:
        """Bind and serve from a daemon thread; return self. Does nothing if already serving.

        Raises `MinerError` when the address cannot be bound (a port in use, a host that is
        not local, a port the user may not open).
        """
        with self._lock:
            if self._server is not None:
                return self
            try:
                server = _HTTPServer((self._host, self._port), self._snapshot)
            except OSError as exc:
                raise _bind_error(self._host, self._port, exc) from exc
            self._port = int(server.server_address[1])
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": POLL_INTERVAL_S},
                name=f"gonka-monitor-{self._port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        logger.info("serving monitoring on %s (/metrics, /status)", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and free the port. Safe to call more than once, or before start()."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        logger.debug("stopped monitoring on %s", self.url)

    def __enter__(self) -> MonitorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_error(host: str, port: int, exc: OSError) -> MinerError:
    where = _host_port(host, port)
    # Windows reports its own WSAEADDRINUSE number rather than errno's.
    if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)):
        return MinerError(
            f"cannot serve monitoring on {where}: address already in use; pick another --api-port"
        )
    reason = exc.strerror or str(exc)
    return MinerError(
        f"cannot serve monitoring on {where}: {reason}; check the host and --api-port"
    )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # On Windows SO_REUSEADDR lets a second server bind a port already in use, which would
    # hide the "address already in use" error; elsewhere it only skips TIME_WAIT.
    allow_reuse_address = os.name != "nt"

    def __init__(self, address: tuple[str, int], snapshot: Snapshot) -> None:
        # Must be set before the base class creates the socket.
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.snapshot = snapshot
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own server_bind resolves the host's FQDN, a DNS lookup that can hang
        # for seconds on a machine with a broken resolver; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The base class prints a traceback to stderr; the core logs instead.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.debug("monitoring client %s went away: %s", client_address, exc)
        else:
            logger.error("monitoring request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "gonka-miner"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        # HTTP wants HEAD wherever GET is served: the same headers, no body.
        self._answer(send_body=False)

    def _not_allowed(self) -> None:
        self._discard_body()
        self._send_json(405, {"error": "method not allowed; use GET"}, allow="GET, HEAD")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def _answer(self, *, send_body: bool) -> None:
        path = urlsplit(self.path).path
        if path not in ("/metrics", "/status"):
            self._send_json(404, {"error": "not found; try /metrics or /status"}, send_body)
            return
        try:
            snapshot = self.server.snapshot()
            if path == "/metrics":
                body, content_type = metrics_text(snapshot), CONTENT_TYPE_LATEST
            else:
                body, content_type = _status_json(snapshot), "application/json"
        except Exception:
            # Whatever the miner's state did, the monitoring thread answers and lives on.
            logger.error("cannot answer %s: the miner's snapshot failed", path, exc_info=True)
            error = {"error": "cannot read the miner's state; see the miner's log"}
            self._send_json(500, error, send_body)
            return
        self._send(200, body, content_type, send_body)

    def _send_json(
        self, status: int, payload: dict[str, str], send_body: bool = True, allow: str = ""
    ) -> None:
        body = json.dumps(payload).encode() + b"\n"
        self._send(status, body, "application/json", send_body, allow)

    def _send(
        self, status: int, body: bytes, content_type: str, send_body: bool, allow: str = ""
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= MAX_DISCARDED_BODY_BYTES:
            self.rfile.read(length)

    def log_message(self, format: str, *args: Any) -> None:
        # The base class writes every request to stderr; the core never prints.
        logger.debug("monitoring %s: " + format, self.address_string(), *args)


__all__ = ["DEVICE_STATES", "PHASES", "MonitorServer", "metrics_text"]
