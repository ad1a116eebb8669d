"""The encrypted keystore: one file per key, `<keys dir>/<name>.json`, 0600 in a 0700 directory.

File format (version 1), JSON:

    {
      "version": 1,
      "address": "gonka1...",              # public; `list` and `show` need no password
      "pubkey_hex": "02...",               # 33-byte compressed secp256k1 key
      "path": "m/44'/1200'/0'/0/0",        # null for keys imported from hex
      "source": "mnemonic" | "hex",
      "created_at": "2026-11-25T12:00:00Z",
      "kdf": {"name": "argon2id", "salt": b64(16 bytes), "memory_kib": 65536,
              "iterations": 3, "lanes": 4},
      "cipher": {"name": "aes-256-gcm", "nonce": b64(12 bytes)},
      "ciphertext": b64(AES-256-GCM(secret JSON))
    }

The key that encrypts is Argon2id(password, salt) with the parameters recorded in the file, so
they can be raised later without breaking old files (defaults: RFC 9106's second recommended
option, 64 MiB, 3 passes, 4 lanes). Every field but `ciphertext` is the AEAD's associated data:
changing the address, the path or the KDF parameters makes decryption fail. The secret JSON holds
the private key and, for mnemonic keys, the mnemonic and BIP39 passphrase. The key's name is its
file name: renaming the file renames the key.

Writes are atomic (temporary file, fsync, hard link into place, fsync of the directory), so a
crash leaves either no key or a whole key, and two writers cannot both create the same name.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import stat
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gonka_cli.errors import (
    InvalidKeyName,
    KeyExists,
    KeyNotFound,
    KeystoreCorrupt,
    SecretUnavailable,
    WrongPassword,
)
from gonka_cli.storage import atomic_write

if TYPE_CHECKING:  # the crypto stack loads when a key is used, not for `list` and `show`
    from gonka_cli.crypto.hd import HDPath
    from gonka_cli.crypto.secp256k1 import PrivateKey

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KDF_NAME = "argon2id"
CIPHER_NAME = "aes-256-gcm"
SALT_BYTES = 16
NONCE_BYTES = 12
SUFFIX = ".json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters, recorded in each key file."""

    memory_kib: int = 64 * 1024
    iterations: int = 3
    lanes: int = 4

    def check(self) -> None:
        """Refuse parameters no honest file has (and that could exhaust memory)."""
        if not (8 * self.lanes <= self.memory_kib <= 4 * 1024 * 1024):
            raise ValueError("memory_kib out of range")
        if not 1 <= self.iterations <= 64 or not 1 <= self.lanes <= 64:
            raise ValueError("iterations or lanes out of range")


DEFAULT_KDF = KdfParams()


@dataclass(frozen=True)
class KeyInfo:
    """The public part of a stored key."""

    name: str
    address: str
    pubkey_hex: str
    path: str | None
    source: str
    created_at: str
    file: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "pubkey_hex": self.pubkey_hex,
            "path": self.path,
            "source": self.source,
            "created_at": self.created_at,
            "file": str(self.file),
        }


@dataclass(frozen=True)
class UnreadableKey:
    """A file in the keys directory that could not be read (listed, not fatal)."""

    name: str
    file: Path
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": str(self.file), "error": self.error}


@dataclass(frozen=True, repr=False)
class Secret:
    """What unlocking a key gives. Its repr shows nothing secret."""

    private_key: PrivateKey
    mnemonic: str | None = field(default=None)
    bip39_passphrase: str = field(default="")

    def __repr__(self) -> str:
        return f"Secret(<hidden>, public_key={self.private_key.public_key.to_hex()})"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidKeyName(
            f"invalid key name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


class Keystore:
    """The key files in one directory."""

    def __init__(self, directory: Path, kdf: KdfParams | None = None) -> None:
        self.directory = Path(directory)
        self.kdf = kdf or DEFAULT_KDF

    # -- reading -------------------------------------------------------------------------

    def path_of(self, name: str) -> Path:
        return self.directory / f"{check_name(name)}{SUFFIX}"

    def list(self) -> tuple[list[KeyInfo], list[UnreadableKey]]:
        """Every key, sorted by name, and the files that could not be read."""
        keys: list[KeyInfo] = []
        unreadable: list[UnreadableKey] = []
        if not self.directory.is_dir():
            return keys, unreadable
        for file in sorted(self.directory.glob(f"*{SUFFIX}")):
            name = file.name[: -len(SUFFIX)]
            if not _NAME.fullmatch(name):
                continue
            try:
                keys.append(self._info(name, file, self._read(name, file)))
            except KeystoreCorrupt as exc:
                unreadable.append(UnreadableKey(name, file, str(exc)))
        return keys, unreadable

    def get(self, name: str) -> KeyInfo:
        file = self.path_of(name)
        return self._info(name, file, self._read(name, file))

    def exists(self, name: str) -> bool:
        return self.path_of(name).exists()

    def find_by_address(self, address: str) -> KeyInfo | None:
        for info in self.list()[0]:
            if info.address == address:
                return info
        return None

    def unlock(self, name: str, password: str) -> Secret:
        """Decrypt a key. `WrongPassword` leaves everything as it was."""
        file = self.path_of(name)
        doc = self._read(name, file)
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            kdf = doc["kdf"]
            params = KdfParams(int(kdf["memory_kib"]), int(kdf["iterations"]), int(kdf["lanes"]))
            params.check()
            salt = _b64decode(kdf["salt"])
            nonce = _b64decode(doc["cipher"]["nonce"])
            ciphertext = _b64decode(doc["ciphertext"])
            if kdf.get("name") != KDF_NAME or doc["cipher"].get("name") != CIPHER_NAME:
                raise ValueError("unknown kdf or cipher")
            if len(nonce) != NONCE_BYTES or len(salt) < 8:
                raise ValueError("bad nonce or salt length")
        except (KeyError, TypeError, ValueError) as exc:
            raise _corrupt(file, f"bad kdf or cipher fields: {exc}") from None
        key = _derive(password, salt, params)
        try:
            plaintext = AESGCM(key).decrypt(nonce, ciphertext, _associated_data(doc))
        except InvalidTag:
            # AES-GCM cannot tell a wrong password from an edited file: name both, likeliest first.
            raise WrongPassword(
                f"wrong password for key {name!r} (or the key file is damaged)"
            ) from None
        from gonka_cli.crypto.secp256k1 import PrivateKey

        try:
            payload = json.loads(plaintext)
            private_key = PrivateKey.from_hex(payload["private_key_hex"])
            secret = Secret(
                private_key, payload.get("mnemonic"), payload.get("bip39_passphrase", "")
            )
        except (
            Exception
        ):  # the decrypted bytes are authentic, so this is our own bug or format drift
            raise _corrupt(file, "its decrypted contents are not a key") from None
        if private_key.public_key.to_hex() != doc["pubkey_hex"]:
            raise _corrupt(file, "its private key does not match its public key")
        return secret

    # -- writing -------------------------------------------------------------------------

    def check_new(self, name: str) -> None:
        """Raise if `name` is invalid or taken (before asking the user for anything)."""
        if self.path_of(name).exists():
            raise KeyExists(
                f"a key named {name!r} already exists; pick another name or delete it first"
            )

    def add_mnemonic(
        self, name: str, mnemonic: str, password: str, *, path: HDPath, bip39_passphrase: str = ""
    ) -> KeyInfo:
        """Store the key at `path` of a (validated) mnemonic."""
        from gonka_cli.crypto.hd import ExtendedPrivateKey, mnemonic_to_seed, validate_mnemonic

        phrase = validate_mnemonic(mnemonic)
        seed = mnemonic_to_seed(phrase, bip39_passphrase)
        private_key = ExtendedPrivateKey.from_seed(seed).derive(path).private_key
        secret = Secret(private_key, phrase, bip39_passphrase)
        return self._add(name, secret, password, path=str(path), source="mnemonic")

    def add_private_key(self, name: str, private_key: PrivateKey, password: str) -> KeyInfo:
        """Store a raw private key (as `inferenced keys export --unarmored-hex` gives)."""
        return self._add(name, Secret(private_key), password, path=None, source="hex")

    def delete(self, name: str) -> None:
        """Remove a key file, readable or not (a corrupt file can be deleted too)."""
        try:
            self.path_of(name).unlink()
        except FileNotFoundError:
            raise KeyNotFound(
                f"no key named {name!r}; `gonka wallet list` shows your keys"
            ) from None
        _fsync_dir(self.directory)

    def _add(
        self, name: str, secret: Secret, password: str, *, path: str | None, source: str
    ) -> KeyInfo:
        from gonka_cli.crypto.address import address_from_pubkey

        self.check_new(name)
        pubkey = secret.private_key.public_key.to_bytes()
        address = address_from_pubkey(pubkey)
        twin = self.find_by_address(address)
        if twin is not None:
            raise KeyExists(f"key {twin.name!r} already holds address {address}")
        salt = secrets.token_bytes(SALT_BYTES)
        nonce = secrets.token_bytes(NONCE_BYTES)
        doc: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "address": address,
            "pubkey_hex": pubkey.hex(),
            "path": path,
            "source": source,
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "kdf": {
                "name": KDF_NAME,
                "salt": _b64encode(salt),
                "memory_kib": self.kdf.memory_kib,
                "iterations": self.kdf.iterations,
                "lanes": self.kdf.lanes,
            },
            "cipher": {"name": CIPHER_NAME, "nonce": _b64encode(nonce)},
        }
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        plaintext = json.dumps(
            {
                "private_key_hex": secret.private_key.to_hex(),
                "mnemonic": secret.mnemonic,
                "bip39_passphrase": secret.bip39_passphrase,
            }
        ).encode()
        key = _derive(password, salt, self.kdf)
        doc["ciphertext"] = _b64encode(AESGCM(key).encrypt(nonce, plaintext, _associated_data(doc)))
        file = self.path_of(name)
        self._write_new(file, (json.dumps(doc, indent=2) + "\n").encode())
        return self._info(name, file, doc)

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(self.directory.stat().st_mode) != 0o700:
            os.chmod(self.directory, 0o700)

    def _write_new(self, file: Path, data: bytes) -> None:
        """Write `file` atomically, failing with KeyExists if it appeared meanwhile."""
        self._ensure_directory()
        try:
            # Linked into place, never renamed: an existing key is never replaced.
            atomic_write(file, data, mode=0o600, overwrite=False)
        except FileExistsError:
            raise KeyExists(f"a key named {file.stem!r} already exists") from None

    # -- parsing -------------------------------------------------------------------------

    def _read(self, name: str, file: Path) -> dict[str, Any]:
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            raise KeyNotFound(
                f"no key named {name!r}; `gonka wallet list` shows your keys"
            ) from None
        except OSError as exc:
            raise _corrupt(file, f"cannot be read ({exc.strerror})") from None
        mode = stat.S_IMODE(file.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "key file %s is readable by other users (mode %o); run chmod 600 on it", file, mode
            )
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise _corrupt(file, "it is not valid JSON (truncated?)") from None
        if not isinstance(doc, dict):
            raise _corrupt(file, "it is not a JSON object")
        version = doc.get("version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise KeystoreCorrupt(
                f"key file {file} has format {version}, newer than this gonka reads "
                f"({FORMAT_VERSION}); upgrade gonka"
            )
        if version != FORMAT_VERSION:
            raise _corrupt(file, "no supported format version")
        for key, kind in (
            ("address", str),
            ("pubkey_hex", str),
            ("kdf", dict),
            ("cipher", dict),
            ("ciphertext", str),
        ):
            if not isinstance(doc.get(key), kind):
                raise _corrupt(file, f"the field {key!r} is missing or malformed")
        # The address shown to receive funds must be the key's own: check it against the pubkey.
        from gonka_cli.crypto.address import address_from_pubkey

        try:
            derived = address_from_pubkey(bytes.fromhex(doc["pubkey_hex"]))
        except ValueError:
            raise _corrupt(file, "its public key is not hex") from None
        if derived != doc["address"]:
            raise _corrupt(file, "its address does not match its public key")
        return doc

    @staticmethod
    def _info(name: str, file: Path, doc: dict[str, Any]) -> KeyInfo:
        return KeyInfo(
            name=name,
            address=doc["address"],
            pubkey_hex=doc["pubkey_hex"],
            path=doc.get("path"),
            source=str(doc.get("source", "")),
            created_at=str(doc.get("created_at", "")),
            file=file,
        )


def mnemonic_of(secret: Secret, name: str) -> str:
    if not secret.mnemonic:
        raise SecretUnavailable(
            f"key {name!r} was imported from a private key and has no mnemonic; "
            "export it with --hex"
        )
    return secret.mnemonic


def _derive(password: str, salt: bytes, params: KdfParams) -> bytes:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    kdf = Argon2id(
        salt=salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    return kdf.derive(unicodedata.normalize("NFC", password).encode("utf-8"))


def _associated_data(doc: dict[str, Any]) -> bytes:
    header = {k: v for k, v in doc.items() if k != "ciphertext"}
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text, validate=True)


def _corrupt(file: Path, why: str) -> KeystoreCorrupt:
    return KeystoreCorrupt(
        f"key file {file} is corrupt: {why}; restore it from a backup or re-import the key "
        "from its mnemonic"
    )


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
