"""Bech32 (BIP-173) account addresses, as the Cosmos SDK forms them.

address = bech32(prefix, RIPEMD160(SHA256(33-byte compressed pubkey))). Gonka's prefixes are
`gonka` (accounts), `gonkavaloper`, `gonkavalcons` and `gonkapub`. Bech32m is not used.
"""

from __future__ import annotations

import functools
import hashlib

import bech32 as _bech32

from gonka_cli.errors import InvalidAddress

ACCOUNT_PREFIX = "gonka"
#: Account addresses are 20 bytes; module and contract (wasm) accounts are 32.
ADDRESS_LENGTHS = (20, 32)
_CHARSET = set(_bech32.CHARSET)
_MAX_LENGTH = 90  # BIP-173


def ripemd160(data: bytes) -> bytes:
    try:
        return hashlib.new("ripemd160", data).digest()
    except ValueError:  # an OpenSSL build without the legacy digests
        try:
            from Crypto.Hash import RIPEMD160  # type: ignore[import-not-found]
        except ImportError:
            raise RuntimeError(
                "this Python's OpenSSL has no RIPEMD-160: install pycryptodome "
                "(pip install pycryptodome) or use a Python built with OpenSSL >= 3.0.7"
            ) from None
        return bytes(RIPEMD160.new(data).digest())


def address_bytes_from_pubkey(compressed_pubkey: bytes) -> bytes:
    return ripemd160(hashlib.sha256(compressed_pubkey).digest())


# Cached: the node checks the same few addresses on every transaction, and pure-Python bech32
# costs ~0.1 ms each (scripts/bench_node.py). Both functions are pure; errors are not cached.
@functools.lru_cache(maxsize=8192)
def address_from_pubkey(compressed_pubkey: bytes, prefix: str = ACCOUNT_PREFIX) -> str:
    """The bech32 account address of a 33-byte compressed secp256k1 public key."""
    return encode(prefix, address_bytes_from_pubkey(compressed_pubkey))


def encode(prefix: str, data: bytes) -> str:
    words = _bech32.convertbits(data, 8, 5, True)
    if words is None:  # pragma: no cover - padding makes any byte string convertible
        raise InvalidAddress(f"cannot encode {len(data)} bytes as bech32")
    return str(_bech32.bech32_encode(prefix, words))


def decode_bech32(text: str) -> tuple[str, list[int]]:
    """Decode any BIP-173 string into (human-readable part, 5-bit words).

    Raises `InvalidAddress` with the reason: mixed case, no separator, empty prefix,
    characters outside the alphabet, length, or checksum.
    """
    shown = _shown(text)
    if text != text.lower() and text != text.upper():
        raise InvalidAddress(f"invalid address {shown}: mixes upper and lower case")
    if any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise InvalidAddress(f"invalid address {shown}: contains a space or non-ASCII character")
    lowered = text.lower()
    sep = lowered.rfind("1")
    if sep < 0:
        raise InvalidAddress(f"invalid address {shown}: not bech32 (no '1' separator)")
    if sep == 0:
        raise InvalidAddress(f"invalid address {shown}: empty prefix before '1'")
    data_part = lowered[sep + 1 :]
    if any(c not in _CHARSET for c in data_part):
        raise InvalidAddress(
            f"invalid address {shown}: contains a character bech32 does not use "
            "(1, b, i, o or a symbol)"
        )
    if len(data_part) < 6:
        raise InvalidAddress(f"invalid address {shown}: too short for a checksum")
    if len(lowered) > _MAX_LENGTH:
        raise InvalidAddress(f"invalid address {shown}: longer than {_MAX_LENGTH} characters")
    hrp, words = _bech32.bech32_decode(lowered)
    if hrp is None or words is None:
        raise InvalidAddress(
            f"invalid address {shown}: bad checksum (check for a mistyped character)"
        )
    return str(hrp), list(words)


@functools.lru_cache(maxsize=8192)
def decode(text: str, prefix: str = ACCOUNT_PREFIX) -> bytes:
    """Decode and check an account address; raise `InvalidAddress` naming what is wrong."""
    address = text.strip()
    if not address:
        raise InvalidAddress("address is empty")
    sep = address.lower().rfind("1")
    if sep > 0 and address[:sep].lower() != prefix:
        raise InvalidAddress(
            f"invalid address {_shown(address)}: prefix is {address[:sep].lower()!r}, "
            f"expected {prefix!r}"
        )
    _, words = decode_bech32(address)
    raw = _bech32.convertbits(words, 5, 8, False)
    if raw is None or len(raw) not in ADDRESS_LENGTHS:
        raise InvalidAddress(
            f"invalid address {_shown(address)}: wrong length ({len(address)} characters; "
            f"a {prefix} account address has {len(prefix) + 39})"
        )
    return bytes(raw)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 100 else text[:97] + "...")


def normalize(text: str, prefix: str = ACCOUNT_PREFIX) -> str:
    """Check an address and return its canonical (lower-case) form."""
    decode(text, prefix)
    return text.strip().lower()


def is_address(text: str, prefix: str = ACCOUNT_PREFIX) -> bool:
    try:
        decode(text, prefix)
    except InvalidAddress:
        return False
    return True
