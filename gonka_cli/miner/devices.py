"""The devices `gonka mine` runs on, their live telemetry, and the thermal pause.

- `select_devices`: what `--devices 0,1|cpu` names (`gonka_cli.gpu.parse_devices`), checked
  against the machine's inventory (`gonka_cli.bench.devices.inventory`). GPUs go by their
  `nvidia-smi` index; the CPU is never mixed with GPUs. When NVIDIA
  GPUs are present but torch cannot drive them, mining stops with an error instead of falling
  back to the CPU: a CPU miner on a GPU host earns next to nothing, so that must be a choice.
- `Telemetry`: temperature, power and utilisation per device, for the live view and for
  `--temp-limit`. A reading never raises; what a device cannot report is None.
- `ThermalGate`: pause above `--temp-limit`, resume only once the device has cooled by a
  margin, so a device hovering at the limit does not flap between mining and idling.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gonka_cli.bench.devices import Inventory
from gonka_cli.errors import DeviceUnavailable, InputError
from gonka_cli.gpu import IMPORT, GpuInfo, Nvml, parse_devices, pick_gpus, unusable_gpu
from gonka_cli.validate import is_number

log = logging.getLogger(__name__)

__all__ = [
    "TEMP_LIMIT_MAX_C",
    "TEMP_LIMIT_MIN_C",
    "DeviceReading",
    "MiningDevice",
    "Telemetry",
    "ThermalGate",
    "select_devices",
]

#: The range `--temp-limit` accepts: below 30 °C nothing would ever mine, above 110 °C every
#: GPU and CPU has long throttled or shut itself down.
TEMP_LIMIT_MIN_C = 30.0
TEMP_LIMIT_MAX_C = 110.0

_CPU_ON_PURPOSE = "pass --devices cpu to mine on the CPU on purpose"
_FIX_TORCH = f"install a CUDA build of torch or fix the driver, or {_CPU_ON_PURPOSE}"


# --- choosing devices -------------------------------------------------------------------------


@dataclass(frozen=True)
class MiningDevice:
    """A device the miner computes on: `id` is "cpu" or "gpu:N" (N: the nvidia-smi index)."""

    id: str
    name: str
    torch_device: str
    gpu_index: int | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _cpu_device(inv: Inventory) -> MiningDevice:
    return MiningDevice(
        id="cpu",
        name=inv.cpu.model or "CPU",
        torch_device="cpu",
        memory_total_bytes=inv.memory_total_bytes,
    )


def _gpu_device(inv: Inventory, gpu: GpuInfo) -> MiningDevice:
    if gpu.torch_device is None:
        raise unusable_gpu(
            gpu, inv.torch_cuda_problem, purpose="be used for mining", cpu_hint=_CPU_ON_PURPOSE
        )
    return MiningDevice(
        id=f"gpu:{gpu.index}",
        name=gpu.name,
        torch_device=gpu.torch_device,
        gpu_index=gpu.index,
        uuid=gpu.uuid,
        pci_bus_id=gpu.pci_bus_id,
        memory_total_bytes=gpu.memory_total_bytes,
    )


def select_devices(spec: str | None, inv: Inventory) -> list[MiningDevice]:
    """The devices `--devices` names (`gpu.parse_devices`), in nvidia-smi (PCI bus) order.

    `spec` is None (every GPU; the CPU only when the machine has no GPU), "cpu", or
    comma-separated nvidia-smi indices ("0,1"). Raises InputError for a malformed spec, the
    CPU beside GPUs, or a GPU that does not exist, and DeviceUnavailable when a GPU is present
    but torch cannot use it: mining never falls back to the CPU unasked.
    """
    parsed = parse_devices(spec)
    if parsed is None:
        if not inv.gpus:
            return [_cpu_device(inv)]
        if inv.torch_cuda_problem is not None:
            count = len(inv.gpus)
            gpus = "1 NVIDIA GPU" if count == 1 else f"{count} NVIDIA GPUs"
            raise DeviceUnavailable(
                f"found {gpus} but torch cannot use CUDA ({inv.torch_cuda_problem}): {_FIX_TORCH}"
            )
        return [_gpu_device(inv, g) for g in inv.gpus]
    if parsed.every or (parsed.cpu and parsed.gpu_indices):
        # A CPU worker beside GPU workers earns next to nothing and slows the host down.
        raise InputError(
            f"invalid --devices {parsed.text!r}: choose cpu or GPU indices like 0,1, not both"
        )
    if parsed.cpu:
        return [_cpu_device(inv)]
    return [_gpu_device(inv, g) for g in pick_gpus(inv.gpus, parsed.gpu_indices)]


# --- telemetry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceReading:
    """One sample of a device's sensors; None where the device cannot report it."""

    temperature_c: float | None = None
    power_w: float | None = None
    utilization_pct: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _number(value: Any) -> float | None:
    return float(value) if is_number(value) else None


# psutil's names for sensors on the CPU package: Intel, AMD (two drivers), ARM boards.
_CPU_SENSORS = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal", "soc_thermal")


def _cpu_temperature_c(sensors: Mapping[str, Sequence[Any]]) -> float | None:
    """The hottest CPU sensor in `psutil.sensors_temperatures()`'s answer, or None.

    Board, disk and GPU sensors (acpitz, nvme, amdgpu...) are left out: they do not say how
    hot the CPU runs.
    """
    hottest: float | None = None
    for name, entries in sensors.items():
        key = name.lower()
        if key not in _CPU_SENSORS and not key.startswith("cpu"):
            continue
        for entry in entries:
            current = _number(getattr(entry, "current", None))
            if current is not None and current > 0 and (hottest is None or current > hottest):
                hottest = current
    return hottest


class Telemetry:
    """Live sensor readings for mining devices: NVML for GPUs (`gpu.Nvml`), psutil for the CPU.

    `nvml` is the NVML binding, as for `gonka_cli.gpu.Nvml`: "import" loads pynvml, tests
    pass a stand-in, None means "not installed". NVML is initialised on the first GPU reading
    and shut down by `close()`; after `close()` GPU readings are all None. Safe to call from
    the live view's thread and the miner's at once.
    """

    def __init__(self, nvml: Any = IMPORT) -> None:
        self._nvml = Nvml(nvml)
        self._cpu_primed = False

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, device: MiningDevice) -> DeviceReading:
        """The device's temperature, power and utilisation now. Never raises."""
        try:
            if device.gpu_index is None:
                return self._read_cpu()
            return self._read_gpu(device.gpu_index)
        except Exception as exc:  # a sensor must never stop the miner
            log.debug("reading %s failed: %s", device.id, exc)
            return DeviceReading()

    def close(self) -> None:
        """Shut NVML down if this object started it. Safe to call more than once."""
        self._nvml.close()

    # -- GPUs --

    def _read_gpu(self, index: int) -> DeviceReading:
        if self._nvml.handle(index) is None:
            return DeviceReading()
        return DeviceReading(
            temperature_c=self._nvml.temperature_c(index),
            power_w=self._nvml.power_w(index),
            utilization_pct=self._nvml.utilization_pct(index),
        )

    # -- the CPU --

    def _read_cpu(self) -> DeviceReading:
        import psutil  # type: ignore[import-untyped]

        if not self._cpu_primed:
            # cpu_percent(interval=None) measures since its previous call; the first call has
            # nothing to compare with and answers a meaningless 0.0.
            psutil.cpu_percent(interval=None)
            self._cpu_primed = True
        utilization = _number(psutil.cpu_percent(interval=None))
        temperature = None
        sensors_temperatures = getattr(psutil, "sensors_temperatures", None)  # Linux, BSD only
        if sensors_temperatures is not None:
            try:
                temperature = _cpu_temperature_c(sensors_temperatures())
            except Exception as exc:
                log.debug("psutil.sensors_temperatures failed: %s", exc)
        return DeviceReading(temperature_c=temperature, utilization_pct=utilization)


# --- the thermal pause ------------------------------------------------------------------------


class ThermalGate:
    """Pauses one device above `limit_c` and resumes it at or below `limit_c - margin`.

    Feed it every reading with `update()`; an unknown temperature (None) keeps the current
    state, so a sensor that drops out neither pauses nor resumes mining.
    """

    def __init__(self, limit_c: float, resume_margin_c: float = 5.0) -> None:
        if not TEMP_LIMIT_MIN_C <= limit_c <= TEMP_LIMIT_MAX_C:  # False for NaN too
            raise InputError(
                f"--temp-limit must be between {TEMP_LIMIT_MIN_C:g} and "
                f"{TEMP_LIMIT_MAX_C:g} °C (got {limit_c:g})"
            )
        if not 0 <= resume_margin_c < limit_c:
            raise InputError(
                f"the resume margin must be at least 0 °C and below --temp-limit "
                f"(got {resume_margin_c:g})"
            )
        self.limit_c = float(limit_c)
        self.resume_margin_c = float(resume_margin_c)
        self._paused = False

    @property
    def resume_at_c(self) -> float:
        """The temperature at or below which a paused device mines again."""
        return self.limit_c - self.resume_margin_c

    @property
    def paused(self) -> bool:
        """Whether the device should be idle now."""
        return self._paused

    def update(self, temperature_c: float | None) -> bool:
        """Take a reading into account; returns True while the device should stay paused."""
        temperature = _number(temperature_c)
        if temperature is None:
            return self._paused
        if not self._paused and temperature > self.limit_c:
            self._paused = True
            log.info(
                "%.0f °C is above the %.0f °C limit: pausing until %.0f °C",
                temperature,
                self.limit_c,
                self.resume_at_c,
            )
        elif self._paused and temperature <= self.resume_at_c:
            self._paused = False
            log.info("cooled to %.0f °C: resuming", temperature)
        return self._paused
