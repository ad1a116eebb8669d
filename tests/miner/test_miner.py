"""The miner in-process: the temperature limit, the speed-collapse rule, the backoff."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.bench.devices import inventory
from gonka_cli.crypto.address import address_from_pubkey
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.miner.backoff import Backoff
from gonka_cli.miner.devices import DeviceReading, MiningDevice, Telemetry, select_devices
from gonka_cli.miner.miner import Miner, MinerConfig
from gonka_cli.miner.stats import COLLAPSE_WINDOW_S, DeviceStats
from gonka_cli.workclient import WorkClient
from tests.conftest import StartNode, node_url
from tests.miner.helpers import mining_network
from tests.node.network_helpers import fund_collateral
from tests.node.test_mining import wait_for


class SwitchableTemperature(Telemetry):
    """Readings of a device whose temperature the test sets (no GPU sensor here)."""

    def __init__(self) -> None:
        super().__init__(nvml=None)
        self.hot = threading.Event()

    def read(self, device: MiningDevice) -> DeviceReading:
        return DeviceReading(temperature_c=92.0 if self.hot.is_set() else 61.0, power_w=250.0)


@pytest.mark.slow
def test_a_hot_device_pauses_and_resumes(start_node: StartNode, tmp_path: Path) -> None:
    node = start_node(
        network=mining_network(epoch_blocks=300, poc_generate_blocks=250, poc_validate_blocks=20)
    )
    events: list[dict[str, Any]] = []
    telemetry = SwitchableTemperature()
    key = PrivateKey(secrets.token_bytes(32))
    fund_collateral(node_url(node), address_from_pubkey(key.public_key.to_bytes()))
    miner = Miner(
        WorkClient(node_url(node), key),
        key,
        tmp_path / "data",
        MinerConfig(
            devices=tuple(select_devices("cpu", inventory(nvml=None))),
            temp_limit_c=85.0,
            telemetry_interval_s=0.1,
        ),
        on_event=events.append,
        telemetry=telemetry,
    )
    thread = threading.Thread(target=miner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: [e for e in events if e["event"] == "commit"], what="a commit")
        stats = miner.stats["cpu"]
        assert stats.reading.power_w == 250.0

        telemetry.hot.set()
        paused = wait_for(lambda: [e for e in events if e["event"] == "device_paused"])[0]
        assert (paused["device"], paused["temperature_c"], paused["limit_c"]) == ("cpu", 92, 85)
        wait_for(lambda: not miner.workers[0].in_flight, what="the chunks in flight")
        held = stats.nonces
        time.sleep(1.0)
        assert stats.nonces == held  # nothing computed while it is too hot
        assert miner.snapshot()["devices"][0]["state"] == "paused"

        telemetry.hot.clear()
        wait_for(lambda: [e for e in events if e["event"] == "device_resumed"])
        wait_for(lambda: stats.nonces > held, what="mining again")
    finally:
        miner.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert events[-1]["event"] == "stopped"


def test_a_collapsed_speed_is_noticed_only_when_it_lasts() -> None:
    stats = DeviceStats(MiningDevice(id="gpu:0", name="card", torch_device="cuda:0"))
    t = 0.0
    for _ in range(8):  # 1,000 nonces/s
        assert not stats.record_chunk(t, t + 0.25, 250)
        t += 0.25
    assert stats.best_rate == pytest.approx(1000)
    for _ in range(30):  # a short dip is not a collapse
        assert not stats.record_chunk(t, t + 0.25, 100)
        t += 0.25
    for _ in range(8):
        assert not stats.record_chunk(t, t + 0.25, 250)
        t += 0.25
    collapsed = False
    started = t
    while not collapsed:  # 40 nonces/s: under a fifth of the best
        collapsed = stats.record_chunk(t, t + 1.0, 40)
        t += 1.0
        assert t - started < COLLAPSE_WINDOW_S + 20
    assert t - started >= COLLAPSE_WINDOW_S
    assert stats.last_error == "speed collapsed to 40 nonces/s from 1000"


def test_backoff_grows_with_jitter_to_a_cap_and_resets() -> None:
    backoff = Backoff(base_s=0.25, cap_s=5.0)
    delays = [backoff.next_delay() for _ in range(12)]
    for i, delay in enumerate(delays):
        ceiling = min(5.0, 0.25 * 2**i)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jittered, not in lockstep
    backoff.reset()
    assert backoff.next_delay() <= 0.25


@pytest.mark.slow
def test_a_device_that_keeps_dying_stops_the_miner(start_node: StartNode, tmp_path: Path) -> None:
    from gonka_cli.errors import MinerError

    node = start_node(network=mining_network())
    key = PrivateKey(secrets.token_bytes(32))
    fund_collateral(node_url(node), address_from_pubkey(key.public_key.to_bytes()))
    events: list[dict[str, Any]] = []
    miner = Miner(
        WorkClient(node_url(node), key),
        key,
        tmp_path / "data",
        MinerConfig(devices=tuple(select_devices("cpu", inventory(nvml=None))), max_restarts=1),
        on_event=events.append,
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            miner.run()
        except MinerError as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        for started in (1, 2):
            wait_for(
                lambda n=started: len([e for e in events if e["event"] == "device_ready"]) >= n,
                what="the worker's start",
            )
            ready = [e for e in events if e["event"] == "device_ready"][started - 1]
            os.kill(ready["pid"], signal.SIGKILL)
        thread.join(timeout=60)
    finally:
        miner.stop()
        thread.join(timeout=30)
    exits = [e for e in events if e["event"] == "device_exited"]
    assert [(e["restart"], e["restarts"]) for e in exits] == [(True, 1), (False, 1)]
    assert len(failure) == 1
    assert str(failure[0]).startswith("every device failed (cpu: exit code -9)")
    assert miner.stats["cpu"].state == "failed"
