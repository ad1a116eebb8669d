"""The ML node's callbacks to DAPI: a durable outbox and the thread that delivers it.

Every artifact the devices compute and every validation verdict is written to SQLite
(`callbacks.db` in the node's data directory) before anything else happens with it, so a
node killed with -9 loses nothing it computed; `Outbox` reopened after a restart sends what
is still there. Rows leave the outbox only after DAPI answered 2xx (or after the last try).

Delivery follows the ML node's `CallbackSender` (spec §1.4):

- **`/generated`**: every `interval_s` (5 s; `POC_CALLBACK_INTERVAL_SEC`), everything
  buffered for one target (url and round) goes out as one POST to `url + "/generated"`:
  `{public_key, block_hash, block_height, node_id, artifacts: [{nonce, vector_b64}],
  encoding: {dtype: "f16", k_dim: 12, endian: "le"}}`, plus `request_id` for a queued
  generate job.
- **`/validated`**: a verdict is posted at once, one POST per job, to `url + "/validated"`.
- **Failures** (no answer in `timeout_s`, or a status other than 2xx): the same payload is
  sent again after 1, 2, 4 ... 30 s; after `tries` attempts it is given up (logged,
  counted, removed).
- **Cap**: at most `max_artifacts` artifacts wait; past it the oldest are dropped (counted).

The URL is DAPI's, already escaped twice (`.../v2/poc-batches/Qwen%252FQwen3-0.6B`): the
suffix is appended as a string and the result is sent as is, never decoded or re-encoded
(`requests` keeps a valid `%XX` escape as it is).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["ENCODING", "CallbackResult", "Outbox", "Round", "Sender"]

ENCODING = {"dtype": "f16", "k_dim": 12, "endian": "le"}
GENERATED, VALIDATED = "generated", "validated"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS targets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    public_key TEXT NOT NULL,
    block_hash TEXT NOT NULL,
    block_height INTEGER NOT NULL,
    node_id INTEGER NOT NULL,
    request_id TEXT
);
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target INTEGER NOT NULL,
    nonce INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_target ON artifacts (target, id);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    body TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Round:
    """Where the artifacts of one PoC round (or one queued generate job) go, and the
    fields every `/generated` body of it repeats."""

    url: str
    public_key: str
    block_hash: str
    block_height: int
    node_id: int
    request_id: str | None = None


@dataclass(frozen=True)
class CallbackResult:
    """One POST's outcome, as `gonka mlnode status` shows the last one."""

    kind: str
    url: str
    http_status: int | None
    error: str | None
    at: float
    artifacts: int

    @property
    def ok(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "http_status": self.http_status,
            "error": self.error,
            "at": self.at,
            "artifacts": self.artifacts,
        }


class Outbox:
    """The SQLite outbox (thread-safe: one connection behind a lock)."""

    def __init__(self, path: Path, max_artifacts: int = 1_000_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_artifacts = max_artifacts
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (the OS keeps the written pages).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._targets: dict[Round, int] = {}
        for row in self._db.execute(
            "SELECT id, url, public_key, block_hash, block_height, node_id, request_id FROM targets"
        ):
            self._targets[Round(*row[1:])] = row[0]
        (count,) = self._db.execute("SELECT COUNT(*) FROM artifacts").fetchone()
        self._count: int = int(count)
        #: Artifacts dropped for the cap since this outbox was opened.
        self.dropped = 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction (the connection is in autocommit mode otherwise): a chunk's rows
        are written together, or not at all."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writing -------------------------------------------------------------------------

    def add_artifacts(self, target: Round, artifacts: Sequence[tuple[int, bytes]]) -> int:
        """Store `(nonce, 24-byte vector)` pairs for `target`; returns how many were
        dropped (the oldest) to keep within the cap."""
        if not artifacts:
            return 0
        with self._lock:
            target_id = self._target_id(target)
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO artifacts (target, nonce, vector) VALUES (?, ?, ?)",
                    [(target_id, nonce, bytes(vector)) for nonce, vector in artifacts],
                )
                self._count += len(artifacts)
                over = self._count - self.max_artifacts
                if over > 0:
                    self._db.execute(
                        "DELETE FROM artifacts WHERE id IN "
                        "(SELECT id FROM artifacts ORDER BY id LIMIT ?)",
                        (over,),
                    )
                    self._count -= over
                    self.dropped += over
        if over > 0:
            log.warning("callback buffer full: dropped the %d oldest artifacts", over)
            return over
        return 0

    def _target_id(self, target: Round) -> int:
        if target not in self._targets:
            cursor = self._db.execute(
                "INSERT INTO targets (url, public_key, block_hash, block_height, node_id, "
                "request_id) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    target.url,
                    target.public_key,
                    target.block_hash,
                    target.block_height,
                    target.node_id,
                    target.request_id,
                ),
            )
            assert cursor.lastrowid is not None
            self._targets[target] = cursor.lastrowid
        return self._targets[target]

    def add_message(self, url: str, body: dict[str, Any]) -> None:
        """Store a `/validated` body for `url`."""
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO messages (url, body) VALUES (?, ?)", (url, json.dumps(body))
            )

    def clear(self) -> int:
        """Forget everything unsent (`pow/stop`); returns the artifacts dropped."""
        with self._lock, self._transaction():
            count = self._count
            self._db.execute("DELETE FROM artifacts")
            self._db.execute("DELETE FROM messages")
            self._db.execute("DELETE FROM targets")
            self._targets.clear()
            self._count = 0
        return count

    # -- reading -------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Artifacts waiting to be sent."""
        with self._lock:
            return int(self._count)

    def pending_targets(self) -> list[tuple[int, Round, int]]:
        """`(target id, round, last artifact id)` of each target with artifacts waiting."""
        with self._lock:
            rows = self._db.execute(
                "SELECT target, MAX(id) FROM artifacts GROUP BY target ORDER BY MIN(id)"
            ).fetchall()
            by_id = {v: k for k, v in self._targets.items()}
        return [(t, by_id[t], last) for t, last in rows if t in by_id]

    def batch(self, target_id: int, last_id: int) -> list[tuple[int, bytes]]:
        """The artifacts of a target up to `last_id`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT nonce, vector FROM artifacts WHERE target = ? AND id <= ? ORDER BY id",
                (target_id, last_id),
            ).fetchall()
        return [(int(n), bytes(v)) for n, v in rows]

    def remove_batch(self, target_id: int, last_id: int) -> int:
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "DELETE FROM artifacts WHERE target = ? AND id <= ?", (target_id, last_id)
            )
            self._count -= cursor.rowcount
            (left,) = self._db.execute(
                "SELECT COUNT(*) FROM artifacts WHERE target = ?", (target_id,)
            ).fetchone()
            if not left:
                self._db.execute("DELETE FROM targets WHERE id = ?", (target_id,))
                self._targets = {k: v for k, v in self._targets.items() if v != target_id}
        return int(cursor.rowcount)

    def messages(self) -> list[tuple[int, str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT id, url, body FROM messages ORDER BY id").fetchall()
        return [(int(i), str(u), json.loads(b)) for i, u, b in rows]

    def remove_message(self, message_id: int) -> None:
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def pending_messages(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()
        return int(count)


def generated_body(target: Round, artifacts: Iterable[tuple[int, bytes]]) -> dict[str, Any]:
    """The `/generated` body (`GeneratedArtifactBatchV2`)."""
    body: dict[str, Any] = {
        "public_key": target.public_key,
        "block_hash": target.block_hash,
        "block_height": target.block_height,
        "node_id": target.node_id,
        "artifacts": [
            {"nonce": nonce, "vector_b64": base64.b64encode(vector).decode("ascii")}
            for nonce, vector in artifacts
        ],
        "encoding": dict(ENCODING),
    }
    if target.request_id is not None:
        body["request_id"] = target.request_id
    return body


@dataclass
class _Attempt:
    """A payload being delivered: the same rows until a 2xx or the last try."""

    key: tuple[str, int]
    url: str
    kind: str
    last_id: int
    count: int
    tries: int = 0
    next_at: float = 0.0


class Sender:
    """The thread that delivers the outbox (see the module docstring)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        interval_s: float = 5.0,
        timeout_s: float = 10.0,
        tries: int = 10,
        backoff_s: tuple[float, float] = (1.0, 30.0),
        on_result: Callable[[CallbackResult], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.tries = tries
        self.backoff_s = backoff_s
        self._on_result = on_result or (lambda result: None)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._attempts: dict[tuple[str, int], _Attempt] = {}
        self._thread: threading.Thread | None = None
        self._session: Any = None
        self.sent_artifacts = 0
        self.given_up = 0
        self.last: CallbackResult | None = None

    def start(self) -> None:
        import requests

        self._session = requests.Session()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="callbacks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Deliver the `/validated` messages now (artifacts keep the interval)."""
        self._wake.set()

    def forget(self) -> None:
        """Drop the payloads in delivery (after `Outbox.clear`)."""
        with self._lock:
            self._attempts.clear()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        if self._session is not None:
            self._session.close()

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            try:
                next_tick = self._round(next_tick)
            except Exception:
                if self._stop.is_set():
                    return  # the outbox was closed under a post that outlived stop()
                log.exception("the callback sender failed; trying again")
                self._stop.wait(self.interval_s)

    def _round(self, next_tick: float) -> float:
        """One pass: collect what is due, post it, sleep until the next thing is due."""
        self._wake.clear()  # a wake() from here on cuts the sleep short
        now = time.monotonic()
        if now >= next_tick:
            self._collect_artifacts()
            next_tick = now + self.interval_s
        self._collect_messages()
        for attempt in self._due(time.monotonic()):
            if self._stop.is_set():
                return next_tick
            try:
                self._deliver(attempt)
            except Exception:  # a broken row must not end the deliveries
                log.exception("callback delivery failed")
                attempt.next_at = time.monotonic() + self.interval_s
        wait = next_tick - time.monotonic()
        with self._lock:
            pending = [a.next_at for a in self._attempts.values()]
        if pending:
            wait = min(wait, min(pending) - time.monotonic())
        self._wake.wait(max(0.0, min(wait, self.interval_s)))
        return next_tick

    def _collect_artifacts(self) -> None:
        for target_id, target, last_id in self.outbox.pending_targets():
            key = (GENERATED, target_id)
            with self._lock:
                if key in self._attempts:
                    continue  # a payload of this target is being retried
                self._attempts[key] = _Attempt(
                    key, target.url + "/" + GENERATED, GENERATED, last_id, 0
                )

    def _collect_messages(self) -> None:
        for message_id, url, _ in self.outbox.messages():
            key = (VALIDATED, message_id)
            with self._lock:
                if key not in self._attempts:
                    self._attempts[key] = _Attempt(key, url + "/" + VALIDATED, VALIDATED, 0, 0)

    def _due(self, now: float) -> list[_Attempt]:
        with self._lock:
            return [a for a in self._attempts.values() if a.next_at <= now]

    def _payload(self, attempt: _Attempt) -> tuple[dict[str, Any] | None, int]:
        if attempt.kind == GENERATED:
            target_id = attempt.key[1]
            by_id = {t: r for t, r, _ in self.outbox.pending_targets()}
            target = by_id.get(target_id)
            if target is None:
                return None, 0
            rows = self.outbox.batch(target_id, attempt.last_id)
            return (generated_body(target, rows), len(rows)) if rows else (None, 0)
        for message_id, _, body in self.outbox.messages():
            if message_id == attempt.key[1]:
                return body, 0
        return None, 0

    def _deliver(self, attempt: _Attempt) -> None:
        body, count = self._payload(attempt)
        if body is None:  # cleared by pow/stop or dropped for the cap meanwhile
            with self._lock:
                self._attempts.pop(attempt.key, None)
            return
        status, error = self._post(attempt.url, body)
        result = CallbackResult(attempt.kind, attempt.url, status, error, time.time(), count)
        self.last = result
        if result.ok:
            self._done(attempt, count)
        else:
            attempt.tries += 1
            if attempt.tries >= self.tries:
                log.error(
                    "callback %s gave up after %d tries (%s); %d artifacts lost",
                    attempt.url,
                    attempt.tries,
                    error or f"HTTP {status}",
                    count,
                )
                self.given_up += max(count, 1)
                self._done(attempt, 0)
            else:
                first, cap = self.backoff_s
                delay = min(cap, first * 2 ** (attempt.tries - 1))
                log.warning(
                    "callback %s failed (%s); try %d again in %g s",
                    attempt.url,
                    error or f"HTTP {status}",
                    attempt.tries + 1,
                    delay,
                )
                attempt.next_at = time.monotonic() + delay
        try:
            self._on_result(result)
        except Exception:
            log.exception("callback listener failed")

    def _done(self, attempt: _Attempt, sent: int) -> None:
        if attempt.kind == GENERATED:
            self.outbox.remove_batch(attempt.key[1], attempt.last_id)
        else:
            self.outbox.remove_message(attempt.key[1])
        self.sent_artifacts += sent
        with self._lock:
            self._attempts.pop(attempt.key, None)

    def _post(self, url: str, body: dict[str, Any]) -> tuple[int | None, str | None]:
        import requests

        data = json.dumps(body, separators=(",", ":")).encode()
        try:
            reply = self._session.post(
                url,
                data=data,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout_s,
            )
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        reply.close()
        error = None if 200 <= reply.status_code < 300 else (reply.text or "")[:200] or None
        return reply.status_code, error
