"""SIGN_MODE_LEGACY_AMINO_JSON: the Cosmos SDK's amino sign document (`StdSignDoc`).

Ledger devices and Keplr's amino signer sign this JSON instead of the protobuf SignDoc:

    {"account_number": "7", "chain_id": "...", "fee": {"amount": [...], "gas": "200000"},
     "memo": "", "msgs": [{"type": "cosmos-sdk/MsgSend", "value": {...}}], "sequence": "3"}

Keys sorted at every level, no whitespace, every number a string, and `<`, `>`, `&` written
as `\\u003c`, `\\u003e`, `\\u0026` (Go's JSON escaping, which the SDK and cosmjs both keep);
other characters stay raw UTF-8. The signature is secp256k1 over SHA-256 of those bytes, as in
DIRECT mode. `timeout_height` appears only when set, as do the fee's `payer` and `granter`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gonka_cli.chain.tx import Coin, Fee, MsgSend

#: The amino name of `/cosmos.bank.v1beta1.MsgSend`.
MSG_SEND_AMINO_TYPE = "cosmos-sdk/MsgSend"


def _coins(coins: Sequence[Coin]) -> list[dict[str, str]]:
    return [{"amount": str(c.amount), "denom": c.denom} for c in coins]


def msg_send_json(msg: MsgSend) -> dict[str, Any]:
    """A MsgSend as the amino JSON `{type, value}` the SDK signs."""
    return {
        "type": MSG_SEND_AMINO_TYPE,
        "value": {
            "amount": _coins(msg.amount),
            "from_address": msg.from_address,
            "to_address": msg.to_address,
        },
    }


def serialize(doc: dict[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no spaces, <>& escaped, UTF-8."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return text.encode("utf-8")


def sign_doc_bytes(
    messages: Sequence[MsgSend],
    fee: Fee,
    *,
    chain_id: str,
    account_number: int,
    sequence: int,
    memo: str = "",
    timeout_height: int = 0,
) -> bytes:
    """What an amino signer signs for this transaction: its StdSignDoc, serialized."""
    fee_json: dict[str, Any] = {"amount": _coins(fee.amount), "gas": str(fee.gas_limit)}
    if fee.payer:
        fee_json["payer"] = fee.payer
    if fee.granter:
        fee_json["granter"] = fee.granter
    doc: dict[str, Any] = {
        "account_number": str(account_number),
        "chain_id": chain_id,
        "fee": fee_json,
        "memo": memo,
        "msgs": [msg_send_json(m) for m in messages],
        "sequence": str(sequence),
    }
    if timeout_height:
        doc["timeout_height"] = str(timeout_height)
    return serialize(doc)
