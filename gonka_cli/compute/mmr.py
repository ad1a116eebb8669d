"""The append-only Merkle Mountain Range (MMR) a miner commits its PoC artifacts to.

Only the standard library is used, so the node and validators can check proofs without
loading numpy or torch.

Hashes (reference §2, "Commitments and proofs")
-----------------------------------------------
- A leaf is `LE32(nonce) || artifact` (28 bytes, `artifacts.leaf_data`).
- Leaf hash: `SHA-256(0x00 || leaf)`. Inner node: `SHA-256(0x01 || left || right)`.

Shape
-----
Leaves are appended in arrival order and numbered from 0. The MMR of `count` leaves is the
list of perfect binary trees ("peaks") given by the binary expansion of `count`, largest
first: for `count = 11 = 8 + 2 + 1` the peaks cover leaves `[0, 8)`, `[8, 10)` and `[10, 11)`.
The node of height `h` (leaves have height 0) that covers leaves `[i * 2**h, (i + 1) * 2**h)`
is the same in every MMR that holds at least `(i + 1) * 2**h` leaves, which is why a miner
can still prove a leaf against a root it committed earlier (`MMR.proof(index, count)`).

Root
----
The peaks are bagged right to left: `acc` starts as the rightmost (smallest) peak, and each
peak to its left is folded in as `acc = SHA-256(0x01 || peak || acc)`. So for peaks
`P0, P1, P2` (left to right) the root is `H(0x01 || P0 || H(0x01 || P1 || P2))`; one peak is
its own root. The count is not hashed into the root: a commitment is the pair
`(count, root)`, and the verifier takes the shape from `count`. The root of the empty MMR is
`EMPTY_ROOT`, 32 zero bytes (no proof verifies against it).

Since the count is not hashed, a proof can also verify under another count whose shape makes
the verifier hash exactly the same formula: `H(0x01 || H(0x01 || L0 || L1) || L2)` is both the
root of 3 leaves and a 4-leaf tree whose right half hashes to `L2`, so the proofs of leaves 0
and 1 fit both counts. That is harmless: the verifier takes the count from the commitment,
and as leaf and inner hashes are domain-separated, no leaf opens where the other shape has an
inner node: a prover that overstates its count can open at most as many of the claimed
indices as it really holds leaves, and fails the validation's proof check on the others.

Proof of leaf `index` against the MMR of the first `count` leaves
-----------------------------------------------------------------
A list of 32-byte hashes: first the siblings on the path from the leaf up to the root of its
peak, bottom-up (the leaf's sibling first), then the hashes of the *other* peaks of that
`count`, left to right. Its length is therefore exactly `h + p - 1`, where `h` is the height
of the leaf's peak and `p` the number of set bits of `count`. At level `j` the sibling is on
the left when bit `j` of `index` is 1 (`H(0x01 || sibling || acc)`), on the right otherwise.
In JSON (`validation.ProofAnswer`) each hash is lower-case hex.

Storage
-------
`MMR()` keeps everything in memory. `MMR(path)` keeps leaves and every node hash in an
SQLite file (WAL journal): each `append`/`append_many` is one transaction, so a miner killed
at any moment reopens the file at the last committed batch, with its artifacts and the nodes
to answer proofs without recomputation. Nodes are stored by their post-order position (the
usual MMR numbering: the MMR of `n` leaves has `2n - popcount(n)` nodes); the file also
records `count` and `root`, which reopening checks against the stored peaks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType

from gonka_cli.compute.artifacts import LEAF_BYTES, parse_leaf
from gonka_cli.errors import ArtifactStoreError, InvalidComputeInput, InvalidProof
from gonka_cli.storage import is_busy, open_sqlite, transaction
from gonka_cli.validate import is_bytes, is_int

log = logging.getLogger(__name__)

HASH_BYTES = 32
EMPTY_ROOT = bytes(HASH_BYTES)
#: Leaf indices and node positions are SQLite integers (signed 64-bit).
MAX_COUNT = 2**62

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_FORMAT = "gonka-mmr-1"
_BUSY_TIMEOUT_S = 5.0  # also sqlite3.connect's default wait for a lock
_sha256 = hashlib.sha256


def leaf_hash(leaf_data: bytes) -> bytes:
    """`SHA-256(0x00 || leaf_data)`: the hash of one MMR leaf."""
    return _sha256(_LEAF_PREFIX + leaf_data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """`SHA-256(0x01 || left || right)`: an inner node, and one step of bagging the peaks."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def mmr_size(count: int) -> int:
    """Number of nodes (leaves included) in the MMR of `count` leaves: `2*count - popcount`."""
    return 2 * count - bin(count).count("1")


def node_position(height: int, i: int) -> int:
    """Post-order position of the node of `height` covering leaves `[i*2**h, (i+1)*2**h)`."""
    # The leaves before the subtree form complete peaks of height >= `height`, so nothing in
    # the subtree merges with them before its own root, which is its last node.
    return mmr_size(i << height) + (2 << height) - 2


def peak_layout(count: int) -> list[tuple[int, int]]:
    """The peaks of the MMR of `count` leaves, left to right, as `(height, first_leaf)`."""
    peaks = []
    start = 0
    for height in range(count.bit_length() - 1, -1, -1):
        if count >> height & 1:
            peaks.append((height, start))
            start += 1 << height
    return peaks


def bag_peaks(peaks: Sequence[bytes]) -> bytes:
    """The root from the peak hashes (left to right), bagged right to left; see the module."""
    if not peaks:
        return EMPTY_ROOT
    acc = peaks[-1]
    for peak in reversed(peaks[:-1]):
        acc = node_hash(peak, acc)
    return acc


def _locate(count: int, index: int) -> tuple[int, int]:
    """`(peak number, peak height)` of leaf `index` in the MMR of `count` leaves."""
    for number, (height, start) in enumerate(peak_layout(count)):
        if index < start + (1 << height):
            return number, height
    raise AssertionError("index < count was checked by the caller")


def _proof_positions(count: int, index: int) -> tuple[list[int], int]:
    """Node positions making up a proof (module docstring order), and the leaf's peak number."""
    number, height = _locate(count, index)
    positions = [node_position(j, (index >> j) ^ 1) for j in range(height)]
    for other, (h, start) in enumerate(peak_layout(count)):
        if other != number:
            positions.append(node_position(h, start >> h))
    return positions, number


def verify_proof(
    root: bytes, count: int, index: int, leaf_data: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether `proof` shows `leaf_data` is leaf `index` of the MMR `(count, root)`.

    Never raises: anything malformed (wrong types or lengths, `index` outside `[0, count)`,
    a proof too short or too long) is simply not a valid proof.
    """
    if not (is_bytes(root, HASH_BYTES) and is_bytes(leaf_data, LEAF_BYTES)):
        return False
    if not (is_int(count) and is_int(index)) or not 0 <= index < count <= MAX_COUNT:
        return False
    if not isinstance(proof, (list, tuple)):
        return False
    if not all(is_bytes(item, HASH_BYTES) for item in proof):
        return False
    number, height = _locate(count, index)
    n_peaks = bin(count).count("1")
    if len(proof) != height + n_peaks - 1:
        return False
    acc = leaf_hash(bytes(leaf_data))
    for j in range(height):
        sibling = bytes(proof[j])
        acc = node_hash(sibling, acc) if index >> j & 1 else node_hash(acc, sibling)
    peaks = [bytes(p) for p in proof[height:]]
    peaks.insert(number, acc)
    return bag_peaks(peaks) == bytes(root)


# --- storage ------------------------------------------------------------------------------


class _MemoryStore:
    """Leaves and nodes in flat byte arrays (32 bytes per node): compact for millions."""

    def __init__(self) -> None:
        self.nodes = bytearray()
        self.leaves = bytearray()
        self.nonces: dict[int, int] = {}

    def node(self, pos: int) -> bytes:
        return bytes(self.nodes[pos * HASH_BYTES : (pos + 1) * HASH_BYTES])

    def nodes_at(self, positions: Sequence[int]) -> list[bytes]:
        return [self.node(pos) for pos in positions]

    def node_range(self, start: int, stop: int) -> list[bytes]:
        return [self.node(pos) for pos in range(start, stop)]

    def leaf(self, index: int) -> bytes:
        return bytes(self.leaves[index * LEAF_BYTES : (index + 1) * LEAF_BYTES])

    def leaf_range(self, start: int, stop: int) -> list[bytes]:
        return [self.leaf(index) for index in range(start, stop)]

    def index_of_nonce(self, nonce: int) -> int | None:
        return self.nonces.get(nonce)

    def check_new_nonces(self, nonces: Sequence[int]) -> None:
        for nonce in nonces:
            if nonce in self.nonces:
                raise _duplicate(nonce, self.nonces[nonce])

    def add(
        self,
        first: int,
        leaves: Sequence[bytes],
        nonces: Sequence[int],
        nodes: Sequence[bytes],
        root: bytes,
    ) -> None:
        self.leaves += b"".join(leaves)
        self.nodes += b"".join(nodes)
        self.nonces.update(zip(nonces, range(first, first + len(nonces)), strict=True))

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS leaves (
    idx INTEGER PRIMARY KEY,
    nonce INTEGER NOT NULL UNIQUE,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (pos INTEGER PRIMARY KEY, hash BLOB NOT NULL);
"""


class _SqliteStore:
    """Leaves, nodes and the committed `(count, root)` in one SQLite file."""

    def __init__(self, path: Path, *, durable: bool) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are opened explicitly, one per append batch.
            # FULL syncs the WAL on every commit, so a (count, root) the miner has published
            # survives a power cut too; NORMAL only survives a crash of the process. WAL is
            # switched on below, once the file is known to be ours.
            self.db = open_sqlite(path, durable=durable, wal=False)
        except (OSError, sqlite3.Error) as exc:
            raise ArtifactStoreError(f"cannot open the MMR file {path}: {exc}") from None
        try:
            tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master")}
            if tables and "meta" not in tables:
                raise _corrupt(path, "it is an SQLite file of something else")
            self._enable_wal()
            self.db.executescript(_SCHEMA)
            self.count, self.root = self._read_meta()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            if is_busy(exc):
                raise ArtifactStoreError(
                    f"the MMR file {path} is locked by another process ({exc}); try again"
                ) from None
            raise _corrupt(path, str(exc)) from None
        except ArtifactStoreError:
            self.db.close()
            raise

    def _enable_wal(self) -> None:
        # Switching a new file to WAL needs a lock that SQLite does not wait for (no busy
        # handler), so a second process opening the file at that moment retries briefly.
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _read_meta(self) -> tuple[int, bytes]:
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            # Another process may be creating the same file: the first one's rows stay.
            with self._transaction():
                self.db.executemany(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    [("format", _FORMAT), ("count", 0), ("root", EMPTY_ROOT)],
                )
            meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != _FORMAT:
            raise _corrupt(self.path, f"unknown format {meta.get('format')!r}")
        count, root = meta.get("count"), meta.get("root")
        if not is_int(count) or not isinstance(root, bytes) or len(root) != HASH_BYTES:
            raise _corrupt(self.path, "count or root missing")
        assert isinstance(count, int)
        return count, root

    def _transaction(self) -> AbstractContextManager[None]:
        return transaction(self.db)

    def snapshot(self) -> AbstractContextManager[None]:
        """A read transaction: what it reads is one committed state, whatever others write."""
        return transaction(self.db, "BEGIN DEFERRED")

    def node(self, pos: int) -> bytes:
        row = self.db.execute("SELECT hash FROM nodes WHERE pos = ?", (pos,)).fetchone()
        if row is None:
            raise _corrupt(self.path, f"node {pos} is missing")
        return bytes(row[0])

    def nodes_at(self, positions: Sequence[int]) -> list[bytes]:
        if not positions:
            return []
        marks = ",".join("?" * len(positions))
        found = dict(
            self.db.execute(f"SELECT pos, hash FROM nodes WHERE pos IN ({marks})", positions)  # noqa: S608
        )
        missing = [pos for pos in positions if pos not in found]
        if missing:
            raise _corrupt(self.path, f"node {missing[0]} is missing")
        return [bytes(found[pos]) for pos in positions]

    def node_range(self, start: int, stop: int) -> list[bytes]:
        rows = self.db.execute(
            "SELECT hash FROM nodes WHERE pos >= ? AND pos < ? ORDER BY pos", (start, stop)
        ).fetchall()
        if len(rows) != stop - start:
            raise _corrupt(self.path, f"nodes between {start} and {stop} are missing")
        return [bytes(row[0]) for row in rows]

    def leaf_range(self, start: int, stop: int) -> list[bytes]:
        rows = self.db.execute(
            "SELECT data FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx", (start, stop)
        ).fetchall()
        if len(rows) != stop - start:
            raise _corrupt(self.path, f"leaves between {start} and {stop} are missing")
        return [bytes(row[0]) for row in rows]

    def leaf(self, index: int) -> bytes:
        row = self.db.execute("SELECT data FROM leaves WHERE idx = ?", (index,)).fetchone()
        if row is None:
            raise _corrupt(self.path, f"leaf {index} is missing")
        return bytes(row[0])

    def index_of_nonce(self, nonce: int) -> int | None:
        row = self.db.execute("SELECT idx FROM leaves WHERE nonce = ?", (nonce,)).fetchone()
        return None if row is None else int(row[0])

    def check_new_nonces(self, nonces: Sequence[int]) -> None:
        # The UNIQUE index refuses duplicates inside the transaction anyway; this cheap
        # look-up of a single leaf just gives `append` a clear message.
        if len(nonces) == 1:
            index = self.index_of_nonce(nonces[0])
            if index is not None:
                raise _duplicate(nonces[0], index)

    def add(
        self,
        first: int,
        leaves: Sequence[bytes],
        nonces: Sequence[int],
        nodes: Sequence[bytes],
        root: bytes,
    ) -> None:
        first_pos = mmr_size(first)
        count = first + len(leaves)
        try:
            with self._transaction():
                (stored,) = self.db.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()
                if stored != first:
                    raise _corrupt(
                        self.path,
                        f"it holds {stored} leaves, this process expected {first}; "
                        "another process is appending to it",
                    )
                self.db.executemany(
                    "INSERT INTO leaves (idx, nonce, data) VALUES (?, ?, ?)",
                    zip(range(first, count), nonces, leaves, strict=True),
                )
                self.db.executemany(
                    "INSERT INTO nodes (pos, hash) VALUES (?, ?)",
                    zip(range(first_pos, first_pos + len(nodes)), nodes, strict=True),
                )
                self.db.executemany(
                    "UPDATE meta SET value = ? WHERE key = ?", [(count, "count"), (root, "root")]
                )
        except sqlite3.IntegrityError:
            for nonce in nonces:
                index = self.index_of_nonce(nonce)
                if index is not None:
                    raise _duplicate(nonce, index) from None
            raise _corrupt(self.path, "a leaf or node position is already taken") from None
        except sqlite3.Error as exc:
            raise ArtifactStoreError(f"cannot write the MMR file {self.path}: {exc}") from None
        self.count, self.root = count, root

    def close(self) -> None:
        self.db.close()


def _duplicate(nonce: int, index: int) -> InvalidComputeInput:
    return InvalidComputeInput(
        f"nonce {nonce} is already in the MMR (leaf {index}); each nonce may be committed once"
    )


def _corrupt(path: Path, why: str) -> ArtifactStoreError:
    return ArtifactStoreError(
        f"the MMR file {path} is unusable ({why}); move it aside to start a new commitment"
    )


# --- the MMR ------------------------------------------------------------------------------


class MMR:
    """An append-only Merkle Mountain Range of 28-byte PoC leaves, in memory or in SQLite.

    `MMR()` lives in memory; `MMR(path)` opens (or creates) an SQLite file and reopens it
    where the last committed append left it. `durable=False` trades the fsync of each batch
    for speed: the file still survives a killed process, not necessarily a power cut.
    Safe to share between threads. Use as a context manager, or call `close()`.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, durable: bool = True) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._store: _MemoryStore | _SqliteStore
        if path is None:
            self._path: Path | None = None
            self._store = _MemoryStore()
            self._count = 0
            self._peaks: list[bytes] = []
        else:
            self._path = Path(path)
            store = _SqliteStore(self._path, durable=durable)
            self._store = store
            try:
                # Another process may be appending: read the state and check it in one
                # snapshot, or its next batch would look like a corrupt file.
                with store.snapshot():
                    store.count, store.root = store._read_meta()
                    self._peaks = self._load_peaks(store)
            except sqlite3.Error as exc:
                store.close()
                raise _corrupt(self._path, str(exc)) from None
            except ArtifactStoreError:
                store.close()
                raise
            self._count = store.count
            log.debug("opened MMR %s with %d leaves", self._path, self._count)
        self._root_cache: tuple[int, bytes] = (-1, EMPTY_ROOT)

    def _load_peaks(self, store: _SqliteStore) -> list[bytes]:
        """Read the peaks of a reopened file and check them against its recorded state."""
        count = store.count
        row = store.db.execute("SELECT MAX(idx) FROM leaves").fetchone()
        last_leaf = -1 if row[0] is None else int(row[0])
        row = store.db.execute("SELECT MAX(pos) FROM nodes").fetchone()
        last_node = -1 if row[0] is None else int(row[0])
        if last_leaf != count - 1 or last_node != mmr_size(count) - 1:
            raise _corrupt(store.path, f"{last_leaf + 1} leaves stored, {count} recorded")
        peaks = store.nodes_at([node_position(h, s >> h) for h, s in peak_layout(count)])
        if bag_peaks(peaks) != store.root:
            raise _corrupt(store.path, "its peaks do not hash to the recorded root")
        if count and leaf_hash(store.leaf(count - 1)) != store.node(node_position(0, count - 1)):
            raise _corrupt(store.path, "the last leaf does not match its hash")
        return peaks

    # -- state --

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for an in-memory MMR."""
        return self._path

    @property
    def count(self) -> int:
        """Number of leaves."""
        return self._count

    def __len__(self) -> int:
        return self._count

    def _check_open(self) -> None:
        if self._closed:
            raise ArtifactStoreError("this MMR is closed; open it again to use it")

    def _check_count(self, count: int | None) -> int:
        if count is None:
            return self._count
        if not is_int(count) or not 0 <= count <= self._count:
            raise InvalidProof(f"count must be in [0, {self._count}] for this MMR, got {count!r}")
        return count

    # -- appending --

    def append(self, leaf_data: bytes) -> int:
        """Append one 28-byte leaf (`LE32(nonce) || artifact`); return its 0-based index.

        Raises InvalidComputeInput for a leaf of the wrong length or a nonce already present.
        """
        return self.append_many([leaf_data]).start

    def append_many(self, leaves: Iterable[bytes]) -> range:
        """Append a batch of leaves atomically (one transaction); return their indices.

        Nothing is appended when any leaf is malformed or repeats a nonce (already in the
        MMR or twice in the batch).
        """
        batch = [bytes(leaf) for leaf in leaves]
        nonces = [parse_leaf(leaf)[0] for leaf in batch]
        seen: dict[int, int] = {}
        with self._lock:
            self._check_open()
            first = self._count
            for offset, nonce in enumerate(nonces):
                if nonce in seen:
                    raise _duplicate(nonce, first + seen[nonce])
                seen[nonce] = offset
            if not batch:
                return range(first, first)
            if first + len(batch) > MAX_COUNT:
                raise InvalidComputeInput(f"an MMR holds at most {MAX_COUNT} leaves")
            self._store.check_new_nonces(nonces)
            peaks = list(self._peaks)
            nodes: list[bytes] = []
            for index, leaf in enumerate(batch, first):
                acc = _sha256(_LEAF_PREFIX + leaf).digest()
                nodes.append(acc)
                # Each trailing 1 bit of the index completes a subtree with the peak to its left.
                while index & 1:
                    acc = _sha256(_NODE_PREFIX + peaks.pop() + acc).digest()
                    nodes.append(acc)
                    index >>= 1
                peaks.append(acc)
            root = bag_peaks(peaks)
            self._store.add(first, batch, nonces, nodes, root)
            self._peaks = peaks
            self._count = first + len(batch)
            self._root_cache = (self._count, root)
            return range(first, self._count)

    # -- reading --

    def root(self) -> bytes:
        """The 32-byte root of all leaves (`EMPTY_ROOT` when empty)."""
        with self._lock:
            count, root = self._root_cache
            if count != self._count:
                root = bag_peaks(self._peaks)
                self._root_cache = (self._count, root)
            return root

    def root_at(self, count: int) -> bytes:
        """The root of the first `count` leaves, as it was when the MMR held that many."""
        with self._lock:
            self._check_open()
            count = self._check_count(count)
            if count == self._count:
                return self.root()
            positions = [node_position(h, s >> h) for h, s in peak_layout(count)]
            return bag_peaks(self._store.nodes_at(positions))

    def proof(self, index: int, count: int | None = None) -> list[bytes]:
        """Proof that leaf `index` is in the MMR of the first `count` leaves (default: all).

        The format is in the module docstring; check it with `verify_proof(root_at(count),
        count, index, leaf(index), proof)`.
        """
        with self._lock:
            self._check_open()
            count = self._check_count(count)
            if not is_int(index) or not 0 <= index < count:
                raise InvalidProof(f"leaf index must be in [0, {count}), got {index!r}")
            positions, _ = _proof_positions(count, index)
            return self._store.nodes_at(positions)

    def leaf(self, index: int) -> bytes:
        """The 28-byte data of leaf `index`."""
        with self._lock:
            self._check_open()
            if not is_int(index) or not 0 <= index < self._count:
                raise InvalidProof(f"leaf index must be in [0, {self._count}), got {index!r}")
            return self._store.leaf(index)

    def index_of_nonce(self, nonce: int) -> int | None:
        """The leaf index holding `nonce`, or None when it was never appended."""
        with self._lock:
            self._check_open()
            return self._store.index_of_nonce(nonce)

    def verify_integrity(self) -> None:
        """Rehash every leaf and node (O(count)); raise ArtifactStoreError on the first mismatch.

        Reopening a file only checks the peaks and the last leaf; this is the full check.
        """
        with self._lock:
            self._check_open()
            rebuilt = MMR()
            step = 4096
            for start in range(0, self._count, step):
                stop = min(start + step, self._count)
                rebuilt.append_many(self._store.leaf_range(start, stop))
                first, last = mmr_size(start), mmr_size(stop)
                expected = rebuilt._store.node_range(first, last)
                if expected != self._store.node_range(first, last):
                    where = self._path if self._path else "in memory"
                    raise ArtifactStoreError(
                        f"the MMR ({where}) does not match its leaves between leaves "
                        f"{start} and {stop}"
                    )
            if rebuilt.root() != self.root():
                raise ArtifactStoreError("the MMR root does not match its leaves")

    # -- lifetime --

    def close(self) -> None:
        """Close the file (a no-op in memory, and when already closed)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._store.close()

    def __enter__(self) -> MMR:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self._path) if self._path else "memory"
        return f"MMR({where!r}, count={self._count})"
