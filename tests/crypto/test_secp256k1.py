"""secp256k1 keys and Cosmos-style (RFC 6979, low-S, 64-byte r||s) signatures.

Every test runs twice: on the fast path (coincurve) and on the pure-Python fallback (ecdsa),
forced in this process with `set_backend`; both must give the vectors' bytes.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from ecdsa import SECP256k1, VerifyingKey
from ecdsa.util import sigdecode_der, sigdecode_string

from gonka_cli.crypto import secp256k1
from gonka_cli.crypto.secp256k1 import (
    CURVE_ORDER,
    HALF_ORDER,
    PrivateKey,
    PublicKey,
    backend,
    set_backend,
)
from gonka_cli.errors import InvalidPrivateKey, InvalidPublicKey
from tests.conftest import load_vectors

VECTORS = load_vectors("secp256k1_vectors.json")
N = SECP256k1.order
G = SECP256k1.generator


@pytest.fixture(autouse=True, params=["coincurve", "ecdsa"])
def signing_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the fast path, then with the pure-Python fallback."""
    wanted = request.param
    if wanted == "coincurve" and secp256k1._coincurve() is None:
        pytest.skip("coincurve is not installed here")
    try:
        assert set_backend("auto" if wanted == "coincurve" else "ecdsa") == wanted
        yield wanted
    finally:
        set_backend("auto")


def _sig(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _expected_signature(privkey_hex: str, digest: bytes, k: int) -> bytes:
    """The low-S ECDSA signature for nonce k, computed from the textbook formula."""
    d = int(privkey_hex, 16)
    z = int.from_bytes(digest, "big") % N
    r = (G * k).x() % N
    s = pow(k, -1, N) * (z + r * d) % N
    return _sig(r, min(s, N - s))


def _point_bytes(privkey_hex: str) -> tuple[bytes, bytes]:
    """(compressed, uncompressed) SEC1 encodings of d*G, computed with plain point arithmetic."""
    point = G * int(privkey_hex, 16)
    x, y = point.x().to_bytes(32, "big"), point.y().to_bytes(32, "big")
    return bytes([2 + (point.y() & 1)]) + x, b"\x04" + x + y


COMPACT = [v for v in VECTORS["deterministic_sign_vectors_compact"] if "VERIFY_ONLY" not in v]
VERIFY_ONLY = [v for v in VECTORS["deterministic_sign_vectors_compact"] if "VERIFY_ONLY" in v]
LOW_S = VECTORS["low_s_normalization"]


def _id(i: int, v: dict[str, Any]) -> str:
    return f"{i:02d}-d{v['privkey_hex'][-4:]}-z{v['digest_hex'][:6]}"


def test_curve_constants_match_vector_file() -> None:
    assert CURVE_ORDER == N
    assert HALF_ORDER == N // 2
    assert f"n = {N:064x}" in VECTORS["standard"]["curve"]
    assert f"n/2 = {HALF_ORDER:064x}" in VECTORS["standard"]["curve"]


# --- deterministic signatures -----------------------------------------------------------


@pytest.mark.parametrize("vector", [pytest.param(v, id=_id(i, v)) for i, v in enumerate(COMPACT)])
def test_sign_digest_matches_compact_vector(vector: dict[str, Any]) -> None:
    key = PrivateKey.from_hex(vector["privkey_hex"])
    digest = bytes.fromhex(vector["digest_hex"])
    signature = key.sign_digest(digest)
    assert signature.hex() == vector["signature_r_s_hex_lowS"]
    assert int.from_bytes(signature[32:], "big") <= HALF_ORDER
    assert key.public_key.verify_digest(digest, signature)


@pytest.mark.parametrize(
    "vector",
    [pytest.param(v, id=_id(i, v)) for i, v in enumerate(COMPACT) if v["message_utf8"] is not None],
)
def test_sign_message_hashes_with_sha256(vector: dict[str, Any]) -> None:
    message = vector["message_utf8"].encode()
    assert hashlib.sha256(message).hexdigest() == vector["digest_hex"]
    key = PrivateKey.from_hex(vector["privkey_hex"])
    signature = key.sign(message)
    assert signature.hex() == vector["signature_r_s_hex_lowS"]
    assert key.public_key.verify(message, signature)


@pytest.mark.parametrize("vector", [pytest.param(v, id=_id(i, v)) for i, v in enumerate(COMPACT)])
def test_compact_vector_low_s_flag_matches_raw_s(vector: dict[str, Any]) -> None:
    raw_s = int(vector["raw_rfc6979_s_before_lowS_hex"], 16)
    low_s = int(vector["signature_r_s_hex_lowS"][64:], 16)
    flipped = vector["lowS_normalization_applied"]
    assert low_s == (N - raw_s if flipped else raw_s)
    key = PrivateKey.from_hex(vector["privkey_hex"])
    high = _sig(int(vector["signature_r_s_hex_lowS"][:64], 16), N - low_s)
    assert not key.public_key.verify_digest(bytes.fromhex(vector["digest_hex"]), high)


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=_id(i, v)) for i, v in enumerate(VERIFY_ONLY)]
)
def test_digest_above_order_signs_like_libsecp256k1_and_verifies_fixture(
    vector: dict[str, Any],
) -> None:
    key = PrivateKey.from_hex(vector["privkey_hex"])
    digest = bytes.fromhex(vector["digest_hex"])
    assert key.sign_digest(digest).hex() == vector["rfc6979_libsecp256k1_r_s_hex"]
    assert key.public_key.verify_digest(digest, bytes.fromhex(vector["fixture_signature_r_s_hex"]))


@pytest.mark.parametrize(
    "vector",
    [
        pytest.param(v, id=f"{i:02d}-d{v['privkey_hex'][-4:]}")
        for i, v in enumerate(VECTORS["deterministic_sign_vectors_der"])
    ],
)
def test_sign_matches_der_vector(vector: dict[str, Any]) -> None:
    message = vector["message_utf8"].encode()
    digest = hashlib.sha256(message).digest()
    assert digest.hex() == vector["digest_hex(sha256(message))"]
    r, s = sigdecode_der(bytes.fromhex(vector["signature_der_hex_lowS"]), N)
    assert _sig(r, s).hex() == vector["signature_r_s_hex_lowS"]

    key = PrivateKey.from_hex(vector["privkey_hex"])
    signature = key.sign(message)
    assert signature == _sig(r, s)
    assert signature == _expected_signature(
        vector["privkey_hex"], digest, int(vector["rfc6979_k_hex"], 16)
    )


@pytest.mark.parametrize(
    "vector",
    [
        pytest.param(v, id=f"{i:02d}-{v['message_utf8'][:16]}")
        for i, v in enumerate(VECTORS["rfc6979_nonce_vectors"])
    ],
)
def test_signature_uses_rfc6979_nonce(vector: dict[str, Any]) -> None:
    message = vector["message_utf8"].encode()
    key = PrivateKey.from_hex(vector["privkey_hex"])
    signature = key.sign(message)
    k = int(vector["rfc6979_k_hex"], 16)
    assert int.from_bytes(signature[:32], "big") == (G * k).x() % N
    assert signature == _expected_signature(
        vector["privkey_hex"], hashlib.sha256(message).digest(), k
    )
    if "derived_here_signature_r_s_hex_lowS" in vector:
        assert signature.hex() == vector["derived_here_signature_r_s_hex_lowS"]


# --- low-S ------------------------------------------------------------------------------


def test_low_s_vector_is_consistent() -> None:
    assert hashlib.sha256(LOW_S["message_utf8"].encode()).hexdigest() == LOW_S["digest_hex"]
    s_high = int(LOW_S["s_high_hex_raw_rfc6979"], 16)
    s_low = int(LOW_S["s_low_hex_cosmos"], 16)
    assert s_high + s_low == N
    assert s_high > HALF_ORDER >= s_low
    assert LOW_S["cosmos_signature_64_hex"] == LOW_S["r_hex"] + LOW_S["s_low_hex_cosmos"]
    assert int(LOW_S["r_hex"], 16) == (G * int(LOW_S["rfc6979_k_hex"], 16)).x() % N


def test_signature_is_normalised_to_low_s() -> None:
    key = PrivateKey.from_hex(LOW_S["privkey_hex"])
    expected = LOW_S["cosmos_signature_64_hex"]
    assert key.sign(LOW_S["message_utf8"].encode()).hex() == expected
    assert key.sign_digest(bytes.fromhex(LOW_S["digest_hex"])).hex() == expected


def test_verify_accepts_low_s_and_rejects_high_s() -> None:
    public = PrivateKey.from_hex(LOW_S["privkey_hex"]).public_key
    message = LOW_S["message_utf8"].encode()
    low = bytes.fromhex(LOW_S["cosmos_signature_64_hex"])
    high = bytes.fromhex(LOW_S["r_hex"] + LOW_S["s_high_hex_raw_rfc6979"])

    # The high-S form is a valid plain ECDSA signature; only the low-S policy refuses it.
    plain = VerifyingKey.from_string(public.to_bytes(), curve=SECP256k1)
    assert plain.verify(high, message, hashfunc=hashlib.sha256, sigdecode=sigdecode_string)

    assert public.verify(message, low)
    assert not public.verify(message, high)
    assert public.verify_digest(bytes.fromhex(LOW_S["digest_hex"]), low)
    assert not public.verify_digest(bytes.fromhex(LOW_S["digest_hex"]), high)


# --- verify failures --------------------------------------------------------------------


def _low_s_parts() -> tuple[PublicKey, bytes, bytes]:
    public = PrivateKey.from_hex(LOW_S["privkey_hex"]).public_key
    return public, LOW_S["message_utf8"].encode(), bytes.fromhex(LOW_S["cosmos_signature_64_hex"])


def test_verify_rejects_other_message() -> None:
    public, message, signature = _low_s_parts()
    assert not public.verify(message + b".", signature)


def test_verify_rejects_other_key() -> None:
    _, message, signature = _low_s_parts()
    other = PrivateKey.from_hex(COMPACT[1]["privkey_hex"]).public_key
    assert not other.verify(message, signature)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda s: s[:63], id="63-bytes"),
        pytest.param(lambda s: s + b"\0", id="65-bytes"),
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: bytes(32) + s[32:], id="r-zero"),
        pytest.param(lambda s: s[:32] + bytes(32), id="s-zero"),
        pytest.param(lambda s: N.to_bytes(32, "big") + s[32:], id="r-equals-n"),
        pytest.param(lambda s: s[:31] + bytes([s[31] ^ 1]) + s[32:], id="r-bit-flipped"),
        pytest.param(lambda s: s[:63] + bytes([s[63] ^ 1]), id="s-bit-flipped"),
    ],
)
def test_verify_rejects_malformed_signature(mutate: Any) -> None:
    public, message, signature = _low_s_parts()
    assert public.verify(message, signature)
    assert not public.verify(message, mutate(signature))


def test_verify_digest_rejects_wrong_digest_length() -> None:
    public, _, signature = _low_s_parts()
    digest = bytes.fromhex(LOW_S["digest_hex"])
    assert not public.verify_digest(digest[:31], signature)
    assert not public.verify_digest(digest + b"\0", signature)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_sign_digest_requires_32_bytes(length: int) -> None:
    key = PrivateKey.from_hex(LOW_S["privkey_hex"])
    with pytest.raises(ValueError, match="32 bytes"):
        key.sign_digest(bytes(length))


def test_sign_then_verify_round_trip_for_every_vector_key() -> None:
    keys = {v["privkey_hex"] for v in VECTORS["rfc6979_nonce_vectors"] + COMPACT}
    for privkey_hex in sorted(keys):
        key = PrivateKey.from_hex(privkey_hex)
        signature = key.sign(b"gonka transfer")
        assert len(signature) == 64
        assert key.public_key.verify(b"gonka transfer", signature)
        assert key.sign(b"gonka transfer") == signature


# --- PrivateKey -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(bytes(32), id="zero"),
        pytest.param(N.to_bytes(32, "big"), id="n"),
        pytest.param((N + 1).to_bytes(32, "big"), id="n-plus-1"),
        pytest.param(b"\xff" * 32, id="2^256-1"),
        pytest.param(b"", id="0-bytes"),
        pytest.param(b"\x01" * 31, id="31-bytes"),
        pytest.param(b"\x01" * 33, id="33-bytes"),
        pytest.param(b"\x01" * 64, id="64-bytes"),
    ],
)
def test_private_key_rejects_invalid_secret(secret: bytes) -> None:
    with pytest.raises(InvalidPrivateKey):
        PrivateKey(secret)
    with pytest.raises(InvalidPrivateKey):
        PrivateKey.from_bytes(secret)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        pytest.param("00" * 32, "out of range", id="zero"),
        pytest.param(f"{N:064x}", "out of range", id="n"),
        pytest.param("", "64 hex characters", id="empty"),
        pytest.param("01" * 31, "64 hex characters", id="62-chars"),
        pytest.param("01" * 33, "64 hex characters", id="66-chars"),
        pytest.param("zz" * 32, "not valid hex", id="non-hex"),
        pytest.param("0g" + "01" * 31, "not valid hex", id="one-non-hex-char"),
        pytest.param("\u00e9" * 64, "not valid hex", id="non-ascii"),
    ],
)
def test_private_key_from_hex_rejects(text: str, pattern: str) -> None:
    with pytest.raises(InvalidPrivateKey, match=pattern) as excinfo:
        PrivateKey.from_hex(text)
    if len(text) == 64:
        assert text not in str(excinfo.value)


@pytest.mark.parametrize("scalar", [pytest.param(1, id="one"), pytest.param(N - 1, id="n-minus-1")])
def test_private_key_accepts_range_bounds(scalar: int) -> None:
    key = PrivateKey(scalar.to_bytes(32, "big"))
    assert key.to_bytes() == scalar.to_bytes(32, "big")
    assert key.public_key.to_bytes() == _point_bytes(f"{scalar:064x}")[0]


def test_private_key_from_hex_accepts_prefix_case_and_whitespace() -> None:
    secret = COMPACT[4]["privkey_hex"]
    key = PrivateKey.from_hex(secret)
    assert key.to_hex() == secret
    assert key.to_bytes() == bytes.fromhex(secret)
    assert PrivateKey.from_hex(f"  0x{secret.upper()}\n") == key
    assert PrivateKey.from_hex("0X" + secret) == key


def test_private_key_repr_never_shows_the_secret() -> None:
    secret = COMPACT[4]["privkey_hex"]
    key = PrivateKey.from_hex(secret)
    for text in (repr(key), str(key), f"{key}", f"{key!r}", repr([key])):
        assert secret not in text.lower()
    assert key.public_key.to_hex() in repr(key)


@pytest.mark.parametrize(
    "privkey_hex",
    sorted({v["privkey_hex"] for v in VECTORS["rfc6979_nonce_vectors"] + COMPACT}),
)
def test_public_key_matches_point_multiplication(privkey_hex: str) -> None:
    compressed, _ = _point_bytes(privkey_hex)
    public = PrivateKey.from_hex(privkey_hex).public_key
    assert public.to_bytes() == compressed
    assert public.to_hex() == compressed.hex()


def test_private_keys_compare_by_secret() -> None:
    a = PrivateKey.from_hex(COMPACT[4]["privkey_hex"])
    b = PrivateKey.from_hex(COMPACT[4]["privkey_hex"])
    c = PrivateKey.from_hex(COMPACT[7]["privkey_hex"])
    assert a == b
    assert hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2


# --- PublicKey --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "privkey_hex",
    [
        pytest.param(COMPACT[4]["privkey_hex"], id="vector-key"),
        pytest.param(f"{1:064x}", id="generator"),
        pytest.param(f"{N - 1:064x}", id="minus-generator"),
    ],
)
def test_public_key_compresses_uncompressed_form(privkey_hex: str) -> None:
    compressed, uncompressed = _point_bytes(privkey_hex)
    assert len(uncompressed) == 65
    public = PublicKey(uncompressed)
    assert public.to_bytes() == compressed
    assert PublicKey.from_hex(uncompressed.hex()) == PublicKey(compressed)
    assert public == PrivateKey.from_hex(privkey_hex).public_key


def _off_curve_uncompressed() -> bytes:
    _, uncompressed = _point_bytes(COMPACT[4]["privkey_hex"])
    y = int.from_bytes(uncompressed[33:], "big")
    return uncompressed[:33] + ((y + 1) % SECP256k1.curve.p()).to_bytes(32, "big")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bytes.fromhex("02" + "00" * 31 + "07"), id="compressed-x-7"),
        pytest.param(b"\x02" + bytes(32), id="compressed-x-0"),
        pytest.param(b"\x03" + b"\xff" * 32, id="compressed-x-above-p"),
        pytest.param(_off_curve_uncompressed(), id="uncompressed-y-plus-1"),
        pytest.param(b"\x04" + bytes(64), id="uncompressed-zero"),
    ],
)
def test_public_key_rejects_points_off_the_curve(data: bytes) -> None:
    with pytest.raises(InvalidPublicKey, match="not a point on secp256k1"):
        PublicKey(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(_point_bytes(f"{5:064x}")[0][1:], id="32-bytes-no-prefix"),
        pytest.param(_point_bytes(f"{5:064x}")[0] + b"\0", id="34-bytes"),
        pytest.param(_point_bytes(f"{5:064x}")[1][1:], id="64-bytes-raw-xy"),
        pytest.param(b"\x04" + _point_bytes(f"{5:064x}")[0][1:], id="33-bytes-prefix-04"),
        pytest.param(b"\x02" + _point_bytes(f"{5:064x}")[1][1:], id="65-bytes-prefix-02"),
        pytest.param(b"\x06" + _point_bytes(f"{5:064x}")[1][1:], id="65-bytes-hybrid-06"),
    ],
)
def test_public_key_rejects_wrong_encoding(data: bytes) -> None:
    with pytest.raises(InvalidPublicKey, match="33 bytes compressed"):
        PublicKey(data)


def test_public_key_from_hex_rejects_non_hex() -> None:
    with pytest.raises(InvalidPublicKey, match="not valid hex"):
        PublicKey.from_hex("zz" * 33)


def test_libsecp256k1_signs_byte_for_byte_as_rfc6979_with_low_s() -> None:
    """Signing goes through libsecp256k1: the same bytes as python-ecdsa's RFC 6979 + low-S."""
    import hashlib as _hashlib
    import random as _random

    from ecdsa import SECP256k1 as _curve
    from ecdsa import SigningKey as _SigningKey
    from ecdsa.util import sigencode_string_canonize

    from gonka_cli.crypto.secp256k1 import PrivateKey as _PrivateKey

    rng = _random.Random(7)
    for _ in range(200):
        secret = rng.randbytes(32)
        if not 0 < int.from_bytes(secret, "big") < _curve.order:
            continue
        digest = _hashlib.sha256(rng.randbytes(40)).digest()
        reference = _SigningKey.from_string(secret, curve=_curve).sign_digest_deterministic(
            digest, hashfunc=_hashlib.sha256, sigencode=sigencode_string_canonize
        )
        assert _PrivateKey(secret).sign_digest(digest) == reference


# --- the two backends -------------------------------------------------------------------


def test_both_backends_give_the_same_bytes_and_accept_each_other(signing_backend: str) -> None:
    rng = random.Random(11)
    other = "ecdsa" if signing_backend == "coincurve" else "auto"
    for _ in range(50):
        secret = rng.randbytes(32)
        if not 0 < int.from_bytes(secret, "big") < N:
            continue
        key = PrivateKey(secret)
        digest = hashlib.sha256(rng.randbytes(40)).digest()
        signature = key.sign_digest(digest)
        high = _sig(
            int.from_bytes(signature[:32], "big"), N - int.from_bytes(signature[32:], "big")
        )
        set_backend(other)  # type: ignore[arg-type]
        try:
            assert key.sign_digest(digest) == signature
            assert key.public_key.verify_digest(digest, signature)
            assert not key.public_key.verify_digest(digest, high)
        finally:
            set_backend("auto" if signing_backend == "coincurve" else "ecdsa")


def test_without_coincurve_the_fallback_signs(
    signing_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where coincurve cannot be imported (no wheel), the same API works through ecdsa."""
    vector = COMPACT[0]
    monkeypatch.setitem(sys.modules, "coincurve", None)  # what a failed import leaves
    secp256k1._coincurve.cache_clear()
    try:
        assert set_backend("auto") == backend() == "ecdsa"
        key = PrivateKey.from_hex(vector["privkey_hex"])
        digest = bytes.fromhex(vector["digest_hex"])
        signature = key.sign_digest(digest)
        assert signature.hex() == vector["signature_r_s_hex_lowS"]
        assert key.public_key.verify_digest(digest, signature)
    finally:
        monkeypatch.undo()
        secp256k1._coincurve.cache_clear()
    assert set_backend("auto") == "coincurve"  # importable again: the fast path is back


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown secp256k1 backend 'openssl'"):
        set_backend("openssl")  # type: ignore[arg-type]
