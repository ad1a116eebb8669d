"""`GET /api/v1/gpu/devices` and `GET /api/v1/gpu/driver`: the GPUs as NVML reports them.

The host's API polls `gpu/devices` during the inference phase and turns it into the node's
hardware line (`"{name} | {total_memory_mb // 1024}GB"` with a count). The shapes are the
real ML node's:

    gpu/devices -> {"devices": [{"index", "name", "total_memory_mb", "free_memory_mb",
                                 "used_memory_mb", "utilization_percent", "temperature_c",
                                 "is_available", "error_message"}], "count"}
    gpu/driver  -> {"driver_version", "cuda_driver_version", "nvml_version"}

Without NVML (no NVIDIA driver, nvidia-ml-py not installed, a CPU-only machine) the device
list is empty (`{"devices": [], "count": 0}`) and `gpu/driver` answers 503 with a `detail`
that says why, as the real ML node does when NVML is not initialised: there is no driver to
describe, and the host's API treats the driver as unknown.

Each call opens one short NVML session (`gonka_cli.gpu.Nvml`) and closes it; the host polls
these endpoints rarely, and a session held open would pin the driver for nothing. Every
reading a GPU cannot give is None, never an error. `nvml=` takes a stand-in binding in tests.
"""

from __future__ import annotations

from typing import Any

from gonka_cli.gpu import IMPORT, Nvml, read_nvml

__all__ = ["gpu_devices", "gpu_driver"]

_MIB = 1024 * 1024


def _mb(value: Any) -> int | None:
    return int(value) // _MIB if isinstance(value, int) and value >= 0 else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def _device(nvml: Nvml, index: int) -> dict[str, Any]:
    handle = nvml.handle(index)
    if handle is None:
        return {
            "index": index,
            "name": f"GPU {index}",
            "total_memory_mb": None,
            "free_memory_mb": None,
            "used_memory_mb": None,
            "utilization_percent": None,
            "temperature_c": None,
            "is_available": False,
            "error_message": f"NVML cannot open GPU {index}",
        }
    memory = nvml.gpu_call(index, "nvmlDeviceGetMemoryInfo")
    total = _mb(getattr(memory, "total", None))
    error = None if total is not None else "NVML cannot read this GPU's memory"
    return {
        "index": index,
        "name": _text(nvml.gpu_call(index, "nvmlDeviceGetName")) or f"GPU {index}",
        "total_memory_mb": total,
        "free_memory_mb": _mb(getattr(memory, "free", None)),
        "used_memory_mb": _mb(getattr(memory, "used", None)),
        "utilization_percent": _whole(nvml.utilization_pct(index)),
        "temperature_c": _whole(nvml.temperature_c(index)),
        "is_available": error is None,
        "error_message": error,
    }


def gpu_devices(nvml: Any = IMPORT) -> dict[str, Any]:
    """Every GPU NVML lists, in NVML's (nvidia-smi's) order; none without NVML."""
    with Nvml(nvml) as session:
        if not session.start():
            return {"devices": [], "count": 0}
        count = session.call("nvmlDeviceGetCount")
        total = count if isinstance(count, int) and count > 0 else 0
        devices = [_device(session, i) for i in range(total)]
    return {"devices": devices, "count": len(devices)}


def gpu_driver(nvml: Any = IMPORT) -> dict[str, Any]:
    """The NVIDIA driver's versions; `MlNodeError(503)` when NVML is not usable."""
    from gonka_cli.mlnode.service import MlNodeError

    driver, _ = read_nvml(nvml)
    if not driver.available or driver.driver_version is None:
        # The note reads "no NVIDIA driver found (NVML: ...); listing the CPU" or names the
        # missing binding: its first clause is what a host needs to know.
        why = (driver.note or "the driver does not report its version").split(";")[0]
        raise MlNodeError(503, f"NVML is not available: {why}")
    return {
        "driver_version": driver.driver_version,
        "cuda_driver_version": driver.cuda_driver_version,
        "nvml_version": driver.nvml_version,
    }
