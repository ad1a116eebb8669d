"""Hugging Face checkpoints: loading, the model interface, and PoC against a transformers oracle.

The oracle is `transformers` itself: the test loads the same checkpoint with
`AutoModelForCausalLM`, hooks its decoder layers with the reflection written out here, and
runs spec §2.1 step by step (`reference_hidden`, then `test_poc.ref_artifact`). Our loader and
PoC path must land on the same hidden states and artifacts in float32.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gonka_cli.compute import poc, rng
from gonka_cli.compute.artifacts import artifact_distance, decode_artifact
from gonka_cli.compute.checkpoints import SUPPORTED, CheckpointModel, hub_cache_dir
from gonka_cli.compute.models import GonkaModel, load_model
from gonka_cli.errors import CheckpointError, InsufficientMemory, InvalidComputeInput, UnknownModel
from tests.compute.conftest import HUB_REPO_ID
from tests.compute.hf_checkpoints import TOKENIZER_VOCAB, VOCAB_SIZE
from tests.compute.test_poc import ref_artifact

BLOCK = "9F2C4A11D3E0B7C85A6E1F0D2C3B4A59687766554433221100FFEEDDCCBBAA99"
PK = "025a1f3c9e8d7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877"
NONCES = [0, 1, 2, 77, -5]
SEQ_LEN = 24


def ref_seed(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def reference_hidden(
    directory: Path,
    block_hash: str,
    pk: str,
    nonces: list[int],
    dtype: torch.dtype = torch.float32,
) -> np.ndarray:
    """Spec §2.1 steps 1-5 on transformers' own model, with hooks written here."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype)
    model.eval()
    dim = model.config.hidden_size
    layers = model.model.layers
    vectors = []
    for i in range(len(layers)):
        v = torch.from_numpy(rng.normal(ref_seed(f"{block_hash}_layer_{i}_householder"), dim))
        vectors.append(v / v.norm())

    def hook_for(i: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> Any:
            def reflect(x: torch.Tensor) -> torch.Tensor:
                v = vectors[i].to(x.dtype)
                return x - 2 * (x * v).sum(-1, keepdim=True) * v

            if isinstance(output, tuple):
                return (reflect(output[0]), *output[1:])
            return reflect(output)

        return hook

    handles = [layer.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
    rows = [
        torch.from_numpy(rng.normal(ref_seed(f"{block_hash}_{pk}_nonce{n}"), SEQ_LEN * dim))
        for n in nonces
    ]
    x = torch.stack(rows).view(len(nonces), SEQ_LEN, dim).to(dtype)
    with torch.no_grad():
        out = model.model(inputs_embeds=x, use_cache=False).last_hidden_state
    for handle in handles:
        handle.remove()
    return out[:, -1, :].float().numpy()


@pytest.fixture(scope="module")
def qwen3(qwen3_checkpoint: Path) -> GonkaModel:
    return load_model(str(qwen3_checkpoint), "cpu", "fp32")


@pytest.mark.parametrize("kind", ["qwen3", "llama", "qwen2", "qwen3_moe"])
def test_poc_matches_the_transformers_oracle(kind: str, hf_checkpoints: dict[str, Path]) -> None:
    directory = hf_checkpoints[kind]
    model = load_model(str(directory), "cpu", "fp32")
    assert isinstance(model, CheckpointModel) and model.spec.architecture == kind
    params = poc.PocInputParams(seq_len=SEQ_LEN)
    expected_hidden = reference_hidden(directory, BLOCK, PK, NONCES)
    inputs = poc.poc_inputs(BLOCK, PK, NONCES, SEQ_LEN, model.spec.dim)
    reflections = poc.householder_vectors(BLOCK, model.spec.n_layers, model.spec.dim)
    hidden = model.poc_forward(inputs, reflections).numpy()
    np.testing.assert_allclose(hidden, expected_hidden, rtol=1e-5, atol=1e-5 * np.abs(hidden).max())
    batch = poc.compute_poc(model, BLOCK, PK, NONCES, params=params, batch_size=2)
    assert batch.nonces == tuple(NONCES) and batch.dropped == ()
    for artifact, row, nonce in zip(batch.artifacts, expected_hidden, NONCES, strict=True):
        expected = ref_artifact(row, BLOCK, PK, nonce)
        assert float(np.linalg.norm(np.array(decode_artifact(artifact)) - expected)) <= 1e-3


def test_bf16_reflects_in_bf16_like_the_oracle(qwen3_checkpoint: Path) -> None:
    # In bf16 the hook's arithmetic is vLLM's (dot product and update in bf16): the same ops
    # as the oracle's, so the same bits.
    model = load_model(str(qwen3_checkpoint), "cpu", "bf16")
    assert model.dtype == torch.bfloat16
    expected = reference_hidden(qwen3_checkpoint, BLOCK, PK, NONCES, torch.bfloat16)
    inputs = poc.poc_inputs(BLOCK, PK, NONCES, SEQ_LEN, model.spec.dim).to(torch.bfloat16)
    reflections = poc.householder_vectors(BLOCK, model.spec.n_layers, model.spec.dim)
    hidden = model.poc_forward(inputs, reflections).numpy()
    np.testing.assert_array_equal(hidden, expected)
    fp32 = reference_hidden(qwen3_checkpoint, BLOCK, PK, NONCES)
    assert not np.array_equal(hidden, fp32)


def test_the_layers_matter(qwen3: GonkaModel) -> None:
    # Without the layers (inputs -> reflections -> last position) the artifact is far off:
    # the oracle test would not notice a forward that skipped them otherwise.
    spec = qwen3.spec
    real = poc.compute_artifacts(qwen3, BLOCK, PK, NONCES, params=poc.PocInputParams(SEQ_LEN))
    x = poc.poc_inputs(BLOCK, PK, NONCES, SEQ_LEN, spec.dim)[:, -1]
    for v in poc.householder_vectors(BLOCK, spec.n_layers, spec.dim):
        x = x - 2 * (x @ v)[:, None] * v
    cheat = poc.artifacts_from_hidden(x, BLOCK, PK, NONCES).artifacts
    assert min(artifact_distance(a, b) for a, b in zip(real, cheat, strict=True)) > 0.2


def test_spec_reads_the_config(qwen3: GonkaModel, hf_checkpoints: dict[str, Path]) -> None:
    spec = qwen3.spec
    assert (spec.dim, spec.n_layers, spec.n_heads, spec.n_kv_heads) == (64, 3, 4, 2)
    assert spec.head_dim == 32  # decoupled from 64 / 4
    assert spec.vocab_size == VOCAB_SIZE and spec.rope_theta == 1e6
    assert spec.param_count == sum(p.numel() for p in qwen3.parameters())  # tied: counted once
    assert spec.poc_seq_len == 256 and spec.max_seq_len == 512
    moe = load_model(str(hf_checkpoints["qwen3_moe"]), "cpu", "fp32").spec
    assert moe.architecture == "qwen3_moe" and moe.ffn_dim == 32 * 2
    assert qwen3.device == torch.device("cpu") and qwen3.dtype == torch.float32
    assert len(qwen3.fingerprint) == 64


def test_tokenizer_and_chat_template(qwen3: GonkaModel) -> None:
    tok = qwen3.tokenizer
    assert tok is not None and len(tok) == TOKENIZER_VOCAB < qwen3.spec.vocab_size
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert qwen3.generation_eos_ids == (tok.convert_tokens_to_ids("<|im_end|>"),)


def test_forward_tokens_match_transformers_and_the_cache(
    qwen3: GonkaModel, qwen3_checkpoint: Path
) -> None:
    import transformers

    oracle = transformers.AutoModelForCausalLM.from_pretrained(str(qwen3_checkpoint)).eval()
    ids = torch.tensor([[3, 17, 299, 511, 42, 8]])
    with torch.no_grad():
        expected = oracle(input_ids=ids).logits
    full = qwen3.forward_tokens(ids)
    assert full.dtype == torch.float32 and full.shape == (1, 6, VOCAB_SIZE)
    torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-5)
    cache = qwen3.new_cache(1, 8)
    prefill = qwen3.forward_tokens(ids[:, :4], cache, last_only=True)
    assert prefill.shape == (1, 1, VOCAB_SIZE) and cache.length == 4
    torch.testing.assert_close(prefill[0, 0], expected[0, 3], rtol=1e-4, atol=1e-4)
    for t in (4, 5):
        step = qwen3.forward_tokens(ids[:, t : t + 1], cache, last_only=True)
        torch.testing.assert_close(step[0, 0], expected[0, t], rtol=1e-4, atol=1e-4)
    assert cache.length == 6
    with pytest.raises(InvalidComputeInput, match="exceed"):
        qwen3.forward_tokens(ids[:, :3], cache)
    # A PoC forward in between leaves inference untouched (the hooks are off outside it).
    poc.compute_poc(qwen3, BLOCK, PK, [1], params=poc.PocInputParams(SEQ_LEN))
    torch.testing.assert_close(qwen3.forward_tokens(ids), full)


def test_repo_id_from_the_hub_cache(qwen3: GonkaModel, hub_cache: Path) -> None:
    assert hub_cache_dir() == hub_cache
    model = load_model(HUB_REPO_ID, "cpu", "fp32")
    assert model.spec.name == HUB_REPO_ID
    # The same weights: the same artifacts (the fingerprint differs only in how it hashes).
    params = poc.PocInputParams(SEQ_LEN)
    assert poc.compute_artifacts(model, BLOCK, PK, [4], params=params) == (
        poc.compute_artifacts(qwen3, BLOCK, PK, [4], params=params)
    )
    pinned = load_model(f"{HUB_REPO_ID}@{'0' * 40}", "cpu", "fp32")
    assert pinned.fingerprint == model.fingerprint


def test_hub_cache_follows_hf_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hub_cache_dir() == tmp_path / "hf" / "hub"


def test_missing_repo_id_names_the_pull_command(hub_cache: Path) -> None:
    with pytest.raises(UnknownModel) as err:
        load_model("gonka-test/absent-model")
    assert "gonka models pull gonka-test/absent-model" in str(err.value)
    assert str(hub_cache) in str(err.value)


def test_dtype_auto_is_the_checkpoints(tmp_path: Path) -> None:
    from tests.compute.hf_checkpoints import write_checkpoint

    directory = write_checkpoint("llama", tmp_path / "bf16", dtype="bfloat16")
    assert load_model(str(directory)).dtype == torch.bfloat16
    assert load_model(str(directory), dtype="auto").dtype == torch.bfloat16
    assert load_model(str(directory), dtype="fp32").dtype == torch.float32
    batch = poc.compute_poc(
        load_model(str(directory)), BLOCK, PK, [1, 2], params=poc.PocInputParams(8)
    )
    assert len(batch.artifacts) == 2


def test_sharded_checkpoint(qwen3: GonkaModel, tmp_path: Path) -> None:
    import transformers

    source = Path(qwen3.spec.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(source))
    model.save_pretrained(tmp_path, max_shard_size="200KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, tmp_path / name)
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("*.safetensors"))) > 1
    sharded = load_model(str(tmp_path), "cpu", "fp32")
    params = poc.PocInputParams(SEQ_LEN)
    assert poc.compute_artifacts(sharded, BLOCK, PK, [9], params=params) == (
        poc.compute_artifacts(qwen3, BLOCK, PK, [9], params=params)
    )


# --- errors that name the fix --------------------------------------------------------------


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_a_directory_without_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        load_model(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    with pytest.raises(CheckpointError, match=r"no \*\.safetensors"):
        load_model(str(tmp_path))
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="safe_serialization"):
        load_model(str(tmp_path))
    with pytest.raises(CheckpointError, match="is a file"):
        load_model(str(tmp_path / "pytorch_model.bin"))


def test_an_unsupported_architecture(qwen3_checkpoint: Path, tmp_path: Path) -> None:
    directory = _copy(qwen3_checkpoint, tmp_path / "m")
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "mamba"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        load_model(str(directory))
    assert "'mamba' is not supported" in str(err.value)
    for name in SUPPORTED:
        assert name in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "header"])
def test_corrupt_safetensors(qwen3_checkpoint: Path, tmp_path: Path, damage: str) -> None:
    directory = _copy(qwen3_checkpoint, tmp_path / "m")
    weights = directory / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    else:
        weights.write_bytes(struct.pack("<Q", 40) + b"{not json" + data[17:])
    with pytest.raises(CheckpointError, match="not a valid safetensors file") as err:
        load_model(str(directory))
    assert "gonka models pull" in str(err.value)


def test_a_model_that_does_not_fit(qwen3_checkpoint: Path, tmp_path: Path) -> None:
    # A real (sparse) file whose header declares 2^40 float32 values: 4 TiB of weights.
    directory = _copy(qwen3_checkpoint, tmp_path / "m")
    weights = directory / "model.safetensors"
    header = json.dumps(
        {"model.huge": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 1 << 42]}}
    ).encode()
    with weights.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + (1 << 42))
    with pytest.raises(InsufficientMemory) as err:
        load_model(str(directory), "cpu", "fp32")
    message = str(err.value)
    assert "GiB" in message and "16-bit dtype" in message and "more GPUs" in message


def test_unknown_name_lists_every_form() -> None:
    with pytest.raises(UnknownModel) as err:
        load_model("gonka-huge")
    assert "gonka-tiny" in str(err.value) and "repo id" in str(err.value)


def test_loaded_once_and_shared(qwen3_checkpoint: Path) -> None:
    first = load_model(str(qwen3_checkpoint), "cpu", "fp32")
    assert load_model(str(qwen3_checkpoint), "cpu", "fp32") is first
    assert load_model(str(qwen3_checkpoint), "cpu", "bf16") is not first


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0,1"])
def test_gpus_without_cuda_raise(qwen3_checkpoint: Path, device: str) -> None:
    from gonka_cli.errors import DeviceUnavailable

    with pytest.raises(DeviceUnavailable):
        load_model(str(qwen3_checkpoint), device)


def test_a_bad_gpu_list(qwen3_checkpoint: Path) -> None:
    with pytest.raises(InvalidComputeInput, match="cuda:0,1"):
        load_model(str(qwen3_checkpoint), "cuda:0,x")
