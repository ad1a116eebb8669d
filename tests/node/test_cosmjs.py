"""cosmjs, the library under Keplr and most Cosmos dapps, against a real node over its RPC.

tests/js/cosmjs_check.mjs drives cosmjs 0.39 from npm (never our own encoder): it connects
over CometBFT RPC, queries, simulates, signs a MsgSend with a DIRECT signer and with an amino
(SIGN_MODE_LEGACY_AMINO_JSON) signer, broadcasts through `broadcast_tx_sync`, then finds the
transaction with `getTx` and `searchTx`; its Comet38Client subscribes to NewBlock and Tx
events over `/websocket`. Each answer is checked here against the ledger.

Needs node and `npm ci --prefix tests/js` (`.ci/run` does it); skipped, naming what is
missing, where they are absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.chain import tx as txlib
from gonka_cli.crypto import address as addr
from gonka_cli.crypto.hd import HDPath, derive_private_key
from gonka_cli.node.ledger import Ledger
from gonka_cli.node.runner import Node
from tests.node.rpc_helpers import rpc_node

JS_DIR = Path(__file__).resolve().parent.parent / "js"
SCRIPT = JS_DIR / "cosmjs_check.mjs"
MNEMONIC = (
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
)
SENDER = addr.address_from_pubkey(
    derive_private_key(MNEMONIC, HDPath.bip44()).public_key.to_bytes()
)
#: Never funded: cosmjs must see no account for it, then the transfers create it.
RECIPIENT = addr.address_from_pubkey(
    derive_private_key(MNEMONIC, HDPath.bip44(index=1)).public_key.to_bytes()
)
FUNDS = 10**12


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node (Node.js) is not installed"
    for package in ("stargate", "proto-signing", "amino", "tendermint-rpc", "crypto"):
        if not (JS_DIR / "node_modules" / "@cosmjs" / package).is_dir():
            return f"@cosmjs/{package} is not installed: run npm ci --prefix tests/js"
    return None


pytestmark = [
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("cosmjs") / "node"
    with rpc_node(root, [(SENDER, FUNDS)], min_gas_price="0.1") as running:
        yield running


def cosmjs(node: Node, case: str) -> dict[str, Any]:
    """Run one case of the cosmjs script; its JSON answer."""
    assert node.info is not None
    proc = subprocess.run(
        ["node", str(SCRIPT), case, node.info.rpc_url, MNEMONIC, RECIPIENT],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"cosmjs printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}"
    answer: dict[str, Any] = json.loads(lines[-1])
    assert proc.returncode == 0 and "error" not in answer, answer.get("error", proc.stderr)
    return answer


def ledger_of(node: Node) -> Ledger:
    assert node.ledger is not None
    return node.ledger


def test_queries_over_rpc(node: Node) -> None:
    ledger = ledger_of(node)
    got = cosmjs(node, "queries")
    assert got["chainId"] == ledger.chain_id
    assert got["address"] == SENDER  # cosmjs derives the same address (coin type 1200)
    assert 1 <= got["height"] <= ledger.height
    account = ledger.account(SENDER)
    assert account is not None
    assert got["balance"] == {"denom": "ngonka", "amount": str(account.balance)}
    assert got["allBalances"] == [{"denom": "ngonka", "amount": str(account.balance)}]
    assert got["account"]["address"] == SENDER
    assert int(got["account"]["accountNumber"]) == account.number
    assert int(got["account"]["sequence"]) == account.sequence
    assert got["missingAccount"] is None
    block = ledger.block(got["block"]["height"])
    assert block is not None
    assert got["block"]["hash"] == block.hash
    assert got["block"]["chainId"] == ledger.chain_id
    first = ledger.block(1)
    assert first is not None and got["firstBlock"] == {"height": 1, "hash": first.hash}


def _check_send(node: Node, got: dict[str, Any]) -> None:
    ledger = ledger_of(node)
    assert got["code"] == 0, got["rawLog"]
    assert got["received"] == "1234"
    record = ledger.tx(got["txhash"])
    assert record is not None and record.code == 0 and record.height == got["height"]
    assert got["getTx"] == {"hash": record.hash, "height": record.height, "code": 0}
    assert got["txhash"] in got["bySender"]
    # Gas by simulation: cosmjs multiplies what simulate answered by 1.4.
    assert got["gasSimulated"] > 0
    assert int(got["gasWanted"]) == int(got["gasSimulated"] * 1.4)
    assert int(got["gasUsed"]) == record.gas_used
    types = [e["type"] for e in got["events"]]
    assert {"message", "transfer", "coin_spent", "coin_received"} <= set(types)
    assert got["msgResponses"] == [{"typeUrl": "/cosmos.bank.v1beta1.MsgSendResponse", "value": ""}]


def test_sign_and_broadcast_direct(node: Node) -> None:
    got = cosmjs(node, "direct")
    _check_send(node, got)
    record = ledger_of(node).tx(got["txhash"])
    assert record is not None
    assert txlib.decode_tx(record.tx_bytes).signers[0].mode == txlib.SIGN_MODE_DIRECT


def test_sign_and_broadcast_amino(node: Node) -> None:
    got = cosmjs(node, "amino")
    _check_send(node, got)
    record = ledger_of(node).tx(got["txhash"])
    assert record is not None
    # SIGN_MODE_LEGACY_AMINO_JSON = 127: the node verified the amino sign document.
    assert txlib.decode_tx(record.tx_bytes).signers[0].mode == 127


def test_websocket_subscriptions(node: Node) -> None:
    """cosmjs's Comet38Client over /websocket: a NewBlock event, then the Tx event of a
    transfer it signs and broadcasts meanwhile."""
    ledger = ledger_of(node)
    got = cosmjs(node, "websocket")
    block = ledger.block(got["block"]["height"])
    assert block is not None
    assert got["block"]["chainId"] == ledger.chain_id
    assert got["block"]["txs"] == len(block.tx_hashes)
    assert got["broadcast"]["code"] == 0
    assert got["tx"]["hash"] == got["broadcast"]["hash"]
    assert got["tx"]["height"] == got["broadcast"]["height"]
    assert got["tx"]["code"] == 0
    assert {"message", "transfer"} <= set(got["tx"]["events"])
