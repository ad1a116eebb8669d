"""The node's CometBFT JSON-RPC (gonka_cli/node/rpc.py) against a real node on 127.0.0.1.

Shapes are CometBFT v0.38's (int64 as strings, bytes as base64, upper-case hex hashes);
`abci_query` answers are decoded with the generated protobuf types. The last part fuzzes the
RPC with hypothesis as test_fuzz.py fuzzes REST: whatever arrives, the answer is a JSON-RPC
body, never a crash.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect as ws_connect

from gonka_cli.chain import tx as txlib
from gonka_cli.chain.proto.cosmos.auth.v1beta1 import auth_pb2
from gonka_cli.chain.proto.cosmos.auth.v1beta1 import query_pb2 as auth_query
from gonka_cli.chain.proto.cosmos.bank.v1beta1 import query_pb2 as bank_query
from gonka_cli.chain.proto.cosmos.base.tendermint.v1beta1 import query_pb2 as tm_query
from gonka_cli.chain.proto.cosmos.crypto.secp256k1 import keys_pb2
from gonka_cli.chain.proto.cosmos.tx.v1beta1 import service_pb2
from gonka_cli.node.api import COMETBFT_VERSION, COSMOS_SDK_VERSION
from gonka_cli.node.ledger import Ledger
from gonka_cli.node.rpc import merkle_root
from gonka_cli.node.runner import Node
from tests.node.helpers import WAIT_S, account, b64, transfer
from tests.node.rpc_helpers import Rpc, assert_rpc_error, rpc_node

ALICE = account("rpc-alice")
BOB = account("rpc-bob")
CAROL = account("rpc-carol")  # never funded
GENESIS = [(ALICE.address, 10**15), (BOB.address, 10**12)]
FEE = 10_000  # gas limit 100_000 x min gas price 0.1
SEND = {"fee_ngonka": FEE, "gas_limit": 100_000}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("rpc") / "node"
    with rpc_node(root, GENESIS, min_gas_price="0.1") as running:
        yield running


@pytest.fixture
def rpc(node: Node) -> Rpc:
    client = Rpc(node)
    client.wait_height(1)
    return client


def ledger_of(node: Node) -> Ledger:
    assert node.ledger is not None
    return node.ledger


def is_upper_hex(text: str, n_bytes: int) -> bool:
    return len(text) == 2 * n_bytes and all(c in "0123456789ABCDEF" for c in text)


def broadcast(rpc: Rpc, tx_bytes: bytes, method: str = "broadcast_tx_sync") -> dict[str, Any]:
    return rpc.call(method, tx=b64(tx_bytes))


def commit(rpc: Rpc, node: Node, to: str, amount: int) -> dict[str, Any]:
    """A transfer from Alice, broadcast with `broadcast_tx_commit` (answers once in a block)."""
    signed = transfer(node, ALICE, to, amount, **SEND)
    result = broadcast(rpc, signed.tx_bytes, "broadcast_tx_commit")
    assert result["check_tx"]["code"] == 0, result
    assert result["tx_result"]["code"] == 0, result
    return result


def query(rpc: Rpc, path: str, request: Any) -> dict[str, Any]:
    response: dict[str, Any] = rpc.call(
        "abci_query", path=path, data=request.SerializeToString().hex()
    )["response"]
    return response


# --- node and chain ----------------------------------------------------------------------


def test_status_has_cometbft_shape(rpc: Rpc, node: Node) -> None:
    ledger = ledger_of(node)
    result = rpc.call("status")
    info, sync, validator = result["node_info"], result["sync_info"], result["validator_info"]
    assert info["network"] == ledger.chain_id
    assert info["version"] == COMETBFT_VERSION  # cosmjs picks its Comet38 client by it
    assert set(info["protocol_version"]) == {"p2p", "block", "app"}
    assert info["other"]["rpc_address"] == node.info.rpc_url if node.info else False
    height = int(sync["latest_block_height"])
    assert 1 <= height <= ledger.height
    block = ledger.block(height)
    assert block is not None
    assert sync["latest_block_hash"] == block.hash
    assert is_upper_hex(sync["latest_app_hash"], 32)
    assert sync["latest_block_time"] == block.time
    assert sync["catching_up"] is False
    assert is_upper_hex(validator["address"], 20)
    assert validator["pub_key"]["type"] == "tendermint/PubKeySecp256k1"
    assert len(base64.b64decode(validator["pub_key"]["value"])) == 33
    assert rpc.call("health") == {}
    assert rpc.call("net_info")["n_peers"] == "0"
    abci = rpc.call("abci_info")["response"]
    assert int(abci["last_block_height"]) >= height


def test_node_status_shows_the_rpc_url(node: Node, gonka_home: Path) -> None:
    from typer.testing import CliRunner

    from gonka_cli.cli.main import app

    assert node.info is not None and node.info.rpc_url.startswith("http://127.0.0.1:")
    status = requests.get(node.info.url + "/v1/node/status", timeout=WAIT_S).json()
    assert status["rpc_url"] == node.info.rpc_url
    result = CliRunner().invoke(app, ["node", "status", "--node", node.info.url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rpc_url"] == node.info.rpc_url
    human = CliRunner().invoke(app, ["node", "status", "--node", node.info.url])
    assert human.exit_code == 0, human.output
    assert "rpc" in human.stdout and node.info.rpc_url in human.stdout


def test_uri_and_post_answer_alike(rpc: Rpc) -> None:
    resp = rpc.get("/block", height="1")
    assert resp.status_code == 200
    body = resp.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == -1
    assert body["result"] == rpc.call("block", height="1")
    assert rpc.get("/block", height='"1"').json()["result"] == body["result"]
    # Positional params, and an integer height, as some clients send them.
    answer = rpc.post({"jsonrpc": "2.0", "id": "x", "method": "block", "params": [1]}).json()
    assert answer["id"] == "x" and answer["result"] == body["result"]


def test_block_shapes(rpc: Rpc, node: Node) -> None:
    ledger = ledger_of(node)
    signed = transfer(node, ALICE, CAROL.address, 5, **SEND)
    height = int(commit_tx(rpc, signed.tx_bytes)["height"])
    result = rpc.call("block", height=str(height))
    block = ledger.block(height)
    assert block is not None
    assert result["block_id"]["hash"] == block.hash
    assert result["block_id"]["parts"]["total"] == 1
    header = result["block"]["header"]
    assert header["height"] == str(height) and header["chain_id"] == ledger.chain_id
    assert header["last_block_id"]["hash"] == block.prev_hash
    txs = [base64.b64decode(t) for t in result["block"]["data"]["txs"]]
    assert signed.tx_bytes in txs
    assert [txlib.tx_hash(t) for t in txs] == list(block.tx_hashes)
    import hashlib

    assert (
        header["data_hash"] == merkle_root([hashlib.sha256(t).digest() for t in txs]).hex().upper()
    )
    assert result["block"]["last_commit"]["block_id"]["hash"] == block.prev_hash
    # The first block has no previous block, as in CometBFT.
    first = rpc.call("block", height="1")["block"]
    assert first["header"]["last_block_id"] == {"hash": "", "parts": {"total": 0, "hash": ""}}

    results = rpc.call("block_results", height=str(height))
    assert results["height"] == str(height)
    (ours,) = [
        r
        for r, h in zip(results["txs_results"], block.tx_hashes, strict=True)
        if h == signed.txhash
    ]
    assert ours["code"] == 0 and int(ours["gas_used"]) > 0
    chain = rpc.call("blockchain", minHeight=str(height - 1), maxHeight=str(height))
    assert [m["header"]["height"] for m in chain["block_metas"]] == [str(height), str(height - 1)]
    assert chain["block_metas"][0]["num_txs"] == str(len(block.tx_hashes))
    validators = rpc.call("validators", height=str(height))
    assert validators["count"] == validators["total"] == "1"
    assert validators["validators"][0]["address"] == header["proposer_address"]


def commit_tx(rpc: Rpc, tx_bytes: bytes) -> dict[str, Any]:
    result = broadcast(rpc, tx_bytes, "broadcast_tx_commit")
    assert result["check_tx"]["code"] == 0, result
    assert result["tx_result"]["code"] == 0, result
    return result


@pytest.mark.parametrize(
    ("height", "words"),
    [
        ("999999999", "must be less than or equal to the current blockchain height"),
        ("-1", "height must be greater than 0"),
    ],
)
def test_bad_heights_are_errors(rpc: Rpc, height: str, words: str) -> None:
    for method in ("block", "block_results", "validators"):
        error = rpc.error(method, height=height)
        assert error["code"] == -32603 and words in error["data"], error


@pytest.mark.parametrize("height", ["abc", "1.5", "", "9" * 40, True, [], {}])
def test_malformed_heights_are_invalid_params(rpc: Rpc, height: Any) -> None:
    if height == "":
        assert rpc.call("block", height=height)  # empty means the latest, as in CometBFT
        return
    error = rpc.error("block", height=height)
    assert error["code"] == -32602, error


# --- transactions --------------------------------------------------------------------------


def test_broadcast_sync_then_tx_and_search(rpc: Rpc, node: Node) -> None:
    signed = transfer(node, BOB, CAROL.address, 77, **SEND)
    result = broadcast(rpc, signed.tx_bytes)
    assert result == {"code": 0, "data": "", "log": "", "codespace": "", "hash": signed.txhash}
    # The same bytes again: the SDK's "tx already exists in cache".
    again = broadcast(rpc, signed.tx_bytes)
    assert (again["code"], again["codespace"]) == (19, "sdk")
    found = wait_tx(rpc, signed.txhash)
    assert found["hash"] == signed.txhash
    assert found["tx"] == b64(signed.tx_bytes)
    assert found["tx_result"]["code"] == 0
    record = ledger_of(node).tx(signed.txhash)
    assert record is not None
    assert found["height"] == str(record.height) and found["index"] == record.index
    types = {e["type"] for e in found["tx_result"]["events"]}
    assert {"message", "transfer"} <= types
    # The hash as URI hex too.
    by_uri = rpc.get("/tx", hash="0x" + signed.txhash).json()["result"]
    assert by_uri == found
    search = rpc.call("tx_search", query=f"message.sender='{BOB.address}'")
    assert signed.txhash in [t["hash"] for t in search["txs"]]
    assert int(search["total_count"]) >= 1
    by_hash = rpc.call("tx_search", query=f"tx.hash='{signed.txhash}'")
    assert [t["hash"] for t in by_hash["txs"]] == [signed.txhash]
    by_height = rpc.call("tx_search", query=f"tx.height={record.height}", order_by="desc")
    assert signed.txhash in [t["hash"] for t in by_height["txs"]]


def wait_tx(rpc: Rpc, txhash: str) -> dict[str, Any]:
    import time

    limit = time.monotonic() + WAIT_S
    while True:
        resp = rpc.post(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tx",
                "params": {"hash": b64(bytes.fromhex(txhash))},
            }
        ).json()
        if "result" in resp:
            result: dict[str, Any] = resp["result"]
            return result
        assert "not found" in resp["error"]["data"], resp
        assert time.monotonic() < limit, f"{txhash} not in a block within {WAIT_S} s"
        time.sleep(0.02)


def test_refusals_carry_sdk_codes(rpc: Rpc, node: Node) -> None:
    ledger = ledger_of(node)
    state = ledger.account(ALICE.address)
    assert state is not None
    bad_chain = transfer(node, ALICE, CAROL.address, 1, chain_id="other-chain", **SEND)
    result = broadcast(rpc, bad_chain.tx_bytes)
    assert (result["code"], result["codespace"]) == (4, "sdk"), result
    assert "signature verification failed" in result["log"]
    wrong_sequence = transfer(node, ALICE, CAROL.address, 1, sequence=state.sequence + 50, **SEND)
    result = broadcast(rpc, wrong_sequence.tx_bytes)
    assert (result["code"], result["codespace"]) == (32, "sdk"), result
    result = broadcast(rpc, b"\x01\x02garbage")
    assert (result["code"], result["codespace"]) == (2, "sdk"), result
    # broadcast_tx_commit reports the CheckTx refusal without waiting for a block.
    committed = broadcast(rpc, bad_chain.tx_bytes, "broadcast_tx_commit")
    assert committed["check_tx"]["code"] == 4 and committed["height"] == "0"


def test_broadcast_async_and_commit(rpc: Rpc, node: Node) -> None:
    signed = transfer(node, ALICE, CAROL.address, 9, **SEND)
    result = broadcast(rpc, signed.tx_bytes, "broadcast_tx_async")
    assert result["hash"] == signed.txhash and result["code"] == 0
    wait_tx(rpc, signed.txhash)
    before = ledger_of(node).account(CAROL.address)
    done = commit(rpc, node, CAROL.address, 11)
    record = ledger_of(node).tx(done["hash"])
    assert record is not None and done["height"] == str(record.height)
    after = ledger_of(node).account(CAROL.address)
    assert after is not None
    assert after.balance == (before.balance if before else 0) + 11


# --- abci_query ------------------------------------------------------------------------------


def test_abci_query_account_and_balances(rpc: Rpc, node: Node) -> None:
    ledger = ledger_of(node)
    commit(rpc, node, CAROL.address, 3)  # Alice's public key is now on chain
    response = query(
        rpc,
        "/cosmos.auth.v1beta1.Query/Account",
        auth_query.QueryAccountRequest(address=ALICE.address),
    )
    assert response["code"] == 0 and int(response["height"]) >= 1, response
    answer = auth_query.QueryAccountResponse.FromString(base64.b64decode(response["value"]))
    assert answer.account.type_url == "/cosmos.auth.v1beta1.BaseAccount"
    base = auth_pb2.BaseAccount.FromString(answer.account.value)
    state = ledger.account(ALICE.address)
    assert state is not None
    assert (base.address, base.account_number, base.sequence) == (
        ALICE.address,
        state.number,
        state.sequence,
    )
    assert keys_pb2.PubKey.FromString(base.pub_key.value).key == ALICE.key.public_key.to_bytes()

    missing = query(
        rpc,
        "/cosmos.auth.v1beta1.Query/Account",
        auth_query.QueryAccountRequest(address=account("nobody").address),
    )
    # cosmjs recognises a missing account by this wording.
    assert missing["code"] == 38 and "rpc error: code = NotFound" in missing["log"], missing

    balance = query(
        rpc,
        "/cosmos.bank.v1beta1.Query/Balance",
        bank_query.QueryBalanceRequest(address=ALICE.address, denom="ngonka"),
    )
    coin = bank_query.QueryBalanceResponse.FromString(base64.b64decode(balance["value"])).balance
    assert (coin.denom, int(coin.amount)) == ("ngonka", state.balance)
    for path, request_type, response_type in (
        (
            "/cosmos.bank.v1beta1.Query/AllBalances",
            bank_query.QueryAllBalancesRequest,
            bank_query.QueryAllBalancesResponse,
        ),
        (
            "/cosmos.bank.v1beta1.Query/SpendableBalances",
            bank_query.QuerySpendableBalancesRequest,
            bank_query.QuerySpendableBalancesResponse,
        ),
    ):
        got = query(rpc, path, request_type(address=ALICE.address))
        coins = response_type.FromString(base64.b64decode(got["value"])).balances
        assert [(c.denom, int(c.amount)) for c in coins] == [("ngonka", state.balance)]
    bad = query(
        rpc,
        "/cosmos.bank.v1beta1.Query/AllBalances",
        bank_query.QueryAllBalancesRequest(address="gonka1notanaddress"),
    )
    assert bad["code"] == 18, bad


def test_abci_query_simulate_and_get_tx(rpc: Rpc, node: Node) -> None:
    ledger = ledger_of(node)
    state = ledger.account(ALICE.address)
    assert state is not None
    message = txlib.MsgSend(ALICE.address, CAROL.address, txlib.coins(5))
    sim_tx = txlib.simulation_tx(ALICE.key.public_key, sequence=state.sequence, message=message)
    response = query(
        rpc, "/cosmos.tx.v1beta1.Service/Simulate", service_pb2.SimulateRequest(tx_bytes=sim_tx)
    )
    assert response["code"] == 0, response
    gas = service_pb2.SimulateResponse.FromString(base64.b64decode(response["value"])).gas_info
    assert gas.gas_used == ledger.simulate(sim_tx).gas_used > 0
    too_much = txlib.MsgSend(ALICE.address, CAROL.address, txlib.coins(10**18))
    failing = txlib.simulation_tx(ALICE.key.public_key, sequence=state.sequence, message=too_much)
    refused = query(
        rpc, "/cosmos.tx.v1beta1.Service/Simulate", service_pb2.SimulateRequest(tx_bytes=failing)
    )
    assert refused["code"] == 6 and "insufficient funds" in refused["log"], refused

    done = commit(rpc, node, CAROL.address, 4)
    got = query(
        rpc, "/cosmos.tx.v1beta1.Service/GetTx", service_pb2.GetTxRequest(hash=done["hash"])
    )
    answer = service_pb2.GetTxResponse.FromString(base64.b64decode(got["value"]))
    assert answer.tx_response.txhash == done["hash"]
    assert answer.tx_response.height == int(done["height"])
    assert answer.tx_response.code == 0
    assert answer.tx.body.memo == ""
    assert {e.type for e in answer.tx_response.events} >= {"message", "transfer"}
    unknown = query(
        rpc, "/cosmos.tx.v1beta1.Service/GetTx", service_pb2.GetTxRequest(hash="AB" * 32)
    )
    assert unknown["code"] == 38, unknown


def test_abci_query_node_info_and_latest_block(rpc: Rpc, node: Node) -> None:
    ledger = ledger_of(node)
    info = query(
        rpc, "/cosmos.base.tendermint.v1beta1.Service/GetNodeInfo", tm_query.GetNodeInfoRequest()
    )
    answer = tm_query.GetNodeInfoResponse.FromString(base64.b64decode(info["value"]))
    assert answer.default_node_info.network == ledger.chain_id
    assert answer.application_version.cosmos_sdk_version == COSMOS_SDK_VERSION
    latest = query(
        rpc,
        "/cosmos.base.tendermint.v1beta1.Service/GetLatestBlock",
        tm_query.GetLatestBlockRequest(),
    )
    block = tm_query.GetLatestBlockResponse.FromString(base64.b64decode(latest["value"]))
    ours = ledger.block(block.block.header.height)
    assert ours is not None and block.block_id.hash.hex().upper() == ours.hash
    assert block.block.header.chain_id == ledger.chain_id


def test_abci_query_refusals(rpc: Rpc) -> None:
    unknown = rpc.call("abci_query", path="/cosmos.nope.v1.Query/Nothing", data="")["response"]
    assert unknown["code"] == 6 and unknown["codespace"] == "sdk", unknown
    garbage = rpc.call("abci_query", path="/cosmos.auth.v1beta1.Query/Account", data="ffff")
    assert garbage["response"]["code"] == 18, garbage
    error = rpc.error("abci_query", path="/cosmos.auth.v1beta1.Query/Account", data="zz")
    assert error["code"] == -32602


# --- websocket ---------------------------------------------------------------------------


def ws_url(rpc: Rpc) -> str:
    return rpc.url.replace("http://", "ws://") + "/websocket"


def next_message(ws: Any) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=WAIT_S))
    return message


def test_websocket_new_block_and_tx_events(rpc: Rpc, node: Node) -> None:
    with ws_connect(ws_url(rpc), open_timeout=WAIT_S) as ws:
        ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "subscribe",
                    "params": {"query": "tm.event='NewBlock'"},
                }
            )
        )
        assert next_message(ws) == {"jsonrpc": "2.0", "id": 1, "result": {}}
        event = next_message(ws)
        assert event["id"] == 1
        assert event["result"]["query"] == "tm.event='NewBlock'"
        assert event["result"]["data"]["type"] == "tendermint/event/NewBlock"
        height = int(event["result"]["data"]["value"]["block"]["header"]["height"])
        block = ledger_of(node).block(height)
        assert block is not None
        assert event["result"]["data"]["value"]["block_id"]["hash"] == block.hash
        assert event["result"]["events"]["tm.event"] == ["NewBlock"]
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "unsubscribe_all", "params": {}}))
        # Events already queued may come before the answer.
        while (message := next_message(ws))["id"] != 2:
            assert message["id"] == 1
        assert message["result"] == {}

        query = f"tm.event='Tx' AND message.sender='{BOB.address}'"
        ws.send(
            json.dumps(
                {"jsonrpc": "2.0", "id": "tx", "method": "subscribe", "params": {"query": query}}
            )
        )
        assert next_message(ws) == {"jsonrpc": "2.0", "id": "tx", "result": {}}
        ignored = transfer(node, ALICE, CAROL.address, 1, **SEND)  # another sender
        wanted = transfer(node, BOB, CAROL.address, 2, **SEND)
        assert broadcast(rpc, ignored.tx_bytes)["code"] == 0
        assert broadcast(rpc, wanted.tx_bytes)["code"] == 0
        event = next_message(ws)
        assert event["id"] == "tx" and event["result"]["query"] == query
        data = event["result"]["data"]
        assert data["type"] == "tendermint/event/Tx"
        assert base64.b64decode(data["value"]["TxResult"]["tx"]) == wanted.tx_bytes
        assert data["value"]["TxResult"]["result"]["code"] == 0
        assert event["result"]["events"]["tx.hash"] == [wanted.txhash]
        # Plain methods work over the websocket too.
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "health"}))
        while (message := next_message(ws))["id"] != 3:
            pass
        assert message["result"] == {}


def test_websocket_refusals(rpc: Rpc) -> None:
    with ws_connect(ws_url(rpc), open_timeout=WAIT_S) as ws:
        ws.send("{not json")
        assert next_message(ws)["error"]["code"] == -32700
        ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"query": "x"}})
        )
        assert next_message(ws)["error"]["code"] == -32602
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "subscribe", "params": {}}))
        assert next_message(ws)["error"]["code"] == -32602
        ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 3,
                    "method": "unsubscribe",
                    "params": {"query": "tm.event='Tx'"},
                }
            )
        )
        assert next_message(ws)["error"]["code"] == -32603
        for i in range(5):
            ws.send(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 10 + i,
                        "method": "subscribe",
                        "params": {"query": f"tm.event='Tx' AND tx.height={i + 10**9}"},
                    }
                )
            )
            assert next_message(ws)["result"] == {}
        ws.send(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 20,
                    "method": "subscribe",
                    "params": {"query": "tm.event='NewBlock'"},
                }
            )
        )
        assert "max_subscriptions" in next_message(ws)["error"]["data"]


def test_websocket_client_too_slow_is_dropped(
    rpc: Rpc, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from websockets.exceptions import ConnectionClosed

    import gonka_cli.node.rpc as rpc_module

    with ws_connect(ws_url(rpc), open_timeout=WAIT_S) as ws:
        for i, query in enumerate(("tm.event='NewBlock'", "tm.event='Tx'")):
            ws.send(
                json.dumps(
                    {"jsonrpc": "2.0", "id": i, "method": "subscribe", "params": {"query": query}}
                )
            )
            assert next_message(ws)["result"] == {}
        # No room at all: the next block's first event finds the client "behind".
        monkeypatch.setattr(rpc_module, "MAX_QUEUED_EVENTS", 0)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                next_message(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    height = rpc.height()
    rpc.wait_height(height + 1)  # the node goes on, and no block hook failed on the way
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


# --- envelope errors ---------------------------------------------------------------------


def test_envelope_errors(rpc: Rpc) -> None:
    resp = rpc.http.post(rpc.url, data=b"{nope", timeout=WAIT_S)
    assert resp.status_code == 500 and assert_rpc_error(resp)["code"] == -32700
    resp = rpc.post({"jsonrpc": "2.0", "id": 1, "method": "no_such_method"})
    assert resp.status_code == 200 and assert_rpc_error(resp, 1)["code"] == -32601
    resp = rpc.post({"jsonrpc": "1.0", "id": 1, "method": "status"})
    assert assert_rpc_error(resp, 1)["code"] == -32600
    resp = rpc.post(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "health"},
            {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        ]
    )
    first, second = resp.json()
    assert first == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert second["error"]["code"] == -32601
    resp = rpc.get("/no_such_method")
    assert resp.status_code == 404 and assert_rpc_error(resp)["code"] == -32601
    resp = rpc.http.post(rpc.url, data=b"[" * 100_000, timeout=WAIT_S)
    assert assert_rpc_error(resp)["code"] == -32700
    resp = rpc.http.post(rpc.url, data=b" " * (2 << 20), timeout=WAIT_S)
    assert resp.status_code == 413 and assert_rpc_error(resp)["code"] == -32600
    resp = rpc.http.put(rpc.url + "/status", timeout=WAIT_S)
    assert resp.status_code == 405 and assert_rpc_error(resp)["code"] == -32600


def test_bugs_are_answered_in_each_apis_shape(
    rpc: Rpc, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (an exception nobody handles) is logged and answered: JSON-RPC's internal error on
    the RPC, the grpc-gateway shape with code 13 on REST (through a plain ASGI middleware)."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ledger_of(node), "status", broken)
    monkeypatch.setattr(ledger_of(node), "block", broken)
    resp = rpc.get("/block", height="1")
    assert resp.status_code == 500
    assert assert_rpc_error(resp)["data"] == "internal error; see the node's log"
    assert node.info is not None
    rest = requests.get(node.info.url + "/v1/node/status", timeout=WAIT_S)
    assert rest.status_code == 500
    assert rest.json()["code"] == 13 and "see the node's log" in rest.json()["message"]


# --- fuzzing -----------------------------------------------------------------------------

FUZZ_SETTINGS = settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
METHODS = [
    "status",
    "abci_info",
    "abci_query",
    "broadcast_tx_sync",
    "broadcast_tx_async",
    "broadcast_tx_commit",
    "tx",
    "tx_search",
    "block",
    "block_results",
    "blockchain",
    "validators",
    "health",
    "net_info",
]
PARAM_NAMES = [
    "height",
    "hash",
    "tx",
    "query",
    "page",
    "per_page",
    "order_by",
    "prove",
    "path",
    "data",
    "minHeight",
    "maxHeight",
]
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["0", "-1", "1", "9" * 30, "0x00", "AAAA", "tm.event='Tx'", "' AND '"]),
    st.just("A" * 200_000),  # huge params
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
requests_strategy = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | json_leaf,
        "id": st.integers(-(2**70), 2**70) | st.text(max_size=10) | json_value,
        "method": st.sampled_from(METHODS) | st.text(max_size=20) | json_leaf,
        "params": st.dictionaries(st.sampled_from(PARAM_NAMES), json_value, max_size=5)
        | st.lists(json_value, max_size=6)
        | json_leaf,
    },
)


def check_answer(resp: requests.Response) -> None:
    """A JSON-RPC answer (or a batch of them); errors never say the node had a bug."""
    assert resp.status_code in (200, 404, 405, 413, 500), (resp.status_code, resp.text[:300])
    body = resp.json()
    answers = body if isinstance(body, list) else [body]
    for answer in answers:
        if answer == {}:  # a notification
            continue
        assert answer["jsonrpc"] == "2.0", answer
        assert ("result" in answer) != ("error" in answer), answer
        if "error" in answer:
            assert answer["error"]["code"] in (-32700, -32600, -32601, -32602, -32603), answer
            assert "see the node's log" not in answer["error"]["data"], answer
    if resp.status_code != 200:
        assert not isinstance(body, list) and "error" in body, body


@pytest.fixture
def fuzz_rpc(tmp_path: Path) -> Iterator[Rpc]:
    """One node for all examples; a block each 0.1 s so that commits can finish."""
    with rpc_node(tmp_path / "fuzz", GENESIS, min_gas_price="0.1") as running:
        client = Rpc(running)
        client.wait_height(1)
        yield client


@FUZZ_SETTINGS
@given(request=requests_strategy | st.lists(requests_strategy, min_size=1, max_size=3))
def test_fuzz_json_rpc(fuzz_rpc: Rpc, request: Any) -> None:
    check_answer(fuzz_rpc.post(request))


@FUZZ_SETTINGS
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzz_raw_bodies(fuzz_rpc: Rpc, body: bytes) -> None:
    resp = fuzz_rpc.http.post(fuzz_rpc.url, data=body, timeout=WAIT_S)
    check_answer(resp)


@FUZZ_SETTINGS
@given(
    method=st.sampled_from(METHODS) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz_/", max_size=20),
    params=st.dictionaries(
        st.sampled_from(PARAM_NAMES),
        st.text(max_size=30) | st.sampled_from(['"1"', "0xZZ", '"unterminated', "-5", "9" * 25]),
        max_size=4,
    ),
)
def test_fuzz_uri(fuzz_rpc: Rpc, method: str, params: dict[str, str]) -> None:
    if method.startswith("websocket"):
        return  # the websocket path answers upgrades only
    resp = fuzz_rpc.http.get(fuzz_rpc.url + "/" + method, params=params, timeout=WAIT_S)
    check_answer(resp)


def test_node_survives_the_fuzz(fuzz_rpc: Rpc) -> None:
    # After heavy params and bad heights, the node still answers and makes blocks.
    for method, params in (
        ("block", {"height": "9" * 19}),
        ("tx_search", {"query": "message.sender='x'" + " AND a='b'" * 40}),
        ("abci_query", {"path": "/x", "data": "00" * 400_000}),
    ):
        check_answer(fuzz_rpc.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
    height = fuzz_rpc.height()
    fuzz_rpc.wait_height(height + 1)
