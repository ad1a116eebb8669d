"""The PoC round of each epoch: commits, proof requests, structural checks, recomputation.

In the generate phase participants commit `(count, root)`; at the validate phase's first block
the node samples leaves of every commit and queues a `poc_proof` item. Answers that pass the
structural checks go to validators drawn by PoC weight (`poc_validation` items): each
recomputes the sampled nonces, runs the binomial test and votes; the prover's weight is
accepted when the valid votes hold more than half of the voting weight. The node recomputes
itself when no participant with weight can validate (the first epochs), when no validator
answered by the deadline, on a tie, and for a share of the disputed ballots (whose result then
decides); its recomputations wait in a priority queue in front of its worker threads, within a
budget of nonces per epoch (`recompute.py`). The first result recorded for `(epoch, address)`
is final. Commits, results and the votes behind them are durable; open ballots are not (after
a restart the node judges their answers alone).

Accepted answers are durable too (`poc_answers`), from the moment the node says `accepted`
until their verdict is recorded (in the same transaction that deletes them): a verdict is owed
for each stored row. Whether a recomputation is still owed is read from that table, never from
the work items in memory, so neither a restart nor a recomputation that died can leave an
accepted answer without a verdict, or turn it into `no_answer`: `resume()` starts the owed
recomputations again (at start-up and after each block) and settlement waits for them.

The compute engine takes the seed and the public key as verbatim strings; the formats this
devnet uses (the seed: a block hash, 64 upper-case hex characters; the key: 66 lower-case hex
characters of a compressed secp256k1 key) are checked here, at the protocol's boundary.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import secrets
import string
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gonka_cli.errors import GonkaError, InputError, NodeError
from gonka_cli.node import votes as vt
from gonka_cli.node.context import NetworkContext
from gonka_cli.node.epochs import GENERATE, INFERENCE, VALIDATE, EpochView
from gonka_cli.node.participants import Participants
from gonka_cli.node.recompute import Recomputer
from gonka_cli.node.work_queue import WorkItem, WorkQueue
from gonka_cli.protocol import (
    POC_PROOF,
    POC_VALIDATION,
    CommitAnswer,
    CommitRequest,
    ErrorCode,
    PocResult,
    PocValidationResult,
    ProofResult,
    ProtocolError,
    Refusal,
    ResultAnswer,
)
from gonka_cli.storage import transaction

log = logging.getLogger(__name__)

SCHEMA = """
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
    status TEXT NOT NULL,          -- valid | fraud | invalid | no_answer | unvalidated
    reason TEXT NOT NULL,
    PRIMARY KEY (epoch, address)
);
CREATE TABLE IF NOT EXISTS poc_answers (
    epoch INTEGER NOT NULL,
    address TEXT NOT NULL,
    request TEXT NOT NULL,         -- the proof request's payload (JSON)
    answers TEXT NOT NULL,         -- the accepted answers (JSON), until their verdict
    PRIMARY KEY (epoch, address)
);
"""

_UPPER_HEX = frozenset(string.digits + "ABCDEF")
_LOWER_HEX = frozenset(string.digits + "abcdef")


class PocInputError(NodeError):
    """A seed or a public key that is not in the devnet's format."""


def check_seed(seed: object) -> str:
    """A PoC seed of this devnet: a block hash, 64 upper-case hex characters."""
    if not isinstance(seed, str) or len(seed) != 64 or not set(seed) <= _UPPER_HEX:
        raise PocInputError(
            f"PoC seed {str(seed)[:70]!r} is not a block hash (64 upper-case hex characters)"
        )
    return seed


def check_pubkey_hex(pubkey_hex: object) -> str:
    """A participant key as PoC takes it: 66 lower-case hex characters, prefix 02 or 03."""
    if (
        not isinstance(pubkey_hex, str)
        or len(pubkey_hex) != 66
        or not set(pubkey_hex) <= _LOWER_HEX
        or pubkey_hex[:2] not in ("02", "03")
    ):
        raise PocInputError(
            f"public key {str(pubkey_hex)[:70]!r} is not a compressed secp256k1 key "
            "(66 lower-case hex characters starting with 02 or 03)"
        )
    return pubkey_hex


@dataclass
class Ballot:
    """The validators drawn for one prover's accepted answers, and their votes so far."""

    epoch: int
    prover: str
    payload: dict[str, Any]
    answers: list[Any]
    pubkey_hex: str
    deadline_height: int
    #: validator -> the weight it was drawn with.
    weights: dict[str, int]
    #: validator -> its `poc_validation` item.
    items: dict[str, str]
    votes: dict[str, vt.Vote] = field(default_factory=dict)


class PocRound:
    """Commits, proof requests and verdicts, epoch after epoch."""

    def __init__(self, ctx: NetworkContext, participants: Participants, queue: WorkQueue) -> None:
        self._ctx = ctx
        self._participants = participants
        self._queue = queue
        #: (epoch, address) -> the id of its proof request.
        self.proofs: dict[tuple[int, str], str] = {}
        #: (epoch, address) of the node's recomputations, queued or running.
        self._running: set[tuple[int, str]] = set()
        #: (epoch, address) -> the validators' ballot on answers being voted on.
        self.ballots: dict[tuple[int, str], Ballot] = {}
        self.recomputer = Recomputer(
            ctx.spawn, ctx.validator_threads, ctx.params.recompute_budget_nonces
        )
        #: The epoch's secret (set by the network once settlement exists): it picks the
        #: disputes the node re-checks, unknown to validators until the epoch has ended.
        self.epoch_secret: Callable[[int], str] | None = None
        # Draws validators; guards nothing the secret should (a validator is not told who
        # else was drawn, and its vote is final once posted).
        self._rng = random.Random(secrets.randbits(64))  # noqa: S311

    # -- commits -------------------------------------------------------------------------

    def commit(self, address: str, request: CommitRequest) -> CommitAnswer:
        """Record `address`'s commit for the current epoch (the count may only grow)."""
        params, db = self._ctx.params, self._ctx.db
        view = self._ctx.view()
        # Weight needs stake: no collateral, jailed or leaving, no commit (`not_eligible`).
        self._participants.require_eligible(address, view.epoch)
        epoch, count = request.epoch, request.count
        from gonka_cli.compute.smst import MAX_COUNT

        if count > MAX_COUNT:
            # The sum tree hashes counts as uint32 and holds one leaf per distinct nonce.
            raise Refusal(
                ErrorCode.COUNT_TOO_LARGE,
                f"count {count} is above {MAX_COUNT}: a commitment holds at most one leaf per "
                "uint32 nonce; commit the number of artifacts in your sum tree",
            )
        if request.model != params.poc_model:
            raise Refusal(
                ErrorCode.WRONG_POC_MODEL,
                f"epoch {view.epoch} runs PoC on {params.poc_model}, not {request.model!r}",
            )
        if epoch != view.epoch:
            raise Refusal(
                ErrorCode.STALE_EPOCH,
                f"commit for epoch {epoch}, but the current epoch is {view.epoch}",
            )
        if view.height < 1:
            raise Refusal(
                ErrorCode.COMMITS_CLOSED,
                "the chain has no block yet; commit once epoch 0 has started",
            )
        if view.phase != GENERATE:
            raise Refusal(
                ErrorCode.COMMITS_CLOSED,
                f"the generate phase of epoch {epoch} ended at height {view.generate[1]}; "
                "commits are closed until the next epoch",
            )
        root = request.root.lower()
        row = db.execute(
            "SELECT count, root FROM commits WHERE epoch = ? AND address = ?", (epoch, address)
        ).fetchone()
        if row is not None:
            if count < row[0]:
                raise Refusal(
                    ErrorCode.COUNT_DECREASED,
                    f"count {count} is smaller than the {row[0]} already committed",
                )
            if count == row[0]:
                if root != row[1]:
                    raise Refusal(
                        ErrorCode.ROOT_CONFLICT,
                        f"count {count} was already committed with another root",
                    )
                return CommitAnswer(epoch, count, root, duplicate=True)
        with transaction(db):
            db.execute(
                "INSERT OR REPLACE INTO commits VALUES (?, ?, ?, ?, ?, ?)",
                (epoch, address, request.model, count, root, self._ctx.ledger.height),
            )
        return CommitAnswer(epoch, count, root, duplicate=False)

    def commits(self, epoch: int) -> dict[str, tuple[int, str]]:
        """`address -> (count, root)` of `epoch`."""
        return {
            a: (c, r)
            for a, c, r in self._ctx.db.execute(
                "SELECT address, count, root FROM commits WHERE epoch = ?", (epoch,)
            )
        }

    # -- results -------------------------------------------------------------------------

    def results(self, epoch: int) -> list[PocResult]:
        return [
            PocResult(a, c, w, s, r)
            for a, c, w, s, r in self._ctx.db.execute(
                "SELECT address, count, weight, status, reason FROM poc_results "
                "WHERE epoch = ? ORDER BY address",
                (epoch,),
            )
        ]

    def weights(self) -> tuple[int | None, dict[str, int]]:
        """The latest epoch whose validation is over and whose verdicts are all recorded, and
        the weight each participant earned in it (a validate phase still running does not
        count yet, nor an epoch with answers still being recomputed: read half-way, it would
        give the participants judged last no weight)."""
        view = self._ctx.view()
        last = view.epoch if view.phase == INFERENCE else view.epoch - 1
        row = self._ctx.db.execute(
            "SELECT MAX(epoch) FROM poc_results WHERE epoch <= ? "
            "AND epoch NOT IN (SELECT epoch FROM poc_answers)",
            (last,),
        ).fetchone()
        if row is None or row[0] is None:
            return None, {}
        epoch = int(row[0])
        return epoch, dict(
            self._ctx.db.execute(
                "SELECT address, weight FROM poc_results WHERE epoch = ?", (epoch,)
            ).fetchall()
        )

    def network_weight(self) -> int:
        """The total weight of `weights()`: the denominator a conviction by votes must pass."""
        return sum(self.weights()[1].values())

    def has_result(self, epoch: int, address: str) -> bool:
        return (
            self._ctx.db.execute(
                "SELECT 1 FROM poc_results WHERE epoch = ? AND address = ?", (epoch, address)
            ).fetchone()
            is not None
        )

    def record(
        self,
        epoch: int,
        address: str,
        count: int,
        weight: int,
        status: str,
        reason: str,
        votes: Sequence[vt.Vote] = (),
    ) -> None:
        """Record a verdict; the first one for `(epoch, address)` stays. The accepted answers
        it judges are dropped in the same transaction: no verdict is owed for them any more.
        The validators' `votes` on them are written with it, each marked contradicted or not
        by this verdict."""
        db = self._ctx.db
        with transaction(db):
            cursor = db.execute(
                "INSERT OR IGNORE INTO poc_results VALUES (?, ?, ?, ?, ?, ?)",
                (epoch, address, count, weight, status, reason),
            )
            db.execute("DELETE FROM poc_answers WHERE epoch = ? AND address = ?", (epoch, address))
            contradicted = (
                vt.record_votes(db, epoch, vt.POC, address, votes, status == "valid")
                if votes and cursor.rowcount
                else []
            )
        log.info("epoch %d: %s %s (weight %d): %s", epoch, address, status, weight, reason)
        if contradicted:
            log.info("epoch %d: the verdict on %s contradicts %s", epoch, address, contradicted)

    def recomputing(self, epoch: int) -> list[str]:
        """Committers of `epoch` whose answers came in time and await their verdict (being
        recomputed, or to be recomputed again after a restart)."""
        return [
            a
            for (a,) in self._ctx.db.execute(
                "SELECT address FROM poc_answers WHERE epoch = ? ORDER BY address", (epoch,)
            )
        ]

    def _answered(self, epoch: int) -> set[str]:
        return set(self.recomputing(epoch))

    # -- validation ----------------------------------------------------------------------

    def start_validation(self, view: EpochView) -> None:
        """Send the proof requests of `view.epoch` (again, after a restart)."""
        from gonka_cli.compute.validation import sample_indices

        block = self._ctx.ledger.block(view.validate[0])
        seed = self._ctx.seed(view.epoch)
        if block is None or seed is None:
            return
        done = {
            a
            for (a,) in self._ctx.db.execute(
                "SELECT address FROM poc_results WHERE epoch = ?", (view.epoch,)
            )
        }
        # Answers accepted before a restart are not asked for again: their verdict is owed.
        done |= self._answered(view.epoch)
        rows = self._ctx.db.execute(
            "SELECT address, model, count, root FROM commits WHERE epoch = ?", (view.epoch,)
        ).fetchall()
        for address, model, count, root in rows:
            if address in done or (view.epoch, address) in self.proofs:
                continue
            sample_seed = f"{block.hash}_{address}"
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
                    "sample_seed": sample_seed,
                    "leaf_indices": sample_indices(
                        sample_seed, count, self._ctx.params.sample_size
                    ),
                },
                deadline=self._ctx.deadline_at(view.validate[1] + 1),
                deadline_height=view.validate[1],
            )
            self.proofs[(view.epoch, address)] = item.id
            self._queue.push(item)
        log.info("epoch %d: proof requests sent to %d participants", view.epoch, len(rows))
        self.recomputer.forget(view.epoch - 1)

    def proof_result(self, item: WorkItem, body: dict[str, Any]) -> ResultAnswer:
        """Take the answers to a proof request: refuse them (422) when they fail the structural
        checks, else start their recomputation."""
        from gonka_cli.compute.validation import ProofAnswer, check_answers

        view = self._ctx.view()
        epoch = item.payload["epoch"]
        if view.epoch != epoch or view.phase != VALIDATE:
            raise Refusal(
                ErrorCode.VALIDATION_CLOSED, f"the validate phase of epoch {epoch} is over"
            )
        try:
            result = ProofResult.from_dict(body)
        except ProtocolError as exc:
            raise Refusal(ErrorCode.BAD_REQUEST, str(exc)) from None
        try:
            answers = [ProofAnswer.from_dict(a) for a in result.answers]
        except InputError as exc:
            raise Refusal(ErrorCode.BAD_REQUEST, f"malformed proof answer: {exc}") from None
        participant = self._participants.require(item.assignee)
        try:
            check_pubkey_hex(participant.pubkey_hex)
        except PocInputError as exc:
            raise Refusal(ErrorCode.BAD_PUBKEY, str(exc)) from None
        # A seed not in the devnet's format would be the node's own fault: the recomputation
        # refuses it (`recompute_artifacts`) and the result is `unvalidated`, not the prover's.
        root = bytes.fromhex(item.payload["root"])
        count, requested = item.payload["count"], item.payload["leaf_indices"]
        check = check_answers(root, count, requested, answers, self._ctx.params.poc_params())
        if not check.ok:
            item.state = "done"
            index, reason = check.failures[0]
            text = (
                f"{len(check.failures)} of {len(requested)} answers fail the structural "
                f"checks; first, leaf {index}: {reason}"
            )
            self.record(epoch, item.assignee, count, 0, "invalid", text)
            raise Refusal(ErrorCode.PROOFS_INVALID, f"proofs refused, no weight this epoch: {text}")
        # Durable before the answer says `accepted`: from here on a verdict is owed.
        with transaction(self._ctx.db):
            self._ctx.db.execute(
                "INSERT OR IGNORE INTO poc_answers VALUES (?, ?, ?, ?)",
                (
                    epoch,
                    item.assignee,
                    json.dumps(item.payload),
                    json.dumps([dict(a) for a in result.answers]),
                ),
            )
        item.state = "done"
        self._judge(item.payload, item.assignee, answers, participant.pubkey_hex)
        return ResultAnswer(item.id, "accepted", validation="pending")

    def resume(self) -> None:
        """Start the recomputations that are owed and not running: answers accepted before a
        restart, or whose recomputation ended without recording a verdict. Needs the event
        loop (a no-op outside it: the next block or start-up does it)."""
        from gonka_cli.compute.validation import ProofAnswer

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        db = self._ctx.db
        owed = db.execute("SELECT epoch, address FROM poc_answers ORDER BY epoch, address")
        for epoch, address in owed.fetchall():
            if (epoch, address) in self._running or (epoch, address) in self.ballots:
                continue
            request, answers_json = db.execute(
                "SELECT request, answers FROM poc_answers WHERE epoch = ? AND address = ?",
                (epoch, address),
            ).fetchone()
            payload = json.loads(request)
            participant = self._participants.get(address)
            try:
                if participant is None:
                    raise NodeError(f"{address} is not a registered participant")
                answers = [ProofAnswer.from_dict(a) for a in json.loads(answers_json)]
            except (GonkaError, ValueError) as exc:  # the node's own state: not the prover's
                self.record(
                    epoch,
                    address,
                    payload["count"],
                    0,
                    "unvalidated",
                    f"the node could not read back the answers it accepted: {exc}",
                )
                continue
            # Votes drawn before a restart are lost with their items: the node judges alone.
            log.info("epoch %d: recomputing the answers of %s again", epoch, address)
            self._start_recompute(payload, address, answers, participant.pubkey_hex)

    # -- votes of weighted validators ----------------------------------------------------

    def _eligible(self, address: str, epoch: int) -> bool:
        eligible = getattr(self._participants, "eligible", None)
        return bool(eligible(address, epoch)) if callable(eligible) else True

    def draw_validators(self, epoch: int, prover: str) -> dict[str, int]:
        """`validator -> weight`: up to `poc_validators` participants drawn by the weight of
        the last judged epoch, among the eligible and responsive ones other than `prover`."""
        _, weights = self.weights()
        timeout = self._ctx.params.participant_timeout_s
        now = time.monotonic()
        candidates = [
            p.address
            for p in self._participants.values()
            if p.address != prover
            and weights.get(p.address, 0) > 0
            and p.responsive(timeout, now)
            and self._eligible(p.address, epoch)
        ]
        chosen = vt.draw(candidates, weights, self._ctx.params.poc_validators, self._rng)
        return {a: weights[a] for a in chosen}

    def _judge(
        self, payload: dict[str, Any], address: str, answers: list[Any], pubkey_hex: str
    ) -> None:
        """Send accepted answers to validators drawn by weight; to the node's own
        recomputation when no participant with weight can validate (the first epochs)."""
        epoch = int(payload["epoch"])
        key = (epoch, address)
        if key in self._running or key in self.ballots:
            return
        drawn = self.draw_validators(epoch, address)
        if not drawn:
            self._start_recompute(payload, address, answers, pubkey_hex)
            return
        params, view = self._ctx.params, self._ctx.view()
        deadline_height = min(view.validate[1] + params.poc_vote_blocks, view.end_height)
        by_index = {a.leaf_index: a for a in answers}
        ordered = [by_index[i] for i in payload["leaf_indices"]]
        common = {
            "epoch": epoch,
            "prover": address,
            "pubkey": pubkey_hex,
            "model": payload["model"],
            "seed": payload["seed"],
            "seq_len": params.seq_len(),
            "nonces": [a.nonce for a in ordered],
            "vectors": [base64.b64encode(a.vector).decode("ascii") for a in ordered],
            "dist_threshold": params.dist_threshold,
            "p_mismatch": params.p_mismatch,
            "alpha": params.alpha,
        }
        ballot = Ballot(epoch, address, payload, answers, pubkey_hex, deadline_height, drawn, {})
        for validator in drawn:
            item = WorkItem(
                id=uuid.uuid4().hex,
                kind=POC_VALIDATION,
                assignee=validator,
                payload=dict(common),
                deadline=self._ctx.deadline_at(deadline_height + 1),
                deadline_height=deadline_height,
            )
            ballot.items[validator] = item.id
            self._queue.push(item)
        self.ballots[key] = ballot
        log.info("epoch %d: the answers of %s go to %s", epoch, address, ", ".join(drawn))

    def vote_result(self, item: WorkItem, body: dict[str, Any]) -> ResultAnswer:
        """Take a validator's vote on a prover's answers (400 when `valid` is not what the
        binomial test says of its mismatch count)."""
        from gonka_cli.compute.validation import fraud_cutoff

        try:
            vote = PocValidationResult.from_dict(body)
        except ProtocolError as exc:
            raise Refusal(ErrorCode.BAD_REQUEST, str(exc)) from None
        n = len(item.payload["nonces"])
        if vote.n_mismatch > n:
            raise Refusal(
                ErrorCode.BAD_REQUEST, f"n_mismatch {vote.n_mismatch} exceeds the {n} nonces"
            )
        cutoff = fraud_cutoff(n, item.payload["p_mismatch"], item.payload["alpha"])
        if vote.valid != (vote.n_mismatch < cutoff):
            raise Refusal(
                ErrorCode.BAD_REQUEST,
                f"valid must say whether {vote.n_mismatch} mismatches of {n} stay below the "
                f"fraud cutoff {cutoff}",
            )
        item.state = "done"
        key = (int(item.payload["epoch"]), item.payload["prover"])
        ballot = self.ballots.get(key)
        if ballot is None or item.assignee not in ballot.weights:
            return ResultAnswer(item.id, "late")
        ballot.votes[item.assignee] = vt.Vote(
            item.assignee, vt.VALID if vote.valid else vt.INVALID, ballot.weights[item.assignee]
        )
        if len(ballot.votes) == len(ballot.weights):
            self._close(ballot)
        return ResultAnswer(item.id, "accepted")

    def close_votes(self, height: int) -> None:
        """Close the ballots whose deadline passed before block `height`: the votes in hand
        decide; a validator that did not answer does not count."""
        for ballot in [b for b in self.ballots.values() if b.deadline_height < height]:
            self._close(ballot)

    def _close(self, ballot: Ballot) -> None:
        key = (ballot.epoch, ballot.prover)
        if self.ballots.pop(key, None) is None:
            return
        for validator, item_id in ballot.items.items():
            if validator not in ballot.votes:
                self._queue.expire(item_id)
        votes = sorted(ballot.votes.values(), key=lambda v: v.validator)
        args = (ballot.payload, ballot.prover, ballot.answers, ballot.pubkey_hex)
        if not votes:
            log.info("epoch %d: no validator voted on %s; the node judges", *key)
            self._start_recompute(*args)
            return
        decided = vt.verdict(votes, self.network_weight())
        disputed = not vt.unanimous(votes)
        if decided is None or (disputed and self._recheck(ballot.epoch, ballot.prover)):
            self._start_recompute(*args, votes=votes)
            return
        self._record_vote(ballot.payload, ballot.prover, votes, decided, "")

    def _recheck(self, epoch: int, prover: str) -> bool:
        share = self._ctx.params.dispute_recheck_share
        if self.epoch_secret is None:
            return self._rng.random() < share
        return vt.selected_for_recheck(self.epoch_secret(epoch), prover, share)

    def _record_vote(
        self,
        payload: dict[str, Any],
        address: str,
        votes: Sequence[vt.Vote],
        valid: bool,
        note: str,
    ) -> None:
        total = sum(v.weight for v in votes)
        valid_weight = sum(v.weight for v in votes if v.valid)
        reason = (
            f"weighted vote: valid {valid_weight} of {total} voting weight "
            f"({len(votes)} validator(s)){note}"
        )
        count = payload["count"]
        status, weight = ("valid", count) if valid else ("fraud", 0)
        self.record(payload["epoch"], address, count, weight, status, reason, votes)

    # -- the node's own recomputation ----------------------------------------------------

    def _start_recompute(
        self,
        payload: dict[str, Any],
        address: str,
        answers: list[Any],
        pubkey_hex: str,
        votes: Sequence[vt.Vote] = (),
    ) -> None:
        """Queue the node's own recomputation: first for provers with weight in the last
        epoch, within the epoch's budget of nonces."""
        epoch = int(payload["epoch"])
        key = (epoch, address)
        if key in self._running:
            return
        self._running.add(key)
        _, weights = self.weights()
        priority = (0 if self._eligible(address, epoch) else 1, -weights.get(address, 0))

        def refused() -> None:
            self._running.discard(key)
            self._without_recompute(
                payload,
                address,
                votes,
                "the node's recomputation budget is spent",
                f"the node's recomputation budget for epoch {epoch} is spent "
                "(its own limit, not the prover's fault)",
            )

        self.recomputer.submit(
            epoch,
            len(payload["leaf_indices"]),
            priority,
            lambda: self._recompute(payload, address, answers, pubkey_hex, votes),
            refused,
        )

    def _without_recompute(
        self,
        payload: dict[str, Any],
        address: str,
        votes: Sequence[vt.Vote],
        note: str,
        reason: str,
    ) -> None:
        """The node's recomputation will not come: the votes decide if they could alone
        (`votes.verdict`), else the result is `unvalidated`, weight 0, with `reason`."""
        decided = vt.verdict(votes, self.network_weight())
        if decided is not None:
            self._record_vote(payload, address, votes, decided, f"; {note}")
            return
        self.record(payload["epoch"], address, payload["count"], 0, "unvalidated", reason)

    async def _recompute(
        self,
        payload: dict[str, Any],
        address: str,
        answers: list[Any],
        pubkey_hex: str,
        votes: Sequence[vt.Vote] = (),
    ) -> None:
        from gonka_cli.compute.validation import validate

        key = (int(payload["epoch"]), address)
        try:
            params = self._ctx.params.poc_params()
            loop = asyncio.get_running_loop()

            def run() -> Any:
                return validate(
                    bytes.fromhex(payload["root"]),
                    payload["count"],
                    payload["leaf_indices"],
                    answers,
                    lambda nonces: self.recompute_artifacts(payload["seed"], pubkey_hex, nonces),
                    params,
                )

            try:
                verdict = await loop.run_in_executor(self._ctx.validator, run)
            except asyncio.CancelledError:
                raise  # the node stops: the answers stay stored, `resume` recomputes them
            except Exception as exc:  # the node's own failure: not the prover's fault
                log.exception("validation of %s failed", address)
                self._without_recompute(
                    payload,
                    address,
                    votes,
                    "the node could not re-check it",
                    f"the node could not recompute (its own failure, not the prover's): {exc}",
                )
                return
            if verdict.valid:
                status, weight = "valid", payload["count"]
            else:
                status, weight = ("fraud" if verdict.fraud_detected else "invalid"), 0
            reason = verdict.reason
            if votes:
                reason = f"disputed vote re-checked by the node: {reason}"
            self.record(payload["epoch"], address, payload["count"], weight, status, reason, votes)
        finally:
            # A verdict that could not be written leaves the answers stored: `resume` tries
            # again after the next block.
            self._running.discard(key)

    def recompute_artifacts(self, seed: str, pubkey_hex: str, nonces: list[int]) -> list[bytes]:
        """The node's own artifacts for `nonces` (on its worker thread). The seed and the key
        are checked against the devnet's formats, then handed to the engine verbatim."""
        from gonka_cli.compute.models import load_model
        from gonka_cli.compute.poc import PocInputParams, compute_artifacts

        check_seed(seed)
        check_pubkey_hex(pubkey_hex)
        model = load_model(self._ctx.params.poc_model)
        params = PocInputParams(seq_len=self._ctx.params.seq_len())
        return compute_artifacts(model, seed, pubkey_hex, nonces, params=params)

    def close_validation(self, epoch: int) -> None:
        """The validate phase is over: no answer, no weight. Answers accepted in time wait
        for their recomputation, whatever became of their work item."""
        rows = self._ctx.db.execute(
            "SELECT c.address, c.count FROM commits c "
            "LEFT JOIN poc_results r ON r.epoch = c.epoch AND r.address = c.address "
            "LEFT JOIN poc_answers a ON a.epoch = c.epoch AND a.address = c.address "
            "WHERE c.epoch = ? AND r.address IS NULL AND a.address IS NULL",
            (epoch,),
        ).fetchall()
        for address, count in rows:
            item_id = self.proofs.get((epoch, address))
            item = self._queue.items.get(item_id) if item_id else None
            if item is not None:
                item.state = "expired"
            self.record(
                epoch,
                address,
                count,
                0,
                "no_answer",
                "no proof answers before the validate phase ended",
            )

    def prune(self) -> None:
        """Forget the proof requests whose items the queue has forgotten."""
        self.proofs = {k: v for k, v in self.proofs.items() if v in self._queue.items}
