"""Validators chosen by weight, judged by majority.

The draw and the tally are checked on their own first (`gonka_cli.node.votes`), then the node's
recomputation queue with real worker threads (`gonka_cli.node.recompute`), then real nodes on
127.0.0.1 with real participants (`tests/node/participant.py`) that mine gonka-tiny, replay
and recompute in-process and speak to the node only over HTTP: some honest, one that votes
the opposite of the truth, one that never answers a validation, and a free key that serves
inference without any PoC weight.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gonka_cli.node import votes as vt
from gonka_cli.node.epochs import NetworkParams
from gonka_cli.node.genesis import NodeHome
from gonka_cli.node.recompute import Recomputer
from gonka_cli.node.runner import Node
from gonka_cli.protocol import POC_VALIDATION, VALIDATION_TASK, PocResult
from gonka_cli.storage import open_sqlite
from gonka_cli.workclient import WorkClient, WorkRefused
from tests.conftest import StartNode, node_ledger, node_url
from tests.node.helpers import account
from tests.node.network_helpers import fund_collateral, wait_until
from tests.node.participant import TestParticipant

REQUESTER = account("validators-requester")
HELLO = [{"role": "user", "content": "hello"}]
#: A safety net for waits on a busy machine, never a figure under test.
PATIENCE_S = 240.0
NONCES = 20


# --- the draw and the tally ----------------------------------------------------------------


def test_a_key_without_weight_is_never_drawn() -> None:
    rng = random.Random(7)
    weights = {"a": 100, "b": 300, "sybil": 0}
    seen: dict[str, int] = {}
    for _ in range(2000):
        drawn = vt.draw(["a", "b", "sybil", "stranger"], weights, 1, rng)
        assert len(drawn) == 1
        seen[drawn[0]] = seen.get(drawn[0], 0) + 1
    assert set(seen) == {"a", "b"}  # neither the weightless key nor one with no weight known
    assert seen["b"] > 2 * seen["a"]  # drawn by weight (expected 3:1)
    # Without replacement: everyone with weight once, however many are asked for.
    assert sorted(vt.draw(["a", "b", "sybil"], weights, 5, rng)) == ["a", "b"]
    assert vt.draw(["sybil"], weights, 2, rng) == []


def test_the_majority_is_by_weight_and_strictly_above_half() -> None:
    def votes(*pairs: tuple[str, int]) -> list[vt.Vote]:
        return [vt.Vote(f"v{i}", vote, weight) for i, (vote, weight) in enumerate(pairs)]

    assert vt.majority(votes(("valid", 51), ("invalid", 49))) is True
    assert vt.majority(votes(("valid", 50), ("invalid", 50))) is None
    assert vt.majority(votes(("valid", 10), ("valid", 10), ("invalid", 30))) is False
    assert vt.majority(votes(("valid", 1), ("invalid", 1), ("invalid", 1))) is False
    assert vt.majority([]) is None
    assert vt.unanimous(votes(("valid", 1), ("valid", 9)))
    assert not vt.unanimous(votes(("valid", 1), ("invalid", 9)))


def test_a_conviction_by_votes_needs_half_of_the_network_weight() -> None:
    """A lone validator with a sliver of weight can pass an answer, never convict one: below
    half of the network's weight an invalid majority leaves the verdict to the node."""
    lone_no = [vt.Vote("sybil", "invalid", 1)]
    assert vt.verdict(lone_no, network_weight=11) is None
    assert vt.verdict([vt.Vote("sybil", "valid", 1)], network_weight=11) is True
    assert vt.verdict([vt.Vote("a", "invalid", 6)], network_weight=11) is False
    assert vt.verdict([vt.Vote("a", "invalid", 5), vt.Vote("b", "valid", 1)], 10) is None
    assert vt.verdict([], network_weight=0) is None


def test_outcomes_count_agreed_and_contradicted_votes(tmp_path: Any) -> None:
    db = open_sqlite(tmp_path / "votes.db")
    db.executescript(vt.SCHEMA)
    honest, liar = vt.Vote("honest", "valid", 10), vt.Vote("liar", "invalid", 10)
    assert vt.record_votes(db, 3, vt.POC, "prover", [honest, liar], True) == ["liar"]
    assert vt.record_votes(db, 3, vt.INFERENCE, "inf-1", [honest], True) == []
    assert vt.record_votes(db, 4, vt.INFERENCE, "inf-2", [liar], False) == []
    assert vt.validator_outcomes(db, 3) == {"honest": (2, 0), "liar": (0, 1)}
    assert vt.validator_outcomes(db, 4) == {"liar": (1, 0)}
    assert vt.validator_outcomes(db, 5) == {}
    db.close()


def test_a_validator_recomputes_the_nonces_and_votes_by_the_binomial_test() -> None:
    """`run_poc_validation`, what the miner's worker and the test participant run: real
    gonka-tiny artifacts, the prover's own and made-up ones."""
    import base64

    from gonka_cli.compute.models import load_model
    from gonka_cli.compute.poc import PocInputParams, compute_artifacts
    from gonka_cli.miner.worker import run_poc_validation
    from gonka_cli.protocol import PocValidationResult

    model, params = load_model("gonka-tiny"), PocInputParams(seq_len=32)
    seed, key = "AB" * 32, "02" + "cd" * 32
    nonces = list(range(40))

    def compute(s: str, k: str, n: Any) -> list[bytes]:
        return compute_artifacts(model, s, k, list(n), params=params)

    honest = compute(seed, key, nonces)
    item: dict[str, Any] = {
        "seed": seed,
        "pubkey": key,
        "nonces": nonces,
        "vectors": [base64.b64encode(v).decode() for v in honest],
        "dist_threshold": 0.15,
        "p_mismatch": 0.05,
        "alpha": 0.05,
    }
    assert run_poc_validation(item, compute) == {"valid": True, "n_mismatch": 0}
    # Another key's vectors, one vector that is not base64, one of the wrong length.
    other = compute(seed, "03" + "cd" * 32, nonces[:10])
    forged = [base64.b64encode(v).decode() for v in other] + item["vectors"][10:]
    forged[10], forged[11] = "not base64!", base64.b64encode(b"short").decode()
    vote = PocValidationResult.from_dict(run_poc_validation({**item, "vectors": forged}, compute))
    assert (vote.valid, vote.n_mismatch) == (False, 12)


# --- the node's recomputation queue ---------------------------------------------------------


def test_recomputations_run_by_priority_within_the_budget() -> None:
    """Two workers, both busy: a flood queued before the prover with weight does not go
    first, and what no longer fits the epoch's budget is refused."""
    pool = ThreadPoolExecutor(2)
    gate = threading.Event()
    order: list[str] = []
    refused: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Future[Any]] = set()

        def spawn(coro: Any) -> None:
            tasks.add(asyncio.ensure_future(coro))

        queue = Recomputer(spawn, slots=2, budget_nonces=100)

        def job(name: str) -> Any:
            async def work() -> None:
                await loop.run_in_executor(pool, gate.wait)
                order.append(name)

            return work

        for i in range(8):
            queue.submit(1, 20, (1, 0), job(f"junk{i}"), lambda i=i: refused.append(f"junk{i}"))
        queue.submit(1, 20, (0, -500), job("honest"), lambda: refused.append("honest"))
        assert queue.active == 2 and len(queue) == 7
        gate.set()
        while queue.active or len(queue):
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        assert queue.spent == {1: 100}

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
    # The two that had the workers finish in either order; the honest prover comes next,
    # then the flood in arrival order until the budget of 100 nonces is spent.
    assert sorted(order[:2]) == ["junk0", "junk1"]
    assert order[2:] == ["honest", "junk2", "junk3"]
    assert refused == ["junk4", "junk5", "junk6", "junk7"]


# --- real nodes -------------------------------------------------------------------------------


def network(**changes: Any) -> NetworkParams:
    """0.1 s blocks: generate 6 s, validate 5 s, inference 4 s."""
    base: dict[str, Any] = {
        "epoch_blocks": 150,
        "poc_generate_blocks": 60,
        "poc_validate_blocks": 50,
        "poc_vote_blocks": 20,
        "epoch_reward_ngonka": 9_000_000,
        "inference_timeout_s": 5.0,
        "participant_timeout_s": 20.0,
    }
    base.update(changes)
    return NetworkParams(**base)


@pytest.fixture
def participants() -> Iterator[list[TestParticipant]]:
    started: list[TestParticipant] = []
    yield started
    for participant in started:
        participant.stop()


def reader(node: Node) -> sqlite3.Connection:
    """A connection of the test's own to the node's network.db (read only)."""
    return open_sqlite(NodeHome(node.home_path).network_db_file)


def results(url: str, epoch: int) -> dict[str, PocResult]:
    try:
        record = WorkClient(url).epoch_record(epoch)
    except WorkRefused:  # not started yet
        return {}
    return {r.address: r for r in record.poc_results}


def judged(url: str, epoch: int, addresses: list[str]) -> dict[str, PocResult] | None:
    found = results(url, epoch)
    return found if all(a in found for a in addresses) else None


def items_of(participant: TestParticipant, kind: str) -> list[dict[str, Any]]:
    return [d for d in participant.done if d["item"]["kind"] == kind]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_poc_votes_by_weight_with_a_liar_and_a_silent_validator(
    start_node: StartNode, participants: list[TestParticipant]
) -> None:
    """Epoch 0: nobody has weight, the node judges alone. Epoch 1: validators drawn by weight
    vote on each prover; a ballot the liar disputes is re-checked by the node, which
    contradicts the liar; the silent validator never counts, and the epoch settles."""
    node = start_node(
        network=network(poc_validators=5, dispute_recheck_share=1.0), block_time_s=0.1
    )
    url = node_url(node)
    honest = [TestParticipant(url, nonces=NONCES) for _ in range(3)]
    liar = TestParticipant(url, nonces=NONCES, lie_validations=True)
    silent = TestParticipant(url, nonces=NONCES, answer_validations=False)
    everyone = [*honest, liar, silent]
    for p in everyone:
        participants.append(p.start())
    weighted = [p.address for p in everyone]

    first = wait_until(lambda: judged(url, 0, weighted), "epoch 0's verdicts", PATIENCE_S)
    for p in everyone:
        assert (first[p.address].status, first[p.address].weight) == ("valid", NONCES)
        assert not first[p.address].reason.startswith("weighted vote")
    # A participant faking every vector joins in epoch 1.
    faker = TestParticipant(url, nonces=NONCES, fake_share=1.0)
    participants.append(faker.start())
    addresses = [*weighted, faker.address]
    db = reader(node)
    try:
        assert db.execute("SELECT COUNT(*) FROM validator_votes WHERE epoch = 0").fetchone()[0] == 0

        second = wait_until(lambda: judged(url, 1, addresses), "epoch 1's verdicts", PATIENCE_S)
        # Each prover's validators: every other participant with weight (the faker has none).
        votes = {
            subject: {v.validator: (v, c) for e, v, c in vt.votes_on(db, vt.POC, subject)}
            for subject in addresses
        }
        for p in everyone:
            verdict = second[p.address]
            assert (verdict.status, verdict.weight) == ("valid", NONCES), verdict.reason
            drawn = {q.address for q in everyone} - {p.address}
            voted = set(votes[p.address])
            assert voted == drawn - {silent.address}
            if liar.address in voted:  # the liar disputed it: the node re-checked
                assert verdict.reason.startswith("disputed vote re-checked by the node")
                assert votes[p.address][liar.address][1] == 1
            else:
                assert verdict.reason.startswith("weighted vote: valid")
            for address in voted - {liar.address}:
                assert votes[p.address][address][1] == 0
        # The faker's vectors: the honest validators say fraud, the liar says valid.
        verdict = second[faker.address]
        assert (verdict.status, verdict.weight) == ("fraud", 0), verdict.reason
        assert votes[faker.address][liar.address][1] == 1
        outcomes = vt.validator_outcomes(db, 1)
        assert outcomes[liar.address] == (0, len(addresses) - 1)
        assert silent.address not in outcomes
        for p in honest:
            assert outcomes[p.address] == (len(addresses) - 1, 0)
        # The silent validator held its items to their deadline, and nothing waited on it.
        assert items_of(silent, POC_VALIDATION) == []
        settlement = wait_until(
            lambda: WorkClient(url).epoch_record(1).settlement_tx,
            "epoch 1's settlement",
            PATIENCE_S,
        )
        ledger = node_ledger(node)
        wait_until(lambda: ledger.tx(settlement) is not None, "the settlement's block", PATIENCE_S)
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_replays_by_weight_contradict_the_liar_and_never_draw_a_free_key(
    start_node: StartNode, participants: list[TestParticipant]
) -> None:
    node = start_node(
        [(REQUESTER.address, 10**12)],
        network=network(validation_share=1.0, dispute_recheck_share=0.0),
        block_time_s=0.1,
    )
    url = node_url(node)
    honest = [TestParticipant(url, nonces=NONCES) for _ in range(3)]
    liar = TestParticipant(url, nonces=NONCES, lie_validations=True)
    sybil = TestParticipant(url, mine_poc=False)
    for p in [*honest, liar, sybil]:
        participants.append(p.start())
    weighted = [p.address for p in [*honest, liar]]
    wait_until(lambda: judged(url, 0, weighted), "epoch 0's verdicts", PATIENCE_S)
    wait_until(lambda: WorkClient(url).participants().weight_epoch == 0, "weights", PATIENCE_S)

    requester = WorkClient(url, REQUESTER.key)
    answers: list[dict[str, Any]] = []
    honest_addresses = {p.address for p in honest}
    # Until an honest executor's answer was replayed by the three others, the liar among them.
    while not [a for a in answers if a["gonka"]["executor"] in honest_addresses]:
        answers.append(requester.chat("gonka-tiny", HELLO, max_tokens=8, temperature=0.0).to_dict())
        assert len(answers) < 30, "no honest participant executed a request"

    def validated() -> list[Any]:
        records = [requester.inference(a["id"]) for a in answers]
        return records if all(r.validation != "pending" for r in records) else []

    records = wait_until(validated, "the replays", PATIENCE_S)
    db = reader(node)
    try:
        for answer, record in zip(answers, records, strict=True):
            executor = answer["gonka"]["executor"]
            votes = {v.validator: (v, c) for _, v, c in vt.votes_on(db, vt.INFERENCE, record.id)}
            assert sybil.address not in votes
            assert set(votes) <= set(weighted) - {executor}
            if executor not in honest_addresses:
                continue
            # Two honest validators outweigh the liar: the answer passes, the liar loses.
            assert record.validation == "passed", record
            assert set(votes) == set(weighted) - {executor}
            assert votes[liar.address][0].vote == "invalid" and votes[liar.address][1] == 1
            assert all(c == 0 for a, (_, c) in votes.items() if a != liar.address)
        assert items_of(sybil, VALIDATION_TASK) == []
        rows = {p.address: p for p in WorkClient(url).participants().participants}
        assert rows[sybil.address].weight == 0
        for p in honest:
            assert rows[p.address].penalties == 0
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_flood_of_junk_commits_is_judged_by_votes_not_by_the_node(
    start_node: StartNode, participants: list[TestParticipant]
) -> None:
    """An honest miner has weight from epoch 0; in epoch 1 junk keys commit made-up vectors.
    The node's workers are held until every answer is in: the honest prover's answers (no
    other validator with weight) are the only ones the node recomputes, the junk is judged
    by the honest validator's votes."""
    node = start_node(network=network(), block_time_s=0.1)
    assert node.network is not None
    net = node.network
    url = node_url(node)
    honest = TestParticipant(url, nonces=NONCES)
    participants.append(honest.start())
    wait_until(lambda: judged(url, 0, [honest.address]), "epoch 0's verdict", PATIENCE_S)
    junk = [TestParticipant(url, nonces=NONCES, fake_share=1.0) for _ in range(8)]
    for p in junk:
        participants.append(p.start())
    ledger = node_ledger(node)
    epoch1_validate = net.params.epoch_blocks + net.params.poc_generate_blocks + 1
    wait_until(lambda: ledger.height >= epoch1_validate - 5, "epoch 1's generate", PATIENCE_S)
    gate = threading.Event()
    for _ in range(net.ctx.validator_threads):
        net.ctx.validator.submit(gate.wait)
    try:
        addresses = [p.address for p in [honest, *junk]]
        second = wait_until(
            lambda: judged(url, 1, [p.address for p in junk]), "the junk verdicts", PATIENCE_S
        )
        assert results(url, 1).get(honest.address) is None  # its recomputation is held
    finally:
        gate.set()
    second = wait_until(lambda: judged(url, 1, addresses), "epoch 1's verdicts", PATIENCE_S)
    assert (second[honest.address].status, second[honest.address].weight) == ("valid", NONCES)
    for p in junk:
        verdict = second[p.address]
        assert (verdict.status, verdict.weight) == ("fraud", 0), verdict.reason
        assert verdict.reason.startswith("weighted vote: valid 0 of")
    assert net.poc.recomputer.spent.get(1) == NONCES  # the honest prover's nonces only
    assert len(items_of(honest, POC_VALIDATION)) == len(junk)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_miner_votes_on_another_participants_proofs(
    start_node: StartNode, participants: list[TestParticipant], tmp_path: Any
) -> None:
    """`gonka mine`'s miner (its device worker process on the CPU) takes `poc_validation`
    items: drawn by its weight from epoch 0, it recomputes a participant's nonces in epoch 1
    and its vote decides."""
    from gonka_cli.bench.devices import inventory
    from gonka_cli.crypto.secp256k1 import PrivateKey
    from gonka_cli.miner.devices import select_devices
    from gonka_cli.miner.miner import Miner, MinerConfig

    node = start_node(
        network=network(epoch_blocks=200, poc_generate_blocks=100, poc_validate_blocks=50),
        block_time_s=0.1,
    )
    url = node_url(node)
    prover = TestParticipant(url, nonces=NONCES)
    participants.append(prover.start())
    key = PrivateKey(bytes(range(1, 33)))
    fund_collateral(url, WorkClient(url, key).address)
    miner = Miner(
        WorkClient(url, key),
        key,
        tmp_path / "miner",
        MinerConfig(devices=tuple(select_devices("cpu", inventory(nvml=None)))),
    )
    thread = threading.Thread(target=miner.run, daemon=True)
    thread.start()
    try:
        both = [prover.address, miner.address]
        first = wait_until(lambda: judged(url, 0, both), "epoch 0's verdicts", PATIENCE_S)
        assert first[miner.address].status == "valid", first[miner.address].reason
        second = wait_until(lambda: judged(url, 1, [prover.address]), "the vote", PATIENCE_S)
    finally:
        miner.stop()
        thread.join(timeout=60)
    verdict = second[prover.address]
    assert (verdict.status, verdict.weight) == ("valid", NONCES), verdict.reason
    assert verdict.reason.startswith(f"weighted vote: valid {first[miner.address].weight} of")
    db = reader(node)
    try:
        votes = vt.votes_on(db, vt.POC, prover.address)
    finally:
        db.close()
    assert [(e, v.validator, v.vote, c) for e, v, c in votes] == [(1, miner.address, "valid", 0)]
