"""Stake that can be lost: collateral locked at registration, slashed for PoC fraud and failed
replays, jail, unbonding and return, on a real node over HTTP.

PoC verdicts and validators' votes are the PoC round's and the validators' records; these
tests write those rows into the node's `network.db` themselves (with their own SQLite
connection, as another process would) and check what the stake rules make of them: the
slashes, the jail, the rewards and what the ledger shows.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.node.epochs import GNK, NetworkParams, epoch_at
from gonka_cli.node.ledger import COLLATERAL_ADDRESS, MINT_ADDRESS, module_address
from gonka_cli.node.runner import Node
from gonka_cli.protocol import VALIDATION_REWARD, ErrorCode, StakeInfo
from gonka_cli.storage import open_sqlite, transaction
from tests.conftest import StartNode, node_ledger
from tests.node.helpers import WAIT_S, Api, account
from tests.node.network_helpers import (
    Caller,
    Miner,
    assert_refused,
    fund_collateral,
    honest_answer,
    wait_until,
)

TINY = "gonka-tiny"
COLLATERAL = 1_000 * GNK
REWARD = 10_000 * GNK
REQUESTER = account("stake-requester")
HELLO = [{"role": "user", "content": "hello"}]


def network(**changes: Any) -> NetworkParams:
    """Short epochs (4 s at the tests' 0.1 s blocks), the default stake."""
    base: dict[str, Any] = {
        "epoch_blocks": 40,
        "poc_generate_blocks": 10,
        "poc_validate_blocks": 10,
        "validation_share": 0.0,
    }
    base.update(changes)
    return NetworkParams(**base)


@pytest.fixture
def node(start_node: StartNode) -> Node:
    return start_node([(REQUESTER.address, 10**15)], network=network())


@pytest.fixture
def svc(node: Node) -> Caller:
    return Caller(node)


def stake(caller: Caller, address: str) -> StakeInfo:
    data = caller.public(f"/v1/participants/{address}/stake")
    info = StakeInfo.from_dict(data)
    assert info.to_dict() == data  # the wire form round-trips exactly
    return info


def balance(node: Node, address: str) -> int:
    state = node_ledger(node).account(address)
    return state.balance if state else 0


def epoch_now(node: Node) -> int:
    ledger = node_ledger(node)
    return epoch_at(ledger.genesis.network_params, ledger.height).epoch


def record_verdicts(node: Node, verdicts: dict[str, tuple[str, int]]) -> int:
    """Write PoC verdicts `address -> (status, weight)` for an epoch that has at least a few
    blocks left (so its settlement has not read them yet); returns that epoch."""
    ledger = node_ledger(node)
    params = ledger.genesis.network_params
    wait_until(
        lambda: epoch_at(params, ledger.height).end_height - ledger.height >= 8,
        "an epoch with blocks left",
    )
    epoch = epoch_at(params, ledger.height).epoch
    db = open_sqlite(Path(node.home_path) / "network.db")
    try:
        with transaction(db):
            db.executemany(
                "INSERT INTO poc_results VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (epoch, a, max(weight, 1), weight, status, f"test verdict {status}")
                    for a, (status, weight) in verdicts.items()
                ],
            )
    finally:
        db.close()
    return epoch


def record_votes(node: Node, epoch: int, votes: list[tuple[str, str, int]]) -> None:
    """Validators' votes `(validator, subject, contradicted)` whose verdict is known."""
    from gonka_cli.node import votes as votes_module

    db = open_sqlite(Path(node.home_path) / "network.db")
    try:
        db.executescript(votes_module.SCHEMA)
        with transaction(db):
            db.executemany(
                "INSERT INTO validator_votes VALUES (?, ?, 'inference', ?, 'valid', 1, ?)",
                [(epoch, v, subject, c) for v, subject, c in votes],
            )
    finally:
        db.close()


def wait_settled(caller: Caller, epoch: int) -> dict[str, Any]:
    """The record of `epoch` once its settlement transaction is in a block."""

    def settled() -> dict[str, Any] | None:
        resp = caller.get(f"/v1/epochs/{epoch}")
        if resp.status_code == 404:
            return None  # not started yet
        record: dict[str, Any] = resp.json()
        if record["settled_height"] is None:
            return None
        tx = record["settlement_tx"]
        if tx and not caller.get(f"/cosmos/tx/v1beta1/txs/{tx}").ok:
            return None
        return record

    found: dict[str, Any] = wait_until(settled, f"the settlement of epoch {epoch}", 2 * WAIT_S)
    return found


def payments(caller: Caller, address: str) -> dict[str, int]:
    earnings = caller.public(f"/v1/participants/{address}/earnings")
    return {
        "poc_reward": int(earnings["poc_reward_ngonka"]),
        "inference_fee": int(earnings["inference_fees_ngonka"]),
        "validation_reward": int(earnings["validation_reward_ngonka"]),
    }


# --- locking ------------------------------------------------------------------------------


def test_registration_locks_the_collateral_once_visible_over_rest(node: Node, svc: Caller) -> None:
    assert COLLATERAL_ADDRESS == module_address("collateral")
    miner = Miner(svc, "stake-locker")
    fund_collateral(svc.url, miner.address)
    wallet = balance(node, miner.address)
    supply = Api(node).supply()
    resp = miner.send("POST", "/v1/participants", miner.registration())
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["collateral_ngonka"] == str(COLLATERAL)
    tx = Api(node).wait_tx(answer["collateral_tx"])
    assert tx["tx_response"]["code"] == 0
    # A real ledger entry: the wallet paid it, the collateral account holds it.
    assert balance(node, miner.address) == wallet - COLLATERAL
    assert Api(node).balance(COLLATERAL_ADDRESS) == COLLATERAL
    assert Api(node).supply() == supply
    info = stake(svc, miner.address)
    assert (info.status, info.eligible, info.collateral_ngonka) == ("bonded", True, COLLATERAL)
    assert info.required_ngonka == COLLATERAL
    assert info.collateral_address == COLLATERAL_ADDRESS
    assert [(m.kind, m.amount_ngonka, m.subject) for m in info.moves] == [
        ("lock", COLLATERAL, answer["collateral_tx"])
    ]
    row = next(
        p
        for p in svc.public("/v1/epochs/current/participants")["participants"]
        if p["address"] == miner.address
    )
    assert row["collateral_ngonka"] == str(COLLATERAL)
    assert row["eligible"] is True
    assert row["jailed_until_epoch"] is None and row["unbonding_until_epoch"] is None
    # Registering again (new devices) locks nothing more.
    again = miner.send("POST", "/v1/participants", {**miner.registration(), "devices": []})
    assert again.status_code == 200, again.text
    assert again.json()["collateral_tx"] == ""
    assert again.json()["collateral_ngonka"] == str(COLLATERAL)
    Api(node).next_block()
    assert balance(node, miner.address) == wallet - COLLATERAL
    assert Api(node).balance(COLLATERAL_ADDRESS) == COLLATERAL


def test_registration_without_the_collateral_is_refused_saying_how_to_fund(
    node: Node, svc: Caller
) -> None:
    poor = Miner(svc, "stake-poor")
    resp = poor.send("POST", "/v1/participants", poor.registration())
    message = assert_refused(resp, ErrorCode.INSUFFICIENT_COLLATERAL)
    assert str(COLLATERAL) in message and "faucet" in message
    assert poor.address not in {
        p["address"] for p in svc.public("/v1/epochs/current/participants")["participants"]
    }
    assert stake(svc, poor.address).status == "none"
    # Not registered: no commit, no work.
    assert_refused(poor.commit(0, 1, "00" * 32), ErrorCode.NOT_REGISTERED)


# --- fraud ----------------------------------------------------------------------------------


def test_fraud_is_slashed_and_jailed_and_the_honest_reward_is_unchanged(
    node: Node, svc: Caller
) -> None:
    cheat = Miner(svc, "stake-cheat").register()
    honest = Miner(svc, "stake-honest").register()
    supply = Api(node).supply()
    epoch = record_verdicts(node, {cheat.address: ("fraud", 0), honest.address: ("valid", 500)})
    # Jailed at once: no commit, not eligible, until epoch + jail_epochs.
    info = stake(svc, cheat.address)
    assert (info.status, info.eligible, info.jailed_until_epoch) == ("jailed", False, epoch + 2)
    assert_refused(cheat.commit(epoch, 10, "00" * 32), ErrorCode.NOT_ELIGIBLE)
    wait_settled(svc, epoch)
    slash = COLLATERAL // 5
    info = stake(svc, cheat.address)
    assert info.collateral_ngonka == COLLATERAL - slash
    assert [(m.epoch, m.kind, m.amount_ngonka) for m in info.moves if m.kind != "lock"] == [
        (epoch, "fraud_slash", slash)
    ]
    assert Api(node).balance(COLLATERAL_ADDRESS) == 2 * COLLATERAL - slash
    # Burned: the supply lost it (and gained the epoch reward, all of it the honest one's).
    assert Api(node).supply() == supply - slash + REWARD
    assert balance(node, MINT_ADDRESS) == 0  # what the mint receives is burned
    assert payments(svc, honest.address)["poc_reward"] == REWARD
    assert payments(svc, cheat.address)["poc_reward"] == 0
    # The next epoch: its weight counts for nothing even with a valid verdict.
    wait_until(lambda: epoch_now(node) == epoch + 1, "the next epoch")
    nxt = record_verdicts(node, {cheat.address: ("valid", 500), honest.address: ("valid", 500)})
    assert nxt == epoch + 1
    assert stake(svc, cheat.address).status == "jailed"
    wait_settled(svc, nxt)
    assert payments(svc, honest.address)["poc_reward"] == 2 * REWARD
    assert payments(svc, cheat.address)["poc_reward"] == 0
    # A jailed participant takes no inference: every chat goes to the honest one.
    with ThreadPoolExecutor(4) as pool:
        chats = [
            pool.submit(
                svc.send,
                "POST",
                "/v1/chat/completions",
                {"model": TINY, "messages": HELLO, "max_tokens": 2},
                key=REQUESTER.key,
            )
            for _ in range(4)
        ]
        served = 0
        limit = time.monotonic() + 2 * WAIT_S
        while served < 4 and time.monotonic() < limit:
            assert cheat.items() == []
            for item in honest.items(wait_s=0.2):
                assert item["kind"] == "inference"
                assert honest.result(item["id"], honest_answer(item)).status_code == 200
                served += 1
        assert served == 4
        for chat in chats:
            assert chat.result(timeout=WAIT_S).json()["gonka"]["executor"] == honest.address
    # Jail over: eligible again, with what is left.
    wait_until(lambda: epoch_now(node) > epoch + 2, "the end of the jail")
    info = stake(svc, cheat.address)
    assert (info.status, info.eligible, info.jailed_until_epoch) == ("bonded", True, None)


def test_proofs_that_fail_the_structural_checks_count_as_fraud(node: Node, svc: Caller) -> None:
    bad = Miner(svc, "stake-invalid").register()
    epoch = record_verdicts(node, {bad.address: ("invalid", 0)})
    assert stake(svc, bad.address).jailed_until_epoch == epoch + 2
    wait_settled(svc, epoch)
    assert stake(svc, bad.address).collateral_ngonka == COLLATERAL - COLLATERAL // 5


def test_junk_keys_each_cost_a_slash_and_leave_the_honest_reward_alone(
    node: Node, svc: Caller
) -> None:
    junk = [Miner(svc, f"stake-junk-{i}").register() for i in range(12)]
    honest = Miner(svc, "stake-junk-honest").register()
    supply = Api(node).supply()
    verdicts = {j.address: ("fraud", 0) for j in junk}
    verdicts[honest.address] = ("valid", 200)
    epoch = record_verdicts(node, verdicts)
    wait_settled(svc, epoch)
    slash = COLLATERAL // 5
    for j in junk:
        info = stake(svc, j.address)
        assert info.collateral_ngonka == COLLATERAL - slash
        assert info.status == "jailed"
    assert Api(node).balance(COLLATERAL_ADDRESS) == 13 * COLLATERAL - 12 * slash
    assert Api(node).supply() == supply + REWARD - 12 * slash
    assert payments(svc, honest.address)["poc_reward"] == REWARD
    assert stake(svc, honest.address).collateral_ngonka == COLLATERAL


# --- failed replays -----------------------------------------------------------------------


def test_a_failed_replay_costs_collateral_and_dispatch_share(start_node: StartNode) -> None:
    node = start_node([(REQUESTER.address, 10**15)], network=network(validation_share=1.0))
    svc = Caller(node)
    liar = Miner(svc, "stake-liar", [TINY]).register()
    with ThreadPoolExecutor(1) as pool:
        chat = pool.submit(
            svc.send,
            "POST",
            "/v1/chat/completions",
            {"model": TINY, "messages": HELLO, "max_tokens": 3, "temperature": 0},
            key=REQUESTER.key,
        )
        item = liar.next_item("inference")
        # Made-up tokens with made-up logprobs: the replay cannot pass them.
        made_up = {
            "tokens": [7, 7, 7],
            "top_logprobs": [[{"token": 7, "logprob": -0.01}]] * 3,
            "finish_reason": "length",
        }
        assert liar.result(item["id"], made_up).status_code == 200
        answer = chat.result(timeout=WAIT_S).json()
    inference_id = answer["gonka"]["inference_id"]

    def judged() -> dict[str, Any] | None:
        record: dict[str, Any] = svc.public(f"/v1/inferences/{inference_id}")
        return record if record["validation"] == "failed" else None

    wait_until(judged, "the replay's verdict", 2 * WAIT_S)
    network_state = node.network
    assert network_state is not None
    participants = network_state.participants
    # Its dispatch share halves: (1 + weight) / (1 + 1 failed replay in the window).
    assert participants.recent_failures(liar.address) == 1
    assert participants.dispatch_weight(participants[liar.address], 0) == 0.5
    assert participants.dispatch_weight(participants[liar.address], 9) == 5.0

    def settled() -> dict[str, Any] | None:
        record: dict[str, Any] = svc.public(f"/v1/inferences/{inference_id}")
        return record if record["settled_epoch"] is not None else None

    record = wait_until(settled, "the inference's settlement", 2 * WAIT_S)
    wait_settled(svc, record["settled_epoch"])
    slash = COLLATERAL // 100
    info = stake(svc, liar.address)
    assert info.collateral_ngonka == COLLATERAL - slash
    assert [(m.kind, m.amount_ngonka, m.subject) for m in info.moves if m.kind != "lock"] == [
        ("validation_slash", slash, inference_id)
    ]
    assert payments(svc, liar.address)["inference_fee"] == 0
    assert Api(node).balance(COLLATERAL_ADDRESS) == COLLATERAL - slash


# --- validation rewards ---------------------------------------------------------------------


def test_agreed_votes_are_paid_and_counted_as_earnings(node: Node, svc: Caller) -> None:
    good = Miner(svc, "stake-good-validator").register()
    wrong = Miner(svc, "stake-wrong-validator").register()
    epoch = record_verdicts(node, {good.address: ("valid", 10)})
    record_votes(
        node,
        epoch,
        [(good.address, "inf-a", 0), (good.address, "inf-b", 0), (wrong.address, "inf-a", 1)],
    )
    wait_settled(svc, epoch)
    reward = NetworkParams().validation_reward_ngonka
    assert payments(svc, good.address)["validation_reward"] == 2 * reward
    assert payments(svc, wrong.address)["validation_reward"] == 0
    earnings = svc.public(f"/v1/participants/{good.address}/earnings")
    kinds = [r["kind"] for r in earnings["records"]]
    assert VALIDATION_REWARD in kinds
    assert int(earnings["total_ngonka"]) == REWARD + 2 * reward


# --- leaving --------------------------------------------------------------------------------


def test_leave_unbonds_and_returns_the_collateral_across_a_restart(
    start_node: StartNode, tmp_path: Path
) -> None:
    node = start_node([(REQUESTER.address, 10**15)], network=network(), name="leave")
    svc = Caller(node)
    miner = Miner(svc, "stake-leaver").register()
    wallet = balance(node, miner.address)
    # Only the address's own key may ask.
    other = Miner(svc, "stake-not-the-leaver").register()
    assert_refused(
        other.send("DELETE", f"/v1/participants/{miner.address}"), ErrorCode.KEY_MISMATCH
    )
    resp = miner.send("DELETE", f"/v1/participants/{miner.address}")
    assert resp.status_code == 200, resp.text
    info = StakeInfo.from_dict(resp.json())
    leave_epoch = info.epoch
    assert (info.status, info.eligible) == ("unbonding", False)
    assert info.unbonding_until_epoch == leave_epoch + 1
    # Asking again changes nothing; no commit while unbonding.
    again = StakeInfo.from_dict(miner.send("DELETE", f"/v1/participants/{miner.address}").json())
    assert again.unbonding_until_epoch == leave_epoch + 1
    assert_refused(miner.commit(leave_epoch, 10, "00" * 32), ErrorCode.NOT_ELIGIBLE)
    # The unbonding survives a restart.
    home = Path(node.home_path)
    node.stop()
    node = start_node(home=home)
    svc = Caller(node)
    miner = Miner(svc, "stake-leaver")
    assert stake(svc, miner.address).status == "unbonding"
    assert balance(node, miner.address) == wallet
    wait_settled(svc, leave_epoch + 1)
    info = stake(svc, miner.address)
    assert (info.status, info.collateral_ngonka) == ("returned", 0)
    assert [(m.epoch, m.kind, m.amount_ngonka) for m in info.moves if m.kind != "lock"] == [
        (leave_epoch + 1, "return", COLLATERAL)
    ]
    assert balance(node, miner.address) == wallet + COLLATERAL
    assert Api(node).balance(COLLATERAL_ADDRESS) == COLLATERAL  # the other one's
    # Registering again locks anew.
    back = miner.send("POST", "/v1/participants", miner.registration())
    assert back.status_code == 200, back.text
    assert back.json()["collateral_tx"] != ""
    Api(node).wait_tx(back.json()["collateral_tx"])
    assert stake(svc, miner.address).status == "bonded"


def test_slashes_and_jail_survive_a_restart(start_node: StartNode) -> None:
    node = start_node([(REQUESTER.address, 10**15)], network=network(), name="restart")
    svc = Caller(node)
    cheat = Miner(svc, "stake-restart-cheat").register()
    epoch = record_verdicts(node, {cheat.address: ("fraud", 0)})
    wait_settled(svc, epoch)
    before = stake(svc, cheat.address)
    home = Path(node.home_path)
    node.stop()
    node = start_node(home=home)
    svc = Caller(node)
    after = stake(svc, cheat.address)
    assert after.collateral_ngonka == before.collateral_ngonka == COLLATERAL - COLLATERAL // 5
    assert after.jailed_until_epoch == epoch + 2
    # Not slashed twice: a later settlement moves nothing more of it.
    wait_settled(svc, epoch + 1)
    assert stake(svc, cheat.address).collateral_ngonka == COLLATERAL - COLLATERAL // 5
    assert Api(node).balance(COLLATERAL_ADDRESS) == COLLATERAL - COLLATERAL // 5


def test_a_lost_settlement_is_made_again_and_slashes_once(start_node: StartNode) -> None:
    # One-second blocks: time to catch the settlement in the mempool before its block.
    node = start_node(
        network=network(epoch_blocks=16, poc_generate_blocks=3, poc_validate_blocks=3),
        name="lost-settlement",
        block_time_s=1.0,
    )
    svc = Caller(node)
    cheat = Miner(svc, "stake-lost-settlement").register()
    epoch = record_verdicts(node, {cheat.address: ("fraud", 0)})
    ledger = node_ledger(node)

    def made() -> str | None:
        resp = svc.get(f"/v1/epochs/{epoch}")
        tx = resp.json()["settlement_tx"] if resp.status_code == 200 else None
        return str(tx) if tx else None

    txhash = wait_until(made, f"the settlement of epoch {epoch}", 2 * WAIT_S)
    # The node dies before the settlement's block: its mempool is lost.
    with ledger._lock:
        assert ledger.pending(txhash), "the settlement reached its block first"
        ledger.mempool.clear()
        ledger._mempool_hashes.clear()
        ledger._mempool_bytes = 0
        ledger._check.clear()
    wait_settled(svc, epoch)
    slash = COLLATERAL // 5
    info = stake(svc, cheat.address)
    assert info.collateral_ngonka == COLLATERAL - slash
    assert [m.kind for m in info.moves] == ["lock", "fraud_slash"]
    assert Api(node).balance(COLLATERAL_ADDRESS) == COLLATERAL - slash


def test_a_lost_lock_does_not_count_and_registering_again_locks_anew(
    start_node: StartNode,
) -> None:
    node = start_node([(REQUESTER.address, 10**15)], network=network(), name="lost")
    svc = Caller(node)
    miner = Miner(svc, "stake-lost-lock")
    fund_collateral(svc.url, miner.address)
    ledger = node_ledger(node)
    network_state = node.network
    assert network_state is not None
    wallet = balance(node, miner.address)
    # The lock is in the mempool when the node dies, and the mempool dies with it (as after
    # kill -9). Holding the ledger's lock keeps the next block from being made meanwhile.
    with ledger._lock:
        participant = network_state.participants.register(
            miner.address, miner.key.public_key.to_bytes(), [TINY], []
        )
        assert ledger.pending(participant.lock_tx)
        ledger.mempool.clear()
        ledger._mempool_hashes.clear()
        ledger._mempool_bytes = 0
        ledger._check.clear()
    Api(node).next_block()
    info = stake(svc, miner.address)
    assert (info.status, info.collateral_ngonka, info.eligible) == ("none", 0, False)
    assert balance(node, miner.address) == wallet
    again = miner.send("POST", "/v1/participants", miner.registration())
    assert again.status_code == 200, again.text
    assert again.json()["collateral_tx"] != ""
    Api(node).wait_tx(again.json()["collateral_tx"])
    assert stake(svc, miner.address).collateral_ngonka == COLLATERAL
    assert balance(node, miner.address) == wallet - COLLATERAL
