"""SIGN_MODE_LEGACY_AMINO_JSON, checked against cosmjs rather than our own encoder.

`tests/vectors/amino_vectors.json` was written by cosmjs 0.39.0 (`tests/js/amino_vectors.mjs`):
sign documents as `@cosmjs/amino` serialises and signs them, and whole transactions that
`SigningStargateClient.sign` built offline with an amino signer and with a DIRECT one. The node
must take both transactions, byte for byte as cosmjs made them.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.chain import amino
from gonka_cli.chain import tx as txlib
from gonka_cli.chain.amount import DENOM
from gonka_cli.chain.client import ChainClient
from gonka_cli.crypto import address as addr
from gonka_cli.crypto.secp256k1 import PrivateKey, PublicKey
from gonka_cli.errors import TxError
from gonka_cli.node.genesis import GNK
from gonka_cli.node.ledger import Ledger
from gonka_cli.node.runner import Node
from gonka_cli.settings import NetworkProfile
from gonka_cli.wallet import transfer
from tests.conftest import StartNode
from tests.node.helpers import Api

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "amino_vectors.json").read_text()
)
KEY = PrivateKey(bytes.fromhex(VECTORS["private_key_hex"]))
ADDRESS = VECTORS["address"]
RECIPIENT = VECTORS["recipient"]
FUNDS = 1_000 * GNK


def _coins(items: list[dict[str, str]]) -> tuple[txlib.Coin, ...]:
    return tuple(txlib.Coin(c["denom"], int(c["amount"])) for c in items)


def _from_doc(doc: dict[str, Any]) -> bytes:
    """Our encoding of a cosmjs sign document, rebuilt from its parts."""
    messages = [
        txlib.MsgSend(
            m["value"]["from_address"], m["value"]["to_address"], _coins(m["value"]["amount"])
        )
        for m in doc["msgs"]
    ]
    assert all(m["type"] == amino.MSG_SEND_AMINO_TYPE for m in doc["msgs"])
    fee = txlib.Fee(_coins(doc["fee"]["amount"]), int(doc["fee"]["gas"]))
    return amino.sign_doc_bytes(
        messages,
        fee,
        chain_id=doc["chain_id"],
        account_number=int(doc["account_number"]),
        sequence=int(doc["sequence"]),
        memo=doc["memo"],
    )


def test_the_vectors_key_is_the_vectors_address() -> None:
    pubkey = KEY.public_key.to_bytes()
    assert base64.b64encode(pubkey).decode() == VECTORS["public_key_b64"]
    assert addr.address_from_pubkey(pubkey) == ADDRESS


@pytest.mark.parametrize("case", VECTORS["sign_docs"], ids=lambda c: c["name"])
def test_sign_document_bytes_and_signature_match_cosmjs(case: dict[str, Any]) -> None:
    expected = case["serialized"].encode("utf-8")
    assert _from_doc(case["sign_doc"]) == expected
    assert amino.serialize(case["sign_doc"]) == expected
    signature = base64.b64decode(case["signature_b64"])
    # Both sign deterministically (RFC 6979, low-S): the same bytes, the same signature.
    assert KEY.sign(expected) == signature
    assert PublicKey(KEY.public_key.to_bytes()).verify(expected, signature)


def test_escaping_is_gos_and_other_characters_stay_raw() -> None:
    (case,) = [c for c in VECTORS["sign_docs"] if c["name"] == "escaped-memo"]
    text = case["serialized"]
    assert "\\u003c" in text and "\\u003e" in text and "\\u0026" in text
    assert "é ✓" in text and "<" not in text


@pytest.mark.parametrize("case", VECTORS["txs"], ids=lambda c: c["mode"])
def test_cosmjs_transactions_verify(case: dict[str, Any]) -> None:
    decoded = txlib.decode_tx(base64.b64decode(case["tx_bytes_b64"]))
    mode = {"amino": txlib.SIGN_MODE_LEGACY_AMINO_JSON, "direct": txlib.SIGN_MODE_DIRECT}
    assert decoded.signers[0].mode == mode[case["mode"]]
    assert decoded.verify(case["chainId"], case["accountNumber"])
    assert not decoded.verify("gonka-mainnet", case["accountNumber"])
    assert not decoded.verify(case["chainId"], case["accountNumber"] + 1)


def test_our_amino_signature_equals_cosmjs() -> None:
    (case,) = [c for c in VECTORS["txs"] if c["mode"] == "amino"]
    signed = txlib.sign_amino(
        KEY,
        [txlib.MsgSend(ADDRESS, RECIPIENT, txlib.coins(int(case["amount_ngonka"])))],
        txlib.Fee(txlib.coins(int(case["fee_ngonka"])), int(case["gas"])),
        chain_id=case["chainId"],
        account_number=case["accountNumber"],
        sequence=case["sequence"],
        memo=case["memo"],
    )
    assert base64.b64encode(signed.tx_bytes).decode() == case["tx_bytes_b64"]
    assert signed.txhash == case["txhash"]


# --- the node -----------------------------------------------------------------------------


@pytest.fixture
def node(start_node: StartNode) -> Node:
    # The faucet is account 0, so ADDRESS is account 1, as the vectors were signed for.
    return start_node(accounts=[(ADDRESS, FUNDS)], block_time_s=3600)


def _ledger(node: Node) -> Ledger:
    assert node.ledger is not None
    return node.ledger


@pytest.mark.parametrize("mode", ["amino", "direct"])
def test_node_takes_cosmjs_transactions(node: Node, mode: str) -> None:
    api = Api(node)
    (case,) = [c for c in VECTORS["txs"] if c["mode"] == mode]
    account = _ledger(node).account(ADDRESS)
    assert account is not None and account.number == case["accountNumber"]
    result = api.broadcast(base64.b64decode(case["tx_bytes_b64"]))
    assert result["code"] == 0, result
    assert result["txhash"] == case["txhash"]
    _ledger(node).make_block()
    response = api.get(f"/cosmos/tx/v1beta1/txs/{case['txhash']}").json()["tx_response"]
    assert response["code"] == 0
    names = {"amino": "SIGN_MODE_LEGACY_AMINO_JSON", "direct": "SIGN_MODE_DIRECT"}
    assert (
        response["tx"]["auth_info"]["signer_infos"][0]["mode_info"]["single"]["mode"]
        == (names[mode])
    )
    assert response["tx"]["body"]["memo"] == case["memo"]
    assert api.balance(RECIPIENT) == int(case["amount_ngonka"])
    fee_and_amount = int(case["amount_ngonka"]) + int(case["fee_ngonka"])
    assert api.balance(ADDRESS) == FUNDS - fee_and_amount


def _amino_send(node: Node, **changes: Any) -> txlib.SignedTx:
    account = _ledger(node).account(ADDRESS)
    assert account is not None
    options: dict[str, Any] = {
        "chain_id": "gonka-devnet",
        "account_number": account.number,
        "sequence": account.sequence,
        "memo": "",
    }
    options.update(changes)
    return txlib.sign_amino(
        KEY,
        [txlib.MsgSend(ADDRESS, RECIPIENT, txlib.coins(7))],
        txlib.Fee((), 200_000),
        **options,
    )


def test_our_amino_transaction_lands(node: Node) -> None:
    api = Api(node)
    signed = _amino_send(node, memo="from a ledger <device>")
    assert api.broadcast(signed.tx_bytes)["code"] == 0
    _ledger(node).make_block()
    assert api.get(f"/cosmos/tx/v1beta1/txs/{signed.txhash}").json()["tx_response"]["code"] == 0
    assert api.balance(RECIPIENT) == 7


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"chain_id": "gonka-mainnet"}, id="wrong-chain-id"),
        pytest.param({"account_number": 5}, id="wrong-account-number"),
    ],
)
def test_bad_amino_signatures_are_code_4(node: Node, changes: dict[str, Any]) -> None:
    api = Api(node)
    result = api.broadcast(_amino_send(node, **changes).tx_bytes)
    assert result["code"] == 4 and result["codespace"] == "sdk"
    # The SDK's wording for amino signers names the sequence too.
    assert result["raw_log"].startswith("signature verification failed; please verify account")
    assert "sequence (0) and chain-id (gonka-devnet)" in result["raw_log"]
    assert api.balance(RECIPIENT) == 0


def test_amino_signature_over_another_document_is_refused(node: Node) -> None:
    """The body says one memo, the signature covers another: the sign document differs."""
    api = Api(node)
    honest = _amino_send(node, memo="a")
    other = _amino_send(node, memo="b")
    forged = txlib.encode_tx_raw(honest.body_bytes, honest.auth_info_bytes, [other.signature])
    assert api.broadcast(forged)["code"] == 4


@pytest.mark.parametrize("mode", [0, 2, 3, 191])
def test_other_sign_modes_are_refused_with_code_4(node: Node, mode: int) -> None:
    api = Api(node)
    account = _ledger(node).account(ADDRESS)
    assert account is not None
    body = txlib.encode_body([txlib.MsgSend(ADDRESS, RECIPIENT, txlib.coins(7, DENOM))])
    auth_info = txlib.encode_auth_info(KEY.public_key, 0, txlib.Fee((), 200_000), mode)
    signature = KEY.sign(txlib.encode_sign_doc(body, auth_info, "gonka-devnet", account.number))
    result = api.broadcast(txlib.encode_tx_raw(body, auth_info, [signature]))
    assert result["code"] == 4
    assert (
        f"(unsupported sign mode {txlib.sign_mode_name(mode)}): unauthorized" in result["raw_log"]
    )


# --- `gonka wallet broadcast` (the core call it makes) ------------------------------------


def _client(node: Node) -> tuple[ChainClient, NetworkProfile]:
    assert node.info is not None
    profile = NetworkProfile("devnet", node.info.chain_id, (node.info.url,))
    return ChainClient(profile, timeout_s=10), profile


def test_wallet_broadcasts_a_cosmjs_amino_transaction(node: Node) -> None:
    (case,) = [c for c in VECTORS["txs"] if c["mode"] == "amino"]
    client, profile = _client(node)
    with client:
        decoded = transfer.decode_tx_bytes(case["tx_bytes_b64"])
        assert transfer.broadcast_signed(client, profile, decoded) == case["txhash"]
    assert _ledger(node).pending(case["txhash"])


def test_wallet_names_an_unsupported_sign_mode(node: Node) -> None:
    body = txlib.encode_body([txlib.MsgSend(ADDRESS, RECIPIENT, txlib.coins(7))])
    auth_info = txlib.encode_auth_info(KEY.public_key, 0, txlib.Fee((), 200_000), 2)
    signature = KEY.sign(txlib.encode_sign_doc(body, auth_info, "gonka-devnet", 1))
    tx_bytes = txlib.encode_tx_raw(body, auth_info, [signature])
    client, profile = _client(node)
    with client, pytest.raises(TxError) as refused:
        transfer.broadcast_signed(client, profile, txlib.decode_tx(tx_bytes))
    assert str(refused.value) == (
        "the transaction is signed in SIGN_MODE_TEXTUAL, which the chain does not verify (it "
        "takes SIGN_MODE_DIRECT and SIGN_MODE_LEGACY_AMINO_JSON); nothing was sent"
    )
    assert _ledger(node).mempool == []
