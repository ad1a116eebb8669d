"""The commitment store's speed: inserts/s, proofs/s and verifications/s of `compute.smst`.

A miner inserts each finished chunk of nonces as one batch (one transaction) and answers a
proof request of `--samples` ranks at once, against the count it committed last; the node
verifies those proofs. This measures each, in memory and in a durable SQLite file
(`synchronous=FULL`, as the miner opens it), for `--leaves` artifacts in batches of
`--batch` nonces handed out densely (as the miner's nonce reservations do), plus proofs
against an earlier count (the commitment a miner published before its last chunks came in).

    python scripts/bench_smst.py [--leaves 200000] [--batch 1000] [--samples 200]

Each rate is the best of `--repeats` runs (default 3).
"""

from __future__ import annotations

import argparse
import random
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gonka_cli.compute.smst import SMST, verify_proof


def leaf(nonce: int) -> bytes:
    return struct.pack("<i", nonce) + struct.pack("<12e", *([0.25] * 12))


def best(repeats: int, run: Callable[[], float]) -> float:
    """The highest rate of `repeats` runs (each returns items per second)."""
    return max(run() for _ in range(repeats))


def bench(args: argparse.Namespace, path: Path | None, label: str) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    holder: list[SMST] = []

    def insert() -> float:
        for tree in holder:
            tree.close()
        holder.clear()
        if path is not None:
            for old in path.parent.glob(path.name + "*"):
                old.unlink()
        tree = SMST(path)
        holder.append(tree)
        start = time.perf_counter()
        for first in range(0, args.leaves, args.batch):
            stop = min(first + args.batch, args.leaves)
            tree.insert_many(leaf(n) for n in range(first, stop))
        return float(args.leaves) / (time.perf_counter() - start)

    rows.append((f"{label}: inserts/s (batches of {args.batch})", best(args.repeats, insert)))
    tree = holder[0]
    rnd = random.Random(1)
    count = tree.count
    earlier = count - args.batch * 3  # a commit three chunks behind the store

    def proofs(at: int) -> Callable[[], float]:
        def run() -> float:
            ranks = rnd.sample(range(at), args.samples)
            start = time.perf_counter()
            for rank in ranks:
                tree.leaf_and_proof(rank, at)
            return float(args.samples) / (time.perf_counter() - start)

        return run

    rows.append((f"{label}: proofs/s at the current count", best(args.repeats, proofs(count))))
    if earlier > args.samples:
        # The first request at an earlier count also finds the leaves that came after it.
        rows.append((f"{label}: proofs/s at an earlier count", best(args.repeats, proofs(earlier))))
    root = tree.root()
    answers = [(r, *tree.leaf_and_proof(r)) for r in rnd.sample(range(count), args.samples)]

    def verify() -> float:
        start = time.perf_counter()
        for rank, data, proof in answers:
            assert verify_proof(root, count, rank, data, proof)
        return len(answers) / (time.perf_counter() - start)

    rows.append((f"{label}: verifications/s", best(args.repeats, verify)))
    tree.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leaves", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = bench(args, None, "memory")
    with tempfile.TemporaryDirectory() as directory:
        rows += bench(args, Path(directory) / "bench.smst", "sqlite")
    print(f"{args.leaves} leaves, nonces 0..{args.leaves - 1}")
    for name, rate in rows:
        print(f"  {name:<48} {rate:>12,.0f}")


if __name__ == "__main__":
    main()
