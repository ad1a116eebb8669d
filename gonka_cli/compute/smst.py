"""The sparse Merkle sum tree (SMST) a miner commits its PoC artifacts to, keyed by nonce.

The same tree as mainnet's artifact store since v0.2.14 (`decentralized-api/poc/artifacts`,
`smst.go` and `smst_verify.go`): roots and proofs are byte-exact with it. Only the standard
library is used, so the node and validators check proofs without loading numpy or torch.

Hashes
------
- A leaf is `LE32(nonce) || artifact` (28 bytes, `artifacts.leaf_data`); its hash is
  `SHA-256(0x00 || leaf)`, and it counts 1.
- An inner node is `SHA-256(0x01 || left || right || LE32(count))`, where `count` is the
  number of leaves under it: each node commits its children and its leaf count.
- The empty subtree of height 0 is `SHA-256(0x00)`; of height `h`, the inner node of two
  empty subtrees of height `h - 1` with count 0 (`EMPTY[h]`).

Shape
-----
The position of a leaf is the bits of `uint32(nonce)`, most significant first: bit 1 goes
right. The tree's depth is 24, or the bit length of the largest `uint32(nonce)` when that is
more (at most 32). A node of height `h` covering the keys `[p * 2**h, (p + 1) * 2**h)` has
the same hash whatever the depth, so a deeper tree only adds nodes of count-sum above the
old root (mainnet's depth expansion). The root of the empty tree is `EMPTY[24]`.

The leaf *index* is the nonce's rank in ascending `uint32` order (not arrival order): it is
the sum of the counts of the left siblings on the leaf's path. A commitment is the pair
`(count, root)`; `count` must fit a uint32.

Proof of the leaf of rank `index`
---------------------------------
One 36-byte item per level, from the root's children down to the leaf's sibling:
`sibling hash (32) || LE32(sibling count)` (mainnet's `encodeProofForTransport`). The proof
length is the depth. In JSON (`validation.ProofAnswer`) each item is lower-case hex.

`verify_proof` rebuilds the root from the leaf up: the path is the nonce's bits, each node's
count is its children's sum, the leaf's rank (the left siblings' counts) must be `index`, the
root's count must be `count`, and a sibling's count can be neither above what its height
holds (`2**h`) nor 0 unless its hash is the empty subtree's. Since every hash binds a count
and a leaf binds its nonce, a repeated subtree proves leaves only where their nonces lie: a
prover cannot claim more leaves than it holds distinct nonces and still pass the samples that
land on the leaves it lacks. Mainnet's verifier checks neither the rank nor the sibling
bounds; this one does.

Storage
-------
`SMST()` keeps everything in memory. `SMST(path)` keeps the leaves (by nonce, with their
arrival number) and every inner node (hash, count) in an SQLite file: WAL journal,
`synchronous=FULL`, one transaction per `insert_many` batch, so a miner killed at any moment
reopens the file at the last committed batch. Opening checks the recorded `(count, root)`
against the stored nodes and rehashes the path of the last leaf written.

A proof against an earlier count `c` (the commitment a miner published before more artifacts
came in) is answered from the tree of the first `c` leaves to arrive: the nodes above the
leaves that came later are rehashed without them, the others are read as stored.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType

from gonka_cli.compute.artifacts import LEAF_BYTES, parse_leaf
from gonka_cli.errors import ArtifactStoreError, InvalidComputeInput, InvalidProof
from gonka_cli.storage import is_busy, open_sqlite, transaction
from gonka_cli.validate import is_bytes, is_int

log = logging.getLogger(__name__)

HASH_BYTES = 32
#: One proof item: sibling hash and LE32 sibling count.
PROOF_ITEM_BYTES = HASH_BYTES + 4
MIN_DEPTH = 24
MAX_DEPTH = 32
#: A count is hashed as a uint32: a commitment of more leaves cannot be proven.
MAX_COUNT = 2**32 - 1

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_FORMAT = "gonka-smst-1"
_BUSY_TIMEOUT_S = 5.0
_KEY_MASK = 0xFFFFFFFF
#: Inner nodes at this height and above stay in memory once read (a few per 256 leaves).
_CACHE_HEIGHT = 8
_SQL_VARS = 900
_sha256 = hashlib.sha256
_U32 = struct.Struct("<I")

Node = tuple[bytes, int]


def leaf_hash(leaf_data: bytes) -> bytes:
    """`SHA-256(0x00 || leaf_data)`: the hash of one leaf."""
    return _sha256(_LEAF_PREFIX + leaf_data).digest()


def node_hash(left: bytes, right: bytes, count: int) -> bytes:
    """`SHA-256(0x01 || left || right || LE32(count))`: an inner node."""
    return _sha256(_NODE_PREFIX + left + right + _U32.pack(count)).digest()


def _empty_hashes() -> tuple[bytes, ...]:
    hashes = [_sha256(_LEAF_PREFIX).digest()]
    for _ in range(MAX_DEPTH):
        hashes.append(node_hash(hashes[-1], hashes[-1], 0))
    return tuple(hashes)


#: `EMPTY[h]`: the hash of the empty subtree of height `h`.
EMPTY = _empty_hashes()
EMPTY_ROOT = EMPTY[MIN_DEPTH]


def nonce_key(nonce: int) -> int:
    """The leaf's position: `uint32(nonce)`."""
    return nonce & _KEY_MASK


def key_nonce(key: int) -> int:
    """The int32 nonce at position `key`."""
    return key - (1 << 32) if key >> 31 else key


def depth_for(max_key: int) -> int:
    """The depth of a tree whose largest position is `max_key`."""
    return max(MIN_DEPTH, max_key.bit_length())


def encode_proof_item(sibling: bytes, count: int) -> bytes:
    return bytes(sibling) + _U32.pack(count)


def decode_proof_item(item: bytes) -> Node:
    return bytes(item[:HASH_BYTES]), _U32.unpack(item[HASH_BYTES:])[0]


def verify_proof(
    root: bytes, count: int, index: int, leaf_data: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether `proof` shows that `leaf_data` is the leaf of rank `index` of `(count, root)`.

    Never raises: anything malformed (wrong types or lengths, `index` outside `[0, count)`,
    a count above `MAX_COUNT`, a proof shorter than 24 or longer than 32 items, a nonce beyond
    the proof's depth) is simply not a valid proof.
    """
    if not (is_bytes(root, HASH_BYTES) and is_bytes(leaf_data, LEAF_BYTES)):
        return False
    if not (is_int(count) and is_int(index)) or not 0 <= index < count <= MAX_COUNT:
        return False
    if not isinstance(proof, (list, tuple)) or not MIN_DEPTH <= len(proof) <= MAX_DEPTH:
        return False
    if not all(is_bytes(item, PROOF_ITEM_BYTES) for item in proof):
        return False
    depth = len(proof)
    key = _U32.unpack(bytes(leaf_data[:4]))[0]
    if key >> depth:
        return False
    acc, acc_count, rank = leaf_hash(bytes(leaf_data)), 1, 0
    for level in range(depth - 1, -1, -1):
        sibling, sibling_count = decode_proof_item(bytes(proof[level]))
        height = depth - 1 - level  # of the sibling
        if sibling_count > 1 << height or (sibling_count == 0) != (sibling == EMPTY[height]):
            return False
        acc_count += sibling_count
        if acc_count > MAX_COUNT:
            return False
        if key >> height & 1:
            rank += sibling_count
            acc = node_hash(sibling, acc, acc_count)
        else:
            acc = node_hash(acc, sibling, acc_count)
    return acc_count == count and rank == index and acc == bytes(root)


# --- storage ------------------------------------------------------------------------------


def _node_id(height: int, prefix: int) -> int:
    return height << 32 | prefix


class _MemoryStore:
    """Leaves and inner nodes in dicts."""

    def __init__(self) -> None:
        self.inner: dict[int, Node] = {}
        self.leaves: dict[int, bytes] = {}
        self.arrival: list[int] = []  # arrival number -> key

    def nodes(self, ids: Sequence[int]) -> dict[int, Node]:
        inner = self.inner
        return {i: inner[i] for i in ids if i in inner}

    def leaf_data(self, keys: Sequence[int]) -> dict[int, bytes]:
        leaves = self.leaves
        return {k: leaves[k] for k in keys if k in leaves}

    def late_keys(self, count: int) -> list[int]:
        return sorted(self.arrival[count:])

    def leaves_by_arrival(self, start: int, stop: int) -> list[bytes]:
        return [self.leaves[k] for k in self.arrival[start:stop]]

    def all_nodes(self) -> Iterable[tuple[int, Node]]:
        return sorted(self.inner.items())

    def add(
        self,
        first: int,
        keys: Sequence[int],
        datas: Sequence[bytes],
        nodes: dict[int, Node],
        root: bytes,
    ) -> None:
        self.leaves.update(zip(keys, datas, strict=True))
        self.arrival.extend(keys)
        self.inner.update(nodes)

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS leaves (
    key INTEGER PRIMARY KEY,
    arrival INTEGER NOT NULL UNIQUE,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    count INTEGER NOT NULL
);
"""


class _SqliteStore:
    """Leaves, inner nodes and the committed `(count, root)` in one SQLite file."""

    def __init__(self, path: Path, *, durable: bool) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: one explicit transaction per batch. FULL syncs the WAL on every
            # commit, so a (count, root) the miner has published survives a power cut too.
            self.db = open_sqlite(path, durable=durable, wal=False)
        except (OSError, sqlite3.Error) as exc:
            raise ArtifactStoreError(f"cannot open the artifact store {path}: {exc}") from None
        try:
            tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master")}
            if tables and "meta" not in tables:
                raise _corrupt(path, "it is an SQLite file of something else")
            self._enable_wal()
            self.db.executescript(_SCHEMA)
            self.count, self.root = self.read_meta()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            if is_busy(exc):
                raise ArtifactStoreError(
                    f"the artifact store {path} is locked by another process ({exc}); try again"
                ) from None
            raise _corrupt(path, str(exc)) from None
        except ArtifactStoreError:
            self.db.close()
            raise

    def _enable_wal(self) -> None:
        # Switching a new file to WAL needs a lock SQLite does not wait for: retry briefly.
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def read_meta(self) -> tuple[int, bytes]:
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            # Another process may be creating the same file: the first one's rows stay.
            with transaction(self.db):
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
        return count, root

    def snapshot(self) -> AbstractContextManager[None]:
        """A read transaction: one committed state, whatever others write."""
        return transaction(self.db, "BEGIN DEFERRED")

    def _chunks(self, sql: str, values: Sequence[int]) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        for start in range(0, len(values), _SQL_VARS):
            part = values[start : start + _SQL_VARS]
            marks = ",".join("?" * len(part))
            rows += self.db.execute(sql.format(marks), part).fetchall()
        return rows

    def nodes(self, ids: Sequence[int]) -> dict[int, Node]:
        if len(ids) == 1:
            row = self.db.execute("SELECT hash, count FROM nodes WHERE id = ?", ids).fetchone()
            return {} if row is None else {ids[0]: (bytes(row[0]), int(row[1]))}
        rows = self._chunks("SELECT id, hash, count FROM nodes WHERE id IN ({})", ids)
        return {int(i): (bytes(h), int(c)) for i, h, c in rows}  # type: ignore[call-overload]

    def leaf_data(self, keys: Sequence[int]) -> dict[int, bytes]:
        if len(keys) == 1:
            row = self.db.execute("SELECT data FROM leaves WHERE key = ?", keys).fetchone()
            return {} if row is None else {keys[0]: bytes(row[0])}
        rows = self._chunks("SELECT key, data FROM leaves WHERE key IN ({})", keys)
        return {int(k): bytes(d) for k, d in rows}  # type: ignore[call-overload]

    def late_keys(self, count: int) -> list[int]:
        rows = self.db.execute(
            "SELECT key FROM leaves WHERE arrival >= ? ORDER BY key", (count,)
        ).fetchall()
        return [int(row[0]) for row in rows]

    def leaves_by_arrival(self, start: int, stop: int) -> list[bytes]:
        rows = self.db.execute(
            "SELECT data FROM leaves WHERE arrival >= ? AND arrival < ? ORDER BY arrival",
            (start, stop),
        ).fetchall()
        if len(rows) != stop - start:
            raise _corrupt(self.path, f"leaves {start} to {stop} (arrival order) are missing")
        return [bytes(row[0]) for row in rows]

    def last_key(self) -> int | None:
        row = self.db.execute("SELECT key FROM leaves ORDER BY arrival DESC LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def leaf_rows(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM leaves").fetchone()[0])

    def all_nodes(self) -> Iterable[tuple[int, Node]]:
        for i, h, c in self.db.execute("SELECT id, hash, count FROM nodes ORDER BY id"):
            yield int(i), (bytes(h), int(c))

    def add(
        self,
        first: int,
        keys: Sequence[int],
        datas: Sequence[bytes],
        nodes: dict[int, Node],
        root: bytes,
    ) -> None:
        count = first + len(keys)
        try:
            with transaction(self.db):
                (stored,) = self.db.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()
                if stored != first:
                    raise _corrupt(
                        self.path,
                        f"it holds {stored} leaves, this process expected {first}; "
                        "another process is writing to it",
                    )
                self.db.executemany(
                    "INSERT INTO leaves (key, arrival, data) VALUES (?, ?, ?)",
                    zip(keys, range(first, count), datas, strict=True),
                )
                self.db.executemany(
                    "INSERT OR REPLACE INTO nodes (id, hash, count) VALUES (?, ?, ?)",
                    [(i, h, c) for i, (h, c) in nodes.items()],
                )
                self.db.executemany(
                    "UPDATE meta SET value = ? WHERE key = ?",
                    [(count, "count"), (root, "root")],
                )
        except sqlite3.IntegrityError:
            found = self.leaf_data(list(keys))
            if found:
                raise _duplicate(key_nonce(min(found))) from None
            raise _corrupt(self.path, "a leaf's arrival number is already taken") from None
        except sqlite3.Error as exc:
            raise ArtifactStoreError(
                f"cannot write the artifact store {self.path}: {exc}"
            ) from None
        self.count, self.root = count, root

    def close(self) -> None:
        self.db.close()


def _duplicate(nonce: int) -> InvalidComputeInput:
    return InvalidComputeInput(
        f"nonce {nonce} is already in the artifact store; each nonce may be committed once"
    )


def _corrupt(path: Path, why: str) -> ArtifactStoreError:
    return ArtifactStoreError(
        f"the artifact store {path} is unusable ({why}); move it aside to start a new commitment"
    )


# --- the tree -----------------------------------------------------------------------------


class _View:
    """The tree of the first `count` leaves to arrive: the stored nodes, with those above a
    leaf that arrived later rehashed without it."""

    def __init__(self, count: int, late: list[int], stored: Callable[[int, int], Node]) -> None:
        self.count = count
        self._late = late
        self._stored = stored
        self._memo: dict[int, Node] = {}

    def node(self, height: int, prefix: int) -> Node:
        late = self._late
        if late:
            low = prefix << height
            first = bisect.bisect_left(late, low)
            if first < len(late) and late[first] < low + (1 << height):
                return self._rebuilt(height, prefix, first)
        return self._stored(height, prefix)

    def _rebuilt(self, height: int, prefix: int, first: int) -> Node:
        node_id = _node_id(height, prefix)
        found = self._memo.get(node_id)
        if found is None:
            stored = self._stored(height, prefix)
            late = bisect.bisect_left(self._late, (prefix + 1) << height, first) - first
            if late == stored[1]:  # every leaf under it came later
                return EMPTY[height], 0
            left = self.node(height - 1, 2 * prefix)
            right = self.node(height - 1, 2 * prefix + 1)
            total = left[1] + right[1]
            found = node_hash(left[0], right[0], total), total
            self._memo[node_id] = found
        return found

    def depth(self) -> int:
        total = self.node(MAX_DEPTH, 0)[1]
        for depth in range(MIN_DEPTH, MAX_DEPTH):
            if self.node(depth, 0)[1] == total:
                return depth
        return MAX_DEPTH


class SMST:
    """A sparse Merkle sum tree of 28-byte PoC leaves keyed by nonce, in memory or in SQLite.

    `SMST()` lives in memory; `SMST(path)` opens (or creates) an SQLite file and reopens it
    where the last committed batch left it. `durable=False` trades the fsync of each batch
    for speed: the file still survives a killed process, not necessarily a power cut.
    Safe to share between threads. Use as a context manager, or call `close()`.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, durable: bool = True) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._cache: dict[int, Node] = {}
        self._views: dict[int, _View] = {}
        self._store: _MemoryStore | _SqliteStore
        self._root: Node | None = None
        if path is None:
            self._path: Path | None = None
            self._store = _MemoryStore()
            self._count = 0
        else:
            self._path = Path(path)
            store = _SqliteStore(self._path, durable=durable)
            self._store = store
            try:
                # Another process may be writing: read the state and check it in one snapshot.
                with store.snapshot():
                    store.count, store.root = store.read_meta()
                    self._count = store.count
                    self._check_on_open(store)
            except sqlite3.Error as exc:
                store.close()
                raise _corrupt(self._path, str(exc)) from None
            except ArtifactStoreError:
                store.close()
                raise
            log.debug("opened SMST %s with %d leaves", self._path, self._count)

    def _check_on_open(self, store: _SqliteStore) -> None:
        """The recorded `(count, root)` against the stored nodes, and the last leaf's path."""
        count = store.count
        rows = store.leaf_rows()
        if rows != count:
            raise _corrupt(store.path, f"{rows} leaves stored, {count} recorded")
        top = self._node(MAX_DEPTH, 0)
        if top[1] != count:
            raise _corrupt(store.path, f"its nodes count {top[1]} leaves, {count} recorded")
        if self._root_of(self._current()) != store.root:
            raise _corrupt(store.path, "its nodes do not hash to the recorded root")
        key = store.last_key()
        if key is None:
            return
        acc = self._node(0, key)
        for height in range(1, MAX_DEPTH + 1):
            prefix = key >> height
            left = acc if not (key >> (height - 1)) & 1 else self._node(height - 1, 2 * prefix)
            right = acc if (key >> (height - 1)) & 1 else self._node(height - 1, 2 * prefix + 1)
            total = left[1] + right[1]
            acc = node_hash(left[0], right[0], total), total
            if acc != self._node(height, prefix):
                raise _corrupt(store.path, f"the path of nonce {key_nonce(key)} does not hash")

    # -- nodes --

    def _node(self, height: int, prefix: int) -> Node:
        """The current node, or the empty subtree."""
        if height == 0:
            data = self._store.leaf_data([prefix]).get(prefix)
            return (EMPTY[0], 0) if data is None else (leaf_hash(data), 1)
        node_id = _node_id(height, prefix)
        found = self._cache.get(node_id)
        if found is not None:
            return found
        found = self._store.nodes([node_id]).get(node_id, (EMPTY[height], 0))
        if height >= _CACHE_HEIGHT:
            self._cache[node_id] = found
        return found

    def _nodes(self, height: int, prefixes: Sequence[int]) -> dict[int, Node]:
        """Several current nodes of one height, by prefix (absent: the empty subtree)."""
        if height == 0:
            found = self._store.leaf_data(prefixes)
            return {
                k: ((leaf_hash(found[k]), 1) if k in found else (EMPTY[0], 0)) for k in prefixes
            }
        out: dict[int, Node] = {}
        missing = []
        for p in prefixes:
            cached = self._cache.get(_node_id(height, p))
            if cached is None:
                missing.append(_node_id(height, p))
            else:
                out[p] = cached
        if missing:
            loaded = self._store.nodes(missing)
            empty = (EMPTY[height], 0)
            for node_id in missing:
                node = loaded.get(node_id, empty)
                out[node_id & _KEY_MASK] = node
                if height >= _CACHE_HEIGHT:
                    self._cache[node_id] = node
        return out

    def _current(self) -> _View:
        return _View(self._count, [], self._node)

    def _view(self, count: int) -> _View:
        if count == self._count:
            return self._current()
        view = self._views.get(count)
        if view is None:
            view = _View(count, self._store.late_keys(count), self._node)
            self._views = {count: view}  # keep the latest only: proofs come for one count
        return view

    @staticmethod
    def _root_of(view: _View) -> bytes:
        if view.count == 0:
            return EMPTY_ROOT
        return view.node(view.depth(), 0)[0]

    # -- state --

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for an in-memory tree."""
        return self._path

    @property
    def count(self) -> int:
        """Number of leaves."""
        return self._count

    def __len__(self) -> int:
        return self._count

    def _check_open(self) -> None:
        if self._closed:
            raise ArtifactStoreError("this artifact store is closed; open it again to use it")

    def _check_count(self, count: int | None) -> int:
        if count is None:
            return self._count
        if not is_int(count) or not 0 <= count <= self._count:
            raise InvalidProof(f"count must be in [0, {self._count}] for this tree, got {count!r}")
        return count

    # -- inserting --

    def insert(self, leaf_data: bytes) -> int:
        """Insert one 28-byte leaf (`LE32(nonce) || artifact`); return the new count.

        Raises InvalidComputeInput for a leaf of the wrong length or a nonce already present.
        """
        return self.insert_many([leaf_data])

    def insert_many(self, leaves: Iterable[bytes]) -> int:
        """Insert a batch of leaves atomically (one transaction); return the new count.

        Nothing is inserted when any leaf is malformed or repeats a nonce (already in the
        tree or twice in the batch).
        """
        batch = [bytes(leaf) for leaf in leaves]
        keys = [nonce_key(parse_leaf(leaf)[0]) for leaf in batch]
        with self._lock:
            self._check_open()
            first = self._count
            if not batch:
                return first
            if len(set(keys)) != len(keys):
                seen: set[int] = set()
                for key in keys:
                    if key in seen:
                        raise _duplicate(key_nonce(key))
                    seen.add(key)
            if first + len(batch) > MAX_COUNT:
                raise InvalidComputeInput(f"a sum tree holds at most {MAX_COUNT} leaves")
            present = self._store.leaf_data(keys)
            if present:
                raise _duplicate(key_nonce(min(present)))
            updated = self._hash_batch(keys, batch)
            self._store.add(first, keys, batch, updated, self._root_after(updated))
            for node_id, node in updated.items():
                if node_id >> 32 >= _CACHE_HEIGHT:
                    self._cache[node_id] = node
            self._count = first + len(batch)
            self._views = {}
            return self._count

    def _root_after(self, updated: dict[int, Node]) -> bytes:
        """The root once the `updated` nodes are written."""

        def spine(height: int) -> Node:
            return updated.get(_node_id(height, 0)) or self._node(height, 0)

        total = spine(MAX_DEPTH)[1]
        for depth in range(MIN_DEPTH, MAX_DEPTH + 1):
            if spine(depth)[1] == total:
                return spine(depth)[0]
        raise AssertionError("the height-32 node holds every leaf")

    def _hash_batch(self, keys: Sequence[int], batch: Sequence[bytes]) -> dict[int, Node]:
        """The inner nodes (by id) on the paths of the new leaves, rehashed."""
        level: dict[int, Node] = {k: (leaf_hash(d), 1) for k, d in zip(keys, batch, strict=True)}
        updated: dict[int, Node] = {}
        for height in range(1, MAX_DEPTH + 1):
            parents = sorted({k >> 1 for k in level})
            wanted = [c for p in parents for c in (2 * p, 2 * p + 1) if c not in level]
            siblings = self._nodes(height - 1, wanted) if wanted else {}
            siblings.update(level)
            nxt: dict[int, Node] = {}
            base = height << 32
            for p in parents:
                left, right = siblings[2 * p], siblings[2 * p + 1]
                total = left[1] + right[1]
                node = node_hash(left[0], right[0], total), total
                nxt[p] = node
                updated[base | p] = node
            level = nxt
        return updated

    # -- reading --

    def root(self) -> bytes:
        """The 32-byte root of all leaves (`EMPTY_ROOT` when empty)."""
        with self._lock:
            self._check_open()
            return self._root_of(self._current())

    def root_at(self, count: int) -> bytes:
        """The root of the first `count` leaves to arrive, as it was then."""
        with self._lock:
            self._check_open()
            return self._root_of(self._view(self._check_count(count)))

    def _walk(self, index: int, count: int | None) -> tuple[int, list[bytes]]:
        count = self._check_count(count)
        if not is_int(index) or not 0 <= index < count:
            raise InvalidProof(f"leaf index must be in [0, {count}), got {index!r}")
        view = self._view(count)
        depth = view.depth()
        prefix, rest, proof = 0, index, []
        for height in range(depth - 1, -1, -1):
            left = view.node(height, 2 * prefix)
            if rest < left[1]:
                right = view.node(height, 2 * prefix + 1)
                proof.append(encode_proof_item(right[0], right[1]))
                prefix = 2 * prefix
            else:
                rest -= left[1]
                proof.append(encode_proof_item(left[0], left[1]))
                prefix = 2 * prefix + 1
        return prefix, proof

    def proof(self, index: int, count: int | None = None) -> list[bytes]:
        """Proof of the leaf of rank `index` in the tree of the first `count` leaves (default:
        all). Check it with `verify_proof(root_at(count), count, index, leaf(index, count),
        proof)`."""
        with self._lock:
            self._check_open()
            return self._walk(index, count)[1]

    def leaf(self, index: int, count: int | None = None) -> bytes:
        """The 28-byte data of the leaf of rank `index` (ascending uint32 nonce) among the
        first `count` leaves (default: all)."""
        with self._lock:
            self._check_open()
            key = self._walk(index, count)[0]
            return self._store.leaf_data([key])[key]

    def leaf_and_proof(self, index: int, count: int | None = None) -> tuple[bytes, list[bytes]]:
        """`(leaf(index, count), proof(index, count))` in one walk."""
        with self._lock:
            self._check_open()
            key, proof = self._walk(index, count)
            return self._store.leaf_data([key])[key], proof

    def rank_of_nonce(self, nonce: int) -> int | None:
        """The leaf index (rank) of `nonce`, or None when it was never inserted."""
        with self._lock:
            self._check_open()
            key = nonce_key(nonce)
            if not self._store.leaf_data([key]):
                return None
            rank = 0
            for height in range(MAX_DEPTH, 0, -1):
                if key >> (height - 1) & 1:
                    rank += self._node(height - 1, (key >> height) * 2)[1]
            return rank

    def verify_integrity(self) -> None:
        """Rebuild the tree from its leaves (O(count)) and compare every stored node; raise
        ArtifactStoreError on the first mismatch. Opening only checks the last leaf's path."""
        with self._lock:
            self._check_open()
            rebuilt = SMST()
            step = 4096
            for start in range(0, self._count, step):
                stop = min(start + step, self._count)
                rebuilt.insert_many(self._store.leaves_by_arrival(start, stop))
            where = self._path if self._path else "in memory"
            assert isinstance(rebuilt._store, _MemoryStore)
            expected = rebuilt._store.inner
            seen = 0
            for node_id, node in self._store.all_nodes():
                seen += 1
                if expected.get(node_id) != node:
                    raise ArtifactStoreError(
                        f"the artifact store ({where}) does not match its leaves at node "
                        f"height {node_id >> 32}, prefix {node_id & _KEY_MASK}"
                    )
            if seen != len(expected) or rebuilt.root() != self.root():
                raise ArtifactStoreError(
                    f"the artifact store ({where}) root does not match its leaves"
                )

    # -- lifetime --

    def close(self) -> None:
        """Close the file (a no-op in memory, and when already closed)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._store.close()

    def __enter__(self) -> SMST:
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
        return f"SMST({where!r}, count={self._count})"
