"""Bech32 account addresses: vectors from cosmjs, gonka genesis files and BIP-173."""

from __future__ import annotations

import ast
import base64

import bech32
import pytest

from gonka_cli.crypto.address import (
    ACCOUNT_PREFIX,
    address_bytes_from_pubkey,
    address_from_pubkey,
    decode,
    decode_bech32,
    encode,
    is_address,
    normalize,
)
from gonka_cli.errors import InputError, InvalidAddress
from tests.conftest import load_vectors

COSMOS = load_vectors("cosmos_vectors.json")
BIP173 = COSMOS["bech32_bip173"]
NEGATIVE = COSMOS["negative_address_vectors"]
GONKA_ACCOUNT = next(v for v in COSMOS["pubkey_to_address"] if v["hrp"] == "gonka")
COSMOS_ACCOUNT = next(v for v in COSMOS["pubkey_to_address"] if v["hrp"] == "cosmos")


def _bech32(hrp: str, data: bytes) -> str:
    """Encode with the reference bech32 package, independently of the code under test."""
    text = bech32.bech32_encode(hrp, bech32.convertbits(data, 8, 5, True))
    assert text is not None
    return str(text)


def _bech32_bytes(text: str) -> bytes:
    hrp, words = bech32.bech32_decode(text)
    assert hrp is not None and words is not None
    raw = bech32.convertbits(words, 5, 8, False)
    assert raw is not None
    return bytes(raw)


def test_account_prefix_is_gonka() -> None:
    assert ACCOUNT_PREFIX == "gonka"


# --- pubkey -> address vectors ----------------------------------------------------------


@pytest.mark.parametrize(
    "vector",
    [
        pytest.param(v, id=f"{i:02d}-{v['hrp']}-{v['address'][-6:]}")
        for i, v in enumerate(COSMOS["pubkey_to_address"])
    ],
)
def test_pubkey_to_address_matches_vector(vector: dict[str, str]) -> None:
    pubkey = base64.b64decode(vector["pubkey_base64"])
    assert pubkey.hex() == vector["pubkey_hex"]
    assert address_from_pubkey(pubkey, vector["hrp"]) == vector["address"]

    raw = address_bytes_from_pubkey(pubkey)
    assert len(raw) == 20
    assert raw == _bech32_bytes(vector["address"])
    assert decode(vector["address"], vector["hrp"]) == raw
    assert encode(vector["hrp"], raw) == vector["address"]


def test_account_and_validator_addresses_share_bytes() -> None:
    valoper = next(v for v in COSMOS["pubkey_to_address"] if v["hrp"] == "gonkavaloper")
    account = next(
        v
        for v in COSMOS["pubkey_to_address"]
        if v["hrp"] == "gonka" and v["pubkey_hex"] == valoper["pubkey_hex"]
    )
    assert decode(valoper["address"], "gonkavaloper") == decode(account["address"])
    with pytest.raises(InvalidAddress, match="prefix is 'gonkavaloper', expected 'gonka'"):
        decode(valoper["address"])


def test_default_prefix_gives_gonka_address() -> None:
    pubkey = bytes.fromhex(GONKA_ACCOUNT["pubkey_hex"])
    assert address_from_pubkey(pubkey) == GONKA_ACCOUNT["address"]
    assert decode(GONKA_ACCOUNT["address"]) == address_bytes_from_pubkey(pubkey)


# --- the documented address with a broken checksum ---------------------------------------


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["documented_address"][:14]) for v in NEGATIVE]
)
def test_documented_address_with_bad_checksum_is_rejected(vector: dict[str, str]) -> None:
    with pytest.raises(InvalidAddress, match="bad checksum"):
        decode(vector["documented_address"])
    assert not is_address(vector["documented_address"])


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["correct_address"][:14]) for v in NEGATIVE]
)
def test_correct_address_for_documented_pubkey_is_accepted(vector: dict[str, str]) -> None:
    pubkey = base64.b64decode(vector["pubkey_base64"])
    assert address_from_pubkey(pubkey) == vector["correct_address"]
    assert decode(vector["correct_address"]) == address_bytes_from_pubkey(pubkey)
    assert is_address(vector["correct_address"])


# --- BIP-173 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", [pytest.param(s, id=f"{i}-{s[:12]}") for i, s in enumerate(BIP173["valid"])]
)
def test_bip173_valid_strings_decode(text: str) -> None:
    hrp, words = decode_bech32(text)
    assert hrp == text[: text.rfind("1")].lower()
    assert all(0 <= w < 32 for w in words)
    assert bech32.bech32_encode(hrp, words) == text.lower()


_BIP173_REASONS = {
    "HRP character out of range": r"space or non-ASCII",
    "overall max length exceeded": r"longer than 90",
    "No separator character": r"no '1' separator",
    "Empty HRP": r"empty prefix",
    "empty HRP": r"empty prefix",
    "Invalid data character": r"character bech32 does not use",
    "Too short checksum": r"too short",
    "Invalid character in checksum": r"non-ASCII|character bech32 does not use",
    "checksum calculated with uppercase form of HRP": r"bad checksum",
}


@pytest.mark.parametrize(
    "vector",
    [pytest.param(v, id=f"{i:02d}-{v['reason']}") for i, v in enumerate(BIP173["invalid"])],
)
def test_bip173_invalid_strings_are_rejected(vector: dict[str, str]) -> None:
    text = ast.literal_eval(vector["string_python_repr"])
    assert text.encode("utf-8").hex() == vector["string_hex_utf8"]
    with pytest.raises(InvalidAddress, match=_BIP173_REASONS[vector["reason"]]):
        decode_bech32(text)


@pytest.mark.parametrize("vector", [pytest.param(v, id=v["hrp"]) for v in BIP173["extra"]])
def test_bech32_extra_vector(vector: dict[str, str]) -> None:
    data = bytes.fromhex(vector["data_hex"])
    assert encode(vector["hrp"], data) == vector["bech32"]
    for text in (vector["bech32"], vector["bech32"].upper()):
        hrp, words = decode_bech32(text)
        assert hrp == vector["hrp"]
        assert bytes(bech32.convertbits(words, 5, 8, False)) == data


# --- gonka account address errors -------------------------------------------------------


def _flip_one_char(address: str) -> str:
    """Change one data character to another bech32 character."""
    i = len(address) - 10
    replacement = "q" if address[i] != "q" else "p"
    return address[:i] + replacement + address[i + 1 :]


def _checksum_valid(hrp: str, size: int) -> str:
    text = _bech32(hrp, bytes(range(1, size + 1)))
    assert bech32.bech32_decode(text) != (None, None)
    return text


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        pytest.param(
            COSMOS_ACCOUNT["address"], r"prefix is 'cosmos', expected 'gonka'", id="cosmos-prefix"
        ),
        pytest.param(
            GONKA_ACCOUNT["address"].replace("gonka1", "Gonka1"),
            r"mixes upper and lower case",
            id="mixed-case-prefix",
        ),
        pytest.param(
            GONKA_ACCOUNT["address"][:-3] + GONKA_ACCOUNT["address"][-3:].upper(),
            r"mixes upper and lower case",
            id="mixed-case-data",
        ),
        pytest.param(
            _flip_one_char(GONKA_ACCOUNT["address"]), r"bad checksum", id="one-char-changed"
        ),
        pytest.param(
            "gonka1f85fmcltqpzn3ra4ttnxtypj4tmwxpwh82hmjzr",
            r"bad checksum",
            id="f85fmcl-bad-checksum",
        ),
        pytest.param(NEGATIVE[0]["documented_address"], r"bad checksum", id="documented-sample"),
        pytest.param(_checksum_valid("gonka", 19), r"wrong length", id="19-bytes"),
        pytest.param(_checksum_valid("gonka", 21), r"wrong length", id="21-bytes"),
        pytest.param(_checksum_valid("gonka", 33), r"wrong length", id="33-bytes"),
        pytest.param(_checksum_valid("gonka", 0), r"too short|wrong length", id="0-bytes"),
        pytest.param("", r"empty", id="empty"),
        pytest.param("   ", r"empty", id="blank"),
        pytest.param("gonka", r"no '1' separator", id="prefix-only"),
        pytest.param("gonka1", r"too short", id="separator-only"),
        pytest.param(GONKA_ACCOUNT["address"].replace("q", "b", 1), r"does not use", id="letter-b"),
        pytest.param(
            GONKA_ACCOUNT["address"][:20] + " " + GONKA_ACCOUNT["address"][20:],
            r"space",
            id="inner-space",
        ),
    ],
)
def test_decode_rejects_bad_gonka_address(text: str, pattern: str) -> None:
    with pytest.raises(InvalidAddress, match=pattern):
        decode(text)
    assert not is_address(text)
    with pytest.raises(InvalidAddress):
        normalize(text)


def test_invalid_address_is_an_input_error() -> None:
    with pytest.raises(InputError):
        decode(COSMOS_ACCOUNT["address"])


def test_all_uppercase_address_is_accepted_and_normalised() -> None:
    lower = GONKA_ACCOUNT["address"]
    upper = lower.upper()
    assert decode(upper) == decode(lower)
    assert is_address(upper)
    assert normalize(upper) == lower
    assert normalize(f"  {lower}\n") == lower


@pytest.mark.parametrize("hrp", ["gonka", "gonkavaloper"])
def test_32_byte_addresses_are_accepted(hrp: str) -> None:
    data = bytes(range(100, 132))
    text = _bech32(hrp, data)
    assert decode(text, hrp) == data
    assert encode(hrp, data) == text
    assert normalize(text.upper(), hrp) == text


def test_encode_matches_reference_bech32() -> None:
    data = bytes(range(20))
    assert encode("gonka", data) == _bech32("gonka", data)
    assert len(encode("gonka", data)) == len("gonka") + 39
