"""BIP39 mnemonics and BIP32 hierarchical deterministic keys.

Gonka keys follow BIP44 path m/44'/1200'/account'/0/index (coin type 1200, as `inferenced keys
add` does). Coin type 118 (the Cosmos Hub's) gives other addresses from the same mnemonic; it
is offered for wallets made elsewhere, never as the default.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import base58
from ecdsa import MalformedPointError, SECP256k1, VerifyingKey
from ecdsa.ellipticcurve import INFINITY
from mnemonic import Mnemonic

from gonka_cli.crypto import COSMOS_COIN_TYPE, GONKA_COIN_TYPE  # noqa: F401 - re-exported
from gonka_cli.crypto.address import ripemd160
from gonka_cli.crypto.secp256k1 import CURVE_ORDER, PrivateKey
from gonka_cli.errors import InputError, InvalidMnemonic

HARDENED = 0x8000_0000
MNEMONIC_LENGTHS = (12, 15, 18, 21, 24)

XPRV_VERSION = bytes.fromhex("0488ade4")
XPUB_VERSION = bytes.fromhex("0488b21e")


# --- BIP39 ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _english() -> Mnemonic:
    return Mnemonic("english")


def generate_mnemonic(words: int = 24) -> str:
    """A new English BIP39 mnemonic from the OS's secure random source."""
    if words not in MNEMONIC_LENGTHS:
        raise InputError(
            f"a mnemonic has {', '.join(map(str, MNEMONIC_LENGTHS))} words, not {words}"
        )
    return str(_english().generate(strength=words * 32 // 3))


def normalize_mnemonic(text: str) -> str:
    """NFKD, lower case, single spaces: the form BIP39 hashes."""
    return " ".join(unicodedata.normalize("NFKD", text).lower().split())


def validate_mnemonic(text: str) -> str:
    """Check length, words and checksum; return the normalised mnemonic.

    The error names a bad word by its position only, never the word, so a mnemonic does not
    leak into a terminal log piece by piece.
    """
    phrase = normalize_mnemonic(text)
    words = phrase.split()
    if len(words) not in MNEMONIC_LENGTHS:
        raise InvalidMnemonic(
            f"invalid mnemonic: {len(words)} words; a BIP39 mnemonic has 12, 15, 18, 21 or 24"
        )
    wordlist = set(_english().wordlist)
    unknown = [i + 1 for i, w in enumerate(words) if w not in wordlist]
    if unknown:
        which = ", ".join(map(str, unknown[:5]))
        raise InvalidMnemonic(
            f"invalid mnemonic: word {which} {'is' if len(unknown) == 1 else 'are'} not in the "
            "BIP39 English word list (check the spelling)"
        )
    if not _english().check(phrase):
        raise InvalidMnemonic(
            "invalid mnemonic: bad checksum (a word is wrong or the words are out of order)"
        )
    return phrase


def mnemonic_to_seed(mnemonic: str, passphrase: str = "") -> bytes:
    """BIP39 seed: PBKDF2-HMAC-SHA512(NFKD(mnemonic), 'mnemonic' + NFKD(passphrase), 2048)."""
    return bytes(Mnemonic.to_seed(normalize_mnemonic(mnemonic), passphrase))


def mnemonic_from_entropy(entropy: bytes) -> str:
    return str(_english().to_mnemonic(entropy))


# --- BIP32 paths ------------------------------------------------------------------------


@dataclass(frozen=True)
class HDPath:
    """A BIP32 derivation path such as m/44'/1200'/0'/0/0."""

    indices: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> HDPath:
        parts = text.strip().split("/")
        if parts[0] != "m":
            raise InputError(f"derivation path {text!r} must start with 'm'")
        indices = []
        for part in parts[1:]:
            hardened = part.endswith(("'", "h", "H"))
            digits = part[:-1] if hardened else part
            if not (digits.isascii() and digits.isdigit()) or int(digits) >= HARDENED:
                raise InputError(f"derivation path {text!r}: bad component {part!r}")
            indices.append(int(digits) + (HARDENED if hardened else 0))
        return cls(tuple(indices))

    @classmethod
    def bip44(cls, coin_type: int = GONKA_COIN_TYPE, account: int = 0, index: int = 0) -> HDPath:
        for name, value in (("coin type", coin_type), ("account", account), ("index", index)):
            if not 0 <= value < HARDENED:
                raise InputError(f"{name} must be between 0 and {HARDENED - 1}, got {value}")
        return cls((44 + HARDENED, coin_type + HARDENED, account + HARDENED, 0, index))

    def __str__(self) -> str:
        return "/".join(
            ["m"] + [f"{i - HARDENED}'" if i >= HARDENED else str(i) for i in self.indices]
        )


# --- BIP32 keys -------------------------------------------------------------------------


def _hash160(data: bytes) -> bytes:
    return ripemd160(hashlib.sha256(data).digest())


@dataclass(frozen=True)
class _ExtendedKey:
    """The fields BIP32 serialises for both kinds of extended key."""

    key: bytes
    chain_code: bytes
    depth: int = 0
    parent_fingerprint: bytes = b"\0\0\0\0"
    child_number: int = 0


@dataclass(frozen=True, repr=False)
class ExtendedPrivateKey(_ExtendedKey):
    """A BIP32 extended private key (xprv); `key` is the 32-byte secret."""

    @classmethod
    def from_seed(cls, seed: bytes) -> ExtendedPrivateKey:
        digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
        key, chain_code = digest[:32], digest[32:]
        if not 0 < int.from_bytes(key, "big") < CURVE_ORDER:  # pragma: no cover - p ~ 2^-127
            raise InputError("this seed gives an invalid master key; use another mnemonic")
        return cls(key, chain_code)

    @property
    def private_key(self) -> PrivateKey:
        return PrivateKey(self.key)

    @property
    def public_key_bytes(self) -> bytes:
        return self.private_key.public_key.to_bytes()

    @property
    def fingerprint(self) -> bytes:
        return _hash160(self.public_key_bytes)[:4]

    def child(self, index: int) -> ExtendedPrivateKey:
        if index >= HARDENED:
            data = b"\0" + self.key + index.to_bytes(4, "big")
        else:
            data = self.public_key_bytes + index.to_bytes(4, "big")
        digest = hmac.new(self.chain_code, data, hashlib.sha512).digest()
        tweak = int.from_bytes(digest[:32], "big")
        child = (tweak + int.from_bytes(self.key, "big")) % CURVE_ORDER
        if tweak >= CURVE_ORDER or child == 0:  # pragma: no cover - p ~ 2^-127
            raise InputError(f"BIP32 child {index} is invalid; use the next index")
        return ExtendedPrivateKey(
            child.to_bytes(32, "big"), digest[32:], self.depth + 1, self.fingerprint, index
        )

    def derive(self, path: HDPath) -> ExtendedPrivateKey:
        node = self
        for index in path.indices:
            node = node.child(index)
        return node

    def public(self) -> ExtendedPublicKey:
        return ExtendedPublicKey(
            self.public_key_bytes,
            self.chain_code,
            self.depth,
            self.parent_fingerprint,
            self.child_number,
        )

    def to_string(self) -> str:
        return _serialize(XPRV_VERSION, self, b"\0" + self.key)

    @classmethod
    def from_string(cls, text: str) -> ExtendedPrivateKey:
        key = parse_extended_key(text)
        if not isinstance(key, ExtendedPrivateKey):
            raise InputError("this is an extended public key (xpub), not an xprv")
        return key

    def __repr__(self) -> str:
        return f"ExtendedPrivateKey(<secret>, depth={self.depth})"


@dataclass(frozen=True)
class ExtendedPublicKey(_ExtendedKey):
    """A BIP32 extended public key (xpub); `key` is the 33-byte compressed point."""

    @property
    def fingerprint(self) -> bytes:
        return _hash160(self.key)[:4]

    def child(self, index: int) -> ExtendedPublicKey:
        if index >= HARDENED:
            raise InputError("a hardened child cannot be derived from a public key")
        digest = hmac.new(
            self.chain_code, self.key + index.to_bytes(4, "big"), hashlib.sha512
        ).digest()
        tweak = int.from_bytes(digest[:32], "big")
        point = SECP256k1.generator * tweak + _point(self.key)
        if tweak >= CURVE_ORDER or point == INFINITY:  # pragma: no cover - p ~ 2^-127
            raise InputError(f"BIP32 child {index} is invalid; use the next index")
        key = VerifyingKey.from_public_point(point, curve=SECP256k1).to_string("compressed")
        return ExtendedPublicKey(bytes(key), digest[32:], self.depth + 1, self.fingerprint, index)

    def to_string(self) -> str:
        return _serialize(XPUB_VERSION, self, self.key)


def _point(compressed: bytes):  # type: ignore[no-untyped-def]
    return VerifyingKey.from_string(compressed, curve=SECP256k1).pubkey.point


def _serialize(version: bytes, node: _ExtendedKey, key_data: bytes) -> str:
    payload = (
        version
        + bytes([node.depth])
        + node.parent_fingerprint
        + node.child_number.to_bytes(4, "big")
        + node.chain_code
        + key_data
    )
    return str(base58.b58encode_check(payload).decode("ascii"))


def parse_extended_key(text: str) -> ExtendedPrivateKey | ExtendedPublicKey:
    """Parse an xprv or xpub string, checking everything BIP32 requires."""
    try:
        payload = base58.b58decode_check(text.strip())
    except ValueError:
        raise InputError("extended key: bad base58 or checksum") from None
    if len(payload) != 78:
        raise InputError(f"extended key: {len(payload)} bytes, expected 78")
    version, depth, fingerprint = payload[:4], payload[4], payload[5:9]
    child_number = int.from_bytes(payload[9:13], "big")
    chain_code, key_data = payload[13:45], payload[45:]
    if depth == 0 and fingerprint != b"\0\0\0\0":
        raise InputError("extended key: zero depth with a non-zero parent fingerprint")
    if depth == 0 and child_number != 0:
        raise InputError("extended key: zero depth with a non-zero child index")
    if version == XPRV_VERSION:
        if key_data[0] != 0:
            raise InputError("extended key: private key data must start with 0x00")
        if not 0 < int.from_bytes(key_data[1:], "big") < CURVE_ORDER:
            raise InputError("extended key: private key is not in 1..n-1")
        return ExtendedPrivateKey(key_data[1:], chain_code, depth, fingerprint, child_number)
    if version == XPUB_VERSION:
        if key_data[0] not in (2, 3):
            raise InputError("extended key: public key must be compressed (02/03 prefix)")
        try:
            _point(key_data)
        except (MalformedPointError, ValueError):
            raise InputError("extended key: public key is not on secp256k1") from None
        return ExtendedPublicKey(key_data, chain_code, depth, fingerprint, child_number)
    raise InputError(f"extended key: unknown version {version.hex()}")


def derive_private_key(mnemonic: str, path: HDPath, passphrase: str = "") -> PrivateKey:
    """The private key at `path` for a mnemonic (validated first)."""
    seed = mnemonic_to_seed(validate_mnemonic(mnemonic), passphrase)
    return ExtendedPrivateKey.from_seed(seed).derive(path).private_key
