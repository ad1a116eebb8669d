"""Every attack of the devnet's threat table, run by a cheating participant against a real node.

Two networks on 127.0.0.1, each shared by the tests of one kind of work, each with honest
miners beside the cheaters (`tests/node/cheater.py`, real gonka-tiny compute in-process,
the node reached only over HTTP):

- **PoC** (epoch 0, judged by the node: nobody has weight yet): an honest miner, a count
  inflater, a 5% and a 15% faker, a flood of junk keys, and a key without funds. After
  epoch 0's settlement each test asserts one participant's verdict, weight, reward and
  collateral against the rules, and the jailed ones are refused in epoch 1.
- **Inference** (epoch 1, replays by validators drawn by epoch 0's weight, every answer
  validated): two honest miners, three executors that cheat on inference (any text with the
  true logprobs, a random short answer, a smaller model's answer) and a free key that fails
  every answer it would replay. After the settlement of every request each test asserts
  the verdicts, fees, refunds, penalties and slashes.

The expected figures are computed here from the genesis parameters, not read from the node.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import requests

from gonka_cli.node.epochs import GNK, NetworkParams
from gonka_cli.node.genesis import NodeHome
from gonka_cli.node.runner import Node
from gonka_cli.protocol import (
    POC_PROOF,
    POC_VALIDATION,
    VALIDATION_TASK,
    EpochRecord,
    ErrorCode,
    InferenceRecord,
    PocResult,
    StakeInfo,
)
from gonka_cli.storage import open_sqlite
from gonka_cli.workclient import WorkClient, WorkRefused
from tests.conftest import StartNode, node_ledger, node_url
from tests.node.cheater import TOO_LARGE_COUNTS, Cheater
from tests.node.helpers import WAIT_S, account
from tests.node.network_helpers import wait_until
from tests.node.participant import TestParticipant

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

#: A safety net for waits on a busy machine, never a figure under test.
PATIENCE_S = 240.0
TINY, SMALL = "gonka-tiny", "gonka-small"
HELLO = [{"role": "user", "content": "hello"}]
COLLATERAL = 1_000 * GNK
REWARD = 9_000_000_000
POC_NONCES = 40  # every leaf sampled (sample_size 200): the binomial test sees all fakes
INFERENCE_NONCES = 10
JUNK_KEYS = 4


def network(**changes: Any) -> NetworkParams:
    base: dict[str, Any] = {
        "epoch_blocks": 150,
        "poc_generate_blocks": 80,
        "poc_validate_blocks": 40,
        "poc_vote_blocks": 20,
        "epoch_reward_ngonka": REWARD,
        "inference_timeout_s": 5.0,
        "participant_timeout_s": 20.0,
    }
    base.update(changes)
    return NetworkParams(**base)


def slashed(held: int, fraction: float, times: int = 1) -> int:
    """What is left of `held` after `times` slashes of `fraction` of what is held, each
    rounded down to whole ngonka (the rule of docs/protocol.md, Stake)."""
    for _ in range(times):
        held -= int(held * Decimal(repr(fraction)))
    return held


def stake(url: str, address: str) -> StakeInfo:
    return WorkClient(url).stake(address)


def epoch_record(url: str, epoch: int) -> EpochRecord | None:
    try:
        return WorkClient(url).epoch_record(epoch)
    except WorkRefused:  # not started yet
        return None


def settled(url: str, epoch: int) -> EpochRecord | None:
    """Epoch `epoch`'s record once its settlement transaction is in a block."""
    record = epoch_record(url, epoch)
    if record is None or not record.settlement_tx:
        return None
    if record.settlement_tx == "-":
        return record
    resp = requests.get(f"{url}/cosmos/tx/v1beta1/txs/{record.settlement_tx}", timeout=WAIT_S)
    return record if resp.status_code == 200 else None


@dataclass
class Network:
    node: Node
    url: str
    params: NetworkParams
    people: dict[str, TestParticipant] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def earnings(self, name: str) -> Any:
        return WorkClient(self.url).earnings(self.people[name].address, 0)

    def stake(self, name: str) -> StakeInfo:
        return stake(self.url, self.people[name].address)


def stop_all(people: dict[str, TestParticipant]) -> None:
    for p in people.values():
        p._stop.set()
    for p in people.values():
        p.stop()


# --- PoC: inflation, fakers, junk keys --------------------------------------------------------


@pytest.fixture(scope="module")
def poc_net(start_module_node: StartNode) -> Iterator[Network]:
    params = network()
    node = start_module_node(network=params, block_time_s=0.1)
    url = node_url(node)
    people: dict[str, TestParticipant] = {
        "honest": TestParticipant(url, nonces=POC_NONCES),
        "inflater": Cheater(url, "inflate"),
        "faker5": Cheater(url, "fake_share", nonces=POC_NONCES, fake_share=0.05),
        "faker15": Cheater(url, "fake_share", nonces=POC_NONCES, fake_share=0.15),
    }
    for i, junk in enumerate(Cheater.junk_keys(url, JUNK_KEYS, nonces=POC_NONCES)):
        people[f"junk{i}"] = junk
    net = Network(node, url, params, people)
    try:
        # A key without funds cannot even register: no collateral, no work.
        broke = WorkClient(url, account("cheaters-broke").key)
        net.data["broke"] = None
        try:
            broke.register([TINY], [{"name": "cpu"}])
        except WorkRefused as exc:
            net.data["broke"] = exc.code
        for p in people.values():
            p.start()
        addresses = [p.address for p in people.values()]

        def verdicts() -> dict[str, PocResult] | None:
            record = epoch_record(url, 0)
            found = {r.address: r for r in record.poc_results} if record else {}
            return found if all(a in found for a in addresses) else None

        net.data["verdicts"] = wait_until(verdicts, "epoch 0's verdicts", PATIENCE_S)
        for p in people.values():  # epoch 0 is the one under test
            p.mine_poc = False
        net.data["settlement"] = wait_until(
            lambda: settled(url, 0), "epoch 0's settlement", PATIENCE_S
        )
        stop_all(people)
        yield net
    finally:
        stop_all(people)


def verdict(net: Network, name: str) -> PocResult:
    result: PocResult = net.data["verdicts"][net.people[name].address]
    return result


def weights(net: Network) -> int:
    return sum(r.weight for r in net.data["verdicts"].values())


def assert_fraud_punished(net: Network, name: str, statuses: tuple[str, ...]) -> None:
    """Weight 0, no reward, 20% of the collateral burned, jailed for the next epochs."""
    result = verdict(net, name)
    assert result.status in statuses and result.weight == 0, result
    assert net.earnings(name).total_ngonka == 0
    info = net.stake(name)
    assert info.collateral_ngonka == slashed(COLLATERAL, net.params.slash_fraction_fraud)
    assert [(m.epoch, m.kind) for m in info.moves if m.kind != "lock"] == [(0, "fraud_slash")]
    assert info.status == "jailed" and not info.eligible
    assert info.jailed_until_epoch == net.params.jail_epochs


def assert_honest_paid(net: Network, name: str = "honest") -> None:
    result = verdict(net, name)
    assert (result.status, result.weight) == ("valid", POC_NONCES), result
    earned = net.earnings(name)
    assert earned.poc_reward_ngonka == REWARD * POC_NONCES // weights(net)
    info = net.stake(name)
    assert info.collateral_ngonka == COLLATERAL and info.eligible


def test_a_key_without_funds_cannot_register(poc_net: Network) -> None:
    assert poc_net.data["broke"] == ErrorCode.INSUFFICIENT_COLLATERAL


def test_count_inflation_is_refused_and_slashed(poc_net: Network) -> None:
    inflater = poc_net.people["inflater"]
    assert isinstance(inflater, Cheater)
    # Counts beyond a uint32 are refused at the commit.
    assert inflater.refused[0] == dict.fromkeys(TOO_LARGE_COUNTS, ErrorCode.COUNT_TOO_LARGE)
    # The repeated subtree: its proofs fail the structural checks, and it is `invalid`.
    proof = next(d for d in inflater.done if d["item"]["kind"] == POC_PROOF)
    assert proof["refused"].code == ErrorCode.PROOFS_INVALID
    assert_fraud_punished(poc_net, "inflater", ("invalid",))
    assert "sum-tree proof does not match" in verdict(poc_net, "inflater").reason
    # The honest miner shares the epoch's reward with the valid provers only.
    assert_honest_paid(poc_net)


def test_a_15_percent_faker_is_convicted_and_slashed(poc_net: Network) -> None:
    assert_fraud_punished(poc_net, "faker15", ("fraud",))
    assert_honest_paid(poc_net)


def test_a_5_percent_faker_is_tolerated_by_the_binomial_test(poc_net: Network) -> None:
    """At p_mismatch 0.05 two fakes of 40 are what an honest prover may show: the faker keeps
    its weight (the test's design, as on mainnet), saving 5% of the compute."""
    result = verdict(poc_net, "faker5")
    assert (result.status, result.weight) == ("valid", POC_NONCES), result
    earned = poc_net.earnings("faker5")
    assert earned.poc_reward_ngonka == REWARD * POC_NONCES // weights(poc_net)
    assert poc_net.stake("faker5").collateral_ngonka == COLLATERAL
    assert_honest_paid(poc_net)


def test_junk_keys_each_lose_collateral_and_the_honest_verdict_stands(poc_net: Network) -> None:
    for i in range(JUNK_KEYS):
        assert_fraud_punished(poc_net, f"junk{i}", ("fraud",))
    assert_honest_paid(poc_net)
    # Only the two valid provers were paid: the honest one and the 5% faker.
    assert weights(poc_net) == 2 * POC_NONCES


def test_jailed_cheaters_are_refused_the_next_epoch(poc_net: Network) -> None:
    url = poc_net.url
    wait_until(
        lambda: (e := WorkClient(url).epoch()).epoch >= 1 and e.phase == "generate",
        "epoch 1's generate phase",
        PATIENCE_S,
    )
    current = WorkClient(url).epoch()
    for name in ("inflater", "faker15", "junk0"):
        cheater = poc_net.people[name]
        with pytest.raises(WorkRefused) as refused:
            cheater.client.commit(current.epoch, TINY, 1, "00" * 32)
        assert refused.value.code == ErrorCode.NOT_ELIGIBLE, name


# --- inference: cheap answers and a free Sybil validator -------------------------------------


REQUESTER = account("cheaters-requester")
REQUESTER_FUNDS = 10**15


@pytest.fixture(scope="module")
def inference_net(start_module_node: StartNode) -> Iterator[Network]:
    params = network(validation_share=1.0, inference_validators=3)
    node = start_module_node(
        [(REQUESTER.address, REQUESTER_FUNDS)], network=params, block_time_s=0.1
    )
    url = node_url(node)
    n = INFERENCE_NONCES
    people: dict[str, TestParticipant] = {
        "honest1": TestParticipant(url, nonces=n, models=(TINY, SMALL)),
        "honest2": TestParticipant(url, nonces=n),
        "any_text": Cheater(url, "any_text", nonces=n, seed=1),
        "random_short": Cheater(url, "random_short", nonces=n, seed=2),
        "smaller_model": Cheater(url, "smaller_model", nonces=n, models=(SMALL,)),
        # A free key: no PoC, so no weight; it would fail every answer it replays.
        "sybil": Cheater(url, "fail_every_answer", mine_poc=False),
    }
    net = Network(node, url, params, people)
    try:
        for p in people.values():
            p.start()
        miners = [p.address for k, p in people.items() if k != "sybil"]

        def weights_known() -> bool:
            view = WorkClient(url).participants()
            return view.weight_epoch == 0 and all(
                (p := view.get(a)) is not None and p.weight == n for a in miners
            )

        wait_until(weights_known, "epoch 0's weights", PATIENCE_S)
        for p in people.values():  # no PoC in later epochs: the CPU is for inference
            p.mine_poc = False
        requester = WorkClient(url, REQUESTER.key)
        by_executor: dict[str, list[str]] = {}
        lock = threading.Lock()

        def ask(model: str) -> None:
            answer = requester.chat(model, HELLO, max_tokens=8, temperature=0.0)
            with lock:
                by_executor.setdefault(answer.gonka.executor, []).append(answer.gonka.inference_id)

        def served(*names: str) -> bool:
            return all(people[k].address in by_executor for k in names)

        with ThreadPoolExecutor(4) as pool:
            # Until each executor of a model answered at least once (dispatch is random).
            for model, names in (
                (TINY, ("honest1", "honest2", "any_text", "random_short")),
                (SMALL, ("honest1", "smaller_model")),
            ):
                asked = 0
                while not served(*names):
                    list(pool.map(ask, [model] * 4))
                    asked += 4
                    assert asked <= 80, f"{model}: {sorted(by_executor)} after {asked} requests"
        ids = [i for found in by_executor.values() for i in found]

        def all_settled() -> list[InferenceRecord] | None:
            records = [requester.inference(i) for i in ids]
            return records if all(r.settled_epoch is not None for r in records) else None

        records = wait_until(all_settled, "the requests' settlement", PATIENCE_S)
        net.data["records"] = {r.id: r for r in records}
        net.data["by_executor"] = by_executor
        # The settlements that paid them are in blocks.
        last = max(r.settled_epoch or 0 for r in records)
        wait_until(lambda: settled(url, last), "the last settlement", PATIENCE_S)
        net.data["last_settled"] = last
        stop_all(people)
        yield net
    finally:
        stop_all(people)


def executed(net: Network, name: str) -> list[InferenceRecord]:
    ids = net.data["by_executor"].get(net.people[name].address, [])
    return [net.data["records"][i] for i in ids]


def fee(record: InferenceRecord, params: NetworkParams) -> int:
    return min(
        record.escrow_ngonka,
        (record.prompt_tokens + record.completion_tokens) * params.price_per_token_ngonka,
    )


def participant(net: Network, name: str) -> Any:
    view = WorkClient(net.url).participants()
    return view.get(net.people[name].address)


def assert_cheat_punished(net: Network, name: str) -> None:
    """Every answer failed its replay: no fee (the requester got its escrow back), one
    penalty and 1% of the collateral burned per answer."""
    records = executed(net, name)
    assert records
    for record in records:
        assert (record.status, record.validation) == ("completed", "failed"), record
    assert net.earnings(name).inference_fees_ngonka == 0
    assert participant(net, name).penalties == len(records)
    info = net.stake(name)
    fraction = net.params.slash_fraction_failed_validation
    assert info.collateral_ngonka == slashed(COLLATERAL, fraction, len(records))
    # Its honest PoC keeps its weight and reward, and what is left keeps it eligible.
    epoch0 = epoch_record(net.url, 0)
    assert epoch0 is not None
    total = sum(r.weight for r in epoch0.poc_results)
    mine = next(r for r in epoch0.poc_results if r.address == net.people[name].address)
    assert (mine.status, mine.weight) == ("valid", INFERENCE_NONCES)
    assert net.earnings(name).poc_reward_ngonka == REWARD * INFERENCE_NONCES // total
    assert info.eligible
    assert sorted(m.subject or "" for m in info.moves if m.kind == "validation_slash") == sorted(
        r.id for r in records
    )
    assert_honest_served(net)


def assert_honest_served(net: Network) -> None:
    """The honest executors' answers all passed, and each was paid its fees in full."""
    for name in ("honest1", "honest2"):
        records = executed(net, name)
        assert records
        for record in records:
            assert record.validation == "passed", record
        assert net.earnings(name).inference_fees_ngonka == sum(fee(r, net.params) for r in records)
        assert participant(net, name).penalties == 0
        assert net.stake(name).collateral_ngonka == COLLATERAL


def test_any_text_with_true_logprobs_fails_its_replay(inference_net: Network) -> None:
    assert_cheat_punished(inference_net, "any_text")


def test_a_random_short_answer_fails_its_replay(inference_net: Network) -> None:
    assert_cheat_punished(inference_net, "random_short")


def test_a_smaller_models_answer_fails_its_replay(inference_net: Network) -> None:
    assert_cheat_punished(inference_net, "smaller_model")


def test_the_requester_pays_only_for_honest_answers(inference_net: Network) -> None:
    records = inference_net.data["records"].values()
    paid = sum(fee(r, inference_net.params) for r in records if r.validation != "failed")
    ledger = node_ledger(inference_net.node)
    state = ledger.account(REQUESTER.address)
    assert state is not None and state.balance == REQUESTER_FUNDS - paid


def test_validators_are_paid_per_vote_the_majority_agreed_with(inference_net: Network) -> None:
    db = open_sqlite(NodeHome(inference_net.node.home_path).network_db_file)
    try:
        rows = db.execute(
            "SELECT validator, SUM(1 - contradicted), SUM(contradicted) FROM validator_votes "
            "WHERE epoch <= ? GROUP BY validator",
            (inference_net.data["last_settled"],),
        ).fetchall()
    finally:
        db.close()
    agreed = {validator: int(a) for validator, a, _ in rows}
    # Every replay was honest (the Sybil was never drawn): nobody was contradicted.
    assert all(c == 0 for _, _, c in rows), rows
    reward = inference_net.params.validation_reward_ngonka
    for name in inference_net.people:
        address = inference_net.people[name].address
        paid = inference_net.earnings(name).validation_reward_ngonka
        assert paid == agreed.get(address, 0) * reward, name
    assert sum(agreed.values()) > 0  # validators answered (the node replays the rest)


def test_a_free_sybil_validator_is_never_drawn(inference_net: Network) -> None:
    sybil = inference_net.people["sybil"]
    assert [d for d in sybil.done if d["item"]["kind"] in (VALIDATION_TASK, POC_VALIDATION)] == []
    for record in inference_net.data["records"].values():
        assert sybil.address not in record.validator.split(","), record
    db = open_sqlite(NodeHome(inference_net.node.home_path).network_db_file)
    try:
        rows = db.execute(
            "SELECT COUNT(*) FROM validator_votes WHERE validator = ?", (sybil.address,)
        ).fetchone()
    finally:
        db.close()
    assert rows[0] == 0
    assert inference_net.earnings("sybil").validation_reward_ngonka == 0
    assert_honest_served(inference_net)


# --- a Sybil with a sliver of weight, alone beside one honest miner ---------------------------


@pytest.fixture(scope="module")
def lone_sybil_net(start_module_node: StartNode) -> Iterator[Network]:
    """An honest miner and a second key that mines 1 nonce (the least weight there is) and
    fails every answer it is given: in epoch 1 it is the only validator with weight for the
    honest miner's PoC answers and inference answers."""
    params = network(validation_share=1.0)
    funds = [(REQUESTER.address, REQUESTER_FUNDS)]
    node = start_module_node(funds, network=params, block_time_s=0.1)
    url = node_url(node)
    people: dict[str, TestParticipant] = {
        "honest": TestParticipant(url, nonces=INFERENCE_NONCES),
        "sybil": Cheater(url, "fail_every_answer", nonces=1, serve_inference=False),
    }
    net = Network(node, url, params, people)
    try:
        for p in people.values():
            p.start()
        honest, sybil = people["honest"].address, people["sybil"].address

        def weights_known() -> bool:
            view = WorkClient(url).participants()
            return view.weight_epoch == 0 and all(
                (p := view.get(a)) is not None and p.weight > 0 for a in (honest, sybil)
            )

        wait_until(weights_known, "epoch 0's weights", PATIENCE_S)
        requester = WorkClient(url, REQUESTER.key)
        ids = [
            requester.chat(TINY, HELLO, max_tokens=8, temperature=0.0).gonka.inference_id
            for _ in range(2)
        ]

        def verdict_of_epoch_1() -> PocResult | None:
            record = epoch_record(url, 1)
            found = {r.address: r for r in record.poc_results} if record else {}
            return found.get(honest)

        net.data["poc1"] = wait_until(verdict_of_epoch_1, "epoch 1's verdict", PATIENCE_S)
        for p in people.values():
            p.mine_poc = False

        def all_validated() -> list[InferenceRecord] | None:
            records = [requester.inference(i) for i in ids]
            return records if all(r.validation != "pending" for r in records) else None

        net.data["records"] = wait_until(all_validated, "the replays", PATIENCE_S)
        stop_all(people)
        yield net
    finally:
        stop_all(people)


def test_a_weighted_sybil_alone_cannot_convict_the_honest_miner(lone_sybil_net: Network) -> None:
    net = lone_sybil_net
    result: PocResult = net.data["poc1"]
    assert (result.status, result.weight) == ("valid", INFERENCE_NONCES), result
    for record in net.data["records"]:
        assert record.validation == "passed", record
    assert participant(net, "honest").penalties == 0
    assert net.stake("honest").collateral_ngonka == COLLATERAL
