"""NVIDIA GPUs, one way: discovery (NVML, then torch), `--devices` parsing, NVML readings.

Used by `gonka bench` (`bench.devices`) and `gonka mine` (`miner.devices`), which add their
own policy on top (the bench may measure the CPU beside the GPUs; the miner never mixes them).

- Discovery: GPUs are listed in `nvidia-smi` order (PCI bus id) under their `nvidia-smi`
  index. torch sees GPUs in its own order (CUDA_DEVICE_ORDER, CUDA_VISIBLE_DEVICES); a GPU is
  matched to its torch device by UUID, then by PCI bus id, so `--devices 1` is the GPU
  `nvidia-smi` calls 1. Every metric a device cannot report is None, never an exception:
  NVML answers "not supported" for many metrics on consumer cards, in containers and under MIG.
- `--devices`: one grammar for every command (`parse_devices`), GPUs looked up by index
  (`pick_gpus`), and one error for a GPU that torch cannot drive (`unusable_gpu`).
- `Nvml`: the NVML binding (`pynvml`, from nvidia-ml-py), imported lazily, started on first
  use and shut down by `close()`; every call answers None instead of raising. Tests pass a
  stand-in binding wherever a binding is taken (`nvml=`): "import" loads pynvml, None means
  "not installed".
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gonka_cli.errors import DeviceUnavailable, InputError
from gonka_cli.validate import is_number

log = logging.getLogger(__name__)

__all__ = [
    "IMPORT",
    "DeviceSpec",
    "GpuInfo",
    "NvidiaDriver",
    "Nvml",
    "TorchGpu",
    "describe_indices",
    "import_nvml",
    "merge_gpus",
    "normalize_bus_id",
    "parse_devices",
    "pick_gpus",
    "read_nvml",
    "torch_gpus",
    "unusable_gpu",
]

#: The `nvml=` value that loads the real binding.
IMPORT = "import"


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
    #: The key of its entry in the bench's table of known cards (`bench.peaks`), or None.
    known_card: str | None = None

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


# --- small conversions ------------------------------------------------------------------------


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


def _int(value: Any) -> int | None:
    return int(value) if is_number(value) else None


def _number(value: Any) -> float | None:
    return float(value) if is_number(value) else None


def _cuda_version(value: Any) -> str | None:
    """NVML's 12040 -> "12.4"."""
    number = _int(value)
    if number is None or number <= 0:
        return None
    return f"{number // 1000}.{(number % 1000) // 10}"


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


# --- NVML -------------------------------------------------------------------------------------


def import_nvml() -> Any:
    """The `pynvml` module, or None when nvidia-ml-py is not installed."""
    try:
        import pynvml  # type: ignore[import-untyped]
    except ImportError:
        return None
    return pynvml


class Nvml:
    """One NVML session over `binding` ("import": pynvml; a stand-in in tests; None: absent).

    NVML is initialised on the first call that needs it (tried once, whatever the outcome) and
    shut down by `close()`, only if this object started it; after `close()` every reading is
    None. No method raises: what NVML cannot answer is None, and a failing call is logged once
    per GPU and function at debug level. Safe to use from several threads.
    """

    def __init__(self, binding: Any = IMPORT) -> None:
        self._binding = binding
        self._nvml: Any = None
        self._tried = False
        self._closed = False
        self._handles: dict[int, Any] = {}
        self._failed: set[tuple[int | None, str]] = set()
        self._lock = threading.Lock()
        #: Why NVML is not usable, once a start was tried (None while it is).
        self.problem: str | None = None

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> bool:
        """Whether NVML is usable (initialising it on the first call)."""
        return self._started() is not None

    def close(self) -> None:
        """Shut NVML down if this object started it. Safe to call more than once."""
        with self._lock:
            nvml, self._nvml = self._nvml, None
            self._closed = True
            self._handles.clear()
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception as exc:
                log.debug("nvmlShutdown failed: %s", exc)

    def constant(self, name: str) -> Any:
        """A constant of the binding (`NVML_TEMPERATURE_GPU`...), or None."""
        return getattr(self._nvml, name, None) if self._started() is not None else None

    def call(self, name: str, *args: Any, gpu: int | None = None) -> Any:
        """`nvml.<name>(*args)`, or None when NVML is absent or the call fails."""
        nvml = self._started()
        fn = None if nvml is None else getattr(nvml, name, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            # Readings are polled every second: say once per metric that a GPU lacks it.
            with self._lock:
                first = (gpu, name) not in self._failed
                self._failed.add((gpu, name))
            if first:
                where = "NVML" if gpu is None else f"GPU {gpu}"
                log.debug("%s: %s failed: %s", where, name, exc)
            return None

    def handle(self, index: int) -> Any:
        """The NVML handle of GPU `index` (nvidia-smi's index), or None."""
        with self._lock:
            cached = self._handles.get(index)
        if cached is not None:
            return cached
        handle = self.call("nvmlDeviceGetHandleByIndex", index, gpu=index)
        if handle is not None:
            with self._lock:
                if not self._closed:
                    self._handles[index] = handle
        return handle

    def gpu_call(self, index: int, name: str, *args: Any) -> Any:
        """`nvml.<name>(handle, *args)` for GPU `index`, or None."""
        handle = self.handle(index)
        return None if handle is None else self.call(name, handle, *args, gpu=index)

    # -- live readings --

    def temperature_c(self, index: int) -> float | None:
        sensor = self.constant("NVML_TEMPERATURE_GPU")
        return _number(self.gpu_call(index, "nvmlDeviceGetTemperature", sensor or 0))

    def power_w(self, index: int) -> float | None:
        milliwatts = _number(self.gpu_call(index, "nvmlDeviceGetPowerUsage"))
        return None if milliwatts is None else milliwatts / 1000

    def utilization_pct(self, index: int) -> float | None:
        rates = self.gpu_call(index, "nvmlDeviceGetUtilizationRates")
        return _number(getattr(rates, "gpu", None))

    # -- the session --

    def _started(self) -> Any:
        with self._lock:
            if self._closed:
                return None
            if not self._tried:
                self._tried = True
                binding = import_nvml() if self._binding == IMPORT else self._binding
                if binding is None:
                    self.problem = (
                        "nvidia-ml-py is not installed (pip install nvidia-ml-py); "
                        "GPU facts come from torch only"
                    )
                else:
                    try:
                        binding.nvmlInit()
                    except Exception as exc:
                        reason = " ".join(str(exc).split()) or type(exc).__name__
                        self.problem = f"no NVIDIA driver found (NVML: {reason}); listing the CPU"
                    else:
                        self._nvml = binding
                if self.problem:
                    log.debug("NVML unavailable: %s", self.problem)
            return self._nvml


def _nvml_gpu(nvml: Nvml, index: int) -> GpuInfo | None:
    if nvml.handle(index) is None:
        return None

    def get(name: str, *args: Any) -> Any:
        return nvml.gpu_call(index, name, *args)

    memory = get("nvmlDeviceGetMemoryInfo")
    pci = get("nvmlDeviceGetPciInfo")
    cc = get("nvmlDeviceGetCudaComputeCapability")
    power = get("nvmlDeviceGetPowerUsage")  # milliwatts
    limit = get("nvmlDeviceGetEnforcedPowerLimit")
    if limit is None:
        limit = get("nvmlDeviceGetPowerManagementLimit")
    sm, mem = nvml.constant("NVML_CLOCK_SM"), nvml.constant("NVML_CLOCK_MEM")
    bus_id = _text(getattr(pci, "busId", None)) if pci is not None else None
    temperature = get("nvmlDeviceGetTemperature", nvml.constant("NVML_TEMPERATURE_GPU"))
    return GpuInfo(
        index=index,
        name=_text(get("nvmlDeviceGetName")) or f"GPU {index}",
        uuid=_text(get("nvmlDeviceGetUUID")),
        pci_bus_id=normalize_bus_id(bus_id),
        memory_total_bytes=_int(getattr(memory, "total", None)),
        memory_free_bytes=_int(getattr(memory, "free", None)),
        memory_used_bytes=_int(getattr(memory, "used", None)),
        compute_capability=f"{cc[0]}.{cc[1]}" if isinstance(cc, tuple) and len(cc) == 2 else None,
        temperature_c=_int(temperature),
        power_draw_w=round(power / 1000, 1) if _number(power) is not None else None,
        power_limit_w=round(limit / 1000, 1) if _number(limit) is not None else None,
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


def read_nvml(binding: Any = IMPORT) -> tuple[NvidiaDriver, list[GpuInfo]]:
    """The driver and every GPU NVML lists (in NVML's order), in one short NVML session."""
    with Nvml(binding) as nvml:
        if not nvml.start():
            return NvidiaDriver(available=False, note=nvml.problem), []
        driver = NvidiaDriver(
            available=True,
            driver_version=_text(nvml.call("nvmlSystemGetDriverVersion")),
            cuda_driver_version=_cuda_version(nvml.call("nvmlSystemGetCudaDriverVersion")),
            nvml_version=_text(nvml.call("nvmlSystemGetNVMLVersion")),
        )
        count = _int(nvml.call("nvmlDeviceGetCount")) or 0
        gpus = [g for g in (_nvml_gpu(nvml, i) for i in range(count)) if g is not None]
    return driver, gpus


# --- torch ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchGpu:
    """A GPU as torch sees it (`cuda:<torch_index>`)."""

    torch_index: int
    name: str
    uuid: str | None
    pci_bus_id: str | None
    memory_total_bytes: int | None
    compute_capability: str | None
    multiprocessors: int | None


def torch_gpus(torch: Any) -> tuple[list[TorchGpu], str | None]:
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
            TorchGpu(
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


def merge_gpus(nvml_gpus: Sequence[GpuInfo], torch_found: Sequence[TorchGpu]) -> list[GpuInfo]:
    """NVML's GPUs with what torch adds, in nvidia-smi (bus) order; torch's alone when NVML
    has none (numbered in bus order)."""
    merged: list[GpuInfo] = []
    unmatched = list(torch_found)
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
    return merged


# --- `--devices` ------------------------------------------------------------------------------

_INVALID = "use GPU indices like 0,1 (see gonka bench devices) or cpu"


@dataclass(frozen=True)
class DeviceSpec:
    """What `--devices` names: the CPU, every device ("all"), and GPUs by nvidia-smi index."""

    text: str
    cpu: bool = False
    every: bool = False
    gpu_indices: tuple[int, ...] = ()


def parse_devices(spec: str | Sequence[str] | None) -> DeviceSpec | None:
    """Parse `--devices` (given once, or several times: a sequence). None: nothing named.

    Comma-separated items, case and spaces around them ignored: `cpu`, `all`, a GPU's
    nvidia-smi index (`0`) or `gpu:0`. Raises InputError for anything else, an item listed
    twice, or `all` beside other items.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        text = spec
    else:
        if not spec:
            return None
        text = ",".join(spec)
    items = [item.strip().lower() for item in text.split(",")]
    cpu = every = False
    indices: list[int] = []
    for item in items:
        # Plain digits only: "-1", "+1", "1.0" or "gpu0" are typos, not indices to guess at.
        match = re.fullmatch(r"(?:gpu:)?(\d{1,4})", item)
        if match:
            index = int(match.group(1))
            if index in indices:
                raise _bad(text, f"GPU {index} is listed twice; list each GPU once")
            indices.append(index)
        elif item == "cpu":
            if cpu:
                raise _bad(text, "cpu is listed twice; list it once")
            cpu = True
        elif item == "all":
            every = True
        else:
            raise _bad(text, _INVALID)
    if every and len(items) > 1:
        raise _bad(text, "all names every device already; list it alone")
    return DeviceSpec(text=text, cpu=cpu, every=every, gpu_indices=tuple(indices))


def _bad(text: str, why: str) -> InputError:
    return InputError(f"invalid --devices {text!r}: {why}")


def describe_indices(indices: Sequence[int]) -> str:
    """[0, 1, 2] -> "GPUs 0-2"; [0] -> "GPU 0"; [0, 2] -> "GPUs 0, 2"."""
    ordered = sorted(indices)
    if len(ordered) == 1:
        return f"GPU {ordered[0]}"
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"GPUs {ordered[0]}-{ordered[-1]}"
    return "GPUs " + ", ".join(str(i) for i in ordered)


def pick_gpus(gpus: Sequence[GpuInfo], indices: Sequence[int]) -> list[GpuInfo]:
    """The GPUs with these nvidia-smi indices, in nvidia-smi (bus) order whatever order
    they were named in. Raises InputError naming the GPUs there are for one that is not."""
    by_index = {g.index: g for g in gpus}
    for index in indices:
        if index not in by_index:
            if not gpus:
                raise InputError(f"no GPU {index}: no NVIDIA GPU was found; use --devices cpu")
            raise InputError(
                f"no GPU {index}: this machine has {describe_indices(list(by_index))} "
                "(gonka bench devices lists them)"
            )
    wanted = set(indices)
    return [g for g in gpus if g.index in wanted]


def unusable_gpu(
    gpu: GpuInfo,
    torch_cuda_problem: str | None,
    *,
    purpose: str,
    cpu_hint: str = "pass --devices cpu",
) -> DeviceUnavailable:
    """The error for a GPU that torch cannot drive (`gpu.torch_device` is None).

    `purpose` ends "GPU 0 (name) cannot ..." ("be benchmarked", "be used for mining").
    """
    if torch_cuda_problem is not None:
        why = (
            f"{torch_cuda_problem}; install a CUDA build of torch or fix the driver, or {cpu_hint}"
        )
    else:
        why = (
            "torch does not see it (hidden by CUDA_VISIBLE_DEVICES?); "
            "unset CUDA_VISIBLE_DEVICES or choose another GPU with --devices"
        )
    return DeviceUnavailable(f"GPU {gpu.index} ({gpu.name}) cannot {purpose}: {why}")
