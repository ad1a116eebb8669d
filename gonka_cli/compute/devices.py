"""Torch devices, dtypes and free memory: the lowest layer of the compute engine.

`rng`, `models` and `checkpoints` all need to turn a device name into a usable
`torch.device` and a dtype name into a `torch.dtype`; this module is where that lives, so that
no lower module imports a higher one. torch loads when a function here is first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gonka_cli.errors import DeviceUnavailable, InvalidComputeInput

if TYPE_CHECKING:
    import torch

__all__ = ["AUTO", "free_memory_bytes", "parse_dtype", "resolve_device", "resolve_dtype"]

#: The dtype name that means "the checkpoint's own dtype" (the default of a real checkpoint).
AUTO = "auto"

_DTYPE_NAMES = {
    "fp32": "float32",
    "float32": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
}


def resolve_device(device: str | torch.device) -> torch.device:
    """A usable torch device for `device` ("cpu", "cuda", "cuda:N").

    Raises DeviceUnavailable when CUDA is asked for and is not usable (never falls back to
    the CPU), InvalidComputeInput when the text is not a device name.
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidComputeInput(
            f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = torch.version.cuda or "none"
            raise DeviceUnavailable(
                f"{device} was asked for but CUDA is not usable here (torch {torch.__version__}, "
                f"CUDA build: {build}); check the driver with nvidia-smi, or use device 'cpu'"
            )
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= count:
            raise DeviceUnavailable(
                f"cuda:{index} was asked for but {count} CUDA device(s) are visible "
                f"(cuda:0 to cuda:{count - 1}); check CUDA_VISIBLE_DEVICES"
            )
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceUnavailable(f"{device} was asked for but Apple MPS is not usable here")
        return dev
    raise DeviceUnavailable(f"device type {dev.type!r} is not supported; use 'cpu' or 'cuda'")


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """fp32 / bf16 / fp16 (or their long names, or the torch dtype) as a torch dtype."""
    import torch

    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.bfloat16, torch.float16):
            return dtype
    elif isinstance(dtype, str) and dtype.lower() in _DTYPE_NAMES:
        parsed: torch.dtype = getattr(torch, _DTYPE_NAMES[dtype.lower()])
        return parsed
    raise InvalidComputeInput(f"unsupported dtype {dtype!r}; use auto, fp32, bf16 or fp16")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The compute dtype of a built-in model: float32 on the CPU and bfloat16 on GPUs by
    default (`None` or "auto": a built-in model has no checkpoint dtype of its own).

    bf16 and fp16 are accepted on every device (bf16 on the CPU is used for calibration).
    """
    import torch

    if dtype is None or (isinstance(dtype, str) and dtype.lower() == AUTO):
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    return parse_dtype(dtype)


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory a model may still take on `device` (None where it cannot be measured)."""
    import torch

    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().available)
    return None
