"""The onnxruntime backend against the torch backend: same artifacts, same logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gonka_cli.compute import onnx_backend, poc
from gonka_cli.compute.artifacts import artifact_distance
from gonka_cli.compute.models import load_model
from gonka_cli.errors import BackendUnavailable, InvalidComputeInput

BLOCK = "7f3a" * 16
PK = "03" + "5c" * 32


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def tiny(onnx_dir: Path) -> onnx_backend.OnnxModel:
    return onnx_backend.OnnxModel("gonka-tiny", directory=onnx_dir)


def test_artifacts_match_the_torch_backend(tiny: onnx_backend.OnnxModel) -> None:
    nonces = [0, 1, 2, 77, 2**31 - 1, -5]
    ours = onnx_backend.compute_artifacts(tiny, BLOCK, PK, nonces, batch_size=4)
    reference = poc.compute_artifacts(load_model("gonka-tiny"), BLOCK, PK, nonces)
    distances = [artifact_distance(a, b) for a, b in zip(ours, reference, strict=True)]
    # Both run float32 on the CPU: only kernel rounding separates them.
    assert max(distances) < 0.01, distances
    assert tiny.providers == ["CPUExecutionProvider"]


def test_prefill_logits_match_the_torch_backend(tiny: onnx_backend.OnnxModel) -> None:
    tokens = np.array([[1, 72, 101, 108, 108, 111], [1, 2, 3, 4, 5, 6]], dtype=np.int64)
    ours = tiny.logits(tokens)
    with torch.inference_mode():
        reference = load_model("gonka-tiny").forward_tokens(torch.from_numpy(tokens)).numpy()
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-3


def test_the_export_is_cached_under_the_weights_fingerprint(
    tiny: onnx_backend.OnnxModel, onnx_dir: Path
) -> None:
    tiny.session("poc")
    path = onnx_backend.model_path("gonka-tiny", "poc", tiny.fingerprint, onnx_dir)
    assert path.exists() and tiny.fingerprint[:16] in path.name
    before = path.stat().st_mtime_ns
    assert onnx_backend.export("gonka-tiny", "poc", onnx_dir) == path
    assert path.stat().st_mtime_ns == before
    assert not list(onnx_dir.glob(".export-*")), "the staging directory was left behind"
    for part in ("-g1-", f"-op{onnx_backend.OPSET}-", f"-torch{torch.__version__.split('+')[0]}"):
        assert part in path.name


def test_bad_inputs(tiny: onnx_backend.OnnxModel) -> None:
    with pytest.raises(InvalidComputeInput, match="batch size"):
        onnx_backend.compute_artifacts(tiny, BLOCK, PK, [1], batch_size=0)
    with pytest.raises(InvalidComputeInput, match="exported for seq_len"):
        onnx_backend.compute_artifacts(tiny, BLOCK, PK, [1], seq_len=7)
    with pytest.raises(InvalidComputeInput, match="block hash"):
        onnx_backend.compute_artifacts(tiny, "", PK, [1])
    with pytest.raises(InvalidComputeInput):
        onnx_backend.compute_artifacts(tiny, BLOCK, PK, [2**31])
    with pytest.raises(InvalidComputeInput, match="unknown ONNX graph"):
        onnx_backend.model_path("gonka-tiny", "decode", "ab" * 32)
    assert onnx_backend.compute_artifacts(tiny, BLOCK, PK, []) == []


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:-1", "cudax", "", "cpu:0x"])
def test_bad_device_names_are_refused_at_once(onnx_dir: Path, device: str) -> None:
    with pytest.raises(InvalidComputeInput, match="device"):
        onnx_backend.OnnxModel("gonka-tiny", device, directory=onnx_dir)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_where_onnxruntime_cannot_run_it_is_refused(onnx_dir: Path) -> None:
    model = onnx_backend.OnnxModel("gonka-tiny", "cuda", directory=onnx_dir)
    with pytest.raises(BackendUnavailable, match="CUDA"):
        model.session("poc")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_provider_matches_the_cpu(onnx_dir: Path) -> None:
    gpu = onnx_backend.OnnxModel("gonka-tiny", "cuda", directory=onnx_dir)
    cpu = onnx_backend.OnnxModel("gonka-tiny", "cpu", directory=onnx_dir)
    a = onnx_backend.compute_artifacts(gpu, BLOCK, PK, list(range(8)))
    b = onnx_backend.compute_artifacts(cpu, BLOCK, PK, list(range(8)))
    assert max(artifact_distance(x, y) for x, y in zip(a, b, strict=True)) < 0.05
