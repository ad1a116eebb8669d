"""Transactions against public vectors: cosmjs/simd signed sends and gonka-mainnet gentxs.

Every test runs with the fast secp256k1 path (coincurve) and with the pure-Python fallback
(ecdsa), forced in this process: both sign the vectors' bytes and verify the real gentxs.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
from ecdsa import SECP256k1, VerifyingKey
from ecdsa.util import sigdecode_string
from google.protobuf import any_pb2

from gonka_cli.chain import tx as txlib
from gonka_cli.crypto import secp256k1
from gonka_cli.crypto.hd import HDPath, derive_private_key
from gonka_cli.crypto.secp256k1 import CURVE_ORDER, HALF_ORDER, PrivateKey, PublicKey
from gonka_cli.errors import InputError
from tests.conftest import load_vectors

VECTORS = load_vectors("cosmos_tx_vectors.json")
SIMD = VECTORS["public_vectors_cosmjs_simd"]
GENTXS = VECTORS["public_verify_only_gonka_mainnet_gentx"]

MSG_CREATE_VALIDATOR = "/cosmos.staking.v1beta1.MsgCreateValidator"


@pytest.fixture(autouse=True, params=["coincurve", "ecdsa"])
def signing_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "coincurve" and secp256k1._coincurve() is None:
        pytest.skip("coincurve is not installed here")
    try:
        assert secp256k1.set_backend("auto" if request.param == "coincurve" else "ecdsa") == (
            request.param
        )
        yield request.param
    finally:
        secp256k1.set_backend("auto")


def _simd_id(vector: dict[str, Any]) -> str:
    return f"simd-sequence-{vector['inputs']['sequence']}"


def _gentx_id(vector: dict[str, Any]) -> str:
    return vector["source"].rsplit("/", 2)[-2]


def _output(vector: dict[str, Any], prefix: str) -> str:
    """An output whose key starts with `prefix` (some keys carry a note in parentheses)."""
    (value,) = [v for k, v in vector["outputs"].items() if k.split(" ")[0] == prefix]
    return str(value)


@cache
def _key(mnemonic: str, hd_path: str, passphrase: str) -> PrivateKey:
    return derive_private_key(mnemonic, HDPath.parse(hd_path), passphrase)


def _simd_key(vector: dict[str, Any]) -> PrivateKey:
    inputs = vector["inputs"]
    return _key(inputs["mnemonic"], inputs["hd_path"], inputs["bip39_passphrase"])


def _fee(fee: dict[str, Any]) -> txlib.Fee:
    amount = tuple(txlib.Coin(c["denom"], int(c["amount"])) for c in fee["amount"])
    return txlib.Fee(amount, int(fee["gas_limit"]), fee["payer"], fee["granter"])


def _sign_simd(vector: dict[str, Any]) -> txlib.SignedTx:
    inputs = vector["inputs"]
    msg = inputs["msg"]
    (coin,) = msg["amount"]
    assert inputs["memo"] == "" and inputs["timeout_height"] == 0
    return txlib.sign_send(
        _simd_key(vector),
        chain_id=inputs["chain_id"],
        account_number=inputs["account_number"],
        sequence=inputs["sequence"],
        from_address=msg["from_address"],
        to_address=msg["to_address"],
        amount=int(coin["amount"]),
        denom=coin["denom"],
        fee=_fee(inputs["fee"]),
    )


def _high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (CURVE_ORDER - s).to_bytes(32, "big")


# --- cosmjs/simd: byte-exact signing ----------------------------------------------------


@pytest.mark.parametrize("vector", SIMD, ids=_simd_id)
def test_simd_key_derivation(vector: dict[str, Any]) -> None:
    key = _simd_key(vector)
    inputs = vector["inputs"]
    assert key.to_hex() == inputs["privkey_hex_derived_here"]
    assert key.public_key.to_hex() == inputs["pubkey_hex"]
    assert base64.b64encode(key.public_key.to_bytes()).decode() == inputs["pubkey_base64"]


@pytest.mark.parametrize("vector", SIMD, ids=_simd_id)
def test_simd_sign_send_is_byte_exact(vector: dict[str, Any]) -> None:
    inputs = vector["inputs"]
    signed = _sign_simd(vector)
    sign_doc = txlib.encode_sign_doc(
        signed.body_bytes, signed.auth_info_bytes, inputs["chain_id"], inputs["account_number"]
    )

    assert signed.body_bytes.hex() == _output(vector, "body_bytes_hex")
    assert signed.auth_info_bytes.hex() == _output(vector, "auth_info_bytes_hex")
    assert sign_doc.hex() == _output(vector, "sign_doc_bytes_hex")
    assert hashlib.sha256(sign_doc).hexdigest() == _output(
        vector, "sign_doc_sha256_hex_derived_here"
    )
    assert signed.signature.hex() == _output(vector, "signature_hex")
    assert base64.b64encode(signed.signature).decode() == _output(vector, "signature_base64")
    assert signed.tx_bytes.hex() == _output(vector, "tx_raw_bytes_hex")
    assert base64.b64encode(signed.tx_bytes).decode() == _output(vector, "tx_raw_bytes_base64")
    assert signed.txhash == _output(vector, "txhash_derived_here")
    assert txlib.tx_hash(signed.tx_bytes) == signed.txhash


def test_simd_vectors_differ_only_by_sequence() -> None:
    """The three vectors must not collapse into one (the sequence is signed)."""
    hashes = {_sign_simd(v).txhash for v in SIMD}
    assert len(hashes) == len(SIMD) == 3


@pytest.mark.parametrize("vector", SIMD, ids=_simd_id)
def test_simd_decode_round_trip(vector: dict[str, Any]) -> None:
    inputs = vector["inputs"]
    tx_bytes = bytes.fromhex(_output(vector, "tx_raw_bytes_hex"))
    decoded = txlib.decode_tx(tx_bytes)

    assert decoded.tx_bytes == tx_bytes
    assert decoded.body_bytes.hex() == _output(vector, "body_bytes_hex")
    assert decoded.auth_info_bytes.hex() == _output(vector, "auth_info_bytes_hex")
    assert decoded.signatures == (bytes.fromhex(_output(vector, "signature_hex")),)
    assert decoded.txhash == _output(vector, "txhash_derived_here")
    assert decoded.memo == ""
    assert decoded.timeout_height == 0
    assert decoded.has_extension_options is False

    msg = inputs["msg"]
    (coin,) = msg["amount"]
    assert decoded.messages == (
        txlib.MsgSend(
            msg["from_address"],
            msg["to_address"],
            (txlib.Coin(coin["denom"], int(coin["amount"])),),
        ),
    )
    assert decoded.messages[0].to_dict() == msg
    assert decoded.fee == _fee(inputs["fee"])
    assert decoded.fee.to_dict() == {
        "amount": inputs["fee"]["amount"],
        "gas_limit": str(inputs["fee"]["gas_limit"]),
        "payer": "",
        "granter": "",
    }

    (signer,) = decoded.signers
    assert signer.pubkey == PublicKey.from_hex(inputs["pubkey_hex"])
    assert signer.pubkey_type_url == txlib.SECP256K1_PUBKEY_TYPE_URL
    assert signer.sequence == inputs["sequence"]
    assert signer.mode == txlib.SIGN_MODE_DIRECT == 1
    assert decoded.sign_doc(inputs["chain_id"], inputs["account_number"]).hex() == _output(
        vector, "sign_doc_bytes_hex"
    )


@pytest.mark.parametrize("vector", SIMD, ids=_simd_id)
def test_simd_verify(vector: dict[str, Any]) -> None:
    inputs = vector["inputs"]
    decoded = txlib.decode_tx(bytes.fromhex(_output(vector, "tx_raw_bytes_hex")))
    chain_id, account_number = inputs["chain_id"], inputs["account_number"]
    other_key = derive_private_key(inputs["mnemonic"], HDPath.parse("m/44'/118'/0'/0/1"))

    assert decoded.verify(chain_id, account_number) is True
    assert decoded.verify(chain_id, account_number, pubkey=_simd_key(vector).public_key) is True
    assert decoded.verify("gonka-mainnet", account_number) is False
    assert decoded.verify(chain_id, account_number + 1) is False
    assert decoded.verify(chain_id, account_number, pubkey=other_key.public_key) is False
    assert decoded.verify(chain_id, account_number, signer_index=1) is False


# --- gonka-mainnet gentxs: verify only --------------------------------------------------


@pytest.mark.parametrize("vector", GENTXS, ids=_gentx_id)
def test_gentx_decodes_to_the_published_json(vector: dict[str, Any]) -> None:
    gentx = vector["gentx_json"]
    decoded = txlib.decode_tx(bytes.fromhex(vector["tx_raw_bytes_hex_derived_here"]))

    assert decoded.body_bytes.hex() == vector["body_bytes_hex_derived_here"]
    assert decoded.auth_info_bytes.hex() == vector["auth_info_bytes_hex_derived_here"]
    assert decoded.signatures == (base64.b64decode(gentx["signatures"][0]),)

    (signer,) = decoded.signers
    (signer_json,) = gentx["auth_info"]["signer_infos"]
    assert signer.pubkey is not None
    assert base64.b64encode(signer.pubkey.to_bytes()).decode() == signer_json["public_key"]["key"]
    assert signer.pubkey_type_url == signer_json["public_key"]["@type"]
    assert signer.sequence == int(signer_json["sequence"]) == vector["sequence"]
    assert signer.mode == txlib.SIGN_MODE_DIRECT

    (message,) = decoded.messages
    assert isinstance(message, any_pb2.Any)
    assert message.type_url == gentx["body"]["messages"][0]["@type"] == MSG_CREATE_VALIDATOR
    assert decoded.memo == gentx["body"]["memo"]
    assert decoded.fee == txlib.Fee((), int(gentx["auth_info"]["fee"]["gas_limit"]))
    assert (
        decoded.sign_doc(vector["chain_id"], vector["account_number"]).hex()
        == (vector["sign_doc_bytes_hex_derived_here"])
    )


@pytest.mark.parametrize("vector", GENTXS, ids=_gentx_id)
def test_gentx_signature_verifies(vector: dict[str, Any]) -> None:
    assert vector["chain_id"] == "gonka-mainnet" and vector["account_number"] == 0
    assert vector["signature_verifies"] is True
    decoded = txlib.decode_tx(bytes.fromhex(vector["tx_raw_bytes_hex_derived_here"]))

    assert decoded.verify("gonka-mainnet", 0) is True
    assert decoded.verify("gonka-testnet", 0) is False
    assert decoded.verify("gonka-mainnet", 1) is False


@pytest.mark.parametrize("vector", GENTXS, ids=_gentx_id)
def test_zero_fee_encodes_like_the_gentx(vector: dict[str, Any]) -> None:
    """A zero fee is an empty coin list: the auth info is then byte-identical to the gentx's."""
    (signer_json,) = vector["gentx_json"]["auth_info"]["signer_infos"]
    pubkey = PublicKey(base64.b64decode(signer_json["public_key"]["key"]))
    gas_limit = int(vector["gentx_json"]["auth_info"]["fee"]["gas_limit"])

    auth_info = txlib.encode_auth_info(pubkey, 0, txlib.Fee(txlib.coins(0), gas_limit))

    assert auth_info.hex() == vector["auth_info_bytes_hex_derived_here"]


# --- malleability and malformed input ---------------------------------------------------


@pytest.mark.parametrize(
    ("tx_hex", "chain_id", "account_number"),
    [
        pytest.param(
            _output(SIMD[0], "tx_raw_bytes_hex"),
            SIMD[0]["inputs"]["chain_id"],
            SIMD[0]["inputs"]["account_number"],
            id="simd",
        ),
        pytest.param(GENTXS[0]["tx_raw_bytes_hex_derived_here"], "gonka-mainnet", 0, id="gentx"),
    ],
)
def test_high_s_signature_is_rejected(tx_hex: str, chain_id: str, account_number: int) -> None:
    decoded = txlib.decode_tx(bytes.fromhex(tx_hex))
    (signature,) = decoded.signatures
    high = _high_s(signature)
    assert int.from_bytes(high[32:], "big") > HALF_ORDER
    pubkey = decoded.signers[0].pubkey
    assert pubkey is not None
    # Plain ECDSA accepts (r, n - s): only the low-S rule can refuse it.
    digest = hashlib.sha256(decoded.sign_doc(chain_id, account_number)).digest()
    plain = VerifyingKey.from_string(pubkey.to_bytes(), curve=SECP256k1)
    assert plain.verify_digest(high, digest, sigdecode=sigdecode_string)

    malleated = txlib.decode_tx(
        txlib.encode_tx_raw(decoded.body_bytes, decoded.auth_info_bytes, [high])
    )

    assert malleated.txhash != decoded.txhash
    assert malleated.verify(chain_id, account_number) is False
    assert pubkey.verify(decoded.sign_doc(chain_id, account_number), high) is False


SIMD_TX = bytes.fromhex(_output(SIMD[0], "tx_raw_bytes_hex"))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"garbage", id="ascii-garbage"),
        pytest.param(b"\xff" * 16, id="ff-bytes"),
        pytest.param(SIMD_TX[:-10], id="truncated-in-signature"),
        pytest.param(SIMD_TX[: len(SIMD_TX) // 2], id="truncated-in-half"),
        pytest.param(SIMD_TX[:3], id="truncated-after-3-bytes"),
        pytest.param(txlib.encode_tx_raw(b"", b"", [b"\x01" * 64]), id="no-body-no-auth-info"),
        pytest.param(txlib.encode_tx_raw(b"\xff\xff", b"\x0a", []), id="corrupt-body"),
    ],
)
def test_decode_rejects_malformed_bytes(data: bytes) -> None:
    with pytest.raises(txlib.TxDecodeError) as info:
        txlib.decode_tx(data)
    assert isinstance(info.value, InputError)
    assert "not a valid transaction" in str(info.value)
    assert "\n" not in str(info.value)


# --- helpers ----------------------------------------------------------------------------


def test_coins_zero_is_empty() -> None:
    assert txlib.coins(0) == ()
    assert txlib.coins(5) == (txlib.Coin("ngonka", 5),)
    assert txlib.coins(7, "ucosm") == (txlib.Coin("ucosm", 7),)


def test_simulation_tx_carries_pubkey_sequence_and_one_empty_signature() -> None:
    key = _simd_key(SIMD[0])
    message = txlib.MsgSend("gonka1from", "gonka1to", txlib.coins(42))

    decoded = txlib.decode_tx(txlib.simulation_tx(key.public_key, sequence=9, message=message))

    assert decoded.signatures == (b"",)
    (signer,) = decoded.signers
    assert signer.pubkey == key.public_key
    assert signer.sequence == 9
    assert signer.mode == txlib.SIGN_MODE_DIRECT
    assert decoded.messages == (message,)
    assert decoded.fee == txlib.Fee((), 0)
    assert decoded.verify("gonka-devnet", 0) is False


@pytest.mark.parametrize(
    ("gas_used", "expected"),
    [
        pytest.param(0, 0, id="zero"),
        pytest.param(1, 2, id="1-rounds-up"),
        pytest.param(7, 10, id="9.1-rounds-up"),
        pytest.param(10, 13, id="exact"),
        pytest.param(100_001, 130_002, id="130001.3-rounds-up"),
        pytest.param(200_000, 260_000, id="200000"),
    ],
)
def test_gas_with_adjustment_rounds_up(gas_used: int, expected: int) -> None:
    assert txlib.gas_with_adjustment(gas_used) == expected


def test_gas_with_other_adjustment() -> None:
    assert txlib.gas_with_adjustment(100, 1.5) == 150
    assert txlib.gas_with_adjustment(101, 1.0) == 101


@pytest.mark.parametrize(
    ("gas_limit", "gas_price", "expected"),
    [
        pytest.param(200_000, Decimal("0.0025"), 500, id="exact"),
        pytest.param(3, Decimal("0.5"), 2, id="1.5-rounds-up"),
        pytest.param(1, Decimal("0.000000001"), 1, id="tiny-rounds-up-to-1"),
        pytest.param(200_001, Decimal("0.0025"), 501, id="500.0025-rounds-up"),
        pytest.param(200_000, Decimal(0), 0, id="free"),
        pytest.param(0, Decimal("0.0025"), 0, id="no-gas"),
        pytest.param(10, "0.15", 2, id="price-as-string"),
        # 30+ significant digits: Decimal's default 28-digit context would round these down.
        pytest.param(2**64 - 1, "1.000000000000000000000000000001", 2**64, id="beyond-28-digits"),
    ],
)
def test_fee_for_gas_rounds_up(gas_limit: int, gas_price: Any, expected: int) -> None:
    assert txlib.fee_for_gas(gas_limit, gas_price) == expected


# --- SIGN_MODE_LEGACY_AMINO_JSON (cosmjs's own bytes are in tests/node/test_amino.py) -----

AMINO_KEY = PrivateKey(hashlib.sha256(b"amino").digest())
AMINO_SEND = txlib.MsgSend(
    "gonka1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc50htqp7",
    "gonka1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc50htqp7",
    txlib.coins(5),
)


def test_amino_signed_tx_verifies_in_its_mode_only() -> None:
    signed = txlib.sign_amino(
        AMINO_KEY,
        [AMINO_SEND],
        txlib.Fee(txlib.coins(10), 100_000),
        chain_id="gonka-devnet",
        account_number=3,
        sequence=9,
        memo="m",
        timeout_height=77,
    )
    decoded = txlib.decode_tx(signed.tx_bytes)
    assert decoded.signers[0].mode == txlib.SIGN_MODE_LEGACY_AMINO_JSON
    assert decoded.timeout_height == 77
    assert decoded.verify("gonka-devnet", 3)
    assert not decoded.verify("gonka-devnet", 4)
    doc = decoded.sign_doc("gonka-devnet", 3)
    assert doc.startswith(b'{"account_number":"3","chain_id":"gonka-devnet",')
    assert doc.endswith(b'"sequence":"9","timeout_height":"77"}')
    # The same body and auth info, read as DIRECT, is another document: the signature fails.
    direct_auth = txlib.encode_auth_info(
        AMINO_KEY.public_key, 9, txlib.Fee(txlib.coins(10), 100_000)
    )
    relabelled = txlib.encode_tx_raw(signed.body_bytes, direct_auth, [signed.signature])
    assert not txlib.decode_tx(relabelled).verify("gonka-devnet", 3)


@pytest.mark.parametrize("mode", [0, 2, 3, 191])
def test_unsupported_sign_modes_never_verify(mode: int) -> None:
    body = txlib.encode_body([AMINO_SEND])
    auth_info = txlib.encode_auth_info(AMINO_KEY.public_key, 0, txlib.Fee((), 1), mode)
    signature = AMINO_KEY.sign(txlib.encode_sign_doc(body, auth_info, "c", 0))
    decoded = txlib.decode_tx(txlib.encode_tx_raw(body, auth_info, [signature]))
    assert not decoded.verify("c", 0)
    with pytest.raises(txlib.TxDecodeError, match="unsupported sign mode"):
        decoded.sign_doc("c", 0)


def test_amino_covers_msg_send_only() -> None:
    other = any_pb2.Any(type_url=MSG_CREATE_VALIDATOR, value=b"")
    body = txlib.encode_body([other])
    auth_info = txlib.encode_auth_info(
        AMINO_KEY.public_key, 0, txlib.Fee((), 1), txlib.SIGN_MODE_LEGACY_AMINO_JSON
    )
    decoded = txlib.decode_tx(txlib.encode_tx_raw(body, auth_info, [bytes(64)]))
    with pytest.raises(txlib.TxDecodeError, match="MsgSend only"):
        decoded.sign_doc("c", 0)
    assert not decoded.verify("c", 0)


def test_sign_mode_names() -> None:
    assert txlib.sign_mode_name(1) == "SIGN_MODE_DIRECT"
    assert txlib.sign_mode_name(127) == "SIGN_MODE_LEGACY_AMINO_JSON"
    assert txlib.sign_mode_name(4242) == "4242"
