"""The commitment MMR: format (against a reference written from the docs), proofs against
current and earlier counts, tampering, persistence, duplicate nonces and crash safety."""

from __future__ import annotations

import hashlib
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gonka_cli.compute.artifacts import LEAF_BYTES
from gonka_cli.compute.mmr import (
    EMPTY_ROOT,
    MMR,
    leaf_hash,
    mmr_size,
    node_hash,
    verify_proof,
)
from gonka_cli.errors import ArtifactStoreError, InvalidComputeInput, InvalidProof

REPO = Path(__file__).resolve().parents[2]


def make_leaf(i: int, nonce: int | None = None) -> bytes:
    """A deterministic 28-byte leaf; the crash test's child process builds the same ones."""
    nonce = i if nonce is None else nonce
    return struct.pack("<i", nonce) + hashlib.sha256(struct.pack("<i", i)).digest()[:24]


# --- a reference written from the module docstring, independent of the implementation ----


def ref_peaks(count: int) -> list[tuple[int, int]]:
    """`(first leaf, size)` of each peak, left to right: the binary expansion of count."""
    peaks, start = [], 0
    for height in reversed(range(count.bit_length())):
        if count & (1 << height):
            peaks.append((start, 1 << height))
            start += 1 << height
    return peaks


def ref_tree(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    half = len(leaves) // 2
    return hashlib.sha256(b"\x01" + ref_tree(leaves[:half]) + ref_tree(leaves[half:])).digest()


def ref_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return bytes(32)
    peaks = [ref_tree(leaves[s : s + n]) for s, n in ref_peaks(len(leaves))]
    acc = peaks[-1]
    for peak in reversed(peaks[:-1]):
        acc = hashlib.sha256(b"\x01" + peak + acc).digest()
    return acc


def ref_proof(leaves: list[bytes], index: int) -> list[bytes]:
    peaks = ref_peaks(len(leaves))
    own = next(p for p in peaks if p[0] <= index < p[0] + p[1])
    siblings = []
    start, size = own
    while size > 1:
        half = size // 2
        if index < start + half:
            siblings.append(ref_tree(leaves[start + half : start + size]))
            size = half
        else:
            siblings.append(ref_tree(leaves[start : start + half]))
            start, size = start + half, half
    others = [ref_tree(leaves[s : s + n]) for s, n in peaks if (s, n) != own]
    return siblings[::-1] + others


def hashed_expression(count: int, index: int, length: int) -> str | None:
    """What a verifier hashes for a proof of `length` hashes, as a formula over the leaf `x`
    and the proof's hashes `p0, p1, ...`; None when the length is wrong for that count."""
    peaks = ref_peaks(count)
    if not 0 <= index < count:
        return None
    number = next(i for i, (s, n) in enumerate(peaks) if s <= index < s + n)
    height = peaks[number][1].bit_length() - 1
    if length != height + len(peaks) - 1:
        return None
    acc = "x"
    for j in range(height):
        acc = f"(p{j},{acc})" if index >> j & 1 else f"({acc},p{j})"
    hashes = [f"p{height + t}" for t in range(len(peaks) - 1)]
    hashes.insert(number, acc)
    for peak in reversed(hashes[:-1]):
        hashes[-1] = f"({peak},{hashes[-1]})"
    return hashes[-1]


@pytest.fixture(params=["memory", "sqlite"])
def new_mmr(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MMR]:
    mmr = MMR() if request.param == "memory" else MMR(tmp_path / "mmr.sqlite")
    yield mmr
    mmr.close()


# --- format -------------------------------------------------------------------------------


def test_hashes_and_empty_root() -> None:
    data = make_leaf(3)
    assert leaf_hash(data) == hashlib.sha256(b"\x00" + data).digest()
    left, right = b"a" * 32, b"b" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    mmr = MMR()
    assert mmr.root() == EMPTY_ROOT == bytes(32)
    assert mmr.root_at(0) == EMPTY_ROOT
    assert len(mmr) == mmr.count == 0


def test_small_roots_by_hand() -> None:
    leaves = [make_leaf(i) for i in range(7)]
    h = [leaf_hash(x) for x in leaves]
    mmr = MMR()
    mmr.append(leaves[0])
    assert mmr.root() == h[0]
    mmr.append_many(leaves[1:3])
    # Three leaves: peaks (0,1) and (2); bagged right to left.
    assert mmr.root() == node_hash(node_hash(h[0], h[1]), h[2])
    mmr.append_many(leaves[3:])
    p4 = node_hash(node_hash(h[0], h[1]), node_hash(h[2], h[3]))
    p2 = node_hash(h[4], h[5])
    assert mmr.root() == node_hash(p4, node_hash(p2, h[6]))
    # Leaf 5: its sibling (leaf 4) first, then the other peaks left to right.
    assert mmr.proof(5) == [h[4], p4, h[6]]
    assert mmr.proof(6) == [p4, p2]


def test_mmr_size() -> None:
    assert [mmr_size(n) for n in range(9)] == [0, 1, 3, 4, 7, 8, 10, 11, 15]


# --- proofs -------------------------------------------------------------------------------


def test_every_proof_of_sizes_1_to_70() -> None:
    leaves = [make_leaf(i) for i in range(70)]
    mmr = MMR()
    roots = {0: EMPTY_ROOT}
    for n in range(1, 71):
        assert mmr.append(leaves[n - 1]) == n - 1
        roots[n] = mmr.root()
        assert roots[n] == ref_root(leaves[:n])
        for i in range(n):
            proof = mmr.proof(i)
            assert proof == ref_proof(leaves[:n], i)
            assert verify_proof(roots[n], n, i, leaves[i], proof)
    # Proofs against every earlier commitment, from the full MMR.
    for count in range(71):
        assert mmr.root_at(count) == roots[count]
        for i in range(count):
            proof = mmr.proof(i, count)
            assert proof == ref_proof(leaves[:count], i)
            assert verify_proof(roots[count], count, i, mmr.leaf(i), proof)


def test_persistent_proofs_match_memory(tmp_path: Path) -> None:
    leaves = [make_leaf(i) for i in range(45)]
    memory = MMR()
    with MMR(tmp_path / "m.sqlite") as disk:
        for leaf in leaves:
            memory.append(leaf)
            disk.append(leaf)
            assert disk.root() == memory.root()
        for count in range(1, 46):
            assert disk.root_at(count) == memory.root_at(count)
            for i in range(0, count, 3):
                assert disk.proof(i, count) == memory.proof(i, count)


TAMPER_CASES = [(1, 0), (2, 1), (7, 3), (11, 0), (11, 9), (11, 10), (64, 37), (70, 69), (70, 5)]


@pytest.mark.parametrize(("count", "index"), TAMPER_CASES)
def test_tampering_is_rejected(count: int, index: int) -> None:
    mmr = MMR()
    mmr.append_many(make_leaf(i) for i in range(count))
    root, leaf, proof = mmr.root(), mmr.leaf(index), mmr.proof(index)
    assert verify_proof(root, count, index, leaf, proof)

    def flips(data: bytes) -> Iterator[bytes]:
        for bit in range(8 * len(data)):
            flipped = bytearray(data)
            flipped[bit // 8] ^= 1 << (bit % 8)
            yield bytes(flipped)

    assert not any(verify_proof(root, count, index, bad, proof) for bad in flips(leaf))
    assert not any(verify_proof(bad, count, index, leaf, proof) for bad in flips(root))
    for k in range(len(proof)):
        for bad in flips(proof[k]):
            assert not verify_proof(root, count, index, leaf, [*proof[:k], bad, *proof[k + 1 :]])
    for other in range(-1, count + 2):
        if other != index:
            assert not verify_proof(root, count, other, leaf, proof)
    assert not verify_proof(root, count, index, leaf, [*proof, proof[0] if proof else root])
    if proof:
        assert not verify_proof(root, count, index, leaf, proof[:-1])
        assert not verify_proof(root, count, index, leaf, proof[1:])
    for a in range(len(proof)):
        for b in range(a + 1, len(proof)):
            swapped = list(proof)
            swapped[a], swapped[b] = swapped[b], swapped[a]
            assert not verify_proof(root, count, index, leaf, swapped)
    other_root = MMR()
    other_root.append_many(make_leaf(i, nonce=i + 1000) for i in range(count))
    assert not verify_proof(other_root.root(), count, index, leaf, proof)
    for wrong in (0, -count, count + 1, 2 * count, 2**70):
        assert not verify_proof(root, wrong, index, leaf, proof)


def test_wrong_count_fails_unless_the_same_hashes_are_taken() -> None:
    """The root does not hash the count (the reference format), so a proof also verifies
    under another count whose shape makes the verifier hash exactly the same thing (e.g. the
    proofs of leaves 0 and 1 for counts 3 and 4); never otherwise. The verifier always uses
    the committed count, so this opens no other leaf (see the module docstring)."""
    mmr = MMR()
    mmr.append_many(make_leaf(i) for i in range(48))
    coincidences = 0
    for count in range(1, 25):
        root = mmr.root_at(count)
        for index in range(count):
            proof = mmr.proof(index, count)
            mine = hashed_expression(count, index, len(proof))
            assert mine is not None
            for wrong in range(1, 49):
                if wrong == count:
                    continue
                expected = hashed_expression(wrong, index, len(proof)) == mine
                coincidences += expected
                assert verify_proof(root, wrong, index, mmr.leaf(index), proof) is expected
    assert 0 < coincidences


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.lists(st.binary(min_size=31, max_size=33), max_size=8),
    st.lists(st.integers(), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(root=JUNK, count=JUNK, index=JUNK, leaf=JUNK, proof=JUNK)
def test_verify_proof_never_raises(
    root: object, count: object, index: object, leaf: object, proof: object
) -> None:
    assert verify_proof(root, count, index, leaf, proof) is False  # type: ignore[arg-type]


def test_verify_proof_rejects_wrong_types_of_valid_values() -> None:
    mmr = MMR()
    mmr.append_many(make_leaf(i) for i in range(5))
    root, leaf, proof = mmr.root(), mmr.leaf(2), mmr.proof(2)
    assert verify_proof(root, 5, 2, leaf, proof)
    assert verify_proof(bytearray(root), 5, 2, bytearray(leaf), tuple(proof))  # type: ignore[arg-type]
    assert not verify_proof(root.hex(), 5, 2, leaf, proof)  # type: ignore[arg-type]
    assert not verify_proof(root, True, 0, leaf, [])
    assert not verify_proof(root, 5.0, 2, leaf, proof)  # type: ignore[arg-type]
    assert not verify_proof(root, 5, 2, leaf, iter(proof))  # type: ignore[arg-type]
    assert not verify_proof(root, 5, 2, leaf, [p.hex() for p in proof])  # type: ignore[misc]
    assert not verify_proof(root, 5, 2, leaf[:-1], proof)
    assert not verify_proof(root, 5, 2, leaf + b"\x00", proof)


def test_bad_indices_and_counts(new_mmr: MMR) -> None:
    with pytest.raises(InvalidProof):
        new_mmr.proof(0)
    new_mmr.append_many(make_leaf(i) for i in range(5))
    for bad in (-1, 5, True, 1.0):
        with pytest.raises(InvalidProof, match="leaf index"):
            new_mmr.proof(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidProof, match="leaf index"):
            new_mmr.leaf(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidProof, match="leaf index"):
        new_mmr.proof(3, count=3)
    for bad_count in (-1, 6):
        with pytest.raises(InvalidProof, match="count"):
            new_mmr.root_at(bad_count)
        with pytest.raises(InvalidProof, match="count"):
            new_mmr.proof(0, count=bad_count)


# --- appending ----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 4, 24, LEAF_BYTES - 1, LEAF_BYTES + 1])
def test_bad_leaf_length(new_mmr: MMR, length: int) -> None:
    with pytest.raises(InvalidComputeInput, match="28 bytes"):
        new_mmr.append(bytes(length))
    with pytest.raises(InvalidComputeInput, match="28 bytes"):
        new_mmr.append_many([make_leaf(0), bytes(length)])
    assert new_mmr.count == 0 and new_mmr.root() == EMPTY_ROOT


def test_duplicate_nonce_refused(new_mmr: MMR) -> None:
    assert new_mmr.append_many(make_leaf(i) for i in range(10)) == range(10)
    root = new_mmr.root()
    with pytest.raises(InvalidComputeInput, match=r"nonce 4 is already in the MMR \(leaf 4\)"):
        new_mmr.append(make_leaf(99, nonce=4))
    # A batch with one repeat appends nothing at all.
    with pytest.raises(InvalidComputeInput, match="nonce 7 is already"):
        new_mmr.append_many([make_leaf(10), make_leaf(11), make_leaf(98, nonce=7)])
    with pytest.raises(InvalidComputeInput, match="nonce 12 is already in the MMR \\(leaf 11\\)"):
        new_mmr.append_many([make_leaf(10), make_leaf(11, nonce=12), make_leaf(12)])
    assert new_mmr.count == 10 and new_mmr.root() == root
    assert new_mmr.index_of_nonce(4) == 4
    assert new_mmr.index_of_nonce(10) is None
    # The failed batches left nothing behind: their nonces are still free.
    assert new_mmr.append_many([make_leaf(10), make_leaf(11)]) == range(10, 12)
    assert new_mmr.append_many([]) == range(12, 12)


def test_negative_and_extreme_nonces(new_mmr: MMR) -> None:
    new_mmr.append_many(make_leaf(i, nonce) for i, nonce in enumerate((-(2**31), 2**31 - 1, 0)))
    assert new_mmr.index_of_nonce(-(2**31)) == 0
    assert new_mmr.index_of_nonce(2**31 - 1) == 1
    with pytest.raises(InvalidComputeInput):
        new_mmr.append(make_leaf(5, nonce=-(2**31)))


def test_threads_share_one_mmr(tmp_path: Path) -> None:
    with MMR(tmp_path / "t.sqlite", durable=False) as mmr:

        def worker(offset: int) -> None:
            for start in range(offset, 2000, 400):
                mmr.append_many(make_leaf(i) for i in range(start, start + 200))

        threads = [threading.Thread(target=worker, args=(o,)) for o in (0, 200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert mmr.count == 2000
        assert sorted(mmr.index_of_nonce(i) for i in range(2000)) == list(range(2000))  # type: ignore[type-var]
        mmr.verify_integrity()


# --- persistence --------------------------------------------------------------------------


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "mmr.sqlite"
    leaves = [make_leaf(i, nonce=3 * i - 50) for i in range(60)]
    with MMR(path) as mmr:
        mmr.append_many(leaves[:20])
        for leaf in leaves[20:37]:
            mmr.append(leaf)
        root37 = mmr.root()
    with MMR(path) as mmr:
        assert mmr.count == 37 and mmr.root() == root37 and mmr.path == path
        assert [mmr.leaf(i) for i in range(37)] == leaves[:37]
        assert mmr.index_of_nonce(3 * 36 - 50) == 36
        mmr.append_many(leaves[37:])
        memory = MMR()
        memory.append_many(leaves)
        assert mmr.root() == memory.root()
        assert mmr.root_at(37) == root37
        for i in range(60):
            assert mmr.proof(i) == memory.proof(i)
            assert mmr.proof(i % 37, 37) == memory.proof(i % 37, 37)
        mmr.verify_integrity()
    with MMR(path) as mmr, pytest.raises(InvalidComputeInput, match="already in the MMR"):
        mmr.append(make_leaf(0, nonce=-50))


def test_closed_mmr_refuses_work(tmp_path: Path) -> None:
    mmr = MMR(tmp_path / "c.sqlite")
    mmr.append(make_leaf(0))
    mmr.close()
    mmr.close()
    with pytest.raises(ArtifactStoreError, match="closed"):
        mmr.append(make_leaf(1))
    with pytest.raises(ArtifactStoreError, match="closed"):
        mmr.proof(0)


def test_unusable_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ArtifactStoreError, match="unusable"):
        MMR(junk)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE wallets (name TEXT)")
    with pytest.raises(ArtifactStoreError, match="something else"):
        MMR(other)


def tamper(path: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute(sql, args)
    db.close()


def test_reopen_detects_inconsistency(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    with MMR(path) as mmr:
        mmr.append_many(make_leaf(i) for i in range(11))
    # The last node (leaf 10, a peak of its own) no longer matches the recorded root.
    tamper(path, "UPDATE nodes SET hash = ? WHERE pos = ?", bytes(32), mmr_size(11) - 1)
    with pytest.raises(ArtifactStoreError, match=r"unusable.*peaks"):
        MMR(path)

    path2 = tmp_path / "m2.sqlite"
    with MMR(path2) as mmr:
        mmr.append_many(make_leaf(i) for i in range(11))
    tamper(path2, "DELETE FROM leaves WHERE idx = 10")
    with pytest.raises(ArtifactStoreError, match="10 leaves stored, 11 recorded"):
        MMR(path2)

    # A node inside a peak is only caught by the full check.
    path3 = tmp_path / "m3.sqlite"
    with MMR(path3) as mmr:
        mmr.append_many(make_leaf(i) for i in range(11))
    tamper(path3, "UPDATE nodes SET hash = ? WHERE pos = 3", bytes(32))
    with MMR(path3) as mmr:
        with pytest.raises(ArtifactStoreError, match="does not match its leaves"):
            mmr.verify_integrity()


def test_second_writer_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    with MMR(path) as first, MMR(path) as second:
        first.append(make_leaf(0))
        with pytest.raises(ArtifactStoreError, match="another process is appending"):
            second.append(make_leaf(1))
    with MMR(path) as mmr:
        assert mmr.count == 1


def test_opening_while_another_connection_appends(tmp_path: Path) -> None:
    # A reader (another process, or a validator thread) may open the file at any moment of
    # the miner's appends; it must see one committed state, never a "corrupt" file.
    path = tmp_path / "live.sqlite"
    writer = MMR(path, durable=False)
    stop = threading.Event()

    def append_forever() -> None:
        while not stop.is_set():
            start = writer.count
            writer.append_many(make_leaf(i) for i in range(start, start + 8))

    thread = threading.Thread(target=append_forever)
    thread.start()
    try:
        for _ in range(150):
            with MMR(path) as reader:
                assert reader.count % 8 == 0
                assert reader.root_at(reader.count) == reader.root()
    finally:
        stop.set()
        thread.join()
        writer.close()


def test_openers_racing_to_create_one_file(tmp_path: Path) -> None:
    # Several openers of a file that does not exist yet all find it empty; none of them may
    # call the others' fresh file corrupt (or give up on a lock held for a moment).
    errors: list[Exception] = []

    def open_once(path: Path, start: threading.Barrier) -> None:
        start.wait()
        try:
            MMR(path).close()
        except ArtifactStoreError as exc:
            errors.append(exc)

    for i in range(60):
        start = threading.Barrier(3)
        path = tmp_path / f"{i}.sqlite"
        threads = [threading.Thread(target=open_once, args=(path, start)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors[:3]


CHILD = """
import hashlib, struct, sys
from gonka_cli.compute.mmr import MMR

def make_leaf(i):
    return struct.pack("<i", i) + hashlib.sha256(struct.pack("<i", i)).digest()[:24]

with MMR(sys.argv[1]) as mmr:
    while True:
        start = mmr.count
        mmr.append_many(make_leaf(i) for i in range(start, start + int(sys.argv[2])))
        print(mmr.count, flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_while_appending_leaves_a_consistent_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    batch = 150
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
        with MMR(path) as mmr:
            count = mmr.count
            assert count >= last, round_number
            assert count % batch == 0  # batches are all or nothing
            memory = MMR()
            memory.append_many(make_leaf(i) for i in range(count))
            assert mmr.root() == memory.root()
            mmr.verify_integrity()
