"""The inference market: requests escrowed and dispatched to executors, answers checked and
handed back, and a share of them validated by replay.

A request escrows its price at once (a system transaction), waits for a responsive executor
serving its model (chosen with probability proportional to 1 + its PoC weight), and is tried
again elsewhere when an executor lets its task expire. Whether an answer is replayed is decided
by the secret of the epoch the answer arrives in. A chosen answer is replayed by up to
`inference_validators` validators drawn by PoC weight (never the executor, never a key without
weight); their votes count by that weight, the node replays the answer itself when no such
validator exists, when none answers in time, on a tie, and for a share of the disputed
ballots, and the verdict marks each vote it contradicts (`votes.py`). Inference records and
votes are durable; requests waiting for an executor and open ballots are not (requests are
refunded at settlement after a restart, open ballots settle as not validated).
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

from gonka_cli.node import votes as vt
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
class ReplayBallot:
    """The validators drawn to replay one inference answer, and their votes so far."""

    inference_id: str
    payload: dict[str, Any]
    #: validator -> the weight it was drawn with.
    weights: dict[str, int]
    #: validator -> its `validation` item.
    items: dict[str, str]
    #: validator -> its vote and the similarity it reported.
    votes: dict[str, tuple[vt.Vote, float]] = field(default_factory=dict)


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
        #: inference id -> the ballot of its validators, until it is closed.
        self.ballots: dict[str, ReplayBallot] = {}
        #: inference id -> the votes of a disputed ballot, waiting for the node's replay.
        self._disputes: dict[str, list[vt.Vote]] = {}
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
        """One candidate, with probability proportional to (1 + its accepted PoC weight) /
        (1 + its recent failed replays)."""
        _, weights = self._weights()
        share = self._participants.dispatch_weight
        return self._rng.choices(
            candidates, weights=[share(p, weights.get(p.address, 0)) for p in candidates]
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
        drawn = self.draw_validators(job.model, executor)
        if not drawn:
            # Nobody else with weight serves the model: the node replays it itself.
            self._ctx.spawn(self._replay_on_node(payload))
            return
        timeout = 2 * self._ctx.params.inference_timeout_s
        ballot = ReplayBallot(job.id, payload, drawn, {})
        for validator in drawn:
            item = WorkItem(
                id=uuid.uuid4().hex,
                kind=VALIDATION_TASK,
                assignee=validator,
                payload=payload,
                deadline=time.time() + timeout,
            )
            ballot.items[validator] = item.id
            self._queue.push(item)
            asyncio.get_running_loop().call_later(timeout, self._validation_timeout, item.id)
        self.ballots[job.id] = ballot
        with transaction(self._ctx.db):
            self._ctx.db.execute(
                "UPDATE inferences SET validator = ? WHERE id = ?", (",".join(drawn), job.id)
            )

    def network_weight(self) -> int:
        """The total accepted PoC weight: a failed replay stands on votes alone only when its
        invalid votes hold more than half of it (`votes.verdict`)."""
        return sum(self._weights()[1].values())

    def draw_validators(self, model: str, executor: str) -> dict[str, int]:
        """`validator -> weight`: up to `inference_validators` participants serving `model`,
        drawn by accepted PoC weight among the eligible, responsive ones other than the
        executor. A participant without weight is never drawn."""
        _, weights = self._weights()
        epoch = self._ctx.view().epoch
        eligible = getattr(self._participants, "eligible", None)
        candidates = [
            p.address
            for p in self._participants.candidates(model, {executor})
            if p.address != executor
            and weights.get(p.address, 0) > 0
            and (not callable(eligible) or eligible(p.address, epoch))
        ]
        chosen = vt.draw(candidates, weights, self._ctx.params.inference_validators, self._rng)
        return {a: weights[a] for a in chosen}

    def _validation_timeout(self, item_id: str) -> None:
        item = self._queue.expire(item_id)
        if item is None:
            return
        ballot = self.ballots.get(item.payload["inference_id"])
        if ballot is not None and self._all_in(ballot):
            self._close(ballot)

    def _all_in(self, ballot: ReplayBallot) -> bool:
        """Every drawn validator voted or let its item expire."""
        for item_id in ballot.items.values():
            item = self._queue.items.get(item_id)
            if item is not None and item.state == "open":
                return False
        return True

    def _close(self, ballot: ReplayBallot) -> None:
        """The votes in hand decide by weight; a validator that did not answer does not
        count. No vote, a tie, or a disputed ballot picked for a re-check: the node replays
        the answer itself and its result decides."""
        if self.ballots.pop(ballot.inference_id, None) is None:
            return
        for validator, item_id in ballot.items.items():
            if validator not in ballot.votes:
                self._queue.expire(item_id)
        votes = sorted((v for v, _ in ballot.votes.values()), key=lambda v: v.validator)
        decided = vt.verdict(votes, self.network_weight())
        disputed = not vt.unanimous(votes)
        recheck = disputed and vt.selected_for_recheck(
            self._epoch_secret(self._ctx.view().epoch),
            ballot.inference_id,
            self._ctx.params.dispute_recheck_share,
        )
        if decided is None or recheck:
            self._disputes[ballot.inference_id] = votes
            self._ctx.spawn(self._replay_on_node(ballot.payload))
            return
        similarities = sorted(s for v, s in ballot.votes.values() if v.valid == decided)
        self._record_replay(
            ballot.inference_id,
            decided,
            similarities[len(similarities) // 2],
            ",".join(v.validator for v in votes),
            votes,
        )

    async def _replay_on_node(self, payload: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()

        def run() -> Any:
            from gonka_cli.compute.models import load_model
            from gonka_cli.compute.replay_check import check_answer

            model = load_model(payload["model"])
            sampling = {"temperature": payload["temperature"], "top_p": payload["top_p"]}
            return check_answer(
                model,
                payload["prompt_tokens"],
                payload["tokens"],
                payload["top_logprobs"],
                sampling,
                payload["threshold"],
            )

        try:
            result = await loop.run_in_executor(self._ctx.validator, run)
        except Exception:
            log.exception("replay of %s failed on the node", payload["inference_id"])
            self._node_replay_failed(payload["inference_id"])
            return
        self._record_replay(
            payload["inference_id"], result.passed, result.similarity, self._ctx.address
        )

    def _node_replay_failed(self, inference_id: str) -> None:
        """The node could not replay a disputed answer: the weighted majority decides, if
        there is one (else the inference stays pending and settles as not validated)."""
        votes = self._disputes.pop(inference_id, [])
        decided = vt.verdict(votes, self.network_weight())
        if decided is not None:
            self._record_replay(
                inference_id, decided, None, ",".join(v.validator for v in votes), votes
            )

    def validation_result(self, item: WorkItem, body: dict[str, Any]) -> ResultAnswer:
        """Take a validator's vote; the ballot closes once every drawn validator voted."""
        try:
            verdict = ValidationResult.from_dict(body)
        except ProtocolError:
            raise Refusal(
                ErrorCode.BAD_REQUEST, "a validation result is {passed: bool, similarity: 0..1}"
            ) from None
        threshold = item.payload["threshold"]
        from gonka_cli.compute.replay_check import passes  # the rule only: no torch

        if verdict.passed != passes(
            verdict.similarity, threshold, verdict.support_margin, verdict.log10_p
        ):
            raise Refusal(
                ErrorCode.BAD_REQUEST,
                f"passed must agree with the statistics: similarity {verdict.similarity} above "
                f"{threshold}, support_margin >= 0 and log10_p >= the likelihood floor",
            )
        item.state = "done"
        ballot = self.ballots.get(item.payload["inference_id"])
        if ballot is None or item.assignee not in ballot.weights:
            return ResultAnswer(item.id, "late")
        vote = vt.Vote(
            item.assignee,
            vt.VALID if verdict.passed else vt.INVALID,
            ballot.weights[item.assignee],
        )
        ballot.votes[item.assignee] = (vote, verdict.similarity)
        if self._all_in(ballot):
            self._close(ballot)
        return ResultAnswer(item.id, "accepted")

    def _record_replay(
        self,
        inference_id: str,
        passed: bool,
        similarity: float | None,
        validator: str,
        votes: list[vt.Vote] | None = None,
    ) -> None:
        """Record the verdict on an inference, with the validators' votes on it (those of a
        dispute the node's replay settled, when `votes` is None) marked contradicted or not,
        under the epoch in which the verdict is recorded."""
        db = self._ctx.db
        if votes is None:
            votes = self._disputes.pop(inference_id, [])
            if votes:
                validator = ",".join([validator] + [v.validator for v in votes])
        row = db.execute(
            "SELECT executor, validation FROM inferences WHERE id = ?", (inference_id,)
        ).fetchone()
        if row is None or row[1] != "pending":
            return
        epoch = self._ctx.view().epoch
        with transaction(db):
            db.execute(
                "UPDATE inferences SET validation = ?, similarity = ?, validator = ? WHERE id = ?",
                ("passed" if passed else "failed", similarity, validator, inference_id),
            )
            if not passed:
                self._participants.penalise(row[0])
            contradicted = vt.record_votes(db, epoch, vt.INFERENCE, inference_id, votes, passed)
        if not passed:
            log.info("inference %s failed validation (similarity %.4f)", inference_id, similarity)
        if contradicted:
            log.info("inference %s: the verdict contradicts %s", inference_id, contradicted)

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
