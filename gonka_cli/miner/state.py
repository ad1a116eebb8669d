"""The miner's durable state: an outbox, commits and nonce reservations in SQLite.

One directory per wallet and network (`MinerState.open_for`), locked by the running miner:

- `miner.sqlite` — the **outbox**: every result (proof answers, inference tokens,
  validation verdicts) is written here before it is sent and stays `pending` until the node
  acknowledges it (`acked`) or refuses it for good (`rejected`, with the node's reason). The
  latest `(count, root)` of each epoch's artifacts is kept the same way, so a commit that did
  not reach the node is sent again; only the latest one matters, as counts never go down.
  Nonces are reserved here before they are computed, so a restarted miner never computes a
  nonce twice, and only as many as are handed out, so that a restart leaves no wide gap.
- `epoch-N.smst` — the epoch's artifacts, keyed by nonce (`compute.smst.SMST`, one durable
  SQLite file). Files `epoch-N.mmr` of earlier versions are only pruned.

Every write is one SQLite transaction (`storage.transaction`, rolled back on any error) on a
connection opened with `synchronous=FULL` (`storage.open_sqlite`): kill -9 or a power cut at
any moment leaves either the old or the new rows, never half of them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gonka_cli.errors import MinerError
from gonka_cli.lockfile import LockFile
from gonka_cli.storage import open_sqlite, transaction

log = logging.getLogger(__name__)

PENDING, ACKED, REJECTED = "pending", "acked", "rejected"
#: Epochs of artifact files and finished outbox rows kept behind the current one.
KEEP_EPOCHS = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    item_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, created);
CREATE TABLE IF NOT EXISTS commits (
    epoch INTEGER PRIMARY KEY,
    model TEXT NOT NULL,
    count INTEGER NOT NULL,
    root TEXT NOT NULL,
    acked_count INTEGER NOT NULL DEFAULT 0,
    closed TEXT
);
CREATE TABLE IF NOT EXISTS nonces (epoch INTEGER PRIMARY KEY, reserved INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class OutboxEntry:
    item_id: str
    kind: str
    epoch: int
    body: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class CommitRecord:
    epoch: int
    model: str
    count: int
    root: str
    acked_count: int


class MinerState:
    """The state directory of one miner (one wallet on one network)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock = LockFile(directory / "miner.lock")
            taken = self._lock.acquire()
        except OSError as exc:
            raise MinerError(
                f"cannot use the miner's state directory {directory} ({exc.strerror}); "
                "check its permissions or set GONKA_HOME"
            ) from None
        if not taken:
            raise MinerError(
                f"another gonka mine is already running with this wallet on this network "
                f"(state {directory}); stop it first or pass another --wallet"
            )
        self.path = directory / "miner.sqlite"
        try:
            self._db = open_sqlite(self.path, durable=True)
            with transaction(self._db):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
        except sqlite3.DatabaseError as exc:
            self._lock.release()
            raise MinerError(
                f"the miner's state file {self.path} is unreadable ({exc}); move it away to "
                "start afresh (its unsent results are then lost)"
            ) from None
        self._mutex = threading.Lock()
        self._nonce_next: dict[int, int] = {}

    @classmethod
    def open_for(cls, data_dir: Path, address: str, network_id: str) -> MinerState:
        """The state of wallet `address` on the network whose epoch-0 seed is `network_id`."""
        return cls(data_dir / "miner" / address / network_id[:16])

    def close(self) -> None:
        with self._mutex:
            self._db.close()
            self._lock.release()

    def _write(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._mutex, transaction(self._db):
            return self._db.execute(sql, args)

    # -- nonces --------------------------------------------------------------------------

    def reserve_nonces(self, epoch: int, count: int) -> range:
        """`count` nonces of `epoch` never handed out before, in this run or an earlier one.

        Each reservation is written before it is handed out, and exactly what is handed out:
        a restart then skips only the nonces of the chunks that were being computed. Skipping
        more (reserving ahead) would leave the epoch's nonces too sparse for the network's
        porosity check (`max_porosity`: the largest nonce over the count) and cost the
        epoch's weight.
        """
        with self._mutex:
            first = self._nonce_next.get(epoch)
            if first is None:
                row = self._db.execute(
                    "SELECT reserved FROM nonces WHERE epoch = ?", (epoch,)
                ).fetchone()
                first = int(row[0]) if row else 0
            with transaction(self._db):
                self._db.execute(
                    "INSERT OR REPLACE INTO nonces VALUES (?, ?)", (epoch, first + count)
                )
            self._nonce_next[epoch] = first + count
            return range(first, first + count)

    # -- commits -------------------------------------------------------------------------

    def record_commit(self, epoch: int, model: str, count: int, root: str) -> None:
        """The epoch's artifacts now number `count` with this root (to be sent)."""
        self._write(
            "INSERT INTO commits (epoch, model, count, root) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (epoch) DO UPDATE SET model = excluded.model, count = excluded.count, "
            "root = excluded.root WHERE excluded.count > commits.count",
            (epoch, model, count, root),
        )

    def pending_commit(self) -> CommitRecord | None:
        """The latest epoch's commit when the node does not hold it yet."""
        with self._mutex:
            row = self._db.execute(
                "SELECT epoch, model, count, root, acked_count FROM commits "
                "WHERE count > acked_count AND closed IS NULL ORDER BY epoch DESC LIMIT 1"
            ).fetchone()
        return CommitRecord(*row) if row else None

    def commit_acked(self, epoch: int, count: int) -> None:
        self._write(
            "UPDATE commits SET acked_count = MAX(acked_count, ?) WHERE epoch = ?", (count, epoch)
        )

    def commit_closed(self, epoch: int, reason: str) -> None:
        """The node takes no more commits for `epoch` (its generate phase is over)."""
        self._write("UPDATE commits SET closed = ? WHERE epoch = ?", (reason, epoch))

    def commit_of(self, epoch: int) -> CommitRecord | None:
        with self._mutex:
            row = self._db.execute(
                "SELECT epoch, model, count, root, acked_count FROM commits WHERE epoch = ?",
                (epoch,),
            ).fetchone()
        return CommitRecord(*row) if row else None

    # -- the outbox ----------------------------------------------------------------------

    def add_result(self, item_id: str, kind: str, epoch: int, body: dict[str, Any]) -> bool:
        """Queue a result; False when this work item already has one (kept as it was)."""
        now = time.time()
        cursor = self._write(
            "INSERT OR IGNORE INTO outbox (item_id, kind, epoch, body, state, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (item_id, kind, epoch, json.dumps(body, separators=(",", ":")), PENDING, now, now),
        )
        return cursor.rowcount == 1

    def has_result(self, item_id: str) -> bool:
        with self._mutex:
            row = self._db.execute("SELECT 1 FROM outbox WHERE item_id = ?", (item_id,)).fetchone()
        return row is not None

    def pending_results(self, limit: int = 64) -> list[OutboxEntry]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT item_id, kind, epoch, body, attempts FROM outbox WHERE state = ? "
                "ORDER BY created LIMIT ?",
                (PENDING, limit),
            ).fetchall()
        return [OutboxEntry(i, k, e, json.loads(b), a) for i, k, e, b, a in rows]

    def result_attempted(self, item_id: str) -> None:
        self._write(
            "UPDATE outbox SET attempts = attempts + 1, updated = ? WHERE item_id = ?",
            (time.time(), item_id),
        )

    def result_done(self, item_id: str, state: str, reason: str | None = None) -> None:
        """The node acknowledged (`ACKED`) or refused (`REJECTED`, with why) a result."""
        self._write(
            "UPDATE outbox SET state = ?, reason = ?, updated = ? WHERE item_id = ?",
            (state, reason, time.time(), item_id),
        )

    def outbox_counts(self) -> dict[str, int]:
        with self._mutex:
            rows = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        counts = {PENDING: 0, ACKED: 0, REJECTED: 0}
        counts.update({state: int(n) for state, n in rows})
        return counts

    def outbox_rows(self) -> list[dict[str, Any]]:
        """Every outbox row (for `gonka mine` tests and inspection)."""
        with self._mutex:
            rows = self._db.execute(
                "SELECT item_id, kind, epoch, state, reason, attempts FROM outbox ORDER BY created"
            ).fetchall()
        keys = ("item_id", "kind", "epoch", "state", "reason", "attempts")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- artifacts -----------------------------------------------------------------------

    def artifacts_path(self, epoch: int) -> Path:
        """The epoch's artifact store (`compute.smst.SMST`)."""
        return self.directory / f"epoch-{epoch}.smst"

    def prune(self, current_epoch: int, keep: Collection[int] = ()) -> None:
        """Drop the artifact files and finished rows of epochs long over, except the epochs in
        `keep` (a verdict still awaited); pending rows always stay."""
        oldest = current_epoch - KEEP_EPOCHS
        files = [*self.directory.glob("epoch-*.smst*"), *self.directory.glob("epoch-*.mmr*")]
        for file in files:
            try:
                epoch = int(file.name.split(".")[0].removeprefix("epoch-"))
            except ValueError:
                continue
            if epoch < oldest and epoch not in keep:
                file.unlink(missing_ok=True)
        kept = json.dumps(sorted(int(e) for e in keep))
        with self._mutex, transaction(self._db):
            self._db.execute("DELETE FROM outbox WHERE epoch < ? AND state != ?", (oldest, PENDING))
            self._db.execute(
                "DELETE FROM commits WHERE epoch < ? "
                "AND epoch NOT IN (SELECT value FROM json_each(?))",
                (oldest, kept),
            )
            self._db.execute("DELETE FROM nonces WHERE epoch < ?", (oldest,))

    def acked_epochs(self) -> list[int]:
        """Epochs with a commit the node acknowledged, in this run or an earlier one."""
        with self._mutex:
            rows = self._db.execute("SELECT epoch FROM commits WHERE acked_count > 0").fetchall()
        return sorted(int(epoch) for (epoch,) in rows)
