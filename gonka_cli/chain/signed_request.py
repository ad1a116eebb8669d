"""Signed requests to network services (Gonka's API-node scheme).

A request carries three headers:

- `X-Requester-Address`: the signer's `gonka1...` address;
- `X-Timestamp`: the signing time in nanoseconds since the Unix epoch (decimal);
- `Authorization`: base64 of the 64-byte compact secp256k1 signature (low-S) over the
  SHA-256 of the ASCII string `hex(SHA-256(raw body)) + str(timestamp_ns) + receiver`,
  where `receiver` is the address of the service's own key (`GET /v1/identity`).

A receiver refuses a timestamp more than `MAX_AGE_S` old or `MAX_FUTURE_S` ahead, and a
signature it has seen before (`ReplayGuard`). Binding the receiver's address means a request
signed for one node cannot be replayed at another. The body is hashed as sent: a GET has an
empty body.

A key that has never sent a transaction has no public key on chain; such a requester adds
`X-Requester-Pubkey` (base64 of the 33-byte compressed key), which must hash to the address.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gonka_cli.crypto import address as addr
from gonka_cli.crypto.secp256k1 import PrivateKey, PublicKey
from gonka_cli.errors import InputError
from gonka_cli.validate import is_uint_text

MAX_AGE_S = 60
MAX_FUTURE_S = 30
HEADER_SIGNATURE = "Authorization"
HEADER_ADDRESS = "X-Requester-Address"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_PUBKEY = "X-Requester-Pubkey"


class RequestAuthError(InputError):
    """A request whose signature headers are missing, malformed, stale, forged or replayed."""


def signed_bytes(body: bytes, timestamp_ns: int, receiver: str) -> bytes:
    """The bytes a requester signs (see the module docstring)."""
    return (hashlib.sha256(body).hexdigest() + str(timestamp_ns) + receiver).encode("ascii")


def sign_request(
    key: PrivateKey,
    body: bytes,
    receiver: str,
    *,
    timestamp_ns: int | None = None,
    with_pubkey: bool = False,
) -> dict[str, str]:
    """The headers that sign `body` for `receiver` with `key`."""
    ts = time.time_ns() if timestamp_ns is None else timestamp_ns
    pubkey = key.public_key.to_bytes()
    headers = {
        HEADER_SIGNATURE: base64.b64encode(key.sign(signed_bytes(body, ts, receiver))).decode(),
        HEADER_ADDRESS: addr.address_from_pubkey(pubkey),
        HEADER_TIMESTAMP: str(ts),
    }
    if with_pubkey:
        headers[HEADER_PUBKEY] = base64.b64encode(pubkey).decode()
    return headers


@dataclass(frozen=True)
class Requester:
    address: str
    pubkey: bytes
    timestamp_ns: int
    signature: bytes


class ReplayGuard:
    """Signatures seen within the acceptance window; older ones expire with the window.

    It lives in memory. After a restart a node refuses requests signed before it started
    (`not_before_ns`), so a request captured before the restart cannot be replayed.
    """

    def __init__(self, not_before_ns: int | None = None) -> None:
        self.not_before_ns = time.time_ns() if not_before_ns is None else not_before_ns
        self._seen: dict[bytes, int] = {}
        self._next_sweep = 0

    def check_and_add(self, signature: bytes, timestamp_ns: int, now_ns: int) -> None:
        if timestamp_ns < self.not_before_ns:
            raise RequestAuthError(
                "the request was signed before this node started; sign it again with the "
                "current time"
            )
        if now_ns >= self._next_sweep:
            horizon = now_ns - (MAX_AGE_S + MAX_FUTURE_S) * 10**9
            self._seen = {s: t for s, t in self._seen.items() if t >= horizon}
            self._next_sweep = now_ns + 10**9
        if signature in self._seen:
            raise RequestAuthError(
                "this signature was already used (a replayed request); sign each request anew"
            )
        self._seen[signature] = timestamp_ns

    def __len__(self) -> int:
        return len(self._seen)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if not value:
        raise RequestAuthError(
            f"the request is not signed: header {name} is missing (see docs/protocol.md)"
        )
    return value


def verify_request(
    headers: Mapping[str, str],
    body: bytes,
    receiver: str,
    pubkey_of: Callable[[str], bytes | None],
    guard: ReplayGuard,
    *,
    now_ns: int | None = None,
) -> Requester:
    """Check a signed request; returns who signed it or raises RequestAuthError.

    `pubkey_of(address)` gives the requester's known public key (a registered participant,
    or the account's key on chain), or None; then `X-Requester-Pubkey` must supply it.
    """
    now = time.time_ns() if now_ns is None else now_ns
    address_text = _header(headers, HEADER_ADDRESS)
    try:
        address = addr.normalize(address_text, "gonka")
    except InputError as exc:
        raise RequestAuthError(f"{HEADER_ADDRESS}: {exc}") from None
    ts_text = _header(headers, HEADER_TIMESTAMP)
    if not is_uint_text(ts_text, 10**20 - 1):
        raise RequestAuthError(f"{HEADER_TIMESTAMP} must be nanoseconds since 1970 (digits)")
    timestamp = int(ts_text)
    if timestamp < now - MAX_AGE_S * 10**9:
        raise RequestAuthError(
            f"the request expired: signed {(now - timestamp) / 1e9:.0f} s ago, the limit is "
            f"{MAX_AGE_S} s; check this machine's clock and sign again"
        )
    if timestamp > now + MAX_FUTURE_S * 10**9:
        raise RequestAuthError(
            f"the request is signed {(timestamp - now) / 1e9:.0f} s in the future, the limit is "
            f"{MAX_FUTURE_S} s; check this machine's clock"
        )
    try:
        signature = base64.b64decode(_header(headers, HEADER_SIGNATURE), validate=True)
    except (binascii.Error, ValueError):
        raise RequestAuthError(f"{HEADER_SIGNATURE} is not base64") from None
    if len(signature) != 64:
        raise RequestAuthError(
            f"{HEADER_SIGNATURE} must be a 64-byte signature, got {len(signature)} bytes"
        )
    pubkey = pubkey_of(address)
    if pubkey is None:
        pubkey = _supplied_pubkey(headers, address)
    try:
        key = PublicKey.from_bytes(pubkey)
    except InputError as exc:
        raise RequestAuthError(f"the requester's public key is unusable: {exc}") from None
    if not key.verify(signed_bytes(body, timestamp, receiver), signature):
        raise RequestAuthError(
            f"the signature does not match the body, the timestamp, this node ({receiver}) "
            f"and the key of {address}"
        )
    guard.check_and_add(signature, timestamp, now)
    return Requester(address, pubkey, timestamp, signature)


def _supplied_pubkey(headers: Mapping[str, str], address: str) -> bytes:
    text = headers.get(HEADER_PUBKEY) or headers.get(HEADER_PUBKEY.lower())
    if not text:
        raise RequestAuthError(
            f"{address} has no known public key: register first, or send {HEADER_PUBKEY}"
        )
    try:
        pubkey = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestAuthError(f"{HEADER_PUBKEY} is not base64") from None
    if len(pubkey) != 33 or addr.address_from_pubkey(pubkey) != address:
        raise RequestAuthError(f"{HEADER_PUBKEY} is not the key of {address}")
    return pubkey
