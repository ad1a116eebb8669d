"""Every proof answer the node accepted gets its PoC verdict, whatever happens meanwhile.

A real node on 127.0.0.1 and a real participant (`tests/node/participant.py`) that mines
gonka-tiny artifacts and answers its proof request over HTTP. To stop the node while a
recomputation is owed, the node's worker threads are kept busy (as long replays would keep
them) until the node has stopped: the accepted answers are then waiting for a worker, which is
how a node killed mid-recomputation leaves them too.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.node.epochs import NetworkParams
from gonka_cli.node.runner import Node
from gonka_cli.node.work_queue import WorkItem
from gonka_cli.protocol import POC_PROOF, EpochRecord
from gonka_cli.workclient import WorkClient
from tests.conftest import StartNode, node_ledger, node_url
from tests.node.helpers import account
from tests.node.network_helpers import wait_until
from tests.node.participant import TestParticipant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REWARD = 9_000_000
#: A safety net for waits on a busy machine, never a figure under test.
PATIENCE_S = 180.0


def network() -> NetworkParams:
    """0.05 s blocks: generate 3 s, validate 2 s, inference 1 s."""
    return NetworkParams(
        epoch_blocks=120,
        poc_generate_blocks=60,
        poc_validate_blocks=40,
        epoch_reward_ngonka=REWARD,
        inference_timeout_s=3.0,
        participant_timeout_s=10.0,
    )


def proof_items(node: Node, epoch: int) -> list[WorkItem]:
    assert node.network is not None
    return [
        i
        for i in node.network.items.values()
        if i.kind == POC_PROOF and i.payload["epoch"] == epoch
    ]


def verdict_of(url: str, epoch: int, address: str) -> Any:
    record: EpochRecord = WorkClient(url).epoch_record(epoch)
    return next((r for r in record.poc_results if r.address == address), None)


def test_answers_accepted_before_a_stop_are_recomputed_after_the_restart(
    start_node: StartNode, tmp_path: Path
) -> None:
    home = tmp_path / "node"
    node = start_node(home=home, network=network(), block_time_s=0.05)
    assert node.network is not None
    gate = threading.Event()
    for _ in range(node.network.ctx.validator_threads):
        node.network.ctx.validator.submit(gate.wait)  # the workers are busy until the stop
    prover = TestParticipant(node_url(node), nonces=200).start()
    try:
        answered = wait_until(
            lambda: [d for d in prover.done if d["item"]["kind"] == POC_PROOF],
            "an answered proof request",
            PATIENCE_S,
        )
    finally:
        prover.stop()
    epoch = int(answered[0]["item"]["epoch"])
    assert answered[0]["result"].status == "accepted"
    assert answered[0]["result"].validation == "pending"
    assert verdict_of(node_url(node), epoch, prover.address) is None  # still owed
    node.stop()
    gate.set()

    node = start_node(home=home)
    url = node_url(node)
    # Not asked again (the answers are the node's to judge), and not written off as
    # `no_answer`: the verdict of the answers accepted before the stop.
    assert proof_items(node, epoch) == []
    verdict = wait_until(
        lambda: verdict_of(url, epoch, prover.address), "the PoC verdict", PATIENCE_S
    )
    assert (verdict.status, verdict.weight, verdict.count) == (
        "valid",
        prover.committed[epoch],
        prover.committed[epoch],
    ), verdict.reason
    # ...and the settlement, which waited for it, pays the reward.
    ledger = node_ledger(node)
    settlement = wait_until(
        lambda: WorkClient(url).epoch_record(epoch).settlement_tx, "the settlement", PATIENCE_S
    )
    wait_until(lambda: ledger.tx(settlement) is not None, "the settlement's block", PATIENCE_S)
    assert ledger.account(prover.address).balance == REWARD  # type: ignore[union-attr]


def test_answers_accepted_in_time_are_not_written_off_when_validation_closes(
    start_node: StartNode, tmp_path: Path
) -> None:
    """The recomputation is still queued when the validate phase ends and the next epoch
    begins: the verdict waits for it, and so does the settlement."""
    node = start_node(network=network(), block_time_s=0.05)
    assert node.network is not None
    network_ = node.network
    url = node_url(node)
    gate = threading.Event()
    for _ in range(network_.ctx.validator_threads):
        network_.ctx.validator.submit(gate.wait)
    prover = TestParticipant(url, nonces=200)
    try:
        prover.start()
        answered = wait_until(
            lambda: [d for d in prover.done if d["item"]["kind"] == POC_PROOF],
            "an answered proof request",
            PATIENCE_S,
        )
        epoch = int(answered[0]["item"]["epoch"])
        ledger = node_ledger(node)
        # The next epoch has begun (validation closed, settlement due), the answers unjudged.
        next_start = (epoch + 1) * network_.params.epoch_blocks + 1
        wait_until(lambda: ledger.height > next_start, "the next epoch", PATIENCE_S)
        assert verdict_of(url, epoch, prover.address) is None
        assert WorkClient(url).epoch_record(epoch).settlement_tx is None
    finally:
        gate.set()
        prover.stop()
    verdict = wait_until(
        lambda: verdict_of(url, epoch, prover.address), "the PoC verdict", PATIENCE_S
    )
    assert (verdict.status, verdict.weight) == ("valid", prover.committed[epoch]), verdict.reason
    wait_until(
        lambda: WorkClient(url).epoch_record(epoch).settlement_tx, "the settlement", PATIENCE_S
    )


def test_weights_wait_for_every_verdict_of_their_epoch(tmp_path: Path) -> None:
    """Inference goes to participants by their last epoch's weight: an epoch read while one
    verdict is still being recomputed would give that participant no share at all."""
    from gonka_cli.node.genesis import ChainParams, NodeHome, init_home, node_key
    from gonka_cli.node.ledger import Ledger
    from gonka_cli.node.network import Network

    params = NetworkParams(epoch_blocks=4, poc_generate_blocks=1, poc_validate_blocks=1)
    init_home(tmp_path / "home", params=ChainParams(block_time_s=1.0), network=params)
    home = NodeHome(tmp_path / "home")
    key = node_key(home)
    ledger = Ledger(str(home.db_file), home.load_genesis(), node_key=key)
    net = Network(ledger, str(home.network_db_file), key)
    try:
        first, second = account("first").address, account("second").address
        net.poc.record(0, first, 10, 10, "valid", "judged")
        net.poc.record(0, second, 20, 20, "valid", "judged")
        for _ in range(7):
            net.on_block(ledger.make_block())  # height 7: epoch 1's inference phase
        # Epoch 1: the first verdict is in, the second one's answers are being recomputed.
        net.poc.record(1, first, 30, 30, "valid", "judged")
        net.db.execute("INSERT INTO poc_answers VALUES (1, ?, '{}', '[]')", (second,))
        assert net.weights() == (0, {first: 10, second: 20})
        net.poc.record(1, second, 40, 40, "valid", "judged at last")
        assert net.weights() == (1, {first: 30, second: 40})
    finally:
        net.close()
        ledger.close()
