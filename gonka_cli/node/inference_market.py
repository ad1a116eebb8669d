"""The inference market: requests escrowed and dispatched to executors, answers checked and
handed back, and a share of them validated by replay.

A request escrows its price at once (a system transaction), waits for a responsive executor
serving its model (chosen with probability proportional to 1 + its PoC weight), and is tried
again elsewhere when an executor lets its task expire. Whether an answer is replayed is decided
by the secret of the epoch the answer arrives in. Inference records are durable; requests
waiting for an executor are not (they are refunded at settlement after a restart).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gonka_cli.node.context import NetworkContext
from gonka_cli.node.ledger import ESCROW_ADDRESS, FundsShort
from gonka_cli.node.participants import Participant, Participants
from gonka_cli.node.work_queue import WorkItem, WorkQueue
from gonka_cli.protocol import (
    INFERENCE_TASK,
    VALIDATION_TASK,
    ErrorCode,
    InferenceRecord,
    InferenceResult,
    ProtocolError,
    Refusal,
    ResultAnswer,
    ValidationResult,
)
from gonka_cli.storage import transaction
from gonka_cli.validate import is_int, is_list, is_number

log = logging.getLogger(__name__)

#: The logprobs an executor reports at each position.
TOP_LOGPROBS = 5
#: Entries allowed per position: the best 20 and the emitted token.
MAX_LOGPROB_ENTRIES = 21
#: A logprob a hair above 0 is taken as rounding.
LOGPROB_SLACK = 1e-3

SCHEMA = """
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
"""


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


def is_selected(secret_hex: str, inference_id: str, share: float) -> bool:
    """Whether an inference is validated: SHA-256(secret bytes || id) as a fraction of 2^256
    below `share`. Anyone can check it once the epoch's secret is revealed."""
    digest = hashlib.sha256(bytes.fromhex(secret_hex) + inference_id.encode()).digest()
    return int.from_bytes(digest, "big") < int(share * 2**256)


class InferenceMarket:
    """Requests, dispatch, answers and replays."""

    def __init__(
        self,
        ctx: NetworkContext,
        participants: Participants,
        queue: WorkQueue,
        weights: Callable[[], tuple[int | None, dict[str, int]]],
        epoch_secret: Callable[[int], str],
    ) -> None:
        self._ctx = ctx
        self._participants = participants
        self._queue = queue
        self._weights = weights
        self._epoch_secret = epoch_secret
        self._jobs: dict[str, InferenceJob] = {}
        self._waiting: deque[str] = deque()  # inference ids waiting for an executor
        # Spreads load, guards nothing: validation is chosen by the epoch's secret instead.
        self._rng = random.Random(secrets.randbits(64))  # noqa: S311

    def waiting_for_executor(self, inference_id: str) -> bool:
        return inference_id in self._jobs

    # -- requests ------------------------------------------------------------------------

    def new_inference(
        self,
        requester: str,
        model: str,
        prompt_tokens: list[int],
        max_tokens: int,
        sampling: dict[str, Any],
    ) -> InferenceJob:
        """Escrow the request's price and queue it for an executor."""
        params, db = self._ctx.params, self._ctx.db
        if not self._participants.serves(model):
            raise Refusal(
                ErrorCode.NO_EXECUTOR, f"no participant serves {model} on this network; try later"
            )
        view = self._ctx.view()
        inference_id = "inf-" + uuid.uuid4().hex
        escrow = (len(prompt_tokens) + max_tokens) * params.price_per_token_ngonka
        escrow_tx = ""
        if escrow:
            try:
                escrow_tx = self._ctx.ledger.submit_system(
                    [(requester, ESCROW_ADDRESS, escrow)], f"inference {inference_id} escrow"
                )
            except FundsShort as exc:
                raise Refusal(
                    ErrorCode.INSUFFICIENT_FUNDS,
                    f"the request needs an escrow of {escrow} ngonka "
                    f"({len(prompt_tokens)} + {max_tokens} tokens at "
                    f"{params.price_per_token_ngonka} ngonka): {exc}",
                ) from None
        with transaction(db):
            db.execute(
                "INSERT INTO inferences (id, epoch, requester, model, prompt_tokens, "
                "max_tokens, escrow, escrow_tx, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued')",
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
        self.dispatch()
        return job

    def _choose(self, candidates: list[Participant]) -> Participant:
        """One candidate, with probability proportional to 1 + its accepted PoC weight."""
        _, weights = self._weights()
        return self._rng.choices(
            candidates, weights=[1 + weights.get(p.address, 0) for p in candidates]
        )[0]

    def dispatch(self) -> None:
        """Hand waiting inference requests to free executors."""
        still: deque[str] = deque()
        while self._waiting:
            job = self._jobs.get(self._waiting.popleft())
            if job is None or job.future.done():
                continue
            candidates = self._participants.candidates(job.model, set(job.tried))
            if not candidates and job.tried:
                # Everyone was tried: one that was merely slow may answer now (not the last).
                candidates = self._participants.candidates(job.model, {job.tried[-1]})
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
                    "top_logprobs": TOP_LOGPROBS,
                },
                deadline=time.time() + self._ctx.params.inference_timeout_s,
            )
            job.item_id = item.id
            self._queue.push(item)
            asyncio.get_running_loop().call_later(
                self._ctx.params.inference_timeout_s, self._inference_timeout, item.id
            )
        self._waiting = still

    def _inference_timeout(self, item_id: str) -> None:
        item = self._queue.expire(item_id)
        if item is None:
            return
        job = self._jobs.get(item.payload["inference_id"])
        if job is None or job.future.done():
            return
        log.info("inference %s: %s did not answer in time", job.id, item.assignee)
        if len(job.tried) >= self._ctx.params.inference_attempts:
            self._fail_job(
                job,
                f"no executor answered within {self._ctx.params.inference_timeout_s:g} s "
                f"({len(job.tried)} tried)",
            )
            return
        self._waiting.appendleft(job.id)
        self.dispatch()

    def _fail_job(self, job: InferenceJob, message: str) -> None:
        with transaction(self._ctx.db):
            self._ctx.db.execute("UPDATE inferences SET status = 'failed' WHERE id = ?", (job.id,))
        self._jobs.pop(job.id, None)
        if not job.future.done():
            job.future.set_exception(Refusal(ErrorCode.INFERENCE_TIMEOUT, message))

    def abandon(self, job: InferenceJob, message: str) -> None:
        """The requester stopped waiting (timeout or disconnect): refund it at settlement."""
        if job.id in self._jobs and not job.future.done():
            item = self._queue.items.get(job.item_id)
            if item is not None and item.state == "open":
                item.state = "expired"
                executor = self._participants.get(item.assignee)
                if executor is not None:
                    executor.busy = max(0, executor.busy - 1)
            self._fail_job(job, message)

    # -- answers -------------------------------------------------------------------------

    def inference_result(self, item: WorkItem, body: dict[str, Any]) -> ResultAnswer:
        """Take an executor's answer: check it, hand it to the requester, maybe replay it."""
        from gonka_cli.compute.tokenizer import VOCAB_SIZE

        job = self._jobs.get(item.payload["inference_id"])
        max_tokens = item.payload["max_tokens"]
        tokens, top = body.get("tokens"), body.get("top_logprobs")
        if (
            not is_list(tokens)
            or not 1 <= len(tokens) <= max_tokens
            or not all(is_int(t) for t in tokens)
            or not all(0 <= t < VOCAB_SIZE for t in tokens)
        ):
            raise Refusal(
                ErrorCode.BAD_REQUEST,
                f"tokens must be 1 to {max_tokens} token ids in [0, {VOCAB_SIZE})",
            )
        if not is_list(top) or len(top) != len(tokens):
            raise Refusal(ErrorCode.BAD_REQUEST, "top_logprobs must hold one list per token")
        for entries in top:
            if not is_list(entries) or len(entries) > MAX_LOGPROB_ENTRIES:
                raise Refusal(
                    ErrorCode.BAD_REQUEST,
                    f"each top_logprobs entry is a list of at most {MAX_LOGPROB_ENTRIES} pairs",
                )
        for position, entries in enumerate(top):
            for entry in entries:
                if not _logprob_pair(entry, VOCAB_SIZE):
                    raise Refusal(
                        ErrorCode.BAD_REQUEST,
                        f"top_logprobs[{position}] holds {str(entry)[:60]!r}: each entry is "
                        f'{{"token": id in [0, {VOCAB_SIZE}), "logprob": a finite number <= 0}}',
                    )
        try:
            answer = InferenceResult.from_dict(body)
        except ProtocolError as exc:
            raise Refusal(ErrorCode.BAD_REQUEST, str(exc)) from None
        item.state = "done"
        executor = self._participants[item.assignee]
        executor.busy = max(0, executor.busy - 1)
        self.dispatch()
        if job is None or job.future.done():
            return ResultAnswer(item.id, "late")
        self._jobs.pop(job.id, None)
        # The secret of the epoch the answer arrives in: unknown to the executor until that
        # epoch ends, even for a request made before an earlier epoch's secret was revealed.
        selection_epoch = self._ctx.view().epoch
        selected = is_selected(
            self._epoch_secret(selection_epoch), job.id, self._ctx.params.validation_share
        )
        validation = "pending" if selected else "none"
        plain = answer.to_dict()
        with transaction(self._ctx.db):
            self._ctx.db.execute(
                "UPDATE inferences SET status = 'completed', executor = ?, "
                "completion_tokens = ?, validation = ?, selection_epoch = ? WHERE id = ?",
                (executor.address, len(answer.tokens), validation, selection_epoch, job.id),
            )
        job.future.set_result({**plain, "executor": executor.address})
        if validation == "pending":
            self._start_replay(job, executor.address, plain["tokens"], plain["top_logprobs"])
        return ResultAnswer(item.id, "accepted")

    # -- validation by replay ------------------------------------------------------------

    def _start_replay(
        self, job: InferenceJob, executor: str, tokens: list[int], top: list[Any]
    ) -> None:
        payload = {
            "inference_id": job.id,
            "model": job.model,
            "prompt_tokens": job.prompt_tokens,
            "tokens": tokens,
            "top_logprobs": top,
            "threshold": self._ctx.params.replay_threshold,
            # Processed logprobs depend on the request's sampling: the replay needs it.
            "temperature": job.sampling["temperature"],
            "top_p": job.sampling["top_p"],
        }
        candidates = [
            p for p in self._participants.candidates(job.model, {executor}) if p.address != executor
        ]
        if not candidates:
            # Nobody else serves the model: the node replays it itself.
            self._ctx.spawn(self._replay_on_node(payload))
            return
        validator = self._rng.choice(candidates)
        timeout = 2 * self._ctx.params.inference_timeout_s
        item = WorkItem(
            id=uuid.uuid4().hex,
            kind=VALIDATION_TASK,
            assignee=validator.address,
            payload=payload,
            deadline=time.time() + timeout,
        )
        with transaction(self._ctx.db):
            self._ctx.db.execute(
                "UPDATE inferences SET validator = ? WHERE id = ?", (validator.address, job.id)
            )
        self._queue.push(item)
        asyncio.get_running_loop().call_later(timeout, self._validation_timeout, item.id)

    def _validation_timeout(self, item_id: str) -> None:
        item = self._queue.expire(item_id)
        if item is not None:
            self._ctx.spawn(self._replay_on_node(item.payload))

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
                temperature=payload["temperature"],
                top_p=payload["top_p"],
            )

        try:
            result = await loop.run_in_executor(self._ctx.validator, run)
        except Exception:
            log.exception("replay of %s failed on the node", payload["inference_id"])
            return
        self._record_replay(
            payload["inference_id"], result.passed, result.similarity, self._ctx.address
        )

    def validation_result(self, item: WorkItem, body: dict[str, Any]) -> ResultAnswer:
        """Take a validator's verdict (validators are trusted on the devnet)."""
        try:
            verdict = ValidationResult.from_dict(body)
        except ProtocolError:
            raise Refusal(
                ErrorCode.BAD_REQUEST, "a validation result is {passed: bool, similarity: 0..1}"
            ) from None
        threshold = item.payload["threshold"]
        if verdict.passed != (verdict.similarity > threshold):
            raise Refusal(
                ErrorCode.BAD_REQUEST,
                f"passed must say whether similarity {verdict.similarity} exceeds the threshold "
                f"{threshold}",
            )
        item.state = "done"
        self._record_replay(
            item.payload["inference_id"], verdict.passed, verdict.similarity, item.assignee
        )
        return ResultAnswer(item.id, "accepted")

    def _record_replay(
        self, inference_id: str, passed: bool, similarity: float, validator: str
    ) -> None:
        db = self._ctx.db
        row = db.execute(
            "SELECT executor, validation FROM inferences WHERE id = ?", (inference_id,)
        ).fetchone()
        if row is None or row[1] != "pending":
            return
        with transaction(db):
            db.execute(
                "UPDATE inferences SET validation = ?, similarity = ?, validator = ? WHERE id = ?",
                ("passed" if passed else "failed", similarity, validator, inference_id),
            )
            if not passed:
                self._participants.penalise(row[0])
        if not passed:
            log.info("inference %s failed validation (similarity %.4f)", inference_id, similarity)

    # -- records -------------------------------------------------------------------------

    def record(self, inference_id: str) -> InferenceRecord | None:
        row = self._ctx.db.execute(
            "SELECT id, epoch, requester, model, prompt_tokens, max_tokens, escrow, escrow_tx, "
            "status, executor, completion_tokens, validation, validator, similarity, "
            "settled_epoch, selection_epoch FROM inferences WHERE id = ?",
            (inference_id,),
        ).fetchone()
        return None if row is None else InferenceRecord(*row)


def _logprob_pair(entry: object, vocab: int) -> bool:
    """A `{"token", "logprob"}` object or a `[token, logprob]` pair, with sane values."""
    if isinstance(entry, dict) and set(entry) == {"token", "logprob"}:
        token, logprob = entry["token"], entry["logprob"]
    elif isinstance(entry, list) and len(entry) == 2:
        token, logprob = entry
    else:
        return False
    return is_int(token) and 0 <= token < vocab and is_number(logprob) and logprob <= LOGPROB_SLACK
