"""The callback outbox and its sender, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.mlnode.callbacks import ENCODING, Outbox, Round, Sender

#: DAPI's callback path for "Qwen/Qwen3-0.6B": the model id escaped twice (spec §1.4).
PATH = "/v2/poc-batches/Qwen%252FQwen3-0.6B"


def vector(i: int) -> bytes:
    return bytes([i % 256]) * 24


class Target:
    """A callback target: records each POST (raw path, body) and answers `statuses` in turn
    (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.statuses = list(statuses or [])
        self.changed = threading.Condition()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with target.changed:
                    target.posts.append((self.path, body))
                    status = target.statuses.pop(0) if target.statuses else 200
                    target.changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{PATH}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_posts(self, n: int) -> list[tuple[str, dict[str, Any]]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.posts) >= n, timeout=30), self.posts
            return list(self.posts)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.stop()


class Results:
    """The sender's `on_result` calls, as they come."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.changed = threading.Condition()

    def __call__(self, result: Any) -> None:
        with self.changed:
            self.items.append(result)
            self.changed.notify_all()

    def wait(self, n: int) -> list[Any]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.items) >= n, timeout=30)
            return list(self.items)


def round_for(url: str, **changes: Any) -> Round:
    fields: dict[str, Any] = {
        "url": url,
        "public_key": "02" + "ab" * 32,
        "block_hash": "C0FFEE" * 10 + "ABCD",
        "block_height": 1234,
        "node_id": 2,
    }
    fields.update(changes)
    return Round(**fields)


def sender(outbox: Outbox, **changes: Any) -> Sender:
    options: dict[str, Any] = {"interval_s": 0.05, "timeout_s": 5.0, "backoff_s": (0.01, 0.05)}
    options.update(changes)
    return Sender(outbox, **options)


def test_everything_buffered_goes_out_as_one_post_to_the_unescaped_url(
    tmp_path: Path, target: Target
) -> None:
    outbox = Outbox(tmp_path / "callbacks.db")
    rnd = round_for(target.url)
    outbox.add_artifacts(rnd, [(0, vector(0)), (3, vector(3))])
    outbox.add_artifacts(rnd, [(6, vector(6))])
    delivery = sender(outbox)
    delivery.start()
    try:
        [(path, body)] = target.wait_posts(1)
    finally:
        delivery.stop()
    # The double escape arrives as DAPI built it: neither decoded nor escaped again.
    assert path == PATH + "/generated"
    assert body == {
        "public_key": rnd.public_key,
        "block_hash": rnd.block_hash,
        "block_height": 1234,
        "node_id": 2,
        "artifacts": [
            {"nonce": n, "vector_b64": base64.b64encode(vector(n)).decode()} for n in (0, 3, 6)
        ],
        "encoding": ENCODING,
    }
    assert outbox.buffered == 0
    assert delivery.sent_artifacts == 3
    assert delivery.last is not None and delivery.last.ok and delivery.last.artifacts == 3
    outbox.close()


def test_later_artifacts_go_in_a_later_post_and_request_id_only_for_jobs(
    tmp_path: Path, target: Target
) -> None:
    outbox = Outbox(tmp_path / "callbacks.db")
    delivery = sender(outbox)
    delivery.start()
    try:
        outbox.add_artifacts(round_for(target.url), [(1, vector(1))])
        target.wait_posts(1)
        outbox.add_artifacts(round_for(target.url, request_id="0:abc"), [(5, vector(5))])
        posts = target.wait_posts(2)
    finally:
        delivery.stop()
    assert [[a["nonce"] for a in body["artifacts"]] for _, body in posts] == [[1], [5]]
    assert "request_id" not in posts[0][1]
    assert posts[1][1]["request_id"] == "0:abc"
    outbox.close()


def test_a_failed_post_is_retried_with_the_same_payload_until_it_succeeds(
    tmp_path: Path,
) -> None:
    failing = Target(statuses=[503, 500])
    outbox = Outbox(tmp_path / "callbacks.db")
    results = Results()
    delivery = sender(outbox, on_result=results)
    outbox.add_artifacts(round_for(failing.url), [(7, vector(7)), (9, vector(9))])
    delivery.start()
    try:
        posts = failing.wait_posts(3)
        seen = results.wait(3)
    finally:
        delivery.stop()
        failing.stop()
    assert posts[0][1] == posts[1][1] == posts[2][1]
    assert [r.http_status for r in seen[:3]] == [503, 500, 200]
    assert outbox.buffered == 0
    assert delivery.given_up == 0
    outbox.close()


def test_after_the_last_try_the_payload_is_given_up_and_counted(tmp_path: Path) -> None:
    failing = Target(statuses=[500] * 10)
    outbox = Outbox(tmp_path / "callbacks.db")
    results = Results()
    delivery = sender(outbox, tries=3, on_result=results)
    outbox.add_artifacts(round_for(failing.url), [(1, vector(1)), (2, vector(2))])
    delivery.start()
    try:
        results.wait(3)
    finally:
        delivery.stop()
        failing.stop()
    assert len(failing.posts) == 3
    assert delivery.given_up == 2
    assert outbox.buffered == 0
    outbox.close()


def test_an_unreachable_target_is_retried_and_nothing_is_lost_meanwhile(tmp_path: Path) -> None:
    down = Target()
    url = down.url
    down.stop()  # nothing listens there now
    outbox = Outbox(tmp_path / "callbacks.db")
    results = Results()
    delivery = sender(outbox, timeout_s=1.0, on_result=results)
    outbox.add_artifacts(round_for(url), [(4, vector(4))])
    delivery.start()
    try:
        seen = results.wait(2)
    finally:
        delivery.stop()
    assert seen[0].http_status is None and seen[0].error
    assert outbox.buffered == 1
    outbox.close()


def test_the_buffer_keeps_the_newest_artifacts_past_its_cap(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "callbacks.db", max_artifacts=5)
    rnd = round_for("http://127.0.0.1:9/x")
    assert outbox.add_artifacts(rnd, [(n, vector(n)) for n in range(4)]) == 0
    assert outbox.add_artifacts(rnd, [(n, vector(n)) for n in range(4, 8)]) == 3
    assert outbox.buffered == 5
    assert outbox.dropped == 3
    [(target_id, _, last)] = outbox.pending_targets()
    assert [n for n, _ in outbox.batch(target_id, last)] == [3, 4, 5, 6, 7]
    outbox.close()


def test_unsent_callbacks_survive_a_restart(tmp_path: Path, target: Target) -> None:
    path = tmp_path / "callbacks.db"
    outbox = Outbox(path)
    outbox.add_artifacts(round_for(target.url), [(n, vector(n)) for n in range(3)])
    outbox.add_message(target.url, {"request_id": "0:x", "n_total": 3})
    outbox.close()  # what a killed node leaves: nothing was sent

    reopened = Outbox(path)
    assert reopened.buffered == 3
    delivery = sender(reopened)
    delivery.start()
    try:
        posts = target.wait_posts(2)
    finally:
        delivery.stop()
    by_path = dict(posts)
    assert [a["nonce"] for a in by_path[PATH + "/generated"]["artifacts"]] == [0, 1, 2]
    assert by_path[PATH + "/validated"] == {"request_id": "0:x", "n_total": 3}
    assert reopened.buffered == 0 and reopened.pending_messages() == 0
    reopened.close()


def test_clear_forgets_everything_unsent(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "callbacks.db")
    outbox.add_artifacts(round_for("http://127.0.0.1:9/x"), [(1, vector(1))])
    outbox.add_message("http://127.0.0.1:9/x", {"n_total": 1})
    assert outbox.clear() == 1
    assert outbox.buffered == 0 and outbox.pending_messages() == 0
    assert outbox.pending_targets() == []
    outbox.close()
