"""The device pool: one worker process per device, kept fed, watched and restarted.

The pool knows devices and tasks, nothing of any network. A front end (`gonka mine`'s devnet
loop in `miner.Miner`, or an HTTP server driven by another node) hands it tasks and gets the
results back with their timing:

    pool = DevicePool(PoolConfig(devices, models=("gonka-tiny",), poc_model="gonka-tiny"),
                      on_done=..., on_failed=...)
    pool.start()
    pool.submit(Task(INFERENCE, payload), priority=PRIORITY_WORK)
    pool.set_filler(next_poc_chunk)   # keeps idle devices busy with PoC nonces
    ...
    pool.drain(5.0); pool.stop()

- **Scheduling.** Each ready device is kept `queue_depth` tasks deep, so the next task is
  already in its pipe when it finishes one. Submitted tasks go first, lowest `priority`
  first (work items have deadlines); when none waits, the filler — the front end's
  callable — is asked for a PoC chunk, sized by `chunk_size()` to about `chunk_target_s`
  of that device's compute.
- **Crashes.** A worker whose process exits gives its unfinished submitted tasks back to the
  queue (a lost PoC chunk is dropped: its nonces were reserved by the front end and are never
  computed twice) and is started again, at most `max_restarts` times. So is a worker whose
  speed collapses (`stats.DeviceStats.record_chunk`). When every device has failed for good,
  `on_fatal` gets a `MinerError` that names each device's last error.
- **Temperature.** With `temp_limit_c`, telemetry pauses a device above the limit until it
  has cooled (`devices.ThermalGate`). A device whose temperature cannot be read cannot be
  paused: the pool says so once per device, as a WARNING in the log, a `temp_unreadable`
  event and the device's `warning` (shown in the live view and `/status`).

Callbacks come from the pool's threads (a worker's reader, the telemetry thread); events go
to `on_event(name, fields)`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gonka_cli.errors import MinerError
from gonka_cli.miner.devices import MiningDevice, Telemetry, ThermalGate
from gonka_cli.miner.stats import DeviceStats, duty_cycle
from gonka_cli.miner.worker import POC, DeviceWorker, Done, Task

log = logging.getLogger(__name__)

__all__ = [
    "PRIORITY_POC",
    "PRIORITY_VALIDATION",
    "PRIORITY_WORK",
    "DevicePool",
    "PoolConfig",
]

#: Task priorities: lower runs first. Inference has a requester waiting; a validation has
#: twice the time; PoC chunks fill what is left.
PRIORITY_WORK = 0
PRIORITY_VALIDATION = 1
PRIORITY_POC = 10

#: States in which the dispatcher leaves a device alone.
_NOT_DISPATCHING = ("starting", "paused", "failed", "restarting")


@dataclass(frozen=True)
class PoolConfig:
    devices: tuple[MiningDevice, ...]
    #: Every model the workers load (the PoC model among them).
    models: tuple[str, ...]
    poc_model: str
    max_restarts: int = 3
    temp_limit_c: float | None = None
    telemetry_interval_s: float = 2.0
    #: Tasks queued on a device, the one it computes included.
    queue_depth: int = 2
    chunk_target_s: float = 0.25
    restart_delay_s: float = 1.0


Event = Callable[[str, dict[str, Any]], None]


class DevicePool:
    """The workers of a set of devices and the scheduler that keeps them busy."""

    def __init__(
        self,
        config: PoolConfig,
        *,
        on_done: Callable[[str, Done], None],
        on_failed: Callable[[str, Task, str], None] | None = None,
        on_event: Event | None = None,
        on_fatal: Callable[[MinerError], None] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        if not config.devices:
            raise MinerError("no device to mine on")
        self.config = config
        self._on_done = on_done
        self._on_failed = on_failed or (lambda device, task, message: None)
        self._on_event = on_event or (lambda name, fields: None)
        self._on_fatal = on_fatal or (lambda error: None)
        self._telemetry = telemetry
        self._gates = (
            {d.id: ThermalGate(config.temp_limit_c) for d in config.devices}
            if config.temp_limit_c is not None
            else {}
        )
        self._temp_warned: set[str] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._queue: list[tuple[int, int, Task]] = []
        self._order = itertools.count()
        self._requeued = itertools.count(-1, -1)
        self._filler: Callable[[str, DeviceStats], Task | None] | None = None
        self.stats = {d.id: DeviceStats(d) for d in config.devices}
        self.workers: list[DeviceWorker] = []
        self._threads: list[threading.Thread] = []

    # -- the front end's API -------------------------------------------------------------

    def start(self) -> None:
        """Start a worker per device, the dispatcher and the telemetry threads."""
        for device in self.config.devices:
            worker = DeviceWorker(
                device.id,
                device.torch_device,
                list(self.config.models),
                self.config.poc_model,
                on_done=self._done,
                on_failed=self._failed,
                on_exit=self._exited,
                on_ready=self._ready,
            )
            self.workers.append(worker)
            worker.start()
            self._emit("device_starting", device=device.id, name=device.name, pid=worker.pid)
        self._threads = [
            threading.Thread(target=self._guard(self._dispatch), name="dispatcher", daemon=True),
            threading.Thread(target=self._guard(self._watch), name="telemetry", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if self._gates and self._telemetry is None:
            for device in self.config.devices:
                self._temperature_unreadable(device)

    def submit(self, task: Task, priority: int | None = None) -> None:
        """Queue `task`; it runs on the first device with room, before any PoC filler."""
        if priority is not None:
            task.priority = priority
        with self._cond:
            heapq.heappush(self._queue, (task.priority, next(self._order), task))
            self._cond.notify_all()

    def set_filler(self, filler: Callable[[str, DeviceStats], Task | None] | None) -> None:
        """`filler(device_id, stats)` gives a PoC chunk for an idle device, or None. It is
        called with the pool's lock held: it must be quick and must not call the pool."""
        with self._cond:
            self._filler = filler
            self._cond.notify_all()

    def wake(self) -> None:
        """Ask the dispatcher to look again (the filler has new work)."""
        with self._cond:
            self._cond.notify_all()

    def chunk_size(self, stats: DeviceStats) -> int:
        """Nonces for about `chunk_target_s` of this device's compute (64 before it is timed)."""
        rate = stats.compute_rate()
        count = int(rate * self.config.chunk_target_s) if rate else 64
        return max(16, min(1 << 16, count))

    def devices(self, now: float | None = None) -> list[dict[str, Any]]:
        """Each device's status (`DeviceStats.to_dict`)."""
        moment = time.monotonic() if now is None else now
        with self._cond:
            return [s.to_dict(moment) for s in self.stats.values()]

    def duty_cycle(self, window: tuple[float, float]) -> tuple[float, float]:
        """`(busy_s, share)` of the devices over `window` (monotonic times)."""
        with self._cond:
            return duty_cycle(self.stats.values(), window)

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def drain(self, timeout_s: float) -> None:
        """Stop handing out tasks and wait, up to `timeout_s`, for the submitted tasks in
        flight (their results are owed); PoC chunks in flight are not waited for."""
        self._closed.set()
        limit = time.monotonic() + timeout_s
        while time.monotonic() < limit and any(
            w.alive and any(t.kind != POC for t in list(w.in_flight.values())) for w in self.workers
        ):
            time.sleep(0.02)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the workers and the pool's threads; close the telemetry."""
        self._closed.set()
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for worker in self.workers:
            worker.stop(timeout_s=timeout_s)
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        if self._telemetry is not None:
            self._telemetry.close()

    # -- events --------------------------------------------------------------------------

    def _guard(self, body: Callable[[], None]) -> Callable[[], None]:
        """A thread body whose unexpected error is fatal to the pool (and says why)."""

        def run() -> None:
            try:
                body()
            except Exception as exc:
                name = threading.current_thread().name
                log.exception("the pool's %s failed", name)
                self._on_fatal(
                    MinerError(f"the miner's {name} failed: {type(exc).__name__}: {exc}")
                )

        return run

    def _emit(self, event: str, **fields: Any) -> None:
        try:
            self._on_event(event, fields)
        except Exception:  # a broken listener must not stop the devices
            log.exception("event handler failed")

    # -- the workers' callbacks ----------------------------------------------------------

    def _ready(self, worker: DeviceWorker) -> None:
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

    def _done(self, worker: DeviceWorker, done: Done) -> None:
        stats = self.stats[worker.device_id]
        collapsed = False
        with self._cond:
            if done.task.kind == POC:
                collapsed = stats.record_chunk(done.started, done.finished, len(done.result))
            else:
                stats.record_busy(done.started, done.finished)
            self._cond.notify_all()
        self._on_done(worker.device_id, done)
        if collapsed:
            log.warning("%s: %s; restarting its worker", worker.device_id, stats.last_error)
            worker.kill()

    def _failed(self, worker: DeviceWorker, task: Task, message: str) -> None:
        log.warning("%s: %s task failed: %s", worker.device_id, task.kind, message)
        with self._cond:
            self.stats[worker.device_id].last_error = message
            self._cond.notify_all()
        self._on_failed(worker.device_id, task, message)

    def _exited(self, worker: DeviceWorker, lost: list[Task], why: str) -> None:
        stats = self.stats[worker.device_id]
        with self._cond:
            for task in lost:
                if task.kind != POC:  # to another device, ahead of what came later
                    heapq.heappush(self._queue, (task.priority, next(self._requeued), task))
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
            timer = threading.Timer(self.config.restart_delay_s, self._restart, args=(worker,))
            timer.daemon = True
            timer.start()
        elif not self._stop.is_set():
            log.error("%s failed for good: %s", worker.device_id, why)
            with self._cond:
                every = all(s.state == "failed" for s in self.stats.values())
                names = "; ".join(f"{s.device.id}: {s.last_error}" for s in self.stats.values())
            if every:
                self._on_fatal(
                    MinerError(
                        f"every device failed ({names}); check the drivers with gonka bench "
                        "devices and the log file, then start again"
                    )
                )

    def _restart(self, worker: DeviceWorker) -> None:
        if not self._stop.is_set():
            worker.start()

    # -- the dispatcher ------------------------------------------------------------------

    def _dispatch(self) -> None:
        while not self._closed.is_set():
            with self._cond:
                for worker in self.workers:
                    stats = self.stats[worker.device_id]
                    if not worker.ready or stats.state in _NOT_DISPATCHING:
                        continue
                    while len(worker.in_flight) < self.config.queue_depth:
                        task = self._next_task(worker.device_id, stats)
                        if task is None:
                            break
                        if not worker.submit(task):
                            if task.kind != POC:
                                heapq.heappush(
                                    self._queue, (task.priority, next(self._requeued), task)
                                )
                            break
                    stats.state = "mining" if worker.in_flight else "idle"
                self._cond.wait(0.1)

    def _next_task(self, device_id: str, stats: DeviceStats) -> Task | None:
        """Called with the lock held: a submitted task if one waits, else the filler's."""
        if self._queue:
            return heapq.heappop(self._queue)[2]
        if self._filler is None:
            return None
        task = self._filler(device_id, stats)
        if task is not None:
            task.priority = PRIORITY_POC
        return task

    # -- telemetry and the thermal pause -------------------------------------------------

    def _watch(self) -> None:
        if self._telemetry is None:
            return
        while not self._stop.wait(self.config.telemetry_interval_s):
            for device in self.config.devices:
                self._read(device, self._telemetry)

    def _read(self, device: MiningDevice, telemetry: Telemetry) -> None:
        reading = telemetry.read(device)
        gate = self._gates.get(device.id)
        with self._cond:
            stats = self.stats[device.id]
            stats.reading = reading
            if gate is None:
                return
            was = gate.paused
            paused = gate.update(reading.temperature_c)
            if paused:
                stats.state = "paused"
            elif was:
                stats.state = "idle"
            if reading.temperature_c is not None:
                stats.warning = None  # readable (again): the limit applies
            self._cond.notify_all()
        if reading.temperature_c is None:
            self._temperature_unreadable(device)
        if paused != was:
            self._emit(
                "device_paused" if paused else "device_resumed",
                device=device.id,
                temperature_c=reading.temperature_c,
                limit_c=self.config.temp_limit_c,
            )

    def _temperature_unreadable(self, device: MiningDevice) -> None:
        """Once per device: --temp-limit cannot protect a device whose sensor says nothing."""
        message = (
            f"cannot read the temperature of {device.id}: --temp-limit "
            f"{self.config.temp_limit_c:g} °C cannot pause it"
        )
        with self._cond:
            self.stats[device.id].warning = message
            if device.id in self._temp_warned:
                return
            self._temp_warned.add(device.id)
        log.warning("%s (check its driver and sensors, or watch it yourself)", message)
        self._emit(
            "temp_unreadable",
            device=device.id,
            limit_c=self.config.temp_limit_c,
            message=message,
        )
