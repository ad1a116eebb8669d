"""What this machine has: GPUs (`gonka_cli.gpu`), the CPU and RAM (psutil), and the devices
a benchmark run measures.

GPUs are listed in `nvidia-smi` order (PCI bus id) under their `nvidia-smi` index; every
metric a device cannot report is None (shown as N/A). Without an NVIDIA driver the inventory
says so in one note and lists the CPU. Discovery, `--devices` parsing and NVML live in
`gonka_cli.gpu`, shared with the miner; this module adds the CPU, RAM, the runtimes, the table
of known cards, and the bench's choice of devices.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gonka_cli.bench.peaks import CardPeaks, lookup_peaks, pcie_peak_gbps
from gonka_cli.gpu import (
    IMPORT,
    GpuInfo,
    NvidiaDriver,
    merge_gpus,
    parse_devices,
    pick_gpus,
    read_nvml,
    torch_gpus,
    unusable_gpu,
)
from gonka_cli.validate import is_number

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


def _safe(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)`, or None when it raises: a fact psutil or a runtime cannot give is N/A."""
    try:
        return fn(*args)
    except Exception as exc:
        log.debug("%s%r failed: %s", getattr(fn, "__name__", fn), args, exc)
        return None


def _int(value: Any) -> int | None:
    return int(value) if is_number(value) else None


def _with_known_cards(gpus: Sequence[GpuInfo]) -> list[GpuInfo]:
    """Each GPU with the key of its entry in the table of known cards (`peaks.KNOWN_CARDS`)."""
    return [
        dataclasses.replace(g, known_card=_card_key(lookup_peaks(g.name, g.memory_total_bytes)))
        for g in gpus
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


def inventory(nvml: Any = IMPORT) -> Inventory:
    """The machine's devices. Never raises for a metric it cannot read.

    `nvml` is the NVML binding (`gpu.Nvml`): "import" loads pynvml, tests pass a stand-in,
    None means "not installed".
    """
    import psutil  # type: ignore[import-untyped]
    import torch

    driver, nvml_gpus = read_nvml(nvml)
    torch_found, torch_note = torch_gpus(torch)
    gpus = _with_known_cards(merge_gpus(nvml_gpus, torch_found))
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
        torch_cuda_available=bool(torch_found),
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
        raise unusable_gpu(gpu, inv.torch_cuda_problem, purpose="be benchmarked")
    return BenchDevice(
        id=f"gpu:{gpu.index}",
        kind="gpu",
        name=gpu.name,
        torch_device=gpu.torch_device,
        memory_total_bytes=gpu.memory_total_bytes,
        peaks=lookup_peaks(gpu.name, gpu.memory_total_bytes),
        pcie_peak_gbps=pcie_peak_gbps(gpu.pcie_max_generation, gpu.pcie_max_width),
    )


def select_devices(inv: Inventory, wanted: str | Sequence[str] | None) -> list[BenchDevice]:
    """The devices `--devices` names (`gpu.parse_devices`): "cpu", GPU indices, or "all".

    Nothing named: every GPU, or the CPU when there is none. The CPU comes first, then the
    GPUs in nvidia-smi order. Raises InputError for a malformed list or a GPU that is not
    here, and DeviceUnavailable for a GPU that torch cannot use.
    """
    spec = parse_devices(wanted)
    if spec is None:
        if not inv.gpus:
            return [_cpu_device(inv)]
        return [_gpu_device(inv, g) for g in inv.gpus]
    chosen = [_cpu_device(inv)] if spec.cpu or spec.every else []
    gpus = list(inv.gpus) if spec.every else pick_gpus(inv.gpus, spec.gpu_indices)
    return chosen + [_gpu_device(inv, g) for g in gpus]
