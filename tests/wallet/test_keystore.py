"""The encrypted keystore: round trips, what lies at rest, tampering, corrupt files, names,
atomic writes under SIGKILL, and racing writers."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from gonka_cli.crypto import address as addresslib
from gonka_cli.crypto.hd import COSMOS_COIN_TYPE, HDPath, derive_private_key
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import (
    InvalidKeyName,
    KeyExists,
    KeyNotFound,
    KeystoreCorrupt,
    SecretUnavailable,
    WrongPassword,
)
from gonka_cli.wallet import keystore as keystore_module
from gonka_cli.wallet.keystore import KdfParams, Keystore, mnemonic_of
from tests.conftest import MNEMONIC, PASSWORD, load_vectors
from tests.wallet.keystore_writer import key_for

GONKA_PATH = HDPath.bip44()
COSMOS_PATH = HDPath.bip44(COSMOS_COIN_TYPE)
#: The address cosmjs/simd give MNEMONIC at m/44'/118'/0'/0/0 (cosmos_tx_vectors.json).
COSMOS_ADDRESS = "cosmos1pkptre7fdkl6gfrzlesjjvhxhlc3r4gmmk8rs6"
HEX_KEY = PrivateKey(bytes.fromhex("11" * 32))
OTHER_KEY = PrivateKey(bytes.fromhex("22" * 32))
BIP39_PASSPHRASE = "thirteenth word"

WRITER = Path(__file__).with_name("keystore_writer.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def store(keys_dir: Path) -> Keystore:
    return Keystore(keys_dir)


def _doc(file: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(file.read_bytes())
    return doc


def _rewrite(file: Path, mutate: Callable[[dict[str, Any]], object]) -> None:
    doc = _doc(file)
    mutate(doc)
    file.write_text(json.dumps(doc, indent=2))


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".tmp-"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- round trips -------------------------------------------------------------------------


def test_add_mnemonic_then_unlock_gives_mnemonic_and_derived_key(store: Keystore) -> None:
    store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)

    secret = store.unlock("main", PASSWORD)

    assert secret.mnemonic == MNEMONIC
    assert secret.bip39_passphrase == ""
    assert secret.private_key == derive_private_key(MNEMONIC, GONKA_PATH)
    assert mnemonic_of(secret, "main") == MNEMONIC


def test_add_mnemonic_records_address_pubkey_and_path(store: Keystore, keys_dir: Path) -> None:
    expected = derive_private_key(MNEMONIC, GONKA_PATH).public_key.to_bytes()

    info = store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)

    assert info.name == "main"
    assert info.pubkey_hex == expected.hex()
    assert info.address == addresslib.address_from_pubkey(expected)
    assert info.address.startswith("gonka1")
    assert info.path == "m/44'/1200'/0'/0/0"
    assert info.source == "mnemonic"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info.created_at)
    assert info.file == keys_dir / "main.json"
    assert store.get("main") == info
    assert store.list() == ([info], [])
    assert store.exists("main")
    assert store.find_by_address(info.address) == info
    assert (
        store.find_by_address(addresslib.address_from_pubkey(OTHER_KEY.public_key.to_bytes()))
        is None
    )


def test_add_mnemonic_stores_the_normalised_mnemonic(store: Keystore) -> None:
    messy = "  " + "   ".join(MNEMONIC.upper().split()) + "\n"

    info = store.add_mnemonic("main", messy, PASSWORD, path=GONKA_PATH)

    secret = store.unlock("main", PASSWORD)
    assert secret.mnemonic == MNEMONIC
    assert info.pubkey_hex == derive_private_key(MNEMONIC, GONKA_PATH).public_key.to_hex()


def test_add_private_key_round_trip(store: Keystore) -> None:
    info = store.add_private_key("hot", HEX_KEY, PASSWORD)

    assert info.path is None
    assert info.source == "hex"
    assert info.pubkey_hex == HEX_KEY.public_key.to_hex()
    assert info.address == addresslib.address_from_pubkey(HEX_KEY.public_key.to_bytes())
    assert _doc(info.file)["path"] is None
    secret = store.unlock("hot", PASSWORD)
    assert secret.private_key == HEX_KEY
    assert secret.mnemonic is None
    with pytest.raises(SecretUnavailable, match="'hot'"):
        mnemonic_of(secret, "hot")


def test_bip39_passphrase_changes_the_address_and_is_kept(store: Keystore) -> None:
    plain = store.add_mnemonic("plain", MNEMONIC, PASSWORD, path=GONKA_PATH)
    salted = store.add_mnemonic(
        "salted", MNEMONIC, PASSWORD, path=GONKA_PATH, bip39_passphrase=BIP39_PASSPHRASE
    )

    assert salted.address != plain.address
    secret = store.unlock("salted", PASSWORD)
    assert secret.bip39_passphrase == BIP39_PASSPHRASE
    assert secret.mnemonic == MNEMONIC
    assert secret.private_key == derive_private_key(MNEMONIC, GONKA_PATH, BIP39_PASSPHRASE)


def test_coin_type_118_gives_the_cosmos_hub_key(store: Keystore) -> None:
    gonka = store.add_mnemonic("gonka", MNEMONIC, PASSWORD, path=GONKA_PATH)
    cosmos = store.add_mnemonic("cosmos", MNEMONIC, PASSWORD, path=COSMOS_PATH)

    assert cosmos.path == "m/44'/118'/0'/0/0"
    assert cosmos.address != gonka.address
    assert addresslib.decode(cosmos.address) == addresslib.decode(COSMOS_ADDRESS, "cosmos")
    assert store.unlock("cosmos", PASSWORD).private_key == derive_private_key(MNEMONIC, COSMOS_PATH)


def test_password_is_compared_in_nfc_form(store: Keystore) -> None:
    composed = "caf\u00e9 \u00fcber"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    store.add_private_key("hot", HEX_KEY, composed)

    assert store.unlock("hot", decomposed).private_key == HEX_KEY


def test_list_of_a_missing_directory_is_empty(store: Keystore, keys_dir: Path) -> None:
    assert store.list() == ([], [])
    assert not keys_dir.exists()


# -- at rest -----------------------------------------------------------------------------


def test_key_file_holds_no_secret_in_the_clear(store: Keystore) -> None:
    info = store.add_mnemonic(
        "main", MNEMONIC, PASSWORD, path=GONKA_PATH, bip39_passphrase=BIP39_PASSPHRASE
    )
    private_key = derive_private_key(MNEMONIC, GONKA_PATH, BIP39_PASSPHRASE)

    raw = info.file.read_bytes()

    # Four-letter words could occur by chance in the base64; longer ones cannot.
    for word in {w for w in MNEMONIC.split() if len(w) >= 5}:
        assert word.encode() not in raw.lower(), word
    assert MNEMONIC.encode() not in raw
    assert private_key.to_hex().encode() not in raw.lower()
    assert private_key.to_bytes() not in raw
    assert base64.b64encode(private_key.to_bytes()) not in raw
    assert PASSWORD.encode() not in raw
    assert BIP39_PASSPHRASE.encode() not in raw


def test_key_file_follows_the_documented_format(store: Keystore) -> None:
    info = store.add_private_key("hot", HEX_KEY, PASSWORD)

    doc = _doc(info.file)

    assert doc["version"] == 1
    assert doc["address"] == info.address
    assert doc["pubkey_hex"] == info.pubkey_hex
    assert doc["source"] == "hex"
    assert doc["created_at"] == info.created_at
    assert doc["kdf"]["name"] == "argon2id"
    assert len(base64.b64decode(doc["kdf"]["salt"], validate=True)) == 16
    assert doc["cipher"]["name"] == "aes-256-gcm"
    assert len(base64.b64decode(doc["cipher"]["nonce"], validate=True)) == 12
    base64.b64decode(doc["ciphertext"], validate=True)


def test_ciphertext_is_aes_gcm_under_argon2id_of_the_recorded_parameters(keys_dir: Path) -> None:
    info = Keystore(keys_dir, KdfParams(2048, 2, 2)).add_private_key("hot", HEX_KEY, PASSWORD)
    doc = _doc(info.file)
    kdf = doc["kdf"]

    key = Argon2id(
        salt=base64.b64decode(kdf["salt"]),
        length=32,
        iterations=kdf["iterations"],
        lanes=kdf["lanes"],
        memory_cost=kdf["memory_kib"],
    ).derive(PASSWORD.encode())
    plaintext = AESGCM(key).decrypt(
        base64.b64decode(doc["cipher"]["nonce"]),
        base64.b64decode(doc["ciphertext"]),
        keystore_module._associated_data(doc),
    )

    assert json.loads(plaintext)["private_key_hex"] == HEX_KEY.to_hex()
    with pytest.raises(InvalidTag):
        AESGCM(key).decrypt(
            base64.b64decode(doc["cipher"]["nonce"]), base64.b64decode(doc["ciphertext"]), b""
        )


def test_key_file_is_0600_in_a_0700_directory(store: Keystore, keys_dir: Path) -> None:
    info = store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)

    assert _mode(info.file) == 0o600
    assert _mode(keys_dir) == 0o700


def test_existing_open_directory_is_tightened_to_0700(store: Keystore, keys_dir: Path) -> None:
    keys_dir.mkdir()
    os.chmod(keys_dir, 0o755)  # noqa: S103 - an open directory is what this test starts from

    info = store.add_private_key("hot", HEX_KEY, PASSWORD)

    assert _mode(keys_dir) == 0o700
    assert _mode(info.file) == 0o600


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "keys"

    info = Keystore(deep).add_private_key("hot", HEX_KEY, PASSWORD)

    assert info.file.parent == deep
    assert _mode(deep) == 0o700


def test_salt_nonce_and_ciphertext_differ_between_keys(store: Keystore) -> None:
    first = _doc(store.add_private_key("one", HEX_KEY, PASSWORD).file)
    second = _doc(store.add_private_key("two", OTHER_KEY, PASSWORD).file)

    assert first["kdf"]["salt"] != second["kdf"]["salt"]
    assert first["cipher"]["nonce"] != second["cipher"]["nonce"]
    assert first["ciphertext"] != second["ciphertext"]


def test_same_key_re_added_gets_a_fresh_salt_and_nonce(store: Keystore) -> None:
    first = _doc(store.add_private_key("hot", HEX_KEY, PASSWORD).file)
    store.delete("hot")
    second = _doc(store.add_private_key("hot", HEX_KEY, PASSWORD).file)

    assert first["kdf"]["salt"] != second["kdf"]["salt"]
    assert first["cipher"]["nonce"] != second["cipher"]["nonce"]


def test_kdf_parameters_written_are_the_keystores(keys_dir: Path) -> None:
    info = Keystore(keys_dir, KdfParams(2048, 2, 2)).add_private_key("hot", HEX_KEY, PASSWORD)

    kdf = _doc(info.file)["kdf"]

    assert (kdf["memory_kib"], kdf["iterations"], kdf["lanes"]) == (2048, 2, 2)


def test_kdf_parameters_default_to_default_kdf(store: Keystore) -> None:
    assert store.kdf == keystore_module.DEFAULT_KDF == KdfParams(1024, 1, 1)

    info = store.add_private_key("hot", HEX_KEY, PASSWORD)

    kdf = _doc(info.file)["kdf"]
    assert (kdf["memory_kib"], kdf["iterations"], kdf["lanes"]) == (1024, 1, 1)


def test_the_real_default_cost_is_written_by_gonka_wallet_import(tmp_path: Path) -> None:
    """The one test that pays the real cost: a fresh process, outside the `light_kdf` fixture,
    creates a key through the command line and the file records Argon2id, 64 MiB, 3 passes."""
    home = tmp_path / "real-cost-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONKA_")}
    env.update({"GONKA_HOME": str(home), "GONKA_KEYRING_PASSWORD": PASSWORD, "NO_COLOR": "1"})
    proc = subprocess.run(
        [sys.executable, "-m", "gonka_cli", "wallet", "import", "hot", "--hex"],
        input=HEX_KEY.to_hex(),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr

    kdf = _doc(home / "keys" / "hot.json")["kdf"]

    assert {k: v for k, v in kdf.items() if k != "salt"} == {
        "name": "argon2id",
        "memory_kib": 64 * 1024,
        "iterations": 3,
        "lanes": 4,
    }
    assert len(base64.b64decode(kdf["salt"])) == 16


def test_wrong_password_names_the_key_and_a_damaged_file_as_the_other_cause(
    store: Keystore,
) -> None:
    store.add_private_key("miner", HEX_KEY, PASSWORD)

    with pytest.raises(WrongPassword) as caught:
        store.unlock("miner", "a typo")

    assert str(caught.value) == "wrong password for key 'miner' (or the key file is damaged)"


def test_file_written_with_other_parameters_unlocks_under_other_defaults(keys_dir: Path) -> None:
    Keystore(keys_dir, KdfParams(2048, 2, 2)).add_private_key("hot", HEX_KEY, PASSWORD)

    reader = Keystore(keys_dir)

    assert reader.kdf != KdfParams(2048, 2, 2)
    assert reader.unlock("hot", PASSWORD).private_key == HEX_KEY
    assert Keystore(keys_dir, KdfParams(4096, 1, 4)).unlock("hot", PASSWORD).private_key == HEX_KEY


def test_derive_matches_rfc9106_argon2id_without_secret_and_ad() -> None:
    vector = load_vectors("keystore_vectors.json")["kdf_primitive_vectors"][
        "argon2id_rfc9106_section5_3"
    ]
    note = vector["argon2_cffi_note"]
    (expected,) = re.findall(r"tag without secret/ad = ([0-9a-f]{64})", note)
    assert expected == "03aab965c12001c9d7d0d2de33192c0494b684bb148196d73c1df1acaf6d0c2e"
    password = bytes.fromhex(vector["password_hex"]).decode("ascii")
    assert password == "\x01" * 32

    tag = keystore_module._derive(
        password,
        bytes.fromhex(vector["salt_hex"]),
        KdfParams(vector["m_kib"], vector["t"], vector["p"]),
    )

    assert tag.hex() == expected


# -- wrong password ----------------------------------------------------------------------


def test_wrong_password_raises_and_leaves_the_file_as_it_was(
    store: Keystore, keys_dir: Path
) -> None:
    info = store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)
    before = info.file.read_bytes()
    mtime = info.file.stat().st_mtime_ns
    listing = sorted(os.listdir(keys_dir))
    wrong = "incorrect horse battery"

    with pytest.raises(WrongPassword) as caught:
        store.unlock("main", wrong)

    message = str(caught.value)
    assert "'main'" in message
    assert wrong not in message
    assert PASSWORD not in message
    assert info.file.read_bytes() == before
    assert info.file.stat().st_mtime_ns == mtime
    assert sorted(os.listdir(keys_dir)) == listing
    assert store.unlock("main", PASSWORD).mnemonic == MNEMONIC


def test_empty_password_is_wrong_for_a_key_with_a_password(store: Keystore) -> None:
    store.add_private_key("hot", HEX_KEY, PASSWORD)

    with pytest.raises(WrongPassword):
        store.unlock("hot", "")


# -- tampering ---------------------------------------------------------------------------

OTHER_ADDRESS = addresslib.address_from_pubkey(OTHER_KEY.public_key.to_bytes())
OTHER_SALT = base64.b64encode(b"\x07" * 16).decode()
OTHER_NONCE = base64.b64encode(b"\x07" * 12).decode()

TAMPERINGS = [
    pytest.param(lambda d: d.update(address=OTHER_ADDRESS), id="address"),
    pytest.param(lambda d: d.update(path="m/44'/118'/0'/0/0"), id="path"),
    pytest.param(lambda d: d.update(path=None), id="path-null"),
    pytest.param(lambda d: d.update(pubkey_hex=OTHER_KEY.public_key.to_hex()), id="pubkey"),
    pytest.param(lambda d: d.update(source="hex"), id="source"),
    pytest.param(lambda d: d.update(created_at="2020-01-01T00:00:00Z"), id="created-at"),
    pytest.param(lambda d: d["kdf"].update(iterations=2), id="kdf-iterations"),
    pytest.param(lambda d: d["kdf"].update(memory_kib=2048), id="kdf-memory"),
    pytest.param(lambda d: d["kdf"].update(lanes=2), id="kdf-lanes"),
    pytest.param(lambda d: d["kdf"].update(salt=OTHER_SALT), id="kdf-salt"),
    pytest.param(lambda d: d["cipher"].update(nonce=OTHER_NONCE), id="cipher-nonce"),
    pytest.param(lambda d: d.update(extra="field"), id="added-field"),
]


@pytest.mark.parametrize("mutate", TAMPERINGS)
def test_tampered_header_never_unlocks(store: Keystore, mutate: Callable[[Any], object]) -> None:
    info = store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)
    _rewrite(info.file, mutate)

    with pytest.raises((WrongPassword, KeystoreCorrupt)):
        store.unlock("main", PASSWORD)


@pytest.mark.parametrize("position", [0, 20, -1], ids=["first", "middle", "tag"])
def test_flipped_ciphertext_byte_is_a_wrong_password(store: Keystore, position: int) -> None:
    info = store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)

    def flip(doc: dict[str, Any]) -> None:
        data = bytearray(base64.b64decode(doc["ciphertext"]))
        data[position] ^= 0x01
        doc["ciphertext"] = base64.b64encode(bytes(data)).decode()

    _rewrite(info.file, flip)

    with pytest.raises(WrongPassword):
        store.unlock("main", PASSWORD)


def test_reformatted_file_still_unlocks(store: Keystore) -> None:
    info = store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)
    doc = _doc(info.file)
    info.file.write_text(json.dumps(dict(reversed(list(doc.items()))), separators=(",", ":")))

    assert store.unlock("main", PASSWORD).private_key == derive_private_key(MNEMONIC, GONKA_PATH)


# -- corrupt files -----------------------------------------------------------------------


def _edit(mutate: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    def transform(raw: bytes) -> bytes:
        doc = json.loads(raw)
        mutate(doc)
        return json.dumps(doc, indent=2).encode()

    return transform


#: Damage that reading the public fields already notices (get, list).
STRUCTURAL = [
    pytest.param(lambda raw: raw[: len(raw) // 2], id="truncated"),
    pytest.param(lambda raw: b"", id="empty"),
    pytest.param(lambda raw: b"this is not a key file\n", id="not-json"),
    pytest.param(lambda raw: b"\x00" * 64 + raw[64:], id="zeroed-start"),
    pytest.param(lambda raw: bytes(range(256)), id="binary"),
    pytest.param(lambda raw: b"[1, 2, 3]", id="json-array"),
    pytest.param(lambda raw: b'"gonka"', id="json-string"),
    pytest.param(lambda raw: b"null", id="json-null"),
    pytest.param(_edit(lambda d: d.pop("version")), id="no-version"),
    pytest.param(_edit(lambda d: d.update(version="1")), id="version-string"),
    pytest.param(_edit(lambda d: d.update(version=0)), id="version-0"),
    pytest.param(_edit(lambda d: d.pop("address")), id="no-address"),
    pytest.param(_edit(lambda d: d.pop("pubkey_hex")), id="no-pubkey"),
    pytest.param(_edit(lambda d: d.pop("kdf")), id="no-kdf"),
    pytest.param(_edit(lambda d: d.pop("cipher")), id="no-cipher"),
    pytest.param(_edit(lambda d: d.pop("ciphertext")), id="no-ciphertext"),
    pytest.param(_edit(lambda d: d.update(kdf="argon2id")), id="kdf-not-object"),
    pytest.param(_edit(lambda d: d.update(address=None)), id="address-null"),
]

#: Damage that only shows once the key is decrypted.
SECRET_FIELDS = [
    pytest.param(_edit(lambda d: d.update(ciphertext="not base64!")), id="ciphertext-base64"),
    pytest.param(_edit(lambda d: d["kdf"].update(salt="%%%")), id="salt-base64"),
    pytest.param(_edit(lambda d: d["cipher"].update(nonce="%%%")), id="nonce-base64"),
    pytest.param(_edit(lambda d: d["kdf"].update(salt=12345)), id="salt-number"),
    pytest.param(_edit(lambda d: d["kdf"].pop("salt")), id="no-salt"),
    pytest.param(_edit(lambda d: d["cipher"].pop("nonce")), id="no-nonce"),
    pytest.param(_edit(lambda d: d["kdf"].pop("memory_kib")), id="no-memory"),
    pytest.param(_edit(lambda d: d["cipher"].update(nonce=OTHER_SALT)), id="nonce-16-bytes"),
    pytest.param(_edit(lambda d: d["kdf"].update(salt="AAAA")), id="salt-3-bytes"),
    pytest.param(_edit(lambda d: d["kdf"].update(memory_kib=2**40)), id="memory-2**40"),
    pytest.param(_edit(lambda d: d["kdf"].update(memory_kib=-1)), id="memory-negative"),
    pytest.param(_edit(lambda d: d["kdf"].update(memory_kib="lots")), id="memory-text"),
    pytest.param(_edit(lambda d: d["kdf"].update(iterations=0)), id="iterations-0"),
    pytest.param(_edit(lambda d: d["kdf"].update(iterations=65)), id="iterations-65"),
    pytest.param(_edit(lambda d: d["kdf"].update(lanes=0)), id="lanes-0"),
    pytest.param(_edit(lambda d: d["kdf"].update(lanes=65)), id="lanes-65"),
    pytest.param(_edit(lambda d: d["kdf"].update(name="scrypt")), id="kdf-scrypt"),
    pytest.param(_edit(lambda d: d["cipher"].update(name="chacha20")), id="cipher-chacha20"),
]


def _assert_names_file_and_remedy(message: str, file: Path) -> None:
    assert str(file) in message
    assert "restore it from a backup" in message
    assert "re-import" in message


@pytest.mark.parametrize("damage", STRUCTURAL + SECRET_FIELDS)
def test_corrupt_file_fails_unlock_with_a_remedy(
    store: Keystore, damage: Callable[[bytes], bytes]
) -> None:
    info = store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)
    info.file.write_bytes(damage(info.file.read_bytes()))

    with pytest.raises(KeystoreCorrupt) as caught:
        store.unlock("main", PASSWORD)

    _assert_names_file_and_remedy(str(caught.value), info.file)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("damage", STRUCTURAL)
def test_corrupt_file_fails_get_and_is_listed_as_unreadable(
    store: Keystore, damage: Callable[[bytes], bytes]
) -> None:
    info = store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)
    info.file.write_bytes(damage(info.file.read_bytes()))

    with pytest.raises(KeystoreCorrupt) as caught:
        store.get("main")

    _assert_names_file_and_remedy(str(caught.value), info.file)
    keys, unreadable = store.list()
    assert keys == []
    assert [(u.name, u.file) for u in unreadable] == [("main", info.file)]
    _assert_names_file_and_remedy(unreadable[0].error, info.file)


def test_newer_format_version_says_to_upgrade(store: Keystore) -> None:
    info = store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)
    _rewrite(info.file, lambda d: d.update(version=2))

    for call in (lambda: store.get("main"), lambda: store.unlock("main", PASSWORD)):
        with pytest.raises(KeystoreCorrupt) as caught:
            call()
        assert str(info.file) in str(caught.value)
        assert "upgrade" in str(caught.value)
    (unreadable,) = store.list()[1]
    assert unreadable.name == "main"
    assert "upgrade" in unreadable.error


def test_list_returns_good_keys_and_reports_bad_files(store: Keystore, keys_dir: Path) -> None:
    alpha = store.add_mnemonic("alpha", MNEMONIC, PASSWORD, path=GONKA_PATH)
    zulu = store.add_private_key("zulu", HEX_KEY, PASSWORD)
    good = alpha.file.read_bytes()
    bad = {
        "b-truncated": good[: len(good) // 2],
        "c-empty": b"",
        "d-not-json": b"hello\n",
        "e-array": b"[]",
        "f-missing": _edit(lambda d: d.pop("ciphertext"))(good),
        "g-newer": _edit(lambda d: d.update(version=2))(good),
    }
    for name, data in bad.items():
        (keys_dir / f"{name}.json").write_bytes(data)
        os.chmod(keys_dir / f"{name}.json", 0o600)

    keys, unreadable = store.list()

    assert keys == [alpha, zulu]
    assert [u.name for u in unreadable] == sorted(bad)
    for entry in unreadable:
        assert entry.file == keys_dir / f"{entry.name}.json"
        assert str(entry.file) in entry.error
        assert entry.to_dict()["error"] == entry.error
    assert store.find_by_address(zulu.address) == zulu
    added = store.add_private_key("new", OTHER_KEY, PASSWORD)
    assert store.unlock("new", PASSWORD).private_key == OTHER_KEY
    assert [k.name for k in store.list()[0]] == ["alpha", "new", "zulu"]
    assert added.name == "new"


def test_list_survives_deeply_nested_json(store: Keystore, keys_dir: Path) -> None:
    good = store.add_private_key("good", HEX_KEY, PASSWORD)
    nested = keys_dir / "nested.json"
    nested.write_bytes(b"[" * 100_000)

    keys, unreadable = store.list()

    assert keys == [good]
    assert [u.name for u in unreadable] == ["nested"]
    with pytest.raises(KeystoreCorrupt):
        store.unlock("nested", PASSWORD)


def test_group_readable_file_still_reads_but_warns(
    store: Keystore, caplog: pytest.LogCaptureFixture
) -> None:
    info = store.add_private_key("hot", HEX_KEY, PASSWORD)
    os.chmod(info.file, 0o644)

    with caplog.at_level(logging.WARNING, logger="gonka_cli.wallet.keystore"):
        assert store.get("hot") == info

    assert any(
        str(info.file) in r.getMessage() and "chmod 600" in r.getMessage() for r in caplog.records
    )


# -- names -------------------------------------------------------------------------------

INVALID_NAMES = [
    "",
    "../x",
    "a/b",
    ".hidden",
    "-dash",
    "_under",
    "k" * 65,
    "my key",
    " key",
    "key ",
    "key\n",
    "key\x00",
    "cl\u00e9",
    "a\\b",
]


@pytest.mark.parametrize("name", INVALID_NAMES, ids=repr)
def test_invalid_names_are_refused_everywhere(store: Keystore, tmp_path: Path, name: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.add_mnemonic(name, MNEMONIC, PASSWORD, path=GONKA_PATH),
        lambda: store.add_private_key(name, HEX_KEY, PASSWORD),
        lambda: store.check_new(name),
        lambda: store.get(name),
        lambda: store.unlock(name, PASSWORD),
        lambda: store.delete(name),
        lambda: store.exists(name),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyName, match="invalid key name"):
            call()

    created = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert created == []


@pytest.mark.parametrize("name", ["a", "0", "k" * 64, "my-key_1.backup", "Node.A"])
def test_valid_names_are_accepted(store: Keystore, name: str) -> None:
    info = store.add_private_key(name, HEX_KEY, PASSWORD)

    assert info.file.name == f"{name}.json"
    assert store.get(name) == info
    assert store.unlock(name, PASSWORD).private_key == HEX_KEY


def test_duplicate_name_raises_and_keeps_the_first_key(store: Keystore) -> None:
    first = store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)
    before = first.file.read_bytes()

    with pytest.raises(KeyExists, match="'main'"):
        store.add_private_key("main", HEX_KEY, PASSWORD)
    with pytest.raises(KeyExists, match="'main'"):
        store.add_mnemonic("main", MNEMONIC, "another password", path=COSMOS_PATH)
    with pytest.raises(KeyExists, match="'main'"):
        store.check_new("main")

    assert first.file.read_bytes() == before
    assert store.get("main") == first
    assert store.unlock("main", PASSWORD).private_key == derive_private_key(MNEMONIC, GONKA_PATH)
    assert [k.name for k in store.list()[0]] == ["main"]


def test_check_new_accepts_a_free_name(store: Keystore) -> None:
    store.add_private_key("taken", HEX_KEY, PASSWORD)

    store.check_new("free")

    assert not store.exists("free")


def test_same_key_under_another_name_names_the_first(store: Keystore, keys_dir: Path) -> None:
    first = store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)
    same_key = derive_private_key(MNEMONIC, GONKA_PATH)

    with pytest.raises(KeyExists) as caught:
        store.add_private_key("copy", same_key, PASSWORD)
    assert "'main'" in str(caught.value)
    assert first.address in str(caught.value)
    with pytest.raises(KeyExists, match="'main'"):
        store.add_mnemonic("again", MNEMONIC, "other password", path=GONKA_PATH)

    assert sorted(p.name for p in keys_dir.iterdir()) == ["main.json"]


def test_unknown_name_raises_key_not_found(store: Keystore) -> None:
    store.add_private_key("known", HEX_KEY, PASSWORD)

    for call in (
        lambda: store.get("ghost"),
        lambda: store.unlock("ghost", PASSWORD),
        lambda: store.delete("ghost"),
    ):
        with pytest.raises(KeyNotFound, match="'ghost'"):
            call()
    assert not store.exists("ghost")


def test_unknown_name_in_a_missing_directory_raises_key_not_found(store: Keystore) -> None:
    with pytest.raises(KeyNotFound):
        store.unlock("ghost", PASSWORD)


# -- delete ------------------------------------------------------------------------------


def test_delete_removes_the_file_and_the_key(store: Keystore, keys_dir: Path) -> None:
    keep = store.add_private_key("keep", HEX_KEY, PASSWORD)
    gone = store.add_private_key("gone", OTHER_KEY, PASSWORD)

    store.delete("gone")

    assert not gone.file.exists()
    assert not store.exists("gone")
    assert store.list() == ([keep], [])
    assert sorted(p.name for p in keys_dir.iterdir()) == ["keep.json"]
    with pytest.raises(KeyNotFound):
        store.delete("gone")
    assert store.add_private_key("gone", OTHER_KEY, PASSWORD).address == gone.address


# -- atomic writes -----------------------------------------------------------------------


def test_no_temporary_files_are_left_after_adds(store: Keystore, keys_dir: Path) -> None:
    store.add_mnemonic("main", MNEMONIC, PASSWORD, path=GONKA_PATH)
    store.add_private_key("hot", HEX_KEY, PASSWORD)
    assert _leftovers(keys_dir) == []

    with pytest.raises(KeyExists):
        store.add_private_key("main", OTHER_KEY, PASSWORD)
    with pytest.raises(KeyExists):
        store.add_private_key("twin", HEX_KEY, PASSWORD)
    with pytest.raises(InvalidKeyName):
        store.add_private_key("bad name", OTHER_KEY, PASSWORD)

    assert _leftovers(keys_dir) == []
    assert sorted(p.name for p in keys_dir.iterdir()) == ["hot.json", "main.json"]


def _writer(*args: object) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, str(WRITER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _json_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def _assert_every_key_is_whole(directory: Path) -> int:
    store = Keystore(directory)
    keys, unreadable = store.list()
    assert unreadable == []
    assert [k.file for k in keys] == _json_files(directory)
    for info in keys:
        secret = store.unlock(info.name, PASSWORD)
        assert secret.private_key == key_for(info.name)
        assert info.pubkey_hex == secret.private_key.public_key.to_hex()
        assert _mode(info.file) == 0o600
    return len(keys)


def test_sigkill_while_adding_leaves_only_whole_keys(keys_dir: Path) -> None:
    count = 40
    # Kill once a temporary file shows (mid-write, when the poll catches it) and after
    # 1, 2, 3 and 5 more keys have landed.
    rounds = [
        ("tmp", 3),
        ("keys", 1),
        ("tmp", 3),
        ("keys", 2),
        ("keys", 3),
        ("tmp", 3),
        ("keys", 5),
    ]
    for trigger, more in rounds:
        before = len(_json_files(keys_dir))
        stale = set(_leftovers(keys_dir)) if keys_dir.is_dir() else set()
        child = _writer("many", keys_dir, count, PASSWORD)
        deadline = time.monotonic() + 20
        while child.poll() is None and time.monotonic() < deadline:
            landed = len(_json_files(keys_dir)) - before
            if landed >= more:
                break
            if trigger == "tmp" and keys_dir.is_dir() and set(_leftovers(keys_dir)) - stale:
                break
            time.sleep(0.0002)
        child.send_signal(signal.SIGKILL)
        _, stderr = child.communicate(timeout=30)
        assert child.returncode in (-signal.SIGKILL, 0), stderr
        _assert_every_key_is_whole(keys_dir)

    assert 0 < len(_json_files(keys_dir)) < count

    finisher = _writer("many", keys_dir, count, PASSWORD)
    stdout, stderr = finisher.communicate(timeout=60)

    assert finisher.returncode == 0, stderr
    assert stdout.strip() == "done"
    assert _assert_every_key_is_whole(keys_dir) == count
    assert [p.stem for p in _json_files(keys_dir)] == [f"k{i:04d}" for i in range(count)]


def test_two_processes_adding_one_name_exactly_one_wins(tmp_path: Path, keys_dir: Path) -> None:
    for round_ in range(2):
        name = f"shared-{round_}"
        go = tmp_path / f"go-{round_}"
        children = {seed: _writer("one", keys_dir, name, seed, PASSWORD, go) for seed in ("l", "r")}
        for child in children.values():
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", child.communicate()[1]
        go.touch()
        outcomes = {}
        for seed, child in children.items():
            stdout, stderr = child.communicate(timeout=60)
            outcomes[seed] = (child.returncode, stdout.strip())
            assert child.returncode in (0, 3), stderr

        assert sorted(outcomes.values()) == [(0, "ok"), (3, "exists")]
        (winner,) = [seed for seed, (rc, _) in outcomes.items() if rc == 0]
        assert Keystore(keys_dir).unlock(name, PASSWORD).private_key == key_for(winner)
        assert _leftovers(keys_dir) == []


def _race(store: Keystore, name: str, contenders: list[PrivateKey]) -> dict[int, str]:
    """Add each contender as `name` from its own thread, all released at once."""
    barrier = threading.Barrier(len(contenders))
    results: dict[int, str] = {}

    def add(i: int) -> None:
        barrier.wait()
        try:
            store.add_private_key(name, contenders[i], PASSWORD)
        except KeyExists:
            results[i] = "exists"
        else:
            results[i] = "ok"

    threads = [threading.Thread(target=add, args=(i,)) for i in range(len(contenders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_threads_adding_one_name_exactly_one_wins(keys_dir: Path) -> None:
    store = Keystore(keys_dir)
    for round_ in range(10):
        name = f"race-{round_}"
        contenders = [key_for(f"{name}/{i}") for i in range(2)]

        results = _race(store, name, contenders)

        assert sorted(results.values()) == ["exists", "ok"]
        (winner,) = [i for i, outcome in results.items() if outcome == "ok"]
        assert store.unlock(name, PASSWORD).private_key == contenders[winner]
        assert _leftovers(keys_dir) == []


# -- no secrets in reprs -----------------------------------------------------------------


def test_secret_repr_shows_no_secret(store: Keystore) -> None:
    store.add_mnemonic(
        "main", MNEMONIC, PASSWORD, path=GONKA_PATH, bip39_passphrase=BIP39_PASSPHRASE
    )
    secret = store.unlock("main", PASSWORD)
    private_key = secret.private_key

    for shown in (repr(secret), str(secret), f"{secret}", repr([secret]), repr({"s": secret})):
        for word in set(MNEMONIC.split()):
            assert word not in shown
        assert BIP39_PASSPHRASE not in shown
        assert private_key.to_hex() not in shown
        assert private_key.to_hex().upper() not in shown
        assert repr(private_key.to_bytes()) not in shown
        assert str(int.from_bytes(private_key.to_bytes(), "big")) not in shown


def test_private_key_repr_shows_no_secret() -> None:
    for shown in (repr(HEX_KEY), str(HEX_KEY), f"{HEX_KEY}", repr([HEX_KEY])):
        assert HEX_KEY.to_hex() not in shown
        assert "11" * 16 not in shown
        assert repr(HEX_KEY.to_bytes()) not in shown
        assert str(int.from_bytes(HEX_KEY.to_bytes(), "big")) not in shown
