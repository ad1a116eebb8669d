"""BIP39 mnemonics, BIP32 derivation and Gonka's BIP44 path, against public vectors."""

from __future__ import annotations

import base64
import itertools
import re
from typing import Any

import pytest

from gonka_cli.crypto.address import address_from_pubkey, decode
from gonka_cli.crypto.hd import (
    COSMOS_COIN_TYPE,
    GONKA_COIN_TYPE,
    HARDENED,
    ExtendedPrivateKey,
    ExtendedPublicKey,
    HDPath,
    derive_private_key,
    generate_mnemonic,
    mnemonic_from_entropy,
    mnemonic_to_seed,
    parse_extended_key,
    validate_mnemonic,
)
from gonka_cli.errors import InputError, InvalidMnemonic
from tests.conftest import MNEMONIC, load_vectors

BIP39 = load_vectors("bip39_vectors.json")
BIP32 = load_vectors("bip32_vectors.json")
COSMOS = load_vectors("cosmos_vectors.json")

GONKA_PATH = "m/44'/1200'/0'/0/0"


def _bip39_params() -> list[Any]:
    return [
        pytest.param(v, id=f"{len(v['mnemonic'].split())}w-{v['entropy_hex'][:8]}")
        for v in BIP39["vectors"]
    ]


def _bip32_chain_params() -> list[Any]:
    return [
        pytest.param(vector["seed_hex"], chain, id=f"v{vector['vector']}-{chain['path']}")
        for vector in BIP32["vectors"]
        for chain in vector["chains"]
    ]


def _bip32_public_step_params() -> list[Any]:
    """Every (parent, child) pair of a chain whose last step is non-hardened."""
    params = []
    for vector in BIP32["vectors"]:
        chains = vector["chains"]
        for parent, child in itertools.pairwise(chains):
            index = HDPath.parse(child["path"]).indices[-1]
            if index < HARDENED:
                params.append(
                    pytest.param(parent, child, id=f"v{vector['vector']}-{child['path']}")
                )
    return params


def _first_word(vector: dict[str, Any]) -> str:
    return str(vector["mnemonic"].split()[0])


# --- BIP39 ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _bip39_params())
def test_mnemonic_from_entropy_matches_vector(vector: dict[str, Any]) -> None:
    assert mnemonic_from_entropy(bytes.fromhex(vector["entropy_hex"])) == vector["mnemonic"]


@pytest.mark.parametrize("vector", _bip39_params())
def test_vector_mnemonic_validates_to_itself(vector: dict[str, Any]) -> None:
    assert validate_mnemonic(vector["mnemonic"]) == vector["mnemonic"]


@pytest.mark.parametrize("vector", _bip39_params())
def test_mnemonic_to_seed_with_passphrase_matches_vector(vector: dict[str, Any]) -> None:
    seed = mnemonic_to_seed(vector["mnemonic"], BIP39["passphrase"])
    assert seed.hex() == vector["seed_hex"]


@pytest.mark.parametrize("vector", _bip39_params())
def test_seed_to_bip32_master_xprv_matches_vector(vector: dict[str, Any]) -> None:
    master = ExtendedPrivateKey.from_seed(bytes.fromhex(vector["seed_hex"]))
    assert master.to_string() == vector["bip32_master_xprv"]
    assert ExtendedPrivateKey.from_string(vector["bip32_master_xprv"]) == master


def test_mnemonic_to_seed_normalises_case_and_whitespace() -> None:
    vector = BIP39["vectors"][0]
    messy = "  " + "\t ".join(w.upper() for w in vector["mnemonic"].split()) + "\n"
    assert mnemonic_to_seed(messy, BIP39["passphrase"]).hex() == vector["seed_hex"]


# --- validate_mnemonic ------------------------------------------------------------------


@pytest.mark.parametrize(
    "count",
    [pytest.param(0, id="empty"), 11, 13, 23, 25],
)
def test_validate_mnemonic_rejects_wrong_word_count(count: int) -> None:
    words = (MNEMONIC.split() * 2)[:count]
    with pytest.raises(InvalidMnemonic, match=rf"\b{count} words"):
        validate_mnemonic(" ".join(words))


@pytest.mark.parametrize(
    ("positions", "bad_word"),
    [
        pytest.param((3,), "theorry", id="one-misspelt-word"),
        pytest.param((1,), "ecomony", id="first-word"),
        pytest.param((24,), "stoner", id="last-word"),
        pytest.param((2, 7), "wazp", id="two-unknown-words"),
    ],
)
def test_validate_mnemonic_names_unknown_word_by_position_only(
    positions: tuple[int, ...], bad_word: str
) -> None:
    words = MNEMONIC.split()
    for position in positions:
        words[position - 1] = bad_word
    with pytest.raises(InvalidMnemonic) as excinfo:
        validate_mnemonic(" ".join(words))
    message = str(excinfo.value)
    assert re.search(rf"\bwords? {', '.join(map(str, positions))}\b", message)
    assert "not in the BIP39" in message
    assert bad_word not in message.lower()
    assert not set(re.findall(r"[a-z]+", message.lower())) & set(MNEMONIC.split())


@pytest.mark.parametrize(
    "phrase",
    [
        pytest.param("abandon " * 11 + "abandon", id="abandon-x12"),
        pytest.param(" ".join(reversed(MNEMONIC.split())), id="reversed-24"),
        pytest.param(
            BIP39["vectors"][0]["mnemonic"].replace("about", "above"), id="last-word-swapped"
        ),
    ],
)
def test_validate_mnemonic_rejects_bad_checksum(phrase: str) -> None:
    with pytest.raises(InvalidMnemonic, match="bad checksum"):
        validate_mnemonic(phrase)


def test_validate_mnemonic_accepts_extra_whitespace_and_upper_case() -> None:
    messy = "\n  " + "   ".join(w.upper() for w in MNEMONIC.split()) + " \t"
    assert validate_mnemonic(messy) == MNEMONIC
    title = " ".join(w.title() for w in MNEMONIC.split())
    assert validate_mnemonic(title) == MNEMONIC


@pytest.mark.parametrize("count", [12, 15, 18, 21, 24])
def test_generate_mnemonic_gives_valid_phrase(count: int) -> None:
    phrase = generate_mnemonic(count)
    assert len(phrase.split()) == count
    assert validate_mnemonic(phrase) == phrase


def test_generate_mnemonic_defaults_to_24_words_and_is_random() -> None:
    first, second = generate_mnemonic(), generate_mnemonic()
    assert len(first.split()) == 24
    assert validate_mnemonic(first) == first
    assert first != second


@pytest.mark.parametrize("count", [0, 11, 13, 25])
def test_generate_mnemonic_rejects_unsupported_length(count: int) -> None:
    with pytest.raises(InputError, match=str(count)):
        generate_mnemonic(count)


# --- BIP32 ------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed_hex", "chain"), _bip32_chain_params())
def test_bip32_derivation_matches_vector(seed_hex: str, chain: dict[str, str]) -> None:
    master = ExtendedPrivateKey.from_seed(bytes.fromhex(seed_hex))
    node = master.derive(HDPath.parse(chain["path"]))
    assert node.to_string() == chain["xprv"]
    assert node.public().to_string() == chain["xpub"]


@pytest.mark.parametrize(("seed_hex", "chain"), _bip32_chain_params())
def test_bip32_vector_keys_parse_and_reserialise(seed_hex: str, chain: dict[str, str]) -> None:
    xprv = parse_extended_key(chain["xprv"])
    xpub = parse_extended_key(chain["xpub"])
    assert isinstance(xprv, ExtendedPrivateKey)
    assert isinstance(xpub, ExtendedPublicKey)
    assert xprv.to_string() == chain["xprv"]
    assert xpub.to_string() == chain["xpub"]
    assert xprv.public() == xpub
    assert xprv.depth == xpub.depth == len(HDPath.parse(chain["path"]).indices)


@pytest.mark.parametrize(("parent", "child"), _bip32_public_step_params())
def test_bip32_public_derivation_matches_next_xpub(
    parent: dict[str, str], child: dict[str, str]
) -> None:
    parent_path = HDPath.parse(parent["path"])
    child_path = HDPath.parse(child["path"])
    assert child_path.indices[:-1] == parent_path.indices
    xpub = parse_extended_key(parent["xpub"])
    assert isinstance(xpub, ExtendedPublicKey)
    assert xpub.child(child_path.indices[-1]).to_string() == child["xpub"]


def test_public_key_cannot_derive_hardened_child() -> None:
    xpub = parse_extended_key(BIP32["vectors"][0]["chains"][0]["xpub"])
    assert isinstance(xpub, ExtendedPublicKey)
    with pytest.raises(InputError, match="hardened"):
        xpub.child(HARDENED)


def test_xprv_from_string_refuses_an_xpub() -> None:
    with pytest.raises(InputError, match="xpub"):
        ExtendedPrivateKey.from_string(BIP32["vectors"][0]["chains"][0]["xpub"])


_REASON_PATTERNS = [
    ("pubkey version / prvkey mismatch", r"02/03|compressed"),
    ("prvkey version / pubkey mismatch", r"0x00"),
    ("invalid pubkey prefix", r"02/03|compressed"),
    ("invalid prvkey prefix", r"0x00"),
    ("zero depth with non-zero parent fingerprint", r"zero depth.*parent fingerprint"),
    ("zero depth with non-zero index", r"zero depth.*(child )?index"),
    ("unknown extended key version", r"unknown version"),
    ("private key 0 not in 1..n-1", r"not in 1\.\.n-1"),
    ("private key n not in 1..n-1", r"not in 1\.\.n-1"),
    ("invalid pubkey 02", r"not on secp256k1"),
    ("invalid checksum", r"checksum"),
]


def _reason_pattern(reason: str) -> str:
    for prefix, pattern in _REASON_PATTERNS:
        if reason.startswith(prefix):
            return pattern
    raise AssertionError(f"no expected message for reason {reason!r}")


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(e, id=f"{i:02d}-{e['reason'][:40]}")
        for i, e in enumerate(BIP32["invalid_extended_keys"])
    ],
)
def test_invalid_extended_key_is_rejected(entry: dict[str, str]) -> None:
    with pytest.raises(InputError, match=_reason_pattern(entry["reason"])):
        parse_extended_key(entry["key"])


def test_extended_private_key_repr_hides_the_secret() -> None:
    chain = BIP32["vectors"][0]["chains"][1]
    node = ExtendedPrivateKey.from_string(chain["xprv"])
    for text in (repr(node), str(node)):
        assert node.key.hex() not in text.lower()
        assert chain["xprv"] not in text


# --- Cosmos mnemonic vectors ------------------------------------------------------------


@pytest.mark.parametrize(
    "vector",
    [
        pytest.param(v, id=f"{v['hrp']}-{v['path']}-{_first_word(v)}")
        for v in COSMOS["mnemonic_to_address"]
    ],
)
def test_mnemonic_to_address_matches_vector(vector: dict[str, Any]) -> None:
    key = derive_private_key(
        vector["mnemonic"], HDPath.parse(vector["path"]), vector["bip39_passphrase"]
    )
    pubkey = key.public_key.to_bytes()
    if "pubkey_hex" in vector:
        assert pubkey.hex() == vector["pubkey_hex"]
    if "pubkey_base64" in vector:
        assert base64.b64encode(pubkey).decode() == vector["pubkey_base64"]
    assert address_from_pubkey(pubkey, vector["hrp"]) == vector["address"]


@pytest.mark.parametrize(
    "vector",
    [pytest.param(v, id=f"{v['path']}-{_first_word(v)}") for v in COSMOS["mnemonic_to_privkey"]],
)
def test_mnemonic_to_privkey_matches_vector(vector: dict[str, Any]) -> None:
    key = derive_private_key(
        vector["mnemonic"], HDPath.parse(vector["path"]), vector["bip39_passphrase"]
    )
    assert key.to_hex() == vector["privkey_hex"]


def test_derive_private_key_validates_the_mnemonic() -> None:
    with pytest.raises(InvalidMnemonic, match="bad checksum"):
        derive_private_key("abandon " * 11 + "abandon", HDPath.bip44())


# --- Gonka's path -----------------------------------------------------------------------


def test_default_path_is_gonka_bip44() -> None:
    path = HDPath.bip44()
    assert GONKA_COIN_TYPE == 1200
    assert str(path) == GONKA_PATH
    assert path == HDPath.parse(GONKA_PATH)
    assert path.indices == (44 + HARDENED, 1200 + HARDENED, HARDENED, 0, 0)


def test_bip44_takes_coin_type_account_and_index() -> None:
    path = HDPath.bip44(coin_type=COSMOS_COIN_TYPE, account=1, index=4)
    assert str(path) == "m/44'/118'/1'/0/4"


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"coin_type": -1}, id="negative-coin-type"),
        pytest.param({"account": HARDENED}, id="account-2^31"),
        pytest.param({"index": -1}, id="negative-index"),
        pytest.param({"index": HARDENED}, id="index-2^31"),
    ],
)
def test_bip44_rejects_out_of_range_values(kwargs: dict[str, int]) -> None:
    with pytest.raises(InputError):
        HDPath.bip44(**kwargs)


def test_coin_types_1200_and_118_give_different_addresses() -> None:
    gonka = derive_private_key(MNEMONIC, HDPath.bip44()).public_key.to_bytes()
    cosmos = derive_private_key(MNEMONIC, HDPath.bip44(COSMOS_COIN_TYPE)).public_key.to_bytes()
    assert address_from_pubkey(gonka) != address_from_pubkey(cosmos)

    hub = next(
        v
        for v in COSMOS["mnemonic_to_address"]
        if v["mnemonic"] == MNEMONIC and v["hrp"] == "cosmos" and v["path"] == "m/44'/118'/0'/0/0"
    )
    assert decode(address_from_pubkey(cosmos)) == decode(hub["address"], "cosmos")
    assert decode(address_from_pubkey(gonka)) != decode(hub["address"], "cosmos")


def test_gonka_path_agrees_with_public_derivation_from_account_xpub() -> None:
    master = ExtendedPrivateKey.from_seed(mnemonic_to_seed(MNEMONIC))
    account = master.derive(HDPath.parse("m/44'/1200'/0'"))
    from_xpub = account.public().child(0).child(0)
    key = derive_private_key(MNEMONIC, HDPath.bip44())
    assert from_xpub.key == key.public_key.to_bytes()
    assert master.derive(HDPath.bip44()).public() == from_xpub


# --- HDPath.parse -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "m",
        "m/0",
        "m/0'",
        GONKA_PATH,
        "m/44'/118'/0'/0/0",
        "m/0'/1/2'/2/1000000000",
        "m/0/2147483647'/1/2147483646'/2",
        "m/2147483647",
    ],
)
def test_hdpath_round_trips(text: str) -> None:
    path = HDPath.parse(text)
    assert str(path) == text
    assert HDPath.parse(str(path)) == path


@pytest.mark.parametrize(
    ("text", "indices"),
    [
        pytest.param("m", (), id="master"),
        pytest.param("m/0'/1", (HARDENED, 1), id="apostrophe"),
        pytest.param("m/44h/1200H/0'/0/0", HDPath.bip44().indices, id="h-and-H"),
        pytest.param("  m/2147483647'/0 ", (2 * HARDENED - 1, 0), id="largest-hardened"),
    ],
)
def test_hdpath_parses_indices(text: str, indices: tuple[int, ...]) -> None:
    assert HDPath.parse(text).indices == indices


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("44'/1200'/0'/0/0", id="no-m"),
        pytest.param("M/0", id="capital-M"),
        pytest.param("m/", id="trailing-slash"),
        pytest.param("m//0", id="empty-component"),
        pytest.param("m/0'/", id="trailing-slash-after-hardened"),
        pytest.param("m/-1", id="negative"),
        pytest.param("m/0x1", id="hex"),
        pytest.param("m/1''", id="double-apostrophe"),
        pytest.param("m/abc", id="letters"),
        pytest.param("m/1 /2", id="space-in-component"),
        pytest.param("m/2147483648", id="index-2^31"),
        pytest.param("m/2147483648'", id="hardened-index-2^31"),
        pytest.param("m/44'/\u00b2", id="superscript-digit"),
    ],
)
def test_hdpath_rejects_bad_paths(text: str) -> None:
    with pytest.raises(InputError, match="derivation path"):
        HDPath.parse(text)
