"""Signed requests to network services: the bytes signed, the window, replays."""

from __future__ import annotations

import base64
import hashlib

import ecdsa
import pytest

from gonka_cli.chain.signed_request import (
    MAX_AGE_S,
    MAX_FUTURE_S,
    ReplayGuard,
    RequestAuthError,
    sign_request,
    signed_bytes,
    verify_request,
)
from gonka_cli.crypto.address import address_from_pubkey
from gonka_cli.crypto.secp256k1 import PrivateKey

KEY = PrivateKey(hashlib.sha256(b"requester").digest())
OTHER = PrivateKey(hashlib.sha256(b"other").digest())
ADDRESS = address_from_pubkey(KEY.public_key.to_bytes())
RECEIVER = address_from_pubkey(OTHER.public_key.to_bytes())
NOW = 1_790_000_000 * 10**9
BODY = b'{"model":"gonka-tiny"}'


def known(address: str) -> bytes | None:
    return KEY.public_key.to_bytes() if address == ADDRESS else None


def verify(headers: dict[str, str], body: bytes = BODY, **kw: object) -> str:
    guard = kw.pop("guard", None)
    if guard is None:
        guard = ReplayGuard(not_before_ns=0)
    now = kw.pop("now_ns", NOW)
    return verify_request(
        headers,
        body,
        RECEIVER,
        known,
        guard,
        now_ns=now,  # type: ignore[arg-type]
    ).address


def test_the_signed_bytes_are_the_body_hash_the_timestamp_and_the_receiver() -> None:
    expected = hashlib.sha256(BODY).hexdigest() + str(NOW) + RECEIVER
    assert signed_bytes(BODY, NOW, RECEIVER) == expected.encode("ascii")
    headers = sign_request(KEY, BODY, RECEIVER, timestamp_ns=NOW)
    assert headers["X-Requester-Address"] == ADDRESS
    assert headers["X-Timestamp"] == str(NOW)
    # Checked with the ecdsa library directly: a 64-byte r||s over SHA-256 of those bytes.
    signature = base64.b64decode(headers["Authorization"])
    assert len(signature) == 64
    vk = ecdsa.VerifyingKey.from_string(KEY.public_key.to_bytes(), curve=ecdsa.SECP256k1)
    assert vk.verify(signature, expected.encode(), hashfunc=hashlib.sha256)
    assert int.from_bytes(signature[32:], "big") <= ecdsa.SECP256k1.order // 2  # low-S


def test_a_good_request_verifies_with_any_header_case() -> None:
    headers = sign_request(KEY, BODY, RECEIVER, timestamp_ns=NOW)
    assert verify(headers) == ADDRESS
    lower = {
        k.lower(): v for k, v in sign_request(KEY, BODY, RECEIVER, timestamp_ns=NOW + 1).items()
    }
    assert verify(lower) == ADDRESS


@pytest.mark.parametrize(
    ("change", "wording"),
    [
        (lambda h: h.pop("Authorization"), "header Authorization is missing"),
        (lambda h: h.pop("X-Timestamp"), "header X-Timestamp is missing"),
        (lambda h: h.pop("X-Requester-Address"), "header X-Requester-Address is missing"),
        (lambda h: h.update({"X-Timestamp": "12e9"}), "nanoseconds"),
        (lambda h: h.update({"Authorization": "***"}), "not base64"),
        (lambda h: h.update({"Authorization": base64.b64encode(b"x" * 63).decode()}), "64-byte"),
        (lambda h: h.update({"X-Requester-Address": "gonka1xyz"}), "X-Requester-Address"),
        (lambda h: h.update({"X-Timestamp": str(NOW + 1)}), "does not match"),
    ],
)
def test_malformed_or_altered_headers_are_refused(change: object, wording: str) -> None:
    headers = sign_request(KEY, BODY, RECEIVER, timestamp_ns=NOW)
    change(headers)  # type: ignore[operator]
    with pytest.raises(RequestAuthError, match=wording):
        verify(headers)


def test_another_body_receiver_or_key_does_not_verify() -> None:
    headers = sign_request(KEY, BODY, RECEIVER, timestamp_ns=NOW)
    with pytest.raises(RequestAuthError, match="does not match"):
        verify(headers, body=BODY + b" ")
    for_other = sign_request(KEY, BODY, ADDRESS, timestamp_ns=NOW)
    with pytest.raises(RequestAuthError, match="does not match"):
        verify(for_other)
    forged = sign_request(OTHER, BODY, RECEIVER, timestamp_ns=NOW)
    forged["X-Requester-Address"] = ADDRESS
    with pytest.raises(RequestAuthError, match="does not match"):
        verify(forged)


def test_the_window_is_60_s_back_and_30_s_ahead() -> None:
    for offset in (-MAX_AGE_S * 10**9, MAX_FUTURE_S * 10**9):
        assert verify(sign_request(KEY, BODY, RECEIVER, timestamp_ns=NOW + offset)) == ADDRESS
    old = sign_request(KEY, BODY, RECEIVER, timestamp_ns=NOW - MAX_AGE_S * 10**9 - 1)
    with pytest.raises(RequestAuthError, match="expired"):
        verify(old)
    ahead = sign_request(KEY, BODY, RECEIVER, timestamp_ns=NOW + MAX_FUTURE_S * 10**9 + 1)
    with pytest.raises(RequestAuthError, match="in the future"):
        verify(ahead)


def test_a_signature_is_accepted_once() -> None:
    guard = ReplayGuard(not_before_ns=0)
    headers = sign_request(KEY, BODY, RECEIVER, timestamp_ns=NOW)
    verify(headers, guard=guard)
    with pytest.raises(RequestAuthError, match="replayed"):
        verify(headers, guard=guard)
    # Seen signatures expire with the window, so the guard does not grow without bound.
    later = NOW + (MAX_AGE_S + MAX_FUTURE_S + 2) * 10**9
    verify(sign_request(KEY, BODY, RECEIVER, timestamp_ns=later), guard=guard, now_ns=later)
    assert len(guard) == 1


def test_requests_signed_before_the_node_started_are_refused() -> None:
    guard = ReplayGuard(not_before_ns=NOW)
    with pytest.raises(RequestAuthError, match="before this node started"):
        verify(sign_request(KEY, BODY, RECEIVER, timestamp_ns=NOW - 1), guard=guard)


def test_an_unknown_key_comes_in_a_header_that_must_match_the_address() -> None:
    stranger = PrivateKey(hashlib.sha256(b"stranger").digest())
    headers = sign_request(stranger, BODY, RECEIVER, timestamp_ns=NOW)
    with pytest.raises(RequestAuthError, match="no known public key"):
        verify(headers)
    with_key = sign_request(stranger, BODY, RECEIVER, timestamp_ns=NOW, with_pubkey=True)
    assert verify(with_key) == address_from_pubkey(stranger.public_key.to_bytes())
    with_key["X-Requester-Pubkey"] = base64.b64encode(KEY.public_key.to_bytes()).decode()
    with pytest.raises(RequestAuthError, match="is not the key of"):
        verify(with_key)
    # A registered key wins over the header: a header cannot swap the key of a known address.
    spoof = sign_request(stranger, BODY, RECEIVER, timestamp_ns=NOW, with_pubkey=True)
    spoof["X-Requester-Address"] = ADDRESS
    with pytest.raises(RequestAuthError, match="does not match"):
        verify(spoof)
