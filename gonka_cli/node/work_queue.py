"""The work queue: items waiting for each participant, the long poll, and result intake.

Every connection is opened by a participant: work (proof requests, inference tasks,
replays, PoC validations) waits here until its assignee polls `GET /v1/work`. Items live in
memory only; after a restart an answer to an earlier item is refused (`unknown_item`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from gonka_cli.node.participants import Participants
from gonka_cli.protocol import (
    INFERENCE_TASK,
    POC_PROOF,
    AnyWorkItem,
    ErrorCode,
    Refusal,
    work_item_from_dict,
)

#: Finished work items are kept this long (for idempotent resends), then forgotten.
ITEM_RETENTION_S = 600.0


@dataclass
class WorkItem:
    """One item of work for one participant, with its delivery and answer state."""

    id: str
    kind: str
    assignee: str
    payload: dict[str, Any]
    deadline: float  # unix time
    deadline_height: int | None = None
    delivered: bool = False
    state: str = "open"  # open | done | expired
    result_digest: str = ""

    def message(self) -> AnyWorkItem:
        """The item as the protocol carries it to its assignee."""
        return work_item_from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "deadline": round(self.deadline, 3),
            "deadline_height": self.deadline_height,
            **self.payload,
        }


class WorkQueue:
    """Open and finished items by id, and a queue of undelivered ones per participant."""

    def __init__(self, participants: Participants) -> None:
        self._participants = participants
        self.items: dict[str, WorkItem] = {}
        self._queues: dict[str, deque[str]] = {}
        self._events: dict[str, asyncio.Event] = {}

    def _event(self, address: str) -> asyncio.Event:
        event = self._events.get(address)
        if event is None:
            event = self._events[address] = asyncio.Event()
        return event

    def push(self, item: WorkItem) -> None:
        self.items[item.id] = item
        self._queues.setdefault(item.assignee, deque()).append(item.id)
        self._event(item.assignee).set()

    def take(self, address: str, limit: int, everything: bool) -> list[WorkItem]:
        """Up to `limit` undelivered items of `address` (every open one with `everything`)."""
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

    async def wait(
        self, address: str, wait_s: float, limit: int, everything: bool
    ) -> list[WorkItem]:
        """The items of `address`; waits up to `wait_s` for one to arrive. The participant
        counts as polling (responsive) meanwhile."""
        items = self.take(address, limit, everything)
        if items or wait_s <= 0:
            return items
        participant = self._participants.require(address)
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
                items = self.take(address, limit, everything)
        finally:
            participant.polling -= 1
            participant.seen()
        return items

    def item_for_result(self, address: str, item_id: str, body: bytes) -> WorkItem | None:
        """The open item `item_id` of `address`; None when this exact result was taken."""
        item = self.items.get(item_id)
        if item is None:
            raise Refusal(
                ErrorCode.UNKNOWN_ITEM,
                f"no work item {item_id!r} (unknown or from before a restart)",
            )
        if item.assignee != address:
            raise Refusal(
                ErrorCode.NOT_ASSIGNEE, f"work item {item_id} is assigned to another participant"
            )
        digest = hashlib.sha256(body).hexdigest()
        if item.state == "done":
            if digest == item.result_digest:
                return None
            raise Refusal(
                ErrorCode.RESULT_CONFLICT, f"work item {item_id} already has a different result"
            )
        if item.state == "expired":
            raise Refusal(
                ErrorCode.ITEM_EXPIRED,
                f"work item {item_id} passed its deadline"
                + ("" if item.kind == POC_PROOF else " and was given to another participant"),
            )
        item.result_digest = digest
        return item

    def expire(self, item_id: str) -> WorkItem | None:
        """Expire an item still open at its deadline (a strike for its assignee)."""
        item = self.items.get(item_id)
        if item is None or item.state != "open":
            return None
        item.state = "expired"
        assignee = self._participants.get(item.assignee)
        if assignee is not None:
            assignee.strikes += 1
            if item.kind == INFERENCE_TASK:
                assignee.busy = max(0, assignee.busy - 1)
        return item

    def prune(self) -> None:
        """Forget finished items past their retention, so memory stays bounded."""
        horizon = time.time() - ITEM_RETENTION_S
        for item_id in [
            i.id for i in self.items.values() if i.state != "open" and i.deadline < horizon
        ]:
            del self.items[item_id]
