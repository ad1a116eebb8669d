"""Count inflation against a real node: a commit above a uint32 is refused, and a sum tree
that repeats its real subtree to claim more leaves than it has nonces fails its proofs.

A real node on 127.0.0.1 and a scripted participant (`tests/node/participant.py`) that
computes 128 real gonka-tiny artifacts and commits them as 2**20.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.compute import artifacts as art
from gonka_cli.compute.smst import EMPTY, SMST, encode_proof_item, leaf_hash, node_hash
from gonka_cli.compute.validation import ProofAnswer
from gonka_cli.node.epochs import NetworkParams
from gonka_cli.protocol import POC_PROOF, EpochRecord, ErrorCode
from gonka_cli.workclient import WorkClient, WorkRefused
from tests.conftest import StartNode, node_url
from tests.node.network_helpers import wait_until
from tests.node.participant import TestParticipant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: A safety net for waits on a busy machine, never a figure under test.
PATIENCE_S = 180.0
REAL_HEIGHT = 7  # 128 real artifacts, nonces 0..127
COPIES_LOG2 = 13  # repeated 8,192 times: a claim of 2**20 leaves
DEPTH = 24


class Inflater(TestParticipant):
    """Commits its real subtree repeated, and answers each sampled rank with the real leaf
    under the forged tree's siblings."""

    def __init__(self, url: str) -> None:
        super().__init__(url, nonces=1 << REAL_HEIGHT)
        self.refused: dict[int, ErrorCode] = {}
        self.forged: dict[int, Any] = {}

    def mine(self, epoch: dict[str, Any]) -> None:
        real = SMST()
        real.insert_many(art.leaf_data(n, v) for n, v in self.artifacts(epoch))

        @functools.cache
        def node(height: int, prefix: int) -> tuple[bytes, int]:
            if height <= REAL_HEIGHT:
                copy = prefix >> (REAL_HEIGHT - height)
                if copy >= 1 << COPIES_LOG2:
                    return EMPTY[height], 0
                if copy:  # every copy is the first one
                    return node(height, prefix & ((1 << (REAL_HEIGHT - height)) - 1))
                if height == 0:
                    return leaf_hash(real.leaf(prefix)), 1
            left, right = node(height - 1, 2 * prefix), node(height - 1, 2 * prefix + 1)
            total = left[1] + right[1]
            return node_hash(left[0], right[0], total), total

        root, count = node(DEPTH, 0)
        model = epoch["poc"]["model"]
        for too_many in (2**62, 2**32):
            try:
                self.client.commit(epoch["epoch"], model, too_many, root.hex())
            except WorkRefused as exc:
                self.refused[too_many] = exc.code
        self.forged[epoch["epoch"]] = (real, node)
        self.client.commit(epoch["epoch"], model, count, root.hex())
        self.committed[epoch["epoch"]] = count

    def handle(self, item: dict[str, Any]) -> None:
        if item["kind"] != POC_PROOF:
            return super().handle(item)
        real, node = self.forged[item["epoch"]]
        answers = []
        for index in item["leaf_indices"]:
            items = []
            for height in range(DEPTH - 1, -1, -1):
                sibling = node(height, (index >> height) ^ 1)
                items.append(encode_proof_item(*sibling))
            leaf = real.leaf(index & ((1 << REAL_HEIGHT) - 1))
            nonce, vector = art.parse_leaf(leaf)
            answers.append(ProofAnswer(index, nonce, vector, tuple(items)).to_dict())
        try:
            result = self.client.result(item["id"], {"answers": answers})
        except WorkRefused as exc:
            self.done.append({"item": item, "refused": exc})
            return None
        self.done.append({"item": item, "result": result})
        return None


def network() -> NetworkParams:
    """0.05 s blocks: generate 3 s, validate 2 s, inference 1 s."""
    return NetworkParams(
        epoch_blocks=120,
        poc_generate_blocks=60,
        poc_validate_blocks=40,
        inference_timeout_s=3.0,
        participant_timeout_s=10.0,
    )


def test_inflated_counts_are_refused_or_fail_every_sampled_proof(
    start_node: StartNode, tmp_path: Path
) -> None:
    node = start_node(home=tmp_path / "node", network=network(), block_time_s=0.05)
    url = node_url(node)
    attacker = Inflater(url)
    attacker.start()
    try:
        done = wait_until(
            lambda: [d for d in attacker.done if d["item"]["kind"] == POC_PROOF],
            "an answered proof request",
            PATIENCE_S,
        )
    finally:
        attacker.stop()
    # Counts that do not fit a uint32 are refused at the commit, with their own code.
    assert attacker.refused == {
        2**62: ErrorCode.COUNT_TOO_LARGE,
        2**32: ErrorCode.COUNT_TOO_LARGE,
    }
    item = done[0]["item"]
    assert item["count"] == 2**20
    # The repeated subtree is refused at the structural checks: no weight this epoch. Only
    # a rank inside the one real copy (128 of 2**20) could pass.
    refused = done[0]["refused"]
    assert refused.code == ErrorCode.PROOFS_INVALID
    assert "sum-tree proof does not match" in refused.reason
    sampled = len(item["leaf_indices"])
    assert any(f"{n} of {sampled} answers fail" in refused.reason for n in (sampled - 1, sampled))

    def verdict() -> Any:
        record: EpochRecord = WorkClient(url).epoch_record(item["epoch"])
        return next((r for r in record.poc_results if r.address == attacker.address), None)

    result = wait_until(verdict, "the attacker's verdict", PATIENCE_S)
    assert result.status == "invalid" and result.weight == 0
    assert "sum-tree proof does not match" in result.reason
