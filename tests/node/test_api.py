"""The local node's HTTP API, driven over real HTTP: shapes, bad input, and conservation of money.

Most checks that refuse a request share one module-wide node (`shared`): after each of them the
node must still answer, have accepted nothing and hold the genesis supply. Checks that move
money or need other chain parameters start their own node with `start_node`. Nodes that must
not make blocks on their own (`block_time_s=3600`) get them from `ledger.make_block()`, so
"not yet in a block" is checked without racing the block clock.
"""

from __future__ import annotations

import base64
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import requests
from google.protobuf import any_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gonka_cli.chain import tx as txlib
from gonka_cli.chain.amount import DENOM
from gonka_cli.chain.proto.cosmos.tx.v1beta1 import tx_pb2
from gonka_cli.crypto import address as addr
from gonka_cli.node.genesis import GNK
from gonka_cli.node.http import MAX_BODY_BYTES
from gonka_cli.node.ledger import (
    FEE_COLLECTOR_ADDRESS,
    AccountState,
    Ledger,
    block_digest,
    tx_events,
)
from gonka_cli.node.runner import Node
from tests.conftest import StartNode
from tests.node.helpers import (
    SIMULATE,
    TXS,
    Api,
    account,
    assert_error,
    b64,
    high_s,
    raw_request,
    send_any,
    sign_messages,
    transfer,
)

ALICE = account("alice")
BOB = account("bob")
CAROL = account("carol")
#: A well-formed address the chain has never seen.
NOBODY = account("nobody")
ALICE_NGONKA = 1_000_000 * GNK
BOB_NGONKA = 1_000 * GNK
GENESIS = [(ALICE.address, ALICE_NGONKA), (BOB.address, BOB_NGONKA)]
#: A node that makes blocks only when a test calls `ledger.make_block()`.
MANUAL_BLOCKS = {"block_time_s": 3600}

#: Money the faucet holds at genesis (`init_home`'s default).
FAUCET_NGONKA = 1_000_000_000 * GNK
GENESIS_SUPPLY = FAUCET_NGONKA + ALICE_NGONKA + BOB_NGONKA


def _ledger(node: Node) -> Ledger:
    assert node.ledger is not None
    return node.ledger


def _alice(node: Node) -> AccountState:
    state = _ledger(node).account(ALICE.address)
    assert state is not None
    return state


def _balances(node: Node) -> dict[str, int]:
    return {a.address: a.balance for a in _ledger(node).accounts.values()}


def _assert_conserved(api: Api, supply: int = GENESIS_SUPPLY) -> None:
    """No money made or lost, no balance negative; the ledger and the API agree."""
    balances = _balances(api.node)
    assert all(b >= 0 for b in balances.values()), balances
    assert sum(balances.values()) == supply
    assert _ledger(api.node).total_supply() == supply
    assert api.supply() == supply
    assert int(api.status()["total_supply_ngonka"]) == supply


@pytest.fixture
def node(start_node: StartNode) -> Node:
    return start_node(accounts=GENESIS)


@pytest.fixture
def api(node: Node) -> Api:
    return Api(node)


@pytest.fixture
def manual(start_node: StartNode) -> Api:
    """A node whose blocks the test makes itself."""
    return Api(start_node(accounts=GENESIS, **MANUAL_BLOCKS))


@pytest.fixture(scope="module")
def shared_node(start_module_node: StartNode) -> Node:
    return start_module_node(GENESIS, name="shared")


@pytest.fixture
def shared(shared_node: Node) -> Iterator[Api]:
    """The module's node; afterwards it must still answer and have accepted nothing."""
    api = Api(shared_node)
    api.wait_height(1)
    before = _ledger(shared_node).account(ALICE.address)
    yield api
    assert api.get("/cosmos/base/tendermint/v1beta1/node_info").status_code == 200
    assert api.status()["mempool_txs"] == 0
    assert _ledger(shared_node).account(ALICE.address) == before
    _assert_conserved(api)


# --- 1. happy paths and shapes ----------------------------------------------------------


def test_node_info_names_the_chain(api: Api) -> None:
    resp = api.get("/cosmos/base/tendermint/v1beta1/node_info")
    assert resp.status_code == 200
    info = resp.json()["default_node_info"]
    assert info["network"] == "gonka-devnet" == api.node.info.chain_id  # type: ignore[union-attr]
    assert isinstance(info["moniker"], str) and isinstance(info["version"], str)
    app = resp.json()["application_version"]
    assert app["name"] == "gonka"
    # Clients parse it as a version (cosmpy: packaging.Version of it without the "v").
    assert app["cosmos_sdk_version"] == "v0.53.3"


def test_latest_block_is_404_before_the_first_block(manual: Api) -> None:
    assert_error(manual.get("/cosmos/base/tendermint/v1beta1/blocks/latest"), 404, 5)
    _ledger(manual.node).make_block()
    resp = manual.get("/cosmos/base/tendermint/v1beta1/blocks/latest")
    assert resp.status_code == 200
    assert resp.json()["block"]["header"]["height"] == "1"


def test_blocks_carry_chain_id_height_time_and_chain_their_hashes(api: Api) -> None:
    api.wait_height(3)
    blocks = []
    for height in (1, 2, 3):
        resp = api.get(f"/cosmos/base/tendermint/v1beta1/blocks/{height}")
        assert resp.status_code == 200, resp.text
        blocks.append(resp.json())
    times = []
    for height, block in enumerate(blocks, start=1):
        header = block["block"]["header"]
        assert header["chain_id"] == "gonka-devnet"
        assert header["height"] == str(height)
        times.append(datetime.fromisoformat(header["time"].replace("Z", "+00:00")))
        block_hash = base64.b64decode(block["block_id"]["hash"])
        assert len(block_hash) == 32
        # The node's own view of the block, with what its hash covers.
        own = api.get(f"/v1/node/blocks/{height}").json()
        assert block_hash.hex().upper() == own["hash"]
        assert own["height"] == height and own["tx_hashes"] == []
        assert own["hash"] == block_digest(
            own["prev_hash"], height, [], bytes.fromhex(own["entropy"])
        )
        last_block_hash = base64.b64decode(header["last_block_id"]["hash"])
        assert last_block_hash.hex().upper() == own["prev_hash"]
        # The SDK's shape and nothing more (no gonka-only keys that strict clients refuse).
        assert set(block) == {"block_id", "block", "sdk_block"}
        assert set(block["block"]) == {"header", "data", "evidence", "last_commit"}
        assert block["sdk_block"]["header"] == header
        assert block["block"]["data"]["txs"] == []
    assert times == sorted(times)
    for older, newer in itertools.pairwise(blocks):
        assert newer["block"]["header"]["last_block_id"]["hash"] == older["block_id"]["hash"]
    latest = api.get("/cosmos/base/tendermint/v1beta1/blocks/latest").json()
    assert int(latest["block"]["header"]["height"]) >= 3
    assert int(api.get("/v1/node/blocks/latest").json()["height"]) >= 3
    assert_error(api.get("/v1/node/blocks/99999"), 404, 5)
    assert_error(api.get("/v1/node/blocks/-1"), 400, 3)
    assert latest["block"]["header"]["chain_id"] == "gonka-devnet"


def test_account_info_and_accounts(manual: Api) -> None:
    resp = manual.get(f"/cosmos/auth/v1beta1/account_info/{ALICE.address}")
    assert resp.status_code == 200
    # The faucet is account 0; the genesis accounts follow in order.
    assert resp.json() == {
        "info": {
            "address": ALICE.address,
            "pub_key": None,
            "account_number": "1",
            "sequence": "0",
        }
    }
    signed = transfer(manual.node, ALICE, BOB.address, 5)
    assert manual.broadcast(signed.tx_bytes)["code"] == 0
    _ledger(manual.node).make_block()
    info = manual.get(f"/cosmos/auth/v1beta1/account_info/{ALICE.address}").json()["info"]
    assert info["sequence"] == "1"
    assert info["pub_key"] == {
        "@type": "/cosmos.crypto.secp256k1.PubKey",
        "key": b64(ALICE.key.public_key.to_bytes()),
    }
    resp = manual.get(f"/cosmos/auth/v1beta1/accounts/{ALICE.address}")
    assert resp.status_code == 200
    assert resp.json() == {"account": {"@type": "/cosmos.auth.v1beta1.BaseAccount", **info}}
    # Upper case is the same bech32 address.
    upper = manual.get(f"/cosmos/auth/v1beta1/account_info/{ALICE.address.upper()}")
    assert upper.json()["info"] == info


@pytest.mark.parametrize("path", ["account_info", "accounts"])
def test_unknown_account_is_404_code_5(shared: Api, path: str) -> None:
    assert_error(shared.get(f"/cosmos/auth/v1beta1/{path}/{NOBODY.address}"), 404, 5)


def test_balances_supply_and_by_denom(shared: Api) -> None:
    for path in ("balances", "spendable_balances"):
        resp = shared.get(f"/cosmos/bank/v1beta1/{path}/{ALICE.address}")
        assert resp.status_code == 200
        assert resp.json() == {
            "balances": [{"denom": DENOM, "amount": str(ALICE_NGONKA)}],
            "pagination": {"next_key": None, "total": "1"},
        }
        empty = shared.get(f"/cosmos/bank/v1beta1/{path}/{NOBODY.address}")
        assert empty.status_code == 200
        assert empty.json() == {"balances": [], "pagination": {"next_key": None, "total": "0"}}
    by_denom = f"/cosmos/bank/v1beta1/balances/{BOB.address}/by_denom"
    assert shared.get(by_denom, denom=DENOM).json() == {
        "balance": {"denom": DENOM, "amount": str(BOB_NGONKA)}
    }
    assert shared.get(by_denom, denom="uatom").json() == {
        "balance": {"denom": "uatom", "amount": "0"}
    }
    nobody = f"/cosmos/bank/v1beta1/balances/{NOBODY.address}/by_denom"
    assert shared.get(nobody, denom=DENOM).json()["balance"]["amount"] == "0"
    assert_error(shared.get(by_denom), 400, 3)
    resp = shared.get("/cosmos/bank/v1beta1/supply")
    assert resp.json() == {
        "supply": [{"denom": DENOM, "amount": str(GENESIS_SUPPLY)}],
        "pagination": {"next_key": None, "total": "1"},
    }


def test_transfer_lifecycle_simulate_broadcast_lookup(manual: Api) -> None:
    node = manual.node
    signed = transfer(node, ALICE, BOB.address, 12_345, memo="hello")

    sim = manual.simulate(signed.tx_bytes)
    assert sim.status_code == 200, sim.text
    gas = sim.json()["gas_info"]
    assert isinstance(gas["gas_used"], str) and 0 < int(gas["gas_used"]) < 200_000

    result = manual.broadcast(signed.tx_bytes)
    assert result["code"] == 0 and result["codespace"] == "" and result["raw_log"] == ""
    assert result["txhash"] == signed.txhash
    assert result["height"] == "0"
    assert result["gas_wanted"] == "200000"

    # Accepted into the mempool only: not found until a block holds it.
    assert_error(manual.get(f"{TXS}/{signed.txhash}"), 404, 5)
    assert manual.status()["mempool_txs"] == 1
    block = _ledger(node).make_block()

    resp = manual.get(f"{TXS}/{signed.txhash.lower()}")
    assert resp.status_code == 200, resp.text
    found = resp.json()
    response = found["tx_response"]
    # GetTxResponse.tx is a Tx; tx_response.tx is an Any, so only it names its type.
    assert "@type" not in found["tx"]
    assert response["tx"] == {"@type": "/cosmos.tx.v1beta1.Tx", **found["tx"]}
    assert response["code"] == 0
    assert response["txhash"] == signed.txhash
    assert response["height"] == str(block.height)
    assert int(response["gas_used"]) <= int(response["gas_wanted"]) == 200_000
    assert isinstance(response["gas_used"], str)
    assert response["timestamp"].endswith("Z")
    body = response["tx"]["body"]
    assert body["memo"] == "hello"
    assert body["messages"] == [
        {
            "@type": "/cosmos.bank.v1beta1.MsgSend",
            "from_address": ALICE.address,
            "to_address": BOB.address,
            "amount": [{"denom": DENOM, "amount": "12345"}],
        }
    ]
    signer = response["tx"]["auth_info"]["signer_infos"][0]
    assert signer["sequence"] == "0"
    assert signer["public_key"]["key"] == b64(ALICE.key.public_key.to_bytes())
    assert response["tx"]["signatures"] == [b64(signed.signature)]
    # No fee: the SDK's events without the fee transfer.
    assert _events(response) == [
        ("tx", [("fee", ""), ("fee_payer", ALICE.address)]),
        ("tx", [("acc_seq", f"{ALICE.address}/0")]),
        ("tx", [("signature", b64(signed.signature))]),
        *_send_events(ALICE.address, BOB.address, f"12345{DENOM}"),
    ]
    assert response["data"] == _MSG_SEND_DATA
    latest = manual.get("/cosmos/base/tendermint/v1beta1/blocks/latest").json()
    assert latest["block"]["data"]["txs"] == [b64(signed.tx_bytes)]
    assert manual.balance(BOB.address) == BOB_NGONKA + 12_345
    assert manual.balance(ALICE.address) == ALICE_NGONKA - 12_345
    _assert_conserved(manual)


def _events(response: dict[str, Any]) -> list[tuple[str, list[tuple[str, str]]]]:
    """A tx_response's events as (type, [(key, value)]); every attribute is indexed."""
    for event in response["events"]:
        assert all(a["index"] is True for a in event["attributes"]), event
    return [
        (e["type"], [(a["key"], a["value"]) for a in e["attributes"]]) for e in response["events"]
    ]


def _send_events(
    sender: str, recipient: str, amount: str, index: int = 0
) -> list[tuple[str, list[tuple[str, str]]]]:
    """The events of one successful MsgSend, as the SDK v0.50 emits them."""
    i = ("msg_index", str(index))
    return [
        (
            "message",
            [("action", txlib.MSG_SEND_TYPE_URL), ("sender", sender), ("module", "bank"), i],
        ),
        ("coin_spent", [("spender", sender), ("amount", amount), i]),
        ("coin_received", [("receiver", recipient), ("amount", amount), i]),
        ("transfer", [("recipient", recipient), ("sender", sender), ("amount", amount), i]),
        ("message", [("sender", sender), i]),
    ]


#: TxMsgData{msg_responses: [Any{"/cosmos.bank.v1beta1.MsgSendResponse"}]}, upper-case hex,
#: spelled out from the protobuf wire format: field 2, length 38, then the Any's field 1.
_MSG_SEND_DATA = ("1226" + "0A24" + b"/cosmos.bank.v1beta1.MsgSendResponse".hex()).upper()


def test_fee_and_failed_transactions_have_the_sdks_events(manual: Api) -> None:
    node = manual.node
    paid = transfer(node, ALICE, BOB.address, 5, fee_ngonka=2_000)
    assert manual.broadcast(paid.tx_bytes)["code"] == 0
    _ledger(node).make_block()
    response = manual.get(f"{TXS}/{paid.txhash}").json()["tx_response"]
    fee = f"2000{DENOM}"
    assert _events(response) == [
        ("coin_spent", [("spender", ALICE.address), ("amount", fee)]),
        ("coin_received", [("receiver", FEE_COLLECTOR_ADDRESS), ("amount", fee)]),
        (
            "transfer",
            [("recipient", FEE_COLLECTOR_ADDRESS), ("sender", ALICE.address), ("amount", fee)],
        ),
        ("message", [("sender", ALICE.address)]),
        ("tx", [("fee", fee), ("fee_payer", ALICE.address)]),
        ("tx", [("acc_seq", f"{ALICE.address}/0")]),
        ("tx", [("signature", b64(paid.signature))]),
        *_send_events(ALICE.address, BOB.address, f"5{DENOM}"),
    ]

    # Out of gas in the messages (a gas limit over the ante handler's share, under the
    # whole): fee and sequence are spent, so the ante events stay; no message events, no data.
    ledger = _ledger(node)
    gas = 1
    for _ in range(5):
        starved = transfer(node, ALICE, BOB.address, 5, fee_ngonka=2_000, gas_limit=gas)
        gas = ledger._ante_gas(len(starved.tx_bytes), 1)
    assert gas < ledger.gas_for(len(starved.tx_bytes), 1, 1)
    assert manual.broadcast(starved.tx_bytes)["code"] == 0
    ledger.make_block()
    failed = manual.get(f"{TXS}/{starved.txhash}").json()["tx_response"]
    assert failed["code"] == 11 and failed["data"] == ""
    assert [e[0] for e in _events(failed)] == [
        "coin_spent",
        "coin_received",
        "transfer",
        "message",
        "tx",
        "tx",
        "tx",
    ]
    # Refused before the fee was taken: no events at all.
    assert tx_events(txlib.decode_tx(starved.tx_bytes), 32, 0) == []


def test_async_broadcast_lands_in_a_block(api: Api) -> None:
    signed = transfer(api.node, ALICE, CAROL.address, 77)
    result = api.broadcast(signed.tx_bytes, mode="BROADCAST_MODE_ASYNC")
    assert result["code"] == 0 and result["txhash"] == signed.txhash
    assert api.wait_tx(signed.txhash)["tx_response"]["code"] == 0
    assert api.balance(CAROL.address) == 77


def test_search_by_sender_and_recipient_with_paging_and_order(manual: Api) -> None:
    node, ledger = manual.node, _ledger(manual.node)
    sends = [(ALICE, BOB, 1), (ALICE, CAROL, 2), (BOB, ALICE, 3), (ALICE, BOB, 4)]
    hashes = []
    for sender, recipient, amount in sends:
        signed = transfer(node, sender, recipient.address, amount)
        assert manual.broadcast(signed.tx_bytes)["code"] == 0
        ledger.make_block()
        hashes.append(signed.txhash)
    alice_sent = [hashes[0], hashes[1], hashes[3]]

    def search(query: str, **params: Any) -> dict[str, Any]:
        resp = manual.get(TXS, query=query, **params)
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        # txs[] are Tx messages; each tx_response.tx is the same as an Any.
        assert [{"@type": "/cosmos.tx.v1beta1.Tx", **t} for t in data["txs"]] == [
            r["tx"] for r in data["tx_responses"]
        ]
        return data

    def found(data: dict[str, Any]) -> list[str]:
        return [r["txhash"] for r in data["tx_responses"]]

    by_alice = search(f"message.sender='{ALICE.address}'")
    assert found(by_alice) == alice_sent and by_alice["total"] == "3"
    newest = search(f"message.sender='{ALICE.address}'", order_by="ORDER_BY_DESC")
    assert found(newest) == alice_sent[::-1]
    heights = [int(r["height"]) for r in newest["tx_responses"]]
    assert heights == sorted(heights, reverse=True)
    page2 = search(f"message.sender='{ALICE.address}'", order_by="ORDER_BY_DESC", limit=2, page=2)
    assert found(page2) == [alice_sent[0]] and page2["total"] == "3"
    assert found(search(f"message.sender='{ALICE.address}'", **{"pagination.limit": 1})) == [
        hashes[0]
    ]
    to_bob = search(f"transfer.recipient='{BOB.address}'")
    assert found(to_bob) == [hashes[0], hashes[3]] and to_bob["total"] == "2"
    both = search(f"message.sender='{BOB.address}' AND transfer.recipient='{ALICE.address}'")
    assert found(both) == [hashes[2]]
    assert found(search(f"transfer.recipient='{NOBODY.address}'")) == []
    height = manual.wait_tx(hashes[1])["tx_response"]["height"]
    assert found(search(f"tx.height={height}")) == [hashes[1]]
    assert found(search(f"tx.hash='{hashes[2]}'")) == [hashes[2]]
    beyond = search(f"message.sender='{ALICE.address}'", limit=2, page=5)
    assert beyond["tx_responses"] == [] and beyond["total"] == "3"


_EMPTY_PAGE = {"next_key": None, "total": "0"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/cosmos/staking/v1beta1/validators", {"validators": [], "pagination": _EMPTY_PAGE}),
        (
            f"/cosmos/staking/v1beta1/delegations/{ALICE.address}",
            {"delegation_responses": [], "pagination": _EMPTY_PAGE},
        ),
        (
            f"/cosmos/staking/v1beta1/delegators/{ALICE.address}/unbonding_delegations",
            {"unbonding_responses": [], "pagination": _EMPTY_PAGE},
        ),
        (
            f"/cosmos/staking/v1beta1/delegators/{ALICE.address}/redelegations",
            {"redelegation_responses": [], "pagination": _EMPTY_PAGE},
        ),
        (
            "/cosmos/staking/v1beta1/pool",
            {"pool": {"not_bonded_tokens": "0", "bonded_tokens": "0"}},
        ),
        (
            f"/cosmos/distribution/v1beta1/delegators/{ALICE.address}/rewards",
            {"rewards": [], "total": []},
        ),
        (
            f"/cosmos/distribution/v1beta1/delegators/{ALICE.address}/withdraw_address",
            {"withdraw_address": ALICE.address},
        ),
        ("/cosmos/distribution/v1beta1/community_pool", {"pool": []}),
        ("/cosmos/gov/v1/proposals", {"proposals": [], "pagination": _EMPTY_PAGE}),
        ("/cosmos/gov/v1beta1/proposals", {"proposals": [], "pagination": _EMPTY_PAGE}),
        ("/cosmos/mint/v1beta1/inflation", {"inflation": "0.000000000000000000"}),
        (
            "/cosmos/params/v1beta1/params?subspace=baseapp&key=BlockParams",
            {"param": {"subspace": "baseapp", "key": "BlockParams", "value": ""}},
        ),
    ],
)
def test_modules_the_devnet_lacks_answer_empty_results(
    shared: Api, path: str, expected: dict[str, Any]
) -> None:
    resp = shared.get(path)
    assert resp.status_code == 200, resp.text
    assert resp.json() == expected


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/cosmos/staking/v1beta1/params", "bond_denom"),
        ("/cosmos/distribution/v1beta1/params", "community_tax"),
        ("/cosmos/mint/v1beta1/params", "mint_denom"),
    ],
)
def test_module_params_are_served(shared: Api, path: str, key: str) -> None:
    resp = shared.get(path)
    assert resp.status_code == 200, resp.text
    assert key in resp.json()["params"]


def test_module_queries_check_their_addresses(shared: Api) -> None:
    assert_error(shared.get("/cosmos/staking/v1beta1/delegations/gonka1bad"), 400, 3)
    assert_error(shared.get("/cosmos/params/v1beta1/params"), 400, 3)


def test_consensus_params(shared: Api) -> None:
    resp = shared.get("/cosmos/consensus/v1/params")
    assert resp.status_code == 200, resp.text
    params = resp.json()["params"]
    assert params["block"] == {"max_bytes": "22020096", "max_gas": "-1"}
    assert set(params) == {"block", "evidence", "validator", "version", "abci"}


def test_node_status_fields(manual: Api) -> None:
    _ledger(manual.node).make_block()
    status = manual.status()
    info = manual.node.info
    assert info is not None
    assert status["chain_id"] == "gonka-devnet"
    assert status["height"] == 1
    assert status["accounts"] == 4  # the faucet, Alice, Bob and the node's own account
    assert status["mempool_txs"] == 0 and status["txs"] == 0
    assert status["total_supply_ngonka"] == str(GENESIS_SUPPLY)
    assert status["faucet_address"] == info.faucet_address
    assert status["min_gas_price"] == "0"
    assert status["block_time_s"] == 3600
    assert status["uptime_s"] >= 0 and isinstance(status["version"], str)
    latest = manual.get("/cosmos/base/tendermint/v1beta1/blocks/latest").json()
    assert status["latest_block_hash"] == base64.b64decode(latest["block_id"]["hash"]).hex().upper()
    assert status["latest_block_time"] == latest["block"]["header"]["time"]


def test_faucet_sends(api: Api) -> None:
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 1_000 * GNK),
        ({"amount": "2gnk"}, 2 * GNK),
        ({"amount": "5000ngonka"}, 5_000),
        ({"amount": "7000"}, 7_000),
        ({"amount": 9000}, 9_000),
    ]
    hashes = []
    for i, (body, expected) in enumerate(cases):
        recipient = account(f"faucet-{i}").address
        resp = api.post("/faucet", {"address": recipient, **body})
        assert resp.status_code == 200, resp.text
        data = resp.json()
        assert data["address"] == recipient
        assert data["amount"] == {"denom": DENOM, "amount": str(expected)}
        hashes.append(data["txhash"])
    for i, (txhash, (_, expected)) in enumerate(zip(hashes, cases, strict=True)):
        assert api.wait_tx(txhash)["tx_response"]["code"] == 0
        assert api.balance(account(f"faucet-{i}").address) == expected
    _assert_conserved(api)


# --- 2. bad input: HTTP level -----------------------------------------------------------

BAD_BODIES = [
    pytest.param(b"{", id="truncated-json"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"\xff\xfe\x00", id="not-utf8"),
    pytest.param(b"", id="empty"),
    pytest.param(b"[]", id="array"),
    pytest.param(b'"tx"', id="string"),
    pytest.param(b"42", id="number"),
    pytest.param(b"null", id="null"),
    pytest.param(b"[" * 100_000, id="deep-nesting"),
    pytest.param(b"{}", id="no-tx-bytes"),
    pytest.param(b'{"tx_bytes": null}', id="tx-bytes-null"),
    pytest.param(b'{"tx_bytes": 5}', id="tx-bytes-number"),
    pytest.param(b'{"tx_bytes": ["AA=="]}', id="tx-bytes-list"),
    pytest.param(b'{"tx_bytes": ""}', id="tx-bytes-empty"),
    pytest.param(b'{"tx_bytes": "!!not base64!!"}', id="tx-bytes-not-base64"),
    pytest.param(b'{"tx_bytes": "AAA"}', id="tx-bytes-bad-padding"),
    pytest.param(b'{"tx_bytes": "AA AA"}', id="tx-bytes-space"),
]


@pytest.mark.parametrize("path", [TXS, SIMULATE])
@pytest.mark.parametrize("body", BAD_BODIES)
def test_malformed_bodies_are_400_code_3(shared: Api, path: str, body: bytes) -> None:
    resp = shared.post(path, data=body, headers={"Content-Type": "application/json"})
    assert_error(resp, 400, 3)


@pytest.mark.parametrize(
    ("field", "mode"),
    [("txBytes", "BROADCAST_MODE_SYNC"), ("tx_bytes", 2), ("txBytes", "2"), ("tx_bytes", 3)],
)
def test_broadcast_takes_json_names_and_numeric_modes(manual: Api, field: str, mode: Any) -> None:
    """As the SDK's gateway: the field's JSON name too, and BroadcastMode by number."""
    signed = transfer(manual.node, ALICE, BOB.address, 1)
    resp = manual.post(TXS, {field: b64(signed.tx_bytes), "mode": mode})
    assert resp.status_code == 200, resp.text
    assert resp.json()["tx_response"]["txhash"] == signed.txhash
    assert manual.status()["mempool_txs"] == 1


def test_simulate_takes_tx_bytes_txbytes_or_the_tx_as_json(manual: Api) -> None:
    from google.protobuf import json_format

    signed = transfer(manual.node, ALICE, BOB.address, 1)
    tx = tx_pb2.Tx(
        body=tx_pb2.TxBody.FromString(signed.body_bytes),
        auth_info=tx_pb2.AuthInfo.FromString(signed.auth_info_bytes),
        signatures=[signed.signature],
    )
    bodies = [
        {"tx_bytes": b64(signed.tx_bytes)},
        {"txBytes": b64(signed.tx_bytes)},
        # cosmpy sends the deprecated `tx`, in protobuf's JSON (camelCase names).
        {"tx": json_format.MessageToDict(tx)},
        {"tx": json_format.MessageToDict(tx, preserving_proto_field_name=True)},
    ]
    answers = []
    for body in bodies:
        resp = manual.post(SIMULATE, body)
        assert resp.status_code == 200, resp.text
        answers.append(resp.json())
    assert all(a == answers[0] for a in answers)
    result = answers[0]["result"]
    assert result["msg_responses"] == [{"@type": "/cosmos.bank.v1beta1.MsgSendResponse"}]
    assert ("message", [("action", txlib.MSG_SEND_TYPE_URL)]) in [
        (e[0], e[1][:1]) for e in _events(result)
    ]
    bad = manual.post(SIMULATE, {"tx": {"body": {"messages": [{"@type": "/x.Unknown"}]}}})
    assert_error(bad, 400, 3)
    assert_error(manual.post(SIMULATE, {"tx": "not an object"}), 400, 3)


#: JSON values shaped like a Tx in protobuf's JSON: its field names (both spellings), type
#: URLs, and values of every JSON type in every place.
_TX_KEYS = st.sampled_from(
    [
        "body",
        "messages",
        "memo",
        "timeoutHeight",
        "timeout_height",
        "authInfo",
        "auth_info",
        "signerInfos",
        "publicKey",
        "modeInfo",
        "single",
        "mode",
        "sequence",
        "fee",
        "amount",
        "gasLimit",
        "signatures",
        "@type",
        "key",
        "fromAddress",
        "denom",
        "value",
    ]
)
_TX_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "/cosmos.bank.v1beta1.MsgSend",
            "/cosmos.crypto.secp256k1.PubKey",
            "/cosmos.tx.v1beta1.Tx",
            "/google.protobuf.Any",
            "SIGN_MODE_DIRECT",
            "AAAA",
            "18446744073709551616",
        ]
    ),
)
_TX_JSON = st.recursive(
    _TX_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TX_KEYS, inner, max_size=4),
    max_leaves=25,
)


#: An Any in JSON: a type URL (or anything else) beside fields of any kind.
_ANY_JSON = st.dictionaries(
    st.sampled_from(["@type", "value", "key", "fromAddress", "to_address", "amount"]),
    _TX_JSON,
    max_size=3,
)
#: A Tx in protobuf's JSON, each part present or not, each leaf of any JSON type.
_TX_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "body": st.fixed_dictionaries(
            {},
            optional={
                "messages": st.lists(_ANY_JSON | _TX_JSON, max_size=2),
                "memo": _TX_LEAVES,
                "timeoutHeight": _TX_LEAVES,
            },
        )
        | _TX_JSON,
        "authInfo": st.fixed_dictionaries(
            {},
            optional={
                "signerInfos": st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "publicKey": _ANY_JSON | _TX_LEAVES,
                            "modeInfo": _TX_JSON,
                            "sequence": _TX_LEAVES,
                        },
                    ),
                    max_size=2,
                ),
                "fee": _TX_JSON,
            },
        ),
        "signatures": st.lists(_TX_LEAVES, max_size=2) | _TX_LEAVES,
    },
)


@settings(
    deadline=None, max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tx=_TX_SHAPED | st.dictionaries(_TX_KEYS, _TX_JSON, max_size=4))
def test_simulate_tx_field_never_fails_inside(shared: Api, tx: dict[str, Any]) -> None:
    """Whatever the deprecated `tx` holds, the answer is a result or a 4xx JSON error."""
    resp = shared.post(SIMULATE, {"tx": tx})
    if resp.status_code != 200:
        assert_error(resp, 400)


def test_simulate_needs_no_public_key(manual: Api) -> None:
    """As the SDK's simulation: the signer is the messages', and its gas counts a key."""
    state = _alice(manual.node)
    message = send_any(ALICE.address, BOB.address, [(DENOM, "1")])
    body = txlib.encode_body([message])
    keyless = tx_pb2.AuthInfo(
        signer_infos=[
            tx_pb2.SignerInfo(
                mode_info=tx_pb2.ModeInfo(
                    single=tx_pb2.ModeInfo.Single(mode=txlib.SIGN_MODE_DIRECT)  # type: ignore[arg-type]
                ),
                sequence=state.sequence,
            )
        ],
        fee=tx_pb2.Fee(gas_limit=0),
    ).SerializeToString()
    with_key = txlib.encode_auth_info(ALICE.key.public_key, state.sequence, txlib.Fee((), 0))
    gas = []
    for auth_info in (keyless, with_key):
        resp = manual.simulate(txlib.encode_tx_raw(body, auth_info, [b""]))
        assert resp.status_code == 200, resp.text
        gas.append(int(resp.json()["gas_info"]["gas_used"]))
    assert gas[0] == gas[1]
    # Broadcast still needs the key.
    signed_keyless = txlib.encode_tx_raw(body, keyless, [bytes(64)])
    assert manual.broadcast(signed_keyless)["code"] == 8


@pytest.mark.parametrize(
    "mode",
    ["BROADCAST_MODE_BLOCK", "BROADCAST_MODE_UNSPECIFIED", "sync", "", 0, 1, "1", 7, None, ["x"]],
)
def test_unsupported_broadcast_modes_are_400(shared: Api, mode: Any) -> None:
    signed = transfer(shared.node, ALICE, BOB.address, 1)
    resp = shared.post(TXS, {"tx_bytes": b64(signed.tx_bytes), "mode": mode})
    assert_error(resp, 400, 3)


@pytest.mark.parametrize("path", [TXS, SIMULATE, "/faucet"])
def test_bodies_over_the_limit_are_413(shared: Api, path: str) -> None:
    big = b'{"tx_bytes": "' + b"A" * MAX_BODY_BYTES + b'"}'
    assert_error(shared.post(path, data=big), 413, 3)

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        yield b'{"tx_bytes": "'
        for _ in range(MAX_BODY_BYTES // 65_536 + 2):
            yield b"A" * 65_536
        yield b'"}'

    assert_error(shared.post(path, data=chunks()), 413, 3)


def test_lying_content_length_is_413_or_400(shared: Api) -> None:
    head = (
        f"POST {TXS} HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n"
        "Connection: close\r\n"
    ).encode()
    # A declared size over the limit is refused before the body is read.
    resp = raw_request(shared.port, head + b"Content-Length: 1000000000000\r\n\r\n", [b"{}"])
    assert resp.status == 413 and resp.json()["code"] == 3
    # A small declared size with a chunked body over the limit: the chunks are counted.
    chunk = b"A" * 65_536
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (MAX_BODY_BYTES // len(chunk) + 2)
    resp = raw_request(
        shared.port,
        head + b"Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n",
        [*parts, b"0\r\n\r\n"],
    )
    assert resp.status == 413 and resp.json()["code"] == 3
    # A declared size smaller than the body: the node reads what was declared.
    resp = raw_request(shared.port, head + b"Content-Length: 5\r\n\r\n", [b'{"tx_bytes": "AA"}'])
    assert resp.status == 400 and resp.json()["code"] == 3


def test_client_disconnecting_mid_body_is_not_an_internal_error(
    shared: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="gonka_cli.node.api")
    with socket.create_connection(("127.0.0.1", shared.port)) as sock:
        sock.sendall(
            f"POST {TXS} HTTP/1.1\r\nHost: node\r\nContent-Length: 1000\r\n\r\n".encode() + b"{"
        )
        time.sleep(0.1)  # let the node start reading the body
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and not caplog.records:
        time.sleep(0.02)
    assert [r.getMessage() for r in caplog.records] == []


@pytest.mark.parametrize(
    "txhash",
    [
        "xyz",
        "A" * 63,
        "A" * 65,
        "G" * 64,
        "0x" + "A" * 62,
        "%C2%B2" * 64,  # 64 non-ASCII digits
    ],
)
def test_bad_tx_hash_is_400_code_3(shared: Api, txhash: str) -> None:
    assert_error(shared.get(f"{TXS}/{txhash}"), 400, 3)


def test_unknown_tx_hash_is_404_code_5(shared: Api) -> None:
    assert_error(shared.get(f"{TXS}/{'AB' * 32}"), 404, 5)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="no-query"),
        pytest.param({"query": ""}, id="empty"),
        pytest.param({"query": "   "}, id="blank"),
        pytest.param({"query": f"message.sender={ALICE.address}"}, id="unquoted"),
        pytest.param({"query": f'message.sender="{ALICE.address}"'}, id="double-quoted"),
        pytest.param({"query": "message.sender"}, id="no-equals"),
        pytest.param({"query": "='x'"}, id="no-key"),
        pytest.param({"query": "foo.bar='x'"}, id="unknown-key"),
        pytest.param({"query": "message.action='/cosmos.bank.v1beta1.MsgSend'"}, id="other-key"),
        pytest.param({"query": "tx.height='x'"}, id="height-not-number"),
        pytest.param({"query": "tx.height=-1"}, id="height-negative"),
        pytest.param({"query": "tx.height=1 AND "}, id="dangling-and"),
        # Each condition is a nested SQL expression: SQLite's depth limit made this a 500.
        pytest.param({"query": " AND ".join(["tx.height=1"] * 1_200)}, id="1200-conditions"),
        pytest.param({"query": " AND ".join(["tx.height=1"] * 17)}, id="17-conditions"),
        pytest.param({"query": "tx.height=1", "limit": "0"}, id="limit-0"),
        pytest.param({"query": "tx.height=1", "limit": "101"}, id="limit-101"),
        pytest.param({"query": "tx.height=1", "limit": "-1"}, id="limit-negative"),
        pytest.param({"query": "tx.height=1", "limit": "ten"}, id="limit-word"),
        pytest.param({"query": "tx.height=1", "limit": "1.5"}, id="limit-float"),
        pytest.param({"query": "tx.height=1", "page": "0"}, id="page-0"),
        pytest.param({"query": "tx.height=1", "page": "x"}, id="page-word"),
        pytest.param({"query": "tx.height=1", "page": "9" * 30}, id="page-huge"),
        pytest.param({"query": "tx.height=1", "pagination.limit": "1000"}, id="pagination-limit"),
    ],
)
def test_bad_search_is_400_code_3(shared: Api, params: dict[str, str]) -> None:
    assert_error(shared.get(TXS, **params), 400, 3)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"query": "tx.height=\u00b2"}, id="height-superscript"),
        pytest.param({"query": "tx.height=" + "9" * 20}, id="height-over-int64"),
        pytest.param({"query": "tx.height=1", "limit": "\u00b2"}, id="limit-superscript"),
        pytest.param({"query": "tx.height=1", "page": "\u00b2"}, id="page-superscript"),
    ],
)
def test_bad_search_numbers_are_400_not_500(shared: Api, params: dict[str, str]) -> None:
    assert_error(shared.get(TXS, **params), 400, 3)


BAD_PATH_ADDRESSES = [
    "not-an-address",
    "gonka1qqqqqq",
    ALICE.address[:-1] + ("q" if ALICE.address[-1] != "q" else "p"),  # bad checksum
    addr.encode("cosmos", addr.decode(ALICE.address)),  # another chain's prefix
    addr.encode("gonka", b"\x01" * 10),  # wrong length
    ALICE.address[:10] + ALICE.address[10:].upper(),  # mixed case
    "%C3%A9" + ALICE.address,  # non-ASCII
]


@pytest.mark.parametrize(
    "template",
    [
        "/cosmos/auth/v1beta1/account_info/{}",
        "/cosmos/auth/v1beta1/accounts/{}",
        "/cosmos/bank/v1beta1/balances/{}",
        "/cosmos/bank/v1beta1/spendable_balances/{}",
        "/cosmos/bank/v1beta1/balances/{}/by_denom?denom=ngonka",
    ],
)
def test_invalid_addresses_in_paths_are_400_code_3(shared: Api, template: str) -> None:
    for bad in BAD_PATH_ADDRESSES:
        assert_error(shared.get(template.format(bad)), 400, 3)


@pytest.mark.parametrize("height", ["abc", "-1", "1.0", "0x1", "0", "999999999"])
def test_bad_block_heights_are_400_code_3(shared: Api, height: str) -> None:
    assert_error(shared.get(f"/cosmos/base/tendermint/v1beta1/blocks/{height}"), 400, 3)


@pytest.mark.parametrize("height", ["%C2%B2", "9" * 25, str(2**63)])
def test_out_of_range_block_heights_are_400_not_500(shared: Api, height: str) -> None:
    assert_error(shared.get(f"/cosmos/base/tendermint/v1beta1/blocks/{height}"), 400, 3)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", TXS),
        ("DELETE", TXS),
        ("PATCH", SIMULATE),
        ("GET", SIMULATE),
        ("GET", "/faucet"),
        ("POST", "/cosmos/base/tendermint/v1beta1/node_info"),
        ("POST", "/cosmos/bank/v1beta1/supply"),
        ("DELETE", f"/cosmos/bank/v1beta1/balances/{ALICE.address}"),
        ("POST", "/v1/node/status"),
    ],
)
def test_wrong_method_is_a_json_error(shared: Api, method: str, path: str) -> None:
    resp = shared.http.request(method, shared.url + path, timeout=10)
    assert resp.status_code in (405, 501)
    assert_error(resp, resp.status_code, 12)


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/cosmos/bank/v1beta1/nope",
        "/cosmos/tx/v1beta1/txs/AB/extra",
        "/cosmos/bank/v1beta1/balances/",
        "/chain-api/cosmos/bank/v1beta1/supply",
    ],
)
def test_unknown_path_is_404_json(shared: Api, path: str) -> None:
    assert_error(shared.get(path), 404, 5)


# --- 2. bad input: transactions CheckTx refuses -----------------------------------------


def _other_type(node: Node) -> bytes:
    delegate = any_pb2.Any(type_url="/cosmos.staking.v1beta1.MsgDelegate", value=b"\x0a\x01x")
    return _signed(node, [delegate]).tx_bytes


def _signed(node: Node, messages: list[Any], **options: Any) -> txlib.SignedTx:
    state = _alice(node)
    return sign_messages(
        ALICE,
        messages,
        chain_id="gonka-devnet",
        account_number=state.number,
        sequence=state.sequence,
        **options,
    )


def _coins(*amounts: tuple[str, str]) -> Callable[[Node], bytes]:
    def build(node: Node) -> bytes:
        return _signed(node, [send_any(ALICE.address, BOB.address, list(amounts))]).tx_bytes

    return build


def _send(**kwargs: Any) -> Callable[[Node], bytes]:
    amount = kwargs.pop("amount", 1)
    to = kwargs.pop("to", BOB.address)
    sender = kwargs.pop("sender", ALICE)
    return lambda node: transfer(node, sender, to, amount, **kwargs).tx_bytes


def _with_signature(signature: Callable[[bytes], list[bytes]]) -> Callable[[Node], bytes]:
    def build(node: Node) -> bytes:
        signed = transfer(node, ALICE, BOB.address, 1)
        return txlib.encode_tx_raw(
            signed.body_bytes, signed.auth_info_bytes, signature(signed.signature)
        )

    return build


def _truncated(node: Node) -> bytes:
    return transfer(node, ALICE, BOB.address, 1).tx_bytes[:-10]


def _no_messages(node: Node) -> bytes:
    # With a memo, so that the body is not empty (an empty body is a parse error here).
    return _signed(node, [], memo="nothing to do").tx_bytes


def _extension_options(node: Node) -> bytes:
    state = _alice(node)
    body = tx_pb2.TxBody(
        messages=[send_any(ALICE.address, BOB.address, [(DENOM, "1")])],
        extension_options=[any_pb2.Any(type_url="/gonka.Unknown", value=b"")],
    ).SerializeToString()
    auth = txlib.encode_auth_info(ALICE.key.public_key, state.sequence, txlib.Fee((), 200_000))
    return txlib.sign(ALICE.key, body, auth, "gonka-devnet", state.number).tx_bytes


def _bad_address(which: str, value: str) -> Callable[[Node], bytes]:
    def build(node: Node) -> bytes:
        from_address = value if which == "from" else ALICE.address
        to_address = value if which == "to" else BOB.address
        return _signed(node, [send_any(from_address, to_address, [(DENOM, "1")])]).tx_bytes

    return build


def _wrong_sequence(node: Node) -> bytes:
    state = _alice(node)
    return transfer(node, ALICE, BOB.address, 1, sequence=state.sequence + 5).tx_bytes


BAD_ADDRESSES = [
    ("empty", ""),
    ("garbage", "gonka1invalid"),
    ("checksum", BOB.address[:-1] + ("q" if BOB.address[-1] != "q" else "p")),
    ("prefix", addr.encode("cosmos", addr.decode(BOB.address))),
    ("length", addr.encode("gonka", b"\x02" * 10)),
    ("mixed-case", BOB.address[:8] + BOB.address[8:].upper()),
]

# (builder, expected code, simulate also refuses it)
BAD_TXS = [
    pytest.param(lambda n: b"\xff" * 40, 2, True, id="random-bytes"),
    pytest.param(lambda n: b"\x0a\x05hello", 2, True, id="random-protobuf"),
    pytest.param(lambda n: send_any(ALICE.address, BOB.address, []).value, 2, True, id="a-msg"),
    pytest.param(lambda n: txlib.encode_tx_raw(b"", b"", [b"s"]), 2, True, id="empty-txraw"),
    pytest.param(_truncated, 2, True, id="truncated"),
    pytest.param(_other_type, 2, True, id="unknown-message-type"),
    pytest.param(_coins((DENOM, "-5")), 2, True, id="negative-amount"),
    pytest.param(_coins((DENOM, "abc")), 2, True, id="non-numeric-amount"),
    pytest.param(_coins((DENOM, "1.5")), 2, True, id="decimal-amount"),
    pytest.param(_coins((DENOM, "")), 2, True, id="empty-amount"),
    pytest.param(_coins((DENOM, "+5")), 2, True, id="plus-amount"),
    pytest.param(_coins((DENOM, "0")), 10, True, id="zero-amount"),
    pytest.param(_coins(("x", "5")), 10, True, id="invalid-denom"),
    pytest.param(_coins((DENOM, "1"), (DENOM, "1")), 10, True, id="duplicate-denom"),
    pytest.param(_coins(("uatom", "5")), 5, True, id="unknown-denom"),
    pytest.param(_send(amount=ALICE_NGONKA + 1), 5, True, id="overspend"),
    pytest.param(_no_messages, 18, True, id="no-messages"),
    pytest.param(_send(gas_limit=2**63), 18, True, id="gas-limit-over-int64"),
    pytest.param(_send(gas_limit=2**64 - 1), 18, True, id="gas-limit-max-uint64"),
    pytest.param(_extension_options, 31, True, id="extension-options"),
    pytest.param(_send(chain_id="gonka-mainnet"), 4, False, id="wrong-chain-id"),
    pytest.param(_send(account_number=99), 4, False, id="wrong-account-number"),
    pytest.param(_with_signature(lambda s: [high_s(s)]), 4, False, id="high-s"),
    pytest.param(_with_signature(lambda s: [s[:-1]]), 4, False, id="short-signature"),
    pytest.param(_with_signature(lambda s: [bytes(64)]), 4, False, id="zero-signature"),
    pytest.param(_with_signature(lambda s: []), 4, True, id="no-signature"),
    pytest.param(_with_signature(lambda s: [s, s]), 4, True, id="two-signatures"),
    pytest.param(_send(from_address=BOB.address), 8, True, id="pubkey-not-sender"),
    pytest.param(_send(sender=NOBODY, sequence=0, account_number=0), 9, True, id="unknown-sender"),
    *(
        pytest.param(_bad_address(which, value), 7, True, id=f"{which}-address-{name}")
        for which in ("to", "from")
        for name, value in BAD_ADDRESSES
    ),
    pytest.param(_send(gas_limit=1_000), 11, False, id="gas-limit-too-low"),
    pytest.param(_send(memo="m" * 257), 12, True, id="memo-too-long"),
    pytest.param(_send(memo="m" * 70_000), 21, True, id="tx-too-large"),
    pytest.param(lambda n: b"\x00" * 65_537, 21, True, id="random-too-large"),
    pytest.param(_send(timeout_height=1), 30, True, id="timeout-height-passed"),
    pytest.param(_wrong_sequence, 32, True, id="wrong-sequence"),
    pytest.param(_send(fee_ngonka=1_000, fee_denom="uatom"), 13, False, id="fee-other-denom"),
]


@pytest.mark.parametrize(("build", "code", "simulate_refuses"), BAD_TXS)
def test_bad_transactions_get_their_sdk_code(
    shared: Api, build: Callable[[Node], bytes], code: int, simulate_refuses: bool
) -> None:
    tx_bytes = build(shared.node)
    result = shared.broadcast(tx_bytes)
    assert result["code"] == code, result
    assert result["codespace"] == "sdk"
    assert result["txhash"] == txlib.tx_hash(tx_bytes)
    assert result["raw_log"]
    sim = shared.simulate(tx_bytes)
    expected = result["raw_log"]
    if code == 30:  # "block height: N, ...": N is the next height, which moves on meanwhile
        expected = expected.split(", ", 1)[1]
    if simulate_refuses:
        # The SDK's simulation fails with gRPC Unknown (2) and says the gas it counted.
        message = assert_error(sim, 400, 2)["message"]
        assert expected in message and "With gas wanted: " in message
    else:  # simulation does not check signatures or fees
        assert sim.status_code == 200, sim.text


def test_wrong_sequence_raw_log_is_the_sdks(shared: Api) -> None:
    state = _alice(shared.node)
    signed = transfer(shared.node, ALICE, BOB.address, 1, sequence=state.sequence + 3)
    result = shared.broadcast(signed.tx_bytes)
    assert result["code"] == 32
    assert result["raw_log"] == (
        f"account sequence mismatch, expected {state.sequence}, got {state.sequence + 3}: "
        "incorrect account sequence"
    )


@pytest.mark.parametrize("path", [TXS, SIMULATE])
def test_amount_with_thousands_of_digits_is_a_parse_error(shared: Api, path: str) -> None:
    tx_bytes = _coins((DENOM, "5" * 5_000))(shared.node)
    resp = shared.post(path, {"tx_bytes": b64(tx_bytes)})
    if path == TXS:
        assert resp.status_code == 200, resp.text
        assert resp.json()["tx_response"]["code"] in (2, 10)
    else:
        assert_error(resp, 400, 2)


def test_amount_over_256_bits_is_refused(shared: Api) -> None:
    # The SDK's Int refuses more than 256 bits (a parse error); refusing it as more than the
    # sender holds keeps the money safe too.
    result = shared.broadcast(_coins((DENOM, "9" * 100))(shared.node))
    assert result["code"] in (2, 5), result


def test_memo_limit_counts_bytes_as_the_sdk_does(manual: Api) -> None:
    memo = "\u00e9" * 200  # 200 characters, 400 bytes of UTF-8
    result = manual.broadcast(_send(memo=memo)(manual.node))
    assert result["code"] == 12, result


def test_timeout_height_in_the_future_is_accepted(manual: Api) -> None:
    ledger = _ledger(manual.node)
    ledger.make_block()
    ledger.make_block()
    assert manual.broadcast(_send(timeout_height=2)(manual.node))["code"] == 30
    ok = transfer(manual.node, ALICE, BOB.address, 1, timeout_height=3)
    assert manual.broadcast(ok.tx_bytes)["code"] == 0
    ledger.make_block()
    assert manual.wait_tx(ok.txhash)["tx_response"]["code"] == 0


def test_fee_below_min_gas_price_is_code_13(start_node: StartNode) -> None:
    api = Api(start_node(accounts=GENESIS, min_gas_price="1", **MANUAL_BLOCKS))
    for fee in (0, 199_999):
        result = api.broadcast(_send(fee_ngonka=fee)(api.node))
        assert result["code"] == 13, result
        assert result["raw_log"].endswith("required: 200000ngonka: insufficient fee")
    signed = transfer(api.node, ALICE, BOB.address, 1, fee_ngonka=200_000)
    assert api.broadcast(signed.tx_bytes)["code"] == 0
    _ledger(api.node).make_block()
    assert api.balance(FEE_COLLECTOR_ADDRESS) == 200_000
    _assert_conserved(api)


def test_small_max_tx_bytes_is_code_21(start_node: StartNode) -> None:
    api = Api(start_node(accounts=GENESIS, max_tx_bytes=400, **MANUAL_BLOCKS))
    small = transfer(api.node, ALICE, BOB.address, 1)
    assert len(small.tx_bytes) <= 400
    big = transfer(api.node, ALICE, BOB.address, 1, memo="m" * 250)
    result = api.broadcast(big.tx_bytes)
    assert result["code"] == 21
    assert result["raw_log"] == (
        f"tx too large; max size is 400 bytes, got {len(big.tx_bytes)}: tx too large"
    )
    assert api.broadcast(small.tx_bytes)["code"] == 0


def test_full_mempool_is_code_20(start_node: StartNode) -> None:
    api = Api(start_node(accounts=GENESIS, max_mempool_txs=1, **MANUAL_BLOCKS))
    assert api.broadcast(transfer(api.node, ALICE, BOB.address, 1).tx_bytes)["code"] == 0
    second = transfer(api.node, BOB, ALICE.address, 1)
    assert api.broadcast(second.tx_bytes)["code"] == 20
    _ledger(api.node).make_block()
    assert api.broadcast(second.tx_bytes)["code"] == 0


def test_restricted_transfers_are_code_1108(start_node: StartNode) -> None:
    api = Api(start_node(accounts=GENESIS, transfer_restriction_end_height=1_000))
    result = api.broadcast(transfer(api.node, ALICE, BOB.address, 1).tx_bytes)
    assert (result["code"], result["codespace"]) == (1108, "restrictions")
    # The faucet is exempt, as mainnet's genesis accounts are.
    resp = api.post("/faucet", {"address": CAROL.address, "amount": "5"})
    assert resp.status_code == 200, resp.text
    assert api.wait_tx(resp.json()["txhash"])["tx_response"]["code"] == 0


def test_replayed_transaction_is_code_19_before_and_after_its_block(manual: Api) -> None:
    signed = transfer(manual.node, ALICE, BOB.address, 1_000)
    assert manual.broadcast(signed.tx_bytes)["code"] == 0
    again = manual.broadcast(signed.tx_bytes)
    assert (again["code"], again["raw_log"]) == (19, "tx already exists in cache")
    assert manual.broadcast(signed.tx_bytes, mode="BROADCAST_MODE_ASYNC")["code"] == 0
    _ledger(manual.node).make_block()
    assert manual.broadcast(signed.tx_bytes)["code"] == 19
    _ledger(manual.node).make_block()
    assert manual.balance(BOB.address) == BOB_NGONKA + 1_000  # moved once
    assert manual.get(TXS, query=f"message.sender='{ALICE.address}'").json()["total"] == "1"
    _assert_conserved(manual)


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(str.upper, id="upper-case"),
        pytest.param(lambda a: f" {a}", id="leading-space"),
        pytest.param(lambda a: f"{a}\n", id="trailing-newline"),
    ],
)
def test_non_canonical_recipient_is_credited_to_the_real_account_or_refused(
    manual: Api, form: Callable[[str], str]
) -> None:
    tx = _signed(manual.node, [send_any(ALICE.address, form(CAROL.address), [(DENOM, "500")])])
    result = manual.broadcast(tx.tx_bytes)
    _ledger(manual.node).make_block()
    assert set(_balances(manual.node)) <= {
        ALICE.address,
        BOB.address,
        CAROL.address,
        FEE_COLLECTOR_ADDRESS,
        manual.node.info.faucet_address,  # type: ignore[union-attr]
        manual.node.info.node_address,  # type: ignore[union-attr]
    }
    if result["code"] == 0:
        assert manual.balance(CAROL.address) == 500
    else:
        assert result["code"] == 7


def _field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field: tag, varint length, value."""
    length, out = len(value), b""
    while True:
        byte, length = length & 0x7F, length >> 7
        out += bytes([byte | (0x80 if length else 0)])
        if not length:
            break
    return bytes([number << 3 | 2]) + out + value


@pytest.mark.parametrize(
    "malleate",
    [
        pytest.param(lambda s: s.tx_bytes + b"\x20\x01", id="unknown-field"),
        pytest.param(
            lambda s: (
                _field(2, s.auth_info_bytes) + _field(1, s.body_bytes) + _field(3, s.signature)
            ),
            id="reordered-fields",
        ),
        pytest.param(lambda s: _field(1, b"\x12\x01x") + s.tx_bytes, id="repeated-body"),
    ],
)
def test_malleated_txraw_is_a_parse_error(
    manual: Api, malleate: Callable[[txlib.SignedTx], bytes]
) -> None:
    signed = transfer(manual.node, ALICE, BOB.address, 5)
    malleated = malleate(signed)
    with pytest.raises(txlib.TxDecodeError, match="not canonically encoded"):
        txlib.decode_tx(malleated)
    assert manual.broadcast(malleated)["code"] == 2
    assert manual.broadcast(signed.tx_bytes)["code"] == 0


# --- faucet bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-address"),
        pytest.param({"address": 5}, id="address-number"),
        pytest.param({"address": "not-an-address"}, id="bad-address"),
        pytest.param({"address": addr.encode("cosmos", b"\x01" * 20)}, id="other-prefix"),
        pytest.param({"address": CAROL.address, "amount": "abc"}, id="amount-word"),
        pytest.param({"address": CAROL.address, "amount": "-5"}, id="amount-negative"),
        pytest.param({"address": CAROL.address, "amount": "0"}, id="amount-zero"),
        pytest.param({"address": CAROL.address, "amount": 1.5}, id="amount-float"),
        pytest.param({"address": CAROL.address, "amount": True}, id="amount-bool"),
        pytest.param({"address": CAROL.address, "amount": "5uatom"}, id="amount-other-denom"),
        pytest.param({"address": CAROL.address, "amount": "9" * 5_000}, id="amount-huge"),
    ],
)
def test_faucet_bad_input_is_400_code_3(shared: Api, body: dict[str, Any]) -> None:
    assert_error(shared.post("/faucet", body), 400, 3)
    assert shared.balance(CAROL.address) == 0


def test_faucet_limits(start_node: StartNode) -> None:
    api = Api(
        start_node(
            accounts=GENESIS,
            faucet_amount_ngonka=1_000,
            faucet_max_ngonka=1_000,
            faucet_limit_ngonka=2_500,
        )
    )
    over_max = api.post("/faucet", {"address": CAROL.address, "amount": "1001"})
    # Over the per-request maximum: refused as a bad argument or as an exhausted resource.
    assert over_max.status_code in (400, 429)
    assert_error(over_max, over_max.status_code, {400: 3, 429: 8}[over_max.status_code])
    assert api.post("/faucet", {"address": CAROL.address}).status_code == 200
    second = api.post("/faucet", {"address": CAROL.address})
    assert second.status_code == 200
    # The third would pass the per-address limit, whether the others are in a block or not.
    assert_error(api.post("/faucet", {"address": CAROL.address}), 429, 8)
    api.wait_tx(second.json()["txhash"])
    assert_error(api.post("/faucet", {"address": CAROL.address}), 429, 8)
    assert_error(api.post("/faucet", {"address": CAROL.address, "amount": "501"}), 429, 8)
    assert api.post("/faucet", {"address": CAROL.address, "amount": "500"}).status_code == 200
    assert api.post("/faucet", {"address": BOB.address}).status_code == 200  # per address
    api.next_block()
    api.next_block()
    assert api.balance(CAROL.address) == 2_500
    _assert_conserved(api)


# --- 3. money is never made or lost -----------------------------------------------------


def test_mixed_traffic_conserves_money_and_pays_fees_to_the_collector(
    start_node: StartNode,
) -> None:
    api = Api(start_node(accounts=GENESIS, min_gas_price="0.5", **MANUAL_BLOCKS))
    ledger = _ledger(api.node)
    gas = 60_000
    fee = 30_000
    good = [
        transfer(api.node, ALICE, BOB.address, 1_000, sequence=0, gas_limit=gas, fee_ngonka=fee),
        transfer(api.node, ALICE, CAROL.address, 2_000, sequence=1, gas_limit=gas, fee_ngonka=fee),
        transfer(api.node, BOB, CAROL.address, 3_000, sequence=0, gas_limit=gas, fee_ngonka=fee),
    ]
    # Enough gas for the ante handler (so CheckTx accepts it), not for the message: the block
    # charges the fee and the sequence but moves no money.
    out_of_gas = transfer(
        api.node, ALICE, CAROL.address, 50_000, sequence=2, gas_limit=16_000, fee_ngonka=8_000
    )
    bad = [
        transfer(api.node, ALICE, BOB.address, 1, sequence=3, gas_limit=gas, fee_ngonka=fee - 1),
        transfer(api.node, ALICE, BOB.address, 1, sequence=9, gas_limit=gas, fee_ngonka=fee),
        transfer(api.node, BOB, BOB.address, BOB_NGONKA, sequence=1, gas_limit=gas, fee_ngonka=fee),
        transfer(
            api.node, ALICE, BOB.address, 1, sequence=3, fee_ngonka=fee, gas_limit=gas, chain_id="x"
        ),
        transfer(api.node, CAROL, BOB.address, 1, sequence=0, account_number=0, fee_ngonka=fee),
    ]
    for signed in good:
        assert api.broadcast(signed.tx_bytes)["code"] == 0
    assert api.broadcast(out_of_gas.tx_bytes)["code"] == 0
    for signed in bad:
        assert api.broadcast(signed.tx_bytes)["code"] != 0
    assert api.broadcast(good[0].tx_bytes)["code"] == 19
    ledger.make_block()

    assert api.wait_tx(out_of_gas.txhash)["tx_response"]["code"] == 11
    for signed in good:
        assert api.wait_tx(signed.txhash)["tx_response"]["code"] == 0
    for signed in bad:
        assert_error(api.get(f"{TXS}/{signed.txhash}"), 404, 5)
    assert api.balance(ALICE.address) == ALICE_NGONKA - 3_000 - 2 * fee - 8_000
    assert api.balance(BOB.address) == BOB_NGONKA + 1_000 - 3_000 - fee
    assert api.balance(CAROL.address) == 5_000
    assert api.balance(FEE_COLLECTOR_ADDRESS) == 3 * fee + 8_000
    info = api.get(f"/cosmos/auth/v1beta1/account_info/{ALICE.address}").json()["info"]
    assert info["sequence"] == "3"
    _assert_conserved(api)


def _fire(api: Api, txs: list[bytes]) -> list[dict[str, Any]]:
    """Broadcast every transaction at once, one thread each."""
    barrier = threading.Barrier(len(txs))
    results: list[Any] = [None] * len(txs)

    def send(i: int) -> None:
        body = {"tx_bytes": b64(txs[i]), "mode": "BROADCAST_MODE_SYNC"}
        barrier.wait()
        resp = requests.post(api.url + TXS, json=body, timeout=10)
        results[i] = resp.json()["tx_response"] if resp.status_code == 200 else resp.text

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(txs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_sends_with_one_sequence_accept_at_most_one(api: Api) -> None:
    txs = [transfer(api.node, ALICE, CAROL.address, 100 + i, sequence=0) for i in range(8)]
    results = _fire(api, [t.tx_bytes for t in txs])
    codes = sorted(r["code"] for r in results)
    assert codes == [0] + [32] * 7, results
    accepted = next(t for t, r in zip(txs, results, strict=True) if r["code"] == 0)
    amount = 100 + txs.index(accepted)
    api.wait_tx(accepted.txhash)
    # Same bytes from every thread: one is accepted, the others are duplicates.
    again = transfer(api.node, ALICE, CAROL.address, 1)
    results = _fire(api, [again.tx_bytes] * 6)
    assert sorted(r["code"] for r in results) == [0] + [19] * 5, results
    api.wait_tx(again.txhash)
    assert api.balance(CAROL.address) == amount + 1
    _assert_conserved(api)


def test_concurrent_overspend_is_refused_with_code_5(start_node: StartNode) -> None:
    poor = account("poor")
    api = Api(start_node(accounts=[*GENESIS, (poor.address, 1_000)]))
    first = transfer(api.node, poor, CAROL.address, 600, sequence=0)
    second = transfer(api.node, poor, CAROL.address, 600, sequence=1)
    results = _fire(api, [first.tx_bytes, second.tx_bytes])
    # The second can arrive first and find the sequence not yet used: send it until it is
    # checked after the first.
    deadline = time.monotonic() + 10
    while results[1]["code"] == 32 and time.monotonic() < deadline:
        results[1] = api.broadcast(second.tx_bytes)
    assert results[0]["code"] == 0, results
    assert results[1]["code"] == 5, results
    assert results[1]["raw_log"].endswith("insufficient funds")
    api.wait_tx(first.txhash)
    assert api.balance(poor.address) == 400
    assert api.balance(CAROL.address) == 600
    _assert_conserved(api, GENESIS_SUPPLY + 1_000)


def test_many_concurrent_spenders_never_overdraw(start_node: StartNode) -> None:
    spenders = [account(f"spender{i}") for i in range(4)]
    api = Api(start_node(accounts=[*GENESIS, *((s.address, 1_000) for s in spenders)]))
    txs = [
        transfer(api.node, s, CAROL.address, 400, sequence=seq).tx_bytes
        for s in spenders
        for seq in range(3)
    ]
    for _ in range(3):  # some arrive before their predecessor: retry those
        _fire(api, txs)
    api.next_block()
    api.next_block()
    for spender in spenders:
        assert 0 <= api.balance(spender.address) == 1_000 - 400 * 2
    assert api.balance(CAROL.address) == 4 * 800
    _assert_conserved(api, GENESIS_SUPPLY + 4_000)
