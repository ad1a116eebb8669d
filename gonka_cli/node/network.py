"""The network side of mining: participants, PoC rounds, inference dispatch and settlement.

`Network` is driven by the node's event loop: the API handlers (`network_api`) call it for
each participant request, and the block clock calls `on_block` after every block. It is
confined to that loop (no locks); recomputation of sampled PoC artifacts and replays run
on one worker thread and report back to the loop.

State that must outlive a restart is in SQLite (`network.db` in the node's home, WAL,
synchronous=FULL): participants, commits, PoC results, inference records, the epochs'
secrets and settlements. Work items in flight live in memory: after a restart the node
re-issues the proof requests of a running validate phase, and requests that were waiting
for an executor are refunded at settlement.

Money moves only through the ledger's system transactions (`Ledger.submit_system`):

- a requester's escrow when its inference is accepted (`inference <id> escrow`);
- at the end of each epoch one settlement (`epoch <n> settlement`): the epoch reward minted
  to participants in proportion to accepted PoC weight, inference fees from escrow to
  executors and the unused escrow back to requesters.

A settlement is recorded with its transaction hash; if that transaction never reaches a
block (the node was killed before it), the next block's check undoes the record and the
epoch is settled again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import secrets
import sqlite3
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from gonka_cli.chain.signed_request import ReplayGuard
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import GonkaError, InputError, NodeStateError
from gonka_cli.node.epochs import (
    GENERATE,
    INFERENCE,
    VALIDATE,
    EpochView,
    NetworkParams,
    epoch_at,
)
from gonka_cli.node.ledger import ESCROW_ADDRESS, MINT_ADDRESS, Block, FundsShort, Ledger

log = logging.getLogger(__name__)

POC_PROOF = "poc_proof"
INFERENCE_TASK = "inference"
VALIDATION_TASK = "validation"
MAX_MODELS = 16
MAX_DEVICES = 64
#: Validations still waiting after this many epochs are settled as not validated.
VALIDATION_GRACE_EPOCHS = 1
#: Finished work items are kept this long (for idempotent resends), then forgotten.
ITEM_RETENTION_S = 600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    address TEXT PRIMARY KEY,
    pubkey BLOB NOT NULL,
    models TEXT NOT NULL,          -- JSON list of model names
    devices TEXT NOT NULL,         -- JSON list of device summaries
    registered_height INTEGER NOT NULL,
    penalties INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS commits (
    epoch INTEGER NOT NULL,
    address TEXT NOT NULL,
    model TEXT NOT NULL,
    count INTEGER NOT NULL,
    root TEXT NOT NULL,
    height INTEGER NOT NULL,
    PRIMARY KEY (epoch, address)
);
CREATE TABLE IF NOT EXISTS poc_results (
    epoch INTEGER NOT NULL,
    address TEXT NOT NULL,
    count INTEGER NOT NULL,
    weight INTEGER NOT NULL,
    status TEXT NOT NULL,          -- valid | fraud | invalid | no_answer
    reason TEXT NOT NULL,
    PRIMARY KEY (epoch, address)
);
CREATE TABLE IF NOT EXISTS inferences (
    id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    requester TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    max_tokens INTEGER NOT NULL,
    escrow INTEGER NOT NULL,
    escrow_tx TEXT NOT NULL,
    status TEXT NOT NULL,          -- queued | completed | failed
    executor TEXT NOT NULL DEFAULT '',
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    validation TEXT NOT NULL DEFAULT 'none',  -- none | pending | passed | failed
    selection_epoch INTEGER,       -- whose secret chose it (the epoch it was answered in)
    validator TEXT NOT NULL DEFAULT '',
    similarity REAL,
    settled_epoch INTEGER
);
CREATE INDEX IF NOT EXISTS inferences_unsettled ON inferences (settled_epoch);
CREATE TABLE IF NOT EXISTS epochs (
    epoch INTEGER PRIMARY KEY,
    secret TEXT NOT NULL,
    settlement_tx TEXT,
    settled_height INTEGER
);
"""


class ApiRefusal(GonkaError):
    """A participant request the node refuses: `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Participant:
    address: str
    pubkey: bytes
    models: tuple[str, ...]
    devices: tuple[dict[str, Any], ...]
    registered_height: int
    penalties: int = 0
    last_seen: float = 0.0
    busy: int = 0  # inference tasks assigned and not answered
    polling: int = 0  # long polls now waiting: a participant in one is responsive
    strikes: int = 0  # tasks that ran past their deadline

    @property
    def capacity(self) -> int:
        return max(1, len(self.devices))

    @property
    def pubkey_hex(self) -> str:
        return self.pubkey.hex()


@dataclass
class WorkItem:
    id: str
    kind: str
    assignee: str
    payload: dict[str, Any]
    deadline: float  # unix time
    deadline_height: int | None = None
    delivered: bool = False
    state: str = "open"  # open | done | expired
    result_digest: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "deadline": round(self.deadline, 3),
            "deadline_height": self.deadline_height,
            **self.payload,
        }


@dataclass
class InferenceJob:
    id: str
    epoch: int
    requester: str
    model: str
    prompt_tokens: list[int]
    max_tokens: int
    #: How to sample: `temperature`, `top_p` and `seed` (None: the executor's choice).
    sampling: dict[str, Any]
    escrow: int
    future: asyncio.Future[dict[str, Any]]
    tried: list[str] = field(default_factory=list)
    item_id: str = ""


class Network:
    """PoC rounds, work dispatch, validation and settlement for one node."""

    def __init__(
        self,
        ledger: Ledger,
        db_path: str,
        node_key: PrivateKey,
        *,
        validator_threads: int = 1,
    ) -> None:
        self.ledger = ledger
        self.params: NetworkParams = ledger.genesis.network_params
        self.key = node_key
        self.address = ledger.node_address
        self.guard = ReplayGuard()
        self.participants: dict[str, Participant] = {}
        self.items: dict[str, WorkItem] = {}
        self._queues: dict[str, deque[str]] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._jobs: dict[str, InferenceJob] = {}
        self._waiting: deque[str] = deque()  # inference ids waiting for an executor
        self._proofs: dict[tuple[int, str], str] = {}  # (epoch, address) -> work item id
        self._validator = ThreadPoolExecutor(validator_threads, "gonka-validate")
        self._tasks: set[asyncio.Future[Any]] = set()
        # Spreads load, guards nothing: validation is chosen by the epoch's secret instead.
        self._rng = random.Random(secrets.randbits(64))  # noqa: S311
        self._db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._db.close()
            raise NodeStateError(f"cannot open the node's network state {db_path}: {exc}") from None
        for row in self._db.execute(
            "SELECT address, pubkey, models, devices, registered_height, penalties "
            "FROM participants"
        ):
            self.participants[row[0]] = Participant(
                row[0],
                bytes(row[1]),
                tuple(json.loads(row[2])),
                tuple(json.loads(row[3])),
                row[4],
                row[5],
            )

    def close(self) -> None:
        self._validator.shutdown(wait=False, cancel_futures=True)
        for task in list(self._tasks):
            task.cancel()
        self._db.close()

    # -- helpers -------------------------------------------------------------------------

    def view(self) -> EpochView:
        return epoch_at(self.params, self.ledger.height)

    def seed(self, epoch: int) -> str | None:
        """The PoC seed of `epoch`: the hash of its first block (None before that block)."""
        block = self.ledger.block(epoch * self.params.epoch_blocks + 1)
        return block.hash if block else None

    def epoch_secret(self, epoch: int) -> str:
        row = self._db.execute("SELECT secret FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
        if row:
            return str(row[0])
        secret = secrets.token_hex(32)
        self._db.execute("INSERT INTO epochs (epoch, secret) VALUES (?, ?)", (epoch, secret))
        return secret

    def _deadline_at(self, height: int) -> float:
        """An estimate of when block `height` will be made."""
        return time.time() + max(0, height - self.ledger.height) * self.ledger.block_time_s

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pubkey_of(self, address: str) -> bytes | None:
        participant = self.participants.get(address)
        if participant is not None:
            return participant.pubkey
        account = self.ledger.account(address)
        return account.pubkey if account and account.pubkey else None

    def participant(self, address: str) -> Participant:
        found = self.participants.get(address)
        if found is None:
            raise ApiRefusal(
                403, f"{address} is not a registered participant: POST /v1/participants first"
            )
        return found

    # -- participants --------------------------------------------------------------------

    def register(self, address: str, pubkey: bytes, models: Any, devices: Any) -> Participant:
        from gonka_cli.compute.models import get_spec

        if not isinstance(models, list) or not 1 <= len(models) <= MAX_MODELS:
            raise ApiRefusal(400, f"models must be a list of 1 to {MAX_MODELS} model names")
        for name in models:
            if not isinstance(name, str):
                raise ApiRefusal(400, "models must be a list of model names")
            try:
                get_spec(name)
            except InputError as exc:
                raise ApiRefusal(400, str(exc)) from None
        if not isinstance(devices, list) or len(devices) > MAX_DEVICES:
            raise ApiRefusal(400, f"devices must be a list of at most {MAX_DEVICES} objects")
        for device in devices:
            if not isinstance(device, dict) or len(json.dumps(device)) > 1024:
                raise ApiRefusal(400, "each device must be a JSON object of at most 1 KiB")
        existing = self.participants.get(address)
        height = existing.registered_height if existing else self.ledger.height
        self._db.execute(
            "INSERT OR REPLACE INTO participants VALUES (?, ?, ?, ?, ?, ?)",
            (
                address,
                pubkey,
                json.dumps(sorted(set(models))),
                json.dumps(devices),
                height,
                existing.penalties if existing else 0,
            ),
        )
        participant = Participant(
            address,
            pubkey,
            tuple(sorted(set(models))),
            tuple(devices),
            height,
            existing.penalties if existing else 0,
            last_seen=time.monotonic(),
        )
        if existing is not None:
            participant.busy, participant.strikes = existing.busy, existing.strikes
        self.participants[address] = participant
        log.info("participant %s registered (%s)", address, ", ".join(participant.models))
        return participant

    def weights(self) -> tuple[int | None, dict[str, int]]:
        """The latest epoch whose validation is over, and the weight each participant earned
        in it (a validate phase still running does not count yet)."""
        view = self.view()
        last = view.epoch if view.phase == INFERENCE else view.epoch - 1
        row = self._db.execute(
            "SELECT MAX(epoch) FROM poc_results WHERE epoch <= ?", (last,)
        ).fetchone()
        if row is None or row[0] is None:
            return None, {}
        epoch = int(row[0])
        return epoch, dict(
            self._db.execute(
                "SELECT address, weight FROM poc_results WHERE epoch = ?", (epoch,)
            ).fetchall()
        )

    def participant_rows(self) -> list[dict[str, Any]]:
        view = self.view()
        weight_epoch, weights = self.weights()
        commits = {
            a: (c, r)
            for a, c, r in self._db.execute(
                "SELECT address, count, root FROM commits WHERE epoch = ?", (view.epoch,)
            )
        }
        results = {
            a: (s, w, reason)
            for a, s, w, reason in self._db.execute(
                "SELECT address, status, weight, reason FROM poc_results WHERE epoch = ?",
                (view.epoch,),
            )
        }
        now = time.monotonic()
        rows = []
        for p in sorted(self.participants.values(), key=lambda p: p.address):
            commit = commits.get(p.address)
            result = results.get(p.address)
            rows.append(
                {
                    "address": p.address,
                    "pubkey": p.pubkey_hex,
                    "models": list(p.models),
                    "devices": list(p.devices),
                    "registered_height": p.registered_height,
                    "weight": weights.get(p.address, 0),
                    "weight_epoch": weight_epoch,
                    "commit": {"count": commit[0], "root": commit[1]} if commit else None,
                    "poc_status": result[0] if result else None,
                    "poc_weight": result[1] if result else None,
                    "poc_reason": result[2] if result else None,
                    "penalties": p.penalties,
                    "busy": p.busy,
                    "responsive": bool(
                        p.polling or now - p.last_seen <= self.params.participant_timeout_s
                    ),
                }
            )
        return rows

    # -- PoC commits ---------------------------------------------------------------------

    def commit(self, address: str, body: dict[str, Any]) -> dict[str, Any]:
        from gonka_cli.compute.mmr import MAX_COUNT

        self.participant(address)
        view = self.view()
        epoch, model, count, root = (body.get(k) for k in ("epoch", "model", "count", "root"))
        if not _is_int(epoch) or epoch < 0:
            raise ApiRefusal(400, "epoch must be a non-negative integer")
        if not _is_int(count) or not 1 <= count <= MAX_COUNT:
            raise ApiRefusal(400, f"count must be an integer in [1, {MAX_COUNT}]")
        if not isinstance(root, str) or len(root) != 64 or not _is_hex(root):
            raise ApiRefusal(400, "root must be 64 hex characters (the MMR root)")
        if model != self.params.poc_model:
            raise ApiRefusal(
                400, f"epoch {view.epoch} runs PoC on {self.params.poc_model}, not {model!r}"
            )
        if epoch != view.epoch:
            raise ApiRefusal(
                409, f"commit for epoch {epoch}, but the current epoch is {view.epoch}"
            )
        if view.height < 1:
            raise ApiRefusal(409, "the chain has no block yet; commit once epoch 0 has started")
        if view.phase != GENERATE:
            raise ApiRefusal(
                409,
                f"the generate phase of epoch {epoch} ended at height {view.generate[1]}; "
                "commits are closed until the next epoch",
            )
        root = root.lower()
        row = self._db.execute(
            "SELECT count, root FROM commits WHERE epoch = ? AND address = ?", (epoch, address)
        ).fetchone()
        if row is not None:
            if count < row[0]:
                raise ApiRefusal(
                    409, f"count {count} is smaller than the {row[0]} already committed"
                )
            if count == row[0]:
                if root != row[1]:
                    raise ApiRefusal(409, f"count {count} was already committed with another root")
                return {"epoch": epoch, "count": count, "root": root, "duplicate": True}
        self._db.execute(
            "INSERT OR REPLACE INTO commits VALUES (?, ?, ?, ?, ?, ?)",
            (epoch, address, model, count, root, self.ledger.height),
        )
        return {"epoch": epoch, "count": count, "root": root, "duplicate": False}

    # -- work items ----------------------------------------------------------------------

    def _event(self, address: str) -> asyncio.Event:
        event = self._events.get(address)
        if event is None:
            event = self._events[address] = asyncio.Event()
        return event

    def _push(self, item: WorkItem) -> None:
        self.items[item.id] = item
        self._queues.setdefault(item.assignee, deque()).append(item.id)
        self._event(item.assignee).set()

    def _take(self, address: str, limit: int, everything: bool) -> list[WorkItem]:
        if everything:
            found = [i for i in self.items.values() if i.assignee == address and i.state == "open"][
                :limit
            ]
            for item in found:
                item.delivered = True
            if not found:
                self._event(address).clear()
            return found
        queue = self._queues.get(address)
        taken: list[WorkItem] = []
        while queue and len(taken) < limit:
            candidate = self.items.get(queue.popleft())
            if candidate is not None and candidate.state == "open" and not candidate.delivered:
                candidate.delivered = True
                taken.append(candidate)
        if not queue:
            self._event(address).clear()
        return taken

    async def poll(
        self, address: str, wait_s: float, limit: int = 16, everything: bool = False
    ) -> list[WorkItem]:
        """The caller's next work items; waits up to `wait_s` for one to arrive."""
        participant = self.participant(address)
        participant.last_seen = time.monotonic()
        self._dispatch()
        items = self._take(address, limit, everything)
        if items or wait_s <= 0:
            return items
        deadline = time.monotonic() + wait_s
        participant.polling += 1
        try:
            while not items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._event(address).wait(), remaining)
                except asyncio.TimeoutError:
                    break
                items = self._take(address, limit, everything)
        finally:
            participant.polling -= 1
            participant.last_seen = time.monotonic()
        return items

    def _item_for_result(self, address: str, item_id: str, body: bytes) -> WorkItem | None:
        """The open item `item_id` of `address`; None when this exact result was taken."""
        item = self.items.get(item_id)
        if item is None:
            raise ApiRefusal(404, f"no work item {item_id!r} (unknown or from before a restart)")
        if item.assignee != address:
            raise ApiRefusal(403, f"work item {item_id} is assigned to another participant")
        digest = hashlib.sha256(body).hexdigest()
        if item.state == "done":
            if digest == item.result_digest:
                return None
            raise ApiRefusal(409, f"work item {item_id} already has a different result")
        if item.state == "expired":
            raise ApiRefusal(
                410,
                f"work item {item_id} passed its deadline"
                + ("" if item.kind == POC_PROOF else " and was given to another participant"),
            )
        item.result_digest = digest
        return item

    async def submit_result(
        self, address: str, item_id: str, raw: bytes, body: dict[str, Any]
    ) -> dict[str, Any]:
        participant = self.participant(address)
        participant.last_seen = time.monotonic()
        item = self._item_for_result(address, item_id, raw)
        if item is None:
            return {"id": item_id, "status": "duplicate"}
        try:
            if item.kind == POC_PROOF:
                return self._proof_result(item, body)
            if item.kind == INFERENCE_TASK:
                return self._inference_result(item, body)
            return self._validation_result(item, body)
        except ApiRefusal:
            item.result_digest = ""  # a malformed answer does not use up the item
            raise

    # -- PoC validation ------------------------------------------------------------------

    def _start_validation(self, view: EpochView) -> None:
        """Send the proof requests of `view.epoch` (again, after a restart)."""
        block = self.ledger.block(view.validate[0])
        seed = self.seed(view.epoch)
        if block is None or seed is None:
            return
        done = {
            a
            for (a,) in self._db.execute(
                "SELECT address FROM poc_results WHERE epoch = ?", (view.epoch,)
            )
        }
        rows = self._db.execute(
            "SELECT address, model, count, root FROM commits WHERE epoch = ?", (view.epoch,)
        ).fetchall()
        from gonka_cli.compute.validation import sample_indices

        for address, model, count, root in rows:
            if address in done or (view.epoch, address) in self._proofs:
                continue
            indices = sample_indices(f"{block.hash}_{address}", count, self.params.sample_size)
            item = WorkItem(
                id=uuid.uuid4().hex,
                kind=POC_PROOF,
                assignee=address,
                payload={
                    "epoch": view.epoch,
                    "model": model,
                    "seed": seed,
                    "count": count,
                    "root": root,
                    "sample_seed": f"{block.hash}_{address}",
                    "leaf_indices": indices,
                },
                deadline=self._deadline_at(view.validate[1] + 1),
                deadline_height=view.validate[1],
            )
            self._proofs[(view.epoch, address)] = item.id
            self._push(item)
        log.info("epoch %d: proof requests sent to %d participants", view.epoch, len(rows))

    def _proof_result(self, item: WorkItem, body: dict[str, Any]) -> dict[str, Any]:
        from gonka_cli.compute.validation import ProofAnswer, check_answers

        view = self.view()
        epoch = item.payload["epoch"]
        if view.epoch != epoch or view.phase != VALIDATE:
            raise ApiRefusal(410, f"the validate phase of epoch {epoch} is over")
        answers_json = body.get("answers")
        if not isinstance(answers_json, list):
            raise ApiRefusal(400, "answers must be a list of proof answers")
        try:
            answers = [ProofAnswer.from_dict(a) for a in answers_json]
        except InputError as exc:
            raise ApiRefusal(400, f"malformed proof answer: {exc}") from None
        item.state = "done"
        root = bytes.fromhex(item.payload["root"])
        count, requested = item.payload["count"], item.payload["leaf_indices"]
        params = self.params.poc_params()
        check = check_answers(root, count, requested, answers, params)
        if not check.ok:
            index, reason = check.failures[0]
            text = (
                f"{len(check.failures)} of {len(requested)} answers fail the structural "
                f"checks; first, leaf {index}: {reason}"
            )
            self._record_poc(epoch, item.assignee, count, 0, "invalid", text)
            raise ApiRefusal(422, f"proofs refused, no weight this epoch: {text}")
        self._spawn(self._recompute(item, answers))
        return {"id": item.id, "status": "accepted", "validation": "pending"}

    async def _recompute(self, item: WorkItem, answers: list[Any]) -> None:
        from gonka_cli.compute.validation import validate

        payload = item.payload
        participant = self.participants[item.assignee]
        params = self.params.poc_params()
        loop = asyncio.get_running_loop()

        def run() -> Any:
            return validate(
                bytes.fromhex(payload["root"]),
                payload["count"],
                payload["leaf_indices"],
                answers,
                lambda nonces: self.recompute_artifacts(
                    payload["seed"], participant.pubkey_hex, nonces
                ),
                params,
            )

        try:
            verdict = await loop.run_in_executor(self._validator, run)
        except Exception as exc:  # the node's own failure: not the prover's fault
            log.exception("validation of %s failed", item.assignee)
            self._record_poc(
                payload["epoch"],
                item.assignee,
                payload["count"],
                0,
                "unvalidated",
                f"the node could not recompute (its own failure, not the prover's): {exc}",
            )
            return
        if verdict.valid:
            status, weight = "valid", payload["count"]
        else:
            status, weight = ("fraud" if verdict.fraud_detected else "invalid"), 0
        self._record_poc(
            payload["epoch"], item.assignee, payload["count"], weight, status, verdict.reason
        )

    def recompute_artifacts(self, seed: str, pubkey_hex: str, nonces: list[int]) -> list[bytes]:
        """The node's own artifacts for `nonces` (on its worker thread)."""
        from gonka_cli.compute.models import load_model
        from gonka_cli.compute.poc import PocInputParams, compute_artifacts

        model = load_model(self.params.poc_model)
        params = PocInputParams(seq_len=self.params.seq_len())
        return compute_artifacts(model, seed, pubkey_hex, nonces, params=params)

    def _record_poc(
        self, epoch: int, address: str, count: int, weight: int, status: str, reason: str
    ) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO poc_results VALUES (?, ?, ?, ?, ?, ?)",
            (epoch, address, count, weight, status, reason),
        )
        log.info("epoch %d: %s %s (weight %d): %s", epoch, address, status, weight, reason)

    def _close_validation(self, epoch: int) -> None:
        """The validate phase is over: no answer, no weight."""
        rows = self._db.execute(
            "SELECT c.address, c.count FROM commits c LEFT JOIN poc_results r "
            "ON r.epoch = c.epoch AND r.address = c.address "
            "WHERE c.epoch = ? AND r.address IS NULL",
            (epoch,),
        ).fetchall()
        for address, count in rows:
            item_id = self._proofs.get((epoch, address))
            item = self.items.get(item_id) if item_id else None
            if item is not None and item.state == "done":
                continue  # answered: the recomputation is still running
            if item is not None:
                item.state = "expired"
            self._record_poc(
                epoch,
                address,
                count,
                0,
                "no_answer",
                "no proof answers before the validate phase ended",
            )

    # -- inference -----------------------------------------------------------------------

    def new_inference(
        self,
        requester: str,
        model: str,
        prompt_tokens: list[int],
        max_tokens: int,
        sampling: dict[str, Any],
    ) -> InferenceJob:
        """Escrow the request's price and queue it for an executor."""
        if not any(model in p.models for p in self.participants.values()):
            raise ApiRefusal(503, f"no participant serves {model} on this network; try later")
        view = self.view()
        inference_id = "inf-" + uuid.uuid4().hex
        escrow = (len(prompt_tokens) + max_tokens) * self.params.price_per_token_ngonka
        escrow_tx = ""
        if escrow:
            try:
                escrow_tx = self.ledger.submit_system(
                    [(requester, ESCROW_ADDRESS, escrow)], f"inference {inference_id} escrow"
                )
            except FundsShort as exc:
                raise ApiRefusal(
                    402,
                    f"the request needs an escrow of {escrow} ngonka "
                    f"({len(prompt_tokens)} + {max_tokens} tokens at "
                    f"{self.params.price_per_token_ngonka} ngonka): {exc}",
                ) from None
        self._db.execute(
            "INSERT INTO inferences (id, epoch, requester, model, prompt_tokens, max_tokens, "
            "escrow, escrow_tx, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued')",
            (
                inference_id,
                view.epoch,
                requester,
                model,
                len(prompt_tokens),
                max_tokens,
                escrow,
                escrow_tx,
            ),
        )
        job = InferenceJob(
            inference_id,
            view.epoch,
            requester,
            model,
            list(prompt_tokens),
            max_tokens,
            sampling,
            escrow,
            asyncio.get_running_loop().create_future(),
        )
        # A requester that went away never reads the failure: mark it as seen.
        job.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._jobs[inference_id] = job
        self._waiting.append(inference_id)
        self._dispatch()
        return job

    def _candidates(self, model: str, exclude: set[str]) -> list[Participant]:
        now = time.monotonic()
        return [
            p
            for p in self.participants.values()
            if model in p.models
            and p.address not in exclude
            and p.busy < p.capacity
            and (p.polling or now - p.last_seen <= self.params.participant_timeout_s)
        ]

    def _choose(self, candidates: list[Participant]) -> Participant:
        """One candidate, with probability proportional to 1 + its accepted PoC weight."""
        _, weights = self.weights()
        return self._rng.choices(
            candidates, weights=[1 + weights.get(p.address, 0) for p in candidates]
        )[0]

    def _dispatch(self) -> None:
        """Hand waiting inference requests to free executors."""
        still: deque[str] = deque()
        while self._waiting:
            job = self._jobs.get(self._waiting.popleft())
            if job is None or job.future.done():
                continue
            candidates = self._candidates(job.model, set(job.tried))
            if not candidates and job.tried:
                # Everyone was tried: one that was merely slow may answer now (not the last).
                candidates = self._candidates(job.model, {job.tried[-1]})
            if not candidates:
                still.append(job.id)
                continue
            executor = self._choose(candidates)
            log.debug("inference %s goes to %s", job.id, executor.address)
            job.tried.append(executor.address)
            executor.busy += 1
            item = WorkItem(
                id=uuid.uuid4().hex,
                kind=INFERENCE_TASK,
                assignee=executor.address,
                payload={
                    "inference_id": job.id,
                    "model": job.model,
                    "prompt_tokens": job.prompt_tokens,
                    "max_tokens": job.max_tokens,
                    **job.sampling,
                    "top_logprobs": 5,
                },
                deadline=time.time() + self.params.inference_timeout_s,
            )
            job.item_id = item.id
            self._push(item)
            asyncio.get_running_loop().call_later(
                self.params.inference_timeout_s, self._inference_timeout, item.id
            )
        self._waiting = still

    def _expire(self, item_id: str) -> WorkItem | None:
        """Expire an item still open at its deadline (a strike for its assignee)."""
        item = self.items.get(item_id)
        if item is None or item.state != "open":
            return None
        item.state = "expired"
        assignee = self.participants.get(item.assignee)
        if assignee is not None:
            assignee.strikes += 1
            if item.kind == INFERENCE_TASK:
                assignee.busy = max(0, assignee.busy - 1)
        return item

    def _inference_timeout(self, item_id: str) -> None:
        item = self._expire(item_id)
        if item is None:
            return
        job = self._jobs.get(item.payload["inference_id"])
        if job is None or job.future.done():
            return
        log.info("inference %s: %s did not answer in time", job.id, item.assignee)
        if len(job.tried) >= self.params.inference_attempts:
            self._fail_job(
                job,
                504,
                f"no executor answered within {self.params.inference_timeout_s:g} s "
                f"({len(job.tried)} tried)",
            )
            return
        self._waiting.appendleft(job.id)
        self._dispatch()

    def _fail_job(self, job: InferenceJob, status: int, message: str) -> None:
        self._db.execute("UPDATE inferences SET status = 'failed' WHERE id = ?", (job.id,))
        self._jobs.pop(job.id, None)
        if not job.future.done():
            job.future.set_exception(ApiRefusal(status, message))

    def abandon(self, job: InferenceJob, message: str) -> None:
        """The requester stopped waiting (timeout or disconnect): refund it at settlement."""
        if job.id in self._jobs and not job.future.done():
            item = self.items.get(job.item_id)
            if item is not None and item.state == "open":
                item.state = "expired"
                executor = self.participants.get(item.assignee)
                if executor is not None:
                    executor.busy = max(0, executor.busy - 1)
            self._fail_job(job, 504, message)

    def _inference_result(self, item: WorkItem, body: dict[str, Any]) -> dict[str, Any]:
        from gonka_cli.compute.tokenizer import VOCAB_SIZE

        job = self._jobs.get(item.payload["inference_id"])
        tokens, top, finish = (
            body.get("tokens"),
            body.get("top_logprobs"),
            body.get("finish_reason", "length"),
        )
        max_tokens = item.payload["max_tokens"]
        if (
            not isinstance(tokens, list)
            or not 1 <= len(tokens) <= max_tokens
            or not all(_is_int(t) and 0 <= t < VOCAB_SIZE for t in tokens)
        ):
            raise ApiRefusal(
                400, f"tokens must be 1 to {max_tokens} token ids in [0, {VOCAB_SIZE})"
            )
        if not isinstance(top, list) or len(top) != len(tokens):
            raise ApiRefusal(400, "top_logprobs must hold one list per token")
        for position, entries in enumerate(top):
            if not isinstance(entries, list) or len(entries) > 21:
                raise ApiRefusal(400, "each top_logprobs entry is a list of at most 21 pairs")
            for entry in entries:
                if not _logprob_pair(entry, VOCAB_SIZE):
                    raise ApiRefusal(
                        400,
                        f"top_logprobs[{position}] holds {str(entry)[:60]!r}: each entry is "
                        f'{{"token": id in [0, {VOCAB_SIZE}), "logprob": a finite number <= 0}}',
                    )
        if finish not in ("stop", "length"):
            raise ApiRefusal(400, "finish_reason must be 'stop' or 'length'")
        item.state = "done"
        executor = self.participants[item.assignee]
        executor.busy = max(0, executor.busy - 1)
        self._dispatch()
        if job is None or job.future.done():
            return {"id": item.id, "status": "late"}
        self._jobs.pop(job.id, None)
        # The secret of the epoch the answer arrives in: unknown to the executor until that
        # epoch ends, even for a request made before an earlier epoch's secret was revealed.
        selection_epoch = self.view().epoch
        selected = is_selected(
            self.epoch_secret(selection_epoch), job.id, self.params.validation_share
        )
        validation = "pending" if selected else "none"
        self._db.execute(
            "UPDATE inferences SET status = 'completed', executor = ?, completion_tokens = ?, "
            "validation = ?, selection_epoch = ? WHERE id = ?",
            (executor.address, len(tokens), validation, selection_epoch, job.id),
        )
        job.future.set_result(
            {
                "tokens": tokens,
                "top_logprobs": top,
                "finish_reason": finish,
                "executor": executor.address,
            }
        )
        if validation == "pending":
            self._start_replay(job, executor.address, tokens, top)
        return {"id": item.id, "status": "accepted"}

    def _start_replay(
        self, job: InferenceJob, executor: str, tokens: list[int], top: list[Any]
    ) -> None:
        payload = {
            "inference_id": job.id,
            "model": job.model,
            "prompt_tokens": job.prompt_tokens,
            "tokens": tokens,
            "top_logprobs": top,
            "threshold": self.params.replay_threshold,
        }
        candidates = [p for p in self._candidates(job.model, {executor}) if p.address != executor]
        if not candidates:
            # Nobody else serves the model: the node replays it itself.
            self._spawn(self._replay_on_node(payload))
            return
        validator = self._rng.choice(candidates)
        item = WorkItem(
            id=uuid.uuid4().hex,
            kind=VALIDATION_TASK,
            assignee=validator.address,
            payload=payload,
            deadline=time.time() + 2 * self.params.inference_timeout_s,
        )
        self._db.execute(
            "UPDATE inferences SET validator = ? WHERE id = ?", (validator.address, job.id)
        )
        self._push(item)
        asyncio.get_running_loop().call_later(
            2 * self.params.inference_timeout_s, self._validation_timeout, item.id
        )

    def _validation_timeout(self, item_id: str) -> None:
        item = self._expire(item_id)
        if item is not None:
            self._spawn(self._replay_on_node(item.payload))

    async def _replay_on_node(self, payload: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()

        def run() -> Any:
            from gonka_cli.compute.inference import replay
            from gonka_cli.compute.models import load_model

            model = load_model(payload["model"])
            return replay(
                model,
                payload["prompt_tokens"],
                payload["tokens"],
                payload["top_logprobs"],
                payload["threshold"],
            )

        try:
            result = await loop.run_in_executor(self._validator, run)
        except Exception:
            log.exception("replay of %s failed on the node", payload["inference_id"])
            return
        self._record_replay(payload["inference_id"], result.passed, result.similarity, self.address)

    def _validation_result(self, item: WorkItem, body: dict[str, Any]) -> dict[str, Any]:
        passed, similarity = body.get("passed"), body.get("similarity")
        if (
            not isinstance(passed, bool)
            or not isinstance(similarity, (int, float))
            or isinstance(similarity, bool)
            or not 0 <= similarity <= 1
        ):
            raise ApiRefusal(400, "a validation result is {passed: bool, similarity: 0..1}")
        if passed != (similarity > item.payload["threshold"]):
            raise ApiRefusal(
                400,
                f"passed must say whether similarity {similarity} exceeds the threshold "
                f"{item.payload['threshold']}",
            )
        item.state = "done"
        self._record_replay(item.payload["inference_id"], passed, float(similarity), item.assignee)
        return {"id": item.id, "status": "accepted"}

    def _record_replay(
        self, inference_id: str, passed: bool, similarity: float, validator: str
    ) -> None:
        row = self._db.execute(
            "SELECT executor, validation FROM inferences WHERE id = ?", (inference_id,)
        ).fetchone()
        if row is None or row[1] != "pending":
            return
        self._db.execute(
            "UPDATE inferences SET validation = ?, similarity = ?, validator = ? WHERE id = ?",
            ("passed" if passed else "failed", similarity, validator, inference_id),
        )
        if not passed:
            executor = self.participants.get(row[0])
            if executor is not None:
                executor.penalties += 1
                self._db.execute(
                    "UPDATE participants SET penalties = ? WHERE address = ?",
                    (executor.penalties, executor.address),
                )
            log.info("inference %s failed validation (similarity %.4f)", inference_id, similarity)

    # -- epochs and settlement -----------------------------------------------------------

    def on_block(self, block: Block) -> None:
        """Advance the epoch's phases after each block."""
        view = epoch_at(self.params, block.height)
        if block.height == view.start_height:
            self.epoch_secret(view.epoch)
            if view.epoch > 0:
                self.settle(view.epoch - 1)
        if block.height == view.validate[0]:
            self._start_validation(view)
        if block.height == view.inference[0]:
            self._close_validation(view.epoch)
        self._check_settlements()
        self._settle_overdue(view.epoch)
        if block.height % 100 == 0:
            self._prune()

    def _prune(self) -> None:
        """Forget finished work items past their retention, so memory stays bounded."""
        horizon = time.time() - ITEM_RETENTION_S
        for item_id in [
            i.id for i in self.items.values() if i.state != "open" and i.deadline < horizon
        ]:
            del self.items[item_id]
        self._proofs = {k: v for k, v in self._proofs.items() if v in self.items}

    def catch_up(self) -> None:
        """At start-up: settle the epochs that ended while the node was down, and re-send
        the proof requests of a running validate phase."""
        self._check_settlements()
        view = self.view()
        if view.height < 1:
            return
        last = self._db.execute("SELECT MAX(epoch) FROM epochs").fetchone()[0]
        first = 0 if last is None else max(0, int(last) - 1)
        for epoch in range(first, view.epoch):
            self.settle(epoch)
        self.epoch_secret(view.epoch)
        if view.phase == VALIDATE:
            self._start_validation(view)
        elif view.phase == INFERENCE:
            self._close_validation(view.epoch)

    def settle(self, epoch: int) -> str | None:
        """Pay epoch `epoch`: rewards by weight, inference fees and refunds. Idempotent."""
        row = self._db.execute(
            "SELECT settlement_tx FROM epochs WHERE epoch = ?", (epoch,)
        ).fetchone()
        if row is not None and row[0]:
            return str(row[0])
        recomputing = [
            address
            for (e, address), item_id in self._proofs.items()
            if e == epoch
            and (item := self.items.get(item_id)) is not None
            and item.state == "done"
            and not self._has_result(epoch, address)
        ]
        if recomputing:
            # Their answers came in time: wait for the verdicts rather than pay them nothing.
            log.info("epoch %d: settlement waits for %d validations", epoch, len(recomputing))
            return None
        self._close_validation(epoch)
        self.epoch_secret(epoch)
        transfers: dict[tuple[str, str], int] = {}

        def add(sender: str, recipient: str, amount: int) -> None:
            if amount > 0:
                transfers[(sender, recipient)] = transfers.get((sender, recipient), 0) + amount

        weights = self._db.execute(
            "SELECT address, weight FROM poc_results WHERE epoch = ? AND weight > 0 "
            "ORDER BY address",
            (epoch,),
        ).fetchall()
        total = sum(w for _, w in weights)
        reward = self.params.epoch_reward_ngonka
        for address, weight in weights:
            add(MINT_ADDRESS, address, reward * weight // total)
        settled: list[str] = []
        price = self.params.price_per_token_ngonka
        for (
            inference_id,
            requester,
            executor,
            status,
            validation,
            escrow,
            escrow_tx,
            prompt,
            completion,
            created,
        ) in self._db.execute(
            "SELECT id, requester, executor, status, validation, escrow, escrow_tx, "
            "prompt_tokens, completion_tokens, epoch FROM inferences "
            "WHERE settled_epoch IS NULL AND epoch <= ?",
            (epoch,),
        ).fetchall():
            if status == "queued" and inference_id in self._jobs:
                continue  # still waiting for an executor
            if validation == "pending" and created + VALIDATION_GRACE_EPOCHS > epoch:
                continue  # settled once its replay is known
            if escrow_tx:
                if self.ledger.pending(escrow_tx):
                    continue
                record = self.ledger.tx(escrow_tx)
                if record is None or record.code != 0:
                    settled.append(inference_id)  # the escrow never landed: nothing to move
                    continue
            paid = 0
            if status == "completed" and validation != "failed":
                paid = min(escrow, (prompt + completion) * price)
                add(ESCROW_ADDRESS, executor, paid)
            add(ESCROW_ADDRESS, requester, escrow - paid)
            settled.append(inference_id)
        txhash = ""
        if transfers:
            txhash = self.ledger.submit_system(
                [(s, r, a) for (s, r), a in transfers.items()], f"epoch {epoch} settlement"
            )
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "UPDATE epochs SET settlement_tx = ?, settled_height = ? WHERE epoch = ?",
                (txhash or "-", self.ledger.height, epoch),
            )
            self._db.executemany(
                "UPDATE inferences SET settled_epoch = ? WHERE id = ?",
                [(epoch, i) for i in settled],
            )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        log.info(
            "epoch %d settled: %d rewards (%d ngonka minted), %d inferences, tx %s",
            epoch,
            len(weights),
            sum(a for (s, _), a in transfers.items() if s == MINT_ADDRESS),
            len(settled),
            txhash or "none",
        )
        return txhash or "-"

    def _has_result(self, epoch: int, address: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM poc_results WHERE epoch = ? AND address = ?", (epoch, address)
            ).fetchone()
            is not None
        )

    def _settle_overdue(self, current: int) -> None:
        """Settle the ended epochs whose settlement had to wait."""
        for (epoch,) in self._db.execute(
            "SELECT epoch FROM epochs WHERE settlement_tx IS NULL AND epoch < ?", (current,)
        ).fetchall():
            self.settle(epoch)

    def _check_settlements(self) -> None:
        """Undo a settlement whose transaction was lost (the node died before its block)."""
        for epoch, txhash in self._db.execute(
            "SELECT epoch, settlement_tx FROM epochs WHERE settlement_tx IS NOT NULL "
            "AND settlement_tx != '-' AND settled_height >= ?",
            (self.ledger.height - 3,),
        ).fetchall():
            if self.ledger.pending(txhash) or self.ledger.tx(txhash) is not None:
                continue
            log.warning("epoch %d: settlement %s was lost; settling again", epoch, txhash)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE epochs SET settlement_tx = NULL, settled_height = NULL WHERE epoch = ?",
                (epoch,),
            )
            self._db.execute(
                "UPDATE inferences SET settled_epoch = NULL WHERE settled_epoch = ?", (epoch,)
            )
            self._db.execute("COMMIT")
            self.settle(epoch)

    def epoch_record(self, epoch: int) -> dict[str, Any] | None:
        """What is known of `epoch`; its secret only once it has ended."""
        view = self.view()
        if epoch > view.epoch:
            return None
        secret = self.epoch_secret(epoch)
        row = self._db.execute(
            "SELECT settlement_tx, settled_height FROM epochs WHERE epoch = ?", (epoch,)
        ).fetchone()
        results = [
            {"address": a, "count": c, "weight": w, "status": s, "reason": r}
            for a, c, w, s, r in self._db.execute(
                "SELECT address, count, weight, status, reason FROM poc_results "
                "WHERE epoch = ? ORDER BY address",
                (epoch,),
            )
        ]
        ended = epoch < view.epoch
        return {
            "epoch": epoch,
            "seed": self.seed(epoch),
            "ended": ended,
            "secret_sha256": hashlib.sha256(bytes.fromhex(secret)).hexdigest(),
            "secret": secret if ended else None,
            "validation_share": self.params.validation_share,
            "poc_results": results,
            "total_weight": sum(r["weight"] for r in results),
            "settlement_tx": (row[0] if row and row[0] not in (None, "-") else None),
            "settled_height": row[1] if row else None,
        }

    def inference_record(self, inference_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT id, epoch, requester, model, prompt_tokens, max_tokens, escrow, escrow_tx, "
            "status, executor, completion_tokens, validation, validator, similarity, "
            "settled_epoch, selection_epoch FROM inferences WHERE id = ?",
            (inference_id,),
        ).fetchone()
        if row is None:
            return None
        keys = (
            "id",
            "epoch",
            "requester",
            "model",
            "prompt_tokens",
            "max_tokens",
            "escrow_ngonka",
            "escrow_tx",
            "status",
            "executor",
            "completion_tokens",
            "validation",
            "validator",
            "similarity",
            "settled_epoch",
            "selection_epoch",
        )
        record = dict(zip(keys, row, strict=True))
        record["escrow_ngonka"] = str(record["escrow_ngonka"])
        return record


def is_selected(secret_hex: str, inference_id: str, share: float) -> bool:
    """Whether an inference is validated: SHA-256(secret bytes || id) as a fraction of 2^256
    below `share`. Anyone can check it once the epoch's secret is revealed."""
    digest = hashlib.sha256(bytes.fromhex(secret_hex) + inference_id.encode()).digest()
    return int.from_bytes(digest, "big") < int(share * 2**256)


def _logprob_pair(entry: object, vocab: int) -> bool:
    """A `{"token", "logprob"}` object or a `[token, logprob]` pair, with sane values."""
    if isinstance(entry, dict) and set(entry) == {"token", "logprob"}:
        token, logprob = entry["token"], entry["logprob"]
    elif isinstance(entry, list) and len(entry) == 2:
        token, logprob = entry
    else:
        return False
    return (
        _is_int(token)
        and 0 <= token < vocab
        and isinstance(logprob, (int, float))
        and not isinstance(logprob, bool)
        and math.isfinite(logprob)
        and logprob <= 1e-3
    )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)
