"""What the parts of the network side share: the ledger, the parameters, the state database,
the node's key, the worker threads that recompute, and the clock of epochs.

`Network` (`node/network.py`) builds one `NetworkContext` and hands it to each part
(participants, work queue, PoC round, inference market, settlement). Everything here runs on
the node's event loop; only recomputations and replays run on the worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.node.epochs import EpochView, NetworkParams, epoch_at
from gonka_cli.node.ledger import Ledger

log = logging.getLogger(__name__)


class NetworkContext:
    """The shared parts: `ledger`, `params`, `db` (network.db), `key` and `address`."""

    def __init__(
        self,
        ledger: Ledger,
        db: sqlite3.Connection,
        key: PrivateKey,
        *,
        validator_threads: int = 1,
    ) -> None:
        self.ledger = ledger
        self.params: NetworkParams = ledger.genesis.network_params
        self.db = db
        self.key = key
        self.address = ledger.node_address
        #: The worker threads that recompute PoC answers and replay inferences.
        self.validator_threads = validator_threads
        self.validator = ThreadPoolExecutor(validator_threads, "gonka-validate")
        self._tasks: set[asyncio.Future[Any]] = set()

    def view(self) -> EpochView:
        return epoch_at(self.params, self.ledger.height)

    def seed(self, epoch: int) -> str | None:
        """The PoC seed of `epoch`: the hash of its first block (None before that block)."""
        block = self.ledger.block(epoch * self.params.epoch_blocks + 1)
        return block.hash if block else None

    def deadline_at(self, height: int) -> float:
        """An estimate of when block `height` will be made (Unix time)."""
        return time.time() + max(0, height - self.ledger.height) * self.ledger.block_time_s

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` on the event loop, keeping a reference until it is done. An exception
        that escapes it is logged (a task's error is otherwise seen by nobody)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def close(self) -> None:
        self.validator.shutdown(wait=False, cancel_futures=True)
        for task in list(self._tasks):
            task.cancel()
