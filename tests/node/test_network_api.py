"""Bad input and abuse of the node's mining API, against real nodes on 127.0.0.1.

Every refusal is checked three ways: the HTTP status, the error code, and that nothing was
credited or changed (no commit, no weight, no registration, balances untouched, the work
item still open). Two module-wide nodes serve the checks:

- `service`: epochs so long that none ends during the module, so no settlement moves money
  under a test. One participant (`executor`, one device) serves gonka-tiny and answers
  inference tasks by hand; `other` serves gonka-small only, so it is never given a
  gonka-tiny task; nobody serves gonka-medium. Requesters are genesis accounts.
- `mining`: 4-second epochs for PoC commits and proofs. One PoC round (`poc_round`) runs
  an honest prover beside provers that cheat in different ways, and the epoch's
  settlement must pay the honest one alone.

Participants use fresh keys per test (`account(name)`), so tests sharing a node do not
interfere.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from gonka_cli.compute import artifacts as art
from gonka_cli.compute.tokenizer import chat_template
from gonka_cli.compute.validation import ProofAnswer, build_answers
from gonka_cli.node.epochs import GENERATE, GNK, INFERENCE, VALIDATE, NetworkParams
from gonka_cli.node.http import MAX_BODY_BYTES
from gonka_cli.node.ledger import ESCROW_ADDRESS, Ledger
from gonka_cli.node.runner import Node
from gonka_cli.protocol import ErrorCode
from tests.conftest import StartNode
from tests.node.helpers import WAIT_S, Api, account, b64, high_s
from tests.node.network_helpers import (
    Caller,
    Miner,
    artifacts,
    assert_refused,
    build_tree,
    encode,
    fund_collateral,
    honest_answer,
    view,
    wait_height,
    wait_locked,
    wait_phase,
    wait_until,
)

TINY = "gonka-tiny"
PRICE_NGONKA = 1_000
MESSAGES = [{"role": "user", "content": "Hi"}]
MAX_TOKENS = 8
#: What a chat of MESSAGES and MAX_TOKENS escrows.
ESCROW_NGONKA = (len(chat_template(MESSAGES)) + MAX_TOKENS) * PRICE_NGONKA
CHAT = {
    "model": TINY,
    "messages": MESSAGES,
    "max_tokens": MAX_TOKENS,
    "temperature": 0,
    "seed": 7,
    "logprobs": True,
}

REQUESTER = account("requester")
#: Not enough for one escrow.
POOR = account("poor")
#: Enough for one escrow, not for two.
TIGHT = account("tight")
#: Holds nothing and is registered nowhere: the forger.
MALLORY = account("mallory")
SERVICE_ACCOUNTS = [
    (REQUESTER.address, 1_000 * GNK),
    (POOR.address, ESCROW_NGONKA - 1),
    (TIGHT.address, ESCROW_NGONKA * 3 // 2),
]
SERVICE = NetworkParams(
    epoch_blocks=1_000_000,
    poc_generate_blocks=10,
    poc_validate_blocks=10,
    price_per_token_ngonka=PRICE_NGONKA,
    inference_timeout_s=20,
    participant_timeout_s=600,
    validation_share=0.0,
)

MINING_BLOCK_S = 0.05
MINING = NetworkParams(
    epoch_blocks=80,
    poc_generate_blocks=30,
    poc_validate_blocks=25,
    inference_timeout_s=2,
    participant_timeout_s=5,
)
#: Made-up roots.
ROOT_A, ROOT_B, ROOT_C = "aa" * 32, "bb" * 32, "cc" * 32


# --- nodes and participants -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> Iterator[None]:
    """gonka-tiny loaded once (the node's recomputation shares the process's model cache),
    on one intra-op thread: on a small, busy machine two threads spin against each other and
    the nodes' threads, and a PoC round's compute can outlast its phase."""
    import torch

    from gonka_cli.compute.models import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    load_model(TINY)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def service_node(start_module_node: StartNode) -> Node:
    return start_module_node(SERVICE_ACCOUNTS, name="service", network=SERVICE)


@pytest.fixture(scope="module")
def svc(service_node: Node) -> Caller:
    return Caller(service_node)


@pytest.fixture(scope="module")
def executor(svc: Caller, tiny: None) -> Miner:
    return Miner(svc, "executor", [TINY], devices=1).register()


@pytest.fixture(scope="module")
def other(svc: Caller) -> Miner:
    return Miner(svc, "other", ["gonka-small"]).register()


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as threads:
        yield threads


def _ledger(node: Node) -> Ledger:
    assert node.ledger is not None
    return node.ledger


def balance(node: Node, address: str) -> int:
    state = _ledger(node).account(address)
    return state.balance if state else 0


WATCHED = [REQUESTER, POOR, TIGHT, MALLORY]


def snapshot(node: Node) -> dict[str, int]:
    """The balances a refused request must leave alone (escrow included)."""
    addresses = [a.address for a in WATCHED] + [ESCROW_ADDRESS]
    return {a: balance(node, a) for a in addresses}


def mempool_empty(node: Node) -> bool:
    return int(Api(node).status()["mempool_txs"]) == 0


@pytest.fixture
def idle(service_node: Node, svc: Caller, executor: Miner, other: Miner) -> Iterator[Caller]:
    """The service node; afterwards no money moved and no work was handed out."""
    wait_until(lambda: mempool_empty(service_node), "an empty mempool")
    before = snapshot(service_node)
    yield svc
    # A wrongly accepted escrow is in the mempool, or already in a block.
    assert mempool_empty(service_node)
    assert snapshot(service_node) == before
    assert executor.items() == []
    assert other.items() == []
    # Inference tasks must keep going to the executor alone.
    serving = [a for a, row in registered(svc).items() if TINY in row["models"]]
    assert serving == [executor.address]


def registered(caller: Caller) -> dict[str, dict[str, Any]]:
    rows = caller.public("/v1/epochs/current/participants")["participants"]
    return {r["address"]: r for r in rows}


# --- background chats -------------------------------------------------------------------


def chat_body(**changes: Any) -> dict[str, Any]:
    body = dict(CHAT)
    body.update(changes)
    return body


def start_chat(
    pool: ThreadPoolExecutor, caller: Caller, who: Any, body: Any = None
) -> Future[requests.Response]:
    """POST a chat from `who` on a thread: it returns once an executor answers."""
    body = chat_body() if body is None else body
    return pool.submit(caller.send, "POST", "/v1/chat/completions", body, key=who.key)


@dataclass
class Task:
    """An inference task the executor holds, and the requester's pending chat."""

    item: dict[str, Any]
    chat: Future[requests.Response]
    answer: dict[str, Any] = field(default_factory=dict)

    def completion(self) -> dict[str, Any]:
        resp = self.chat.result(timeout=WAIT_S)
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data


@pytest.fixture
def task(pool: ThreadPoolExecutor, svc: Caller, executor: Miner, other: Miner) -> Iterator[Task]:
    """A chat from REQUESTER, handed to the executor as an open inference task."""
    chat = start_chat(pool, svc, REQUESTER)
    item = executor.next_item("inference")
    found = Task(item, chat, honest_answer(item))
    yield found
    if not chat.done():  # the test failed half-way: free the executor
        executor.result(item["id"], found.answer)
        chat.result(timeout=WAIT_S)


# --- 1. signed requests -----------------------------------------------------------------

Forgery = Callable[[Caller, bytes], tuple[bytes, dict[str, str]]]


def _signed(caller: Caller, raw: bytes, **options: Any) -> dict[str, str]:
    return caller.sign(REQUESTER.key, raw, **options)


def _unsigned(caller: Caller, raw: bytes) -> tuple[bytes, dict[str, str]]:
    return raw, {}


def _without(header: str) -> Forgery:
    def forge(caller: Caller, raw: bytes) -> tuple[bytes, dict[str, str]]:
        headers = _signed(caller, raw)
        del headers[header]
        return raw, headers

    return forge


def _with(header: str, value: str) -> Forgery:
    def forge(caller: Caller, raw: bytes) -> tuple[bytes, dict[str, str]]:
        return raw, {**_signed(caller, raw), header: value}

    return forge


def _random_signature(caller: Caller, raw: bytes) -> tuple[bytes, dict[str, str]]:
    return raw, {**_signed(caller, raw), "Authorization": b64(secrets.token_bytes(64))}


def _signed_by_another_key(caller: Caller, raw: bytes) -> tuple[bytes, dict[str, str]]:
    """Mallory signs, naming REQUESTER and REQUESTER's public key."""
    headers = caller.sign(MALLORY.key, raw)
    headers["X-Requester-Address"] = REQUESTER.address
    headers["X-Requester-Pubkey"] = b64(REQUESTER.key.public_key.to_bytes())
    return raw, headers


def _pubkey_of_another_key(caller: Caller, raw: bytes) -> tuple[bytes, dict[str, str]]:
    """Mallory signs and sends her own key, naming REQUESTER's address."""
    headers = caller.sign(MALLORY.key, raw)
    headers["X-Requester-Address"] = REQUESTER.address
    return raw, headers


def _body_changed(caller: Caller, raw: bytes) -> tuple[bytes, dict[str, str]]:
    headers = _signed(caller, raw)
    return raw.replace(b'"max_tokens":8', b'"max_tokens":9'), headers


def _other_receiver(caller: Caller, raw: bytes) -> tuple[bytes, dict[str, str]]:
    return raw, _signed(caller, raw, receiver=account("another-node").address)


def _restamped(caller: Caller, raw: bytes) -> tuple[bytes, dict[str, str]]:
    """A request signed 50 s ago whose timestamp is moved to now, to stretch its life."""
    headers = _signed(caller, raw, timestamp_ns=time.time_ns() - 50 * 10**9)
    return raw, {**headers, "X-Timestamp": str(time.time_ns())}


def _aged(seconds: float) -> Forgery:
    def forge(caller: Caller, raw: bytes) -> tuple[bytes, dict[str, str]]:
        return raw, _signed(caller, raw, timestamp_ns=time.time_ns() + int(seconds * 1e9))

    return forge


FORGERIES: dict[str, tuple[Forgery, ErrorCode]] = {
    "unsigned": (_unsigned, ErrorCode.BAD_SIGNATURE),
    "no-signature": (_without("Authorization"), ErrorCode.BAD_SIGNATURE),
    "no-timestamp": (_without("X-Timestamp"), ErrorCode.BAD_SIGNATURE),
    "no-address": (_without("X-Requester-Address"), ErrorCode.BAD_SIGNATURE),
    "no-pubkey-of-unknown-key": (_without("X-Requester-Pubkey"), ErrorCode.BAD_SIGNATURE),
    "empty-signature": (_with("Authorization", ""), ErrorCode.BAD_SIGNATURE),
    "random-signature": (_random_signature, ErrorCode.BAD_SIGNATURE),
    "signed-by-another-key": (_signed_by_another_key, ErrorCode.BAD_SIGNATURE),
    "pubkey-of-another-key": (_pubkey_of_another_key, ErrorCode.BAD_SIGNATURE),
    "body-changed-after-signing": (_body_changed, ErrorCode.BAD_SIGNATURE),
    "signed-for-another-node": (_other_receiver, ErrorCode.BAD_SIGNATURE),
    "timestamp-moved-after-signing": (_restamped, ErrorCode.BAD_SIGNATURE),
    "expired": (_aged(-61), ErrorCode.BAD_SIGNATURE),
    "long-expired": (_aged(-3600), ErrorCode.BAD_SIGNATURE),
    "future": (_aged(45), ErrorCode.BAD_SIGNATURE),
    "timestamp-not-digits": (_with("X-Timestamp", "12ab"), ErrorCode.BAD_SIGNATURE),
    "timestamp-negative": (_with("X-Timestamp", "-5"), ErrorCode.BAD_SIGNATURE),
    "timestamp-float": (_with("X-Timestamp", "1.7e18"), ErrorCode.BAD_SIGNATURE),
    "timestamp-21-digits": (_with("X-Timestamp", "1" * 21), ErrorCode.BAD_SIGNATURE),
    "timestamp-seconds": (_with("X-Timestamp", str(int(time.time()))), ErrorCode.BAD_SIGNATURE),
    "signature-not-base64": (_with("Authorization", "Bearer abc"), ErrorCode.BAD_SIGNATURE),
    "signature-63-bytes": (_with("Authorization", b64(bytes(63))), ErrorCode.BAD_SIGNATURE),
    "signature-65-bytes": (_with("Authorization", b64(bytes(65))), ErrorCode.BAD_SIGNATURE),
    "signature-der": (_with("Authorization", b64(bytes(72))), ErrorCode.BAD_SIGNATURE),
    "address-malformed": (
        _with("X-Requester-Address", "gonka1notanaddress"),
        ErrorCode.BAD_SIGNATURE,
    ),
    "address-other-prefix": (
        _with("X-Requester-Address", "cosmos1" + REQUESTER.address[len("gonka1") :]),
        ErrorCode.BAD_SIGNATURE,
    ),
    "pubkey-not-base64": (_with("X-Requester-Pubkey", "%%%"), ErrorCode.BAD_SIGNATURE),
    "pubkey-32-bytes": (
        _with("X-Requester-Pubkey", b64(REQUESTER.key.public_key.to_bytes()[1:])),
        ErrorCode.BAD_SIGNATURE,
    ),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_badly_signed_chat_is_401_and_escrows_nothing(idle: Caller, name: str) -> None:
    forge, code = FORGERIES[name]
    raw, headers = forge(idle, encode(chat_body()))
    resp = idle.resend("POST", "/v1/chat/completions", raw, headers)
    assert_refused(resp, code)


def test_replayed_chat_is_401_and_escrows_once(
    pool: ThreadPoolExecutor, svc: Caller, service_node: Node, executor: Miner
) -> None:
    wait_until(lambda: mempool_empty(service_node), "an empty mempool")
    before = balance(service_node, REQUESTER.address)
    raw = encode(chat_body())
    headers = svc.sign(REQUESTER.key, raw)
    first = pool.submit(svc.resend, "POST", "/v1/chat/completions", raw, headers)
    item = executor.next_item("inference")
    assert executor.result(item["id"], honest_answer(item)).status_code == 200
    assert first.result(timeout=WAIT_S).status_code == 200

    again = svc.resend("POST", "/v1/chat/completions", raw, headers)
    assert_refused(again, ErrorCode.BAD_SIGNATURE)
    wait_until(lambda: mempool_empty(service_node), "an empty mempool")
    assert balance(service_node, REQUESTER.address) == before - ESCROW_NGONKA
    assert executor.items() == []


def test_replay_with_the_high_s_twin_of_the_signature_is_401(
    pool: ThreadPoolExecutor, svc: Caller, service_node: Node, executor: Miner
) -> None:
    """n - s makes a different signature of the same request: it must not pass as new."""
    wait_until(lambda: mempool_empty(service_node), "an empty mempool")
    before = balance(service_node, REQUESTER.address)
    raw = encode(chat_body())
    headers = svc.sign(REQUESTER.key, raw)
    first = pool.submit(svc.resend, "POST", "/v1/chat/completions", raw, headers)
    item = executor.next_item("inference")
    assert executor.result(item["id"], honest_answer(item)).status_code == 200
    assert first.result(timeout=WAIT_S).status_code == 200
    twin = b64(high_s(base64.b64decode(headers["Authorization"])))
    resp = svc.resend("POST", "/v1/chat/completions", raw, {**headers, "Authorization": twin})
    assert_refused(resp, ErrorCode.BAD_SIGNATURE)
    wait_until(lambda: mempool_empty(service_node), "an empty mempool")
    assert balance(service_node, REQUESTER.address) == before - ESCROW_NGONKA
    assert executor.items() == []


def test_replayed_poll_is_401(svc: Caller, executor: Miner) -> None:
    headers = svc.sign(executor.key, b"")
    first = svc.http.get(svc.url + "/v1/work", headers=headers, timeout=WAIT_S)
    assert first.status_code == 200, first.text
    again = svc.http.get(svc.url + "/v1/work", headers=headers, timeout=WAIT_S)
    assert_refused(again, ErrorCode.BAD_SIGNATURE)


def test_participant_key_is_the_registered_one(idle: Caller, executor: Miner) -> None:
    """Mallory names the executor and offers her own key: the registered key decides."""
    headers = idle.sign(MALLORY.key, b"")
    headers["X-Requester-Address"] = executor.address
    resp = idle.http.get(idle.url + "/v1/work", headers=headers, timeout=WAIT_S)
    assert_refused(resp, ErrorCode.BAD_SIGNATURE)


# --- 2. registration --------------------------------------------------------------------


def _register(caller: Caller, who: Miner, body: Any, key: Any = None) -> requests.Response:
    return caller.send("POST", "/v1/participants", body, key=key or who.key)


BAD_REGISTRATIONS: dict[str, tuple[dict[str, Any], ErrorCode]] = {
    "unknown-model": ({"models": ["gonka-huge"]}, ErrorCode.UNKNOWN_MODEL),
    "one-bad-model": ({"models": [TINY, "gpt-4"]}, ErrorCode.UNKNOWN_MODEL),
    "models-a-string": ({"models": TINY}, ErrorCode.BAD_REQUEST),
    "models-an-object": ({"models": {TINY: 1}}, ErrorCode.BAD_REQUEST),
    "models-empty": ({"models": []}, ErrorCode.BAD_REQUEST),
    "models-17": ({"models": [TINY] * 17}, ErrorCode.BAD_REQUEST),
    "models-missing": ({"models": None}, ErrorCode.BAD_REQUEST),
    "model-not-a-name": ({"models": [5]}, ErrorCode.BAD_REQUEST),
    "devices-65": ({"devices": [{"name": "gpu"}] * 65}, ErrorCode.BAD_REQUEST),
    "devices-a-string": ({"devices": "gpu"}, ErrorCode.BAD_REQUEST),
    "device-not-object": ({"devices": ["gpu"]}, ErrorCode.BAD_REQUEST),
    "device-over-1-kib": ({"devices": [{"name": "g" * 1100}]}, ErrorCode.BAD_REQUEST),
    "pubkey-missing": ({"pubkey": None}, ErrorCode.BAD_PUBKEY),
    "pubkey-short": ({"pubkey": "02" + "ab" * 31}, ErrorCode.BAD_PUBKEY),
    "pubkey-not-hex": ({"pubkey": "zz" * 33}, ErrorCode.BAD_PUBKEY),
    "pubkey-uncompressed-prefix": ({"pubkey": "04" + "ab" * 32}, ErrorCode.BAD_PUBKEY),
}


@pytest.mark.parametrize("name", list(BAD_REGISTRATIONS))
def test_bad_registration_is_refused_and_registers_nothing(idle: Caller, name: str) -> None:
    changes, code = BAD_REGISTRATIONS[name]
    who = Miner(idle, f"bad-registration-{name}")
    body = {**who.registration(), **changes}
    body = {k: v for k, v in body.items() if v is not None}
    assert_refused(_register(idle, who, body), code)
    assert who.address not in registered(idle)


def test_registration_with_a_key_off_the_curve_is_401(idle: Caller) -> None:
    who = Miner(idle, "off-curve")
    body = {**who.registration(), "pubkey": "02" + "00" * 32}
    assert_refused(_register(idle, who, body), ErrorCode.BAD_SIGNATURE)
    assert who.address not in registered(idle)


def test_unsigned_registration_is_401(idle: Caller) -> None:
    who = Miner(idle, "unsigned-registration")
    resp = idle.send("POST", "/v1/participants", who.registration())
    assert_refused(resp, ErrorCode.BAD_SIGNATURE)
    assert who.address not in registered(idle)


def test_registration_replayed_is_401(idle: Caller) -> None:
    who = Miner(idle, "replayed-registration", ["gonka-small"])
    fund_collateral(idle.url, who.address)
    raw = encode(who.registration())
    headers = idle.sign(who.key, raw)
    first = idle.resend("POST", "/v1/participants", raw, headers)
    assert first.status_code == 200
    wait_locked(idle.url, first.json())
    assert_refused(idle.resend("POST", "/v1/participants", raw, headers), ErrorCode.BAD_SIGNATURE)
    assert registered(idle)[who.address]["models"] == ["gonka-small"]


def test_second_registration_with_another_key_is_403(idle: Caller) -> None:
    owner = Miner(idle, "owner", ["gonka-small"]).register()
    thief = Miner(idle, "thief")
    # The thief signs with its own key and sends it, naming the owner's address.
    raw = encode({**thief.registration(), "models": [TINY]})
    headers = idle.sign(thief.key, raw)
    headers["X-Requester-Address"] = owner.address
    assert_refused(idle.resend("POST", "/v1/participants", raw, headers), ErrorCode.KEY_MISMATCH)
    row = registered(idle)[owner.address]
    assert row["pubkey"] == owner.key.public_key.to_hex()
    assert row["models"] == ["gonka-small"]
    assert thief.address not in registered(idle)


def test_registration_signed_by_one_key_for_another_address_is_refused(idle: Caller) -> None:
    signer, victim = Miner(idle, "signer-a"), Miner(idle, "victim-b")
    # The signer's key in the body, the victim's address in the header: 403.
    raw = encode(signer.registration())
    headers = idle.sign(signer.key, raw)
    headers["X-Requester-Address"] = victim.address
    assert_refused(idle.resend("POST", "/v1/participants", raw, headers), ErrorCode.KEY_MISMATCH)
    # The victim's key in the body, signed by the signer: the signature fails.
    raw = encode(victim.registration())
    headers = idle.sign(signer.key, raw)
    headers["X-Requester-Address"] = victim.address
    assert_refused(idle.resend("POST", "/v1/participants", raw, headers), ErrorCode.BAD_SIGNATURE)
    known = registered(idle)
    assert signer.address not in known and victim.address not in known


# --- 3. bodies: malformed JSON, not an object, over the limit ----------------------------

BAD_BODIES: dict[str, tuple[bytes, ErrorCode]] = {
    "not-json": (b'{"model": ', ErrorCode.BAD_REQUEST),
    "not-utf8": (b'{"model": "\xff"}', ErrorCode.BAD_REQUEST),
    "deeply-nested": (b"[" * 100_000 + b"]" * 100_000, ErrorCode.BAD_REQUEST),
    "a-list": (b"[1, 2]", ErrorCode.BAD_REQUEST),
    "a-string": (b'"hello"', ErrorCode.BAD_REQUEST),
    "null": (b"null", ErrorCode.BAD_REQUEST),
    "over-1-mib": (b'{"x": "' + b"A" * MAX_BODY_BYTES + b'"}', ErrorCode.BODY_TOO_LARGE),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_body_on_chat_is_refused(idle: Caller, name: str) -> None:
    raw, code = BAD_BODIES[name]
    resp = idle.resend("POST", "/v1/chat/completions", raw, idle.sign(REQUESTER.key, raw))
    assert_refused(resp, code)


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_body_on_registration_is_refused(idle: Caller, name: str) -> None:
    raw, code = BAD_BODIES[name]
    who = Miner(idle, f"bad-body-{name}")
    resp = idle.resend("POST", "/v1/participants", raw, idle.sign(who.key, raw))
    assert_refused(resp, code)
    assert who.address not in registered(idle)


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_body_on_a_result_is_refused_and_keeps_the_task(
    task: Task, executor: Miner, name: str
) -> None:
    raw, code = BAD_BODIES[name]
    assert_refused(executor.result(task.item["id"], raw), code)
    accepted = executor.result(task.item["id"], task.answer)
    assert accepted.status_code == 200, accepted.text
    assert task.completion()["gonka"]["executor"] == executor.address


# --- 4. work results --------------------------------------------------------------------


def test_result_for_an_unknown_item_is_404(idle: Caller, executor: Miner) -> None:
    for item_id in (secrets.token_hex(16), "x" * 200):
        resp = executor.result(item_id, {"tokens": [1], "top_logprobs": [[]]})
        assert_refused(resp, ErrorCode.UNKNOWN_ITEM)


def test_result_from_another_participant_is_403_and_the_task_stays_open(
    task: Task, executor: Miner, other: Miner, svc: Caller
) -> None:
    item_id = task.item["id"]
    assert_refused(other.result(item_id, task.answer), ErrorCode.NOT_ASSIGNEE)
    # Not registered at all.
    resp = svc.send("POST", f"/v1/work/{item_id}/result", task.answer, key=MALLORY.key)
    assert_refused(resp, ErrorCode.NOT_REGISTERED)
    # The executor's address with Mallory's signature.
    raw = encode(task.answer)
    headers = svc.sign(MALLORY.key, raw)
    headers["X-Requester-Address"] = executor.address
    resp = svc.resend("POST", f"/v1/work/{item_id}/result", raw, headers)
    assert_refused(resp, ErrorCode.BAD_SIGNATURE)
    assert not task.chat.done()

    accepted = executor.result(item_id, task.answer)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"id": item_id, "status": "accepted"}
    completion = task.completion()
    assert completion["gonka"]["executor"] == executor.address
    assert completion["usage"]["completion_tokens"] == len(task.answer["tokens"])


def test_duplicate_result_is_idempotent_and_a_different_one_is_409(
    task: Task, executor: Miner, svc: Caller
) -> None:
    item_id = task.item["id"]
    first = executor.result(item_id, task.answer)
    assert first.json() == {"id": item_id, "status": "accepted"}
    inference_id = task.item["inference_id"]
    # The same result again (signed anew): nothing more happens.
    again = executor.result(item_id, task.answer)
    assert again.status_code == 200, again.text
    assert again.json() == {"id": item_id, "status": "duplicate"}
    changed = dict(task.answer, tokens=[(t + 1) % 256 for t in task.answer["tokens"]])
    assert_refused(executor.result(item_id, changed), ErrorCode.RESULT_CONFLICT)
    completion = task.completion()
    assert completion["usage"]["completion_tokens"] == len(task.answer["tokens"])
    record = svc.public(f"/v1/inferences/{inference_id}")
    assert record["status"] == "completed" and record["executor"] == executor.address
    assert record["completion_tokens"] == len(task.answer["tokens"])


def _with_answer(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def make(answer: dict[str, Any]) -> dict[str, Any]:
        body = {**answer, **changes}
        return {k: v for k, v in body.items() if v is not None}

    return make


def _tokens(tokens: list[Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return _with_answer(tokens=tokens, top_logprobs=[[] for _ in tokens])


BAD_RESULTS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], ErrorCode]] = {
    "token-out-of-vocab": (_tokens([5, 264]), ErrorCode.BAD_REQUEST),
    "token-negative": (_tokens([-1]), ErrorCode.BAD_REQUEST),
    "token-bool": (_tokens([True]), ErrorCode.BAD_REQUEST),
    "token-float": (_tokens([1.0]), ErrorCode.BAD_REQUEST),
    "token-string": (_tokens(["a"]), ErrorCode.BAD_REQUEST),
    "no-tokens": (_tokens([]), ErrorCode.BAD_REQUEST),
    "too-many-tokens": (_tokens([65] * (MAX_TOKENS + 1)), ErrorCode.BAD_REQUEST),
    "tokens-missing": (_with_answer(tokens=None), ErrorCode.BAD_REQUEST),
    "tokens-not-a-list": (_with_answer(tokens="hello"), ErrorCode.BAD_REQUEST),
    "top-logprobs-too-short": (
        lambda a: {**a, "top_logprobs": a["top_logprobs"][:-1]},
        ErrorCode.BAD_REQUEST,
    ),
    "top-logprobs-too-long": (
        lambda a: {**a, "top_logprobs": [*a["top_logprobs"], []]},
        ErrorCode.BAD_REQUEST,
    ),
    "top-logprobs-missing": (_with_answer(top_logprobs=None), ErrorCode.BAD_REQUEST),
    "top-logprobs-entry-not-a-list": (
        lambda a: {**a, "top_logprobs": ["x"] * len(a["tokens"])},
        ErrorCode.BAD_REQUEST,
    ),
    "top-logprobs-22-pairs": (
        lambda a: {
            **a,
            "top_logprobs": [[{"token": t, "logprob": -1.0} for t in range(22)]] * len(a["tokens"]),
        },
        ErrorCode.BAD_REQUEST,
    ),
    "finish-reason-unknown": (_with_answer(finish_reason="eos"), ErrorCode.BAD_REQUEST),
    "finish-reason-a-number": (_with_answer(finish_reason=1), ErrorCode.BAD_REQUEST),
}


@pytest.mark.parametrize("name", list(BAD_RESULTS))
def test_malformed_inference_result_is_400_and_keeps_the_task(
    task: Task, executor: Miner, svc: Caller, name: str
) -> None:
    make, _ = BAD_RESULTS[name]
    item_id = task.item["id"]
    assert_refused(executor.result(item_id, make(task.answer)), ErrorCode.BAD_REQUEST)
    assert not task.chat.done()
    record = svc.public(f"/v1/inferences/{task.item['inference_id']}")
    assert record["status"] == "queued" and record["executor"] == ""
    # The rightful answer still goes through, and is what the requester gets.
    accepted = executor.result(item_id, task.answer)
    assert accepted.json() == {"id": item_id, "status": "accepted"}
    completion = task.completion()
    tokens = [c["token_id"] for c in completion["choices"][0]["logprobs"]["content"]]
    assert tokens == task.answer["tokens"]


@pytest.mark.parametrize(
    "entry",
    [
        {"token": "a", "logprob": -0.5},
        {"token": 5, "logprob": "high"},
        {"token": 5, "logprob": 3.0},
        {"token": 5, "logprob": float("nan")},
        {"token": True, "logprob": -0.5},
        {"token": 999, "logprob": -0.5},
        ["a", "b"],
        [5],
        "pair",
    ],
    ids=[
        "token-string",
        "logprob-string",
        "logprob-positive",
        "logprob-nan",
        "token-bool",
        "token-out-of-vocab",
        "pair-of-strings",
        "pair-too-short",
        "not-a-pair",
    ],
)
def test_top_logprobs_pairs_that_are_not_token_logprob_pairs_are_400(
    task: Task, executor: Miner, entry: Any
) -> None:
    """An executor's junk must not reach the requester as the completion's logprobs."""
    item_id = task.item["id"]
    junk = {**task.answer, "top_logprobs": [[entry] for _ in task.answer["tokens"]]}
    assert_refused(executor.result(item_id, junk), ErrorCode.BAD_REQUEST)
    accepted = executor.result(item_id, task.answer)
    assert accepted.json() == {"id": item_id, "status": "accepted"}
    task.completion()


BAD_WAITS = {
    "wait": ["-1", "61", "abc", "nan", "inf", "1e400"],
    "max": ["0", "65", "-3", "many"],
}


@pytest.mark.parametrize(
    ("param", "value"), [(p, v) for p, values in BAD_WAITS.items() for v in values]
)
def test_poll_with_parameters_out_of_range_is_400(
    idle: Caller, executor: Miner, param: str, value: str
) -> None:
    resp = executor.send("GET", "/v1/work", params={param: value})
    assert_refused(resp, ErrorCode.BAD_REQUEST)


def test_poll_by_a_stranger_is_403(idle: Caller) -> None:
    resp = idle.send("GET", "/v1/work", key=MALLORY.key)
    assert_refused(resp, ErrorCode.NOT_REGISTERED)


# --- 5. chat completions ----------------------------------------------------------------


@pytest.mark.parametrize("who", [POOR, MALLORY], ids=["short-by-one", "no-account"])
def test_chat_without_the_escrow_is_402_and_costs_nothing(idle: Caller, who: Any) -> None:
    resp = idle.send("POST", "/v1/chat/completions", chat_body(), key=who.key)
    assert_refused(resp, ErrorCode.INSUFFICIENT_FUNDS)


def test_second_escrow_over_the_balance_is_402(
    pool: ThreadPoolExecutor, svc: Caller, service_node: Node, executor: Miner
) -> None:
    wait_until(lambda: mempool_empty(service_node), "an empty mempool")
    before = balance(service_node, TIGHT.address)
    first = start_chat(pool, svc, TIGHT)
    item = executor.next_item("inference")  # the first escrow is taken
    second = svc.send("POST", "/v1/chat/completions", chat_body(), key=TIGHT.key)
    assert_refused(second, ErrorCode.INSUFFICIENT_FUNDS)
    assert executor.result(item["id"], honest_answer(item)).status_code == 200
    assert first.result(timeout=WAIT_S).status_code == 200
    wait_until(lambda: mempool_empty(service_node), "an empty mempool")
    assert balance(service_node, TIGHT.address) == before - ESCROW_NGONKA
    assert executor.items() == []


LONG = [{"role": "user", "content": "x" * 300}]
BAD_CHATS: dict[str, tuple[dict[str, Any], ErrorCode]] = {
    "unknown-model": ({"model": "gpt-4"}, ErrorCode.UNKNOWN_MODEL),
    "model-missing": ({"model": None}, ErrorCode.BAD_REQUEST),
    "model-not-a-string": ({"model": [TINY]}, ErrorCode.BAD_REQUEST),
    "nobody-serves-the-model": ({"model": "gonka-medium"}, ErrorCode.NO_EXECUTOR),
    "max-tokens-over-the-limit": ({"max_tokens": 257}, ErrorCode.BAD_REQUEST),
    "max-tokens-over-the-context": (
        {"messages": LONG, "max_tokens": 256},
        ErrorCode.BAD_REQUEST,
    ),
    "max-tokens-zero": ({"max_tokens": 0}, ErrorCode.BAD_REQUEST),
    "max-tokens-negative": ({"max_tokens": -8}, ErrorCode.BAD_REQUEST),
    "max-tokens-string": ({"max_tokens": "8"}, ErrorCode.BAD_REQUEST),
    "max-tokens-float": ({"max_tokens": 8.5}, ErrorCode.BAD_REQUEST),
    "max-tokens-bool": ({"max_tokens": True}, ErrorCode.BAD_REQUEST),
    "max-completion-tokens-huge": (
        {"max_tokens": None, "max_completion_tokens": 10**30},
        ErrorCode.BAD_REQUEST,
    ),
    "temperature-string": ({"temperature": "hot"}, ErrorCode.BAD_REQUEST),
    "temperature-negative": ({"temperature": -0.1}, ErrorCode.BAD_REQUEST),
    "temperature-over-2": ({"temperature": 2.5}, ErrorCode.BAD_REQUEST),
    "temperature-bool": ({"temperature": True}, ErrorCode.BAD_REQUEST),
    "temperature-nan": ({"temperature": float("nan")}, ErrorCode.BAD_REQUEST),
    "seed-negative": ({"seed": -1}, ErrorCode.BAD_REQUEST),
    "seed-string": ({"seed": "7"}, ErrorCode.BAD_REQUEST),
    "seed-float": ({"seed": 7.5}, ErrorCode.BAD_REQUEST),
    "seed-bool": ({"seed": False}, ErrorCode.BAD_REQUEST),
    "seed-2-to-the-63": ({"seed": 2**63}, ErrorCode.BAD_REQUEST),
    "stream-string": ({"stream": "yes"}, ErrorCode.BAD_REQUEST),
    "stream-number": ({"stream": 1}, ErrorCode.BAD_REQUEST),
    "logprobs-string": ({"logprobs": "yes"}, ErrorCode.BAD_REQUEST),
    "top-p-zero": ({"top_p": 0}, ErrorCode.BAD_REQUEST),
    "top-p-over-1": ({"top_p": 1.5}, ErrorCode.BAD_REQUEST),
    "n-2": ({"n": 2}, ErrorCode.BAD_REQUEST),
    "stop-sequences": ({"stop": ["\n"]}, ErrorCode.BAD_REQUEST),
    "messages-missing": ({"messages": None}, ErrorCode.BAD_REQUEST),
    "messages-empty": ({"messages": []}, ErrorCode.BAD_REQUEST),
    "messages-a-string": ({"messages": "Hi"}, ErrorCode.BAD_REQUEST),
    "messages-an-object": ({"messages": MESSAGES[0]}, ErrorCode.BAD_REQUEST),
    "message-not-an-object": ({"messages": ["Hi"]}, ErrorCode.BAD_REQUEST),
    "message-unknown-role": (
        {"messages": [{"role": "robot", "content": "Hi"}]},
        ErrorCode.BAD_REQUEST,
    ),
    "message-content-a-number": (
        {"messages": [{"role": "user", "content": 5}]},
        ErrorCode.BAD_REQUEST,
    ),
    "message-image-part": (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
        ErrorCode.BAD_REQUEST,
    ),
}


@pytest.mark.parametrize("name", list(BAD_CHATS))
def test_bad_chat_request_is_refused_and_escrows_nothing(idle: Caller, name: str) -> None:
    changes, code = BAD_CHATS[name]
    body = {k: v for k, v in chat_body(**changes).items() if v is not None}
    resp = idle.send("POST", "/v1/chat/completions", body, key=REQUESTER.key)
    assert_refused(resp, code)


# --- 6. reads ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epoch", "code"),
    [
        ("7", ErrorCode.NOT_FOUND),
        ("999999999999999999", ErrorCode.NOT_FOUND),
        ("abc", ErrorCode.BAD_REQUEST),
        ("-1", ErrorCode.BAD_REQUEST),
        ("1.5", ErrorCode.BAD_REQUEST),
        ("1" * 19, ErrorCode.BAD_REQUEST),
        ("%D9%A1", ErrorCode.BAD_REQUEST),  # an Arabic-Indic one
    ],
)
def test_epoch_record_refusals(svc: Caller, epoch: str, code: ErrorCode) -> None:
    assert svc.public("/v1/epochs/0")["epoch"] == 0
    assert_refused(svc.get(f"/v1/epochs/{epoch}"), code)


# --- 7. PoC commits ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mining_node(start_module_node: StartNode) -> Node:
    return start_module_node(name="mining", network=MINING, block_time_s=MINING_BLOCK_S)


@pytest.fixture(scope="module")
def mine(mining_node: Node) -> Caller:
    return Caller(mining_node)


def commit_of(caller: Caller, address: str) -> dict[str, Any] | None:
    """The participant's commit in the current epoch, as the node lists it."""
    row = registered(caller).get(address)
    return row["commit"] if row else None


def test_commit_from_an_unregistered_address_is_403(mine: Caller, mining_node: Node) -> None:
    stranger = Miner(mine, "commit-stranger")
    resp = stranger.commit(view(mining_node).epoch, 8, ROOT_A)
    assert_refused(resp, ErrorCode.NOT_REGISTERED)
    assert stranger.address not in registered(mine)


def _commit(**changes: Any) -> dict[str, Any]:
    return {"model": TINY, "count": 8, "root": ROOT_A, **changes}


BAD_COMMITS: dict[str, tuple[dict[str, Any], ErrorCode]] = {
    "count-zero": (_commit(count=0), ErrorCode.BAD_REQUEST),
    "count-negative": (_commit(count=-5), ErrorCode.BAD_REQUEST),
    "count-bool": (_commit(count=True), ErrorCode.BAD_REQUEST),
    "count-float": (_commit(count=8.0), ErrorCode.BAD_REQUEST),
    "count-string": (_commit(count="8"), ErrorCode.BAD_REQUEST),
    "count-huge": (_commit(count=2**62 + 1), ErrorCode.BAD_REQUEST),
    "count-enormous": (_commit(count=10**400), ErrorCode.BAD_REQUEST),
    "count-missing": (_commit(count=None), ErrorCode.BAD_REQUEST),
    "root-short": (_commit(root="ab" * 31), ErrorCode.BAD_REQUEST),
    "root-not-hex": (_commit(root="zz" * 32), ErrorCode.BAD_REQUEST),
    "root-a-number": (_commit(root=12), ErrorCode.BAD_REQUEST),
    "root-missing": (_commit(root=None), ErrorCode.BAD_REQUEST),
    "root-with-spaces": (_commit(root=" " + "ab" * 31 + "a"), ErrorCode.BAD_REQUEST),
    "wrong-model": (_commit(model="gonka-small"), ErrorCode.WRONG_POC_MODEL),
    "model-missing": (_commit(model=None), ErrorCode.BAD_REQUEST),
    "epoch-negative": (_commit(epoch=-1), ErrorCode.BAD_REQUEST),
    "epoch-bool": (_commit(epoch=False), ErrorCode.BAD_REQUEST),
    "epoch-string": (_commit(epoch="0"), ErrorCode.BAD_REQUEST),
}


@pytest.mark.parametrize("name", list(BAD_COMMITS))
def test_malformed_commit_is_400_and_records_nothing(
    mine: Caller, mining_node: Node, name: str
) -> None:
    body, code = BAD_COMMITS[name]
    miner = Miner(mine, f"bad-commit-{name}").register()
    body = {"epoch": view(mining_node).epoch, **body}
    body = {k: v for k, v in body.items() if v is not None}
    assert_refused(miner.send("POST", "/v1/poc/commits", body), code)
    assert commit_of(mine, miner.address) is None


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_body_on_commits_is_refused(mine: Caller, mining_node: Node, name: str) -> None:
    raw, code = BAD_BODIES[name]
    miner = Miner(mine, f"bad-commit-body-{name}").register()
    resp = mine.resend("POST", "/v1/poc/commits", raw, mine.sign(miner.key, raw))
    assert_refused(resp, code)
    assert commit_of(mine, miner.address) is None


def test_commit_for_another_epoch_is_409(mine: Caller, mining_node: Node) -> None:
    miner = Miner(mine, "commit-epochs").register()
    wait_height(mining_node, MINING.epoch_blocks + 1, timeout_s=3 * WAIT_S)  # epoch >= 1
    at = wait_phase(mining_node, GENERATE, blocks_left=12)
    for epoch in (at.epoch - 1, 0, at.epoch + 1, at.epoch + 1000):
        if epoch == at.epoch:
            continue
        resp = miner.commit(epoch, 8, ROOT_A)
        assert_refused(resp, ErrorCode.STALE_EPOCH)
    assert commit_of(mine, miner.address) is None
    # The same commit for the right epoch, in the same phase, is taken.
    ok = miner.commit(at.epoch, 8, ROOT_A)
    assert ok.status_code == 200, ok.text
    assert view(mining_node).epoch == at.epoch
    assert commit_of(mine, miner.address) == {"count": 8, "root": ROOT_A}


@pytest.mark.parametrize("phase", [VALIDATE, INFERENCE])
def test_commit_outside_the_generate_phase_is_409(
    mine: Caller, mining_node: Node, phase: str
) -> None:
    miner = Miner(mine, f"late-commit-{phase}").register()
    at = wait_phase(mining_node, phase, blocks_left=10)
    resp = miner.commit(at.epoch, 8, ROOT_A)
    assert_refused(resp, ErrorCode.COMMITS_CLOSED)
    assert commit_of(mine, miner.address) is None


def test_commit_rules_within_one_epoch(mine: Caller, mining_node: Node) -> None:
    miner = Miner(mine, "commit-rules").register()
    at = wait_phase(mining_node, GENERATE, blocks_left=12)
    epoch = at.epoch
    first = miner.commit(epoch, 8, ROOT_A)
    assert first.json() == {"epoch": epoch, "count": 8, "root": ROOT_A, "duplicate": False}
    # The same commit again: idempotent.
    again = miner.commit(epoch, 8, ROOT_A.upper())
    assert again.status_code == 200, again.text
    assert again.json() == {"epoch": epoch, "count": 8, "root": ROOT_A, "duplicate": True}
    # The same count with another root, or a smaller count: refused.
    assert_refused(miner.commit(epoch, 8, ROOT_B), ErrorCode.ROOT_CONFLICT)
    assert_refused(miner.commit(epoch, 4, ROOT_B), ErrorCode.COUNT_DECREASED)
    assert_refused(miner.commit(epoch, 7, ROOT_A), ErrorCode.COUNT_DECREASED)
    assert commit_of(mine, miner.address) == {"count": 8, "root": ROOT_A}
    # A replayed commit is refused as a replay, not taken as a duplicate.
    raw = encode({"epoch": epoch, "model": TINY, "count": 16, "root": ROOT_C})
    headers = mine.sign(miner.key, raw)
    assert mine.resend("POST", "/v1/poc/commits", raw, headers).status_code == 200
    assert_refused(mine.resend("POST", "/v1/poc/commits", raw, headers), ErrorCode.BAD_SIGNATURE)
    assert view(mining_node).epoch == epoch
    assert commit_of(mine, miner.address) == {"count": 16, "root": ROOT_C}


# --- 8. PoC proofs ----------------------------------------------------------------------

PROVERS = ("honest", "changed", "other-root", "porous", "copycat", "fake", "silent", "late")
#: The provers that answer in the validate phase; the honest one answers last.
ANSWERING = ("changed", "other-root", "porous", "copycat", "fake", "honest")
NONCES = list(range(20))
#: Ten leaves whose nonces reach 10,000: max|nonce| / count = 1,000.
SPARSE_NONCES = [*range(9), 10_000]


@dataclass
class Round:
    epoch: int
    miners: dict[str, Miner]
    responses: dict[str, requests.Response]
    thief: requests.Response  # another prover answering the honest one's request
    malformed: dict[str, requests.Response]  # malformed bodies for the honest one's request
    retry: requests.Response
    during: dict[str, dict[str, Any]]  # the epoch's results right after the answers
    record: dict[str, Any]  # the epoch once settled
    balances: dict[str, int]
    minted: int

    def result(self, name: str) -> dict[str, Any]:
        address = self.miners[name].address
        (found,) = [r for r in self.record["poc_results"] if r["address"] == address]
        return found


class Missed(Exception):
    """The round missed a phase (a busy machine): it runs again in the next epoch."""


def _made_up(count: int) -> list[bytes]:
    """Unit vectors: what a prover that skips the compute would commit to."""
    vectors = []
    for i in range(count):
        values = [0.0] * art.K_DIM
        values[i % art.K_DIM] = 1.0
        vectors.append(art.encode_artifact(values))
    return vectors


def _changed(answer: ProofAnswer) -> ProofAnswer:
    values = list(art.decode_artifact(answer.vector))
    values[0] += 0.5
    return dataclasses.replace(answer, vector=art.encode_artifact(values))


def _answers(proofs: list[ProofAnswer]) -> dict[str, Any]:
    return {"answers": [a.to_dict() for a in proofs]}


def _missed_phase(resp: requests.Response) -> bool:
    return resp.status_code in (409, 410) and (
        "current epoch is" in resp.text or "phase" in resp.text or "deadline" in resp.text
    )


def _run_round(mine: Caller, node: Node, tag: str) -> Round:
    ledger = _ledger(node)
    miners = {name: Miner(mine, f"prover-{name}-{tag}").register() for name in PROVERS}
    made_up = build_tree(NONCES, _made_up(len(NONCES)))
    supply_before, burned_before = ledger.total_supply(), ledger.burned
    at = wait_phase(node, GENERATE, blocks_left=MINING.poc_generate_blocks - 6)
    epoch = at.epoch
    current = mine.public("/v1/epochs/current")
    seed, seq_len = current["seed"], current["poc"]["seq_len"]
    assert current["epoch"] == epoch and seed

    def own(name: str, nonces: list[int]) -> Any:
        return build_tree(nonces, artifacts(seed, miners[name].key, nonces, seq_len))

    honest = own("honest", NONCES)
    trees = {
        "honest": honest,
        "changed": own("changed", NONCES),
        "other-root": own("other-root", NONCES),
        "porous": own("porous", SPARSE_NONCES),
        "copycat": honest,
        "fake": made_up,
        "silent": made_up,
        "late": made_up,
    }
    for name, miner in miners.items():
        resp = miner.commit(epoch, trees[name].count, trees[name].root().hex())
        if _missed_phase(resp):
            raise Missed(f"commit of {name}: {resp.text}")
        assert resp.status_code == 200, (name, resp.text)

    wait_height(node, at.validate[0])
    items = {}
    for name in (*ANSWERING, "late"):
        found = miners[name].items(wait_s=1.0)
        if not found:
            raise Missed(f"no proof request for {name} (height {ledger.height})")
        (items[name],) = found
        assert items[name]["kind"] == "poc_proof" and items[name]["epoch"] == epoch
        assert items[name]["count"] == trees[name].count

    def answers(name: str, tree: Any = None) -> list[ProofAnswer]:
        item = items[name]
        return list(build_answers(tree or trees[name], item["leaf_indices"], item["count"]))

    bodies = {
        "changed": [a if i != 3 else _changed(a) for i, a in enumerate(answers("changed"))],
        # Proofs from another sum tree (of other nonces) than the one committed.
        "other-root": answers("other-root", own("other-root", list(range(100, 120)))),
        "porous": answers("porous"),
        "copycat": answers("copycat"),
        "fake": answers("fake"),
        "honest": answers("honest"),
    }
    # Before its true answers, the honest prover's item meets a thief and malformed bodies.
    honest_id = items["honest"]["id"]
    thief = miners["copycat"].result(honest_id, _answers(bodies["honest"]))
    malformed = {
        "answers-not-a-list": miners["honest"].result(honest_id, {"answers": "all"}),
        "answer-missing-keys": miners["honest"].result(honest_id, {"answers": [{"nonce": 1}]}),
        "proof-hash-not-hex": miners["honest"].result(
            honest_id,
            {"answers": [{**bodies["honest"][0].to_dict(), "proof": ["zz" * 36]}]},
        ),
        "nonce-over-int32": miners["honest"].result(
            honest_id, {"answers": [{**bodies["honest"][0].to_dict(), "nonce": 2**31}]}
        ),
    }
    responses = {}
    for name in ANSWERING:
        responses[name] = miners[name].result(items[name]["id"], _answers(bodies[name]))
        if _missed_phase(responses[name]):
            raise Missed(f"answer of {name}: {responses[name].text}")
    # A refused prover tries again with its true answers.
    retry = miners["changed"].result(items["changed"]["id"], _answers(answers("changed")))
    during = {r["address"]: r for r in mine.public(f"/v1/epochs/{epoch}")["poc_results"]}

    wait_height(node, at.validate[1] + 1)
    responses["late"] = miners["late"].result(items["late"]["id"], _answers(answers("late")))

    def settled() -> dict[str, Any] | None:
        record: dict[str, Any] = mine.public(f"/v1/epochs/{epoch}")
        if record["settled_height"] is None:
            return None
        tx = record["settlement_tx"]
        return record if tx is None or ledger.tx(tx) is not None else None

    record = wait_until(settled, f"the settlement of epoch {epoch}", timeout_s=3 * WAIT_S)
    return Round(
        epoch=epoch,
        miners=miners,
        responses=responses,
        thief=thief,
        malformed=malformed,
        retry=retry,
        during=during,
        record=record,
        balances={name: balance(node, m.address) for name, m in miners.items()},
        # The supply's change, less the cheaters' slashed collateral that was burned.
        minted=ledger.total_supply() - supply_before + (ledger.burned - burned_before),
    )


@pytest.fixture(scope="module")
def poc_round(mine: Caller, mining_node: Node, tiny: None) -> Round:
    """One PoC round: commits in the generate phase, answers in the validate phase, one
    late answer after it, then the settlement at the next epoch's start."""
    missed = []
    for attempt in range(3):
        try:
            return _run_round(mine, mining_node, str(attempt))
        except Missed as exc:
            missed.append(str(exc))
    pytest.fail(f"the PoC round missed its phases three times: {missed}")


def _assert_no_reward(poc: Round, name: str, status: str) -> dict[str, Any]:
    result = poc.result(name)
    assert result["status"] == status, result
    assert result["weight"] == 0, result
    assert poc.balances[name] == 0
    return result


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("changed", "1 of 20 answers fail the structural checks; first, leaf 3: the sum-tree"),
        ("other-root", "20 of 20 answers fail the structural checks; first, leaf 0: the sum-tree"),
        ("porous", "porosity max|nonce|/count = 1000 is not below 100"),
    ],
)
def test_proofs_that_do_not_match_the_commit_are_422_and_earn_nothing(
    poc_round: Round, name: str, fragment: str
) -> None:
    resp = poc_round.responses[name]
    assert_refused(resp, ErrorCode.PROOFS_INVALID)
    # Recorded at once, before the epoch ends.
    address = poc_round.miners[name].address
    assert poc_round.during[address]["status"] == "invalid"
    assert poc_round.during[address]["weight"] == 0
    result = _assert_no_reward(poc_round, name, "invalid")
    assert fragment in result["reason"]


def test_refused_proofs_cannot_be_answered_again(poc_round: Round) -> None:
    assert_refused(poc_round.retry, ErrorCode.RESULT_CONFLICT)
    _assert_no_reward(poc_round, "changed", "invalid")


@pytest.mark.parametrize("name", ["copycat", "fake"])
def test_proofs_of_artifacts_not_computed_by_the_prover_are_fraud(
    poc_round: Round, name: str
) -> None:
    resp = poc_round.responses[name]
    assert resp.status_code == 200, resp.text
    assert resp.json()["validation"] == "pending"
    _assert_no_reward(poc_round, name, "fraud")


@pytest.mark.parametrize(
    "case", ["answers-not-a-list", "answer-missing-keys", "proof-hash-not-hex", "nonce-over-int32"]
)
def test_malformed_proof_answers_are_400_and_keep_the_request(poc_round: Round, case: str) -> None:
    assert_refused(poc_round.malformed[case], ErrorCode.BAD_REQUEST)
    # The true answers that followed were taken, and paid.
    assert poc_round.responses["honest"].status_code == 200
    assert poc_round.result("honest")["status"] == "valid"


def test_proof_request_of_another_prover_is_403(poc_round: Round) -> None:
    assert_refused(poc_round.thief, ErrorCode.NOT_ASSIGNEE)
    assert poc_round.responses["honest"].status_code == 200
    assert poc_round.result("honest")["status"] == "valid"
    _assert_no_reward(poc_round, "copycat", "fraud")


def test_silent_prover_earns_nothing(poc_round: Round) -> None:
    _assert_no_reward(poc_round, "silent", "no_answer")


def test_proofs_after_the_validate_phase_are_410_and_earn_nothing(poc_round: Round) -> None:
    late = poc_round.responses["late"]
    assert late.status_code == 410, late.text
    assert late.json()["error_code"] in (ErrorCode.ITEM_EXPIRED, ErrorCode.VALIDATION_CLOSED)
    _assert_no_reward(poc_round, "late", "no_answer")


def test_settlement_pays_the_honest_prover_alone(poc_round: Round) -> None:
    resp = poc_round.responses["honest"]
    assert resp.status_code == 200, resp.text
    result = poc_round.result("honest")
    assert result["status"] == "valid" and result["weight"] == len(NONCES), result
    record = poc_round.record
    assert record["ended"] and record["total_weight"] == len(NONCES)
    reward = MINING.epoch_reward_ngonka
    assert poc_round.balances["honest"] == reward
    # Everything minted went to the honest prover.
    assert poc_round.minted == reward
    assert sorted(r["address"] for r in record["poc_results"] if r["weight"]) == [
        poc_round.miners["honest"].address
    ]
