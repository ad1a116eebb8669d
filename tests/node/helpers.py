"""Shared helpers for the tests that drive a real node over HTTP: keys, signed transfers, calls."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from google.protobuf import any_pb2

from gonka_cli.chain import tx as txlib
from gonka_cli.chain.amount import DENOM
from gonka_cli.chain.proto.cosmos.bank.v1beta1 import tx_pb2 as bank_pb
from gonka_cli.chain.proto.cosmos.base.v1beta1 import coin_pb2
from gonka_cli.crypto import address as addr
from gonka_cli.crypto.secp256k1 import CURVE_ORDER, PrivateKey
from gonka_cli.node.runner import Node

TXS = "/cosmos/tx/v1beta1/txs"
SIMULATE = "/cosmos/tx/v1beta1/simulate"
GAS_LIMIT = 200_000
#: How long a test waits for something the 0.1 s block clock should do at once.
WAIT_S = 10.0


@dataclass(frozen=True)
class Account:
    key: PrivateKey
    address: str


def account(name: str) -> Account:
    """A deterministic test account (the key is SHA-256 of `name`)."""
    key = PrivateKey(hashlib.sha256(name.encode()).digest())
    return Account(key, addr.address_from_pubkey(key.public_key.to_bytes()))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- building and signing ---------------------------------------------------------------


def send_any(from_address: str, to_address: str, amounts: Sequence[tuple[str, str]]) -> any_pb2.Any:
    """A MsgSend as an Any, with coin amounts given as raw strings (so "-5" or "abc" fit)."""
    msg = bank_pb.MsgSend(
        from_address=from_address,
        to_address=to_address,
        amount=[coin_pb2.Coin(denom=d, amount=a) for d, a in amounts],
    )
    return any_pb2.Any(type_url=txlib.MSG_SEND_TYPE_URL, value=msg.SerializeToString())


def sign_messages(
    sender: Account,
    messages: Sequence[any_pb2.Any | txlib.MsgSend],
    *,
    chain_id: str,
    account_number: int,
    sequence: int,
    fee_ngonka: int = 0,
    gas_limit: int = GAS_LIMIT,
    memo: str = "",
    timeout_height: int = 0,
    fee_denom: str = DENOM,
) -> txlib.SignedTx:
    body = txlib.encode_body(messages, memo, timeout_height)
    fee = txlib.Fee(txlib.coins(fee_ngonka, fee_denom), gas_limit)
    auth_info = txlib.encode_auth_info(sender.key.public_key, sequence, fee)
    return txlib.sign(sender.key, body, auth_info, chain_id, account_number)


def transfer(
    node: Node,
    sender: Account,
    to_address: str,
    amount: int | str,
    *,
    sequence: int | None = None,
    account_number: int | None = None,
    chain_id: str | None = None,
    denom: str = DENOM,
    from_address: str | None = None,
    **options: Any,
) -> txlib.SignedTx:
    """A signed one-message MsgSend from `sender`; sequence and account number from the ledger.

    `options` go to `sign_messages` (fee_ngonka, gas_limit, memo, timeout_height, fee_denom).
    """
    assert node.ledger is not None and node.info is not None
    state = node.ledger.account(sender.address)
    if sequence is None:
        assert state is not None, f"{sender.address} has no account"
        sequence = state.sequence
    if account_number is None:
        assert state is not None, f"{sender.address} has no account"
        account_number = state.number
    message = send_any(from_address or sender.address, to_address, [(denom, str(amount))])
    return sign_messages(
        sender,
        [message],
        chain_id=chain_id or node.info.chain_id,
        account_number=account_number,
        sequence=sequence,
        **options,
    )


def high_s(signature: bytes) -> bytes:
    """The same ECDSA signature with s replaced by n - s (valid maths, refused by the SDK)."""
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (CURVE_ORDER - s).to_bytes(32, "big")


# --- talking to the node ----------------------------------------------------------------


class Api:
    """HTTP calls to one running node."""

    def __init__(self, node: Node) -> None:
        assert node.info is not None and node.ledger is not None
        self.node = node
        self.url = node.info.url
        self.http = requests.Session()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.url + path, params=params or None, timeout=WAIT_S)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        if body is not None:
            kwargs["json"] = body
        return self.http.post(self.url + path, timeout=WAIT_S, **kwargs)

    def broadcast(self, tx_bytes: bytes, mode: str = "BROADCAST_MODE_SYNC") -> dict[str, Any]:
        """POST the transaction; the `tx_response` of an HTTP 200 answer."""
        resp = self.post(TXS, {"tx_bytes": b64(tx_bytes), "mode": mode})
        assert resp.status_code == 200, resp.text
        result: dict[str, Any] = resp.json()["tx_response"]
        return result

    def simulate(self, tx_bytes: bytes) -> requests.Response:
        return self.post(SIMULATE, {"tx_bytes": b64(tx_bytes)})

    def balance(self, address: str) -> int:
        resp = self.get(f"/cosmos/bank/v1beta1/balances/{address}")
        assert resp.status_code == 200, resp.text
        coins = resp.json()["balances"]
        return sum(int(c["amount"]) for c in coins if c["denom"] == DENOM)

    def supply(self) -> int:
        resp = self.get("/cosmos/bank/v1beta1/supply")
        assert resp.status_code == 200, resp.text
        (coin,) = resp.json()["supply"]
        assert coin["denom"] == DENOM
        return int(coin["amount"])

    def status(self) -> dict[str, Any]:
        resp = self.get("/v1/node/status")
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    def height(self) -> int:
        return int(self.status()["height"])

    def wait_height(self, height: int) -> None:
        limit = time.monotonic() + WAIT_S
        while self.height() < height:
            assert time.monotonic() < limit, f"no block {height} within {WAIT_S} s"
            time.sleep(0.02)

    def next_block(self) -> None:
        """Wait until a block after the current one is made (the mempool is then applied)."""
        self.wait_height(self.height() + 1)

    def wait_tx(self, txhash: str) -> dict[str, Any]:
        """The `GET /txs/{hash}` answer once the transaction is in a block."""
        limit = time.monotonic() + WAIT_S
        while True:
            resp = self.get(f"{TXS}/{txhash}")
            if resp.status_code == 200:
                data: dict[str, Any] = resp.json()
                return data
            assert resp.status_code == 404, resp.text
            assert time.monotonic() < limit, f"{txhash} not in a block within {WAIT_S} s"
            time.sleep(0.02)


def assert_error(resp: requests.Response, status: int, code: int | None = None) -> dict[str, Any]:
    """`resp` is a grpc-gateway error: JSON {code, message, details} with HTTP `status`
    (and the mining API's `error_code` where the node gives one)."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert set(body) - {"error_code"} == {"code", "message", "details"}, body
    assert isinstance(body["code"], int) and body["code"] != 0, body
    assert isinstance(body["message"], str) and body["message"], body
    assert body["details"] == [], body
    if code is not None:
        assert body["code"] == code, body
    return body


# --- raw HTTP, for framing a client library would not send -------------------------------


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(port: int, head: bytes, body_parts: Iterable[bytes] = ()) -> RawResponse:
    """Send `head` (request line and headers, CRLF-terminated) and the body; read one answer.

    The server may answer (and stop reading) before the whole body is sent: a broken pipe
    while sending is expected then.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        try:
            sock.sendall(head)
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before an answer: {data!r}"
            data += chunk
        header_blob, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = header_blob.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return RawResponse(int(status_line.split()[1]), headers, body[:length])
