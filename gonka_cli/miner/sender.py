"""Outbox delivery: the latest commit and every pending result, until the node answers.

`Sender.run()` is the miner's sender thread. It reads the outbox (`state.MinerState`) and
sends what is pending: an acknowledgement marks a row `acked`; a refusal that retrying cannot
change marks it `rejected` with the node's reason; a node that cannot be reached, or a refusal
that may pass (401, 408, 425, 429, 5xx), leaves it `pending` and is retried with backoff.
Refusals are told apart by the node's error `code` and HTTP status, never by their words.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gonka_cli.errors import NodeResponseError, NodeUnreachable, RequestRefused
from gonka_cli.miner.backoff import Backoff
from gonka_cli.miner.state import ACKED, REJECTED, MinerState
from gonka_cli.miner.status import Tally
from gonka_cli.miner.worker import INFERENCE, POC_VALIDATION, VALIDATION
from gonka_cli.workclient import WorkClient, commits_closed, is_retryable, node_reason, refusal_code

log = logging.getLogger(__name__)

__all__ = ["POC_PROOF", "Sender"]

POC_PROOF = "poc_proof"
_COUNTERS = {
    POC_PROOF: "proofs_answered",
    INFERENCE: "inference_tasks",
    VALIDATION: "validations",
    POC_VALIDATION: "validations",
}


class Sender:
    """Delivers one miner's outbox to its node."""

    def __init__(
        self,
        state: MinerState,
        client: WorkClient,
        tally: Tally,
        *,
        emit: Callable[..., None],
        reject: Callable[..., None],
        phase_left_s: Callable[[], float | None],
        block_time_s: Callable[[], float],
    ) -> None:
        self.state = state
        self.client = client
        self.tally = tally
        self._emit = emit
        self._reject = reject
        self._phase_left_s = phase_left_s
        self._block_time_s = block_time_s
        self._wake = threading.Event()
        self._last = threading.Event()
        self._last_commit_sent = 0.0

    def wake(self) -> None:
        """Something new is in the outbox."""
        self._wake.set()

    def finish(self) -> None:
        """Make one last pass (the commit at once), then end `run()`."""
        self._last.set()
        self._wake.set()

    def run(self) -> None:
        backoff = Backoff()
        while True:
            stopping = self._last.is_set()
            self.count_pending()
            try:
                self._send_commit(force=stopping)
                sent = self._send_results()
                backoff.reset()
            except (NodeUnreachable, NodeResponseError) as exc:
                log.debug("delivery paused: %s", exc)
                if stopping:
                    return
                self._wake.wait(backoff.next_delay())
                self._wake.clear()
                continue
            if stopping:
                self.count_pending()
                return
            if not sent:
                self._wake.wait(0.5)
                self._wake.clear()

    def count_pending(self) -> None:
        pending = self.state.outbox_counts()["pending"]
        self.tally.outbox_pending = pending + (1 if self.state.pending_commit() else 0)

    def _send_commit(self, force: bool = False) -> None:
        """The latest commit, at most once a block (the chain sees no more), and at once
        within two blocks of the phase's end, so that little work is left uncommitted."""
        record = self.state.pending_commit()
        if record is None:
            return
        block_time = self._block_time_s()
        left = self._phase_left_s()
        near_end = left is not None and left < 2 * block_time
        recent = time.monotonic() - self._last_commit_sent < block_time
        if recent and not (near_end or force):
            return
        self._last_commit_sent = time.monotonic()
        try:
            self.client.commit(record.epoch, record.model, record.count, record.root)
        except RequestRefused as exc:
            if is_retryable(exc):
                raise NodeResponseError(str(exc)) from None
            reason = node_reason(exc)
            self.state.commit_closed(record.epoch, reason)
            if commits_closed(exc):
                # The phase ended before this commit arrived: the previous one stands.
                self._emit(
                    "commit_late",
                    epoch=record.epoch,
                    count=record.count,
                    committed=record.acked_count,
                )
            else:
                self._reject("commit", reason, code=_code(exc), epoch=record.epoch)
            return
        self.state.commit_acked(record.epoch, record.count)
        first = self.tally.committed_count(record.epoch, record.count)
        self._emit("commit", epoch=record.epoch, count=record.count, root=record.root, first=first)

    def _send_results(self) -> bool:
        entries = self.state.pending_results()
        for entry in entries:
            self.state.result_attempted(entry.item_id)
            try:
                self.client.result(entry.item_id, entry.body)
            except RequestRefused as exc:
                if is_retryable(exc):
                    raise NodeResponseError(str(exc)) from None
                reason = node_reason(exc)
                self.state.result_done(entry.item_id, REJECTED, reason)
                self._reject(entry.kind, reason, code=_code(exc), id=entry.item_id)
                continue
            self.state.result_done(entry.item_id, ACKED)
            self.tally.add(_COUNTERS[entry.kind])
            self.tally.add("accepted")
            self._emit("result_accepted", kind=entry.kind, id=entry.item_id)
        return bool(entries)


def _code(exc: RequestRefused) -> str:
    """The node's `error_code` (`unknown` from a node that gives none)."""
    return refusal_code(exc).value
