"""A device worker process: the same bytes as the engine in-process, failures, crashes, exit."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from gonka_cli.compute.inference import generate
from gonka_cli.compute.models import get_spec, load_model
from gonka_cli.compute.poc import PocInputParams, compute_artifacts
from gonka_cli.compute.replay_check import check_answer
from gonka_cli.miner.worker import INFERENCE, POC, VALIDATION, DeviceWorker, Done, Task

SEED = "4F" * 32
SEQ_LEN = get_spec("gonka-tiny").poc_seq_len
PUBKEY = "02" + "3A" * 32


class Recorder:
    def __init__(self) -> None:
        self.done: dict[int, Done] = {}
        self.failed: dict[int, str] = {}
        self.exits: list[tuple[list[Task], str]] = []
        self.ready = threading.Event()
        self.changed = threading.Condition()

    def on_done(self, _: DeviceWorker, done: Done) -> None:
        with self.changed:
            self.done[done.task.id] = done
            self.changed.notify_all()

    def on_failed(self, _: DeviceWorker, task: Task, message: str) -> None:
        with self.changed:
            self.failed[task.id] = message
            self.changed.notify_all()

    def on_exit(self, _: DeviceWorker, lost: list[Task], why: str) -> None:
        with self.changed:
            self.exits.append((lost, why))
            self.changed.notify_all()

    def on_ready(self, _: DeviceWorker) -> None:
        self.ready.set()

    def worker(self, device_id: str, torch_device: str, models: list[str]) -> DeviceWorker:
        """A worker for the PoC model gonka-tiny whose callbacks land here."""
        return DeviceWorker(
            device_id,
            torch_device,
            models,
            "gonka-tiny",
            on_done=self.on_done,
            on_failed=self.on_failed,
            on_exit=self.on_exit,
            on_ready=self.on_ready,
        )

    def wait(self, check: Any, timeout: float = 60.0) -> None:
        with self.changed:
            assert self.changed.wait_for(check, timeout=timeout)


@pytest.fixture
def worker() -> Iterator[tuple[DeviceWorker, Recorder]]:
    recorder = Recorder()
    w = recorder.worker("cpu", "cpu", ["gonka-tiny"])
    w.start()
    assert recorder.ready.wait(60)
    yield w, recorder
    w.stop()


def poc_task(first: int, count: int) -> Task:
    return Task(
        POC,
        {
            "epoch": 0,
            "model": "gonka-tiny",
            "seed": SEED,
            "pubkey": PUBKEY,
            "seq_len": SEQ_LEN,
            "first": first,
            "count": count,
        },
    )


def test_poc_chunks_give_the_engines_artifacts(worker: tuple[DeviceWorker, Recorder]) -> None:
    w, rec = worker
    tasks = [poc_task(0, 40), poc_task(40, 25)]
    for t in tasks:
        assert w.submit(t)
    rec.wait(lambda: all(t.id in rec.done for t in tasks))
    model = load_model("gonka-tiny")
    expected = compute_artifacts(
        model,
        SEED,
        PUBKEY,
        list(range(65)),
        params=PocInputParams.for_model(model.spec),
    )
    assert rec.done[tasks[0].id].result + rec.done[tasks[1].id].result == expected
    # Each answer carries when the compute ran, on the machine-wide monotonic clock.
    first, second = rec.done[tasks[0].id], rec.done[tasks[1].id]
    assert 0 < first.busy_s and first.finished <= second.started <= time.monotonic()
    assert not w.in_flight


def test_inference_and_validation_tasks(worker: tuple[DeviceWorker, Recorder]) -> None:
    w, rec = worker
    item = {
        "id": "x",
        "model": "gonka-tiny",
        "prompt_tokens": [72, 105],
        # Long enough that swapped tokens fail: Gonka's comparison dilutes under 100.
        "max_tokens": 60,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 5,
        "top_logprobs": 5,
    }
    task = Task(INFERENCE, item, item)
    w.submit(task)
    rec.wait(lambda: task.id in rec.done)
    answer = rec.done[task.id].result
    local = generate(load_model("gonka-tiny"), [72, 105], 60, temperature=0.7, top_p=0.9, seed=5)
    assert answer["tokens"] == local.to_dict()["tokens"]
    assert all(len(entries) == 5 for entries in answer["top_logprobs"])

    check = {
        "id": "v",
        "model": "gonka-tiny",
        "prompt_tokens": [72, 105],
        "tokens": answer["tokens"],
        "top_logprobs": answer["top_logprobs"],
        "threshold": 0.96,
        "temperature": 0.7,
        "top_p": 0.9,
    }
    honest = Task(VALIDATION, check, check)
    altered = {**check, "tokens": [(t + 1) % 256 for t in answer["tokens"]]}
    dishonest = Task(VALIDATION, altered, altered)
    w.submit(honest)
    w.submit(dishonest)
    rec.wait(lambda: honest.id in rec.done and dishonest.id in rec.done)
    assert rec.done[honest.id].result["passed"] is True
    assert rec.done[dishonest.id].result["passed"] is False
    # The worker judges with the devnet's replay check, computed here in this process too.
    expected = check_answer(
        load_model("gonka-tiny"),
        [72, 105],
        altered["tokens"],
        answer["top_logprobs"],
        {"temperature": 0.7, "top_p": 0.9},
        0.96,
    )
    assert rec.done[dishonest.id].result["similarity"] == expected.similarity


def test_a_task_that_fails_says_why_and_the_worker_goes_on(
    worker: tuple[DeviceWorker, Recorder],
) -> None:
    w, rec = worker
    item = {
        "id": "bad",
        "model": "gonka-tiny",
        "prompt_tokens": [99999],
        "max_tokens": 4,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": 1,
    }
    bad = Task(INFERENCE, item, item)
    w.submit(bad)
    after = poc_task(0, 16)
    w.submit(after)
    rec.wait(lambda: bad.id in rec.failed and after.id in rec.done)
    assert rec.failed[bad.id].startswith("InvalidComputeInput")
    assert w.alive


def test_a_killed_worker_reports_its_lost_tasks(worker: tuple[DeviceWorker, Recorder]) -> None:
    w, rec = worker
    tasks = [poc_task(i * 5000, 5000) for i in range(2)]  # long enough to be in flight
    for t in tasks:
        w.submit(t)
    w.kill()
    rec.wait(lambda: rec.exits)
    lost, why = rec.exits[0]
    assert {t.id for t in lost} == {t.id for t in tasks}
    assert why == "exit code -9"
    assert not w.alive and not w.submit(poc_task(0, 16))
    # Started again, it works.
    rec.ready.clear()
    w.start()
    assert rec.ready.wait(60)
    again = poc_task(0, 16)
    assert w.submit(again)
    rec.wait(lambda: again.id in rec.done)


def test_a_worker_exits_when_the_miner_is_killed(tmp_path: Any) -> None:
    script = (
        "import os, signal\n"
        "from gonka_cli.miner.worker import DeviceWorker\n"
        "ready = []\n"
        "w = DeviceWorker('cpu', 'cpu', [], 'gonka-tiny', on_done=print, on_failed=print,\n"
        "                 on_exit=print, on_ready=ready.append)\n"
        "w.start()\n"
        "import time\n"
        "while not ready: time.sleep(0.01)\n"
        "print(w.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    pid = int(proc.stdout.split()[-1])
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the worker outlived its miner"
        time.sleep(0.05)


def test_a_worker_that_cannot_start_says_why() -> None:
    rec = Recorder()
    w = rec.worker("gpu:7", "cuda:7", ["gonka-tiny"])
    w.start()
    try:
        rec.wait(lambda: rec.exits)
    finally:
        w.stop()
    _, why = rec.exits[0]
    assert why.startswith("DeviceUnavailable") and "CUDA" in why
    assert not rec.ready.is_set()


def test_the_backend_is_torch_unless_an_onnx_export_is_cached(
    worker: tuple[DeviceWorker, Recorder],
) -> None:
    w, _ = worker
    assert w.info["backend"] == "torch" and w.info["rates"] == {}
    assert w.info["batch_size"] >= 1


@pytest.mark.slow
def test_with_a_cached_export_the_faster_backend_mines() -> None:
    from gonka_cli.compute import onnx_backend
    from gonka_cli.compute.artifacts import artifact_distance

    onnx_backend.export("gonka-tiny", "poc")  # what `gonka bench run` leaves in the cache
    rec = Recorder()
    w = rec.worker("cpu", "cpu", [])
    w.start()
    try:
        assert rec.ready.wait(120)
        rates = w.info["rates"]
        assert set(rates) == {"torch", "onnxruntime"} and min(rates.values()) > 0
        assert w.info["backend"] == max(rates, key=rates.get)
        task = poc_task(0, 32)
        w.submit(task)
        rec.wait(lambda: task.id in rec.done)
    finally:
        w.stop()
    model = load_model("gonka-tiny")
    reference = compute_artifacts(model, SEED, PUBKEY, list(range(32)))
    # Either backend's artifacts validate against the torch reference.
    assert (
        max(
            artifact_distance(a, b)
            for a, b in zip(rec.done[task.id].result, reference, strict=True)
        )
        < 0.01
    )
