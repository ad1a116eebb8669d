"""The commitment sum tree: roots and proofs against a reference written here from the format
(mainnet's `smst.go` / `smst_verify.go`, as docs/compute.md describes it), earlier counts,
tampering, count inflation, persistence, corrupt files and kill -9."""

from __future__ import annotations

import bisect
import functools
import hashlib
import random
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from gonka_cli.compute.artifacts import LEAF_BYTES
from gonka_cli.compute.smst import SMST, verify_proof
from gonka_cli.compute.validation import (
    PocParams,
    ProofAnswer,
    build_answers,
    check_answers,
    sample_indices,
)
from gonka_cli.errors import ArtifactStoreError, InvalidComputeInput, InvalidProof

REPO = Path(__file__).resolve().parents[2]


def make_leaf(nonce: int, salt: int = 0) -> bytes:
    """A deterministic 28-byte leaf of 12 finite fp16 values; the crash test's child process
    builds the same ones."""
    digest = hashlib.sha256(struct.pack("<ii", nonce, salt)).digest()
    return struct.pack("<i", nonce) + struct.pack("<12e", *((b - 128) / 64 for b in digest[:12]))


# --- the reference: its own hashing, from the format --------------------------------------


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_inner(left: bytes, right: bytes, count: int) -> bytes:
    return hashlib.sha256(b"\x01" + left + right + count.to_bytes(4, "little")).digest()


@functools.cache
def ref_empty(height: int) -> bytes:
    if height == 0:
        return hashlib.sha256(b"\x00").digest()
    return ref_inner(ref_empty(height - 1), ref_empty(height - 1), 0)


class RefTree:
    """The tree of `leaves` built top-down from sorted positions (uint32 of each nonce)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.by_key = {int.from_bytes(x[:4], "little"): x for x in leaves}
        self.keys = sorted(self.by_key)
        top = self.keys[-1] if self.keys else 0
        self.depth = max(24, top.bit_length())
        self.memo: dict[tuple[int, int], tuple[bytes, int]] = {}

    def node(self, height: int, prefix: int) -> tuple[bytes, int]:
        low = prefix << height
        first = bisect.bisect_left(self.keys, low)
        if first == len(self.keys) or self.keys[first] >= low + (1 << height):
            return ref_empty(height), 0
        if height == 0:
            return ref_leaf(self.by_key[prefix]), 1
        if (height, prefix) not in self.memo:
            left = self.node(height - 1, 2 * prefix)
            right = self.node(height - 1, 2 * prefix + 1)
            total = left[1] + right[1]
            self.memo[height, prefix] = ref_inner(left[0], right[0], total), total
        return self.memo[height, prefix]

    def root(self) -> bytes:
        return self.node(self.depth, 0)[0]

    def proof(self, index: int) -> tuple[bytes, list[bytes]]:
        """The leaf of rank `index` and its siblings from the root down, hash || LE32 count."""
        key = self.keys[index]
        items = []
        for height in range(self.depth - 1, -1, -1):
            sibling = self.node(height, (key >> height) ^ 1)
            items.append(sibling[0] + sibling[1].to_bytes(4, "little"))
        return self.by_key[key], items


def ref_verify(root: bytes, count: int, index: int, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """Mainnet's VerifySMSTProofWithCounts, plus the rank: fold from the leaf up."""
    depth = len(proof)
    key = int.from_bytes(leaf[:4], "little")
    if not 24 <= depth <= 32 or key >> depth:
        return False
    acc, total, rank = ref_leaf(leaf), 1, 0
    for level in reversed(range(depth)):
        sibling, n = proof[level][:32], int.from_bytes(proof[level][32:], "little")
        total += n
        if key >> (depth - 1 - level) & 1:
            rank += n
            acc = ref_inner(sibling, acc, total)
        else:
            acc = ref_inner(acc, sibling, total)
    return acc == root and total == count and rank == index


# --- roots and proofs ---------------------------------------------------------------------


def test_empty_tree() -> None:
    tree = SMST()
    assert tree.count == 0
    assert tree.root() == ref_empty(24) == RefTree([]).root()
    assert ref_empty(0) == hashlib.sha256(b"\x00").digest()
    with pytest.raises(InvalidProof):
        tree.proof(0)


#: Pinned: the root of the leaves `make_leaf(n)` for n in 0..9 (depth 24).
ROOT_0_TO_9 = "e212602ee97a9484cc7e04ceb0d1cffe4334cb8b26eb7adbe030e12bbf5a40a4"


def test_a_pinned_root() -> None:
    tree = SMST()
    tree.insert_many(make_leaf(n) for n in range(10))
    assert tree.root() == RefTree([make_leaf(n) for n in range(10)]).root()
    assert tree.root().hex() == ROOT_0_TO_9


NONCE_SETS: dict[str, list[int]] = {
    "one": [5],
    "zero": [0],
    "dense": list(range(40)),
    "edges": [0, 1, 2**24 - 1, 2**31 - 1, -1, -(2**31), -2],
    "depth 25": [3, 2**24, 17],
    "random": random.Random(3).sample(range(-(2**31), 2**31), 60),
    "small random": random.Random(4).sample(range(2**20), 60),
}


@pytest.mark.parametrize("nonces", NONCE_SETS.values(), ids=NONCE_SETS.keys())
def test_roots_and_proofs_match_the_reference(nonces: list[int]) -> None:
    leaves = [make_leaf(n) for n in nonces]
    ref = RefTree(leaves)
    tree = SMST()
    rnd = random.Random(len(nonces))
    order = list(leaves)
    rnd.shuffle(order)
    while order:  # batches of random sizes, in random order
        cut = rnd.randint(1, max(1, len(order) // 2))
        tree.insert_many(order[:cut])
        order = order[cut:]
    root = tree.root()
    assert root == ref.root() and tree.count == len(nonces)
    for index in range(len(nonces)):
        leaf, proof = ref.proof(index)
        assert tree.leaf(index) == leaf
        assert tree.proof(index) == proof
        assert len(proof) == ref.depth
        assert ref_verify(root, len(nonces), index, leaf, proof)
        assert verify_proof(root, len(nonces), index, leaf, proof)
        nonce = struct.unpack("<i", leaf[:4])[0]
        assert tree.rank_of_nonce(nonce) == index
    assert tree.rank_of_nonce(12345678) is None or 12345678 in nonces
    tree.verify_integrity()


def test_leaf_index_is_the_uint32_rank() -> None:
    tree = SMST()
    tree.insert_many(make_leaf(n) for n in (-1, 7, -(2**31), 0, 2**31 - 1))
    order = [struct.unpack("<i", tree.leaf(i)[:4])[0] for i in range(5)]
    assert order == [0, 7, 2**31 - 1, -(2**31), -1]


def test_depth_grows_with_the_largest_nonce() -> None:
    tree = SMST()
    tree.insert_many(make_leaf(n) for n in range(8))
    assert len(tree.proof(0)) == 24
    tree.insert(make_leaf(2**26))
    assert len(tree.proof(0)) == 27
    tree.insert(make_leaf(-5))
    assert len(tree.proof(0)) == 32
    assert tree.root() == RefTree([make_leaf(n) for n in [*range(8), 2**26, -5]]).root()


def test_proofs_against_earlier_counts() -> None:
    rnd = random.Random(9)
    nonces = rnd.sample(range(-5000, 2**25), 120)
    leaves = [make_leaf(n) for n in nonces]
    tree = SMST()
    roots = {}
    for start in range(0, 120, 17):
        tree.insert_many(leaves[start : start + 17])
        roots[tree.count] = tree.root()
    for count, root in roots.items():
        ref = RefTree(leaves[:count])
        assert tree.root_at(count) == root == ref.root()
        for index in rnd.sample(range(count), min(count, 12)):
            leaf, proof = ref.proof(index)
            assert tree.leaf(index, count) == leaf
            assert tree.leaf_and_proof(index, count) == (leaf, proof)
            assert ref_verify(root, count, index, leaf, proof)
    with pytest.raises(InvalidProof):
        tree.proof(5, count=121)
    with pytest.raises(InvalidProof):
        tree.proof(17, count=17)


# --- the verifier -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def honest() -> tuple[SMST, list[bytes]]:
    leaves = [make_leaf(n) for n in random.Random(11).sample(range(2**22), 50)]
    tree = SMST()
    tree.insert_many(leaves)
    return tree, leaves


def _flip(item: bytes, byte: int) -> bytes:
    return item[:byte] + bytes([item[byte] ^ 1]) + item[byte + 1 :]


def test_every_tampering_fails(honest: tuple[SMST, list[bytes]]) -> None:
    tree, _ = honest
    root, count = tree.root(), tree.count
    for index in (0, 17, count - 1):
        leaf, proof = tree.leaf_and_proof(index)
        assert verify_proof(root, count, index, leaf, proof)
        for level in range(len(proof)):
            for byte in (0, 31, 32, 35):
                bad = [*proof[:level], _flip(proof[level], byte), *proof[level + 1 :]]
                assert not verify_proof(root, count, index, leaf, bad), (level, byte)
        for byte in (0, 3, 4, 27):
            assert not verify_proof(root, count, index, _flip(leaf, byte), proof)
        assert not verify_proof(root, count, (index + 1) % count, leaf, proof)
        assert not verify_proof(root, count + 1, index, leaf, proof)
        assert not verify_proof(root, count - 1, index, leaf, proof)
        assert not verify_proof(_flip(root, 5), count, index, leaf, proof)
        assert not verify_proof(root, count, index, leaf, proof[:-1])
        assert not verify_proof(root, count, index, leaf, [*proof, proof[-1]])


GARBAGE: list[tuple[object, object, object, object, object]] = [
    (None, 1, 0, bytes(LEAF_BYTES), [bytes(36)] * 24),
    (bytes(32), True, 0, bytes(LEAF_BYTES), [bytes(36)] * 24),
    (bytes(32), 2**62, 0, bytes(LEAF_BYTES), [bytes(36)] * 24),
    (bytes(32), 2**32, 0, bytes(LEAF_BYTES), [bytes(36)] * 32),
    (bytes(32), 1, -1, bytes(LEAF_BYTES), [bytes(36)] * 24),
    (bytes(32), 1, 0, bytes(27), [bytes(36)] * 24),
    (bytes(32), 1, 0, bytes(LEAF_BYTES), [bytes(36)] * 23),
    (bytes(32), 1, 0, bytes(LEAF_BYTES), [bytes(36)] * 33),
    (bytes(32), 1, 0, bytes(LEAF_BYTES), [bytes(35)] * 24),
    (bytes(32), 1, 0, bytes(LEAF_BYTES), "x" * 24),
    (bytes(32), 1, 0, bytes(LEAF_BYTES), [None] * 24),
    (bytes(32), 1, 0, b"\xff\xff\xff\xff" + bytes(24), [bytes(36)] * 24),
]


@pytest.mark.parametrize("args", GARBAGE)
def test_verify_proof_never_raises(args: tuple[object, ...]) -> None:
    assert verify_proof(*args) is False  # type: ignore[arg-type]


def test_sibling_counts_are_bounded_by_their_height() -> None:
    """A sibling subtree claiming more leaves than its height holds, or a real subtree
    claiming none, fails even when the hashes are the prover's own."""
    leaf = make_leaf(0)
    # Siblings that are empty at every level but one, at height 3, claiming 9 leaves.
    fake = hashlib.sha256(b"made up").digest()
    siblings = [(ref_empty(h), 0) for h in range(24)]
    siblings[3] = (fake, 9)
    acc, total = ref_leaf(leaf), 1
    for sib, n in siblings:
        total += n
        acc = ref_inner(acc, sib, total)
    proof = [s + n.to_bytes(4, "little") for s, n in reversed(siblings)]
    assert ref_verify(acc, total, 0, leaf, proof)  # mainnet's rule would take it
    assert not verify_proof(acc, total, 0, leaf, proof)
    siblings[3] = (fake, 0)  # a subtree with a hash but no leaves
    acc, total = ref_leaf(leaf), 1
    for sib, n in siblings:
        total += n
        acc = ref_inner(acc, sib, total)
    proof = [s + n.to_bytes(4, "little") for s, n in reversed(siblings)]
    assert ref_verify(acc, total, 0, leaf, proof)
    assert not verify_proof(acc, total, 0, leaf, proof)


# --- count inflation ----------------------------------------------------------------------


REAL_HEIGHT = 10  # 1,024 real artifacts, nonces 0..1023


@functools.cache
def real_tree() -> RefTree:
    return RefTree([make_leaf(n) for n in range(1 << REAL_HEIGHT)])


def inflated(copies_log2: int) -> Callable[[int, int], tuple[bytes, int]]:
    """The forger's tree: the real subtree of 1,024 leaves repeated 2**copies_log2 times."""

    @functools.cache
    def node(height: int, prefix: int) -> tuple[bytes, int]:
        if height <= REAL_HEIGHT:
            copy = prefix >> (REAL_HEIGHT - height)
            if copy >= 1 << copies_log2:
                return ref_empty(height), 0
            return real_tree().node(height, prefix & ((1 << (REAL_HEIGHT - height)) - 1))
        left, right = node(height - 1, 2 * prefix), node(height - 1, 2 * prefix + 1)
        return ref_inner(left[0], right[0], left[1] + right[1]), left[1] + right[1]

    return node


def forged_answer(
    node: Callable[[int, int], tuple[bytes, int]], index: int, claim: str
) -> ProofAnswer:
    """The forger's best answer for rank `index`: the siblings of its tree, with either the
    real leaf (its own nonce) or the repeated vector under the nonce of the position."""
    depth = 24
    key = index  # in the forged tree rank = position: every copy is full
    items = []
    for height in range(depth - 1, -1, -1):
        sibling = node(height, (key >> height) ^ 1)
        items.append(sibling[0] + sibling[1].to_bytes(4, "little"))
    real = make_leaf(key & ((1 << REAL_HEIGHT) - 1))
    nonce = struct.unpack("<i", real[:4])[0] if claim == "real nonce" else key
    return ProofAnswer(index, nonce, real[4:], tuple(items))


@pytest.mark.parametrize("claim", ["real nonce", "position nonce"])
def test_a_repeated_subtree_cannot_inflate_the_count(claim: str) -> None:
    node = inflated(copies_log2=10)  # claims 2**20 leaves with 2**10 distinct nonces
    root, count = node(24, 0)
    assert count == 2**20
    requested = sample_indices("block after the commit", count, 200)
    answers = [forged_answer(node, i, claim) for i in requested]
    check = check_answers(root, count, requested, answers, PocParams())
    failed = {i for i, _ in check.failures}
    # Only ranks inside the one real copy (the first 1,024) can pass; with 200 samples of
    # 2**20 that is almost never: at most what the real nonces back.
    assert {i for i in requested if i >= 1024} <= failed
    assert len(failed) >= 199
    assert not check.ok


def test_counts_beyond_a_uint32_fail_every_proof() -> None:
    tree = SMST()
    tree.insert_many(make_leaf(n) for n in range(300))
    root = tree.root()
    for count in (2**32, 2**62):
        requested = sample_indices("block", count, 200)
        answers = [
            ProofAnswer(i, *_split(tree.leaf(i % 300)), tuple(tree.proof(i % 300)))
            for i in requested
        ]
        check = check_answers(root, count, requested, answers, PocParams())
        assert len({i for i, _ in check.failures}) == 200
    # The honest commitment of the same tree passes.
    requested = sample_indices("block", 300, 200)
    assert check_answers(root, 300, requested, build_answers(tree, requested), PocParams()).ok


def _split(leaf: bytes) -> tuple[int, bytes]:
    return struct.unpack("<i", leaf[:4])[0], leaf[4:]


# --- inserting ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def new_tree(request: pytest.FixtureRequest, tmp_path: Path) -> SMST:
    return SMST() if request.param == "memory" else SMST(tmp_path / "t.smst")


def test_duplicate_nonces_refused(new_tree: SMST) -> None:
    new_tree.insert_many(make_leaf(n) for n in range(5))
    root = new_tree.root()
    with pytest.raises(InvalidComputeInput, match="nonce 3 is already"):
        new_tree.insert_many([make_leaf(10), make_leaf(3, salt=1)])
    with pytest.raises(InvalidComputeInput, match="nonce 11 is already"):
        new_tree.insert_many([make_leaf(11), make_leaf(11, salt=1)])
    assert new_tree.count == 5 and new_tree.root() == root
    with pytest.raises(InvalidComputeInput):
        new_tree.insert(make_leaf(1)[:27])
    assert new_tree.insert_many([]) == 5


def test_the_same_leaves_in_any_order_give_one_root(tmp_path: Path) -> None:
    leaves = [make_leaf(n) for n in random.Random(2).sample(range(-(10**6), 10**6), 200)]
    a, b = SMST(), SMST(tmp_path / "b.smst")
    a.insert_many(leaves)
    for leaf in reversed(leaves):
        b.insert(leaf)
    assert a.root() == b.root() == RefTree(leaves).root()


# --- the file -----------------------------------------------------------------------------


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "t.smst"
    leaves = [make_leaf(n) for n in random.Random(6).sample(range(2**30), 300)]
    with SMST(path) as tree:
        tree.insert_many(leaves[:100])
        root_100 = tree.root()
        tree.insert_many(leaves[100:])
        root = tree.root()
    with SMST(path) as tree:
        assert tree.count == 300 and tree.root() == root and tree.root_at(100) == root_100
        tree.verify_integrity()
        assert ref_verify(root, 300, 42, *tree.leaf_and_proof(42))
    with pytest.raises(ArtifactStoreError, match="closed"):
        tree.root()


def test_unusable_files_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.smst"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ArtifactStoreError, match="unusable"):
        SMST(garbage)
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(ArtifactStoreError, match="something else"):
        SMST(other)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE nodes SET hash = zeroblob(32) WHERE id = (SELECT MAX(id) FROM nodes)",
        "UPDATE nodes SET count = count + 1 WHERE id = (1 << 32) | ((SELECT key FROM leaves "
        "ORDER BY arrival DESC LIMIT 1) >> 1)",
        "UPDATE leaves SET data = zeroblob(28) WHERE arrival = (SELECT MAX(arrival) FROM leaves)",
        "DELETE FROM leaves WHERE arrival = 0",
        "UPDATE meta SET value = 7 WHERE key = 'count'",
        "UPDATE meta SET value = 'x' WHERE key = 'format'",
    ],
)
def test_tampered_files_are_refused_on_open(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "t.smst"
    with SMST(path) as tree:
        tree.insert_many(make_leaf(n) for n in range(50))
    db = sqlite3.connect(path)
    db.execute(sql)
    db.commit()
    db.close()
    with pytest.raises(ArtifactStoreError, match="unusable"):
        SMST(path)


def test_full_check_finds_a_deep_change(tmp_path: Path) -> None:
    path = tmp_path / "t.smst"
    with SMST(path) as tree:
        tree.insert_many(make_leaf(n) for n in range(50))
    db = sqlite3.connect(path)
    db.execute("UPDATE nodes SET hash = zeroblob(32) WHERE id = (1 << 32 | 2)")  # leaves 4, 5
    db.commit()
    db.close()
    with SMST(path) as tree, pytest.raises(ArtifactStoreError, match="does not match"):
        tree.verify_integrity()


CHILD = """
import hashlib, random, struct, sys
from gonka_cli.compute.smst import SMST

def make_leaf(nonce):
    digest = hashlib.sha256(struct.pack("<ii", nonce, 0)).digest()
    return struct.pack("<i", nonce) + struct.pack("<12e", *((b - 128) / 64 for b in digest[:12]))

nonces = random.Random(1).sample(range(-(2**31), 2**31), 200_000)
batch = int(sys.argv[2])
with SMST(sys.argv[1]) as tree:
    while True:
        start = tree.count
        tree.insert_many(make_leaf(n) for n in nonces[start : start + batch])
        print(tree.count, flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_while_inserting_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "killed.smst"
    batch = 150
    nonces = random.Random(1).sample(range(-(2**31), 2**31), 200_000)
    for round_number, delay_s in enumerate((0.0, 0.013, 0.031)):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(batch)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        last = 0
        for _ in range(4):
            last = int(child.stdout.readline())
        time.sleep(delay_s)
        child.kill()  # SIGKILL: no cleanup, maybe in the middle of a transaction
        child.wait(timeout=30)
        child.stdout.close()
        with SMST(path) as tree:
            count = tree.count
            assert count >= last, round_number  # every acknowledged batch is there
            assert count % batch == 0  # batches are all or nothing
            memory = SMST()
            memory.insert_many(make_leaf(n) for n in nonces[:count])
            assert tree.root() == memory.root()
            tree.verify_integrity()
