"""One compute process per device, and its handle in the miner.

The process (`worker_main`) loads the models once, then runs the tasks it is sent over a pipe
one at a time: a chunk of PoC nonces, an inference task or a validation task. Each answer
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

POC, INFERENCE, VALIDATION = "poc", "inference", "validation"

_ids = itertools.count(1)


@dataclass
class Task:
    """A unit of device work: `payload` is what the worker needs, `item` the node's work item."""

    kind: str
    payload: dict[str, Any]
    item: dict[str, Any] | None = None
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
        runner.model(poc_model)
        for name in models:
            runner.model(name)
        conn.send(("ready", {"pid": os.getpid()}))
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


def _send_quietly(conn: Any, message: tuple[Any, ...]) -> bool:
    try:
        conn.send(message)
    except (BrokenPipeError, EOFError, OSError):
        return False
    return True


class _Runner:
    """The models of one device, loaded once, and the three kinds of task."""

    def __init__(self, torch_device: str) -> None:
        self.torch_device = torch_device
        self._models: dict[str, Any] = {}
        self._batch: dict[tuple[str, int], int] = {}

    def model(self, name: str) -> Any:
        if name not in self._models:
            from gonka_cli.compute.models import load_model

            self._models[name] = load_model(name, device=self.torch_device)
        return self._models[name]

    def run(self, kind: str, payload: dict[str, Any]) -> Any:
        if kind == POC:
            return self.poc(payload)
        if kind == INFERENCE:
            return self.inference(payload)
        if kind == VALIDATION:
            return self.validation(payload)
        raise ValueError(f"unknown task kind {kind!r}")

    def poc(self, p: dict[str, Any]) -> list[bytes]:
        from gonka_cli.compute.poc import PocInputParams, choose_batch_size, compute_artifacts

        model = self.model(p["model"])
        key = (p["model"], p["seq_len"])
        if key not in self._batch:
            self._batch[key] = choose_batch_size(model, p["seq_len"])
        return compute_artifacts(
            model,
            p["seed"],
            p["pubkey"],
            range(p["first"], p["first"] + p["count"]),
            params=PocInputParams(seq_len=p["seq_len"]),
            batch_size=self._batch[key],
        )

    def inference(self, item: dict[str, Any]) -> dict[str, Any]:
        return run_inference(self.model(item["model"]), item)

    def validation(self, item: dict[str, Any]) -> dict[str, Any]:
        return run_validation(self.model(item["model"]), item)


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
    """The result body of a validation work item: the replay's verdict and similarity."""
    from gonka_cli.compute.inference import replay

    result = replay(
        model, item["prompt_tokens"], item["tokens"], item["top_logprobs"], item["threshold"]
    )
    return {"passed": result.passed, "similarity": result.similarity}


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
