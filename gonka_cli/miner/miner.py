"""The mining loop: follow the epochs, keep every device busy, deliver every result.

`Miner.run()` drives five threads around the device workers (`worker.DeviceWorker`):

- the **follower** reads the current epoch. In a PoC generate phase it opens the epoch's
  MMR (`MinerState.mmr_path`) and lets the dispatcher hand out nonce chunks; it checks each
  finished epoch's PoC verdict, and the wallet balance;
- the **poller** long-polls `GET /v1/work`, so the next work item is already here while the
  devices compute the current one. Proof requests are answered from the MMR at once;
  inference and validation tasks queue for the devices;
- the **dispatcher** keeps every ready device two tasks deep: work items first (they have
  deadlines), then PoC chunks sized to about a quarter of a second of compute;
- the **sender** delivers the outbox (`state.MinerState`): the latest commit and every
  pending result, until the node acknowledges or refuses each;
- **telemetry** reads temperatures, power and utilisation, and pauses a device above
  `--temp-limit` until it has cooled.

Nothing is sent that was not written first: artifacts go to the durable MMR, then the new
`(count, root)` to the outbox, then to the node. A node that cannot be reached is retried
with exponential backoff and jitter while the devices keep computing what the phase allows;
kill -9 at any moment loses at most the chunk being computed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gonka_cli.compute import artifacts as art
from gonka_cli.compute.mmr import MMR
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import (
    GonkaError,
    MinerError,
    NodeResponseError,
    NodeUnreachable,
    RequestRefused,
)
from gonka_cli.miner.client import NetworkClient
from gonka_cli.miner.devices import DeviceReading, MiningDevice, Telemetry, ThermalGate
from gonka_cli.miner.state import ACKED, REJECTED, MinerState
from gonka_cli.miner.worker import INFERENCE, POC, VALIDATION, DeviceWorker, Done, Task

log = logging.getLogger(__name__)

GENERATE, VALIDATE, INFERENCE_PHASE = "generate", "validate", "inference"
POC_PROOF = "poc_proof"
#: Tasks queued on a device beyond the one it computes: the next is there when it finishes.
QUEUE_DEPTH = 2
#: A device whose PoC speed stays below this share of its best for `COLLAPSE_WINDOW_S` is
#: restarted (a wedged driver context, a throttled card).
COLLAPSE_SHARE = 0.2
COLLAPSE_WINDOW_S = 20.0
RETRYABLE_STATUSES = frozenset({401, 408, 425, 429})


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


class Backoff:
    """Exponential backoff with full jitter, reset by a success."""

    def __init__(self, base_s: float = 0.25, cap_s: float = 5.0) -> None:
        self.base_s, self.cap_s = base_s, cap_s
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        ceiling = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret

    def reset(self) -> None:
        self.failures = 0


@dataclass
class DeviceStats:
    device: MiningDevice
    state: str = "starting"
    nonces: int = 0
    restarts: int = 0
    reading: DeviceReading = field(default_factory=DeviceReading)
    last_error: str | None = None
    #: (start, finish, nonces) of recent PoC chunks, for the speeds shown and checked.
    recent: deque[tuple[float, float, int]] = field(default_factory=lambda: deque(maxlen=64))
    best_rate: float = 0.0
    slow_since: float | None = None
    busy: list[tuple[float, float]] = field(default_factory=list)

    def rate(self, now: float, window_s: float = 5.0) -> float:
        """Nonces per second of wall time over the last `window_s` (what the device delivers)."""
        chunks = [(s, n) for s, f, n in self.recent if now - f <= window_s]
        if not chunks:
            return 0.0
        span = min(window_s, now - min(s for s, _ in chunks))
        return sum(n for _, n in chunks) / span if span > 0 else 0.0

    def compute_rate(self) -> float:
        """Nonces per second of compute over the last chunks (what the device can do)."""
        chunks = list(self.recent)[-8:]
        busy = sum(f - s for s, f, _ in chunks)
        return sum(n for _, _, n in chunks) / busy if busy > 0 else 0.0

    def record_chunk(self, started: float, finished: float, nonces: int) -> bool:
        """Note a finished PoC chunk; True when the device's speed has collapsed: its
        compute rate stayed under `COLLAPSE_SHARE` of its best for `COLLAPSE_WINDOW_S`."""
        self.nonces += nonces
        self.recent.append((started, finished, nonces))
        self.busy.append((started, finished))
        if len(self.busy) > 4096:
            del self.busy[:2048]
        if len(self.recent) < 8:
            return False
        rate = self.compute_rate()
        self.best_rate = max(self.best_rate, rate)
        if rate >= COLLAPSE_SHARE * self.best_rate:
            self.slow_since = None
            return False
        self.slow_since = self.slow_since or finished
        if finished - self.slow_since < COLLAPSE_WINDOW_S:
            return False
        self.last_error = f"speed collapsed to {rate:.0f} nonces/s from {self.best_rate:.0f}"
        self.slow_since = None
        self.recent.clear()
        return True

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "id": self.device.id,
            "name": self.device.name,
            "state": self.state,
            "nonces": self.nonces,
            "nonces_per_second": round(self.rate(now), 1),
            "temperature_c": self.reading.temperature_c,
            "power_w": self.reading.power_w,
            "utilization_pct": self.reading.utilization_pct,
            "restarts": self.restarts,
            "last_error": self.last_error,
        }


@dataclass
class PocJob:
    """The generate phase of one epoch, as this miner runs it."""

    epoch: int
    seed: str
    model: str
    seq_len: int
    mmr: MMR
    #: Monotonic times: when the phase was seen to start and (predicted or seen) to end.
    started: float
    ends_at: float
    saw_start: bool
    stopped: float | None = None
    nonces: int = 0
    first_commit_at: float | None = None

    @property
    def active(self) -> bool:
        return self.stopped is None


@dataclass(frozen=True)
class GeneratePhase:
    """How one generate phase went: the duty cycle and speed figures."""

    epoch: int
    seconds: float
    busy_s: float
    duty_cycle: float
    nonces: int
    nonces_per_second: float
    committed: int
    full_phase: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "seconds": round(self.seconds, 3),
            "busy_s": round(self.busy_s, 3),
            "duty_cycle": round(self.duty_cycle, 4),
            "nonces": self.nonces,
            "nonces_per_second": round(self.nonces_per_second, 1),
            "committed": self.committed,
            "full_phase": self.full_phase,
        }


class Miner:
    """One wallet mining on one node with a set of devices."""

    def __init__(
        self,
        client: NetworkClient,
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
        self._gates = (
            {d.id: ThermalGate(config.temp_limit_c) for d in config.devices}
            if config.temp_limit_c is not None
            else {}
        )

        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._fatal: MinerError | None = None
        self._started = time.monotonic()
        self.state: MinerState | None = None
        self.workers: list[DeviceWorker] = []
        self.stats = {d.id: DeviceStats(d) for d in config.devices}
        self._work: deque[Task] = deque()
        self._seen_items: set[str] = set()
        self._jobs: dict[int, PocJob] = {}
        self._job: PocJob | None = None
        self._mmrs: dict[int, MMR] = {}
        self._phases: list[GeneratePhase] = []
        self._view: dict[str, Any] = {}
        self._view_at = 0.0
        self._node_ok = True
        self._sender_wake = threading.Event()
        #: Set once the devices have finished: the sender makes one last pass and ends.
        self._last_delivery = threading.Event()
        self._counts: Counter[str] = Counter()
        self._rejections: Counter[str] = Counter()
        self._verdicts_done: set[int] = set()
        self._committed: dict[int, int] = {}
        self._weight_accepted = 0
        self._balance_start: int | None = None
        self._balance: int | None = None
        self.poc_model = ""
        self.models: list[str] = []
        self._threads: list[threading.Thread] = []
        self._outbox_pending = 0
        self._last_commit_sent = 0.0

    # -- events and status ---------------------------------------------------------------

    def _emit(self, event: str, **fields: Any) -> None:
        data = {"event": event, "t": round(time.monotonic() - self._started, 3), **fields}
        log.info("%s %s", event, {k: v for k, v in fields.items() if k != "answers"})
        try:
            self._on_event(data)
        except Exception:  # a broken display must not stop the mining
            log.exception("event handler failed")

    def _reject(self, what: str, reason: str, **fields: Any) -> None:
        with self._cond:
            self._counts["rejected"] += 1
            self._rejections[_reason_key(reason)] += 1
        self._emit("rejected", what=what, reason=reason, **fields)

    def snapshot(self) -> dict[str, Any]:
        """The live status (`/status`, the live view): plain JSON types."""
        now = time.monotonic()
        with self._cond:
            view = dict(self._view)
            job = self._job
            counts = dict(self._counts)
            rejections = dict(self._rejections)
            devices = [s.to_dict(now) for s in self.stats.values()]
            committed = sum(self._committed.values())
        left = self._phase_left_s()
        if left is not None:
            left = max(0.0, left)
        pending = self._outbox_pending
        return {
            "address": self.address,
            "node_url": self.client.url,
            "node_reachable": self._node_ok,
            "uptime_s": round(now - self._started, 1),
            "epoch": view.get("epoch"),
            "phase": view.get("phase"),
            "height": view.get("height"),
            "phase_time_left_s": None if left is None else round(left, 1),
            "devices": devices,
            "totals": {
                "nonces": sum(d["nonces"] for d in devices),
                "artifacts_committed": committed,
                "proofs_answered": counts.get("proofs_answered", 0),
                "inference_tasks": counts.get("inference_tasks", 0),
                "validations": counts.get("validations", 0),
                "accepted": counts.get("accepted", 0),
                "rejected": counts.get("rejected", 0),
                "rejections": rejections,
                "weight_estimated": self._committed.get(job.epoch, 0) if job else 0,
                "weight_accepted": self._weight_accepted,
                "balance_ngonka": None if self._balance is None else str(self._balance),
                "earned_ngonka": self._earned(),
                "outbox_pending": pending,
            },
        }

    def _earned(self) -> str | None:
        if self._balance is None or self._balance_start is None:
            return None
        return str(self._balance - self._balance_start)

    def summary(self) -> dict[str, Any]:
        """The final summary object (`--json`'s last line)."""
        snap = self.snapshot()
        totals = snap["totals"]
        return {
            "event": "summary",
            "address": self.address,
            "duration_s": snap["uptime_s"],
            "nonces": totals["nonces"],
            "artifacts_committed": totals["artifacts_committed"],
            "weight_estimated": totals["weight_estimated"],
            "weight_accepted": totals["weight_accepted"],
            "proofs_answered": totals["proofs_answered"],
            "inference_tasks": totals["inference_tasks"],
            "validations": totals["validations"],
            "accepted": totals["accepted"],
            "rejected": totals["rejected"],
            "rejections": totals["rejections"],
            "balance_ngonka": totals["balance_ngonka"],
            "earned_ngonka": totals["earned_ngonka"] or "0",
            "outbox_pending": totals["outbox_pending"],
            "devices": snap["devices"],
            "generate_phases": [p.to_dict() for p in self._phases],
        }

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to finish (from a signal handler or another thread)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def run(self) -> dict[str, Any]:
        """Mine until `stop()` or the configured duration; return the summary.

        Raises MinerError when mining cannot go on (every device failed) and the client's
        errors when the node refuses the participant at start.
        """
        epoch = self._first_epoch()
        network_id = self._network_id()
        self.state = MinerState.open_for(self.data_dir, self.address, network_id)
        try:
            self.poc_model = str(epoch["poc"]["model"])
            self.models = sorted({self.poc_model, *self.config.models})
            self._register()
            self._read_balance(first=True)
            self._start_workers()
            self._threads = [
                threading.Thread(target=self._guard(self._poll_work), name="poller"),
                threading.Thread(target=self._guard(self._send), name="sender"),
                threading.Thread(target=self._guard(self._dispatch), name="dispatcher"),
                threading.Thread(target=self._guard(self._watch_devices), name="telemetry"),
            ]
            for thread in self._threads:
                thread.daemon = True
                thread.start()
            try:
                self._follow(epoch)
            finally:
                self._shutdown(self._threads)
            summary = self.summary()
        finally:
            for mmr in self._mmrs.values():
                mmr.close()
            self.state.close()
        if self._fatal is not None:
            raise self._fatal
        self._emit("stopped", duration_s=summary["duration_s"])
        return summary

    def _guard(self, body: Callable[[], None]) -> Callable[[], None]:
        """A thread body whose unexpected error stops the miner (and says why)."""

        def run() -> None:
            try:
                body()
            except Exception as exc:
                log.exception("%s failed", threading.current_thread().name)
                self._fatal = MinerError(
                    f"the miner's {threading.current_thread().name} failed: "
                    f"{type(exc).__name__}: {exc}"
                )
                self.stop()

        return run

    def _first_epoch(self) -> dict[str, Any]:
        """The current epoch once the chain has its first block (a fresh devnet has none)."""
        backoff = Backoff()
        deadline = time.monotonic() + 60
        while True:
            epoch = self.client.epoch()
            if epoch.get("height", 0) >= 1 and epoch.get("seed"):
                return epoch
            if time.monotonic() > deadline:
                raise MinerError(
                    f"the node at {self.client.url} has made no block in 60 s; is it running?"
                )
            if self._stop.wait(min(0.5, backoff.next_delay())):
                raise MinerError("stopped before the first block")

    def _network_id(self) -> str:
        """The seed of epoch 0: the same on every node of a chain, new with each devnet."""
        record = self.client.epoch_record(0)
        seed = record.get("seed")
        if not isinstance(seed, str) or not seed:
            raise NodeResponseError("the node did not give the seed of epoch 0")
        return seed

    def _ended(self) -> bool:
        if self._stop.is_set():
            return True
        duration = self.config.duration_s
        return duration is not None and time.monotonic() - self._started >= duration

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        self._stop.set()
        with self._cond:
            job = self._job
            self._cond.notify_all()
        # Let the devices finish the work items they hold (their results are owed); a PoC
        # chunk in flight is dropped: its nonces are reserved, so none is ever computed twice.
        limit = time.monotonic() + 5
        while time.monotonic() < limit and any(
            w.alive and any(t.kind != POC for t in list(w.in_flight.values())) for w in self.workers
        ):
            time.sleep(0.02)
        if job is not None and job.active:
            self._stop_job(job, seen_end=False)
        for worker in self.workers:
            worker.stop(timeout_s=2.0)
        self._read_balance()
        self._check_verdicts()
        # A last delivery of what is queued: a commit that does not reach the node now is
        # sent by the next run (the outbox keeps it).
        self._last_delivery.set()
        self._sender_wake.set()
        for thread in threads:
            thread.join(timeout=5 if thread.name == "sender" else 2)
        if self._telemetry is not None:
            self._telemetry.close()

    # -- workers -------------------------------------------------------------------------

    def _start_workers(self) -> None:
        for device in self.config.devices:
            worker = DeviceWorker(
                device.id,
                device.torch_device,
                self.models,
                self.poc_model,
                on_done=self._on_done,
                on_failed=self._on_failed,
                on_exit=self._on_exit,
                on_ready=self._on_ready,
            )
            self.workers.append(worker)
            worker.start()
            self._emit("device_starting", device=device.id, name=device.name, pid=worker.pid)

    def _on_ready(self, worker: DeviceWorker) -> None:
        with self._cond:
            stats = self.stats[worker.device_id]
            gate = self._gates.get(worker.device_id)
            stats.state = "paused" if gate is not None and gate.paused else "idle"
            stats.slow_since = None
            self._cond.notify_all()
        self._emit(
            "device_ready",
            device=worker.device_id,
            pid=worker.pid,
            backend=worker.info.get("backend"),
            batch_size=worker.info.get("batch_size"),
            rates=worker.info.get("rates"),
            seconds=round(time.monotonic() - worker.started_at, 3),
        )

    def _on_done(self, worker: DeviceWorker, done: Done) -> None:
        try:
            self._store_result(worker, done)
        except Exception as exc:
            # Results that cannot be stored must not be computed on: stop and say why.
            log.exception("%s: cannot store a %s result", worker.device_id, done.task.kind)
            self._fatal = MinerError(
                f"cannot store the results of {worker.device_id}: {type(exc).__name__}: {exc}; "
                "check the disk and the state directory, then start again"
            )
            self.stop()

    def _store_result(self, worker: DeviceWorker, done: Done) -> None:
        task = done.task
        stats = self.stats[worker.device_id]
        if task.kind == POC:
            self._poc_done(worker, stats, done)
        else:
            item = task.item or {}
            if self.state is not None:
                self.state.add_result(
                    item["id"], task.kind, int(self._view.get("epoch", 0)), done.result
                )
            with self._cond:
                stats.busy.append((done.started, done.finished))
                self._cond.notify_all()
            self._emit(
                "task_computed",
                kind=task.kind,
                id=item.get("id"),
                device=worker.device_id,
                seconds=round(done.busy_s, 3),
            )
            self._sender_wake.set()

    def _poc_done(self, worker: DeviceWorker, stats: DeviceStats, done: Done) -> None:
        p = done.task.payload
        nonces = range(p["first"], p["first"] + p["count"])
        job = self._jobs.get(p["epoch"])
        if job is None:
            return
        leaves = [art.leaf_data(n, v) for n, v in zip(nonces, done.result, strict=True)]
        job.mmr.append_many(leaves)
        count, root = job.mmr.count, job.mmr.root().hex()
        if job.active and self.state is not None:
            self.state.record_commit(job.epoch, job.model, count, root)
            self._sender_wake.set()
        with self._cond:
            job.nonces += len(leaves)
            collapsed = stats.record_chunk(done.started, done.finished, len(leaves))
            self._cond.notify_all()
        if collapsed:
            log.warning("%s: %s; restarting its worker", worker.device_id, stats.last_error)
            worker.kill()

    def _on_failed(self, worker: DeviceWorker, task: Task, message: str) -> None:
        item = task.item or {}
        log.warning("%s: %s task failed: %s", worker.device_id, task.kind, message)
        self.stats[worker.device_id].last_error = message
        self._emit(
            "task_failed", kind=task.kind, id=item.get("id"), device=worker.device_id, error=message
        )
        with self._cond:
            self._cond.notify_all()

    def _on_exit(self, worker: DeviceWorker, lost: list[Task], why: str) -> None:
        stats = self.stats[worker.device_id]
        with self._cond:
            for task in lost:
                if task.kind != POC:  # lost nonces are skipped; work items go to another device
                    self._work.appendleft(task)
            stats.last_error = why
            restart = stats.restarts < self.config.max_restarts and not self._stop.is_set()
            stats.state = "restarting" if restart else "failed"
            if restart:
                stats.restarts += 1
            self._cond.notify_all()
        self._emit(
            "device_exited",
            device=worker.device_id,
            reason=why,
            restart=restart,
            restarts=stats.restarts,
        )
        if restart:
            log.warning(
                "%s worker stopped (%s); restarting it (%d of %d)",
                worker.device_id,
                why,
                stats.restarts,
                self.config.max_restarts,
            )
            timer = threading.Timer(1.0, self._restart, args=(worker,))
            timer.daemon = True
            timer.start()
        elif not self._stop.is_set():
            log.error("%s failed for good: %s", worker.device_id, why)
            if all(s.state == "failed" for s in self.stats.values()):
                names = "; ".join(f"{s.device.id}: {s.last_error}" for s in self.stats.values())
                self._fatal = MinerError(
                    f"every device failed ({names}); check the drivers with gonka bench devices "
                    "and the log file, then start again"
                )
                self.stop()

    def _restart(self, worker: DeviceWorker) -> None:
        if not self._stop.is_set():
            worker.start()

    # -- the dispatcher ------------------------------------------------------------------

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                for worker in self.workers:
                    stats = self.stats[worker.device_id]
                    if not worker.ready or stats.state in ("paused", "failed", "restarting"):
                        continue
                    while len(worker.in_flight) < QUEUE_DEPTH:
                        task = self._next_task(worker, stats)
                        if task is None:
                            break
                        if not worker.submit(task):
                            if task.kind != POC:
                                self._work.appendleft(task)
                            break
                    busy = bool(worker.in_flight)
                    stats.state = "mining" if busy else "idle"
                self._cond.wait(0.1)

    def _next_task(self, worker: DeviceWorker, stats: DeviceStats) -> Task | None:
        """Called with the lock held: a work item if one waits, else a PoC chunk."""
        if self._work:
            return self._work.popleft()
        job = self._job
        if job is None or not job.active or time.monotonic() > job.ends_at:
            return None
        assert self.state is not None
        rate = stats.compute_rate()
        count = int(rate * self.config.chunk_target_s) if rate else 64
        count = max(16, min(1 << 16, count))
        nonces = self.state.reserve_nonces(job.epoch, count)
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

    # -- following the epochs ------------------------------------------------------------

    def _follow(self, epoch: dict[str, Any]) -> None:
        backoff = Backoff()
        next_balance = 0.0
        while not self._ended() and self._fatal is None:
            if epoch:
                self._on_epoch(epoch)
            now = time.monotonic()
            if now >= next_balance:
                self._read_balance()
                self._check_verdicts()
                next_balance = now + self.config.balance_interval_s
            try:
                if self._stop.wait(self._poll_interval()):
                    break
                epoch = self.client.epoch()
                self._node_back(backoff)
            except (NodeUnreachable, NodeResponseError) as exc:
                epoch = {}
                self._node_lost(backoff, exc)
                self._stop.wait(backoff.next_delay())

    def _phase_left_s(self) -> float | None:
        """Seconds until the current phase ends, from the last height seen and the block time."""
        view = self._view
        end = _phase_end(view) if view else None
        if end is None:
            return None
        block_time = float(view.get("block_time_s") or 1.0)
        since = time.monotonic() - self._view_at
        return float((end - int(view["height"]) + 1) * block_time - since)

    def _poll_interval(self) -> float:
        """Half a block; an eighth near a phase's end, so the next phase is seen at once."""
        block_time = float(self._view.get("block_time_s") or 1.0)
        left = self._phase_left_s()
        share = 8 if left is not None and left < 1.5 * block_time else 2
        return min(1.0, max(0.02, block_time / share))

    def _node_lost(self, backoff: Backoff, exc: GonkaError) -> None:
        if self._node_ok:
            self._node_ok = False
            self._emit("node_unreachable", node=self.client.url, error=str(exc))

    def _node_back(self, backoff: Backoff) -> None:
        backoff.reset()
        if not self._node_ok:
            self._node_ok = True
            self._emit("node_reachable", node=self.client.url)
            self._sender_wake.set()

    def _on_epoch(self, view: dict[str, Any]) -> None:
        now = time.monotonic()
        previous = self._view
        with self._cond:
            self._view, self._view_at = view, now
        if (previous.get("epoch"), previous.get("phase")) != (view["epoch"], view["phase"]):
            self._emit("phase", epoch=view["epoch"], phase=view["phase"], height=view["height"])
        job = self._job
        if (
            job is not None
            and job.active
            and (view["epoch"] != job.epoch or view["phase"] != GENERATE)
        ):
            self._stop_job(job, seen_end=True)
        if view["phase"] == GENERATE and view.get("seed"):
            ends_at = now + (view["phases"][GENERATE]["end_height"] - view["height"] + 1) * float(
                view.get("block_time_s") or 1.0
            )
            if job is None or job.epoch != view["epoch"]:
                # A phase seen from its start (not joined half-way) gives a duty-cycle figure.
                saw_start = bool(previous) and (
                    previous["epoch"] != view["epoch"] or previous["phase"] != GENERATE
                )
                self._start_job(view, ends_at, saw_start)
            elif job.active:
                job.ends_at = ends_at
        if self.state is not None and previous.get("epoch") != view["epoch"]:
            self.state.prune(view["epoch"])
            for old in [e for e in self._mmrs if e < view["epoch"] - 2]:
                self._mmrs.pop(old).close()
                self._jobs.pop(old, None)

    def _mmr(self, epoch: int) -> MMR:
        assert self.state is not None
        if epoch not in self._mmrs:
            self._mmrs[epoch] = MMR(self.state.mmr_path(epoch))
        return self._mmrs[epoch]

    def _start_job(self, view: dict[str, Any], ends_at: float, saw_start: bool) -> None:
        poc = view["poc"]
        mmr = self._mmr(view["epoch"])
        job = PocJob(
            epoch=view["epoch"],
            seed=view["seed"],
            model=poc["model"],
            seq_len=int(poc["seq_len"]),
            mmr=mmr,
            started=time.monotonic(),
            ends_at=ends_at,
            saw_start=saw_start,
        )
        with self._cond:
            self._jobs[job.epoch] = job
            self._job = job
            self._cond.notify_all()
        self._emit(
            "generate_started",
            epoch=job.epoch,
            model=job.model,
            resumed_count=mmr.count,
            seconds_left=round(ends_at - job.started, 2),
        )

    def _stop_job(self, job: PocJob, seen_end: bool) -> None:
        with self._cond:
            if not job.active:
                return
            job.stopped = time.monotonic() if seen_end else min(time.monotonic(), job.ends_at)
            window = (job.started, job.stopped)
            busy = sum(
                _overlap(interval, window)
                for stats in self.stats.values()
                for interval in stats.busy
            )
            seconds = window[1] - window[0]
            devices = len(self.stats)
        record = self.state.commit_of(job.epoch) if self.state else None
        phase = GeneratePhase(
            epoch=job.epoch,
            seconds=seconds,
            busy_s=busy,
            duty_cycle=busy / (seconds * devices) if seconds > 0 else 0.0,
            nonces=job.nonces,
            nonces_per_second=job.nonces / seconds if seconds > 0 else 0.0,
            committed=record.acked_count if record else 0,
            full_phase=job.saw_start and seen_end,
        )
        self._phases.append(phase)
        self._emit("generate_done", **phase.to_dict())

    def _check_verdicts(self) -> None:
        """Each epoch this miner committed to: its PoC verdict, once validation is over."""
        view = self._view
        if not view or self.state is None:
            return
        for epoch in sorted(self._committed):
            if epoch in self._verdicts_done:
                continue
            if epoch == view["epoch"] and view["phase"] != INFERENCE_PHASE:
                continue
            try:
                record = self.client.epoch_record(epoch)
            except GonkaError:
                return
            mine = next(
                (r for r in record.get("poc_results", []) if r.get("address") == self.address),
                None,
            )
            if mine is None:
                if epoch < view["epoch"] - 1:
                    self._verdicts_done.add(epoch)
                    self._reject(
                        "poc", f"epoch {epoch}: no PoC verdict for this miner", epoch=epoch
                    )
                continue
            self._verdicts_done.add(epoch)
            weight = int(mine.get("weight") or 0)
            if weight > 0:
                with self._cond:
                    self._weight_accepted += weight
                    self._counts["accepted"] += 1
                self._emit("poc_accepted", epoch=epoch, weight=weight, count=mine.get("count"))
            else:
                self._reject(
                    "poc",
                    f"PoC {mine.get('status')}: {mine.get('reason') or 'no weight'}",
                    epoch=epoch,
                )

    def _read_balance(self, first: bool = False) -> None:
        if self._balance_of is None:
            return
        try:
            balance = self._balance_of()
        except GonkaError as exc:
            log.debug("balance: %s", exc)
            return
        with self._cond:
            if self._balance_start is None:
                self._balance_start = balance
            changed = balance != self._balance
            self._balance = balance
        if changed and not first:
            self._emit("balance", balance_ngonka=str(balance), earned_ngonka=self._earned())

    # -- work from the node --------------------------------------------------------------

    def _poll_work(self) -> None:
        backoff = Backoff()
        everything = True  # the first poll takes items delivered before a restart too
        while not self._stop.is_set():
            try:
                work = self.client.work(wait_s=self.config.poll_wait_s, everything=everything)
                everything = False
                backoff.reset()
            except RequestRefused as exc:
                if exc.status == 403 and "not a registered participant" in str(exc):
                    self._register_again()
                elif exc.status not in RETRYABLE_STATUSES and exc.status < 500:
                    log.warning("work poll refused: %s", exc)
                self._stop.wait(backoff.next_delay())
                continue
            except (NodeUnreachable, NodeResponseError):
                everything = True
                self._stop.wait(backoff.next_delay())
                continue
            if self._stop.is_set():
                return  # what came with the last poll is delivered again next time
            for item in work.get("items", []):
                self._take_item(item)

    def _register(self, again: bool = False) -> None:
        assert self.state is not None
        self.client.register(self.models, [_device_info(d) for d in self.config.devices])
        self._emit(
            "registered",
            address=self.address,
            node=self.client.url,
            models=self.models,
            devices=[d.id for d in self.config.devices],
            state_dir=str(self.state.directory),
            again=again,
        )

    def _register_again(self) -> None:
        """The node forgot this participant (a new home): register it again."""
        try:
            self._register(again=True)
        except GonkaError as exc:
            log.warning("registering again failed: %s", exc)

    def _take_item(self, item: dict[str, Any]) -> None:
        item_id = str(item.get("id"))
        assert self.state is not None
        with self._cond:
            if item_id in self._seen_items:
                return
            self._seen_items.add(item_id)
        if self.state.has_result(item_id):
            return  # computed before a restart: the outbox delivers it
        kind = item.get("kind")
        self._emit("work_received", kind=kind, id=item_id)
        if kind == POC_PROOF:
            self._answer_proof(item)
        elif kind in (INFERENCE, VALIDATION):
            with self._cond:
                self._work.append(Task(kind, item, item))
                self._cond.notify_all()
        else:
            log.warning("unknown work item kind %r ignored", kind)

    def _answer_proof(self, item: dict[str, Any]) -> None:
        from gonka_cli.compute.validation import build_answers

        assert self.state is not None
        epoch = int(item["epoch"])
        try:
            mmr = self._mmr(epoch) if self.state.mmr_path(epoch).exists() else None
            if mmr is None or mmr.count < int(item["count"]):
                raise MinerError(
                    f"the artifacts of epoch {epoch} are not on this machine "
                    f"({0 if mmr is None else mmr.count} of {item['count']})"
                )
            answers = build_answers(mmr, item["leaf_indices"], int(item["count"]))
        except GonkaError as exc:
            self._reject("poc_proof", f"cannot answer: {exc}", epoch=epoch)
            return
        self.state.add_result(
            str(item["id"]), POC_PROOF, epoch, {"answers": [a.to_dict() for a in answers]}
        )
        self._sender_wake.set()

    # -- the sender ----------------------------------------------------------------------

    def _send(self) -> None:
        backoff = Backoff()
        assert self.state is not None
        while True:
            stopping = self._last_delivery.is_set()
            self._count_pending()
            try:
                self._send_commit(force=stopping)
                sent = self._send_results()
                backoff.reset()
            except (NodeUnreachable, NodeResponseError) as exc:
                log.debug("delivery paused: %s", exc)
                if stopping:
                    return
                self._sender_wake.wait(backoff.next_delay())
                self._sender_wake.clear()
                continue
            if stopping:
                self._count_pending()
                return
            if not sent:
                self._sender_wake.wait(0.5)
                self._sender_wake.clear()

    def _count_pending(self) -> None:
        assert self.state is not None
        pending = self.state.outbox_counts()["pending"]
        self._outbox_pending = pending + (1 if self.state.pending_commit() else 0)

    def _send_commit(self, force: bool = False) -> None:
        """The latest commit, at most once a block (the chain sees no more), and at once
        within two blocks of the phase's end, so that little work is left uncommitted."""
        assert self.state is not None
        record = self.state.pending_commit()
        if record is None:
            return
        block_time = float(self._view.get("block_time_s") or 1.0)
        left = self._phase_left_s()
        near_end = left is not None and left < 2 * block_time
        recent = time.monotonic() - self._last_commit_sent < block_time
        if recent and not (near_end or force):
            return
        self._last_commit_sent = time.monotonic()
        try:
            self.client.commit(record.epoch, record.model, record.count, record.root)
        except RequestRefused as exc:
            if exc.status in RETRYABLE_STATUSES or exc.status >= 500:
                raise NodeResponseError(str(exc)) from None
            self.state.commit_closed(record.epoch, str(exc))
            if "commits are closed" in str(exc):
                # The phase ended before this commit arrived: the previous one stands.
                self._emit(
                    "commit_late",
                    epoch=record.epoch,
                    count=record.count,
                    committed=record.acked_count,
                )
            else:
                self._reject("commit", _node_reason(exc), epoch=record.epoch)
            return
        self.state.commit_acked(record.epoch, record.count)
        job = self._jobs.get(record.epoch)
        with self._cond:
            self._committed[record.epoch] = max(self._committed.get(record.epoch, 0), record.count)
            first = job is not None and job.first_commit_at is None
            if first and job is not None:
                job.first_commit_at = time.monotonic()
        self._emit("commit", epoch=record.epoch, count=record.count, root=record.root, first=first)

    def _send_results(self) -> bool:
        assert self.state is not None
        entries = self.state.pending_results()
        for entry in entries:
            self.state.result_attempted(entry.item_id)
            try:
                self.client.result(entry.item_id, entry.body)
            except RequestRefused as exc:
                if exc.status in RETRYABLE_STATUSES or exc.status >= 500:
                    raise NodeResponseError(str(exc)) from None
                self.state.result_done(entry.item_id, REJECTED, _node_reason(exc))
                self._reject(entry.kind, _node_reason(exc), id=entry.item_id)
                continue
            self.state.result_done(entry.item_id, ACKED)
            counter = {
                POC_PROOF: "proofs_answered",
                INFERENCE: "inference_tasks",
                VALIDATION: "validations",
            }[entry.kind]
            with self._cond:
                self._counts[counter] += 1
                self._counts["accepted"] += 1
            self._emit("result_accepted", kind=entry.kind, id=entry.item_id)
        return bool(entries)

    # -- telemetry -----------------------------------------------------------------------

    def _watch_devices(self) -> None:
        if self._telemetry is None:
            return
        while not self._stop.wait(self.config.telemetry_interval_s):
            for device in self.config.devices:
                reading = self._telemetry.read(device)
                gate = self._gates.get(device.id)
                with self._cond:
                    stats = self.stats[device.id]
                    stats.reading = reading
                    if gate is None:
                        continue
                    was = gate.paused
                    paused = gate.update(reading.temperature_c)
                    if paused:
                        stats.state = "paused"
                    elif was:
                        stats.state = "idle"
                    self._cond.notify_all()
                if paused != was:
                    self._emit(
                        "device_paused" if paused else "device_resumed",
                        device=device.id,
                        temperature_c=reading.temperature_c,
                        limit_c=self.config.temp_limit_c,
                    )


def _phase_end(view: dict[str, Any]) -> int | None:
    """The last height of the view's phase."""
    phase = view.get("phases", {}).get(view.get("phase"))
    end = phase["end_height"] if isinstance(phase, dict) else view.get("end_height")
    return end if isinstance(end, int) else None


def _overlap(interval: tuple[float, float], window: tuple[float, float]) -> float:
    return max(0.0, min(interval[1], window[1]) - max(interval[0], window[0]))


def _device_info(device: MiningDevice) -> dict[str, Any]:
    return {"id": device.id, "name": device.name}


def _node_reason(exc: RequestRefused) -> str:
    """The node's own words, without our "the node refused POST ..." preamble."""
    text = str(exc)
    return text.split("): ", 1)[1] if "): " in text else text


def _reason_key(reason: str) -> str:
    """Rejections grouped by kind: the reason up to its first detail."""
    return reason.split(";")[0].split(":")[0].strip()[:80] or "unknown"
