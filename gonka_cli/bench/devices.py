"""What this machine has: GPUs (NVML, then torch), the CPU and RAM (psutil).

GPUs are listed in `nvidia-smi` order (PCI bus id) under their `nvidia-smi` index. Every
metric a device cannot report is None (shown as N/A), never an exception: NVML answers "not
supported" for many metrics on consumer cards, in containers and under MIG. Without an NVIDIA
driver the inventory says so in one note and lists the CPU.

torch sees GPUs in its own order (CUDA_DEVICE_ORDER, CUDA_VISIBLE_DEVICES); a GPU is matched to
its torch device by UUID, then by PCI bus id, so `--devices 1` is the GPU `nvidia-smi` calls 1.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gonka_cli.bench.peaks import CardPeaks, lookup_peaks, pcie_peak_gbps
from gonka_cli.errors import DeviceUnavailable, InputError

log = logging.getLogger(__name__)

__all__ = [
    "DEVICES_SCHEMA",
    "BenchDevice",
    "CpuInfo",
    "GpuInfo",
    "Inventory",
    "NvidiaDriver",
    "inventory",
    "select_devices",
]

DEVICES_SCHEMA = "gonka.bench.devices/1"


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU. Every metric is None where the device or driver cannot report it."""

    index: int
    name: str
    uuid: str | None = None
    pci_bus_id: str | None = None
    memory_total_bytes: int | None = None
    memory_free_bytes: int | None = None
    memory_used_bytes: int | None = None
    compute_capability: str | None = None
    multiprocessors: int | None = None
    temperature_c: int | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    clock_sm_mhz: int | None = None
    clock_sm_max_mhz: int | None = None
    clock_memory_mhz: int | None = None
    clock_memory_max_mhz: int | None = None
    pcie_generation: int | None = None
    pcie_width: int | None = None
    pcie_max_generation: int | None = None
    pcie_max_width: int | None = None
    #: The torch device that is this GPU ("cuda:N"), None when torch cannot use it.
    torch_device: str | None = None
    #: The key of its entry in the table of known cards (`peaks.KNOWN_CARDS`), or None.
    known_card: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CpuInfo:
    model: str | None
    architecture: str | None
    cores_physical: int | None
    cores_logical: int | None
    frequency_mhz: float | None
    frequency_max_mhz: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NvidiaDriver:
    """The NVIDIA driver as NVML reports it; `note` says why something is missing."""

    available: bool
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Inventory:
    """Everything `gonka bench devices` reports."""

    nvidia: NvidiaDriver
    gpus: tuple[GpuInfo, ...]
    cpu: CpuInfo
    memory_total_bytes: int | None
    memory_available_bytes: int | None
    torch_version: str | None
    torch_cuda_version: str | None
    torch_cuda_available: bool
    torch_threads: int | None
    onnxruntime_version: str | None
    onnxruntime_providers: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    #: Why torch cannot use CUDA at all (a CPU-only build, no driver), or None.
    torch_cuda_problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": DEVICES_SCHEMA,
            "nvidia": self.nvidia.to_dict(),
            "gpus": [g.to_dict() for g in self.gpus],
            "cpu": self.cpu.to_dict(),
            "memory": {
                "total_bytes": self.memory_total_bytes,
                "available_bytes": self.memory_available_bytes,
            },
            "torch": {
                "version": self.torch_version,
                "cuda_version": self.torch_cuda_version,
                "cuda_available": self.torch_cuda_available,
                "threads": self.torch_threads,
            },
            "onnxruntime": {
                "version": self.onnxruntime_version,
                "providers": list(self.onnxruntime_providers),
            },
            "notes": list(self.notes),
        }


# --- NVML -----------------------------------------------------------------------------------


def _safe(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, or None when it raises (NVML's "not supported", a missing function...)."""
    try:
        return fn(*args)
    except Exception as exc:  # every NVML failure is a metric shown as N/A
        log.debug("%s%r failed: %s", getattr(fn, "__name__", fn), args, exc)
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def normalize_bus_id(bus_id: str | None) -> str | None:
    """`0000:17:00.0` or `00000000:17:00.0` -> `00000000:17:00.0` (nvidia-smi's form)."""
    if not bus_id:
        return None
    match = re.fullmatch(
        r"\s*([0-9a-fA-F]{1,8}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])\s*", bus_id
    )
    if not match:
        return bus_id.strip().upper()
    domain, bus, device, function = match.groups()
    return f"{int(domain, 16):08X}:{int(bus, 16):02X}:{int(device, 16):02X}.{function}"


def _nvml_call(nvml: Any, name: str, *args: Any) -> Any:
    fn = getattr(nvml, name, None)
    return None if fn is None else _safe(fn, *args)


def _nvml_gpu(nvml: Any, index: int) -> GpuInfo | None:
    handle = _nvml_call(nvml, "nvmlDeviceGetHandleByIndex", index)
    if handle is None:
        return None

    def get(name: str, *args: Any) -> Any:
        return _nvml_call(nvml, name, handle, *args)

    def const(name: str) -> Any:
        return getattr(nvml, name, None)

    memory = get("nvmlDeviceGetMemoryInfo")
    pci = get("nvmlDeviceGetPciInfo")
    cc = get("nvmlDeviceGetCudaComputeCapability")
    power = get("nvmlDeviceGetPowerUsage")  # milliwatts
    limit = get("nvmlDeviceGetEnforcedPowerLimit")
    if limit is None:
        limit = get("nvmlDeviceGetPowerManagementLimit")
    sm, mem = const("NVML_CLOCK_SM"), const("NVML_CLOCK_MEM")
    bus_id = _text(getattr(pci, "busId", None)) if pci is not None else None
    return GpuInfo(
        index=index,
        name=_text(get("nvmlDeviceGetName")) or f"GPU {index}",
        uuid=_text(get("nvmlDeviceGetUUID")),
        pci_bus_id=normalize_bus_id(bus_id),
        memory_total_bytes=_int(getattr(memory, "total", None)),
        memory_free_bytes=_int(getattr(memory, "free", None)),
        memory_used_bytes=_int(getattr(memory, "used", None)),
        compute_capability=f"{cc[0]}.{cc[1]}" if isinstance(cc, tuple) and len(cc) == 2 else None,
        temperature_c=_int(get("nvmlDeviceGetTemperature", const("NVML_TEMPERATURE_GPU"))),
        power_draw_w=round(power / 1000, 1) if isinstance(power, (int, float)) else None,
        power_limit_w=round(limit / 1000, 1) if isinstance(limit, (int, float)) else None,
        clock_sm_mhz=_int(get("nvmlDeviceGetClockInfo", sm)) if sm is not None else None,
        clock_sm_max_mhz=_int(get("nvmlDeviceGetMaxClockInfo", sm)) if sm is not None else None,
        clock_memory_mhz=_int(get("nvmlDeviceGetClockInfo", mem)) if mem is not None else None,
        clock_memory_max_mhz=(
            _int(get("nvmlDeviceGetMaxClockInfo", mem)) if mem is not None else None
        ),
        pcie_generation=_int(get("nvmlDeviceGetCurrPcieLinkGeneration")),
        pcie_width=_int(get("nvmlDeviceGetCurrPcieLinkWidth")),
        pcie_max_generation=_int(get("nvmlDeviceGetMaxPcieLinkGeneration")),
        pcie_max_width=_int(get("nvmlDeviceGetMaxPcieLinkWidth")),
    )


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _cuda_version(value: Any) -> str | None:
    """NVML's 12040 -> "12.4"."""
    number = _int(value)
    if number is None or number <= 0:
        return None
    return f"{number // 1000}.{(number % 1000) // 10}"


def _import_nvml() -> Any:
    try:
        import pynvml  # type: ignore[import-untyped]
    except ImportError:
        return None
    return pynvml


def _read_nvml(nvml: Any) -> tuple[NvidiaDriver, list[GpuInfo]]:
    if nvml is None:
        return (
            NvidiaDriver(
                available=False,
                note="nvidia-ml-py is not installed (pip install nvidia-ml-py); "
                "GPU facts come from torch only",
            ),
            [],
        )
    try:
        nvml.nvmlInit()
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return (
            NvidiaDriver(
                available=False, note=f"no NVIDIA driver found (NVML: {reason}); listing the CPU"
            ),
            [],
        )
    try:
        driver = NvidiaDriver(
            available=True,
            driver_version=_text(_nvml_call(nvml, "nvmlSystemGetDriverVersion")),
            cuda_driver_version=_cuda_version(_nvml_call(nvml, "nvmlSystemGetCudaDriverVersion")),
            nvml_version=_text(_nvml_call(nvml, "nvmlSystemGetNVMLVersion")),
        )
        count = _int(_nvml_call(nvml, "nvmlDeviceGetCount")) or 0
        gpus = [g for g in (_nvml_gpu(nvml, i) for i in range(count)) if g is not None]
    finally:
        _nvml_call(nvml, "nvmlShutdown")
    return driver, gpus


# --- torch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TorchGpu:
    torch_index: int
    name: str
    uuid: str | None
    pci_bus_id: str | None
    memory_total_bytes: int | None
    compute_capability: str | None
    multiprocessors: int | None


def _torch_gpus(torch: Any) -> tuple[list[_TorchGpu], str | None]:
    """The GPUs torch can use, and why none when there are none."""
    if torch.version.cuda is None:
        return [], f"this torch ({torch.__version__}) is a CPU-only build"
    with warnings.catch_warnings():
        # torch warns (instead of raising) when the driver is missing or too old.
        warnings.simplefilter("ignore")
        try:
            available = bool(torch.cuda.is_available())
            count = int(torch.cuda.device_count()) if available else 0
        except Exception as exc:
            return [], f"torch cannot initialise CUDA: {' '.join(str(exc).split())}"
    if not available:
        return [], "torch cannot use CUDA here (no driver, or one too old for its CUDA build)"
    found = []
    for i in range(count):
        props = _safe(torch.cuda.get_device_properties, i)
        if props is None:
            continue
        uuid = getattr(props, "uuid", None)
        domain = getattr(props, "pci_domain_id", None)
        bus = getattr(props, "pci_bus_id", None)
        dev = getattr(props, "pci_device_id", None)
        bus_id = (
            f"{domain:08X}:{bus:02X}:{dev:02X}.0"
            if all(isinstance(x, int) for x in (domain, bus, dev))
            else None
        )
        found.append(
            _TorchGpu(
                torch_index=i,
                name=str(props.name),
                uuid=f"GPU-{uuid}"
                if uuid is not None and not str(uuid).startswith("GPU-")
                else _text(uuid),
                pci_bus_id=bus_id,
                memory_total_bytes=_int(getattr(props, "total_memory", None)),
                compute_capability=f"{props.major}.{props.minor}",
                multiprocessors=_int(getattr(props, "multi_processor_count", None)),
            )
        )
    return found, None


def _merge(nvml_gpus: list[GpuInfo], torch_gpus: list[_TorchGpu]) -> list[GpuInfo]:
    """NVML's GPUs with what torch adds; torch's alone (in bus order) when NVML has none."""
    merged: list[GpuInfo] = []
    unmatched = list(torch_gpus)
    for gpu in nvml_gpus:
        match = next((t for t in unmatched if t.uuid and t.uuid == gpu.uuid), None)
        if match is None and gpu.pci_bus_id:
            match = next((t for t in unmatched if t.pci_bus_id == gpu.pci_bus_id), None)
        if match is not None:
            unmatched.remove(match)
            gpu = dataclasses.replace(
                gpu,
                torch_device=f"cuda:{match.torch_index}",
                compute_capability=gpu.compute_capability or match.compute_capability,
                multiprocessors=match.multiprocessors,
                memory_total_bytes=gpu.memory_total_bytes or match.memory_total_bytes,
            )
        merged.append(gpu)
    if not nvml_gpus:
        for t in sorted(unmatched, key=lambda g: (g.pci_bus_id or "", g.torch_index)):
            merged.append(
                GpuInfo(
                    index=len(merged),
                    name=t.name,
                    uuid=t.uuid,
                    pci_bus_id=t.pci_bus_id,
                    memory_total_bytes=t.memory_total_bytes,
                    compute_capability=t.compute_capability,
                    multiprocessors=t.multiprocessors,
                    torch_device=f"cuda:{t.torch_index}",
                )
            )
    merged.sort(key=lambda g: (g.pci_bus_id or "~", g.index))
    return [
        dataclasses.replace(g, known_card=_card_key(lookup_peaks(g.name, g.memory_total_bytes)))
        for g in merged
    ]


def _card_key(card: CardPeaks | None) -> str | None:
    return None if card is None else card.key


# --- CPU and RAM ------------------------------------------------------------------------------


def _cpu_model() -> str | None:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                        return value.strip()
        except OSError:
            pass
    elif sys.platform == "darwin":
        import subprocess

        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            return out
    return platform.processor() or None


def _cpu_info(psutil: Any) -> CpuInfo:
    freq = _safe(psutil.cpu_freq)
    current = getattr(freq, "current", None)
    maximum = getattr(freq, "max", None)
    return CpuInfo(
        model=_cpu_model(),
        architecture=platform.machine() or None,
        cores_physical=_int(_safe(psutil.cpu_count, False)),
        cores_logical=_int(_safe(psutil.cpu_count, True)) or os.cpu_count(),
        frequency_mhz=round(current, 1) if isinstance(current, (int, float)) and current else None,
        frequency_max_mhz=(
            round(maximum, 1) if isinstance(maximum, (int, float)) and maximum else None
        ),
    )


def _onnxruntime() -> tuple[str | None, tuple[str, ...]]:
    try:
        import onnxruntime as ort
    except ImportError:
        return None, ()
    providers = _safe(ort.get_available_providers) or []
    return str(ort.__version__), tuple(str(p) for p in providers)


def inventory(nvml: Any = "import") -> Inventory:
    """The machine's devices. Never raises for a metric it cannot read.

    `nvml` is the NVML binding (`pynvml`); tests pass a stand-in, None means "not installed".
    """
    import psutil  # type: ignore[import-untyped]
    import torch

    binding = _import_nvml() if nvml == "import" else nvml
    driver, nvml_gpus = _read_nvml(binding)
    torch_gpus, torch_note = _torch_gpus(torch)
    gpus = _merge(nvml_gpus, torch_gpus)
    notes: list[str] = []
    if driver.note:
        notes.append(driver.note)
    if gpus and torch_note:
        notes.append(f"{torch_note}; the GPUs cannot be benchmarked")
    elif gpus and any(g.torch_device is None for g in gpus):
        hidden = ", ".join(str(g.index) for g in gpus if g.torch_device is None)
        notes.append(f"GPU {hidden} not visible to torch (CUDA_VISIBLE_DEVICES?)")
    memory = _safe(psutil.virtual_memory)
    ort_version, providers = _onnxruntime()
    return Inventory(
        nvidia=driver,
        gpus=tuple(gpus),
        cpu=_cpu_info(psutil),
        memory_total_bytes=_int(getattr(memory, "total", None)),
        memory_available_bytes=_int(getattr(memory, "available", None)),
        torch_version=str(torch.__version__),
        torch_cuda_version=torch.version.cuda,
        torch_cuda_available=bool(torch_gpus),
        torch_threads=_int(_safe(torch.get_num_threads)),
        onnxruntime_version=ort_version,
        onnxruntime_providers=providers,
        notes=tuple(notes),
        torch_cuda_problem=torch_note,
    )


# --- choosing devices for a run --------------------------------------------------------------


@dataclass(frozen=True)
class BenchDevice:
    """A device a run measures: `id` is "cpu" or "gpu:N" (N: the nvidia-smi index)."""

    id: str
    kind: str
    name: str
    torch_device: str
    memory_total_bytes: int | None
    peaks: CardPeaks | None = None
    pcie_peak_gbps: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "torch_device": self.torch_device,
            "memory_total_bytes": self.memory_total_bytes,
            "known_card": None if self.peaks is None else self.peaks.to_dict(),
            "pcie_peak_gbps": self.pcie_peak_gbps,
        }


def _cpu_device(inv: Inventory) -> BenchDevice:
    return BenchDevice(
        id="cpu",
        kind="cpu",
        name=inv.cpu.model or "CPU",
        torch_device="cpu",
        memory_total_bytes=inv.memory_total_bytes,
    )


def _gpu_device(inv: Inventory, gpu: GpuInfo) -> BenchDevice:
    if gpu.torch_device is None:
        problem = inv.torch_cuda_problem
        if problem is None:
            why = "torch does not see it (hidden by CUDA_VISIBLE_DEVICES?); name another device"
        elif "CPU-only" in problem:
            why = f"{problem}; install a CUDA build of torch, or pass --devices cpu"
        else:
            why = f"{problem}; check the driver with nvidia-smi, or pass --devices cpu"
        raise DeviceUnavailable(f"GPU {gpu.index} ({gpu.name}) cannot be benchmarked: {why}")
    return BenchDevice(
        id=f"gpu:{gpu.index}",
        kind="gpu",
        name=gpu.name,
        torch_device=gpu.torch_device,
        memory_total_bytes=gpu.memory_total_bytes,
        peaks=lookup_peaks(gpu.name, gpu.memory_total_bytes),
        pcie_peak_gbps=pcie_peak_gbps(gpu.pcie_max_generation, gpu.pcie_max_width),
    )


def valid_devices(inv: Inventory) -> str:
    """`cpu, 0 (NVIDIA H100 80GB HBM3), 1 (...)`: what `--devices` accepts here."""
    return ", ".join(["cpu", *(f"{g.index} ({g.name})" for g in inv.gpus)])


def select_devices(inv: Inventory, wanted: Sequence[str] | None) -> list[BenchDevice]:
    """The devices `--devices` names: "cpu", a GPU index ("0" or "gpu:0"), or "all".

    Nothing named: every GPU, or the CPU when there is none. Raises InputError for a name
    that is not a device here (listing the valid ones) and DeviceUnavailable for a GPU that
    torch cannot use.
    """
    items = [w.strip().lower() for item in (wanted or []) for w in item.split(",") if w.strip()]
    if not items:
        if not inv.gpus:
            return [_cpu_device(inv)]
        return [_gpu_device(inv, g) for g in inv.gpus]
    chosen: list[BenchDevice] = []
    for item in items:
        if item == "all":
            picked = [_cpu_device(inv)] + [_gpu_device(inv, g) for g in inv.gpus]
        elif item == "cpu":
            picked = [_cpu_device(inv)]
        else:
            match = re.fullmatch(r"(?:gpu:?)?(\d{1,4})", item)
            gpu = None
            if match:
                gpu = next((g for g in inv.gpus if g.index == int(match.group(1))), None)
            if gpu is None:
                raise InputError(
                    f"unknown device {item!r}; valid devices here: {valid_devices(inv)} "
                    "(see gonka bench devices)"
                )
            picked = [_gpu_device(inv, gpu)]
        for device in picked:
            if all(device.id != c.id for c in chosen):
                chosen.append(device)
    return chosen
