"""The shared GPU layer: the `--devices` grammar, looking GPUs up, and the NVML session.

The bench's and the miner's own policies on top are in tests/bench/test_devices.py and
tests/miner/test_devices.py, with a stand-in NVML binding.
"""

from __future__ import annotations

import pytest

from gonka_cli.errors import DeviceUnavailable, InputError
from gonka_cli.gpu import DeviceSpec, GpuInfo, Nvml, parse_devices, pick_gpus, unusable_gpu
from tests.bench.test_devices import H100, RTX, FakeNvml

GPUS = tuple(
    GpuInfo(index=i, name=f"GPU {i}", pci_bus_id=f"00000000:{bus}:00.0", torch_device=f"cuda:{i}")
    for i, bus in [(0, "18"), (1, "2A"), (3, "3B")]
)


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        (None, None),
        ((), None),
        ("cpu", DeviceSpec("cpu", cpu=True)),
        (" ALL ", DeviceSpec(" ALL ", every=True)),
        ("1, gpu:0", DeviceSpec("1, gpu:0", gpu_indices=(1, 0))),
        (["cpu", "3"], DeviceSpec("cpu,3", cpu=True, gpu_indices=(3,))),
    ],
)
def test_the_devices_grammar(spec: str | list[str] | None, parsed: DeviceSpec | None) -> None:
    assert parse_devices(spec) == parsed


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("gpu0", "use GPU indices like 0,1 (see gonka bench devices) or cpu"),
        ("12345", "use GPU indices like 0,1 (see gonka bench devices) or cpu"),
        ("0,,1", "use GPU indices like 0,1 (see gonka bench devices) or cpu"),
        ("0,gpu:0", "GPU 0 is listed twice; list each GPU once"),
        ("cpu,CPU", "cpu is listed twice; list it once"),
        ("all,cpu", "all names every device already; list it alone"),
    ],
)
def test_malformed_device_lists(spec: str, why: str) -> None:
    with pytest.raises(InputError) as err:
        parse_devices(spec)
    assert str(err.value) == f"invalid --devices {spec!r}: {why}"


def test_gpus_come_in_nvidia_smi_order_and_missing_ones_are_named() -> None:
    assert [g.index for g in pick_gpus(GPUS, [3, 0])] == [0, 3]
    with pytest.raises(InputError) as missing:
        pick_gpus(GPUS, [2])
    assert str(missing.value) == (
        "no GPU 2: this machine has GPUs 0, 1, 3 (gonka bench devices lists them)"
    )
    with pytest.raises(InputError, match=r"^no GPU 0: no NVIDIA GPU was found; use --devices cpu"):
        pick_gpus((), [0])


def test_one_message_for_a_gpu_torch_cannot_drive() -> None:
    error = unusable_gpu(GPUS[0], "this torch (2.5.0+cpu) is a CPU-only build", purpose="run")
    assert isinstance(error, DeviceUnavailable)
    assert str(error) == (
        "GPU 0 (GPU 0) cannot run: this torch (2.5.0+cpu) is a CPU-only build; install a CUDA "
        "build of torch or fix the driver, or pass --devices cpu"
    )


def test_an_nvml_session_starts_once_and_reads_gpus() -> None:
    binding = FakeNvml([H100, RTX])
    with Nvml(binding) as nvml:
        assert nvml.temperature_c(0) == 34.0
        assert nvml.power_w(0) == pytest.approx(71.234)
        assert nvml.temperature_c(1) is None  # "not supported" on the consumer card
        assert nvml.utilization_pct(0) is None  # not in this binding
        assert nvml.handle(7) is None
        assert nvml.problem is None
    assert binding.shut_down
    assert nvml.temperature_c(0) is None  # closed


def test_nvml_absent_or_without_a_driver_says_why() -> None:
    assert not Nvml(None).start()
    missing = Nvml(None)
    missing.start()
    assert missing.problem is not None and missing.problem.startswith("nvidia-ml-py is not")
    broken = Nvml(FakeNvml([], init_error="Driver Not Loaded"))
    assert broken.temperature_c(0) is None
    assert broken.problem == "no NVIDIA driver found (NVML: Driver Not Loaded); listing the CPU"
