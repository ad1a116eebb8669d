"""The ML node: what `gonka mlnode serve` does for DAPI, with no HTTP in it.

`MlNode` is the second front end over the miner's device pool (`miner.pool.DevicePool`),
beside `gonka mine`'s devnet loop: one worker process per device group, the same scheduler,
crash restarts, speed watchdog and `--temp-limit`. Each public method takes a parsed JSON
body and returns the JSON answer, or raises `MlNodeError(status, message)`; the HTTP server
(`mlnode.server`) only maps routes to them.

**States** (`state()`, spec §1.3): STOPPED until a model is loaded, then INFERENCE. PoC v2
runs inside INFERENCE (`poc_status` says GENERATING); `inference_up` blocks until a device
group is ready; `stop` and `inference_down` stop PoC, drop the queued jobs and unload.

**Devices.** One PoC group per device; with `--tensor-parallel-size N` on GPUs, each group
is N devices that hold one copy of the model (`cuda:0,1`), as vLLM runs GPUs // N instances.
`n_groups` and `group_id` of a round follow that order.

**PoC.** `init_generate` starts at once: the pool's filler hands each group the next chunk
of its own nonces (`compute.poc.nonce_iterator(node_id, node_count, group_id, n_groups)`),
sized to its speed. Every finished chunk is written to the outbox (`callbacks.Outbox`,
SQLite) before anything else, and the sender posts it to `url + "/generated"` every
`callback_interval_s`. Rows whose hidden state held NaN are dropped, never sent.

**Status codes.** 422: a body that is not the expected shape (the ML node's FastAPI models
answer so); 400: a contradictory one; 404: `inference_up` of a model that is neither a
built-in name, a directory nor a repo id in the Hugging Face cache (the real node answers
500 for every failure; DAPI does not read the status), an unknown job or chat model; 409: a
load while one runs or a model is up, `init_generate` while generating or for another
model; 429: the job queue is full; 500: the model failed to load or compute; 503: no model
loaded, or chat while PoC generation runs.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gonka_cli
from gonka_cli.errors import GonkaError, MinerError
from gonka_cli.miner.devices import MiningDevice, Telemetry
from gonka_cli.miner.pool import PRIORITY_VALIDATION, PRIORITY_WORK, DevicePool, PoolConfig
from gonka_cli.miner.stats import DeviceStats
from gonka_cli.miner.worker import CHAT, POC, POC_RECOMPUTE, Done, Task
from gonka_cli.mlnode.callbacks import CallbackResult, Outbox, Round, Sender
from gonka_cli.mlnode.jobs import JobQueue
from gonka_cli.mlnode.messages import (
    GenerateRequest,
    InferenceUpRequest,
    InitGenerateRequest,
    MlNodeError,
    body_object,
)
from gonka_cli.mlnode.metrics import MlNodeMetrics

log = logging.getLogger(__name__)

__all__ = ["MlNode", "MlNodeConfig", "MlNodeError"]

STOPPED, INFERENCE = "STOPPED", "INFERENCE"
IDLE, GENERATING = "IDLE", "GENERATING"
#: Nonces per validation task: spreads a 200-nonce job over the device groups.
_RECOMPUTE_CHUNK = 64


@dataclass(frozen=True)
class MlNodeConfig:
    devices: tuple[MiningDevice, ...]
    data_dir: Path
    model: str | None = None
    callback_interval_s: float = 5.0
    callback_timeout_s: float = 10.0
    callback_tries: int = 10
    callback_backoff_s: tuple[float, float] = (1.0, 30.0)
    max_buffered_artifacts: int = 1_000_000
    max_queued_nonces: int = 100_000
    result_ttl_s: float = 300.0
    temp_limit_c: float | None = None
    max_restarts: int = 3
    #: The port reported as the "backend" in PoC answers (the inference port).
    backend_port: int = 5000
    #: How long `inference_up` waits for the first device group (the ML node: 1200 s).
    load_timeout_s: float = 1200.0
    #: Builds the sensors' reader for each load (NVML, psutil); None reads no sensor.
    telemetry: Callable[[], Telemetry] | None = Telemetry
    chunk_target_s: float = 0.25
    telemetry_interval_s: float = 2.0


@dataclass
class _Group:
    group_id: int
    device: MiningDevice
    nonces: Iterator[int]
    total_processed: int = 0
    chunks: int = 0


@dataclass
class _Generation:
    """One PoC round as `init_generate` started it."""

    request: InitGenerateRequest
    groups: list[_Group]
    target: Round | None
    started: float = field(default_factory=time.monotonic)
    active: bool = True
    first_artifact_at: float | None = None

    def config(self, group: _Group) -> dict[str, Any]:
        r = self.request
        return {
            "block_hash": r.block_hash,
            "block_height": r.block_height,
            "public_key": r.public_key,
            "node_id": r.node_id,
            "node_count": r.node_count,
            "group_id": group.group_id,
            "n_groups": len(self.groups),
            "seq_len": r.params.seq_len,
            "k_dim": r.params.k_dim,
        }

    def rate(self, group: _Group, now: float) -> float:
        seconds = now - self.started
        return group.total_processed / seconds if seconds > 0 else 0.0


@dataclass
class _Loaded:
    """The model that is up: its request, the pool and what the workers said."""

    request: InferenceUpRequest
    pool: DevicePool
    groups: tuple[MiningDevice, ...]
    ready: threading.Event = field(default_factory=threading.Event)
    fatal: str | None = None
    #: What the first ready worker said (`worker.DeviceWorker.info`: engine, model sizes).
    info: dict[str, Any] = field(default_factory=dict)
    pool_started: float = field(default_factory=time.time)

    @property
    def model(self) -> str:
        return self.request.model

    def served_ids(self) -> list[str]:
        return list(dict.fromkeys([self.request.model, *self.request.served_model_names]))


class MlNode:
    """The ML node's engine side (see the module docstring)."""

    def __init__(
        self, config: MlNodeConfig, *, on_event: Callable[[str, dict[str, Any]], None] | None = None
    ) -> None:
        if not config.devices:
            raise MlNodeError(500, "no device to serve on")
        self.config = config
        self._on_event = on_event or (lambda name, fields: None)
        self.metrics = MlNodeMetrics()
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._generation: _Generation | None = None
        self._futures: dict[int, Future[Any]] = {}
        self._outbox: Outbox | None = None
        self._sender: Sender | None = None
        self._jobs: JobQueue | None = None
        self._last_callback: CallbackResult | None = None
        self.metrics.set_state(STOPPED)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Open the outbox (its unsent callbacks go out again), start the sender and the job
        queue, and load `config.model` if given (blocking until it serves)."""
        config = self.config
        self._outbox = Outbox(config.data_dir / "callbacks.db", config.max_buffered_artifacts)
        resumed = self._outbox.buffered
        if resumed or self._outbox.pending_messages():
            log.info("resuming %d unsent artifacts from the outbox", resumed)
            self._emit("callbacks_resumed", artifacts=resumed)
        self._sender = Sender(
            self._outbox,
            interval_s=config.callback_interval_s,
            timeout_s=config.callback_timeout_s,
            tries=config.callback_tries,
            backoff_s=config.callback_backoff_s,
            on_result=self._callback_done,
        )
        self._sender.start()
        self._jobs = JobQueue(
            self._recompute,
            self._outbox,
            wake_sender=self._sender.wake,
            max_queued_nonces=config.max_queued_nonces,
            result_ttl_s=config.result_ttl_s,
            on_verdict=self.metrics.validation,
        )
        self._jobs.start()
        self.metrics.set_buffered(resumed)
        if config.model is not None:
            self.inference_up({"model": config.model, "dtype": "auto", "additional_args": []})

    def close(self) -> None:
        """Stop the devices, the jobs and the sender; unsent callbacks stay in the outbox."""
        self._unload()
        if self._jobs is not None:
            self._jobs.close()
        if self._sender is not None:
            self._sender.stop()
        if self._outbox is not None:
            self._outbox.close()

    def _emit(self, event: str, **fields: Any) -> None:
        try:
            self._on_event(event, fields)
        except Exception:  # a broken listener must not stop the node
            log.exception("event handler failed")

    def _parts(self) -> tuple[Outbox, Sender, JobQueue]:
        if self._outbox is None or self._sender is None or self._jobs is None:
            raise MlNodeError(503, "the ML node is not started")
        return self._outbox, self._sender, self._jobs

    # -- state and models ----------------------------------------------------------------

    def served_model(self) -> str | None:
        loaded = self._loaded
        return loaded.model if loaded is not None and loaded.ready.is_set() else None

    def healthy(self) -> bool:
        loaded = self._loaded
        if loaded is None or not loaded.ready.is_set() or loaded.fatal is not None:
            return False
        return any(w.ready for w in loaded.pool.workers)

    def _state(self) -> str:
        return INFERENCE if self.served_model() is not None else STOPPED

    def _poc_status(self) -> str:
        generation = self._generation
        return GENERATING if generation is not None and generation.active else IDLE

    def state(self) -> dict[str, Any]:
        return {
            "state": self._state(),
            "version": gonka_cli.__version__,
            "poc_validation_inference": False,
            "poc_status": self._poc_status(),
            "inference_healthy": self.healthy(),
            "loaded_model": self.served_model(),
        }

    def models(self) -> dict[str, Any]:
        loaded = self._loaded
        if loaded is None or not loaded.ready.is_set():
            return {"object": "list", "data": []}
        specs = loaded.info.get("models", {}).get(loaded.model, {})
        max_len = loaded.request.max_model_len or specs.get("max_seq_len")
        return {
            "object": "list",
            "data": [
                {
                    "id": name,
                    "object": "model",
                    "created": int(loaded.pool_started),
                    "owned_by": "gonka",
                    "root": loaded.model,
                    "parent": None,
                    "max_model_len": max_len,
                }
                for name in loaded.served_ids()
            ],
        }

    def inference_up(self, body: object) -> dict[str, Any]:
        """Load the model and block until a device group serves it."""
        request = InferenceUpRequest.from_dict(body)
        if not self._load_lock.acquire(blocking=False):
            raise MlNodeError(409, "a model is already being loaded; wait for it")
        try:
            if self._loaded is not None:
                raise MlNodeError(
                    409,
                    f"{self._loaded.model} is already up; POST /api/v1/stop first to load another",
                )
            self._parts()
            _check_model(request.model)
            groups = _device_groups(self.config.devices, request.tensor_parallel_size)
            loaded = self._start_pool(request, groups)
            with self._lock:
                self._loaded = loaded
            if not loaded.ready.wait(self.config.load_timeout_s) or loaded.fatal is not None:
                why = loaded.fatal or f"no device was ready in {self.config.load_timeout_s:g} s"
                self._unload()
                raise MlNodeError(500, f"cannot load {request.model}: {why}")
            self.metrics.set_state(INFERENCE)
            self._emit(
                "model_loaded",
                model=request.model,
                groups=[d.id for d in groups],
                ignored_args=list(request.ignored_args),
            )
            return {"status": "OK"}
        finally:
            self._load_lock.release()

    def _start_pool(self, request: InferenceUpRequest, groups: tuple[MiningDevice, ...]) -> _Loaded:
        config = self.config
        holder: list[_Loaded] = []

        def on_event(name: str, fields: dict[str, Any]) -> None:
            if name == "device_ready" and holder:
                for worker in holder[0].pool.workers:
                    if worker.device_id == fields.get("device") and not holder[0].info:
                        holder[0].info = dict(worker.info)
                holder[0].ready.set()
            self._emit(name, **fields)

        def on_fatal(error: MinerError) -> None:
            if holder:
                holder[0].fatal = str(error)
                holder[0].ready.set()
            self._emit("model_failed", error=str(error))
            self._fail_futures(MlNodeError(500, str(error)))

        pool = DevicePool(
            PoolConfig(
                devices=groups,
                models=(request.model,),
                poc_model=request.model,
                max_restarts=config.max_restarts,
                temp_limit_c=config.temp_limit_c,
                telemetry_interval_s=config.telemetry_interval_s,
                chunk_target_s=config.chunk_target_s,
            ),
            on_done=self._on_done,
            on_failed=self._on_failed,
            on_event=on_event,
            on_fatal=on_fatal,
            telemetry=config.telemetry() if config.telemetry is not None else None,
        )
        loaded = _Loaded(request, pool, groups)
        holder.append(loaded)
        pool.start()
        return loaded

    def inference_down(self) -> dict[str, Any]:
        return self.stop()

    def stop(self) -> dict[str, Any]:
        """Stop PoC, drop the queued jobs, unload the model: STOPPED."""
        self.pow_stop()
        self._unload()
        return {"status": "OK"}

    def _unload(self) -> None:
        with self._lock:
            loaded, self._loaded = self._loaded, None
            generation, self._generation = self._generation, None
        if generation is not None:
            generation.active = False
        if loaded is not None:
            if not loaded.ready.is_set():  # a load in progress gives up
                loaded.fatal = "stopped while loading"
                loaded.ready.set()
            loaded.pool.set_filler(None)
            loaded.pool.stop(timeout_s=2.0)
            self._emit("model_unloaded", model=loaded.model)
        self._fail_futures(MlNodeError(503, "the model was unloaded"))
        if self._jobs is not None:
            self._jobs.pause(False)
        self.metrics.set_state(STOPPED)

    def _require_loaded(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None or not loaded.ready.is_set():
            raise MlNodeError(503, "no model is loaded; POST /api/v1/inference/up first")
        if loaded.fatal is not None:
            raise MlNodeError(503, f"the model is down: {loaded.fatal}")
        return loaded

    # -- the pool's callbacks ------------------------------------------------------------

    def _on_done(self, device_id: str, done: Done) -> None:
        task = done.task
        if task.kind == POC:
            try:
                self._chunk_done(task, done.result)
            except Exception as exc:
                log.exception("cannot store the artifacts of %s", device_id)
                self._emit("store_failed", device=device_id, error=f"{type(exc).__name__}: {exc}")
            return
        with self._lock:
            future = self._futures.pop(task.id, None)
        if future is not None and not future.done():
            future.set_result(done.result)

    def _on_failed(self, device_id: str, task: Task, message: str) -> None:
        with self._lock:
            future = self._futures.pop(task.id, None)
        if future is not None and not future.done():
            client = message.startswith(("InvalidComputeInput", "UnknownModel"))
            detail = message.split(": ", 1)[-1] if client else message
            future.set_exception(MlNodeError(400 if client else 500, detail))
        elif task.kind == POC:
            self._emit("chunk_failed", device=device_id, error=message)

    def _fail_futures(self, error: MlNodeError) -> None:
        with self._lock:
            futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(error)

    def _run_task(self, task: Task, priority: int) -> Future[Any]:
        loaded = self._require_loaded()
        future: Future[Any] = Future()
        with self._lock:
            self._futures[task.id] = future
        loaded.pool.submit(task, priority)
        return future

    # -- PoC generation ------------------------------------------------------------------

    def init_generate(self, body: object) -> dict[str, Any]:
        """Start a PoC round at once: one nonce group per device group."""
        from gonka_cli.compute.poc import nonce_iterator

        request = InitGenerateRequest.from_dict(body)
        loaded = self._require_loaded()
        outbox, _, jobs = self._parts()
        self._check_params(loaded, request.params.model, request.params.seq_len)
        with self._lock:
            if self._generation is not None and self._generation.active:
                raise MlNodeError(409, "Already generating; POST /api/v1/inference/pow/stop first")
            n_groups = len(loaded.groups)
            groups = [
                _Group(
                    i,
                    device,
                    nonce_iterator(request.node_id, request.node_count, i, n_groups),
                )
                for i, device in enumerate(loaded.groups)
            ]
            target = (
                Round(
                    request.url,
                    request.public_key,
                    request.block_hash,
                    request.block_height,
                    request.node_id,
                )
                if request.url is not None
                else None
            )
            generation = _Generation(request, groups, target)
            self._generation = generation
        jobs.pause(True)
        loaded.pool.set_filler(self._filler(generation))
        self.metrics.set_buffered(outbox.buffered)
        self._emit(
            "generate_started",
            block_height=request.block_height,
            n_groups=n_groups,
            url=request.url,
        )
        port = self.config.backend_port
        return {
            "status": "OK",
            "backends": 1,
            "n_groups": n_groups,
            "results": [{"port": port, "status": "OK"}],
            "errors": None,
        }

    def _check_params(self, loaded: _Loaded, model: str, seq_len: int) -> None:
        """409 when `params.model` is not a name the loaded model is served under (vLLM's
        `check_params_match`); then the sequence length's own check."""
        if model not in loaded.served_ids():
            raise MlNodeError(
                409,
                f"params mismatch: params.model {model!r:.80} is not the served "
                f"model {loaded.model!r:.80}",
            )
        self._check_seq_len(loaded, seq_len)

    def _check_seq_len(self, loaded: _Loaded, seq_len: int) -> None:
        limit = loaded.info.get("models", {}).get(loaded.model, {}).get("max_seq_len")
        if isinstance(limit, int) and seq_len > limit:
            raise MlNodeError(
                400, f"params.seq_len {seq_len} exceeds {loaded.model}'s {limit} positions"
            )

    def _filler(self, generation: _Generation) -> Callable[[str, DeviceStats], Task | None]:
        by_device = {g.device.id: g for g in generation.groups}
        loaded = self._loaded
        assert loaded is not None
        pool = loaded.pool
        request = generation.request
        batch = loaded.info.get("batch_size")
        first_chunk = batch if isinstance(batch, int) and batch > 0 else 16

        def fill(device_id: str, stats: DeviceStats) -> Task | None:
            group = by_device.get(device_id)
            if group is None or not generation.active:
                return None
            size = pool.chunk_size(stats)
            if group.chunks == 0:
                # The first chunk of a round is one forward: its artifacts exist at once.
                size = min(size, first_chunk)
            group.chunks += 1
            nonces = list(itertools.islice(group.nonces, size))
            if not nonces:
                return None
            return Task(
                POC,
                {
                    "model": loaded.model,
                    "block_hash": request.block_hash,
                    "public_key": request.public_key,
                    "seq_len": request.params.seq_len,
                    "strong": request.poc_stronger_rng,
                    "nonces": nonces,
                },
                item=(generation, group),
            )

        return fill

    def _chunk_done(self, task: Task, result: list[tuple[int, bytes]]) -> None:
        generation, group = task.item
        if not generation.active:
            return  # stopped: pow/stop dropped the round's callbacks
        if generation.target is not None and self._outbox is not None:
            self._outbox.add_artifacts(generation.target, result)
        if generation.first_artifact_at is None and result:
            generation.first_artifact_at = time.monotonic()
            self._emit(
                "first_artifact",
                seconds=round(generation.first_artifact_at - generation.started, 3),
            )
        with self._lock:
            group.total_processed += len(task.payload["nonces"])
        self.metrics.artifacts_computed(group.group_id, len(result))
        if self._outbox is not None:
            self.metrics.set_buffered(self._outbox.buffered)

    def pow_status(self) -> dict[str, Any]:
        loaded = self._loaded
        if loaded is None or not loaded.ready.is_set():
            return {"status": "NO_BACKENDS", "backends": []}
        generation = self._generation
        now = time.monotonic()
        port = self.config.backend_port
        if generation is None or not generation.active:
            return {
                "status": IDLE,
                "backends": [{"port": port, "status": IDLE, "config": None, "stats": None}],
            }
        with self._lock:
            backends = [
                {
                    "port": port,
                    "status": GENERATING,
                    "group_id": group.group_id,
                    "devices": _device_ids(group.device),
                    "config": generation.config(group),
                    "stats": {
                        "total_processed": group.total_processed,
                        "nonces_per_second": round(generation.rate(group, now), 2),
                    },
                }
                for group in generation.groups
            ]
        return {"status": GENERATING, "backends": backends}

    def pow_stop(self, body: object = None) -> dict[str, Any]:
        """Stop generating; drop the queued jobs and the unsent callbacks."""
        with self._lock:
            generation = self._generation
            if generation is not None:
                generation.active = False
        loaded = self._loaded
        if loaded is not None:
            loaded.pool.set_filler(None)
        if self._jobs is not None:
            self._jobs.clear()
            self._jobs.pause(False)
        if self._outbox is not None:
            dropped = self._outbox.clear()
            if self._sender is not None:
                self._sender.forget()
            if dropped:
                log.info("pow/stop: %d unsent artifacts dropped", dropped)
            self.metrics.set_buffered(0)
        if generation is not None:
            self._emit("generate_stopped", block_height=generation.request.block_height)
        return {
            "status": "OK",
            "results": [{"port": self.config.backend_port, "status": "stopped"}],
            "errors": None,
        }

    # -- generate / validation jobs -------------------------------------------------------

    def generate(self, body: object) -> dict[str, Any]:
        request = GenerateRequest.from_dict(body)
        loaded = self._require_loaded()
        _, _, jobs = self._parts()
        self._check_params(loaded, request.params.model, request.params.seq_len)
        return jobs.submit(request)

    def job(self, request_id: str) -> dict[str, Any]:
        _, _, jobs = self._parts()
        return jobs.get(request_id)

    def _recompute(self, request: GenerateRequest) -> dict[int, bytes]:
        """The artifacts of a job's nonces, through the pool at `PRIORITY_VALIDATION`."""
        loaded = self._require_loaded()
        nonces = list(request.nonces)
        futures = []
        for i in range(0, len(nonces), _RECOMPUTE_CHUNK):
            payload = {
                "model": loaded.model,
                "block_hash": request.block_hash,
                "public_key": request.public_key,
                "seq_len": request.params.seq_len,
                "strong": request.poc_stronger_rng,
                "nonces": nonces[i : i + _RECOMPUTE_CHUNK],
            }
            futures.append(self._run_task(Task(POC_RECOMPUTE, payload), PRIORITY_VALIDATION))
        computed: dict[int, bytes] = {}
        for future in futures:
            computed.update(dict(future.result()))
        return computed

    # -- chat ----------------------------------------------------------------------------

    def chat(self, body: object) -> dict[str, Any]:
        """An OpenAI chat completion (the non-stream body); 503 while PoC generation runs."""
        from gonka_cli.compute.chat import ChatRequest
        from gonka_cli.errors import InvalidComputeInput

        data = body_object(body, "chat/completions")
        loaded = self._require_loaded()
        if self._poc_status() == GENERATING:
            raise MlNodeError(503, "PoC generation is running; inference resumes after pow/stop")
        name = data.get("model")
        if name is not None and name not in loaded.served_ids():
            raise MlNodeError(404, f"The model `{name!s:.80}` does not exist.")
        try:
            request = ChatRequest.from_dict(data)
        except InvalidComputeInput as exc:
            raise MlNodeError(400, exc.message) from None
        del request  # checked here for a fast 400; the worker parses it again
        started = time.monotonic()
        served = name if isinstance(name, str) else loaded.model
        future = self._run_task(
            Task(
                CHAT,
                {
                    "model": loaded.model,
                    "body": dict(data),
                    "served": served,
                    "max_model_len": loaded.request.max_model_len,
                },
            ),
            PRIORITY_WORK,
        )
        answer: dict[str, Any] = future.result()
        usage = answer.get("usage") or {}
        self.metrics.chat(
            time.monotonic() - started,
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
        )
        return answer

    # -- callbacks and status ------------------------------------------------------------

    def _callback_done(self, result: CallbackResult) -> None:
        self._last_callback = result
        self.metrics.callback(result.kind, result.ok)
        if result.ok and result.artifacts:
            self.metrics.artifacts_sent(result.artifacts)
        if self._outbox is not None:
            self.metrics.set_buffered(self._outbox.buffered)
        self._emit("callback", **result.to_dict())

    def status(self) -> dict[str, Any]:
        """gonka's own status (`gonka mlnode status`)."""
        loaded = self._loaded
        generation = self._generation
        now = time.monotonic()
        groups: list[dict[str, Any]] = []
        if generation is not None:
            with self._lock:
                groups = [
                    {
                        "group_id": g.group_id,
                        "devices": _device_ids(g.device),
                        "nonces_per_second": round(generation.rate(g, now), 2)
                        if generation.active
                        else 0.0,
                        "total_processed": g.total_processed,
                    }
                    for g in generation.groups
                ]
        outbox, sender, jobs = self._outbox, self._sender, self._jobs
        last = self._last_callback
        return {
            "state": self._state(),
            "model": self.served_model(),
            "version": gonka_cli.__version__,
            "poc": {
                "status": self._poc_status(),
                "block_height": generation.request.block_height if generation else None,
                "block_hash": generation.request.block_hash if generation else None,
                "groups": groups,
                "buffered_artifacts": outbox.buffered if outbox is not None else 0,
                "sent_artifacts": sender.sent_artifacts if sender is not None else 0,
                "dropped_artifacts": outbox.dropped if outbox is not None else 0,
                "given_up_artifacts": sender.given_up if sender is not None else 0,
            },
            "validation": (
                jobs.counts()
                if jobs is not None
                else {"queued_jobs": 0, "queued_nonces": 0, "completed": 0}
            ),
            "last_callback": last.to_dict() if last is not None else None,
            "devices": loaded.pool.devices(now) if loaded is not None else [],
        }


# --- helpers ------------------------------------------------------------------------------


def _check_model(name: str) -> None:
    """404 unless `name` is a built-in model, a checkpoint directory or a cached repo id."""
    from gonka_cli.compute.models import MODELS

    if name in MODELS:
        return
    from gonka_cli.compute import checkpoints

    try:
        checkpoints.resolve(name)
    except GonkaError as exc:
        raise MlNodeError(404, exc.message) from None


def _device_groups(devices: tuple[MiningDevice, ...], tp: int) -> tuple[MiningDevice, ...]:
    """The devices as groups of `tp` (one model copy each): `cuda:0,1` for tp 2 on GPUs."""
    if tp <= 1 or all(d.gpu_index is None for d in devices):
        return devices  # the CPU is one device whatever the split
    if tp > len(devices):
        raise MlNodeError(
            500,
            f"--tensor-parallel-size {tp} needs {tp} GPUs; this node serves {len(devices)} "
            "(start it with more --devices, or lower the size)",
        )
    groups = []
    for start in range(0, len(devices) - tp + 1, tp):
        part = devices[start : start + tp]
        indices = ",".join(str(d.gpu_index) for d in part)
        groups.append(
            MiningDevice(
                id="+".join(d.id for d in part),
                name=" + ".join(d.name for d in part),
                torch_device=f"cuda:{indices}",
                gpu_index=part[0].gpu_index,
                memory_total_bytes=sum(d.memory_total_bytes or 0 for d in part) or None,
            )
        )
    return tuple(groups)


def _device_ids(device: MiningDevice) -> list[str]:
    return device.id.split("+")
