"""Choosing mining devices, their telemetry (NVML through a stand-in binding), the thermal pause."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import namedtuple
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
import torch

from gonka_cli.bench.devices import GpuInfo, Inventory, inventory
from gonka_cli.errors import DeviceUnavailable, InputError
from gonka_cli.miner.devices import (
    DeviceReading,
    MiningDevice,
    Telemetry,
    ThermalGate,
    _cpu_temperature_c,
    select_devices,
)
from tests.bench.test_devices import H100, RTX, FakeNvml

FIX = (
    "install a CUDA build of torch or fix the driver, "
    "or pass --devices cpu to mine on the CPU on purpose"
)
INVALID = "use GPU indices like 0,1 (see gonka bench devices) or cpu"

needs_cpu_only_torch = pytest.mark.skipif(
    torch.cuda.is_available(), reason="torch can use CUDA here: not a CPU-only machine"
)


@pytest.fixture(scope="module")
def cpu_only() -> Inventory:
    """This machine as the miner sees it without NVML."""
    return inventory(None)


@pytest.fixture(scope="module")
def three_gpus(cpu_only: Inventory) -> Inventory:
    """A host with three GPUs torch can drive, in nvidia-smi (bus) order."""
    gpus = tuple(
        GpuInfo(
            index=i,
            name="NVIDIA H100 80GB HBM3",
            uuid=f"GPU-{i}",
            pci_bus_id=bus,
            memory_total_bytes=85520809984,
            torch_device=f"cuda:{i}",
        )
        for i, bus in enumerate(["00000000:18:00.0", "00000000:2A:00.0", "00000000:3B:00.0"])
    )
    return dataclasses.replace(cpu_only, gpus=gpus, torch_cuda_problem=None)


def cpu_device(inv: Inventory) -> MiningDevice:
    return MiningDevice(
        id="cpu",
        name=inv.cpu.model or "CPU",
        torch_device="cpu",
        memory_total_bytes=inv.memory_total_bytes,
    )


# --- choosing devices -------------------------------------------------------------------------


@needs_cpu_only_torch
def test_a_machine_without_gpus_mines_on_the_cpu(cpu_only: Inventory) -> None:
    assert cpu_only.gpus == ()
    chosen = select_devices(None, cpu_only)
    assert chosen == [cpu_device(cpu_only)]
    assert chosen[0].to_dict() == {
        "id": "cpu",
        "name": cpu_only.cpu.model or "CPU",
        "torch_device": "cpu",
        "gpu_index": None,
        "uuid": None,
        "pci_bus_id": None,
        "memory_total_bytes": psutil.virtual_memory().total,
    }
    assert select_devices("cpu", cpu_only) == chosen
    with pytest.raises(InputError) as missing:
        select_devices("0", cpu_only)
    assert str(missing.value) == "no GPU 0: no NVIDIA GPU was found; use --devices cpu"


def test_the_cpu_without_a_model_name(cpu_only: Inventory) -> None:
    inv = dataclasses.replace(cpu_only, cpu=dataclasses.replace(cpu_only.cpu, model=None))
    assert select_devices("cpu", inv)[0].name == "CPU"


@needs_cpu_only_torch
def test_gpus_torch_cannot_use_are_an_error_never_a_quiet_cpu_fallback() -> None:
    # NVML (a stand-in: no GPU here) lists two cards; this CPU-only torch cannot drive them.
    inv = inventory(FakeNvml([H100, RTX]))
    problem = inv.torch_cuda_problem
    assert problem is not None
    if torch.version.cuda is None:
        assert problem == f"this torch ({torch.__version__}) is a CPU-only build"
    with pytest.raises(DeviceUnavailable) as default:
        select_devices(None, inv)
    assert str(default.value) == f"found 2 NVIDIA GPUs but torch cannot use CUDA ({problem}): {FIX}"
    with pytest.raises(DeviceUnavailable) as named:
        select_devices("0", inv)
    assert str(named.value) == (
        f"GPU 0 (NVIDIA H100 80GB HBM3) cannot be used for mining: {problem}; {FIX}"
    )
    # Asking for the CPU on purpose works on a GPU host.
    assert select_devices(" CPU ", inv) == [cpu_device(inv)]
    with pytest.raises(InputError) as missing:
        select_devices("3", inv)
    assert (
        str(missing.value) == "no GPU 3: this machine has GPUs 0-1 (gonka bench devices lists them)"
    )

    one = inventory(FakeNvml([RTX]))
    with pytest.raises(DeviceUnavailable, match=r"^found 1 NVIDIA GPU but torch cannot use CUDA"):
        select_devices(None, one)


def test_every_gpu_by_default(three_gpus: Inventory) -> None:
    chosen = select_devices(None, three_gpus)
    assert [(d.id, d.torch_device, d.gpu_index) for d in chosen] == [
        ("gpu:0", "cuda:0", 0),
        ("gpu:1", "cuda:1", 1),
        ("gpu:2", "cuda:2", 2),
    ]
    assert chosen[1] == MiningDevice(
        id="gpu:1",
        name="NVIDIA H100 80GB HBM3",
        torch_device="cuda:1",
        gpu_index=1,
        uuid="GPU-1",
        pci_bus_id="00000000:2A:00.0",
        memory_total_bytes=85520809984,
    )
    assert chosen[1].to_dict()["pci_bus_id"] == "00000000:2A:00.0"


@pytest.mark.parametrize(
    ("spec", "ids"),
    [
        ("1", ["gpu:1"]),
        ("0,1", ["gpu:0", "gpu:1"]),
        (" 0 , 2 ", ["gpu:0", "gpu:2"]),
        ("2,0", ["gpu:0", "gpu:2"]),  # nvidia-smi order, whatever order they were typed in
        ("cpu", ["cpu"]),
        (" Cpu", ["cpu"]),
        ("gpu:2,gpu:0", ["gpu:0", "gpu:2"]),  # the form `gonka bench run` reports devices in
    ],
)
def test_naming_devices(three_gpus: Inventory, spec: str, ids: list[str]) -> None:
    assert [d.id for d in select_devices(spec, three_gpus)] == ids


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0,x", f"invalid --devices '0,x': {INVALID}"),
        ("", f"invalid --devices '': {INVALID}"),
        (" ", f"invalid --devices ' ': {INVALID}"),
        ("0,,1", f"invalid --devices '0,,1': {INVALID}"),
        ("1,", f"invalid --devices '1,': {INVALID}"),
        ("-1", f"invalid --devices '-1': {INVALID}"),
        ("1.0", f"invalid --devices '1.0': {INVALID}"),
        ("0 1", f"invalid --devices '0 1': {INVALID}"),
        ("gpu0", f"invalid --devices 'gpu0': {INVALID}"),
        ("cpu,x", f"invalid --devices 'cpu,x': {INVALID}"),
        ("0,0", "invalid --devices '0,0': GPU 0 is listed twice; list each GPU once"),
        (" 1 , 2, 1", "invalid --devices ' 1 , 2, 1': GPU 1 is listed twice; list each GPU once"),
        ("cpu,cpu", "invalid --devices 'cpu,cpu': cpu is listed twice; list it once"),
        ("cpu,0", "invalid --devices 'cpu,0': choose cpu or GPU indices like 0,1, not both"),
        ("1,CPU", "invalid --devices '1,CPU': choose cpu or GPU indices like 0,1, not both"),
        ("all", "invalid --devices 'all': choose cpu or GPU indices like 0,1, not both"),
        ("3", "no GPU 3: this machine has GPUs 0-2 (gonka bench devices lists them)"),
        ("0,7", "no GPU 7: this machine has GPUs 0-2 (gonka bench devices lists them)"),
    ],
)
def test_bad_device_lists(three_gpus: Inventory, spec: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        select_devices(spec, three_gpus)
    assert type(err.value) is InputError
    assert str(err.value) == message


def test_which_gpus_exist_is_named(three_gpus: Inventory) -> None:
    first, _, third = three_gpus.gpus
    one = dataclasses.replace(three_gpus, gpus=(first,))
    with pytest.raises(InputError, match=r"^no GPU 1: this machine has GPU 0 \(gonka bench"):
        select_devices("1", one)
    gap = dataclasses.replace(three_gpus, gpus=(first, third))
    with pytest.raises(InputError, match=r"^no GPU 1: this machine has GPUs 0, 2 \(gonka bench"):
        select_devices("1", gap)


def test_a_gpu_hidden_from_torch(three_gpus: Inventory) -> None:
    gpus = list(three_gpus.gpus)
    gpus[1] = dataclasses.replace(gpus[1], torch_device=None)
    inv = dataclasses.replace(three_gpus, gpus=tuple(gpus))
    expected = (
        "GPU 1 (NVIDIA H100 80GB HBM3) cannot be used for mining: torch does not see it "
        "(hidden by CUDA_VISIBLE_DEVICES?); unset CUDA_VISIBLE_DEVICES or choose another GPU "
        "with --devices"
    )
    for spec in (None, "1", "0,1"):
        with pytest.raises(DeviceUnavailable) as err:
            select_devices(spec, inv)
        assert str(err.value) == expected
    assert [d.id for d in select_devices("0,2", inv)] == ["gpu:0", "gpu:2"]


# --- telemetry --------------------------------------------------------------------------------


class TelemetryNvml(FakeNvml):
    """The stand-in NVML plus utilisation, counting start-ups and shut-downs."""

    def __init__(self, gpus: list[dict[str, Any]], init_error: str | None = None) -> None:
        super().__init__(gpus, init_error)
        self.inits = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        self.inits += 1
        super().nvmlInit()

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1
        super().nvmlShutdown()

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> Any:
        return type("Utilization", (), {"gpu": self._get(h, "util"), "memory": 10})()


def gpu(index: int) -> MiningDevice:
    return MiningDevice(
        id=f"gpu:{index}", name="GPU", torch_device=f"cuda:{index}", gpu_index=index
    )


def test_gpu_readings_from_nvml(caplog: pytest.LogCaptureFixture) -> None:
    nvml = TelemetryNvml([{**H100, "util": 87}, RTX])
    telemetry = Telemetry(nvml)
    assert nvml.inits == 0  # NVML starts on the first GPU reading, not before
    reading = telemetry.read(gpu(0))
    assert reading == DeviceReading(temperature_c=34.0, power_w=71.234, utilization_pct=87.0)
    assert reading.to_dict() == {"temperature_c": 34.0, "power_w": 71.234, "utilization_pct": 87.0}
    # The consumer card reports none of them; a GPU that does not exist is all None too.
    with caplog.at_level(logging.DEBUG, logger="gonka_cli.gpu"):
        assert telemetry.read(gpu(1)) == DeviceReading()
        assert telemetry.read(gpu(1)) == DeviceReading()
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("GPU 1:")]
    assert len(failures) == 3, failures  # once per metric, not once per reading
    assert telemetry.read(gpu(5)) == DeviceReading()
    assert nvml.inits == 1
    telemetry.close()
    telemetry.close()
    assert nvml.shutdowns == 1
    assert telemetry.read(gpu(0)) == DeviceReading()
    assert nvml.inits == 1


def test_gpu_readings_without_a_driver() -> None:
    nvml = TelemetryNvml([H100], init_error="NVML Shared Library Not Found")
    with Telemetry(nvml) as telemetry:
        assert telemetry.read(gpu(0)) == DeviceReading()
        assert telemetry.read(gpu(0)) == DeviceReading()
    assert nvml.inits == 1  # tried once, not at every reading
    assert nvml.shutdowns == 0  # never started, so never shut down
    assert Telemetry(None).read(gpu(0)) == DeviceReading()


def test_odd_nvml_answers_are_unknown() -> None:
    odd = {**H100, "temperature": float("nan"), "power": True, "util": "87"}
    assert Telemetry(TelemetryNvml([odd])).read(gpu(0)) == DeviceReading()


def test_a_real_cpu_reading(cpu_only: Inventory) -> None:
    with Telemetry(None) as telemetry:
        for _ in range(2):
            reading = telemetry.read(cpu_device(cpu_only))
            assert reading.power_w is None
            assert isinstance(reading.utilization_pct, float)
            assert 0.0 <= reading.utilization_pct <= 100.0
            assert reading.temperature_c is None or reading.temperature_c > 0


Sensor = namedtuple("Sensor", "label current high critical")  # psutil's shape


def test_the_hottest_cpu_sensor() -> None:
    sensors = {
        "acpitz": [Sensor("", 90.0, None, None)],  # the board, not the CPU
        "nvme": [Sensor("Composite", 70.0, 80.0, 85.0)],
        "coretemp": [
            Sensor("Package id 0", 55.0, 80.0, 100.0),
            Sensor("Core 0", 61.0, 80.0, 100.0),
            Sensor("Core 1", None, 80.0, 100.0),
        ],
    }
    assert _cpu_temperature_c(sensors) == 61.0
    assert _cpu_temperature_c({"k10temp": [Sensor("Tctl", 48.5, None, None)]}) == 48.5
    assert _cpu_temperature_c({"cpu_thermal": [Sensor("", 52.1, None, None)]}) == 52.1
    assert _cpu_temperature_c({"acpitz": [Sensor("", 40.0, None, None)]}) is None
    assert _cpu_temperature_c({}) is None


# --- the thermal pause ------------------------------------------------------------------------


def test_thermal_pause_with_hysteresis() -> None:
    gate = ThermalGate(80)
    assert not gate.paused and gate.resume_at_c == 75.0
    temperatures = [70, 80, 80.5, 79, 76, None, 75.1, 75, 74, 80, 81, None, 60]
    paused = [gate.update(t) for t in temperatures]
    assert paused == [
        False,  # cool
        False,  # at the limit is still allowed
        True,  # above it: pause
        True,  # below the limit but not cooled by the margin
        True,
        True,  # unknown keeps the pause
        True,
        False,  # cooled to limit - margin: resume
        False,
        False,  # back at the limit, still mining
        True,
        True,
        False,
    ]
    assert gate.paused is False


def test_an_unknown_temperature_never_pauses() -> None:
    gate = ThermalGate(50, resume_margin_c=0)
    assert [gate.update(t) for t in [None, float("nan"), 50, 50.1, 50, None]] == [
        False,
        False,
        False,
        True,
        False,  # no margin: back at the limit resumes
        False,
    ]


@pytest.mark.parametrize("limit", [30, 110, 85.5])
def test_temp_limits_in_range(limit: float) -> None:
    assert ThermalGate(limit).limit_c == limit


@pytest.mark.parametrize("limit", [29.9, 110.5, -5, math.nan])
def test_temp_limits_out_of_range(limit: float) -> None:
    with pytest.raises(InputError) as err:
        ThermalGate(limit)
    assert str(err.value) == f"--temp-limit must be between 30 and 110 °C (got {limit:g})"


def test_a_negative_resume_margin() -> None:
    with pytest.raises(InputError, match=r"resume margin must be at least 0 °C"):
        ThermalGate(80, resume_margin_c=-1)
