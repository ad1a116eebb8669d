"""One compute process per device, and its handle in the miner.

The process (`worker_main`) loads the models once, then runs the tasks it is sent over a pipe
one at a time: a chunk of PoC nonces, an inference task or a validation task (and for the
ML node, `gonka mlnode serve`: a PoC chunk given as an explicit nonce list, a recomputation
for a PoC validation job, a chat completion). Each answer
carries the monotonic start and end of the compute, which is how the miner measures how busy
the device is (`time.monotonic` is one clock for every process on the machine).

Processes rather than threads: a GPU whose driver crashes, or a worker killed by the OS,
takes down its own process only. The miner (`DeviceWorker`) sees the pipe close, hands the
lost tasks back and starts the worker again. A worker ignores Ctrl-C (the miner stops it) and
exits when the miner's end of the pipe closes, so a miner killed with -9 leaves no worker
behind.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

POC, INFERENCE, VALIDATION = "poc", "inference", "validation"
#: The devnet's PoC vote: recompute another participant's sampled nonces and judge them.
POC_VALIDATION = "poc_validation"
#: Kinds the ML node (`gonka mlnode serve`) adds: recomputing a prover's nonces for a PoC
#: validation job (requeued on a crash, unlike a PoC chunk), and an OpenAI chat completion.
POC_RECOMPUTE, CHAT = "poc_recompute", "chat"

_ids = itertools.count(1)


@dataclass
class Task:
    """A unit of device work: `payload` is what the worker needs; `item` is the front end's
    own reference (the devnet's work item), never read by the pool; lower `priority` runs
    first (`pool.PRIORITY_WORK`, `pool.PRIORITY_POC`)."""

    kind: str
    payload: dict[str, Any]
    item: Any = None
    priority: int = 0
    id: int = field(default_factory=lambda: next(_ids))


@dataclass(frozen=True)
class Done:
    task: Task
    result: Any
    started: float
    finished: float

    @property
    def busy_s(self) -> float:
        return self.finished - self.started


# --- the worker process ----------------------------------------------------------------------


def worker_main(conn: Any, torch_device: str, models: list[str], poc_model: str) -> None:
    """The body of a worker process (spawned; everything it needs comes as arguments)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        runner = _Runner(torch_device)
        engine = runner.engine(poc_model)
        for name in models:
            runner.model(name)
        specs = {name: _spec_info(runner.model(name)) for name in models}
        conn.send(("ready", {"pid": os.getpid(), **engine.to_dict(), "models": specs}))
    except Exception as exc:
        _send_quietly(conn, ("fatal", f"{type(exc).__name__}: {' '.join(str(exc).split())}"))
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the miner is gone
        if message[0] == "stop":
            return
        _, task_id, kind, payload = message
        started = time.monotonic()
        try:
            result = runner.run(kind, payload)
        except Exception as exc:
            reply: tuple[Any, ...] = (
                "failed",
                task_id,
                f"{type(exc).__name__}: {' '.join(str(exc).split())}",
            )
        else:
            reply = ("done", task_id, result, started, time.monotonic())
        if not _send_quietly(conn, reply):
            return


def _spec_info(model: Any) -> dict[str, Any]:
    spec = model.spec
    return {"max_seq_len": int(spec.max_seq_len), "poc_seq_len": int(spec.poc_seq_len)}


def _poc_rate(engine: PocEngine, min_time_s: float = 0.5) -> float:
    """Nonces per second of `engine` on this device, after a warm-up call."""
    seed, pubkey = "00" * 32, "02" + "00" * 32
    nonces = list(range(engine.batch_size * 2))
    engine.compute(seed, pubkey, nonces)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_time_s:
        engine.compute(seed, pubkey, nonces)
        done += len(nonces)
    return done / (time.perf_counter() - started)


def _send_quietly(conn: Any, message: tuple[Any, ...]) -> bool:
    try:
        conn.send(message)
    except (BrokenPipeError, EOFError, OSError):
        return False
    return True


@dataclass
class PocEngine:
    """How a device computes PoC chunks: the backend, its batch size and the measured rates
    (nonces/s) when both backends were timed."""

    backend: str
    batch_size: int
    compute: Callable[[str, str, Sequence[int]], list[bytes]]
    rates: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "batch_size": self.batch_size,
            "rates": {k: round(v, 1) for k, v in self.rates.items()},
        }


class _Runner:
    """The models of one device, loaded once, and the three kinds of task."""

    def __init__(self, torch_device: str) -> None:
        self.torch_device = torch_device
        self._models: dict[str, Any] = {}
        self._engines: dict[tuple[str, int], PocEngine] = {}

    def model(self, name: str) -> Any:
        if name not in self._models:
            from gonka_cli.compute.models import load_model

            self._models[name] = load_model(name, device=self.torch_device)
        return self._models[name]

    def run(self, kind: str, payload: dict[str, Any]) -> Any:
        if kind == POC_RECOMPUTE or (kind == POC and "nonces" in payload):
            return self.poc_nonces(payload)
        if kind == POC:
            return self.poc(payload)
        if kind == CHAT:
            return self.chat(payload)
        if kind == INFERENCE:
            return self.inference(payload)
        if kind == VALIDATION:
            return self.validation(payload)
        if kind == POC_VALIDATION:
            return run_poc_validation(
                payload, self.engine(payload["model"], payload["seq_len"]).compute
            )
        raise ValueError(f"unknown task kind {kind!r}")

    def engine(self, name: str, seq_len: int | None = None) -> PocEngine:
        """The PoC engine of model `name`: torch, or onnxruntime when its graph is already
        exported (by `gonka bench run`) and it computes faster on this device, as timed here."""
        from gonka_cli.compute.poc import PocInputParams, choose_batch_size, compute_artifacts

        model = self.model(name)
        length = model.spec.poc_seq_len if seq_len is None else seq_len
        key = (name, length)
        if key in self._engines:
            return self._engines[key]
        params = PocInputParams(seq_len=length)
        batch = choose_batch_size(model, length)

        def on_torch(seed: str, pubkey: str, nonces: Sequence[int]) -> list[bytes]:
            return compute_artifacts(model, seed, pubkey, nonces, params=params, batch_size=batch)

        engine = PocEngine("torch", batch, on_torch)
        onnx = self._onnx_engine(model, length, batch)
        if onnx is not None:
            rates = {e.backend: _poc_rate(e) for e in (engine, onnx)}
            if rates["onnxruntime"] > rates["torch"]:
                engine = onnx
            engine.rates = rates
        self._engines[key] = engine
        return engine

    def _onnx_engine(self, model: Any, seq_len: int, batch: int) -> PocEngine | None:
        from gonka_cli.compute import onnx_backend

        spec = model.spec
        if seq_len != spec.poc_seq_len:
            return None  # the graph is exported for the model's own length
        if not onnx_backend.model_path(spec.name, "poc", model.fingerprint).exists():
            return None  # exporting here would hold the device up for seconds to minutes
        try:
            onnx = onnx_backend.OnnxModel(spec.name, self.torch_device)
            onnx.session("poc")
        except Exception as exc:  # onnxruntime's own errors derive from Exception only
            log.info("onnxruntime unusable for %s: %s", spec.name, exc)
            return None

        def on_onnx(seed: str, pubkey: str, nonces: Sequence[int]) -> list[bytes]:
            return onnx_backend.compute_artifacts(onnx, seed, pubkey, nonces, batch_size=batch)

        return PocEngine("onnxruntime", batch, on_onnx)

    def poc(self, p: dict[str, Any]) -> list[bytes]:
        engine = self.engine(p["model"], p["seq_len"])
        return engine.compute(p["seed"], p["pubkey"], range(p["first"], p["first"] + p["count"]))

    def poc_nonces(self, p: dict[str, Any]) -> list[tuple[int, bytes]]:
        """The ML node's PoC task: an explicit nonce list, the block hash and public key
        verbatim, `seq_len` and `strong` from the round. Gives `(nonce, artifact)` pairs; a
        nonce whose hidden state held NaN is left out (spec: dropped, never sent)."""
        from gonka_cli.compute.poc import PocInputParams, compute_poc

        model = self.model(p["model"])
        params = PocInputParams(seq_len=p["seq_len"], strong_inputs=bool(p.get("strong")))
        batch = self.engine(p["model"], p["seq_len"]).batch_size
        result = compute_poc(
            model, p["block_hash"], p["public_key"], p["nonces"], params=params, batch_size=batch
        )
        return list(zip(result.nonces, result.artifacts, strict=True))

    def chat(self, p: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI chat completion body (`compute.chat`), `model` named as served."""
        from gonka_cli.compute.chat import ChatRequest, complete

        model = self.model(p["model"])
        request = ChatRequest.from_dict(p["body"])
        limit = p.get("max_model_len")
        if limit:  # inference/up's --max-model-len, checked as vLLM checks it
            request = _within_context(model, request, int(limit))
        return complete(model, request, model_name=p.get("served")).to_dict()

    def inference(self, item: dict[str, Any]) -> dict[str, Any]:
        return run_inference(self.model(item["model"]), item)

    def validation(self, item: dict[str, Any]) -> dict[str, Any]:
        return run_validation(self.model(item["model"]), item)


def _within_context(model: Any, request: Any, limit: int) -> Any:
    """`request` with its `max_tokens` within a `limit`-token context (the rest of the
    context when it asks none); InvalidComputeInput when the prompt and `max_tokens` exceed it."""
    import dataclasses

    from gonka_cli.compute.tokenizer import tokenizer_for
    from gonka_cli.errors import InvalidComputeInput

    prompt = len(tokenizer_for(model).chat_ids(request.messages))
    wanted = request.max_tokens
    if prompt + (wanted or 1) > limit:
        raise InvalidComputeInput(
            f"this model's maximum context length is {limit} tokens; the messages take "
            f"{prompt} and max_tokens asks {wanted or 1} more"
        )
    if wanted is None:
        request = dataclasses.replace(request, max_tokens=limit - prompt)
    return request


def run_inference(model: Any, item: dict[str, Any]) -> dict[str, Any]:
    """The result body of an inference work item: tokens, top logprobs, finish reason."""
    from gonka_cli.compute.inference import generate

    answer = generate(
        model,
        item["prompt_tokens"],
        item["max_tokens"],
        temperature=item["temperature"],
        top_p=item["top_p"],
        seed=item["seed"],
        top_k_logprobs=item.get("top_logprobs", 5),
    ).to_dict()
    return {
        "tokens": answer["tokens"],
        "top_logprobs": answer["top_logprobs"],
        "finish_reason": answer["finish_reason"],
    }


def run_validation(model: Any, item: dict[str, Any]) -> dict[str, Any]:
    """The result body of a validation work item: the devnet's replay check
    (`replay_check.check_answer`), its verdict and statistics as `ValidationResult`."""
    from gonka_cli.compute.replay_check import check_answer
    from gonka_cli.protocol import ValidationResult

    verdict = check_answer(
        model,
        item["prompt_tokens"],
        item["tokens"],
        item["top_logprobs"],
        # Processed logprobs and the support depend on the request's sampling (an older
        # node sends none: vLLM's defaults).
        {
            "temperature": item.get("temperature", 1.0),
            "top_p": item.get("top_p", 1.0),
            "top_k": item.get("top_k", 0),
        },
        item["threshold"],
    )
    return ValidationResult(
        verdict.passed,
        verdict.similarity,
        verdict.support_margin,
        verdict.log10_p,
        verdict.z_score,
        verdict.reason,
    ).to_dict()


def run_poc_validation(
    item: dict[str, Any], compute: Callable[[str, str, Sequence[int]], list[bytes]]
) -> dict[str, Any]:
    """The result body of a `poc_validation` work item: recompute the prover's nonces with
    `compute(seed, pubkey, nonces)`, count the mismatches (a vector that is not 12 finite fp16
    values, or farther than `dist_threshold` from the recomputed one), and vote by the
    binomial test (`PocValidationResult`)."""
    import base64
    import binascii

    from gonka_cli.compute.artifacts import ARTIFACT_BYTES, artifact_distance, decode_artifact
    from gonka_cli.compute.validation import fraud_cutoff
    from gonka_cli.errors import InvalidComputeInput
    from gonka_cli.protocol import PocValidationResult

    nonces = list(item["nonces"])
    own = compute(item["seed"], item["pubkey"], nonces)
    threshold = float(item["dist_threshold"])
    mismatches = 0
    for text, mine in zip(item["vectors"], own, strict=True):
        try:
            vector = base64.b64decode(text, validate=True)
            if len(vector) != ARTIFACT_BYTES:
                raise InvalidComputeInput("wrong length")
            decode_artifact(vector)  # NaN or infinite values are a mismatch
            far = artifact_distance(vector, mine) > threshold
        except (binascii.Error, ValueError, InvalidComputeInput):
            far = True
        mismatches += far
    cutoff = fraud_cutoff(len(nonces), float(item["p_mismatch"]), float(item["alpha"]))
    return PocValidationResult(mismatches < cutoff, mismatches).to_dict()


# --- the miner's side ------------------------------------------------------------------------


class DeviceWorker:
    """The handle of one device's worker process.

    `on_done(worker, Done)` and `on_failed(worker, task, message)` are called from the
    worker's reader thread; `on_exit(worker, lost_tasks, why)` when the process ends on its
    own (a crash), with the tasks it had not finished.
    """

    def __init__(
        self,
        device_id: str,
        torch_device: str,
        models: list[str],
        poc_model: str,
        *,
        on_done: Callable[[DeviceWorker, Done], None],
        on_failed: Callable[[DeviceWorker, Task, str], None],
        on_exit: Callable[[DeviceWorker, list[Task], str], None],
        on_ready: Callable[[DeviceWorker], None],
    ) -> None:
        self.device_id = device_id
        self.torch_device = torch_device
        self.models = models
        self.poc_model = poc_model
        self._on_done, self._on_failed = on_done, on_failed
        self._on_exit, self._on_ready = on_exit, on_ready
        self._lock = threading.Lock()
        self.in_flight: dict[int, Task] = {}
        self.ready = False
        #: What the process said when ready: its pid and PoC engine (`PocEngine.to_dict`).
        self.info: dict[str, Any] = {}
        self.pid: int | None = None
        self._process: Any = None
        self._conn: Any = None
        self._stopping = False
        self.started_at = 0.0

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(
            target=worker_main,
            args=(child, self.torch_device, self.models, self.poc_model),
            name=f"gonka-worker-{self.device_id}",
            daemon=True,
        )
        self.ready, self._stopping = False, False
        self.started_at = time.monotonic()
        self._process.start()
        child.close()
        self._conn = parent
        self.pid = self._process.pid
        threading.Thread(
            target=self._read,
            args=(parent, self._process),
            name=f"read-{self.device_id}",
            daemon=True,
        ).start()

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def submit(self, task: Task) -> bool:
        """Send a task; False when the process is gone (the task stays with the caller)."""
        with self._lock:
            if self._conn is None or self._stopping:
                return False
            self.in_flight[task.id] = task
            try:
                self._conn.send(("task", task.id, task.kind, task.payload))
            except (BrokenPipeError, OSError):
                self.in_flight.pop(task.id, None)
                return False
        return True

    def _read(self, conn: Any, process: Any) -> None:
        why = "its pipe closed"
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "ready":
                self.info = dict(message[1])
                self.ready = True
                self._on_ready(self)
            elif kind == "fatal":
                why = message[1]
                break
            elif kind in ("done", "failed"):
                with self._lock:
                    task = self.in_flight.pop(message[1], None)
                if task is None:
                    continue
                if kind == "done":
                    self._on_done(self, Done(task, message[2], message[3], message[4]))
                else:
                    self._on_failed(self, task, message[2])
        process.join(timeout=5)
        with self._lock:
            lost = list(self.in_flight.values())
            self.in_flight.clear()
            stopping = self._stopping
            if self._conn is conn:
                self._conn = None
        self.ready = False
        if not stopping:
            code = process.exitcode
            if why == "its pipe closed":
                why = f"exit code {code}" if code is not None else "it stopped answering"
            self._on_exit(self, lost, why)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the process to finish its current task and exit; kill it if it does not."""
        with self._lock:
            self._stopping = True
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
        process = self._process
        if process is not None:
            process.join(timeout=timeout_s)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        if conn is not None:
            conn.close()

    def kill(self) -> None:
        """Kill the process at once (what a crashed driver does); the reader reports it."""
        if self._process is not None and self._process.pid is not None:
            os.kill(self._process.pid, signal.SIGKILL)
