"""End to end: real participants mine and serve on a real node, and the ledger pays them.

Participants (`tests/node/participant.py`) compute real gonka-tiny artifacts and inference
in-process and speak to the node only over HTTP. Epochs are short (0.05 s blocks).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gonka_cli.chain.client import ChainClient
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.node.epochs import NetworkParams
from gonka_cli.node.ledger import COLLATERAL_ADDRESS, ESCROW_ADDRESS, MINT_ADDRESS, Ledger
from gonka_cli.node.runner import Node
from gonka_cli.protocol import ErrorCode
from gonka_cli.settings import NetworkProfile
from gonka_cli.wallet.transfer import history
from gonka_cli.workclient import WorkClient, WorkRefused
from tests.conftest import StartNode, node_ledger, node_url
from tests.node.helpers import account
from tests.node.network_helpers import fund_collateral
from tests.node.participant import TestParticipant

BLOCK_S = 0.05
REWARD = 9_000_000
PRICE = 1_000
REQUESTER = account("requester")
HELLO = [{"role": "user", "content": "hello"}]


def network(**changes: Any) -> NetworkParams:
    base: dict[str, Any] = {
        "epoch_blocks": 120,
        "poc_generate_blocks": 60,
        "poc_validate_blocks": 40,
        "epoch_reward_ngonka": REWARD,
        "price_per_token_ngonka": PRICE,
        "inference_timeout_s": 3.0,
        "participant_timeout_s": 10.0,
    }
    base.update(changes)
    return NetworkParams(**base)


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


def balance(node: Node, address: str) -> int:
    account_state = node_ledger(node).account(address)
    return account_state.balance if account_state else 0


class SupplyWatch:
    """Checks supply == genesis + minted under the ledger's lock, many times per block."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.samples = 0
        self.heights: set[int] = set()
        self.broken: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.ledger._lock:
                supply, expected = self.ledger.total_supply(), self.ledger.supply_expected()
                height = self.ledger.height
            self.samples += 1
            self.heights.add(height)
            if supply != expected:
                self.broken.append(f"height {height}: supply {supply} != {expected}")
            time.sleep(BLOCK_S / 4)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def participants() -> Iterator[list[TestParticipant]]:
    started: list[TestParticipant] = []
    yield started
    for participant in started:
        participant.stop()


def test_an_epoch_pays_the_honest_miner_and_nobody_else(
    start_node: StartNode, participants: list[TestParticipant]
) -> None:
    node = start_node(network=network(), block_time_s=BLOCK_S)
    ledger = node_ledger(node)
    watch = SupplyWatch(ledger)
    url = node_url(node)
    honest = TestParticipant(url).start()
    second = TestParticipant(url, nonces=100).start()
    cheater = TestParticipant(url, fake_share=0.15).start()
    vanishing = TestParticipant(url, answer_proofs=False).start()
    participants += [honest, second, cheater, vanishing]

    # Epoch 0 ends at height 120; its settlement goes into block 122 at the latest.
    record = wait_for(
        lambda: (r := WorkClient(url).epoch_record(0).to_dict()).get("settlement_tx") and r,
        what="the settlement of epoch 0",
    )
    wait_for(lambda: ledger.tx(record["settlement_tx"]), what="the settlement's block")
    watch.stop()

    results = {r["address"]: r for r in record["poc_results"]}
    assert honest.address in results, honest.refusals
    assert results[honest.address]["status"] == "valid"
    assert results[honest.address]["weight"] == 200
    assert results[second.address]["weight"] == 100
    assert results[cheater.address]["status"] == "fraud"
    assert results[cheater.address]["weight"] == 0
    assert "30 of 200 sampled artifacts mismatched" in results[cheater.address]["reason"]
    assert results[vanishing.address]["status"] == "no_answer"
    assert results[vanishing.address]["weight"] == 0
    assert record["total_weight"] == 300

    # The reward is shared by weight (integer division), minted, and nothing else moves.
    assert balance(node, honest.address) == REWARD * 200 // 300
    assert balance(node, second.address) == REWARD * 100 // 300
    assert balance(node, cheater.address) == 0
    assert balance(node, vanishing.address) == 0
    assert ledger.minted == REWARD * 200 // 300 + REWARD * 100 // 300
    assert watch.broken == []
    assert len(watch.heights) >= 50  # the check ran at (nearly) every block

    # The payment is a transaction of the ledger, as `gonka wallet history` shows it.
    client = ChainClient(NetworkProfile("test", "gonka-devnet", (url,)))
    entries = [
        (e.direction, e.counterparty, e.amount_ngonka, e.memo)
        for e in history(client, honest.address)
    ]
    assert [e for e in entries if e[1] == MINT_ADDRESS] == [
        ("in", MINT_ADDRESS, REWARD * 200 // 300, "epoch 0 settlement")
    ]
    # Beside it: the collateral its registration locked.
    collateral = NetworkParams().collateral_ngonka
    assert (
        "out",
        COLLATERAL_ADDRESS,
        collateral,
        f"participant {honest.address} collateral",
    ) in entries


def test_inference_is_paid_from_escrow_and_altered_tokens_fail_validation(
    start_node: StartNode, participants: list[TestParticipant]
) -> None:
    node = start_node(
        [(REQUESTER.address, 10**9)],
        network=network(validation_share=1.0, epoch_reward_ngonka=0),
        block_time_s=BLOCK_S,
    )
    ledger = node_ledger(node)
    url = node_url(node)
    honest = TestParticipant(url).start()
    liar = TestParticipant(url, alter_tokens=True).start()
    participants += [honest, liar]
    requester = WorkClient(url, REQUESTER.key)
    # 60 tokens: Gonka's comparison dilutes answers under 100 tokens, so a liar's swapped
    # tokens fail only when the answer is long enough (about 0.91 here, pass mark 0.96).
    answers = [
        requester.chat("gonka-tiny", HELLO, max_tokens=60, temperature=0.0, logprobs=True).to_dict()
        for _ in range(10)
    ]
    streamed = list(requester.chat_stream("gonka-tiny", HELLO, max_tokens=60, temperature=0.0))
    assert streamed[-1]["choices"][0]["finish_reason"] in ("length", "stop")
    assert streamed[-1]["usage"]["completion_tokens"] == 60 or (
        streamed[-1]["choices"][0]["finish_reason"] == "stop"
    )
    by_executor: dict[str, list[dict[str, Any]]] = {honest.address: [], liar.address: []}
    for answer in answers:
        assert answer["object"] == "chat.completion"
        assert answer["usage"]["prompt_tokens"] == 9
        assert (
            len(answer["choices"][0]["logprobs"]["content"]) == answer["usage"]["completion_tokens"]
        )
        by_executor[answer["gonka"]["executor"]].append(answer)
    assert by_executor[honest.address] and by_executor[liar.address], "both should serve"

    def validated() -> list[dict[str, Any]]:
        records = [requester.inference(a["id"]).to_dict() for a in answers]
        return records if all(r["validation"] != "pending" for r in records) else []

    records = {r["id"]: r for r in wait_for(validated, what="the replays")}
    for answer in by_executor[honest.address]:
        assert records[answer["id"]]["validation"] == "passed"
        assert records[answer["id"]]["validator"] in (liar.address, node.info.node_address)  # type: ignore[union-attr]
    for answer in by_executor[liar.address]:
        assert records[answer["id"]]["validation"] == "failed"
    streamed_by_liar = streamed[-1]["gonka"]["executor"] == liar.address
    rows = {p["address"]: p for p in requester.participants().to_dict()["participants"]}
    wait_for(
        lambda: requester.inference(streamed[-1]["id"]).validation != "pending",
        what="the streamed answer's replay",
    )
    rows = {p["address"]: p for p in requester.participants().to_dict()["participants"]}
    assert rows[liar.address]["penalties"] == len(by_executor[liar.address]) + streamed_by_liar
    assert rows[honest.address]["penalties"] == 0

    # Epoch 0's settlement: the honest executor is paid per token, the liar is not, and
    # the requester gets back the unused escrow and everything the liar was to be paid.
    ids = [a["id"] for a in answers] + [streamed[-1]["id"]]
    wait_for(lambda: all(requester.inference(i).settled_epoch == 0 for i in ids))
    tx = WorkClient(url).epoch_record(0).settlement_tx
    wait_for(lambda: ledger.tx(tx), what="the settlement's block")
    final = [requester.inference(i).to_dict() for i in ids]
    earned = sum(
        (r["prompt_tokens"] + r["completion_tokens"]) * PRICE
        for r in final
        if r["executor"] == honest.address
    )
    assert all(r["validation"] == "passed" for r in final if r["executor"] == honest.address)
    assert balance(node, honest.address) == earned
    assert balance(node, liar.address) == 0
    assert balance(node, REQUESTER.address) == 10**9 - earned
    assert balance(node, ESCROW_ADDRESS) == 0
    assert ledger.total_supply() == ledger.supply_expected()


def test_a_vanished_executor_loses_the_task_to_another(
    start_node: StartNode, participants: list[TestParticipant]
) -> None:
    node = start_node(
        [(REQUESTER.address, 10**9)],
        network=network(inference_timeout_s=1.0, validation_share=0.0),
        block_time_s=BLOCK_S,
    )
    url = node_url(node)
    ghost_key = PrivateKey(bytes(31) + b"\x07")
    ghost = WorkClient(url, ghost_key)
    fund_collateral(url, ghost.address)
    ghost.register(["gonka-tiny"], [{"name": "cpu"}])
    requester = WorkClient(url, REQUESTER.key)
    answer: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: answer.update(requester.chat("gonka-tiny", HELLO, max_tokens=3).to_dict())
    )
    thread.start()
    # The ghost takes the task, then vanishes without answering.
    taken = wait_for(lambda: ghost.work(wait_s=0.5).items, what="the task")
    assert taken[0].kind == "inference"
    worker = TestParticipant(url, mine_poc=False).start()
    participants.append(worker)
    thread.join(timeout=60)
    assert answer, worker.refusals
    assert answer["gonka"]["executor"] == worker.address
    # Its late answer is refused: the task went to another participant.
    with pytest.raises(WorkRefused) as late:
        ghost.result(taken[0].id, {"tokens": [65], "top_logprobs": [[]]})
    assert (late.value.status, late.value.code) == (410, ErrorCode.ITEM_EXPIRED)


def test_a_settlement_lost_in_a_crash_is_made_again_and_paid_once(tmp_path: Any) -> None:
    """Kill the node between deciding a settlement and the block that holds it."""
    from gonka_cli.node.genesis import ChainParams, NodeHome, init_home, node_key
    from gonka_cli.node.ledger import Ledger
    from gonka_cli.node.network import Network

    root = tmp_path / "home"
    # No stake: the winner below is registered without funds.
    params = network(
        epoch_blocks=4, poc_generate_blocks=1, poc_validate_blocks=1, collateral_ngonka=0
    )
    init_home(root, params=ChainParams(block_time_s=1.0), network=params)
    home = NodeHome(root)
    genesis = home.load_genesis()
    key = node_key(home)

    def open_node() -> tuple[Ledger, Network]:
        ledger = Ledger(str(home.db_file), genesis, node_key=key)
        return ledger, Network(ledger, str(home.network_db_file), key)

    winner = account("winner").address
    ledger, net = open_node()
    net.register(winner, account("winner").key.public_key.to_bytes(), ["gonka-tiny"], [])
    for _ in range(4):
        net.on_block(ledger.make_block())
    net.db.execute("INSERT INTO poc_results VALUES (0, ?, 10, 10, 'valid', 'test')", (winner,))
    net.on_block(ledger.make_block())  # height 5: epoch 1 starts, epoch 0 is settled...
    assert ledger.mempool, "the settlement waits in the mempool"
    lost = net.epoch_record(0).settlement_tx  # type: ignore[union-attr]
    net.close()  # ...and the node dies before the next block: the mempool is gone
    ledger.close()

    ledger, net = open_node()
    assert not ledger.mempool and ledger.tx(lost) is None
    assert net.earnings(winner, 0).records == ()  # recorded, but in no block: not paid
    net.catch_up()
    # Signed again (RFC 6979 signatures are deterministic: the same transaction).
    assert ledger.pending(lost)
    assert net.earnings(winner, 0).records == ()
    for _ in range(8):
        net.on_block(ledger.make_block())
    assert ledger.tx(lost) is not None
    assert ledger.account(winner).balance == REWARD  # type: ignore[union-attr]
    # Earned once, at the block that holds the settlement made again.
    earnings = net.earnings(winner, 0)
    assert [(r.kind, r.amount_ngonka, r.epoch) for r in earnings.records] == [
        ("poc_reward", REWARD, 0)
    ]
    assert earnings.records[0].height == ledger.tx(lost).height  # type: ignore[union-attr]
    assert ledger.minted == REWARD
    assert ledger.total_supply() == ledger.supply_expected()
    net.close()
    ledger.close()
    assert ESCROW_ADDRESS != MINT_ADDRESS


def test_a_restart_in_the_validate_phase_sends_the_same_proof_requests(tmp_path: Any) -> None:
    from gonka_cli.node.genesis import ChainParams, NodeHome, init_home, node_key
    from gonka_cli.node.ledger import Ledger
    from gonka_cli.node.network import POC_PROOF, Network

    root = tmp_path / "home"
    params = network(epoch_blocks=10, poc_generate_blocks=3, poc_validate_blocks=3)
    init_home(root, params=ChainParams(block_time_s=1.0), network=params)
    home = NodeHome(root)
    genesis, key = home.load_genesis(), node_key(home)
    prover = account("prover").address

    def open_node() -> tuple[Ledger, Network]:
        ledger = Ledger(str(home.db_file), genesis, node_key=key)
        return ledger, Network(ledger, str(home.network_db_file), key)

    def requests_for(net: Network) -> list[dict[str, Any]]:
        return [i.payload for i in net.items.values() if i.kind == POC_PROOF]

    ledger, net = open_node()
    net.on_block(ledger.make_block())
    net.db.execute(
        "INSERT INTO commits VALUES (0, ?, ?, 5000, ?, 1)", (prover, params.poc_model, "ab" * 32)
    )
    for _ in range(3):
        net.on_block(ledger.make_block())  # height 4: the validate phase begins
    before = requests_for(net)
    assert len(before) == 1 and len(before[0]["leaf_indices"]) == 200
    net.close()
    ledger.close()

    ledger, net = open_node()
    net.catch_up()
    assert requests_for(net) == before
    for _ in range(3):
        net.on_block(ledger.make_block())  # the phase ends without an answer
    record = net.epoch_record(0)
    assert record is not None
    assert [(r.address, r.status, r.weight) for r in record.poc_results] == [
        (prover, "no_answer", 0)
    ]
    net.close()
    ledger.close()


def test_finished_work_items_are_forgotten_after_their_retention(tmp_path: Any) -> None:
    from gonka_cli.node.genesis import ChainParams, NodeHome, init_home, node_key
    from gonka_cli.node.ledger import Ledger
    from gonka_cli.node.network import ITEM_RETENTION_S, Network, WorkItem

    root = tmp_path / "home"
    init_home(root, params=ChainParams(block_time_s=1.0), network=network())
    home = NodeHome(root)
    key = node_key(home)
    ledger = Ledger(str(home.db_file), home.load_genesis(), node_key=key)
    net = Network(ledger, str(home.network_db_file), key)
    old = time.time() - ITEM_RETENTION_S - 1
    for name, state, deadline in (
        ("done-old", "done", old),
        ("expired-old", "expired", old),
        ("done-new", "done", time.time()),
        ("open-old", "open", old),
    ):
        net.items[name] = WorkItem(name, "inference", "someone", {}, deadline, state=state)
    net.prune()
    assert sorted(net.items) == ["done-new", "open-old"]
    net.close()
    ledger.close()


def test_settlement_waits_for_a_validation_still_running(tmp_path: Any) -> None:
    from gonka_cli.node.genesis import ChainParams, NodeHome, init_home, node_key
    from gonka_cli.node.ledger import Ledger
    from gonka_cli.node.network import POC_PROOF, Network, WorkItem

    root = tmp_path / "home"
    init_home(
        root,
        params=ChainParams(block_time_s=1.0),
        # No stake: the participant below is registered without funds.
        network=network(
            epoch_blocks=4, poc_generate_blocks=1, poc_validate_blocks=1, collateral_ngonka=0
        ),
    )
    home = NodeHome(root)
    key = node_key(home)
    ledger = Ledger(str(home.db_file), home.load_genesis(), node_key=key)
    net = Network(ledger, str(home.network_db_file), key)
    slow = account("slow").address
    net.register(slow, account("slow").key.public_key.to_bytes(), ["gonka-tiny"], [])
    for _ in range(4):
        net.on_block(ledger.make_block())
    # Its answers came in time and are being recomputed when the epoch ends: they are
    # stored, and their work item is gone (as after a restart, or a prune).
    item = WorkItem("proof-1", POC_PROOF, slow, {"epoch": 0}, time.time(), state="done")
    net.items[item.id] = item
    net.poc.proofs[(0, slow)] = item.id
    net.db.execute(
        "INSERT INTO commits VALUES (0, ?, ?, 10, ?, 1)", (slow, net.params.poc_model, "ab" * 32)
    )
    net.db.execute("INSERT INTO poc_answers VALUES (0, ?, '{}', '[]')", (slow,))
    del net.items[item.id]
    net.on_block(ledger.make_block())  # height 5: epoch 1 starts
    assert net.epoch_record(0).settlement_tx is None  # type: ignore[union-attr]
    assert net.epoch_record(0).poc_results == ()  # type: ignore[union-attr]
    net.poc.record(0, slow, 10, 10, "valid", "recomputed at last")
    net.on_block(ledger.make_block())
    settlement = net.epoch_record(0).settlement_tx  # type: ignore[union-attr]
    assert settlement
    net.on_block(ledger.make_block())
    assert ledger.tx(settlement) is not None
    assert ledger.account(slow).balance == REWARD  # type: ignore[union-attr]
    net.close()
    ledger.close()


@pytest.mark.parametrize(
    "seed",
    ["ab" * 32, "AB" * 31, "AB" * 32 + "0", "TEST_BLOCK", "", None, "G" * 64],
    ids=["lower-case", "short", "odd-length", "test-string", "empty", "none", "not-hex"],
)
def test_the_node_refuses_a_seed_that_is_not_a_devnet_block_hash(seed: Any) -> None:
    """The engine takes seeds verbatim; the devnet's format is checked at the node."""
    from gonka_cli.node.poc_round import PocInputError, check_seed

    with pytest.raises(PocInputError, match="block hash"):
        check_seed(seed)


@pytest.mark.parametrize(
    "pubkey",
    ["02" + "AB" * 32, "04" + "ab" * 32, "02" + "ab" * 31, "02" + "ab" * 33, "zz" * 33, None],
    ids=["upper-case", "uncompressed-prefix", "short", "long", "not-hex", "none"],
)
def test_the_node_refuses_a_pubkey_that_is_not_a_compressed_key(pubkey: Any) -> None:
    from gonka_cli.node.poc_round import PocInputError, check_pubkey_hex

    with pytest.raises(PocInputError, match="compressed secp256k1 key"):
        check_pubkey_hex(pubkey)


def test_the_node_takes_its_own_block_hashes_and_registered_keys(tmp_path: Any) -> None:
    from gonka_cli.node.genesis import ChainParams, NodeHome, init_home, node_key
    from gonka_cli.node.ledger import Ledger
    from gonka_cli.node.poc_round import check_pubkey_hex, check_seed

    init_home(tmp_path / "home", params=ChainParams(block_time_s=1.0), network=network())
    home = NodeHome(tmp_path / "home")
    key = node_key(home)
    ledger = Ledger(str(home.db_file), home.load_genesis(), node_key=key)
    try:
        for _ in range(3):
            block = ledger.make_block()
            assert check_seed(block.hash) == block.hash
    finally:
        ledger.close()
    for i in range(1, 6):
        pubkey = PrivateKey((i).to_bytes(32, "big")).public_key.to_hex()
        assert check_pubkey_hex(pubkey) == pubkey
