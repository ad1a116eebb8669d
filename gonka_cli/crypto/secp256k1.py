"""secp256k1 keys and Cosmos-style signatures.

Signatures are what the Cosmos SDK produces and accepts: ECDSA over SHA-256(message) with an
RFC 6979 deterministic nonce, normalised to low-S (s <= n/2), encoded as 64 bytes r || s.
Verification rejects high-S signatures, as the SDK does.

Two libraries, one job each:

- `ecdsa` (pure Python) owns the keys: range checks, public keys, point validation and
  decompression (`crypto.hd` derives child keys with it too). It is also the fallback for
  signing and verification wherever `coincurve` cannot be imported (no libsecp256k1 wheel for
  the platform).
- `coincurve` (libsecp256k1) is the hot path: signing (~20x faster) and verification (~50x,
  what lets the local node check hundreds of transactions per second). Its default nonce is
  RFC 6979 and its signatures are low-S: byte for byte what `ecdsa` gives, checked against the
  vectors and real signed transactions with either backend (tests/crypto/test_secp256k1.py,
  tests/chain/test_tx.py).

`backend()` says which one signs and verifies; `set_backend("ecdsa")` forces the fallback in
this process (tests, or comparing speeds), `set_backend("auto")` goes back to the fast path when
it is installed.
"""

from __future__ import annotations

import hashlib
from functools import cache, cached_property, lru_cache
from typing import Any, Literal

from ecdsa import BadSignatureError, MalformedPointError, SECP256k1, SigningKey, VerifyingKey
from ecdsa.util import sigdecode_string, sigencode_string_canonize

from gonka_cli.errors import InvalidPrivateKey, InvalidPublicKey

CURVE_ORDER: int = SECP256k1.order
HALF_ORDER: int = CURVE_ORDER // 2
SIGNATURE_SIZE = 64

Backend = Literal["coincurve", "ecdsa"]
#: Set by `set_backend`: False forces the pure-Python fallback even where coincurve is installed.
_prefer_coincurve = True


@cache
def _coincurve() -> Any:
    """The coincurve module, or None where it cannot be imported (imported on first use)."""
    try:
        import coincurve
        import coincurve.ecdsa
    except ImportError:
        return None
    return coincurve


def backend() -> Backend:
    """The library that signs and verifies in this process: "coincurve" or "ecdsa"."""
    return "coincurve" if _prefer_coincurve and _coincurve() is not None else "ecdsa"


def set_backend(name: Literal["auto", "ecdsa"]) -> Backend:
    """Use the fast path where installed ("auto") or the pure-Python fallback ("ecdsa").

    Both give the same bytes; only the speed differs. Returns the backend now in use.
    """
    global _prefer_coincurve
    if name not in ("auto", "ecdsa"):
        raise ValueError(f"unknown secp256k1 backend {name!r}: use 'auto' or 'ecdsa'")
    _prefer_coincurve = name == "auto"
    return backend()


class PrivateKey:
    """A secp256k1 private key. Its repr never shows the secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise InvalidPrivateKey(f"a private key is 32 bytes, got {len(secret)}")
        scalar = int.from_bytes(secret, "big")
        if not 0 < scalar < CURVE_ORDER:
            raise InvalidPrivateKey("private key is out of range for secp256k1 (0 or >= n)")
        self._signing_key = SigningKey.from_string(secret, curve=SECP256k1)

    @classmethod
    def from_bytes(cls, secret: bytes) -> PrivateKey:
        return cls(secret)

    @classmethod
    def from_hex(cls, text: str) -> PrivateKey:
        """Parse 64 hex characters (the form `inferenced keys export --unarmored-hex` prints)."""
        cleaned = text.strip()
        if cleaned[:2].lower() == "0x":
            cleaned = cleaned[2:]
        if len(cleaned) != 64:
            raise InvalidPrivateKey(f"a private key is 64 hex characters, got {len(cleaned)}")
        try:
            secret = bytes.fromhex(cleaned)
        except ValueError:
            raise InvalidPrivateKey("private key is not valid hex") from None
        return cls(secret)

    def to_bytes(self) -> bytes:
        return bytes(self._signing_key.to_string())

    def to_hex(self) -> str:
        return self.to_bytes().hex()

    @cached_property
    def public_key(self) -> PublicKey:
        point = self._signing_key.get_verifying_key().to_string("compressed")
        return PublicKey(bytes(point))

    def sign(self, message: bytes) -> bytes:
        """Sign SHA-256(message): 64 bytes r || s, low-S."""
        return self.sign_digest(hashlib.sha256(message).digest())

    def sign_digest(self, digest: bytes) -> bytes:
        if len(digest) != 32:
            raise ValueError("digest must be 32 bytes")
        if backend() == "coincurve":
            # A recoverable signature is r || s || v: the compact form without v.
            return bytes(self._fast_key.sign_recoverable(digest, hasher=None)[:SIGNATURE_SIZE])
        # RFC 6979 nonce; the `canonize` encoder normalises s to low-S, as libsecp256k1 does.
        return bytes(
            self._signing_key.sign_digest_deterministic(
                digest, hashfunc=hashlib.sha256, sigencode=sigencode_string_canonize
            )
        )

    @cached_property
    def _fast_key(self) -> Any:
        return _coincurve().PrivateKey(self.to_bytes())

    def __repr__(self) -> str:
        return f"PrivateKey(<secret>, public_key={self.public_key.to_hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivateKey) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.public_key)


class PublicKey:
    """A secp256k1 public key, kept as its 33-byte compressed SEC1 encoding."""

    __slots__ = ("_compressed",)

    def __init__(self, data: bytes) -> None:
        self._compressed = _compress(bytes(data))

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        return cls(data)

    @classmethod
    def from_hex(cls, text: str) -> PublicKey:
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError:
            raise InvalidPublicKey("public key is not valid hex") from None

    def to_bytes(self) -> bytes:
        return self._compressed

    def to_hex(self) -> str:
        return self._compressed.hex()

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when `signature` is a valid low-S signature of SHA-256(message)."""
        return self.verify_digest(hashlib.sha256(message).digest(), signature)

    def verify_digest(self, digest: bytes, signature: bytes) -> bool:
        if len(signature) != SIGNATURE_SIZE or len(digest) != 32:
            return False
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        if not (0 < r < CURVE_ORDER and 0 < s <= HALF_ORDER):
            return False  # high-S is malleable; the Cosmos SDK refuses it
        if backend() == "coincurve":
            fast = _coincurve()
            try:
                der = fast.ecdsa.cdata_to_der(fast.ecdsa.deserialize_compact(signature))
                return bool(_coincurve_key(self._compressed).verify(der, digest, hasher=None))
            except ValueError:
                return False
        try:
            return bool(
                _verifying_key(self._compressed).verify_digest(
                    signature, digest, sigdecode=sigdecode_string
                )
            )
        except (BadSignatureError, ValueError):
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self._compressed == other._compressed

    def __hash__(self) -> int:
        return hash(self._compressed)

    def __repr__(self) -> str:
        return f"PublicKey({self.to_hex()})"


@lru_cache(maxsize=4096)
def _coincurve_key(compressed: bytes) -> Any:
    return _coincurve().PublicKey(compressed)


@lru_cache(maxsize=1024)
def _verifying_key(compressed: bytes) -> VerifyingKey:
    return VerifyingKey.from_string(compressed, curve=SECP256k1)


def _compress(data: bytes) -> bytes:
    if len(data) == 33 and data[0] in (2, 3):
        try:
            _verifying_key(data)
        except (MalformedPointError, ValueError):
            raise InvalidPublicKey("public key is not a point on secp256k1") from None
        return data
    if len(data) == 65 and data[0] == 4:
        try:
            key = VerifyingKey.from_string(data, curve=SECP256k1)
        except (MalformedPointError, ValueError):
            raise InvalidPublicKey("public key is not a point on secp256k1") from None
        return bytes(key.to_string("compressed"))
    raise InvalidPublicKey(
        f"public key must be 33 bytes compressed (02/03...), got {len(data)} bytes"
    )
