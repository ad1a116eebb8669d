"""The devnet front end of `gonka mine`: follow the epochs, take the work, deliver every result.

`Miner.run()` drives a `pool.DevicePool` (the device workers and their scheduler, which know
nothing of the network) with the pull protocol of a gonka node (docs/protocol.md):

- the **follower** (the calling thread) reads the current epoch. In a PoC generate phase it
  opens the epoch's artifact store (`MinerState.artifacts_path`, a sparse Merkle sum tree
  keyed by nonce) and gives the pool a filler that hands out
  nonce chunks; it checks each finished epoch's PoC verdict, the balance and what the
  network paid this address since the miner started (`GET .../earnings`);
- the **poller** long-polls `GET /v1/work`, so the next work item is already here while the
  devices compute the current one. Proof requests are answered from that store at once;
  inference and validation tasks go to the pool ahead of any PoC chunk;
- the **sender** (`sender.Sender`) delivers the outbox: the latest commit and every pending
  result, until the node acknowledges or refuses each.

Nothing is sent that was not written first: artifacts go to the durable store, then the new
`(count, root)` to the outbox, then to the node. A node that cannot be reached is retried
with exponential backoff and jitter while the devices keep computing what the phase allows;
kill -9 at any moment loses at most the chunks being computed. The miner acts on the node's
error codes (`protocol.ErrorCode`), never on the words of its messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gonka_cli import protocol as p
from gonka_cli.compute import artifacts as art
from gonka_cli.compute.smst import SMST
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import GonkaError, MinerError, NodeResponseError, NodeUnreachable
from gonka_cli.miner.backoff import Backoff
from gonka_cli.miner.devices import MiningDevice, Telemetry
from gonka_cli.miner.pool import PRIORITY_VALIDATION, PRIORITY_WORK, DevicePool, PoolConfig
from gonka_cli.miner.sender import POC_PROOF, Sender
from gonka_cli.miner.state import MinerState
from gonka_cli.miner.stats import DeviceStats, GeneratePhase
from gonka_cli.miner.status import ChainView, Tally, snapshot, summary
from gonka_cli.miner.worker import INFERENCE, POC, POC_VALIDATION, VALIDATION, Done, Task
from gonka_cli.workclient import WorkClient, WorkRefused, is_retryable, refusal_code

log = logging.getLogger(__name__)

__all__ = ["GENERATE", "INFERENCE_PHASE", "VALIDATE", "Miner", "MinerConfig"]

GENERATE, VALIDATE, INFERENCE_PHASE = "generate", "validate", "inference"
#: How many epochs back an artifact store is kept while its verdict is awaited.
_KEEP_AWAITED_EPOCHS = 10
#: Errors of a node that answered with something unusable: retried like an unreachable one.
_NODE_TROUBLE = (NodeUnreachable, NodeResponseError, p.ProtocolError)


@dataclass(frozen=True)
class MinerConfig:
    devices: tuple[MiningDevice, ...]
    #: Models served for inference besides the network's PoC model.
    models: tuple[str, ...] = ()
    duration_s: float | None = None
    temp_limit_c: float | None = None
    chunk_target_s: float = 0.25
    poll_wait_s: float = 5.0
    max_restarts: int = 3
    telemetry_interval_s: float = 2.0
    balance_interval_s: float = 5.0


@dataclass
class PocJob:
    """The generate phase of one epoch, as this miner runs it."""

    epoch: int
    seed: str
    model: str
    seq_len: int
    store: SMST
    #: Monotonic times: when the phase was seen to start and (predicted or seen) to end.
    started: float
    ends_at: float
    saw_start: bool
    stopped: float | None = None
    nonces: int = 0

    @property
    def active(self) -> bool:
        return self.stopped is None


class Miner:
    """One wallet mining on one node with a set of devices."""

    def __init__(
        self,
        client: WorkClient,
        key: PrivateKey,
        data_dir: Path,
        config: MinerConfig,
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        balance: Callable[[], int] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        if not config.devices:
            raise MinerError("no device to mine on")
        self.client = client
        self.pubkey_hex = key.public_key.to_hex()
        self.address = client.address
        self.data_dir = data_dir
        self.config = config
        self._on_event = on_event or (lambda event: None)
        self._balance_of = balance
        self._telemetry = telemetry

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._phase_changed = threading.Event()
        self._fatal: MinerError | None = None
        self._started = time.monotonic()
        self.state: MinerState | None = None
        self.pool: DevicePool | None = None
        self._sender: Sender | None = None
        self._idle_stats = {d.id: DeviceStats(d) for d in config.devices}
        self._seen_items: set[str] = set()
        self._jobs: dict[int, PocJob] = {}
        self._job: PocJob | None = None
        self._stores: dict[int, SMST] = {}
        self._phases: list[GeneratePhase] = []
        self._view: p.EpochCurrent | None = None
        self._view_at = 0.0
        self._node_ok = True
        self.tally = Tally()
        self._verdicts_done: set[int] = set()
        #: The chain's height when this miner started: earnings count from the next block.
        self.start_height: int | None = None
        self.start_epoch: int | None = None
        self._earnings_known = True
        self.poc_model = ""
        self.models: list[str] = []
        self._threads: list[threading.Thread] = []

    # -- what the front end shows --------------------------------------------------------

    @property
    def stats(self) -> dict[str, DeviceStats]:
        return self.pool.stats if self.pool is not None else self._idle_stats

    @property
    def workers(self) -> list[Any]:
        return self.pool.workers if self.pool is not None else []

    def _emit(self, event: str, **fields: Any) -> None:
        data = {"event": event, "t": round(time.monotonic() - self._started, 3), **fields}
        log.info("%s %s", event, {k: v for k, v in fields.items() if k != "answers"})
        try:
            self._on_event(data)
        except Exception:  # a broken display must not stop the mining
            log.exception("event handler failed")

    def _reject(self, what: str, reason: str, **fields: Any) -> None:
        self.tally.reject(_reason_key(reason))
        self._emit("rejected", what=what, reason=reason, **fields)

    def chain_view(self) -> ChainView:
        view = self._view
        if view is None:
            return ChainView()
        return ChainView(
            epoch=view.epoch,
            phase=view.phase,
            height=view.height,
            phase_time_left_s=self._phase_left_s(),
            next_generate_in_s=self._next_generate_in_s(),
        )

    def snapshot(self) -> dict[str, Any]:
        """The live status (`/status`, the live view): plain JSON types."""
        now = time.monotonic()
        if self.pool is not None:
            devices = self.pool.devices(now)
        else:
            devices = [s.to_dict(now) for s in self._idle_stats.values()]
        job = self._job
        return snapshot(
            address=self.address,
            node_url=self.client.url,
            node_reachable=self._node_ok,
            uptime_s=now - self._started,
            chain=self.chain_view(),
            devices=devices,
            tally=self.tally,
            job_epoch=job.epoch if job else None,
        )

    def summary(self) -> dict[str, Any]:
        """The final summary object (`--json`'s last line)."""
        return summary(self.snapshot(), [phase.to_dict() for phase in self._phases])

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to finish (from a signal handler or another thread)."""
        self._stop.set()

    def run(self) -> dict[str, Any]:
        """Mine until `stop()` or the configured duration; return the summary.

        Raises MinerError when mining cannot go on (every device failed) and the client's
        errors when the node refuses the participant at start.
        """
        epoch = self._first_epoch()
        self.start_height, self.start_epoch = epoch.height, epoch.epoch
        network_id = self._network_id()
        self.state = MinerState.open_for(self.data_dir, self.address, network_id)
        try:
            self.poc_model = epoch.poc.model
            self.models = sorted({self.poc_model, *self.config.models})
            self._register()
            self._read_balance(first=True)
            self._start_pool()
            self._sender = Sender(
                self.state,
                self.client,
                self.tally,
                emit=self._emit,
                reject=self._reject,
                phase_left_s=self._phase_left_s,
                block_time_s=self._block_time_s,
            )
            self._threads = [
                threading.Thread(target=self._guard(self._poll_work), name="poller"),
                threading.Thread(target=self._guard(self._sender.run), name="sender"),
            ]
            for thread in self._threads:
                thread.daemon = True
                thread.start()
            try:
                self._follow(epoch)
            finally:
                self._shutdown()
            result = self.summary()
        finally:
            for store in self._stores.values():
                store.close()
            self.state.close()
        if self._fatal is not None:
            raise self._fatal
        self._emit("stopped", duration_s=result["duration_s"])
        return result

    def _fail(self, error: MinerError) -> None:
        if self._fatal is None:
            self._fatal = error
        self.stop()

    def _guard(self, body: Callable[[], None]) -> Callable[[], None]:
        """A thread body whose unexpected error stops the miner (and says why)."""

        def run() -> None:
            try:
                body()
            except Exception as exc:
                log.exception("%s failed", threading.current_thread().name)
                self._fail(
                    MinerError(
                        f"the miner's {threading.current_thread().name} failed: "
                        f"{type(exc).__name__}: {exc}"
                    )
                )

        return run

    def _first_epoch(self) -> p.EpochCurrent:
        """The current epoch once the chain has its first block (a fresh devnet has none)."""
        backoff = Backoff()
        deadline = time.monotonic() + 60
        while True:
            epoch = self.client.epoch()
            if epoch.height >= 1 and epoch.seed:
                return epoch
            if time.monotonic() > deadline:
                raise MinerError(
                    f"the node at {self.client.url} has made no block in 60 s; is it running?"
                )
            if self._stop.wait(min(0.5, backoff.next_delay())):
                raise MinerError("stopped before the first block")

    def _network_id(self) -> str:
        """The seed of epoch 0: the same on every node of a chain, new with each devnet."""
        seed = self.client.epoch_record(0).seed
        if not seed:
            raise NodeResponseError("the node did not give the seed of epoch 0")
        return seed

    def _ended(self) -> bool:
        if self._stop.is_set():
            return True
        duration = self.config.duration_s
        return duration is not None and time.monotonic() - self._started >= duration

    def _shutdown(self) -> None:
        self._stop.set()
        job = self._job
        pool = self.pool
        # Let the devices finish the work items they hold (their results are owed); a PoC
        # chunk in flight is dropped: its nonces are reserved, so none is ever computed twice.
        if pool is not None:
            pool.set_filler(None)
            pool.drain(timeout_s=5.0)
        if job is not None and job.active:
            self._stop_job(job, seen_end=False)
        if pool is not None:
            pool.stop(timeout_s=2.0)
        self._read_balance()
        self._check_verdicts()
        # A last delivery of what is queued: a commit that does not reach the node now is
        # sent by the next run (the outbox keeps it).
        if self._sender is not None:
            self._sender.finish()
        for thread in self._threads:
            thread.join(timeout=5 if thread.name == "sender" else 2)

    # -- the device pool -----------------------------------------------------------------

    def _start_pool(self) -> None:
        config = self.config
        self.pool = DevicePool(
            PoolConfig(
                devices=config.devices,
                models=tuple(self.models),
                poc_model=self.poc_model,
                max_restarts=config.max_restarts,
                temp_limit_c=config.temp_limit_c,
                telemetry_interval_s=config.telemetry_interval_s,
                chunk_target_s=config.chunk_target_s,
            ),
            on_done=self._on_done,
            on_failed=self._on_failed,
            on_event=lambda event, fields: self._emit(event, **fields),
            on_fatal=self._fail,
            telemetry=self._telemetry,
        )
        self.pool.set_filler(self._poc_chunk)
        self.pool.start()

    def _poc_chunk(self, device_id: str, stats: DeviceStats) -> Task | None:
        """The pool's filler (called under its lock): the next nonces of the running phase."""
        job = self._job
        if job is None or not job.active or time.monotonic() > job.ends_at:
            return None
        assert self.state is not None and self.pool is not None
        nonces = self.state.reserve_nonces(job.epoch, self.pool.chunk_size(stats))
        return Task(
            POC,
            {
                "epoch": job.epoch,
                "model": job.model,
                "seed": job.seed,
                "pubkey": self.pubkey_hex,
                "seq_len": job.seq_len,
                "first": nonces.start,
                "count": len(nonces),
            },
        )

    def _on_done(self, device_id: str, done: Done) -> None:
        try:
            self._store_result(device_id, done)
        except Exception as exc:
            # Results that cannot be stored must not be computed on: stop and say why.
            log.exception("%s: cannot store a %s result", device_id, done.task.kind)
            self._fail(
                MinerError(
                    f"cannot store the results of {device_id}: {type(exc).__name__}: {exc}; "
                    "check the disk and the state directory, then start again"
                )
            )

    def _store_result(self, device_id: str, done: Done) -> None:
        task = done.task
        if task.kind == POC:
            self._poc_done(done)
            return
        item: p.WorkItem = task.item
        view = self._view
        assert self.state is not None
        self.state.add_result(item.id, task.kind, view.epoch if view else 0, done.result)
        self._emit(
            "task_computed",
            kind=task.kind,
            id=item.id,
            device=device_id,
            seconds=round(done.busy_s, 3),
        )
        if self._sender is not None:
            self._sender.wake()

    def _poc_done(self, done: Done) -> None:
        payload = done.task.payload
        nonces = range(payload["first"], payload["first"] + payload["count"])
        job = self._jobs.get(payload["epoch"])
        if job is None:
            return
        leaves = [art.leaf_data(n, v) for n, v in zip(nonces, done.result, strict=True)]
        job.store.insert_many(leaves)
        count, root = job.store.count, job.store.root().hex()
        if job.active and self.state is not None:
            self.state.record_commit(job.epoch, job.model, count, root)
            if self._sender is not None:
                self._sender.wake()
        with self._lock:
            job.nonces += len(leaves)

    def _on_failed(self, device_id: str, task: Task, message: str) -> None:
        item_id = task.item.id if isinstance(task.item, p.WorkItem) else None
        self._emit("task_failed", kind=task.kind, id=item_id, device=device_id, error=message)

    # -- following the epochs ------------------------------------------------------------

    def _follow(self, epoch: p.EpochCurrent | None) -> None:
        backoff = Backoff()
        next_balance = 0.0
        while not self._ended() and self._fatal is None:
            if epoch is not None:
                self._on_epoch(epoch)
            now = time.monotonic()
            if now >= next_balance or self._phase_changed.is_set():
                # On a new phase at once: a verdict is there as soon as validation is over.
                self._phase_changed.clear()
                self._read_balance()
                self._check_verdicts()
                next_balance = now + self.config.balance_interval_s
            try:
                if self._stop.wait(self._poll_interval()):
                    break
                epoch = self.client.epoch()
                self._node_back(backoff)
            except _NODE_TROUBLE as exc:
                epoch = None
                self._node_lost(exc)
                self._stop.wait(backoff.next_delay())

    def _block_time_s(self) -> float:
        view = self._view
        return view.block_time_s if view is not None and view.block_time_s > 0 else 1.0

    def _since_view_s(self) -> float:
        return time.monotonic() - self._view_at

    def _phase_left_s(self) -> float | None:
        """Seconds until the current phase ends, from the last height seen and the block time."""
        view = self._view
        if view is None:
            return None
        blocks = view.phase_end_height - view.height + 1
        return blocks * self._block_time_s() - self._since_view_s()

    def _next_generate_in_s(self) -> float | None:
        """Outside a generate phase, seconds until the next one begins."""
        view = self._view
        if view is None or view.phase == GENERATE:
            return None
        start = view.generate.start_height
        if view.height >= start:  # this epoch's is over: the next epoch's
            start += view.end_height - view.start_height + 1
        return (start - view.height) * self._block_time_s() - self._since_view_s()

    def _poll_interval(self) -> float:
        """Half a block; an eighth near a phase's end, so the next phase is seen at once."""
        block_time = self._block_time_s()
        left = self._phase_left_s()
        share = 8 if left is not None and left < 1.5 * block_time else 2
        return min(1.0, max(0.02, block_time / share))

    def _node_lost(self, exc: GonkaError) -> None:
        if self._node_ok:
            self._node_ok = False
            self._emit("node_unreachable", node=self.client.url, error=str(exc))

    def _node_back(self, backoff: Backoff) -> None:
        backoff.reset()
        if not self._node_ok:
            self._node_ok = True
            self._emit("node_reachable", node=self.client.url)
            if self._sender is not None:
                self._sender.wake()

    def _on_epoch(self, view: p.EpochCurrent) -> None:
        now = time.monotonic()
        previous = self._view
        with self._lock:
            self._view, self._view_at = view, now
        if previous is None or (previous.epoch, previous.phase) != (view.epoch, view.phase):
            self._phase_changed.set()
            self._emit("phase", epoch=view.epoch, phase=view.phase, height=view.height)
        job = self._job
        if job is not None and job.active and (view.epoch != job.epoch or view.phase != GENERATE):
            self._stop_job(job, seen_end=True)
        if view.phase == GENERATE and view.seed:
            ends_at = now + (view.generate.end_height - view.height + 1) * self._block_time_s()
            if job is None or job.epoch != view.epoch:
                # A phase seen from its start (not joined half-way) gives a duty-cycle figure.
                saw_start = previous is not None and (
                    previous.epoch != view.epoch or previous.phase != GENERATE
                )
                self._start_job(view, ends_at, saw_start)
            elif job.active:
                job.ends_at = ends_at
        if self.state is not None and (previous is None or previous.epoch != view.epoch):
            # Stores of epochs still awaiting a verdict stay, for a while: a node that never
            # settles them must not fill the disk.
            awaited = {
                e for e in self._verdicts_due() if e >= view.epoch - _KEEP_AWAITED_EPOCHS
            } - self._verdicts_done
            self.state.prune(view.epoch, keep=awaited)
            for old in [e for e in self._stores if e < view.epoch - 2 and e not in awaited]:
                self._stores.pop(old).close()
                self._jobs.pop(old, None)

    def _store(self, epoch: int) -> SMST:
        assert self.state is not None
        if epoch not in self._stores:
            self._stores[epoch] = SMST(self.state.artifacts_path(epoch))
        return self._stores[epoch]

    def _start_job(self, view: p.EpochCurrent, ends_at: float, saw_start: bool) -> None:
        assert view.seed is not None
        store = self._store(view.epoch)
        job = PocJob(
            epoch=view.epoch,
            seed=view.seed,
            model=view.poc.model,
            seq_len=view.poc.seq_len,
            store=store,
            started=time.monotonic(),
            ends_at=ends_at,
            saw_start=saw_start,
        )
        with self._lock:
            self._jobs[job.epoch] = job
            self._job = job
        if self.pool is not None:
            self.pool.wake()
        self._emit(
            "generate_started",
            epoch=job.epoch,
            model=job.model,
            resumed_count=store.count,
            seconds_left=round(ends_at - job.started, 2),
        )

    def _stop_job(self, job: PocJob, seen_end: bool) -> None:
        with self._lock:
            if not job.active:
                return
            job.stopped = time.monotonic() if seen_end else min(time.monotonic(), job.ends_at)
        window = (job.started, job.stopped)
        busy, share = self.pool.duty_cycle(window) if self.pool else (0.0, 0.0)
        seconds = window[1] - window[0]
        record = self.state.commit_of(job.epoch) if self.state else None
        phase = GeneratePhase(
            epoch=job.epoch,
            seconds=seconds,
            busy_s=busy,
            duty_cycle=share,
            nonces=job.nonces,
            nonces_per_second=job.nonces / seconds if seconds > 0 else 0.0,
            committed=record.acked_count if record else 0,
            full_phase=job.saw_start and seen_end,
        )
        self._phases.append(phase)
        self._emit("generate_done", **phase.to_dict())

    def _verdicts_due(self) -> list[int]:
        """Epochs whose PoC verdict this miner awaits: those it committed to in this run,
        and in an earlier run of the same state (a restart in the middle of a phase)."""
        earlier = self.state.acked_epochs() if self.state is not None else []
        first = self.start_epoch if self.start_epoch is not None else 0
        return sorted({*self.tally.committed, *(e for e in earlier if e >= first)})

    def _check_verdicts(self) -> None:
        """Each epoch this miner committed to: its PoC verdict, once validation is over."""
        view = self._view
        if view is None or self.state is None:
            return
        for epoch in self._verdicts_due():
            if epoch in self._verdicts_done:
                continue
            if epoch == view.epoch and view.phase != INFERENCE_PHASE:
                continue
            try:
                record = self.client.epoch_record(epoch)
            except GonkaError:
                return
            mine = next((r for r in record.poc_results if r.address == self.address), None)
            if mine is None:
                # The node may still be recomputing: only a settled epoch is its last word.
                if record.settled_height is not None:
                    self._verdicts_done.add(epoch)
                    self._reject(
                        "poc",
                        f"epoch {epoch}: settled with no PoC verdict for this miner",
                        epoch=epoch,
                    )
                continue
            self._verdicts_done.add(epoch)
            if mine.weight > 0:
                self.tally.accepted_weight(mine.weight)
                self._emit("poc_accepted", epoch=epoch, weight=mine.weight, count=mine.count)
            else:
                self._reject("poc", f"PoC {mine.status}: {mine.reason or 'no weight'}", epoch=epoch)

    def _read_balance(self, first: bool = False) -> None:
        """The balance (as the wallet sees it) and the earnings since start (as the node's
        records say); a `balance` event when either changed."""
        tally = self.tally
        before = (tally.balance_ngonka, tally.earned_ngonka)
        if self._balance_of is not None:
            try:
                tally.balance_ngonka = self._balance_of()
            except GonkaError as exc:
                log.debug("balance: %s", exc)
        self._read_earnings()
        after = (tally.balance_ngonka, tally.earned_ngonka)
        if after != before and not first:
            self._emit(
                "balance",
                balance_ngonka=None if after[0] is None else str(after[0]),
                earned_ngonka=None if after[1] is None else str(after[1]),
            )

    def _read_earnings(self) -> None:
        if self.start_height is None or not self._earnings_known:
            return
        try:
            earnings = self.client.earnings(self.address, self.start_height)
        except WorkRefused as exc:
            if refusal_code(exc) in (p.ErrorCode.NOT_FOUND, p.ErrorCode.METHOD_NOT_ALLOWED):
                # A node without the earnings records: earned stays unknown, never a guess.
                self._earnings_known = False
                log.warning("the node does not report earnings (%s); earned is unknown", exc)
            else:
                log.debug("earnings: %s", exc)
            return
        except GonkaError as exc:
            log.debug("earnings: %s", exc)
            return
        self.tally.earned_ngonka = earnings.total_ngonka
        self.tally.earnings = {
            "since_height": earnings.since_height,
            "height": earnings.height,
            "poc_reward_ngonka": str(earnings.poc_reward_ngonka),
            "inference_fees_ngonka": str(earnings.inference_fees_ngonka),
            "validation_reward_ngonka": str(earnings.validation_reward_ngonka),
        }

    # -- work from the node --------------------------------------------------------------

    def _poll_work(self) -> None:
        backoff = Backoff()
        everything = True  # the first poll takes items delivered before a restart too
        while not self._stop.is_set():
            try:
                work = self.client.work(wait_s=self.config.poll_wait_s, everything=everything)
                everything = False
                backoff.reset()
            except WorkRefused as exc:
                if refusal_code(exc) == p.ErrorCode.NOT_REGISTERED:
                    self._register_again()
                elif not is_retryable(exc):
                    log.warning("work poll refused: %s", exc)
                self._stop.wait(backoff.next_delay())
                continue
            except _NODE_TROUBLE as exc:
                log.debug("work poll: %s", exc)
                everything = True
                self._stop.wait(backoff.next_delay())
                continue
            if self._stop.is_set():
                return  # what came with the last poll is delivered again next time
            for item in work.items:
                self._take_item(item)

    def _register(self, again: bool = False) -> None:
        assert self.state is not None
        # Registering locks the network's collateral from the wallet. Funding sent just
        # before (the devnet's new wallet) counts once it is in a block: wait a few blocks.
        patience = time.monotonic() + max(5.0, 5 * self._block_time_s())
        while True:
            try:
                self.client.register(self.models, [_device_info(d) for d in self.config.devices])
                break
            except WorkRefused as exc:
                if refusal_code(exc) != p.ErrorCode.INSUFFICIENT_COLLATERAL:
                    raise
                if time.monotonic() > patience or self._stop.is_set():
                    # The node's words say how much is needed and how to fund it.
                    raise MinerError(f"cannot register {self.address}: {exc.reason}") from None
                self._stop.wait(0.5)
        self._emit(
            "registered",
            address=self.address,
            node=self.client.url,
            models=self.models,
            devices=[d.id for d in self.config.devices],
            state_dir=str(self.state.directory),
            height=self.start_height,
            again=again,
        )

    def _register_again(self) -> None:
        """The node forgot this participant (a new home): register it again."""
        try:
            self._register(again=True)
        except GonkaError as exc:
            log.warning("registering again failed: %s", exc)

    def _take_item(self, item: p.AnyWorkItem) -> None:
        assert self.state is not None
        with self._lock:
            if item.id in self._seen_items:
                return
            self._seen_items.add(item.id)
        if self.state.has_result(item.id):
            return  # computed before a restart: the outbox delivers it
        self._emit("work_received", kind=item.kind, id=item.id)
        if isinstance(item, p.ProofRequest):
            self._answer_proof(item)
            return
        assert self.pool is not None
        if isinstance(item, p.InferenceTask):
            kind, priority = INFERENCE, PRIORITY_WORK
        elif isinstance(item, p.PocValidationTask):
            kind, priority = POC_VALIDATION, PRIORITY_VALIDATION
        else:
            kind, priority = VALIDATION, PRIORITY_VALIDATION
        self.pool.submit(Task(kind, item.to_dict(), item), priority)

    def _answer_proof(self, item: p.ProofRequest) -> None:
        from gonka_cli.compute.validation import build_answers

        assert self.state is not None
        epoch = item.epoch
        try:
            path = self.state.artifacts_path(epoch)
            store = self._store(epoch) if path.exists() else None
            if store is None or store.count < item.count:
                raise MinerError(
                    f"the artifacts of epoch {epoch} are not on this machine "
                    f"({0 if store is None else store.count} of {item.count})"
                )
            answers = build_answers(store, list(item.leaf_indices), item.count)
        except GonkaError as exc:
            self._reject(POC_PROOF, f"cannot answer: {exc}", epoch=epoch)
            return
        self.state.add_result(
            item.id, POC_PROOF, epoch, p.ProofResult(tuple(a.to_dict() for a in answers)).to_dict()
        )
        if self._sender is not None:
            self._sender.wake()


def _device_info(device: MiningDevice) -> dict[str, Any]:
    return {"id": device.id, "name": device.name}


def _reason_key(reason: str) -> str:
    """Rejections grouped by kind: the reason up to its first detail."""
    return reason.split(";")[0].split(":")[0].strip()[:80] or "unknown"
