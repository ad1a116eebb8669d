"""The monitoring server of `gonka mine --api-port`, served for real on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from gonka_cli.errors import InputError, MinerError
from gonka_cli.miner.monitor import MonitorServer, metrics_text

TIMEOUT_S = 5

SNAPSHOT: dict[str, Any] = {
    "address": "gonka1qqqsyqcyq5rqwzqfpg9scrgwpugpzysn8wd2j4",
    "node_url": "http://127.0.0.1:1317",
    "uptime_s": 12.5,
    "epoch": 3,
    "phase": "generate",
    "height": 250,
    "phase_time_left_s": 4.0,
    "devices": [
        {
            "id": "gpu:0",
            "name": "NVIDIA H100",
            "state": "mining",
            "nonces": 1234,
            "nonces_per_second": 1400.5,
            "temperature_c": 61,
            "power_w": 250.0,
            "utilization_pct": 97.0,
            "restarts": 2,
        },
        {
            "id": "cpu",
            "name": "AMD EPYC",
            "state": "idle",
            "nonces": 10,
            "nonces_per_second": 3.25,
            "temperature_c": None,
            "power_w": None,
            "utilization_pct": None,
            "restarts": 0,
        },
    ],
    "totals": {
        "nonces": 1244,
        "artifacts_committed": 1200,
        "proofs_answered": 2,
        "inference_tasks": 5,
        "validations": 1,
        "accepted": 8,
        "rejected": 3,
        "rejections": {"late result": 1, "bad proof": 2},
        "weight_estimated": 1200,
        "weight_accepted": 1100,
        "balance_ngonka": "1000000",
        "earned_ngonka": "5000",
        "outbox_pending": 4,
    },
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """The samples of an exposition by (name, labels), and each family's type by name."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples, types


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[], dict[str, Any]]], MonitorServer]]:
    """Start a MonitorServer on a free port of 127.0.0.1; every one is stopped afterwards."""
    servers: list[MonitorServer] = []

    def start(snapshot: Callable[[], dict[str, Any]]) -> MonitorServer:
        server = MonitorServer(snapshot, port=0).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def get(server: MonitorServer, path: str) -> requests.Response:
    return requests.get(server.url + path, timeout=TIMEOUT_S)


# -- /metrics -----------------------------------------------------------------------------


def test_metrics_expose_the_snapshot(serve: Any) -> None:
    server = serve(lambda: SNAPSHOT)
    response = get(server, "/metrics")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    samples, types = parse(response.text)

    gpu = {"device": "gpu:0", "name": "NVIDIA H100"}
    cpu = {"device": "cpu", "name": "AMD EPYC"}
    assert value(samples, "gonka_miner_device_nonces_per_second", **gpu) == 1400.5
    assert value(samples, "gonka_miner_device_nonces_per_second", **cpu) == 3.25
    assert value(samples, "gonka_miner_device_temperature_celsius", **gpu) == 61
    assert value(samples, "gonka_miner_device_power_watts", **gpu) == 250.0
    assert value(samples, "gonka_miner_device_utilization_ratio", **gpu) == pytest.approx(0.97)
    assert value(samples, "gonka_miner_device_restarts_total", **gpu) == 2
    assert value(samples, "gonka_miner_device_restarts_total", **cpu) == 0
    assert value(samples, "gonka_miner_device_nonces_total", **gpu) == 1234
    assert value(samples, "gonka_miner_device_nonces_total", **cpu) == 10
    # The CPU's unknown temperature, power and utilization have no sample at all.
    for name in ("temperature_celsius", "power_watts", "utilization_ratio"):
        assert ("gonka_miner_device_" + name, frozenset(cpu.items())) not in samples

    state = "gonka_miner_device_state"
    assert value(samples, state, device="gpu:0", state="mining") == 1
    assert value(samples, state, device="gpu:0", state="idle") == 0
    assert value(samples, state, device="cpu", state="idle") == 1
    assert value(samples, state, device="cpu", state="failed") == 0
    assert sum(v for (n, labels), v in samples.items() if n == state) == 2

    assert value(samples, "gonka_miner_nonces_total") == 1244
    assert value(samples, "gonka_miner_proofs_answered_total") == 2
    assert value(samples, "gonka_miner_inference_tasks_total") == 5
    assert value(samples, "gonka_miner_validations_total") == 1
    assert value(samples, "gonka_miner_accepted_total") == 8
    assert value(samples, "gonka_miner_rejected_total", reason="late result") == 1
    assert value(samples, "gonka_miner_rejected_total", reason="bad proof") == 2
    assert value(samples, "gonka_miner_artifacts_committed") == 1200
    assert value(samples, "gonka_miner_weight_estimated") == 1200
    assert value(samples, "gonka_miner_weight_accepted") == 1100
    assert value(samples, "gonka_miner_balance_ngonka") == 1_000_000
    assert value(samples, "gonka_miner_earned_ngonka") == 5000
    assert value(samples, "gonka_miner_outbox_pending") == 4
    assert value(samples, "gonka_miner_epoch") == 3
    assert value(samples, "gonka_miner_block_height") == 250
    assert value(samples, "gonka_miner_phase_time_left_seconds") == 4.0
    assert value(samples, "gonka_miner_uptime_seconds") == 12.5
    assert value(samples, "gonka_miner_phase", phase="generate") == 1
    assert value(samples, "gonka_miner_phase", phase="validate") == 0
    assert value(samples, "gonka_miner_phase", phase="inference") == 0

    for counter in ("device_nonces", "nonces", "proofs_answered", "accepted", "rejected"):
        assert types["gonka_miner_" + counter] == "counter"
    for gauge in ("device_nonces_per_second", "device_state", "balance_ngonka", "phase"):
        assert types["gonka_miner_" + gauge] == "gauge"


def test_unknown_values_have_no_sample() -> None:
    snapshot: dict[str, Any] = {
        "uptime_s": float("nan"),
        "epoch": None,
        "phase": None,
        "height": 7,
        "devices": [
            {"id": "gpu:1", "name": "L4", "state": None, "nonces": None, "nonces_per_second": None},
            {"name": "no id", "state": "mining", "nonces_per_second": 5.0},
        ],
        "totals": {"rejections": {}, "balance_ngonka": None, "nonces": True, "accepted": "x"},
    }
    text = metrics_text(snapshot).decode()
    samples, types = parse(text)

    assert samples == {("gonka_miner_block_height", frozenset()): 7}
    # Families without a sample are left out entirely, and no NaN is ever written.
    assert set(types) == {"gonka_miner_block_height"}
    assert "NaN" not in text


def test_an_empty_snapshot_gives_an_empty_exposition() -> None:
    assert metrics_text({}) == b""


def test_a_state_or_phase_not_known_yet_is_still_reported() -> None:
    snapshot = {"phase": "claim", "devices": [{"id": "cpu", "name": "x", "state": "throttled"}]}
    samples, _ = parse(metrics_text(snapshot).decode())

    assert value(samples, "gonka_miner_phase", phase="claim") == 1
    assert value(samples, "gonka_miner_phase", phase="generate") == 0
    assert value(samples, "gonka_miner_device_state", device="cpu", state="throttled") == 1
    assert value(samples, "gonka_miner_device_state", device="cpu", state="mining") == 0


def test_label_values_are_escaped() -> None:
    snapshot = {"totals": {"rejections": {'bad "quote"\nnewline \\ slash': 4}}}
    samples, _ = parse(metrics_text(snapshot).decode())

    assert value(samples, "gonka_miner_rejected_total", reason='bad "quote"\nnewline \\ slash') == 4


# -- /status ------------------------------------------------------------------------------


def test_status_is_the_snapshot_as_json(serve: Any) -> None:
    server = serve(lambda: SNAPSHOT)
    response = get(server, "/status")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == SNAPSHOT
    assert response.text.startswith('{\n  "address": ')


def test_status_writes_unknown_floats_as_null(serve: Any) -> None:
    server = serve(
        lambda: {"uptime_s": float("inf"), "devices": [{"nonces_per_second": float("nan")}]}
    )

    # Python's json would accept NaN; a strict parser is what a dashboard has.
    body = json.loads(get(server, "/status").text, parse_constant=pytest.fail)
    assert body == {"uptime_s": None, "devices": [{"nonces_per_second": None}]}


def test_each_request_reads_a_fresh_snapshot(serve: Any) -> None:
    state = copy.deepcopy(SNAPSHOT)
    calls: list[int] = []

    def snapshot() -> dict[str, Any]:
        calls.append(1)
        return state

    server = serve(snapshot)
    samples, _ = parse(get(server, "/metrics").text)
    assert value(samples, "gonka_miner_block_height") == 250
    assert get(server, "/status").json()["height"] == 250

    state["height"] = 251
    state["phase"] = "validate"
    state["totals"]["rejections"]["late result"] = 5
    samples, _ = parse(get(server, "/metrics").text)
    assert value(samples, "gonka_miner_block_height") == 251
    assert value(samples, "gonka_miner_phase", phase="validate") == 1
    assert value(samples, "gonka_miner_phase", phase="generate") == 0
    assert value(samples, "gonka_miner_rejected_total", reason="late result") == 5
    assert get(server, "/status").json()["phase"] == "validate"
    assert len(calls) == 4


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/metric", "/metrics/", "/status/x", "/favicon.ico"])
def test_unknown_path_is_404(serve: Any, path: str) -> None:
    calls: list[int] = []
    server = serve(lambda: calls.append(1) or SNAPSHOT)
    response = get(server, path)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"error": "not found; try /metrics or /status"}
    assert calls == []


def test_a_query_string_is_ignored(serve: Any) -> None:
    server = serve(lambda: SNAPSHOT)
    assert get(server, "/status?pretty=1").json() == SNAPSHOT


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(serve: Any, method: str) -> None:
    server = serve(lambda: SNAPSHOT)
    response = requests.request(
        method, server.url + "/metrics", data=b"x" * 2000, timeout=TIMEOUT_S
    )

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.json() == {"error": "method not allowed; use GET"}


def test_head_answers_headers_only(serve: Any) -> None:
    server = serve(lambda: SNAPSHOT)
    response = requests.head(server.url + "/status", timeout=TIMEOUT_S)

    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(get(server, "/status").content)
    assert response.content == b""


def test_a_failing_snapshot_is_500_and_the_server_lives_on(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fail = [True]

    def snapshot() -> dict[str, Any]:
        if fail[0]:
            raise RuntimeError("device table locked")
        return SNAPSHOT

    server = serve(snapshot)
    with caplog.at_level(logging.ERROR, logger="gonka_cli.miner.monitor"):
        for path in ("/metrics", "/status"):
            response = get(server, path)
            assert response.status_code == 500
            assert response.json() == {
                "error": "cannot read the miner's state; see the miner's log"
            }
    failures = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert len(failures) == 2

    fail[0] = False
    assert get(server, "/status").json() == SNAPSHOT
    assert get(server, "/metrics").status_code == 200


def test_requests_print_nothing(serve: Any, capfd: pytest.CaptureFixture[str]) -> None:
    server = serve(lambda: SNAPSHOT)
    get(server, "/metrics")
    get(server, "/nowhere")
    requests.post(server.url + "/status", timeout=TIMEOUT_S)
    server.stop()

    assert capfd.readouterr() == ("", "")


# -- binding and lifecycle ----------------------------------------------------------------


def test_port_zero_picks_a_free_port(serve: Any) -> None:
    server = serve(lambda: SNAPSHOT)

    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_a_port_in_use_is_a_one_line_miner_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MinerError) as caught:
            MonitorServer(lambda: SNAPSHOT, port=port).start()

    assert str(caught.value) == (
        f"cannot serve monitoring on 127.0.0.1:{port}: address already in use; "
        "pick another --api-port"
    )


def test_a_second_server_on_the_same_port_is_refused(serve: Any) -> None:
    first = serve(lambda: SNAPSHOT)
    with pytest.raises(MinerError, match="address already in use"):
        MonitorServer(lambda: SNAPSHOT, port=first.port).start()
    assert get(first, "/status").status_code == 200


@pytest.mark.parametrize("port", [-1, 65536, True, "9400"])
def test_a_bad_port_is_an_input_error(port: Any) -> None:
    with pytest.raises(InputError, match="invalid --api-port"):
        MonitorServer(lambda: SNAPSHOT, port=port)


def test_stop_is_idempotent_and_frees_the_port() -> None:
    server = MonitorServer(lambda: SNAPSHOT, port=0)
    server.stop()  # before start: nothing to do
    server.start()
    port = server.port
    assert get(server, "/status").status_code == 200

    server.stop()
    server.stop()
    assert not server.running
    with pytest.raises(requests.ConnectionError):
        get(server, "/status")

    # The same port serves again at once, as a restarted miner would ask for it.
    with MonitorServer(lambda: {"height": 9}, port=port) as again:
        assert again.port == port
        assert get(again, "/status").json() == {"height": 9}
    assert not again.running


def test_start_twice_keeps_one_server(serve: Any) -> None:
    server = serve(lambda: SNAPSHOT)
    port = server.port

    assert server.start() is server
    assert server.port == port
    assert get(server, "/status").status_code == 200
