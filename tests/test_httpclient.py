"""Failover between nodes, against real HTTP servers on 127.0.0.1.

Each stand-in node answers what the test sets (`Stub.answer`) and records what it received;
a "hung" node holds the request until the test ends, so a read times out.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gonka_cli.errors import NodeUnreachable
from gonka_cli.httpclient import FailoverSession
from tests.conftest import dead_url


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Stub:
    server: ThreadingHTTPServer
    #: (status, content type, body) of every answer.
    answer: tuple[int, str, bytes] = (200, "application/json", b'{"ok": true}')
    hang: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def json(self, status: int, data: object) -> None:
        self.answer = (status, "application/json", json.dumps(data).encode())


@pytest.fixture
def start_stub() -> Iterator[Callable[[], Stub]]:
    stubs: list[Stub] = []

    def start() -> Stub:
        holder: list[Stub] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                stub = holder[0]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                stub.seen.append(Seen(self.command, self.path, dict(self.headers), body))
                if stub.hang:
                    stub.release.wait()
                    return
                status, kind, payload = stub.answer
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        stub = Stub(server)
        holder.append(stub)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        stubs.append(stub)
        return stub

    yield start
    for stub in stubs:
        stub.release.set()
        stub.server.shutdown()
        stub.server.server_close()


def test_fails_over_past_a_dead_node_and_keeps_the_live_one(
    start_stub: Callable[[], Stub],
) -> None:
    live = start_stub()
    dead = dead_url()
    with FailoverSession([dead, live.url + "/"], timeout_s=5) as nodes:
        assert nodes.url == dead

        reply = nodes.request("GET", "/status", params={"a": "1"})

        assert (reply.status, reply.data, reply.url) == (200, {"ok": True}, live.url)
        assert nodes.url == live.url
        assert nodes.urls == (live.url, dead)
        assert live.seen[0].path == "/status?a=1"
        assert live.seen[0].headers["User-Agent"] == "gonka-cli"


def test_every_dead_node_is_named_with_its_reason() -> None:
    urls = [dead_url(), dead_url()]
    with FailoverSession(urls, timeout_s=5, hint="pass --node URL") as nodes:
        with pytest.raises(NodeUnreachable) as info:
            nodes.request("GET", "/status")

    assert str(info.value) == (
        f"no node answered: tried {urls[0]} (connection refused); "
        f"{urls[1]} (connection refused); pass --node URL"
    )


def test_gateway_status_and_html_move_on_but_a_client_error_is_an_answer(
    start_stub: Callable[[], Stub],
) -> None:
    gateway, portal, node = start_stub(), start_stub(), start_stub()
    gateway.json(503, {"message": "overloaded"})
    portal.answer = (200, "text/html", b"<html>sign in</html>")
    node.json(404, {"code": 5, "message": "not found"})
    with FailoverSession([gateway.url, portal.url, node.url], timeout_s=5) as nodes:
        reply = nodes.request("GET", "/thing")

    assert (reply.status, reply.data, reply.url) == (
        404,
        {"code": 5, "message": "not found"},
        node.url,
    )
    assert [len(s.seen) for s in (gateway, portal, node)] == [1, 1, 1]


def test_not_json_is_named_when_no_node_answers(start_stub: Callable[[], Stub]) -> None:
    portal = start_stub()
    portal.answer = (200, "text/html", b"<html>sign in</html>")
    with FailoverSession([portal.url], timeout_s=5) as nodes:
        with pytest.raises(
            NodeUnreachable, match=r"\(HTTP 200, not JSON: is this a node's API\?\)"
        ):
            nodes.request("GET", "/thing")
        reply = nodes.request("GET", "/thing", expect_json=False)

    assert reply.data is None
    assert reply.response.text == "<html>sign in</html>"


def test_node_headers_are_built_for_each_node_tried(start_stub: Callable[[], Stub]) -> None:
    first, second = start_stub(), start_stub()
    first.json(502, {})
    asked: list[str] = []

    def sign_for(url: str) -> Mapping[str, str]:
        asked.append(url)
        return {"X-Receiver": url}

    body = b'{"b":1, "a":2}'
    with FailoverSession([first.url, second.url], timeout_s=5) as nodes:
        nodes.request("POST", "/signed", data=body, node_headers=sign_for, headers={"X-A": "1"})

    assert asked == [first.url, second.url]
    assert first.seen[0].headers["X-Receiver"] == first.url
    assert second.seen[0].headers["X-Receiver"] == second.url
    assert second.seen[0].headers["X-A"] == "1"
    assert second.seen[0].body == body  # byte for byte, as signed


def test_a_node_without_identity_is_skipped(start_stub: Callable[[], Stub]) -> None:
    first, second = start_stub(), start_stub()

    def sign_for(url: str) -> Mapping[str, str]:
        if url == first.url:
            raise NodeUnreachable("identity unknown")
        return {}

    with FailoverSession([first.url, second.url], timeout_s=5) as nodes:
        reply = nodes.request("GET", "/work", node_headers=sign_for)

    assert reply.url == second.url
    assert first.seen == []


def test_pinned_node_is_the_only_one_asked(start_stub: Callable[[], Stub]) -> None:
    first, second = start_stub(), start_stub()
    with FailoverSession([first.url, second.url], timeout_s=5) as nodes:
        reply = nodes.request("GET", "/v1/identity", node=second.url)

        assert reply.url == second.url
        assert nodes.url == first.url  # pinning does not reorder
        dead = dead_url()
        with pytest.raises(NodeUnreachable, match=f"tried {dead} \\(connection refused\\)"):
            nodes.request("GET", "/v1/identity", node=dead)
    assert first.seen == []


def test_not_idempotent_moves_on_only_before_sending(start_stub: Callable[[], Stub]) -> None:
    gateway, node = start_stub(), start_stub()
    gateway.json(504, {})
    dead = dead_url()
    with FailoverSession([dead, node.url], timeout_s=5) as nodes:
        assert nodes.request("POST", "/result", json={}, idempotent=False).url == node.url
    with FailoverSession([gateway.url, node.url], timeout_s=5) as nodes:
        with pytest.raises(NodeUnreachable, match="may have reached that node") as info:
            nodes.request("POST", "/result", json={}, idempotent=False)

    assert f"{gateway.url} (HTTP 504)" in str(info.value)
    assert len(node.seen) == 1  # only the first session's request


def test_a_read_timeout_is_repeated_only_when_idempotent(start_stub: Callable[[], Stub]) -> None:
    hung, node = start_stub(), start_stub()
    hung.hang = True
    with FailoverSession([hung.url, node.url], timeout_s=0.2) as nodes:
        with pytest.raises(NodeUnreachable, match=r"\(no answer in 0.2 s\)"):
            nodes.request("POST", "/result", json={}, idempotent=False)
        assert node.seen == []

        assert nodes.request("GET", "/status").url == node.url


def test_stream_returns_the_body_unread(start_stub: Callable[[], Stub]) -> None:
    node = start_stub()
    node.answer = (200, "text/event-stream", b"data: 1\n\ndata: [DONE]\n\n")
    with FailoverSession([node.url], timeout_s=5) as nodes:
        reply = nodes.request("POST", "/chat", json={}, expect_json=False, stream=True)
        with reply.response as response:
            lines = [line for line in response.iter_lines() if line]

    assert lines == [b"data: 1", b"data: [DONE]"]


def test_needs_a_list_of_urls() -> None:
    with pytest.raises(ValueError):
        FailoverSession([])
    with pytest.raises(TypeError):
        FailoverSession("http://127.0.0.1:1")
