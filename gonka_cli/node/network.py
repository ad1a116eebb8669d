"""The network side of mining: the façade that wires participants, the work queue, the PoC
round, the inference market and settlement (one module each) to the node.

`Network` is driven by the node's event loop: the API handlers (`network_api`) call it for
each participant request, and the block clock calls `on_block` after every block. It is
confined to that loop (no locks); the node's own recomputations of sampled PoC artifacts
and replays run on its worker threads (two by default) and report back to the loop.

State that must outlive a restart is in SQLite (`network.db` in the node's home, WAL,
synchronous=FULL): participants, commits, PoC results, inference records, the epochs'
secrets, settlements and payments, validators' votes, and the proof answers accepted and
still awaiting their verdict. Work items in flight live in memory: after a restart the node
re-issues the proof requests of a running validate phase that were not answered yet,
recomputes the answers it had accepted, and refunds at settlement the requests that were
waiting for an executor.

Money moves only through the ledger's system transactions (`Ledger.submit_system`): a
requester's escrow when its inference is accepted (`inference <id> escrow`), and at the end
of each epoch one settlement (`epoch <n> settlement`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from gonka_cli.chain.signed_request import ReplayGuard
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import NodeStateError
from gonka_cli.node import inference_market, participants, poc_round, settlement, votes
from gonka_cli.node.context import NetworkContext
from gonka_cli.node.epochs import INFERENCE, VALIDATE, EpochView, NetworkParams, epoch_at
from gonka_cli.node.inference_market import InferenceJob, InferenceMarket, is_selected
from gonka_cli.node.ledger import Block, Ledger
from gonka_cli.node.participants import Participant, Participants
from gonka_cli.node.poc_round import PocRound
from gonka_cli.node.settlement import Settlement
from gonka_cli.node.work_queue import ITEM_RETENTION_S, WorkItem, WorkQueue
from gonka_cli.protocol import (
    INFERENCE_TASK,
    POC_PROOF,
    POC_VALIDATION,
    VALIDATION_TASK,
    Commit,
    CommitAnswer,
    CommitRequest,
    Earnings,
    EpochRecord,
    InferenceRecord,
    ParticipantInfo,
    ParticipantsView,
    Refusal,
    ResultAnswer,
    StakeInfo,
)
from gonka_cli.storage import open_sqlite

__all__ = [
    "INFERENCE_TASK",
    "ITEM_RETENTION_S",
    "POC_PROOF",
    "VALIDATION_TASK",
    "InferenceJob",
    "Network",
    "WorkItem",
    "is_selected",
]

log = logging.getLogger(__name__)

#: Blocks between two sweeps of finished work items.
PRUNE_EVERY_BLOCKS = 100


class Network:
    """PoC rounds, work dispatch, validation and settlement for one node."""

    def __init__(
        self,
        ledger: Ledger,
        db_path: str,
        node_key: PrivateKey,
        *,
        validator_threads: int = 2,
    ) -> None:
        try:
            db = open_sqlite(db_path)
        except sqlite3.Error as exc:
            raise NodeStateError(f"cannot open the node's network state {db_path}: {exc}") from None
        try:
            for module in (participants, poc_round, inference_market, settlement, votes):
                db.executescript(module.SCHEMA)
            self.ctx = NetworkContext(ledger, db, node_key, validator_threads=validator_threads)
            self.participants = Participants(self.ctx)
        except sqlite3.Error as exc:
            db.close()
            raise NodeStateError(f"cannot open the node's network state {db_path}: {exc}") from None
        self.guard = ReplayGuard()
        self.queue = WorkQueue(self.participants)
        self.poc = PocRound(self.ctx, self.participants, self.queue)
        self.settlement: Settlement
        self.market = InferenceMarket(
            self.ctx,
            self.participants,
            self.queue,
            self.poc.weights,
            lambda epoch: self.settlement.epoch_secret(epoch),
        )
        self.settlement = Settlement(self.ctx, self.poc, self.market, self.participants)
        self.poc.epoch_secret = self.settlement.epoch_secret

    def close(self) -> None:
        self.ctx.close()
        self.ctx.db.close()

    # -- what the parts share ------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        return self.ctx.ledger

    @property
    def params(self) -> NetworkParams:
        return self.ctx.params

    @property
    def key(self) -> PrivateKey:
        return self.ctx.key

    @property
    def address(self) -> str:
        return self.ctx.address

    @property
    def db(self) -> sqlite3.Connection:
        return self.ctx.db

    @property
    def items(self) -> dict[str, WorkItem]:
        return self.queue.items

    def view(self) -> EpochView:
        return self.ctx.view()

    def seed(self, epoch: int) -> str | None:
        return self.ctx.seed(epoch)

    def pubkey_of(self, address: str) -> bytes | None:
        return self.participants.pubkey_of(address)

    def participant(self, address: str) -> Participant:
        return self.participants.require(address)

    # -- participants --------------------------------------------------------------------

    def register(
        self, address: str, pubkey: bytes, models: Sequence[str], devices: Sequence[Any]
    ) -> Participant:
        return self.participants.register(address, pubkey, models, devices)

    def leave(self, address: str) -> StakeInfo:
        return self.participants.leave(address)

    def stake(self, address: str) -> StakeInfo:
        return self.participants.stake(address)

    def weights(self) -> tuple[int | None, dict[str, int]]:
        return self.poc.weights()

    def participants_view(self) -> ParticipantsView:
        """Participants, their weights and the current epoch's commits and results."""
        view = self.view()
        weight_epoch, weights = self.weights()
        commits = self.poc.commits(view.epoch)
        results = {r.address: r for r in self.poc.results(view.epoch)}
        timeout = self.params.participant_timeout_s
        rows = []
        for p in sorted(self.participants.values(), key=lambda p: p.address):
            commit = commits.get(p.address)
            result = results.get(p.address)
            leaving = self.participants.exit_of(p.address)
            rows.append(
                ParticipantInfo(
                    address=p.address,
                    pubkey=p.pubkey_hex,
                    models=p.models,
                    devices=p.devices,
                    registered_height=p.registered_height,
                    weight=weights.get(p.address, 0),
                    weight_epoch=weight_epoch,
                    commit=Commit(*commit) if commit else None,
                    poc_status=result.status if result else None,
                    poc_weight=result.weight if result else None,
                    poc_reason=result.reason if result else None,
                    penalties=p.penalties,
                    busy=p.busy,
                    responsive=p.responsive(timeout),
                    collateral_ngonka=self.participants.collateral(p.address),
                    eligible=self.participants.eligible(p.address, view.epoch),
                    jailed_until_epoch=self.participants.jailed_until(p.address, view.epoch),
                    unbonding_until_epoch=leaving[1] if leaving else None,
                )
            )
        return ParticipantsView(view.epoch, weight_epoch, tuple(rows))

    # -- work ----------------------------------------------------------------------------

    def commit(self, address: str, request: CommitRequest) -> CommitAnswer:
        return self.poc.commit(address, request)

    async def poll(
        self, address: str, wait_s: float, limit: int = 16, everything: bool = False
    ) -> list[WorkItem]:
        """The caller's next work items; waits up to `wait_s` for one to arrive."""
        self.participants.require(address).seen()
        self.market.dispatch()
        return await self.queue.wait(address, wait_s, limit, everything)

    async def submit_result(
        self, address: str, item_id: str, raw: bytes, body: Mapping[str, Any]
    ) -> ResultAnswer:
        """Route an answer to the part that issued the item."""
        self.participants.require(address).seen()
        item = self.queue.item_for_result(address, item_id, raw)
        if item is None:
            return ResultAnswer(item_id, "duplicate")
        data = dict(body)
        try:
            if item.kind == POC_PROOF:
                return self.poc.proof_result(item, data)
            if item.kind == INFERENCE_TASK:
                return self.market.inference_result(item, data)
            if item.kind == POC_VALIDATION:
                return self.poc.vote_result(item, data)
            return self.market.validation_result(item, data)
        except Refusal:
            item.result_digest = ""  # a malformed answer does not use up the item
            raise

    # -- inference -----------------------------------------------------------------------

    def new_inference(
        self,
        requester: str,
        model: str,
        prompt_tokens: list[int],
        max_tokens: int,
        sampling: dict[str, Any],
    ) -> InferenceJob:
        return self.market.new_inference(requester, model, prompt_tokens, max_tokens, sampling)

    def abandon(self, job: InferenceJob, message: str) -> None:
        self.market.abandon(job, message)

    # -- epochs and settlement -----------------------------------------------------------

    def on_block(self, block: Block) -> None:
        """Advance the epoch's phases after each block."""
        view = epoch_at(self.params, block.height)
        # Votes past their deadline are counted as they are: nothing waits on a validator.
        self.poc.close_votes(block.height)
        if block.height == view.start_height:
            self.settlement.epoch_secret(view.epoch)
            if view.epoch > 0:
                self.settlement.settle(view.epoch - 1)
        if block.height == view.validate[0]:
            self.poc.start_validation(view)
        if block.height == view.inference[0]:
            self.poc.close_validation(view.epoch)
        self.poc.resume()
        self.settlement.check_settlements()
        self.settlement.settle_overdue(view.epoch)
        if block.height % PRUNE_EVERY_BLOCKS == 0:
            self.prune()

    def prune(self) -> None:
        """Forget finished work items past their retention, so memory stays bounded."""
        self.queue.prune()
        self.poc.prune()

    def catch_up(self) -> None:
        """At start-up: settle the epochs that ended while the node was down, re-send the
        proof requests of a running validate phase, and recompute the answers accepted
        before the stop."""
        self.settlement.check_settlements()
        view = self.view()
        if view.height < 1:
            return
        last = self.settlement.last_epoch_with_secret()
        first = 0 if last is None else max(0, last - 1)
        for epoch in range(first, view.epoch):
            self.settlement.settle(epoch)
        self.settlement.epoch_secret(view.epoch)
        if view.phase == VALIDATE:
            self.poc.start_validation(view)
        elif view.phase == INFERENCE:
            self.poc.close_validation(view.epoch)
        self.poc.resume()

    def settle(self, epoch: int) -> str | None:
        return self.settlement.settle(epoch)

    def epoch_secret(self, epoch: int) -> str:
        return self.settlement.epoch_secret(epoch)

    def epoch_record(self, epoch: int) -> EpochRecord | None:
        return self.settlement.epoch_record(epoch)

    def inference_record(self, inference_id: str) -> InferenceRecord | None:
        return self.market.record(inference_id)

    def earnings(self, address: str, since_height: int) -> Earnings:
        return self.settlement.earnings(address, since_height)
