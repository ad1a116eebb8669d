"""The built-in models: catalogue, seeded weights, fingerprints, KV cache, devices."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from gonka_cli.compute import rng
from gonka_cli.compute.models import (
    INIT_STD,
    MODELS,
    POOL_CHUNK,
    GonkaModel,
    PocForward,
    build_model,
    get_spec,
    list_models,
    load_model,
    param_std,
    resolve_device,
    resolve_dtype,
)
from gonka_cli.compute.poc import householder_vectors, poc_inputs
from gonka_cli.errors import (
    DeviceUnavailable,
    InsufficientMemory,
    InvalidComputeInput,
    UnknownModel,
)

#: gonka-tiny's weights, pinned: a change here changes every artifact of every host.
TINY_FINGERPRINT = "e993fa1e169f1ff076c79667d22d703d66240612cbdd4011ace04ed79789d9a4"

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("gonka-tiny", 0.8e6, 1.3e6),
        ("gonka-small", 20e6, 30e6),
        ("gonka-medium", 100e6, 300e6),
        ("gonka-1b", 0.9e9, 1.2e9),
        ("gonka-poc-v1", 2.5e9, 3.2e9),
    ],
)
def test_parameter_counts_near_the_advertised_sizes(name: str, low: float, high: float) -> None:
    assert low <= get_spec(name).param_count <= high


def test_catalogue() -> None:
    assert [s.name for s in list_models()] == list(MODELS)
    assert [s.param_count for s in list_models()][:4] == sorted(
        s.param_count for s in list_models()
    )[:4]
    small, big, v1 = get_spec("gonka-small"), get_spec("gonka-1b"), get_spec("gonka-poc-v1")
    assert (small.poc_seq_len, big.poc_seq_len, get_spec("gonka-tiny").poc_seq_len) == (
        256,
        1024,
        32,
    )
    assert (v1.dim, v1.n_layers, v1.n_heads, v1.n_kv_heads, v1.poc_seq_len) == (
        1024,
        32,
        32,
        32,
        128,
    )
    for spec in list_models():
        data = spec.to_dict()
        assert data["param_count"] == spec.param_count and data["name"] == spec.name
        assert spec.poc_seq_len <= spec.max_seq_len
        assert spec.pool_size % POOL_CHUNK == 0
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.dim = 1  # type: ignore[misc]


def test_built_model_matches_its_spec(tiny: GonkaModel) -> None:
    spec = tiny.spec
    assert sum(p.numel() for p in tiny.parameters()) == spec.param_count
    assert not tiny.training
    assert all(not p.requires_grad for p in tiny.parameters())
    assert tiny.device == torch.device("cpu") and tiny.dtype == torch.float32


def test_fingerprint_is_pinned_and_reproducible(tiny: GonkaModel) -> None:
    assert tiny.fingerprint == TINY_FINGERPRINT
    again = build_model(tiny.spec)
    assert again is not tiny
    assert again.fingerprint == TINY_FINGERPRINT
    for (name, a), (_, b) in zip(tiny.named_parameters(), again.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_fresh_process_builds_the_same_model(fresh_process: dict[str, Any]) -> None:
    assert fresh_process["fingerprint"] == TINY_FINGERPRINT


def test_fingerprint_names_the_fp32_weights(tiny: GonkaModel) -> None:
    digest = hashlib.sha256()
    for name, param in tiny.named_parameters():
        digest.update(f"{name}:{'x'.join(map(str, param.shape))}\n".encode())
        digest.update(param.detach().numpy().astype("<f4").tobytes())
    assert digest.hexdigest() == tiny.fingerprint


def test_weights_follow_the_documented_pool_rule(tiny: GonkaModel) -> None:
    spec = tiny.spec
    assert spec.pool_size == spec.dim * spec.ffn_dim == POOL_CHUNK  # the largest parameter
    seeds = [rng.seed_of(f"{spec.name}_{spec.weights_seed}_{i}") for i in range(1)]
    pool = rng.normal_rows(seeds, POOL_CHUNK, "cpu", precise=True).reshape(-1) * INIT_STD
    for name, param in tiny.named_parameters():
        if name.endswith("norm.weight"):
            assert torch.equal(param, torch.ones_like(param)), name
            continue
        digest = hashlib.sha256(f"{spec.name}_{name}".encode()).digest()
        offset = int.from_bytes(digest[:8], "big") % spec.pool_size
        index = (offset + torch.arange(param.numel())) % spec.pool_size
        gain = param_std(name, tuple(param.shape)) / INIT_STD
        expected = (pool[index] * gain).view(param.shape)
        assert torch.equal(param, expected), name
    std = float(tiny.layers[0].feed_forward.w2.weight.std())
    assert math.isclose(std, 1 / math.sqrt(spec.ffn_dim), rel_tol=0.05)


def test_other_weights_seed_gives_another_model(tiny: GonkaModel) -> None:
    other = build_model(dataclasses.replace(tiny.spec, weights_seed=2))
    assert other.fingerprint != tiny.fingerprint
    assert not torch.equal(other.output.weight, tiny.output.weight)


def test_kv_cache_decode_equals_the_full_forward(tiny: GonkaModel) -> None:
    tokens = torch.randint(
        0, tiny.spec.vocab_size, (2, 24), generator=torch.Generator().manual_seed(3)
    )
    with torch.inference_mode():
        full = tiny.forward_tokens(tokens)
        cache = tiny.new_cache(2, 30)
        pieces = [tiny.forward_tokens(tokens[:, :9], cache)]  # prefill
        pieces.append(tiny.forward_tokens(tokens[:, 9:14], cache))  # a chunk after the prefix
        pieces += [tiny.forward_tokens(tokens[:, i : i + 1], cache) for i in range(14, 24)]
        last = tiny.forward_tokens(tokens, last_only=True)
    assert full.dtype == torch.float32 and full.shape == (2, 24, tiny.spec.vocab_size)
    assert cache.length == 24
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last[:, 0], full[:, -1], rtol=1e-5, atol=1e-5)


def test_context_limits(tiny: GonkaModel) -> None:
    cache = tiny.new_cache(1, 4)
    with torch.inference_mode(), pytest.raises(InvalidComputeInput):
        tiny.forward_tokens(torch.zeros((1, 5), dtype=torch.long), cache)
    with pytest.raises(InvalidComputeInput):
        tiny.new_cache(1, tiny.spec.max_seq_len + 1)


def test_poc_forward_shapes_and_wrapper(tiny: GonkaModel) -> None:
    spec = tiny.spec
    x = poc_inputs("ab" * 32, "02" + "cd" * 32, [0, 1, 2], 16, spec.dim)
    hh = householder_vectors("ab" * 32, spec.n_layers, spec.dim)
    with torch.inference_mode():
        out = tiny.poc_forward(x, hh)
        wrapped = PocForward(tiny)(x, hh)
        single = tiny.poc_forward(x[1:2], hh)
    assert out.shape == (3, spec.dim) and out.dtype == torch.float32
    assert torch.equal(out, wrapped)
    torch.testing.assert_close(single[0], out[1], rtol=1e-5, atol=1e-5)
    # The final RMSNorm has unit weights: the output has unit root-mean-square.
    torch.testing.assert_close(out.pow(2).mean(dim=1), torch.ones(3), rtol=1e-4, atol=1e-4)


def test_poc_forward_exports_to_onnx(tiny: GonkaModel, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    spec = tiny.spec
    hh = householder_vectors("ab" * 32, spec.n_layers, spec.dim)
    example = poc_inputs("ab" * 32, "02" + "cd" * 32, [0, 1], 8, spec.dim)
    path = tmp_path / "poc.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            PocForward(tiny),
            (example, hh),
            str(path),
            input_names=["embeddings", "householder"],
            output_names=["hidden"],
            dynamic_axes={"embeddings": {0: "batch", 1: "seq"}, "hidden": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = poc_inputs("ab" * 32, "02" + "cd" * 32, [5, 6, 7], spec.poc_seq_len, spec.dim)
    (got,) = session.run(None, {"embeddings": x.numpy(), "householder": hh.numpy()})
    with torch.inference_mode():
        expected = tiny.poc_forward(x, hh)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)


def test_load_model_caches_per_device_and_dtype(tiny: GonkaModel, tiny_bf16: GonkaModel) -> None:
    # The session fixtures may have been evicted by other tests' models (the cache is an LRU),
    # so the identity is checked on fresh loads.
    first = load_model("gonka-tiny")
    assert load_model("gonka-tiny", "cpu", torch.float32) is first
    bf16 = load_model("gonka-tiny", dtype="bf16")
    assert bf16 is not first and bf16.dtype == torch.bfloat16
    assert tiny_bf16 is not tiny and tiny_bf16.dtype == torch.bfloat16
    assert tiny_bf16.fingerprint == tiny.fingerprint  # it names the fp32 weights
    assert load_model("gonka-tiny", dtype="fp16").dtype == torch.float16


def test_too_little_memory_is_refused_before_building(monkeypatch: pytest.MonkeyPatch) -> None:
    # gonka-poc-v1 needs 11.3 GB in float32: on a smaller machine the build must stop with a
    # clear error instead of being killed by the kernel half way.
    from gonka_cli.compute import models

    monkeypatch.setattr(models, "free_memory_bytes", lambda device: 3_000_000)
    with pytest.raises(InsufficientMemory, match=r"gonka-tiny needs about .* memory"):
        build_model(get_spec("gonka-tiny"))
    monkeypatch.setattr(models, "free_memory_bytes", lambda device: 11_000_000_000)
    with pytest.raises(InsufficientMemory, match="gonka-poc-v1"):
        build_model(get_spec("gonka-poc-v1"), dtype="fp32")
    with pytest.raises(InsufficientMemory, match="gonka-poc-v1"):
        load_model("gonka-poc-v1")


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModel) as err:
        load_model("gonka-huge")
    assert "gonka-huge" in str(err.value)
    for name in MODELS:
        assert name in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_raises_instead_of_falling_back(device: str) -> None:
    with pytest.raises(DeviceUnavailable) as err:
        load_model("gonka-tiny", device)
    message = str(err.value)
    assert device in message and "\n" not in message


def test_cuda_index_out_of_range_raises() -> None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(DeviceUnavailable):
        resolve_device(f"cuda:{count + 7}")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", "tpu:0"])
def test_unusable_device_names(device: str) -> None:
    with pytest.raises((InvalidComputeInput, DeviceUnavailable)):
        resolve_device(device)


def test_dtypes() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype(None, torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype(torch.float16, cpu) == torch.float16
    for bad in ("int8", torch.float64, "fp8"):
        with pytest.raises(InvalidComputeInput):
            resolve_dtype(bad, cpu)


@pytest.mark.gpu
@needs_cuda
def test_gpu_model_matches_the_cpu_model(tiny: GonkaModel) -> None:
    gpu = load_model("gonka-tiny", "cuda")
    assert gpu.dtype == torch.bfloat16 and gpu.device.type == "cuda"
    assert gpu.fingerprint == tiny.fingerprint
    tokens = torch.randint(0, tiny.spec.vocab_size, (1, 16))
    with torch.inference_mode():
        a = tiny.forward_tokens(tokens)
        b = load_model("gonka-tiny", "cuda", "fp32").forward_tokens(tokens.cuda()).cpu()
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@needs_cuda
def test_gpu_weights_are_the_cpu_weights_bit_for_bit() -> None:
    # gonka-medium's pool has 2.9 M values: a float64 log or cos one ulp off on the GPU
    # would change some float32 weight, and the fingerprint with it.
    spec = get_spec("gonka-medium")
    cpu = build_model(spec, "cpu", "fp32")
    gpu = build_model(spec, "cuda", "fp32")
    assert gpu.fingerprint == cpu.fingerprint
    for (name, a), (_, b) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
        assert torch.equal(a, b.cpu()), name


def test_reflection_runs_in_the_model_dtype() -> None:
    # Spec §2.1 step 3: vLLM casts v to the stream's dtype and computes (x*v).sum and the
    # update in it; a float32 computation cast back rounds differently.
    from gonka_cli.compute.models import householder

    x = torch.from_numpy(rng.normal(3, 4 * 256)).reshape(4, 256).to(torch.bfloat16) * 8
    v = torch.from_numpy(rng.normal(4, 256))
    v = v / v.norm()
    got = householder(x, v)
    vb = v.to(torch.bfloat16)
    dot = (x * vb).sum(dim=-1, keepdim=True)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, x - 2 * dot * vb)
    in_fp32 = (x.float() - 2 * (x.float() @ v)[:, None] * v).to(torch.bfloat16)
    assert not torch.equal(got, in_fp32)


def test_every_model_is_a_gonka_model(tiny: GonkaModel) -> None:
    from gonka_cli.compute.models import BuiltinModel, KVCache, ModelCache

    assert isinstance(tiny, GonkaModel) and isinstance(tiny, BuiltinModel)
    assert tiny.tokenizer is None and tiny.generation_eos_ids
    cache = tiny.new_cache(1, 8)
    assert isinstance(cache, KVCache) and isinstance(cache, ModelCache) and cache.max_len == 8


def test_auto_dtype_of_a_built_in_model_is_the_default() -> None:
    assert load_model("gonka-tiny", dtype="auto") is load_model("gonka-tiny")
