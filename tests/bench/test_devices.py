"""The device inventory: NVML through a stand-in binding, torch, psutil, and `bench devices`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import psutil
import pytest
import torch
from typer.testing import CliRunner

from gonka_cli import gpu as gpu_module
from gonka_cli.bench import devices as devices_module
from gonka_cli.bench.devices import DEVICES_SCHEMA, GpuInfo, inventory, select_devices
from gonka_cli.cli.main import app
from gonka_cli.errors import DeviceUnavailable, InputError
from gonka_cli.gpu import TorchGpu, merge_gpus, normalize_bus_id

runner = CliRunner()

H100: dict[str, Any] = {
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-8f6a0c1e-1111-2222-3333-444455556666",
    "bus": "00000000:18:00.0",
    "memory": (85520809984, 84929937408, 590872576),
    "cc": (9, 0),
    "temperature": 34,
    "power": 71234,  # milliwatts
    "limit": 700000,
    "clocks": {1: 1980, 2: 2619},
    "max_clocks": {1: 1980, 2: 2619},
    "pcie": (5, 16, 5, 16),
}
# A consumer card behind a riser: NVML answers "not supported" for most of its metrics.
RTX: dict[str, Any] = {
    "name": b"NVIDIA GeForce RTX 4090",
    "uuid": b"GPU-0d9e8f7a-aaaa-bbbb-cccc-ddddeeeeffff",
    "bus": "0000:03:00.0",
    "memory": (25757220864, 25200000000, 557220864),
}


class FakeNvml:
    """The parts of pynvml that `devices` calls, answering from dictionaries."""

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: list[dict[str, Any]], init_error: str | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.shut_down = False

    def _get(self, gpu: dict[str, Any], key: str) -> Any:
        if key not in gpu:
            raise self.NVMLError("Not Supported")
        return gpu[key]

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlSystemGetNVMLVersion(self) -> str:
        return "12.550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        return self.gpus[index]

    def nvmlDeviceGetName(self, h: dict[str, Any]) -> Any:
        return h["name"]

    def nvmlDeviceGetUUID(self, h: dict[str, Any]) -> Any:
        return h["uuid"]

    def nvmlDeviceGetPciInfo(self, h: dict[str, Any]) -> Any:
        return type("Pci", (), {"busId": h["bus"]})()

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> Any:
        total, free, used = h["memory"]
        return type("Memory", (), {"total": total, "free": free, "used": used})()

    def nvmlDeviceGetCudaComputeCapability(self, h: dict[str, Any]) -> Any:
        return self._get(h, "cc")

    def nvmlDeviceGetTemperature(self, h: dict[str, Any], sensor: int) -> Any:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._get(h, "temperature")

    def nvmlDeviceGetPowerUsage(self, h: dict[str, Any]) -> Any:
        return self._get(h, "power")

    def nvmlDeviceGetEnforcedPowerLimit(self, h: dict[str, Any]) -> Any:
        return self._get(h, "limit")

    def nvmlDeviceGetClockInfo(self, h: dict[str, Any], clock: int) -> Any:
        return self._get(h, "clocks")[clock]

    def nvmlDeviceGetMaxClockInfo(self, h: dict[str, Any], clock: int) -> Any:
        return self._get(h, "max_clocks")[clock]

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: dict[str, Any]) -> Any:
        return self._get(h, "pcie")[0]

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: dict[str, Any]) -> Any:
        return self._get(h, "pcie")[1]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: dict[str, Any]) -> Any:
        return self._get(h, "pcie")[2]

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: dict[str, Any]) -> Any:
        return self._get(h, "pcie")[3]

    # nvmlDeviceGetPowerManagementLimit is missing on purpose: an older binding.


def test_nvml_gpus_in_bus_order_with_na_for_what_they_cannot_report() -> None:
    nvml = FakeNvml([H100, RTX])
    inv = inventory(nvml)
    assert nvml.shut_down
    assert inv.nvidia.to_dict() == {
        "available": True,
        "driver_version": "550.54.15",
        "cuda_driver_version": "12.4",
        "nvml_version": "12.550.54.15",
        "note": None,
    }
    # NVML index 1 sits on bus 03, before index 0 on bus 18: nvidia-smi's order is the bus's.
    assert [g.index for g in inv.gpus] == [1, 0]
    rtx, h100 = inv.gpus
    assert h100 == GpuInfo(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        uuid="GPU-8f6a0c1e-1111-2222-3333-444455556666",
        pci_bus_id="00000000:18:00.0",
        memory_total_bytes=85520809984,
        memory_free_bytes=84929937408,
        memory_used_bytes=590872576,
        compute_capability="9.0",
        multiprocessors=None,
        temperature_c=34,
        power_draw_w=71.2,
        power_limit_w=700.0,
        clock_sm_mhz=1980,
        clock_sm_max_mhz=1980,
        clock_memory_mhz=2619,
        clock_memory_max_mhz=2619,
        pcie_generation=5,
        pcie_width=16,
        pcie_max_generation=5,
        pcie_max_width=16,
        torch_device=None,
        known_card="h100-sxm",
    )
    assert rtx.name == "NVIDIA GeForce RTX 4090"
    assert rtx.uuid == "GPU-0d9e8f7a-aaaa-bbbb-cccc-ddddeeeeffff"
    assert rtx.pci_bus_id == "00000000:03:00.0"
    assert rtx.memory_total_bytes == 25757220864
    assert rtx.known_card == "rtx-4090"
    unreported = [
        "compute_capability",
        "temperature_c",
        "power_draw_w",
        "power_limit_w",
        "clock_sm_mhz",
        "clock_sm_max_mhz",
        "clock_memory_mhz",
        "clock_memory_max_mhz",
        "pcie_generation",
        "pcie_width",
        "pcie_max_generation",
        "pcie_max_width",
    ]
    assert {k: getattr(rtx, k) for k in unreported} == dict.fromkeys(unreported)
    if torch.version.cuda is None:
        assert inv.notes == (
            f"this torch ({torch.__version__}) is a CPU-only build; the GPUs cannot be benchmarked",
        )


def test_no_driver_is_one_note_and_the_cpu() -> None:
    inv = inventory(FakeNvml([], init_error="NVML Shared Library Not Found"))
    assert inv.gpus == ()
    assert inv.nvidia.available is False
    assert inv.nvidia.note == (
        "no NVIDIA driver found (NVML: NVML Shared Library Not Found); listing the CPU"
    )
    assert inv.notes[0] == inv.nvidia.note
    assert select_devices(inv, None)[0].id == "cpu"


def test_without_the_binding() -> None:
    inv = inventory(None)
    assert inv.nvidia.note == (
        "nvidia-ml-py is not installed (pip install nvidia-ml-py); GPU facts come from torch only"
    )


def test_torch_devices_are_matched_by_uuid_then_bus_id() -> None:
    nvml_gpus = [
        GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", uuid="GPU-a", pci_bus_id="00000000:18:00.0"),
        GpuInfo(index=1, name="NVIDIA H100 80GB HBM3", uuid="GPU-b", pci_bus_id="00000000:2A:00.0"),
        GpuInfo(index=2, name="NVIDIA H100 80GB HBM3", uuid="GPU-c", pci_bus_id="00000000:3B:00.0"),
    ]
    # CUDA_VISIBLE_DEVICES=2,0: torch's cuda:0 is nvidia-smi's 2; GPU 1 is hidden from it.
    torch_gpus = [
        TorchGpu(0, "NVIDIA H100 80GB HBM3", "GPU-c", None, 85520809984, "9.0", 132),
        TorchGpu(1, "NVIDIA H100 80GB HBM3", None, "00000000:18:00.0", 85520809984, "9.0", 132),
    ]
    merged = devices_module._with_known_cards(merge_gpus(nvml_gpus, torch_gpus))
    assert [(g.index, g.torch_device, g.multiprocessors) for g in merged] == [
        (0, "cuda:1", 132),
        (1, None, None),
        (2, "cuda:0", 132),
    ]
    assert {g.known_card for g in merged} == {"h100-sxm"}


def test_without_nvml_torch_lists_the_gpus_in_bus_order() -> None:
    torch_gpus = [
        TorchGpu(0, "NVIDIA GeForce RTX 3090", "GPU-x", "00000000:41:00.0", 25 << 30, "8.6", 82),
        TorchGpu(1, "NVIDIA GeForce RTX 5090", "GPU-y", "00000000:01:00.0", 32 << 30, "12.0", 170),
    ]
    merged = devices_module._with_known_cards(merge_gpus([], torch_gpus))
    assert [(g.index, g.name, g.torch_device, g.known_card) for g in merged] == [
        (0, "NVIDIA GeForce RTX 5090", "cuda:1", "rtx-5090"),
        (1, "NVIDIA GeForce RTX 3090", "cuda:0", "rtx-3090"),
    ]


def test_bus_ids() -> None:
    assert normalize_bus_id("0000:3b:00.0") == "00000000:3B:00.0"
    assert normalize_bus_id("00000000:3B:00.0") == "00000000:3B:00.0"
    assert normalize_bus_id(None) is None
    assert normalize_bus_id("weird") == "WEIRD"


def test_choosing_devices() -> None:
    inv = inventory(FakeNvml([H100, RTX]))
    assert [d.id for d in select_devices(inv, ["cpu"])] == ["cpu"]
    with pytest.raises(InputError) as unknown:
        select_devices(inv, ["cpu,7"])
    assert str(unknown.value) == (
        "no GPU 7: this machine has GPUs 0-1 (gonka bench devices lists them)"
    )
    with pytest.raises(InputError) as malformed:
        select_devices(inv, ["gpu"])
    assert str(malformed.value) == (
        "invalid --devices 'gpu': use GPU indices like 0,1 (see gonka bench devices) or cpu"
    )
    with pytest.raises(InputError, match=r"^invalid --devices 'cpu,CPU': cpu is listed twice"):
        select_devices(inv, ["cpu", "CPU"])
    with pytest.raises(InputError, match=r"^invalid --devices 'all,0': all names every device"):
        select_devices(inv, ["all,0"])
    if not inv.torch_cuda_available:
        # NVML sees the cards but torch cannot drive them: say so, never fall back quietly.
        with pytest.raises(DeviceUnavailable) as broken:
            select_devices(inv, ["gpu:0"])
        assert str(broken.value).startswith(
            f"GPU 0 (NVIDIA H100 80GB HBM3) cannot be benchmarked: {inv.torch_cuda_problem}; "
        )
        with pytest.raises(DeviceUnavailable):
            select_devices(inv, None)


def test_choosing_usable_gpus() -> None:
    inv = inventory(FakeNvml([]))
    gpus = (
        GpuInfo(
            index=0,
            name="NVIDIA H100 PCIe",
            torch_device="cuda:0",
            pcie_max_generation=5,
            pcie_max_width=16,
            memory_total_bytes=80 << 30,
        ),
        GpuInfo(index=1, name="NVIDIA L40S", torch_device="cuda:1"),
    )
    inv = dataclasses.replace(inv, gpus=gpus, torch_cuda_problem=None)
    chosen = select_devices(inv, None)
    assert [d.id for d in chosen] == ["gpu:0", "gpu:1"]
    h100 = chosen[0]
    assert (h100.torch_device, h100.pcie_peak_gbps) == ("cuda:0", 63.0)
    assert h100.peaks is not None and h100.peaks.key == "h100-pcie"
    assert h100.to_dict()["known_card"]["bf16_tflops"] == 756.0
    # The CPU first, then nvidia-smi order, whatever order they were named in.
    assert [d.id for d in select_devices(inv, ["1", "gpu:0"])] == ["gpu:0", "gpu:1"]
    assert [d.id for d in select_devices(inv, ["1,cpu"])] == ["cpu", "gpu:1"]
    assert [d.id for d in select_devices(inv, ["all"])] == ["cpu", "gpu:0", "gpu:1"]
    with pytest.raises(InputError, match=r"GPU 1 is listed twice; list each GPU once$"):
        select_devices(inv, ["1", "gpu:1"])
    hidden = dataclasses.replace(inv, gpus=(dataclasses.replace(gpus[1], torch_device=None),))
    with pytest.raises(DeviceUnavailable, match=r"hidden by CUDA_VISIBLE_DEVICES\?"):
        select_devices(hidden, ["1"])


def nvml_works() -> bool:
    nvml = gpu_module.import_nvml()
    if nvml is None:
        return False
    try:
        nvml.nvmlInit()
    except Exception:
        return False
    nvml.nvmlShutdown()
    return True


def test_devices_json_through_the_cli() -> None:
    result = runner.invoke(app, ["bench", "devices", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {
        "schema",
        "nvidia",
        "gpus",
        "cpu",
        "memory",
        "torch",
        "onnxruntime",
        "notes",
    }
    assert data["schema"] == DEVICES_SCHEMA
    cpu = data["cpu"]
    assert set(cpu) == {
        "model",
        "architecture",
        "cores_physical",
        "cores_logical",
        "frequency_mhz",
        "frequency_max_mhz",
    }
    assert cpu["cores_logical"] == psutil.cpu_count()
    assert cpu["cores_physical"] == psutil.cpu_count(logical=False)
    assert cpu["model"] == devices_module._cpu_model()
    assert cpu["architecture"]
    assert data["memory"]["total_bytes"] == psutil.virtual_memory().total
    assert 0 < data["memory"]["available_bytes"] <= data["memory"]["total_bytes"]
    assert data["torch"] == {
        "version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
    }
    import onnxruntime

    assert data["onnxruntime"] == {
        "version": onnxruntime.__version__,
        "providers": onnxruntime.get_available_providers(),
    }
    if nvml_works():
        assert data["nvidia"]["available"] is True
        assert data["gpus"], "NVML works but lists no GPU"
        for gpu in data["gpus"]:
            assert set(gpu) == set(GpuInfo.__dataclass_fields__)
        bus_ids = [g["pci_bus_id"] for g in data["gpus"]]
        assert bus_ids == sorted(bus_ids)
    else:
        assert data["nvidia"]["available"] is False
        assert data["gpus"] == []
        assert data["nvidia"]["note"].startswith(("no NVIDIA driver found", "nvidia-ml-py"))
        assert data["notes"] == [data["nvidia"]["note"]]


def test_devices_for_people() -> None:
    result = runner.invoke(app, ["bench", "devices"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    model = devices_module._cpu_model() or "N/A"
    assert f"CPU          {model}" in lines
    assert any(line.startswith("RAM          ") and "GB total" in line for line in lines)
    assert any(line.startswith(f"torch        {torch.__version__}") for line in lines)
    if not nvml_works():
        assert lines[0].startswith(("no NVIDIA driver found", "nvidia-ml-py"))


def test_devices_with_gpus_for_people(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_module, "import_nvml", lambda: FakeNvml([H100, RTX]))
    result = runner.invoke(app, ["bench", "devices"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "NVIDIA driver 550.54.15, CUDA 12.4"
    rtx = next(line for line in lines if "RTX 4090" in line and "00000000:03:00.0" in line)
    h100 = next(line for line in lines if "H100" in line and "00000000:18:00.0" in line)
    assert lines.index(rtx) < lines.index(h100)
    assert h100.split()[0] == "0" and rtx.split()[0] == "1"
    assert "85.5 GB" in h100 and "Gen5 x16 (Gen5 x16)" in h100 and "71 W / 700 W" in h100
    assert "N/A / N/A" in rtx and "N/A (N/A)" in rtx
    assert "GPU 0 UUID: GPU-8f6a0c1e-1111-2222-3333-444455556666" in lines


def test_a_gpu_torch_cannot_use_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_module, "import_nvml", lambda: FakeNvml([H100]))
    result = runner.invoke(app, ["bench", "run", "--quick", "--offline"])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: GPU 0 (NVIDIA H100 80GB HBM3) cannot be benchmarked: ")
    assert line.endswith(("--devices cpu", "name another device"))
    assert result.stdout == ""
