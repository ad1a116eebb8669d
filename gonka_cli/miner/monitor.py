"""Monitoring for `gonka mine --api-port`: Prometheus metrics and a JSON status over HTTP.

`MonitorServer` serves two read-only endpoints on a local address (127.0.0.1 unless told
otherwise) while the miner works: a Starlette application under uvicorn, on a thread of its
own with its own event loop, stopped cleanly by `stop()`:

- `GET /metrics`: the Prometheus text exposition of the miner's snapshot (`metrics_text`);
- `GET /status`: the snapshot itself as JSON.

Any other path answers 404 and any other method 405, both with a JSON `{"error": ...}`.
The miner hands the server a callable that returns its current snapshot; the server calls
it once per request, from a worker thread, so it must be safe to call from any thread.
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
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

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

#: A client that keeps an idle connection open gives it up after this long.
REQUEST_TIMEOUT_S = 10
#: How long start() waits for the server to answer.
START_TIMEOUT_S = 10.0


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

    A Starlette application under uvicorn, on a daemon thread with its own event loop;
    `snapshot` is called once per request, from uvicorn's worker threads. Use `start()` (or
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
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
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
        """Bind and serve from a daemon thread; return self once it answers. Does nothing if
        already serving.

        Raises `MinerError` when the address cannot be bound (a port in use, a host that is
        not local, a port the user may not open) or the server does not start.
        """
        import uvicorn

        with self._lock:
            if self._server is not None:
                return self
            sock = _bind(self._host, self._port)
            self._port = int(sock.getsockname()[1])
            config = uvicorn.Config(
                create_app(self._snapshot),
                log_config=None,  # the core logs through gonka_cli's loggers only
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=1,
                timeout_keep_alive=REQUEST_TIMEOUT_S,
            )
            server = uvicorn.Server(config)
            failure: list[BaseException] = []

            def serve() -> None:
                try:
                    server.run(sockets=[sock])
                except BaseException as exc:  # reported by start()
                    failure.append(exc)

            thread = threading.Thread(target=serve, name=f"gonka-monitor-{self._port}", daemon=True)
            thread.start()
            limit = time.monotonic() + START_TIMEOUT_S
            while not server.started:
                if failure or not thread.is_alive() or time.monotonic() > limit:
                    server.should_exit = True
                    thread.join(timeout=5)
                    sock.close()
                    why = f"{type(failure[0]).__name__}: {failure[0]}" if failure else "no answer"
                    raise MinerError(
                        f"cannot serve monitoring on {_host_port(self._host, self._port)}: "
                        f"{why}; see the log"
                    )
                time.sleep(0.005)
            self._server, self._thread, self._sock = server, thread, sock
        logger.info("serving monitoring on %s (/metrics, /status)", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and free the port. Safe to call more than once, or before start()."""
        with self._lock:
            server, thread, sock = self._server, self._thread, self._sock
            self._server = self._thread = self._sock = None
        if server is None:
            return
        server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        if sock is not None:
            sock.close()
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


def create_app(snapshot: Snapshot) -> Any:
    """The Starlette application: `GET`/`HEAD` of `/metrics` and `/status`; JSON errors."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    def error(status: int, message: str, **headers: str) -> Response:
        body = json.dumps({"error": message}).encode() + b"\n"
        return Response(body, status, headers=headers, media_type="application/json")

    def answer(path: str, render: Callable[[Mapping[str, Any]], bytes], media: str) -> Response:
        try:
            body = render(snapshot())
        except Exception:
            # Whatever the miner's state did, the monitoring answers and lives on.
            logger.error("cannot answer %s: the miner's snapshot failed", path, exc_info=True)
            return error(500, "cannot read the miner's state; see the miner's log")
        return Response(body, 200, headers={"Cache-Control": "no-store"}, media_type=media)

    # Plain functions: Starlette runs them on its thread pool, so a snapshot that waits for
    # the miner's locks never holds up the event loop.
    def metrics(_: Request) -> Response:
        return answer("/metrics", metrics_text, CONTENT_TYPE_LATEST)

    def status(_: Request) -> Response:
        return answer("/status", _status_json, "application/json")

    async def http_error(_: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        if code == 405:
            return error(405, "method not allowed; use GET", Allow="GET, HEAD")
        if code == 404:
            return error(404, "not found; try /metrics or /status")
        return error(code, "bad request")

    app = Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET", "HEAD"]),
            Route("/status", status, methods=["GET", "HEAD"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.router.redirect_slashes = False  # /metrics/ is not found, not redirected
    return app


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Elsewhere than Windows SO_REUSEADDR only skips TIME_WAIT (a restarted miner gets its
    # port back at once); on Windows it would let a second server take a port in use.
    if os.name != "nt":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise _bind_error(host, port, exc) from None
    return sock


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


__all__ = ["DEVICE_STATES", "PHASES", "MonitorServer", "metrics_text"]
