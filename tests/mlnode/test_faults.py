"""`gonka mlnode serve` through faults, and bad input of every kind on every endpoint.

- kill -9 mid-round, then a restart on the same home: every artifact the node had reported as
  computed before the kill reaches DAPI afterwards (the callback outbox is durable);
- DAPI's callback server away for 20 s: the sender retries with backoff and nothing computed
  in the meantime is lost;
- malformed, mistyped, out-of-range and hostile requests: a 4xx JSON answer with the status the
  real ML node uses, never a 5xx, and the node keeps answering.

The fault tests run the real command (`python -m gonka_cli mlnode serve`) in a subprocess with
its own GONKA_HOME and a short POC_CALLBACK_INTERVAL_SEC; the bad-input test drives the
in-process server.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gonka_cli.compute.poc import nonce_iterator
from tests.mlnode.conftest import (
    BLOCK_HASH,
    REPO_ID,
    SEQ_LEN,
    RunningNode,
    environment,
    free_port,
    hub_env,
    prover_public_key,
    start_node,
    subprocess_env,
)
from tests.mlnode.dapi import (
    DEFAULT_STAT_TEST,
    DapiClient,
    FakeDapi,
    callback_url,
    dapi_chat_body,
    generate_request,
    init_generate_request,
)

NODE_ID, NODE_COUNT = 2, 4
OUTAGE_S = 20.0


class ServeProcess:
    """`python -m gonka_cli mlnode serve` on two free ports, output kept in a log file."""

    def __init__(self, home: Path, cache: Path, log: Path) -> None:
        self.home, self.cache, self.log = home, cache, log
        self.control_port, self.inference_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = DapiClient(
            f"http://127.0.0.1:{self.control_port}",
            f"http://127.0.0.1:{self.inference_port}",
            timeout_s=120,
        )

    def start(self) -> ServeProcess:
        command = [
            sys.executable,
            "-m",
            "gonka_cli",
            "mlnode",
            "serve",
            "--host",
            "127.0.0.1",
            "--control-port",
            str(self.control_port),
            "--inference-port",
            str(self.inference_port),
            "--devices",
            "cpu",
            "--json",
        ]
        env = subprocess_env(self.home, self.cache, POC_CALLBACK_INTERVAL_SEC="1")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mlnode serve exited: {self.output()[-3000:]}")
            try:
                if requests.get(self.client.url(self.client.poc_url, "/api/v1/state"), timeout=5):
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        raise AssertionError(f"mlnode serve did not answer: {self.output()[-3000:]}")

    def ensure_started(self) -> ServeProcess:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        response = self.client.get(self.client.poc_url, "/api/v1/gonka/status")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def computed(self) -> int:
        """Artifacts the node reports computed in this round (all groups)."""
        groups = self.status()["poc"]["groups"]
        return sum(int(g["total_processed"]) for g in groups)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory, hub_cache_root: Path) -> Iterator[ServeProcess]:
    """One `gonka mlnode serve` for the fault tests of this module (each starts it if it is not
    running; the kill test restarts it on the same home)."""
    root = tmp_path_factory.mktemp("mlnode-serve")
    process = ServeProcess(root / "home", hub_cache_root, root / "serve.log")
    yield process
    process.stop()


def first_nonces(count: int) -> set[int]:
    """The first `count` nonces of this node's single group (one CPU device)."""
    it = nonce_iterator(NODE_ID, NODE_COUNT, 0, 1)
    return {next(it) for _ in range(count)}


def start_round(serve: ServeProcess, fake: FakeDapi, height: int) -> None:
    dapi = serve.client
    if dapi.state().json()["state"] != "INFERENCE":
        assert dapi.inference_up(REPO_ID, ["--max-model-len", "256"]).status_code == 200
    fake.stage.block_height = height
    request = init_generate_request(
        block_hash=BLOCK_HASH,
        block_height=height,
        public_key=prover_public_key(),
        node_id=NODE_ID,
        node_count=NODE_COUNT,
        model=REPO_ID,
        seq_len=SEQ_LEN,
        url=callback_url(fake.url, REPO_ID),
    )
    started = dapi.init_generate(request)
    assert started.status_code == 200, started.text
    assert started.json()["n_groups"] == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_callback_server_away_20s_loses_nothing(serve: ServeProcess, fake_dapi: FakeDapi) -> None:
    serve.ensure_started()
    start_round(serve, fake_dapi, height=200)
    fake_dapi.wait_for(lambda: fake_dapi.of("generated", 200), 120, "a first batch")
    fake_dapi.stop()
    time.sleep(OUTAGE_S)  # the outage itself: computing goes on, posts fail
    computed = serve.computed()
    fake_dapi.start()  # same port
    want = first_nonces(computed)
    fake_dapi.wait_for(
        lambda: want <= set(fake_dapi.artifacts(REPO_ID)),
        120,
        f"the {computed} artifacts computed up to the end of the outage",
    )
    assert serve.client.pow_stop().status_code == 200
    status = serve.status()
    assert status["last_callback"] is not None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_mid_round_loses_no_computed_artifact(
    serve: ServeProcess, fake_dapi: FakeDapi
) -> None:
    serve.ensure_started()
    start_round(serve, fake_dapi, height=100)
    fake_dapi.wait_for(lambda: fake_dapi.of("generated", 200), 120, "a first batch")
    # DAPI stops taking artifacts (503): they pile up in the node's outbox.
    fake_dapi.stage.accepting = False
    delivered_before = len(fake_dapi.artifacts(REPO_ID))
    deadline = time.monotonic() + 60
    while serve.computed() < delivered_before + 50 and time.monotonic() < deadline:
        time.sleep(0.2)
    computed = serve.computed()
    assert computed > delivered_before, (computed, delivered_before)
    serve.kill9()
    before_kill = set(fake_dapi.artifacts(REPO_ID))

    fake_dapi.stage.accepting = True
    serve.start()  # same home: the outbox of the killed process is resumed
    want = first_nonces(computed)
    stored = fake_dapi.wait_for(
        lambda: (s := fake_dapi.artifacts(REPO_ID)) and want <= set(s) and s,
        120,
        f"the {computed} artifacts computed before the kill",
    )
    assert want <= set(stored)
    assert want - before_kill, "nothing was left in the outbox at the kill"
    # Whatever was posted twice (a batch cut short by the kill) carried the same vectors.
    seen: dict[int, str] = {}
    for post in fake_dapi.of("generated"):
        for artifact in (post.json or {}).get("artifacts", []):
            assert (
                seen.setdefault(artifact["nonce"], artifact["vector_b64"])
                == (artifact["vector_b64"])
            )
    # The restarted node is a working node again.
    assert serve.client.state().status_code == 200


# --- bad input ----------------------------------------------------------------------------------

MAX_QUEUED_NONCES = 300


@pytest.fixture(scope="module")
def loaded_node(
    hub_cache_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningNode]:
    with environment(hub_env(hub_cache_root)):
        running = start_node(
            tmp_path_factory.mktemp("mlnode-bad-input"),
            callback_interval_s=1.0,
            max_queued_nonces=MAX_QUEUED_NONCES,
        )
        try:
            yield running
        finally:
            running.close()


POST_ROUTES = [
    "/api/v1/inference/up",
    "/api/v1/inference/pow/init/generate",
    "/api/v1/inference/pow/generate",
    "/api/v1/models/status",
    "/api/v1/models/download",
    "/v1/chat/completions",
]
GET_ROUTES = [
    "/api/v1/state",
    "/api/v1/inference/pow/status",
    "/api/v1/gonka/status",
    "/api/v1/gpu/devices",
    "/api/v1/metrics",
    "/health",
    "/v1/models",
]
JUNK_BODIES = [
    b"not json",
    b"{",
    b"[1, 2, 3]",
    b'"a string"',
    b"42",
    b"\xff\xfe\x00garbage",
    b"[" * 50_000 + b"]" * 50_000,  # deeper than any JSON parser's recursion
    b'{"model": {"$gt": ""}, "params": [], "nonces": "0..10"}',
    json.dumps({"a": "\u202e\ud7ff\U0001f600" * 1000}).encode(),
    b'{"block_height": 1e400, "node_id": NaN, "node_count": Infinity}',
]


def assert_refused(response: requests.Response, *allowed: int) -> None:
    """A JSON refusal: a 4xx, or one of `allowed` (which may name 503), never another 5xx."""
    code = response.status_code
    assert 400 <= code < 500 or code in allowed, (code, response.text[:300])
    if allowed:
        assert response.status_code in allowed, (response.status_code, response.text[:300])
    assert "detail" in response.json(), response.text[:300]


def init_body(**changes: Any) -> dict[str, Any]:
    body = init_generate_request(
        block_hash=BLOCK_HASH,
        block_height=7,
        public_key=prover_public_key(),
        node_id=0,
        node_count=1,
        model=REPO_ID,
        seq_len=SEQ_LEN,
    )
    body.update(changes)
    return body


def generate_body(**changes: Any) -> dict[str, Any]:
    body = generate_request(
        block_hash=BLOCK_HASH,
        block_height=7,
        public_key=prover_public_key(),
        node_id=0,
        node_count=1,
        nonces=[0, 1],
        model=REPO_ID,
        seq_len=SEQ_LEN,
        artifacts=[{"nonce": 0, "vector_b64": "A" * 32}, {"nonce": 1, "vector_b64": "A" * 32}],
        stat_test=DEFAULT_STAT_TEST,
    )
    body.update(changes)
    return body


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bad_input_never_brings_the_node_down(
    loaded_node: RunningNode, fake_dapi: FakeDapi
) -> None:
    dapi = loaded_node.client()
    control, inference = dapi.poc_url, dapi.inference_url

    # Before a model is loaded: 503 where a model is needed.
    assert dapi.chat({"messages": [{"role": "user", "content": "x"}]}).status_code == 503
    assert dapi.init_generate(init_body()).status_code == 503
    assert_refused(dapi.inference_up("no-such-org/no-such-model"))
    assert_refused(dapi.inference_up(""), 400, 422)
    assert dapi.state().json()["state"] == "STOPPED"

    # Junk on every POST route, before and after the model is up.
    for loaded in (False, True):
        if loaded:
            assert dapi.inference_up(REPO_ID).status_code == 200
            assert_refused(dapi.inference_up(REPO_ID), 409)  # already running
        for route in POST_ROUTES:
            base = inference if route.startswith("/v1/") else control
            allowed = (400, 404, 422) if loaded else (400, 404, 422, 503)
            for body in JUNK_BODIES:
                response = dapi.session.post(base + route, data=body, timeout=60)
                assert_refused(response, *allowed)
        assert dapi.state().status_code == 200

    # Fields of the wrong type or out of range.
    for changes in (
        {"node_id": "1"},
        {"node_id": -1},
        {"node_id": 5, "node_count": 2},
        {"node_count": 0},
        {"block_height": "tall"},
        {"block_hash": ""},
        {"public_key": 7},
        {"params": {"model": REPO_ID}},
        {"params": {"model": REPO_ID, "seq_len": 0}},
        {"params": {"model": REPO_ID, "seq_len": 10**30}},
        {"params": {"model": REPO_ID, "seq_len": 1_000_000}},
        {"params": "m"},
        {"url": 12},
        {"poc_stronger_rng": "yes"},
    ):
        assert_refused(dapi.init_generate(init_body(**changes)), 400, 422)
    assert_refused(
        dapi.init_generate(init_body(params={"model": "other/model", "seq_len": 8})), 409
    )
    generate_changes: list[dict[str, Any]] = [
        {"nonces": "0,1"},
        {"nonces": [0, 2**31]},
        {"nonces": [0, -(2**31) - 1]},
        {"nonces": [0, 1.5]},
        {"nonces": [0, 1, 2]},  # not the validation's nonce set
        {"validation": {"artifacts": "x"}},
        {"validation": {"artifacts": [{"nonce": 0}]}},
        {"stat_test": {"dist_threshold": "far", "p_mismatch": 0.1, "p_value_threshold": 0.05}},
        {"stat_test": {"dist_threshold": 0.4, "p_mismatch": 2.0, "p_value_threshold": 0.05}},
        {"wait": "yes"},
    ]
    for changes in generate_changes:
        assert_refused(dapi.generate(generate_body(**changes)), 400, 422)
    assert_refused(dapi.job("0:no-such-request"), 404)
    assert_refused(dapi.job("%2e%2e%2F%00\u00e9"), 404)
    chat_bodies: list[dict[str, Any]] = [
        {"messages": []},
        {"messages": "hi"},
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": -1},
        {"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 99},
        {"messages": [{"role": "user", "content": "x"}], "n": 3},
        {"messages": [{"role": "user", "content": "x"}], "enforced_tokens": {"tokens": 5}},
    ]
    for chat in chat_bodies:
        assert_refused(dapi.chat(chat), 400, 422)

    # Wrong methods and unknown routes.
    for route in POST_ROUTES:
        base = inference if route.startswith("/v1/") else control
        assert_refused(dapi.session.get(base + route, timeout=30), 404, 405)
    assert_refused(dapi.session.get(control + "/api/v1/no/such/route", timeout=30), 404)
    assert_refused(dapi.session.delete(control + "/api/v1/state", timeout=30), 404, 405)

    # During generation: 409 for a second init, 503 for chat, 429 past the queue cap.
    url = callback_url(fake_dapi.url, REPO_ID)
    assert dapi.init_generate(init_body(url=url)).status_code == 200
    assert_refused(dapi.init_generate(init_body(url=url)), 409)
    assert_refused(dapi.chat({"messages": [{"role": "user", "content": "x"}]}), 503)
    nonces = list(range(200))
    arts = [{"nonce": n, "vector_b64": "A" * 32} for n in nonces]
    queued = dapi.generate(generate_body(nonces=nonces, validation={"artifacts": arts}, url=url))
    assert queued.status_code == 200 and queued.json()["status"] == "queued", queued.text
    assert_refused(
        dapi.generate(generate_body(nonces=nonces, validation={"artifacts": arts}, url=url)), 429
    )
    assert dapi.pow_stop().status_code == 200

    # Random bytes and random JSON on every route: never a 5xx.
    rng = random.Random(14)
    for _ in range(60):
        route = rng.choice(POST_ROUTES + GET_ROUTES)
        base = inference if route.startswith("/v1/") or route == "/health" else control
        if rng.random() < 0.5:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
        else:
            data = json.dumps(
                {
                    rng.choice(["model", "nonces", "params", "messages", "x"]): rng.choice(
                        [None, -1, 2**64, "", [], {}, [None], {"a": []}, 1e308]
                    )
                }
            ).encode()
        response = dapi.session.post(base + route, data=data, timeout=60)
        assert response.status_code < 500, (route, data[:80], response.text[:300])

    # Still a working node.
    assert dapi.state().json()["state"] == "INFERENCE"
    answer = dapi.chat(
        dapi_chat_body({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}, seed=3)
    )
    assert answer.status_code == 200, answer.text

    # The body-less calls ignore whatever body comes with them.
    for route in ("/api/v1/inference/pow/stop", "/api/v1/stop"):
        for body in JUNK_BODIES[:6]:
            response = dapi.session.post(control + route, data=body, timeout=60)
            assert response.status_code < 500, (route, body[:40], response.text[:300])
    assert dapi.state().json()["state"] == "STOPPED"
