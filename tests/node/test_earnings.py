"""`GET /v1/participants/{address}/earnings`: what the network paid an address, nothing else.

A real participant mines an epoch and serves an inference on a real node; meanwhile its
address is funded by the faucet and by a transfer from another wallet. Its earnings must be
the settlement's reward and fee exactly, as the node's own records and the ledger show them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from gonka_cli.node.ledger import ESCROW_ADDRESS, MINT_ADDRESS
from gonka_cli.protocol import INFERENCE_FEE, POC_REWARD, EarningRecord, Earnings, ErrorCode
from gonka_cli.workclient import WorkClient
from tests.conftest import StartNode, node_ledger, node_url
from tests.node.helpers import GAS_LIMIT, Api, account, transfer
from tests.node.network_helpers import assert_refused
from tests.node.participant import TestParticipant
from tests.node.test_mining import BLOCK_S, PRICE, REWARD, balance, network, wait_for

FRIEND = account("earnings-friend")
REQUESTER = account("earnings-requester")
HELLO = [{"role": "user", "content": "hello"}]
FAUCET_NGONKA = 5_000
GIFT_NGONKA = 123_456
#: Few nonces, so that the commit lands in the first generate phase even on a busy machine.
NONCES = 20


@pytest.fixture
def miner() -> Iterator[list[TestParticipant]]:
    started: list[TestParticipant] = []
    yield started
    for participant in started:
        participant.stop()


def _earnings(url: str, address: str, since_height: int | None = None) -> Earnings:
    params = {} if since_height is None else {"since_height": str(since_height)}
    resp = requests.get(f"{url}/v1/participants/{address}/earnings", params=params, timeout=30)
    assert resp.status_code == 200, resp.text
    earnings = Earnings.from_dict(resp.json())
    assert earnings.to_dict() == resp.json()  # the wire form round-trips exactly
    return earnings


def test_earnings_count_settlement_payments_not_faucet_or_transfers(
    start_node: StartNode, miner: list[TestParticipant]
) -> None:
    node = start_node(
        [(FRIEND.address, 10**9), (REQUESTER.address, 10**9)],
        network=network(validation_share=0.0),
        block_time_s=BLOCK_S,
    )
    ledger = node_ledger(node)
    url = node_url(node)
    api = Api(node)
    participant = TestParticipant(url, nonces=NONCES).start()
    miner.append(participant)
    address = participant.address
    start_height = ledger.height

    # Money that is not earned: a faucet funding and a transfer from another wallet.
    resp = api.post("/faucet", {"address": address, "amount": str(FAUCET_NGONKA)})
    assert resp.status_code == 200, resp.text
    gift = transfer(node, FRIEND, address, GIFT_NGONKA, fee_ngonka=0, gas_limit=GAS_LIMIT)
    assert api.broadcast(gift.tx_bytes)["code"] == 0
    api.wait_tx(resp.json()["txhash"])
    api.wait_tx(gift.txhash)

    # It commits in some epoch's generate phase: that epoch's settlement pays it.
    wait_for(lambda: bool(participant.committed), what="a commit")
    epoch = min(participant.committed)

    # An inference it serves in that epoch: its fee is earned.
    answer = WorkClient(url, REQUESTER.key).chat("gonka-tiny", HELLO, max_tokens=4)
    assert answer.gonka.executor == address
    inference_id = answer.gonka.inference_id
    fee = answer.usage.total_tokens * PRICE

    record = wait_for(
        lambda: (r := WorkClient(url).epoch_record(epoch).to_dict()).get("settlement_tx") and r,
        what=f"the settlement of epoch {epoch}",
    )
    settlement = api.wait_tx(record["settlement_tx"])
    settled_at = int(settlement["tx_response"]["height"])
    weights = {r["address"]: r["weight"] for r in record["poc_results"]}
    weight = weights.get(address, 0)
    assert weight == NONCES, (record["poc_results"], participant.refusals)
    assert record["total_weight"] == weight  # the only prover: it gets the whole reward

    earnings = _earnings(url, address, start_height)
    assert earnings.address == address and earnings.since_height == start_height
    assert earnings.height >= settled_at
    assert earnings.records == (
        EarningRecord(settled_at, epoch, POC_REWARD, REWARD, None),
        EarningRecord(settled_at, epoch, INFERENCE_FEE, fee, inference_id),
    )
    assert earnings.poc_reward_ngonka == REWARD
    assert earnings.inference_fees_ngonka == fee
    assert earnings.validation_reward_ngonka == 0
    assert earnings.total_ngonka == REWARD + fee
    # The miner's client reads the same answer.
    assert WorkClient(url).earnings(address, start_height) == earnings
    # The balance also holds what was not earned; the earnings do not.
    assert balance(node, address) == REWARD + fee + FAUCET_NGONKA + GIFT_NGONKA

    # The ledger agrees: the settlement sent exactly these amounts to the address.
    sends = _sends_to(ledger.tx(record["settlement_tx"]), address)  # type: ignore[arg-type]
    assert sends == {MINT_ADDRESS: REWARD, ESCROW_ADDRESS: fee}

    # Paid at the settlement's height: nothing after it, nothing for another address.
    assert _earnings(url, address, settled_at).records == ()
    assert _earnings(url, address, settled_at - 1).total_ngonka == REWARD + fee
    assert _earnings(url, address).total_ngonka == REWARD + fee  # since_height defaults to 0
    assert _earnings(url, FRIEND.address, 0).records == ()


def _sends_to(record: Any, address: str) -> dict[str, int]:
    from gonka_cli.chain import tx as txlib

    decoded = txlib.decode_tx(record.tx_bytes)
    return {
        m.from_address: sum(int(c.amount) for c in m.amount)
        for m in decoded.messages
        if isinstance(m, txlib.MsgSend) and m.to_address == address
    }


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/participants/gonka1notanaddress/earnings", {}),
        (f"/v1/participants/{FRIEND.address}/earnings", {"since_height": "-1"}),
        (f"/v1/participants/{FRIEND.address}/earnings", {"since_height": "1.5"}),
        (f"/v1/participants/{FRIEND.address}/earnings", {"since_height": "9" * 30}),
    ],
)
def test_earnings_refuses_a_bad_address_or_height(
    start_node: StartNode, path: str, params: dict[str, str]
) -> None:
    node = start_node(network=network())
    resp = requests.get(node_url(node) + path, params=params, timeout=30)
    assert_refused(resp, ErrorCode.BAD_REQUEST)
