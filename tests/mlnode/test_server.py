"""The ML node's HTTP layer: tolerance, errors, auth and SSE framing, over a real `MlNode`
(CPU, the built-in `gonka-tiny` model) behind a real `MlNodeServer` on 127.0.0.1.

The DAPI contract itself (a full round, callbacks, validation) is tests/mlnode/test_contract.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gonka_cli.mlnode import server as server_module
from gonka_cli.mlnode.server import (
    HttpError,
    MlNodeServer,
    chat_stream_events,
    parse_body,
    strip_version_prefix,
)
from tests.mlnode.conftest import RunningNode, start_node

MODEL = "gonka-tiny"
TOKEN = "s3cret-token-for-tests"
CHAT = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Hello there"}],
    "max_tokens": 8,
    "temperature": 0.8,
    "seed": 7,
    "logprobs": True,
    "top_logprobs": 5,
    "skip_special_tokens": False,
    "return_token_ids": True,
    "logprobs_mode": "processed_logprobs",
}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """One ML node serving `gonka-tiny`, no token."""
    node = start_node(tmp_path_factory.mktemp("mlnode-server"), model=MODEL)
    yield node
    node.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    """An ML node with no model that requires `TOKEN`."""
    node = start_node(tmp_path_factory.mktemp("mlnode-guarded"), token=TOKEN)
    yield node
    node.close()


def post_raw(url: str, data: bytes | None, **headers: str) -> requests.Response:
    """A POST as DAPI's Go client sends it: bytes and no Content-Type."""
    return requests.post(url, data=data, headers=headers, timeout=60)


def detail(response: requests.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"detail"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    return str(body["detail"])


# -- pure helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v3.0.8/api/v1/state", "/api/v1/state"),
        ("/v3.0.8-post2/api/v1/inference/pow/status", "/api/v1/inference/pow/status"),
        ("/v3/health", "/health"),
        ("/v1/v1/models", "/v1/models"),
        ("/v2.1/v1/chat/completions", "/v1/chat/completions"),
        ("/v1/models", "/v1/models"),
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/api/v1/state", "/api/v1/state"),
        ("/v3.0.8", "/v3.0.8"),
        ("/v3.0.8/unknown", "/v3.0.8/unknown"),
        ("/vx/api/v1/state", "/vx/api/v1/state"),
        ("/version/api", "/version/api"),
        ("/", "/"),
    ],
)
def test_strip_version_prefix(path: str, expected: str) -> None:
    assert strip_version_prefix(path) == expected


def test_parse_body() -> None:
    assert parse_body(b"") is None
    assert parse_body(b" \n") is None
    assert parse_body(b"null") is None
    assert parse_body(b'{"a": 1}') == {"a": 1}
    for raw in (b"[1]", b'"x"', b"1", b"true", b"{", b"\xff\xfe", b'{"a": NaN}', b"[" * 100_000):
        with pytest.raises(HttpError) as caught:
            parse_body(raw)
        assert caught.value.status == 400


def sse_chunks(raw: bytes) -> list[Any]:
    """The `data:` payloads of an event stream, `[DONE]` as the string."""
    events = raw.decode().split("\n\n")
    assert events[-1] == "", "the stream must end with a blank line"
    payloads: list[Any] = []
    for event in events[:-1]:
        assert event.startswith("data: "), event
        data = event[len("data: ") :]
        payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


def test_stream_events_without_logprobs() -> None:
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    chunks = sse_chunks(b"".join(chat_stream_events(answer, include_usage=False)))
    assert chunks[-1] == "[DONE]"
    assert all("usage" not in c for c in chunks[:-1])
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "hi"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_events_have_no_infinities() -> None:
    entry = {"token": "1", "logprob": float("-inf"), "top_logprobs": [{"logprob": float("nan")}]}
    answer = {
        "id": "chatcmpl-2",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "message": {"content": "ab"},
                "logprobs": {"content": [entry]},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    chunks = sse_chunks(b"".join(chat_stream_events(answer, include_usage=True)))
    written = chunks[1]["choices"][0]["logprobs"]["content"][0]
    assert written["logprob"] == -9999.0
    assert written["top_logprobs"] == [{"logprob": None}]
    assert chunks[-2]["usage"] == answer["usage"]


# -- tolerance ----------------------------------------------------------------------------


def test_version_prefix_on_both_ports(running: RunningNode) -> None:
    control, inference = running.server.control_url, running.server.inference_url
    plain = requests.get(f"{control}/api/v1/state", timeout=30)
    assert plain.status_code == 200 and plain.json()["state"] == "INFERENCE"
    for prefix in ("/v3.0.8", "/v0.2.14-post1", "/v1"):
        state = requests.get(f"{control}{prefix}/api/v1/state", timeout=30)
        assert state.status_code == 200 and state.json()["state"] == "INFERENCE"
        assert requests.get(f"{inference}{prefix}/health", timeout=30).status_code == 200
        models = requests.get(f"{inference}{prefix}/v1/models", timeout=30)
        assert models.status_code == 200 and models.json()["data"][0]["id"] == MODEL
        status = requests.get(f"{control}{prefix}/api/v1/inference/pow/status", timeout=30)
        assert status.status_code == 200
    # /v1/* on the control port is the inference port's.
    models = requests.get(f"{control}/v1/models", timeout=30)
    assert models.status_code == 200 and models.json()["data"][0]["id"] == MODEL


def test_health_routes(running: RunningNode) -> None:
    for path in ("/health", "/livez", "/readyz", "/v3.0.8/livez"):
        answer = requests.get(f"{running.server.control_url}{path}", timeout=30)
        assert answer.status_code == 200, path
    assert (
        requests.head(f"{running.server.control_url}/api/v1/state", timeout=30).status_code == 200
    )


def test_json_without_content_type(running: RunningNode) -> None:
    url = f"{running.server.inference_url}/v1/chat/completions"
    answer = post_raw(url, json.dumps(CHAT).encode())
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] is not None
    # A wrong Content-Type changes nothing either.
    answer = post_raw(url, json.dumps(CHAT).encode(), **{"Content-Type": "text/plain"})
    assert answer.status_code == 200, answer.text


def test_bodyless_stop_then_up_again(tmp_path: Path) -> None:
    running = start_node(tmp_path / "data", model=MODEL)
    try:
        control = running.server.control_url
        for prefix in ("", "/v3.0.8"):
            stopped = post_raw(f"{control}{prefix}/api/v1/stop", None)
            assert stopped.status_code == 200 and stopped.json() == {"status": "OK"}
            assert requests.get(f"{control}/api/v1/state", timeout=30).json()["state"] == "STOPPED"
            health = requests.get(f"{running.server.inference_url}/health", timeout=30)
            assert health.status_code == 503
            detail(health)
            # While stopped, chat is refused in JSON, not with a crash.
            chat = post_raw(
                f"{running.server.inference_url}/v1/chat/completions", json.dumps(CHAT).encode()
            )
            assert 400 <= chat.status_code < 500 or chat.status_code == 503
            detail(chat)
            body = {"model": MODEL, "dtype": "auto", "additional_args": ["--max-model-len", "512"]}
            up = post_raw(f"{control}{prefix}/api/v1/inference/up", json.dumps(body).encode())
            assert up.status_code == 200, up.text
            assert (
                requests.get(f"{control}/api/v1/state", timeout=30).json()["state"] == "INFERENCE"
            )
        # A stop with a body (even junk) is still a stop.
        assert post_raw(f"{control}/api/v1/stop", b"{not json").status_code == 200
    finally:
        running.close()


# -- errors -------------------------------------------------------------------------------

POST_ROUTES = (
    "/api/v1/inference/up",
    "/api/v1/inference/pow/init/generate",
    "/api/v1/inference/pow/generate",
    "/api/v1/inference/pow/stop",
    "/api/v1/models/status",
    "/api/v1/models/download",
    "/v1/chat/completions",
)


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b'"text"', b"\xff\xfe\x00", b'{"a": NaN}'])
def test_bad_json_is_400(running: RunningNode, route: str, raw: bytes) -> None:
    answer = post_raw(f"{running.server.control_url}{route}", raw)
    assert answer.status_code == 400, answer.text
    detail(answer)


WRONG_TYPES: list[tuple[str, dict[str, Any]]] = [
    ("/api/v1/inference/up", {"model": 12}),
    ("/api/v1/inference/up", {"model": MODEL, "additional_args": "--max-model-len 5"}),
    ("/api/v1/inference/pow/init/generate", {"block_hash": 1, "block_height": "x"}),
    (
        "/api/v1/inference/pow/init/generate",
        {
            "block_hash": "AB" * 32,
            "block_height": 10,
            "public_key": "02" + "11" * 32,
            "node_id": "zero",
            "node_count": 1,
            "params": {"model": MODEL, "seq_len": 16},
        },
    ),
    ("/api/v1/inference/pow/generate", {"nonces": "1,2,3"}),
    ("/api/v1/inference/pow/generate", {"nonces": [1, 2], "validation": [], "wait": "yes"}),
    ("/api/v1/models/status", {"hf_repo": ["a"]}),
    ("/v1/chat/completions", {"messages": "hi"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}),
    ("/v1/chat/completions", {**CHAT, "stream": "yes"}),
    ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": []}),
    ("/v1/chat/completions", {**CHAT, "stream_options": {"include_usage": 1}}),
]


@pytest.mark.parametrize(("route", "body"), WRONG_TYPES)
def test_wrong_types_are_client_errors(running: RunningNode, route: str, body: Any) -> None:
    answer = post_raw(f"{running.server.control_url}{route}", json.dumps(body).encode())
    assert answer.status_code in (400, 422), answer.text
    detail(answer)


def test_unknown_routes_and_methods(running: RunningNode) -> None:
    control, inference = running.server.control_url, running.server.inference_url
    for url in (
        f"{control}/nope",
        f"{control}/api/v1/state/",
        f"{control}/v3.0.8/nope",
        f"{inference}/api/v1/state",
        f"{inference}/v1/nope",
        f"{control}/api/v1/inference/pow/generate/{'é' * 5}",
    ):
        answer = requests.get(url, timeout=30)
        assert answer.status_code == 404, url
        detail(answer)
    wrong = requests.get(f"{control}/api/v1/stop", timeout=30)
    assert wrong.status_code == 405
    detail(wrong)
    wrong = requests.put(f"{inference}/v1/chat/completions", data=b"{}", timeout=30)
    assert wrong.status_code == 405
    detail(wrong)


def test_body_size_limit(running: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "MAX_BODY_BYTES", 1000)
    url = f"{running.server.control_url}/api/v1/inference/pow/generate"
    big = json.dumps({"nonces": list(range(1000))}).encode()
    answer = post_raw(url, big)
    assert answer.status_code == 413
    detail(answer)
    # Chunked, with no declared length: cut off while reading.
    answer = requests.post(url, data=iter([big[:600], big[600:]]), timeout=30)
    assert answer.status_code == 413
    detail(answer)
    assert requests.get(f"{running.server.control_url}/api/v1/state", timeout=30).ok


def test_a_bug_is_a_logged_500_without_details(
    running: RunningNode, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("internal secret 0xdeadbeef")

    monkeypatch.setattr(running.node, "status", broken)
    with caplog.at_level("ERROR", logger="gonka_cli.mlnode.server"):
        answer = requests.get(f"{running.server.control_url}/api/v1/gonka/status", timeout=30)
    assert answer.status_code == 500
    assert "0xdeadbeef" not in detail(answer)
    assert any(r.exc_info and "0xdeadbeef" in str(r.exc_info[1]) for r in caplog.records)
    monkeypatch.undo()
    assert requests.get(f"{running.server.control_url}/api/v1/gonka/status", timeout=30).ok


def test_a_waiting_call_does_not_hold_up_the_others(
    running: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    real_chat = running.node.chat

    def slow_chat(body: Any) -> dict[str, Any]:
        entered.set()
        assert release.wait(60)
        return real_chat(body)

    monkeypatch.setattr(running.node, "chat", slow_chat)
    url = f"{running.server.inference_url}/v1/chat/completions"
    answers: list[requests.Response] = []
    waiting = [
        threading.Thread(target=lambda: answers.append(post_raw(url, json.dumps(CHAT).encode())))
        for _ in range(3)
    ]
    for thread in waiting:
        thread.start()
    try:
        assert entered.wait(60)
        # The chats wait on their threads; the polls DAPI makes still answer.
        for _ in range(5):
            state = requests.get(f"{running.server.control_url}/api/v1/state", timeout=30)
            assert state.status_code == 200
            assert requests.get(f"{running.server.inference_url}/health", timeout=30).ok
        assert answers == []
    finally:
        release.set()
        for thread in waiting:
            thread.join(timeout=60)
    assert [a.status_code for a in answers] == [200, 200, 200]


# -- auth ---------------------------------------------------------------------------------


def test_token_on_every_route_of_both_ports(guarded: RunningNode) -> None:
    control, inference = guarded.server.control_url, guarded.server.inference_url
    urls = [
        f"{control}/api/v1/state",
        f"{control}/v3.0.8/api/v1/state",
        f"{control}/health",
        f"{control}/api/v1/metrics",
        f"{control}/nope",
        f"{inference}/health",
        f"{inference}/v1/models",
    ]
    for url in urls:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN}x"},
        ):
            answer = requests.get(url, headers=headers, timeout=30)
            assert answer.status_code == 401, (url, headers)
            assert TOKEN not in answer.text
            assert answer.headers["www-authenticate"] == "Bearer"
            detail(answer)
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(urls[0], headers=ok, timeout=30).json()["state"] == "STOPPED"
    assert requests.get(urls[1], headers=ok, timeout=30).status_code == 200
    assert requests.get(urls[2], headers=ok, timeout=30).status_code == 200
    assert requests.get(urls[4], headers=ok, timeout=30).status_code == 404
    lower = {"Authorization": f"bearer {TOKEN}"}
    assert requests.get(urls[0], headers=lower, timeout=30).status_code == 200
    stop = requests.post(f"{control}/api/v1/stop", headers=ok, timeout=30)
    assert stop.status_code == 200
    assert requests.post(f"{control}/api/v1/stop", timeout=30).status_code == 401


def test_no_token_needed_without_one(running: RunningNode) -> None:
    answer = requests.get(
        f"{running.server.control_url}/api/v1/state",
        headers={"Authorization": "Bearer whatever"},
        timeout=30,
    )
    assert answer.status_code == 200


def test_bad_server_arguments(running: RunningNode) -> None:
    from gonka_cli.errors import InputError
    from gonka_cli.mlnode.service import MlNodeError

    node = running.node
    for kwargs in (
        {"control_port": 70000},
        {"inference_port": -1},
        {"control_port": 8123, "inference_port": 8123},
        {"host": " "},
        {"token": ""},
        {"token": " padded "},
    ):
        with pytest.raises(InputError):
            MlNodeServer(node, **kwargs)  # type: ignore[arg-type]
    taken = running.server.control_url.rsplit(":", 1)[1]
    server = MlNodeServer(node, control_port=int(taken), inference_port=0)
    with pytest.raises(MlNodeError, match="cannot listen"):
        server.start()


# -- chat streaming -----------------------------------------------------------------------


def test_sse_stream_matches_plain_answer(running: RunningNode) -> None:
    url = f"{running.server.inference_url}/v1/chat/completions"
    plain = post_raw(url, json.dumps(CHAT).encode())
    assert plain.status_code == 200, plain.text
    answer = plain.json()
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    streamed = requests.post(url, data=json.dumps(body).encode(), stream=True, timeout=60)
    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["content-type"].startswith("text/event-stream")
    chunks = sse_chunks(streamed.raw.read())
    assert chunks[-1] == "[DONE]"
    events, usage_chunk = chunks[:-2], chunks[-2]
    for chunk in [*events, usage_chunk]:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == MODEL
        assert chunk["id"] == events[0]["id"]
    # Usage comes last, alone, with no choices; it matches the plain answer's.
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == answer["usage"]
    assert usage_chunk["usage"]["completion_tokens"] > 0
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    choices = [c["choices"][0] for c in events]
    content = "".join(c["delta"].get("content", "") for c in choices)
    assert content == answer["choices"][0]["message"]["content"]
    # One chunk per token, each with that token's logprobs entry and id.
    token_chunks = [c for c in choices if c["logprobs"] is not None]
    expected = answer["choices"][0]["logprobs"]["content"]
    assert [c["logprobs"]["content"][0] for c in token_chunks] == expected
    assert all(len(c["logprobs"]["content"]) == 1 for c in token_chunks)
    assert [c["token_ids"][0] for c in token_chunks] == answer["choices"][0]["token_ids"]
    assert len(token_chunks) == answer["usage"]["completion_tokens"]
    assert [c["finish_reason"] for c in choices[:-1]] == [None] * (len(choices) - 1)
    assert choices[-1]["finish_reason"] == answer["choices"][0]["finish_reason"]
    assert choices[-1]["delta"] == {}


def test_sse_without_usage(running: RunningNode) -> None:
    url = f"{running.server.inference_url}/v1/chat/completions"
    body = {**CHAT, "stream": True}
    streamed = post_raw(url, json.dumps(body).encode())
    assert streamed.status_code == 200
    chunks = sse_chunks(streamed.content)
    assert chunks[-1] == "[DONE]"
    assert all("usage" not in c and c["choices"] for c in chunks[:-1])


# -- fuzz ---------------------------------------------------------------------------------

FUZZ_ROUTES = [
    ("GET", "/api/v1/state"),
    ("POST", "/api/v1/inference/up"),
    ("POST", "/api/v1/inference/pow/init/generate"),
    ("GET", "/api/v1/inference/pow/status"),
    ("POST", "/api/v1/inference/pow/stop"),
    ("POST", "/api/v1/inference/pow/generate"),
    ("GET", "/api/v1/inference/pow/generate/xyz"),
    ("GET", "/api/v1/gonka/status"),
    ("GET", "/api/v1/metrics"),
    ("GET", "/api/v1/gpu/devices"),
    ("GET", "/api/v1/gpu/driver"),
    ("POST", "/api/v1/models/status"),
    ("POST", "/api/v1/models/download"),
    ("GET", "/api/v1/models/list"),
    ("GET", "/api/v1/models/space"),
    ("DELETE", "/api/v1/models"),
    ("GET", "/v1/models"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/health"),
]
FIELDS = [
    "model", "dtype", "additional_args", "block_hash", "block_height", "public_key", "node_id",
    "node_count", "params", "url", "nonces", "wait", "validation", "stat_test", "messages",
    "max_tokens", "stream", "stream_options", "logprobs", "top_logprobs", "enforced_tokens",
    "hf_repo", "hf_commit", "seed", "temperature", "artifacts", "seq_len", "k_dim",
]  # fmt: skip


def junk(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**64), 10**300, 3.5, -0.0, 1e308])
    if kind == 3:
        return rng.choice(["", "x", "é\u202e\U0001f600", "\x00", "0" * 5000, "../../etc", "%252F"])
    if kind == 4:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(20)))
    if kind == 5:
        return rng.choice(FIELDS)
    if kind in (6, 7):
        return [junk(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {rng.choice(FIELDS): junk(rng, depth + 1) for _ in range(rng.randrange(6))}


def fuzz_bodies(rng: random.Random) -> Iterator[bytes]:
    for _ in range(12):
        yield json.dumps(
            {rng.choice(FIELDS): junk(rng) for _ in range(rng.randrange(1, 6))}
        ).encode()
    for _ in range(4):
        yield bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    yield json.dumps(junk(rng)).encode()
    yield b'{"messages": [' * 50 + b"]}" * 50
    yield b'{"nonces": [' + b",".join(b"9" * 400 for _ in range(3)) + b"]}"


def test_fuzz_never_a_server_error(running: RunningNode) -> None:
    rng = random.Random(20261202)
    for port_url in (running.server.control_url, running.server.inference_url):
        for method, route in FUZZ_ROUTES:
            for raw in fuzz_bodies(rng):
                answer = requests.request(method, f"{port_url}{route}", data=raw, timeout=60)
                # 503 only where the machine has no NVIDIA driver to ask.
                allowed = 503 if route == "/api/v1/gpu/driver" else 500
                assert answer.status_code < 500 or answer.status_code == allowed, (
                    method,
                    route,
                    raw[:200],
                    answer.status_code,
                    answer.text[:300],
                )
                if answer.status_code >= 400:
                    detail(answer)
        # Junk paths, methods and headers too.
        for _ in range(30):
            path = "/" + "/".join(
                rng.choice(["api", "v1", "v3.0.8", "é", "%00", "..", "pow", "x" * 300])
                for _ in range(rng.randrange(1, 6))
            )
            method = rng.choice(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
            answer = requests.request(
                method,
                f"{port_url}{path}",
                data=bytes(rng.randrange(256) for _ in range(50)),
                headers={"Content-Type": rng.choice(["application/json", "x/y", "é"])},
                timeout=60,
            )
            assert answer.status_code < 500, (method, path, answer.status_code)
    # Still alive, still serving.
    state = requests.get(f"{running.server.control_url}/api/v1/state", timeout=30)
    assert state.status_code == 200
    chat = post_raw(
        f"{running.server.inference_url}/v1/chat/completions", json.dumps(CHAT).encode()
    )
    assert chat.status_code in (200, 503), chat.text


def test_metrics_endpoint(running: RunningNode) -> None:
    answer = requests.get(f"{running.server.control_url}/api/v1/metrics", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert b"gonka_mlnode_" in answer.content


# -- serve(): signals ---------------------------------------------------------------------

SERVE_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from gonka_cli.miner.devices import MiningDevice
    from gonka_cli.mlnode.server import MlNodeServer
    from gonka_cli.mlnode.service import MlNode, MlNodeConfig

    cpu = MiningDevice(id="cpu", name="CPU", torch_device="cpu")
    node = MlNode(MlNodeConfig(devices=(cpu,), data_dir=Path(sys.argv[1])))
    node.start()
    server = MlNodeServer(node, control_port=0, inference_port=0)
    server.start()
    print(server.control_url, flush=True)
    sys.exit(server.serve())
    """
)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_serve_stops_on_signals(tmp_path: Path, sig: int, code: int) -> None:
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        assert requests.get(f"{url}/api/v1/state", timeout=30).json()["state"] == "STOPPED"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code, proc.stderr.read() if proc.stderr else ""
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/api/v1/state", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
