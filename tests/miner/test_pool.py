"""The device pool on its own, as a second front end would drive it: no node, no network."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gonka_cli.bench.devices import inventory
from gonka_cli.compute.inference import generate
from gonka_cli.compute.models import get_spec, load_model
from gonka_cli.compute.poc import PocInputParams, compute_artifacts
from gonka_cli.miner.devices import DeviceReading, MiningDevice, Telemetry, select_devices
from gonka_cli.miner.pool import PRIORITY_POC, PRIORITY_WORK, DevicePool, PoolConfig
from gonka_cli.miner.stats import DeviceStats
from gonka_cli.miner.worker import INFERENCE, POC, Done, Task

MODEL = "gonka-tiny"
SEED = "5C" * 32
PUBKEY = "03" + "1D" * 32
SEQ_LEN = get_spec(MODEL).poc_seq_len


class NoTemperature(Telemetry):
    """A device whose sensors say nothing (a GPU without NVML, a CPU in a container)."""

    def __init__(self) -> None:
        super().__init__(nvml=None)
        self.reads = 0
        self.changed = threading.Condition()

    def read(self, device: MiningDevice) -> DeviceReading:
        with self.changed:
            self.reads += 1
            self.changed.notify_all()
        return DeviceReading(power_w=80.0)

    def wait_reads(self, n: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.reads >= n, timeout=60)


class Front:
    """What a front end keeps: every result and event, as they come."""

    def __init__(self) -> None:
        self.done: list[tuple[str, Done]] = []
        self.failed: list[tuple[str, Task, str]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.changed = threading.Condition()

    def on_done(self, device: str, done: Done) -> None:
        with self.changed:
            self.done.append((device, done))
            self.changed.notify_all()

    def on_failed(self, device: str, task: Task, message: str) -> None:
        with self.changed:
            self.failed.append((device, task, message))
            self.changed.notify_all()

    def on_event(self, name: str, fields: dict[str, Any]) -> None:
        with self.changed:
            self.events.append((name, fields))
            self.changed.notify_all()

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
        with self.changed:
            if not self.changed.wait_for(check, timeout=timeout):
                raise AssertionError(f"timed out waiting for {what}")
            return check()

    def of(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in self.events if event == name]


def poc_task(first: int, count: int) -> Task:
    return Task(
        POC,
        {
            "epoch": 0,
            "model": MODEL,
            "seed": SEED,
            "pubkey": PUBKEY,
            "seq_len": SEQ_LEN,
            "first": first,
            "count": count,
        },
    )


INFERENCE_ITEM = {
    "model": MODEL,
    "prompt_tokens": [1, 2, 3, 4],
    "max_tokens": 6,
    "temperature": 0.0,
    "top_p": 1.0,
    "seed": 7,
    "top_logprobs": 5,
}


@pytest.fixture
def front() -> Front:
    return Front()


@pytest.fixture
def telemetry() -> NoTemperature:
    return NoTemperature()


@pytest.fixture
def pool(front: Front, telemetry: NoTemperature) -> Iterator[DevicePool]:
    pool = DevicePool(
        PoolConfig(
            devices=tuple(select_devices("cpu", inventory(nvml=None))),
            models=(MODEL,),
            poc_model=MODEL,
            temp_limit_c=80.0,
            telemetry_interval_s=0.05,
            # One task at a time: the order of the results is the order of dispatch.
            queue_depth=1,
        ),
        on_done=front.on_done,
        on_failed=front.on_failed,
        on_event=front.on_event,
        telemetry=telemetry,
    )
    yield pool
    pool.stop()


def test_a_front_end_drives_the_pool_with_poc_and_inference(pool: DevicePool, front: Front) -> None:
    # Queued before the device is ready: the inference task, submitted second, runs first.
    chunk = poc_task(100, 24)
    pool.submit(chunk, priority=PRIORITY_POC)
    task = Task(INFERENCE, INFERENCE_ITEM)
    pool.submit(task, priority=PRIORITY_WORK)
    pool.start()
    front.wait(lambda: len(front.done) == 2, "both results")

    (first_device, first), (_, second) = front.done
    assert (first.task, second.task) == (task, chunk)
    assert first_device == "cpu"
    assert first.started <= first.finished <= second.started <= second.finished

    model = load_model(MODEL)
    expected = compute_artifacts(
        model, SEED, PUBKEY, range(100, 124), params=PocInputParams(seq_len=SEQ_LEN)
    )
    assert second.result == expected
    answer = generate(model, [1, 2, 3, 4], 6, temperature=0.0, top_p=1.0, seed=7).to_dict()
    assert first.result["tokens"] == answer["tokens"]

    (device,) = pool.devices()
    assert device["id"] == "cpu" and device["nonces"] == 24 and device["restarts"] == 0
    busy, share = pool.duty_cycle((first.started, second.finished))
    assert busy == pytest.approx(first.busy_s + second.busy_s)
    assert 0 < share <= 1
    assert not front.failed


def test_the_filler_keeps_an_idle_device_busy(pool: DevicePool, front: Front) -> None:
    handed: list[int] = []

    def filler(device_id: str, stats: DeviceStats) -> Task | None:
        if len(handed) >= 3:
            return None
        count = pool.chunk_size(stats)
        first = sum(handed)
        handed.append(count)
        return poc_task(first, count)

    pool.set_filler(filler)
    pool.start()
    front.wait(lambda: len(front.done) == 3, "three filler chunks")
    assert [done.task.priority for _, done in front.done] == [PRIORITY_POC] * 3
    assert pool.stats["cpu"].nonces == sum(handed)


def test_an_unreadable_temperature_under_a_limit_is_said_once(
    pool: DevicePool,
    front: Front,
    telemetry: NoTemperature,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gonka_cli.miner.pool")
    pool.start()
    front.wait(lambda: front.of("temp_unreadable"), "the warning")
    telemetry.wait_reads(10)  # many readings, one warning
    warnings = front.of("temp_unreadable")
    assert warnings == [
        {
            "device": "cpu",
            "limit_c": 80.0,
            "message": "cannot read the temperature of cpu: --temp-limit 80 °C cannot pause it",
        }
    ]
    assert pool.devices()[0]["warning"] == warnings[0]["message"]
    logged = [r for r in caplog.records if "cannot read the temperature" in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    assert pool.devices()[0]["state"] != "paused"  # no reading never pauses
