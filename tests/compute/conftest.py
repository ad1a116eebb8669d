"""Shared compute fixtures: the built-in test model, round constants, and a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from gonka_cli.compute.models import GonkaModel

REPO = Path(__file__).resolve().parents[2]
BLOCK_HASH = "9F2C4A11D3E0B7C85A6E1F0D2C3B4A59687766554433221100FFEEDDCCBBAA99"
PUBLIC_KEY = "02" + "5a1f3c9e8d7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877"
SUBPROCESS_NONCES = [0, 1, 2, 17, -5, 2**31 - 1]


@pytest.fixture(scope="session")
def block_hash() -> str:
    return BLOCK_HASH


@pytest.fixture(scope="session")
def public_key() -> str:
    return PUBLIC_KEY


@pytest.fixture(scope="session")
def subprocess_nonces() -> list[int]:
    return list(SUBPROCESS_NONCES)


@pytest.fixture(scope="session")
def tiny() -> GonkaModel:
    from gonka_cli.compute.models import load_model

    return load_model("gonka-tiny")


@pytest.fixture(scope="session")
def tiny_bf16() -> GonkaModel:
    from gonka_cli.compute.models import load_model

    return load_model("gonka-tiny", dtype="bf16")


_FRESH_PROCESS = textwrap.dedent(
    """
    import base64, json, sys
    from gonka_cli.compute.models import load_model
    from gonka_cli.compute.poc import compute_artifacts
    block_hash, public_key, nonces = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    model = load_model("gonka-tiny")
    artifacts = compute_artifacts(model, block_hash, public_key, nonces, batch_size=4)
    print(json.dumps({
        "fingerprint": model.fingerprint,
        "artifacts": [base64.b64encode(a).decode() for a in artifacts],
    }))
    """
)


@pytest.fixture(scope="session")
def fresh_process() -> dict[str, Any]:
    """gonka-tiny's fingerprint and artifacts of SUBPROCESS_NONCES, from a new interpreter."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _FRESH_PROCESS,
            BLOCK_HASH,
            PUBLIC_KEY,
            json.dumps(SUBPROCESS_NONCES),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --- tiny Hugging Face checkpoints (tests/compute/hf_checkpoints.py) -----------------------

HUB_REPO_ID = "gonka-test/tiny-qwen3"


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random checkpoints by kind (qwen3, llama, qwen2, qwen3_moe), each a directory in
    the Hugging Face layout, written once per test session."""
    from tests.compute.hf_checkpoints import KINDS, write_checkpoint

    root = tmp_path_factory.mktemp("hf-checkpoints")
    return {kind: write_checkpoint(kind, root / kind) for kind in KINDS}


@pytest.fixture(scope="session")
def qwen3_checkpoint(hf_checkpoints: dict[str, Path]) -> Path:
    return hf_checkpoints["qwen3"]


@pytest.fixture(scope="session")
def llama_checkpoint(hf_checkpoints: dict[str, Path]) -> Path:
    return hf_checkpoints["llama"]


@pytest.fixture(scope="session")
def _hub_cache_dir(tmp_path_factory: pytest.TempPathFactory, qwen3_checkpoint: Path) -> Path:
    from tests.compute.hf_checkpoints import lay_into_hub_cache

    cache = tmp_path_factory.mktemp("hf-hub-cache")
    lay_into_hub_cache(qwen3_checkpoint, cache, HUB_REPO_ID)
    return cache


@pytest.fixture
def hub_cache(_hub_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face hub cache holding the tiny Qwen3 as `HUB_REPO_ID` (HF_HUB_CACHE points
    at it for the test; HF_HUB_OFFLINE is set, as no test may reach a hub)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(_hub_cache_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return _hub_cache_dir
