"""Helpers for the tests that drive a node's mining API by hand: signed calls, phases, miners.

`Caller` sends raw signed requests (so a test can break any part of the signature), `Miner`
is a participant driven step by step, and `wait_phase` waits for a phase of the epoch
schedule. Everything talks to a real node over HTTP; only the clock is read from its ledger.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from gonka_cli.chain.signed_request import sign_request
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.node.epochs import GENERATE, INFERENCE, VALIDATE, EpochView, epoch_at
from gonka_cli.node.runner import Node
from gonka_cli.protocol import GRPC_FOR_HTTP, ErrorCode
from tests.node.helpers import WAIT_S, Account, account, assert_error


def assert_refused(resp: requests.Response, code: ErrorCode) -> str:
    """`resp` is the API's JSON refusal with `code`: its HTTP status, its gRPC code and its
    `error_code`. Returns the message (tests assert codes, not wording)."""
    status = code.http_status
    body = assert_error(resp, status, GRPC_FOR_HTTP[status])
    assert body.get("error_code") == code.value, body
    message: str = body["message"]
    return message


def fund_collateral(url: str, address: str) -> None:
    """Give `address` (from the node's faucet) what registering will lock, and wait for the
    block that holds it: registration locks the collateral from the spendable balance."""
    http = requests.Session()
    stake = http.get(f"{url}/v1/participants/{address}/stake", timeout=WAIT_S).json()
    need = int(stake["required_ngonka"]) - int(stake["collateral_ngonka"])

    def balance() -> int:
        coins = http.get(f"{url}/cosmos/bank/v1beta1/balances/{address}", timeout=WAIT_S)
        return sum(int(c["amount"]) for c in coins.json()["balances"] if c["denom"] == "ngonka")

    missing = need - balance()
    if missing <= 0:
        return
    resp = http.post(
        f"{url}/faucet", json={"address": address, "amount": str(missing)}, timeout=WAIT_S
    )
    assert resp.status_code == 200, resp.text
    wait_until(lambda: balance() >= need, f"the faucet's funding of {address}")


def wait_locked(url: str, registration: dict[str, Any]) -> None:
    """Wait for the block that holds a registration's collateral lock (if it made one)."""
    txhash = registration.get("collateral_tx")
    if txhash:
        wait_until(
            lambda: requests.get(f"{url}/cosmos/tx/v1beta1/txs/{txhash}", timeout=WAIT_S).ok,
            f"the collateral lock {txhash}",
        )


def wait_until(predicate: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    """Poll `predicate` until it returns something true, and return that."""
    limit = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < limit, f"{what}: not within {timeout_s} s"
        time.sleep(0.01)


# --- the epoch clock --------------------------------------------------------------------


def view(node: Node) -> EpochView:
    """Where the node's chain stands in its epoch schedule (what the node itself sees)."""
    assert node.ledger is not None and node.network is not None
    return epoch_at(node.network.params, node.ledger.height)


def phase_end(at: EpochView, phase: str) -> int:
    return {GENERATE: at.generate[1], VALIDATE: at.validate[1], INFERENCE: at.inference[1]}[phase]


def wait_phase(
    node: Node,
    phase: str,
    *,
    blocks_left: int = 0,
    epoch: int | None = None,
    timeout_s: float = WAIT_S,
) -> EpochView:
    """Wait until the chain is in `phase` (of `epoch`, if given) with at least `blocks_left`
    more blocks of that phase to come; returns the view at that moment."""

    def ready() -> EpochView | None:
        at = view(node)
        if at.phase != phase or (epoch is not None and at.epoch != epoch):
            return None
        return at if phase_end(at, phase) - at.height >= blocks_left else None

    found: EpochView = wait_until(ready, f"the {phase} phase", timeout_s)
    return found


def wait_height(node: Node, height: int, timeout_s: float = WAIT_S) -> None:
    assert node.ledger is not None
    ledger = node.ledger
    wait_until(lambda: ledger.height >= height, f"block {height}", timeout_s)


# --- signed calls -----------------------------------------------------------------------


def encode(body: Any) -> bytes:
    """A request body as sent: bytes as they are, anything else as compact JSON."""
    if isinstance(body, bytes):
        return body
    return json.dumps(body, separators=(",", ":")).encode()


class Caller:
    """Raw HTTP calls to one node's mining API, signed (or not) as a test wants."""

    def __init__(self, node: Node) -> None:
        assert node.info is not None
        self.node = node
        self.url = node.info.url
        self.http = requests.Session()
        identity = self.http.get(self.url + "/v1/identity", timeout=WAIT_S)
        assert identity.status_code == 200, identity.text
        self.node_address: str = identity.json()["address"]

    def sign(self, key: PrivateKey, raw: bytes, **options: Any) -> dict[str, str]:
        """The headers that sign `raw` for this node (`receiver`, `timestamp_ns` override)."""
        receiver = options.pop("receiver", self.node_address)
        options.setdefault("with_pubkey", True)
        return sign_request(key, raw, receiver, **options)

    def send(
        self,
        method: str,
        path: str,
        body: Any = b"",
        *,
        key: PrivateKey | None = None,
        headers: dict[str, str | None] | None = None,
        params: dict[str, Any] | None = None,
        timeout_s: float = WAIT_S,
    ) -> requests.Response:
        """Send `body` to `path`, signed with `key` when given. `headers` are set on top of the
        signature's (None removes one)."""
        raw = encode(body)
        sent: dict[str, str | None] = {"Content-Type": "application/json"} if raw else {}
        if key is not None:
            sent.update(self.sign(key, raw))
        sent.update(headers or {})
        final = {k: v for k, v in sent.items() if v is not None}
        return self.http.request(
            method,
            self.url + path,
            data=raw or None,
            headers=final,
            params=params,
            timeout=timeout_s,
        )

    def resend(
        self, method: str, path: str, raw: bytes, headers: dict[str, str]
    ) -> requests.Response:
        """Send exactly these bytes with exactly these headers (a replay, a forgery)."""
        return self.http.request(
            method,
            self.url + path,
            data=raw or None,
            headers={"Content-Type": "application/json", **headers},
            timeout=WAIT_S,
        )

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.url + path, params=params or None, timeout=WAIT_S)

    def public(self, path: str) -> Any:
        resp = self.get(path)
        assert resp.status_code == 200, resp.text
        return resp.json()


# --- participants -----------------------------------------------------------------------


class Miner:
    """A participant driven one call at a time; its key is SHA-256 of `name`."""

    def __init__(
        self,
        caller: Caller,
        name: str,
        models: Sequence[str] = ("gonka-tiny",),
        devices: int = 1,
    ) -> None:
        self.caller = caller
        self.who: Account = account(name)
        self.key = self.who.key
        self.address = self.who.address
        self.models = list(models)
        self.devices = [{"name": f"cpu{i}"} for i in range(devices)]

    def registration(self) -> dict[str, Any]:
        return {
            "pubkey": self.key.public_key.to_hex(),
            "models": self.models,
            "devices": self.devices,
        }

    def register(self) -> Miner:
        fund_collateral(self.caller.url, self.address)
        resp = self.caller.send("POST", "/v1/participants", self.registration(), key=self.key)
        assert resp.status_code == 200, resp.text
        wait_locked(self.caller.url, resp.json())
        return self

    def send(self, method: str, path: str, body: Any = b"", **kwargs: Any) -> requests.Response:
        return self.caller.send(method, path, body, key=self.key, **kwargs)

    def commit(
        self, epoch: int, count: int, root: str, model: str = "gonka-tiny"
    ) -> requests.Response:
        body = {"epoch": epoch, "model": model, "count": count, "root": root}
        return self.send("POST", "/v1/poc/commits", body)

    def poll(self, wait_s: float = 0.0, **params: Any) -> requests.Response:
        return self.send(
            "GET", "/v1/work", params={"wait": f"{wait_s:g}", **params}, timeout_s=WAIT_S + wait_s
        )

    def items(self, wait_s: float = 0.0) -> list[dict[str, Any]]:
        resp = self.poll(wait_s)
        assert resp.status_code == 200, resp.text
        found: list[dict[str, Any]] = resp.json()["items"]
        return found

    def next_item(self, kind: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """Poll until a work item of `kind` arrives (any other kind fails the test)."""
        limit = time.monotonic() + timeout_s
        while True:
            items = self.items(wait_s=0.5)
            if items:
                assert [i["kind"] for i in items] == [kind], items
                return items[0]
            assert time.monotonic() < limit, f"{self.address}: no {kind} item in {timeout_s} s"

    def result(self, item_id: str, body: Any) -> requests.Response:
        return self.send("POST", f"/v1/work/{item_id}/result", body)


# --- real compute -----------------------------------------------------------------------


def artifacts(seed: str, key: PrivateKey, nonces: Sequence[int], seq_len: int) -> list[bytes]:
    """The PoC artifacts of `nonces` for the participant holding `key` (gonka-tiny, CPU)."""
    from gonka_cli.compute.models import load_model
    from gonka_cli.compute.poc import PocInputParams, compute_artifacts

    model = load_model("gonka-tiny")
    return list(
        compute_artifacts(
            model,
            seed,
            key.public_key.to_hex(),
            list(nonces),
            params=PocInputParams(seq_len=seq_len),
        )
    )


def build_tree(nonces: Sequence[int], vectors: Sequence[bytes]) -> Any:
    """The in-memory sum tree a miner commits to."""
    from gonka_cli.compute import artifacts as art
    from gonka_cli.compute.smst import SMST

    tree = SMST()
    tree.insert_many(art.leaf_data(n, v) for n, v in zip(nonces, vectors, strict=True))
    return tree


def honest_answer(item: dict[str, Any]) -> dict[str, Any]:
    """What an honest executor returns for an inference item (a real generation)."""
    from gonka_cli.compute.inference import generate
    from gonka_cli.compute.models import load_model

    gen = generate(
        load_model(item["model"]),
        item["prompt_tokens"],
        item["max_tokens"],
        temperature=item["temperature"],
        seed=item["seed"],
    ).to_dict()
    return {
        "tokens": gen["tokens"],
        "top_logprobs": gen["top_logprobs"],
        "finish_reason": gen["finish_reason"],
    }
