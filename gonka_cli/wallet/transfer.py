"""Sending GNK: plan (read the chain, estimate gas), sign, broadcast, and wait for the block.

The steps are separate so the CLI can show the plan and ask before anything is signed:

    plan = plan_send(client, key_info, to, amount, ...)   # reads only
    sent = submit(client, plan, private_key)               # signs and broadcasts
    result = wait_for_block(client, sent.txhash)           # polls until it is in a block
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, replace
from typing import Any

from gonka_cli.chain import codes
from gonka_cli.chain import tx as txlib
from gonka_cli.chain.amount import describe
from gonka_cli.chain.client import Account, ChainClient, TxResult
from gonka_cli.crypto import address as addr
from gonka_cli.crypto.secp256k1 import PrivateKey, PublicKey
from gonka_cli.errors import (
    ChainError,
    ChainIdMismatch,
    InputError,
    InsufficientFunds,
    TxError,
)
from gonka_cli.settings import NetworkProfile
from gonka_cli.wallet.keystore import KeyInfo

log = logging.getLogger(__name__)

#: The SDK's default MaxMemoCharacters; it counts UTF-8 bytes (Go's len), not characters.
MAX_MEMO_BYTES = 256


@dataclass(frozen=True)
class SendPlan:
    """Everything needed to sign a transfer, shown to the user before signing."""

    network: str
    chain_id: str
    node_url: str
    from_name: str
    from_address: str
    pubkey_hex: str
    to_address: str
    amount_ngonka: int
    fee_ngonka: int
    gas_limit: int
    gas_estimated: bool
    memo: str
    account_number: int
    sequence: int
    denom: str = "ngonka"

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "chain_id": self.chain_id,
            "node": self.node_url,
            "from": self.from_address,
            "from_name": self.from_name,
            "to": self.to_address,
            "amount_ngonka": str(self.amount_ngonka),
            "fee_ngonka": str(self.fee_ngonka),
            "gas_limit": str(self.gas_limit),
            "memo": self.memo,
            "account_number": str(self.account_number),
            "sequence": str(self.sequence),
        }


@dataclass(frozen=True)
class Submitted:
    txhash: str
    plan: SendPlan
    retried: bool = False


@dataclass(frozen=True)
class OfflineTx:
    tx_bytes_b64: str
    txhash: str
    plan: SendPlan

    def to_dict(self) -> dict[str, Any]:
        data = {"tx_bytes": self.tx_bytes_b64, "txhash": self.txhash}
        data.update(self.plan.to_dict())
        for key in ("network", "node", "from_name"):
            data.pop(key)
        return data


def check_memo(memo: str) -> str:
    size = len(memo.encode("utf-8"))
    if size > MAX_MEMO_BYTES:
        raise InputError(f"memo is {size} bytes (UTF-8); the chain allows at most {MAX_MEMO_BYTES}")
    return memo


def check_chain(client: ChainClient, profile: NetworkProfile) -> None:
    """Refuse to go on unless the node serves the profile's chain."""
    info = client.node_info()
    if info.chain_id != profile.chain_id:
        raise ChainIdMismatch(
            f"node {info.url} is on chain {info.chain_id!r}, but network {profile.name!r} is "
            f"{profile.chain_id!r}; refusing to sign (check --network and --node)"
        )


def plan_send(
    client: ChainClient,
    profile: NetworkProfile,
    key: KeyInfo,
    to_address: str,
    amount_ngonka: int,
    *,
    fee_ngonka: int | None = None,
    gas_limit: int | None = None,
    memo: str = "",
) -> SendPlan:
    """Check the node's chain, read the account, estimate gas (x1.3) and check funds."""
    to_address = addr.normalize(to_address, profile.prefix)
    check_memo(memo)
    check_chain(client, profile)
    account = client.account(key.address)
    _check_account_key(account, key)
    spendable = client.balance(key.address, profile.denom).spendable
    plan = SendPlan(
        network=profile.name,
        chain_id=profile.chain_id,
        node_url=client.url,
        from_name=key.name,
        from_address=key.address,
        pubkey_hex=key.pubkey_hex,
        to_address=to_address,
        amount_ngonka=amount_ngonka,
        fee_ngonka=fee_ngonka if fee_ngonka is not None else 0,
        gas_limit=gas_limit or 0,
        gas_estimated=gas_limit is None,
        memo=memo,
        account_number=account.account_number,
        sequence=account.sequence,
        denom=profile.denom,
    )
    _check_funds(plan, spendable, fee_known=fee_ngonka is not None)
    if gas_limit is None:
        message = txlib.MsgSend(key.address, to_address, txlib.coins(amount_ngonka, profile.denom))
        sim = txlib.simulation_tx(
            PublicKey.from_hex(key.pubkey_hex),
            sequence=account.sequence,
            message=message,
            memo=memo,
        )
        plan = replace(plan, gas_limit=txlib.gas_with_adjustment(client.simulate(sim)))
    if fee_ngonka is None:
        plan = replace(plan, fee_ngonka=txlib.fee_for_gas(plan.gas_limit, profile.gas_price))
    _check_funds(plan, spendable, fee_known=True)
    return plan


def offline_plan(
    profile: NetworkProfile,
    key: KeyInfo,
    to_address: str,
    amount_ngonka: int,
    *,
    chain_id: str,
    account_number: int,
    sequence: int,
    fee_ngonka: int | None = None,
    gas_limit: int | None = None,
    memo: str = "",
) -> SendPlan:
    """A plan from values the user supplies, for signing on a machine with no network."""
    if not chain_id:
        raise InputError("--chain-id must not be empty")
    if account_number < 0 or sequence < 0:
        raise InputError("--account-number and --sequence must be >= 0")
    gas = gas_limit or txlib.DEFAULT_GAS_LIMIT
    return SendPlan(
        network=profile.name,
        chain_id=chain_id,
        node_url="",
        from_name=key.name,
        from_address=key.address,
        pubkey_hex=key.pubkey_hex,
        to_address=addr.normalize(to_address, profile.prefix),
        amount_ngonka=amount_ngonka,
        fee_ngonka=fee_ngonka
        if fee_ngonka is not None
        else txlib.fee_for_gas(gas, profile.gas_price),
        gas_limit=gas,
        gas_estimated=False,
        memo=check_memo(memo),
        account_number=account_number,
        sequence=sequence,
        denom=profile.denom,
    )


def sign_plan(plan: SendPlan, key: PrivateKey) -> txlib.SignedTx:
    if key.public_key.to_hex() != plan.pubkey_hex:
        raise InputError("the unlocked key does not belong to the sending address")
    return txlib.sign_send(
        key,
        chain_id=plan.chain_id,
        account_number=plan.account_number,
        sequence=plan.sequence,
        from_address=plan.from_address,
        to_address=plan.to_address,
        amount=plan.amount_ngonka,
        fee=txlib.Fee(txlib.coins(plan.fee_ngonka, plan.denom), plan.gas_limit),
        memo=plan.memo,
        denom=plan.denom,
    )


def sign_offline(plan: SendPlan, key: PrivateKey) -> OfflineTx:
    signed = sign_plan(plan, key)
    return OfflineTx(base64.b64encode(signed.tx_bytes).decode("ascii"), signed.txhash, plan)


def submit(client: ChainClient, plan: SendPlan, key: PrivateKey) -> Submitted:
    """Sign and broadcast (SYNC). On a wrong sequence, refetch it and try once more."""
    signed = sign_plan(plan, key)
    result = client.broadcast(signed.tx_bytes)
    if result.ok or (result.code == codes.TX_IN_MEMPOOL.code and result.codespace in ("", "sdk")):
        return Submitted(signed.txhash, plan)
    if (result.codespace or "sdk", result.code) != ("sdk", codes.WRONG_SEQUENCE.code):
        raise _refused(result.codespace, result.code, result.raw_log, signed.txhash)
    # A broadcast that reached an earlier node may already be in a block: never send twice.
    if client.get_tx(signed.txhash) is not None:
        return Submitted(signed.txhash, plan)
    account = client.account(plan.from_address)
    expected = codes.expected_sequence(result.raw_log)
    sequence = max(account.sequence, expected[0] if expected else 0)
    log.info("sequence mismatch (had %d, now %d): signing again", plan.sequence, sequence)
    plan = replace(plan, sequence=sequence, account_number=account.account_number)
    signed = sign_plan(plan, key)
    result = client.broadcast(signed.tx_bytes)
    if result.ok or result.code == codes.TX_IN_MEMPOOL.code:
        return Submitted(signed.txhash, plan, retried=True)
    raise _refused(result.codespace, result.code, result.raw_log, signed.txhash)


def decode_tx_bytes(text: str) -> txlib.DecodedTx:
    """Parse the base64 TxRaw that `send --offline` prints."""
    cleaned = "".join(text.split())
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(
            "TX_BYTES is not valid base64 (pass the tx_bytes that `send --offline` printed)"
        ) from None
    if not raw:
        raise InputError("TX_BYTES is empty")
    return txlib.decode_tx(raw)


def broadcast_signed(client: ChainClient, profile: NetworkProfile, decoded: txlib.DecodedTx) -> str:
    """Check a pre-signed transaction against the chain, then broadcast it. Returns its hash."""
    check_chain(client, profile)
    if (
        len(decoded.signers) != 1
        or decoded.signers[0].pubkey is None
        or len(decoded.signatures) != 1
    ):
        raise InputError("the transaction must have exactly one secp256k1 signer and signature")
    signer = addr.address_from_pubkey(decoded.signers[0].pubkey.to_bytes(), profile.prefix)
    account = client.account(signer)
    mode = decoded.signers[0].mode
    if mode not in txlib.SUPPORTED_SIGN_MODES:
        raise TxError(
            f"the transaction is signed in {txlib.sign_mode_name(mode)}, which the chain does "
            "not verify (it takes SIGN_MODE_DIRECT and SIGN_MODE_LEGACY_AMINO_JSON); nothing "
            "was sent",
            codespace="sdk",
            code=codes.UNAUTHORIZED.code,
        )
    if not decoded.verify(profile.chain_id, account.account_number):
        raise TxError(
            f"the signature does not verify for chain {profile.chain_id!r} and account number "
            f"{account.account_number} of {signer}: it was signed for another chain or account; "
            "nothing was sent",
            codespace="sdk",
            code=codes.UNAUTHORIZED.code,
        )
    if decoded.signers[0].sequence < account.sequence:
        already = client.get_tx(decoded.txhash)
        if already is not None:
            return decoded.txhash
        raise TxError(
            f"the transaction uses sequence {decoded.signers[0].sequence} but the account is at "
            f"{account.sequence}: it is stale; sign it again with --sequence {account.sequence}",
            codespace="sdk",
            code=codes.WRONG_SEQUENCE.code,
        )
    result = client.broadcast(decoded.tx_bytes)
    if result.ok or result.code == codes.TX_IN_MEMPOOL.code:
        return decoded.txhash
    raise _refused(result.codespace, result.code, result.raw_log, decoded.txhash)


def wait_for_block(
    client: ChainClient, txhash: str, *, timeout_s: float = 60.0, poll_s: float = 1.0
) -> TxResult:
    """Wait until the transaction is in a block; `TxError` if it is there but failed."""
    result = client.wait_for_tx(txhash, timeout_s=timeout_s, poll_s=poll_s)
    if not result.ok:
        raise TxError(
            f"transaction {txhash} is in block {result.height} but failed: "
            f"{codes.describe(result.codespace, result.code, result.raw_log)}",
            codespace=result.codespace,
            code=result.code,
            txhash=txhash,
        )
    return result


# --- history ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEntry:
    txhash: str
    height: int
    timestamp: str
    direction: str  # "out", "in" or "self"
    counterparty: str
    amount_ngonka: int
    fee_ngonka: int
    memo: str
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "txhash": self.txhash,
            "height": str(self.height),
            "timestamp": self.timestamp,
            "direction": self.direction,
            "counterparty": self.counterparty,
            "amount_ngonka": str(self.amount_ngonka),
            "fee_ngonka": str(self.fee_ngonka),
            "memo": self.memo,
            "status": "success" if self.ok else "failed",
        }


def history(client: ChainClient, address: str, *, limit: int = 20) -> list[HistoryEntry]:
    """Recent sends and receives of `address`, newest first."""
    if not 1 <= limit <= 100:
        raise InputError("--limit must be between 1 and 100")
    found: dict[str, TxResult] = {}
    for query in (f"message.sender='{address}'", f"transfer.recipient='{address}'"):
        for result in client.search_txs(query, limit=limit):
            found.setdefault(result.txhash, result)
    entries: list[HistoryEntry] = []
    for result in found.values():
        for transfer in result.transfers:
            if address not in (transfer.from_address, transfer.to_address):
                continue
            if transfer.from_address == transfer.to_address:
                direction, other = "self", address
            elif transfer.from_address == address:
                direction, other = "out", transfer.to_address
            else:
                direction, other = "in", transfer.from_address
            entries.append(
                HistoryEntry(
                    result.txhash,
                    result.height,
                    result.timestamp,
                    direction,
                    other,
                    transfer.amount,
                    result.fee_ngonka if direction != "in" else 0,
                    result.memo,
                    result.ok,
                )
            )
    entries.sort(key=lambda e: (e.height, e.txhash), reverse=True)
    return entries[:limit]


# --- helpers ----------------------------------------------------------------------------


def _check_funds(plan: SendPlan, spendable: int, *, fee_known: bool) -> None:
    fee = plan.fee_ngonka if fee_known else 0
    if spendable < plan.amount_ngonka + fee:
        raise InsufficientFunds(
            f"insufficient funds: {plan.from_address} can spend {describe(spendable)}, the "
            f"transfer needs {describe(plan.amount_ngonka + fee)}"
            + (f" including a fee of {describe(fee)}" if fee else "")
        )


def _check_account_key(account: Account, key: KeyInfo) -> None:
    if account.pubkey_b64 is None:
        return
    try:
        on_chain = base64.b64decode(account.pubkey_b64).hex()
    except (binascii.Error, ValueError):
        return
    if on_chain != key.pubkey_hex:
        raise ChainError(
            f"the chain holds another public key for {key.address} than key {key.name!r}; "
            "the key file does not match this account"
        )


def _refused(codespace: str, code: int, raw_log: str, txhash: str) -> TxError:
    return TxError(
        f"the node refused the transaction: {codes.describe(codespace, code, raw_log)}",
        codespace=codespace or "sdk",
        code=code,
        txhash=txhash,
    )
