"""`gonka bench` on a GPU (skipped without CUDA)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gonka_cli.cli.main import app

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
cli = CliRunner()


def test_devices_lists_the_gpus_torch_uses() -> None:
    result = cli.invoke(app, ["bench", "devices", "--json"])
    assert result.exit_code == 0, result.stderr
    gpus = json.loads(result.stdout)["gpus"]
    used = sorted(g["torch_device"] for g in gpus if g["torch_device"])
    assert used == [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    for gpu in gpus:
        assert gpu["memory_total_bytes"] > 0 and gpu["compute_capability"]


def test_quick_run_on_the_first_gpu(gonka_home: Path) -> None:
    result = cli.invoke(
        app,
        [
            "bench",
            "run",
            "--quick",
            "--devices",
            "0",
            "--models",
            "gonka-tiny",
            "--offline",
            "--json",
        ],
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    data = json.loads(result.stdout)
    (device,) = data["devices"]
    assert device["id"] == "gpu:0" and device["kind"] == "gpu"
    kernels = {(k["kernel"], k["dtype"]): k for k in data["kernels"]}
    assert set(kernels) == {
        ("matmul", "fp32"),
        ("matmul", "tf32"),
        ("matmul", "fp16"),
        ("matmul", "bf16"),
        ("memory_bandwidth", None),
        ("host_to_device", None),
        ("device_to_host", None),
    }
    for row in kernels.values():
        assert row["status"] == "ok" and row["median"] > 0
        if device["known_card"]:
            assert row["percent_of_peak"] is not None
    torch_poc = next(r for r in data["poc"] if r["backend"] == "torch")
    assert (torch_poc["status"], torch_poc["precision"]) == ("ok", "bf16")
    checks = {r["backend"]: r for r in data["correctness"]}
    # bf16 on the GPU against fp32 on the CPU: honest noise, under the threshold.
    assert checks["torch"]["status"] == "PASS"
    assert checks["onnxruntime"]["status"] in ("PASS", "SKIPPED")
