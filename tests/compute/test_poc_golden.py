"""Opt-in: our PoC v2 artifacts for the real Qwen/Qwen3-0.6B against the ones vLLM recorded.

`tests/vectors/gonka-poc-golden/qwen-qwen3-0.6b.json` holds 32 artifacts Gonka's ML node
made (spec §6.4). With `GONKA_GOLDEN_MODEL_DIR` pointing at a local copy of Qwen/Qwen3-0.6B
(a Hugging Face directory or a repo id in the local cache), every one of ours must land
within L2 0.2 (the chain's `dist_threshold` for Qwen) of vLLM's for at least 30 of 32.
This is the test that pins the pick order and the numerics against a real validator.
`GONKA_GOLDEN_DEVICE` (default: cuda when usable, else cpu) and `GONKA_GOLDEN_DTYPE`
(default auto: the checkpoint's bf16, as vLLM runs it) choose where it runs; on a CPU it
takes tens of minutes.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "gonka-poc-golden"
GOLDEN = VECTORS / "qwen-qwen3-0.6b.json"
MODEL_ENV = "GONKA_GOLDEN_MODEL_DIR"
REQUIRED_WITHIN = 30


def test_qwen3_0_6b_artifacts_match_vllm() -> None:
    model_dir = os.environ.get(MODEL_ENV)
    if not model_dir:
        pytest.skip(
            f"set {MODEL_ENV} to a local copy of Qwen/Qwen3-0.6B (directory or cached repo id) "
            "to compare with the artifacts Gonka's vLLM recorded"
        )
    import torch

    from gonka_cli.compute import poc
    from gonka_cli.compute.artifacts import artifact_distance
    from gonka_cli.compute.models import load_model

    golden = json.loads(GOLDEN.read_text())
    device = os.environ.get("GONKA_GOLDEN_DEVICE") or (
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    model = load_model(model_dir, device, os.environ.get("GONKA_GOLDEN_DTYPE") or "auto")
    assert model.spec.architecture == "qwen3" and model.spec.dim == 1024
    nonces = [entry["nonce"] for entry in golden["artifacts"]]
    batch = poc.compute_poc(
        model,
        golden["block_hash"],
        golden["public_key"],
        nonces,
        params=poc.PocInputParams(seq_len=golden["seq_len"]),
        batch_size=4 if device == "cpu" else 32,
    )
    ours = dict(zip(batch.nonces, batch.artifacts, strict=True))
    threshold = golden["dist_threshold"]
    distances = {}
    for entry in golden["artifacts"]:
        theirs = base64.b64decode(entry["vector_b64"])
        mine = ours.get(entry["nonce"])
        distances[entry["nonce"]] = (
            float("inf") if mine is None else artifact_distance(mine, theirs)
        )
    within = sum(d <= threshold for d in distances.values())
    report = ", ".join(f"{n}: {d:.3f}" for n, d in sorted(distances.items()))
    assert within >= REQUIRED_WITHIN, f"{within} of 32 within {threshold}: {report}"
