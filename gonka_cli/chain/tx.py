"""Cosmos SDK transactions: build, sign (SIGN_MODE_DIRECT), encode, decode and verify.

The one module that owns the transaction wire format; the wallet uses it to sign and the local
network node to decode and verify. The protobuf runtime does the encoding (proto3: fields in
number order, defaults omitted), with messages generated from `gonka_cli/chain/proto`.

    SignDoc  = {1 body_bytes, 2 auth_info_bytes, 3 chain_id, 4 account_number}
    signature = secp256k1 over SHA-256(SignDoc bytes), RFC 6979, low-S, 64 bytes r || s
    TxRaw    = {1 body_bytes, 2 auth_info_bytes, 3 signatures}
    txhash   = upper-case hex SHA-256(TxRaw bytes)

Verification also takes SIGN_MODE_LEGACY_AMINO_JSON signatures (Ledger devices, Keplr's amino
signer), whose signed bytes are the amino JSON sign document of `chain.amino`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from gonka_cli.chain import amino
from gonka_cli.chain.amount import DENOM
from gonka_cli.chain.proto.cosmos.bank.v1beta1 import tx_pb2 as bank_pb
from gonka_cli.chain.proto.cosmos.base.v1beta1 import coin_pb2
from gonka_cli.chain.proto.cosmos.crypto.secp256k1 import keys_pb2
from gonka_cli.chain.proto.cosmos.tx.signing.v1beta1 import signing_pb2
from gonka_cli.chain.proto.cosmos.tx.v1beta1 import tx_pb2
from gonka_cli.crypto.secp256k1 import PrivateKey, PublicKey
from gonka_cli.errors import InputError

MSG_SEND_TYPE_URL = "/cosmos.bank.v1beta1.MsgSend"
SECP256K1_PUBKEY_TYPE_URL = "/cosmos.crypto.secp256k1.PubKey"
SIGN_MODE_DIRECT = signing_pb2.SIGN_MODE_DIRECT
SIGN_MODE_LEGACY_AMINO_JSON = signing_pb2.SIGN_MODE_LEGACY_AMINO_JSON
#: The sign modes the ledger verifies.
SUPPORTED_SIGN_MODES = frozenset({SIGN_MODE_DIRECT, SIGN_MODE_LEGACY_AMINO_JSON})
#: Gas limit for offline signing when none is given (`inferenced`'s default is 200000).
DEFAULT_GAS_LIMIT = 200_000
#: Gas estimates from simulation are multiplied by this.
GAS_ADJUSTMENT = 1.3


class TxDecodeError(InputError):
    """Bytes that are not a transaction gonka can read."""


@dataclass(frozen=True)
class Coin:
    denom: str
    amount: int

    def to_proto(self) -> coin_pb2.Coin:
        return coin_pb2.Coin(denom=self.denom, amount=str(self.amount))

    def to_dict(self) -> dict[str, str]:
        return {"denom": self.denom, "amount": str(self.amount)}


def coins(amount: int, denom: str = DENOM) -> tuple[Coin, ...]:
    """A coin list for `amount`; empty for zero, since the SDK refuses zero-amount coins."""
    return (Coin(denom, amount),) if amount else ()


@dataclass(frozen=True)
class Fee:
    amount: tuple[Coin, ...]
    gas_limit: int
    payer: str = ""
    granter: str = ""

    def to_proto(self) -> tx_pb2.Fee:
        return tx_pb2.Fee(
            amount=[c.to_proto() for c in self.amount],
            gas_limit=self.gas_limit,
            payer=self.payer,
            granter=self.granter,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "amount": [c.to_dict() for c in self.amount],
            "gas_limit": str(self.gas_limit),
            "payer": self.payer,
            "granter": self.granter,
        }


@dataclass(frozen=True)
class MsgSend:
    from_address: str
    to_address: str
    amount: tuple[Coin, ...]

    type_url = MSG_SEND_TYPE_URL

    def to_any(self) -> any_pb2.Any:
        msg = bank_pb.MsgSend(
            from_address=self.from_address,
            to_address=self.to_address,
            amount=[c.to_proto() for c in self.amount],
        )
        return any_pb2.Any(type_url=MSG_SEND_TYPE_URL, value=msg.SerializeToString())

    def to_dict(self) -> dict[str, Any]:
        return {
            "@type": MSG_SEND_TYPE_URL,
            "from_address": self.from_address,
            "to_address": self.to_address,
            "amount": [c.to_dict() for c in self.amount],
        }


# --- encoding ---------------------------------------------------------------------------


def encode_body(
    messages: Sequence[MsgSend | any_pb2.Any], memo: str = "", timeout_height: int = 0
) -> bytes:
    body = tx_pb2.TxBody(
        messages=[m if isinstance(m, any_pb2.Any) else m.to_any() for m in messages],
        memo=memo,
        timeout_height=timeout_height,
    )
    return body.SerializeToString()


def encode_pubkey(pubkey: PublicKey) -> any_pb2.Any:
    value = keys_pb2.PubKey(key=pubkey.to_bytes()).SerializeToString()
    return any_pb2.Any(type_url=SECP256K1_PUBKEY_TYPE_URL, value=value)


def encode_auth_info(
    pubkey: PublicKey, sequence: int, fee: Fee, mode: int = SIGN_MODE_DIRECT
) -> bytes:
    signer = tx_pb2.SignerInfo(
        public_key=encode_pubkey(pubkey),
        mode_info=tx_pb2.ModeInfo(single=tx_pb2.ModeInfo.Single(mode=mode)),  # type: ignore[arg-type]
        sequence=sequence,
    )
    return tx_pb2.AuthInfo(signer_infos=[signer], fee=fee.to_proto()).SerializeToString()


def encode_sign_doc(
    body_bytes: bytes, auth_info_bytes: bytes, chain_id: str, account_number: int
) -> bytes:
    return tx_pb2.SignDoc(
        body_bytes=body_bytes,
        auth_info_bytes=auth_info_bytes,
        chain_id=chain_id,
        account_number=account_number,
    ).SerializeToString()


def encode_tx_raw(body_bytes: bytes, auth_info_bytes: bytes, signatures: Sequence[bytes]) -> bytes:
    return tx_pb2.TxRaw(
        body_bytes=body_bytes, auth_info_bytes=auth_info_bytes, signatures=list(signatures)
    ).SerializeToString()


def tx_hash(tx_bytes: bytes) -> str:
    """The transaction hash the chain reports: upper-case hex SHA-256 of the TxRaw bytes."""
    return hashlib.sha256(tx_bytes).hexdigest().upper()


@dataclass(frozen=True)
class SignedTx:
    """A signed transaction, ready to broadcast."""

    tx_bytes: bytes
    txhash: str
    body_bytes: bytes
    auth_info_bytes: bytes
    signature: bytes


def sign(
    key: PrivateKey, body_bytes: bytes, auth_info_bytes: bytes, chain_id: str, account_number: int
) -> SignedTx:
    """Sign in SIGN_MODE_DIRECT and assemble the TxRaw."""
    signature = key.sign(encode_sign_doc(body_bytes, auth_info_bytes, chain_id, account_number))
    tx_bytes = encode_tx_raw(body_bytes, auth_info_bytes, [signature])
    return SignedTx(tx_bytes, tx_hash(tx_bytes), body_bytes, auth_info_bytes, signature)


def sign_send(
    key: PrivateKey,
    *,
    chain_id: str,
    account_number: int,
    sequence: int,
    from_address: str,
    to_address: str,
    amount: int,
    fee: Fee,
    memo: str = "",
    denom: str = DENOM,
) -> SignedTx:
    """Build and sign a one-message MsgSend transaction."""
    body = encode_body([MsgSend(from_address, to_address, coins(amount, denom))], memo)
    auth_info = encode_auth_info(key.public_key, sequence, fee)
    return sign(key, body, auth_info, chain_id, account_number)


def sign_amino(
    key: PrivateKey,
    messages: Sequence[MsgSend],
    fee: Fee,
    *,
    chain_id: str,
    account_number: int,
    sequence: int,
    memo: str = "",
    timeout_height: int = 0,
) -> SignedTx:
    """Sign in SIGN_MODE_LEGACY_AMINO_JSON (as a Ledger or Keplr's amino signer does)."""
    doc = amino.sign_doc_bytes(
        messages,
        fee,
        chain_id=chain_id,
        account_number=account_number,
        sequence=sequence,
        memo=memo,
        timeout_height=timeout_height,
    )
    body = encode_body(messages, memo, timeout_height)
    auth_info = encode_auth_info(key.public_key, sequence, fee, SIGN_MODE_LEGACY_AMINO_JSON)
    signature = key.sign(doc)
    tx_bytes = encode_tx_raw(body, auth_info, [signature])
    return SignedTx(tx_bytes, tx_hash(tx_bytes), body, auth_info, signature)


def simulation_tx(pubkey: PublicKey, *, sequence: int, message: MsgSend, memo: str = "") -> bytes:
    """A TxRaw for `/simulate`: the signer's pubkey and sequence, an empty signature."""
    body = encode_body([message], memo)
    auth_info = encode_auth_info(pubkey, sequence, Fee(amount=(), gas_limit=0))
    return encode_tx_raw(body, auth_info, [b""])


# --- decoding and verification ----------------------------------------------------------


@dataclass(frozen=True)
class SignerInfo:
    pubkey: PublicKey | None
    pubkey_type_url: str
    mode: int
    sequence: int


@dataclass(frozen=True)
class DecodedTx:
    """A TxRaw taken apart; `body_bytes` and `auth_info_bytes` are exactly what was signed."""

    tx_bytes: bytes
    body_bytes: bytes
    auth_info_bytes: bytes
    signatures: tuple[bytes, ...]
    messages: tuple[MsgSend | any_pb2.Any, ...]
    memo: str
    timeout_height: int
    signers: tuple[SignerInfo, ...]
    fee: Fee
    has_extension_options: bool = field(default=False)

    @property
    def txhash(self) -> str:
        return tx_hash(self.tx_bytes)

    def sign_doc(self, chain_id: str, account_number: int, signer_index: int = 0) -> bytes:
        """The bytes signer `signer_index` signed, in its sign mode.

        Raises `TxDecodeError` for a sign mode the ledger does not verify, or an amino
        signature over a message that has no amino form here.
        """
        mode = self.signers[signer_index].mode if signer_index < len(self.signers) else 0
        if mode == SIGN_MODE_DIRECT:
            return encode_sign_doc(self.body_bytes, self.auth_info_bytes, chain_id, account_number)
        if mode != SIGN_MODE_LEGACY_AMINO_JSON:
            raise TxDecodeError(f"unsupported sign mode {sign_mode_name(mode)}")
        sends = [m for m in self.messages if isinstance(m, MsgSend)]
        if len(sends) != len(self.messages):
            raise TxDecodeError("amino signing covers MsgSend only")
        return amino.sign_doc_bytes(
            sends,
            self.fee,
            chain_id=chain_id,
            account_number=account_number,
            sequence=self.signers[signer_index].sequence,
            memo=self.memo,
            timeout_height=self.timeout_height,
        )

    def verify(
        self,
        chain_id: str,
        account_number: int,
        signer_index: int = 0,
        pubkey: PublicKey | None = None,
    ) -> bool:
        """Check signature `signer_index` against `pubkey` (default: the one in the tx)."""
        if signer_index >= len(self.signatures) or signer_index >= len(self.signers):
            return False
        key = pubkey or self.signers[signer_index].pubkey
        if key is None:
            return False
        try:
            doc = self.sign_doc(chain_id, account_number, signer_index)
        except TxDecodeError:
            return False
        return key.verify(doc, self.signatures[signer_index])


def decode_tx(tx_bytes: bytes) -> DecodedTx:
    """Parse TxRaw bytes; raise `TxDecodeError` when they are not a readable transaction."""
    # Each read of a field of a upb message builds a new Python object: read each once.
    data = bytes(tx_bytes)
    try:
        raw = tx_pb2.TxRaw.FromString(data)
        body_bytes = raw.body_bytes
        auth_info_bytes = raw.auth_info_bytes
        body = tx_pb2.TxBody.FromString(body_bytes)
        auth_info = tx_pb2.AuthInfo.FromString(auth_info_bytes)
    except DecodeError as exc:
        raise TxDecodeError(f"not a valid transaction: {exc}") from None
    signatures = tuple(raw.signatures)
    canonical = tx_pb2.TxRaw(
        body_bytes=body_bytes, auth_info_bytes=auth_info_bytes, signatures=signatures
    ).SerializeToString()
    if canonical != data:
        # The SDK refuses TxRaw bytes that are not in canonical form (ADR-027): unknown or
        # repeated fields, another field order. Otherwise a relay could re-encode a signed
        # transaction under a new hash (the signature covers only body and auth info).
        raise TxDecodeError("not a valid transaction: TxRaw is not canonically encoded")
    if not body_bytes or not auth_info_bytes:
        raise TxDecodeError("not a valid transaction: empty body or auth info")
    messages: list[MsgSend | any_pb2.Any] = []
    for any_msg in body.messages:
        if any_msg.type_url == MSG_SEND_TYPE_URL:
            try:
                send = bank_pb.MsgSend.FromString(any_msg.value)
            except DecodeError as exc:
                raise TxDecodeError(f"not a valid MsgSend: {exc}") from None
            messages.append(MsgSend(send.from_address, send.to_address, _coins_from(send.amount)))
        else:
            messages.append(any_msg)
    signers = []
    for info in auth_info.signer_infos:
        pubkey_any = info.public_key
        type_url = pubkey_any.type_url
        pubkey = None
        if type_url == SECP256K1_PUBKEY_TYPE_URL:
            try:
                pubkey = _pubkey_from(pubkey_any.value)
            except (DecodeError, InputError):
                raise TxDecodeError(
                    "not a valid transaction: malformed signer public key"
                ) from None
        mode_info = info.mode_info
        mode = mode_info.single.mode if mode_info.HasField("single") else 0
        signers.append(SignerInfo(pubkey, type_url, mode, info.sequence))
    fee = auth_info.fee
    return DecodedTx(
        tx_bytes=data,
        body_bytes=body_bytes,
        auth_info_bytes=auth_info_bytes,
        signatures=signatures,
        messages=tuple(messages),
        memo=body.memo,
        timeout_height=body.timeout_height,
        signers=tuple(signers),
        fee=Fee(_coins_from(fee.amount), fee.gas_limit, fee.payer, fee.granter),
        has_extension_options=bool(body.extension_options or body.non_critical_extension_options),
    )


# Cached: a node sees the same few signers' keys again and again, and a PublicKey is
# immutable. Errors are not cached (lru_cache does not keep exceptions).
@lru_cache(maxsize=4096)
def _pubkey_from(value: bytes) -> PublicKey:
    """The PublicKey in a `cosmos.crypto.secp256k1.PubKey` message's bytes."""
    return PublicKey(keys_pb2.PubKey.FromString(value).key)


def sign_mode_name(mode: int) -> str:
    """`SIGN_MODE_DIRECT` for 1, and so on; the number itself for a mode protobuf lacks."""
    try:
        return signing_pb2.SignMode.Name(mode)  # type: ignore[arg-type]
    except ValueError:
        return str(mode)


def _coins_from(items: Any) -> tuple[Coin, ...]:
    result = []
    for c in items:
        # 78 digits hold any uint256; longer strings are not amounts (and int() of a
        # 5,000-digit string raises).
        if not (c.amount.isascii() and c.amount.isdigit()) or len(c.amount) > 78:
            raise TxDecodeError(
                f"not a valid transaction: coin amount {c.amount[:24]!r} is not an integer"
            )
        result.append(Coin(c.denom, int(c.amount)))
    return tuple(result)


def gas_with_adjustment(gas_used: int, adjustment: float = GAS_ADJUSTMENT) -> int:
    """Gas limit from a simulation's gas_used (rounded up)."""
    return -(-gas_used * round(adjustment * 100) // 100)


def fee_for_gas(gas_limit: int, gas_price: Any) -> int:
    """ceil(gas_limit x gas_price) ngonka (gas_price a Decimal), exactly."""
    from decimal import ROUND_CEILING, Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 200  # Decimal's default 28 digits could round the product down
        product = Decimal(gas_limit) * Decimal(gas_price)
        return int(product.to_integral_value(rounding=ROUND_CEILING))
