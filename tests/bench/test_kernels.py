"""Kernel timing on the CPU, and the GPU paths (CUDA events, TF32, pinned memory) on a GPU."""

from __future__ import annotations

import pytest
import torch

from gonka_cli.bench import kernels
from gonka_cli.bench.kernels import Measurement, summarize
from gonka_cli.errors import InvalidComputeInput

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CPU = torch.device("cpu")


def test_summaries() -> None:
    m = summarize([3.0, 1.0, 2.0, 10.0])
    assert (m.median, m.low, m.high, m.reps) == (2.5, 1.0, 10.0, 4)
    assert m.spread_percent == pytest.approx(360.0)
    assert m.scaled(2).to_dict() == {
        "median": 5.0,
        "low": 2.0,
        "high": 20.0,
        "reps": 4,
        "spread_percent": 360.0,
    }
    assert Measurement(0.0, 0.0, 0.0, 1).spread_percent == 0.0
    with pytest.raises(InvalidComputeInput):
        summarize([])


def test_time_reps_counts_each_repetition() -> None:
    calls = []
    seconds = kernels.time_reps(lambda: calls.append(1), CPU, reps=4, warmup=3, inner=5)
    assert len(seconds) == 4
    assert len(calls) == 3 + 4 * 5
    with pytest.raises(InvalidComputeInput):
        kernels.time_reps(lambda: None, CPU, reps=0)


def test_cpu_matmul_and_bandwidth() -> None:
    rate = kernels.matmul_rate(CPU, "fp32", 128, reps=3, warmup=1)
    assert rate.reps == 3 and 0 < rate.low <= rate.median <= rate.high
    copy = kernels.copy_bandwidth(CPU, 4 << 20, reps=3, warmup=1)
    assert copy.reps == 3 and copy.median > 0


@pytest.mark.parametrize("dtype", ["tf32", "fp16", "bf16", "int8"])
def test_the_cpu_measures_fp32_matmuls_only(dtype: str) -> None:
    with pytest.raises(InvalidComputeInput):
        kernels.matmul_rate(CPU, dtype, 64, reps=1)


def test_host_device_bandwidth_needs_a_gpu() -> None:
    with pytest.raises(InvalidComputeInput, match="GPUs only"):
        kernels.host_device_bandwidth(CPU, 1 << 20, "host_to_device", reps=1)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", ["fp32", "tf32", "fp16", "bf16"])
def test_gpu_matmul_restores_tf32(dtype: str) -> None:
    before = torch.backends.cuda.matmul.allow_tf32
    rate = kernels.matmul_rate(torch.device("cuda"), dtype, 2048, reps=3)
    assert rate.reps == 3 and 0 < rate.low <= rate.median <= rate.high
    assert torch.backends.cuda.matmul.allow_tf32 == before


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("direction", ["host_to_device", "device_to_host"])
def test_gpu_bandwidths(direction: str) -> None:
    device = torch.device("cuda")
    link = kernels.host_device_bandwidth(device, 64 << 20, direction, reps=3)
    memory = kernels.copy_bandwidth(device, 256 << 20, reps=3)
    assert link.reps == memory.reps == 3
    assert 0 < link.low <= link.median <= link.high
    assert 0 < memory.low <= memory.median <= memory.high
