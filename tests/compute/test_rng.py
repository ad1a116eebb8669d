"""Portable randomness: checked against an independent plain-Python Murmur3 and Box-Muller."""

from __future__ import annotations

import hashlib
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gonka_cli.compute import rng
from gonka_cli.errors import DeviceUnavailable, InvalidComputeInput

M32 = 0xFFFFFFFF
SEEDS = [0, 1, 0x9747B28C, 0xDEADBEEF, M32, rng.seed_of("gonka")]


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & M32


def ref_murmur3(seed: int, k: int, length: int | None = None) -> int:
    """One 32-bit block; `length` given = textbook MurmurHash3_x86_32, None = Gonka's variant."""
    k = (k * 0xCC9E2D51) & M32
    k = _rotl(k, 15)
    k = (k * 0x1B873593) & M32
    h = seed ^ k
    h = _rotl(h, 13)
    h = (h * 5 + 0xE6546B64) & M32
    if length is not None:
        h ^= length
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def _f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def ref_uniform(seed: int, n: int) -> list[float]:
    # float32 first (round to nearest even), then an exact division by 2^32.
    return [_f32(float(ref_murmur3(seed, i))) / 2**32 for i in range(n)]


def ref_normal(seed: int, n: int) -> list[float]:
    half = (n + 1) // 2
    u = ref_uniform(seed, 2 * half)
    u1 = [max(x, 1e-10) for x in u[:half]]
    u2 = u[half:]
    z0 = [
        math.sqrt(-2 * math.log(a)) * math.cos(2 * math.pi * b) for a, b in zip(u1, u2, strict=True)
    ]
    z1 = [
        math.sqrt(-2 * math.log(a)) * math.sin(2 * math.pi * b) for a, b in zip(u1, u2, strict=True)
    ]
    return (z0 + z1)[:n]


def test_reference_murmur3_is_textbook_murmur3_with_the_length() -> None:
    # Published MurmurHash3_x86_32 values for the 4-byte key "test": they validate the
    # test's own reference before it judges the code.
    key = int.from_bytes(b"test", "little")
    assert ref_murmur3(0, key, 4) == 0xBA6BD213
    assert ref_murmur3(0x9747B28C, key, 4) == 0x704B81DC
    assert ref_murmur3(0, key) != ref_murmur3(0, key, 4)


def test_seed_of_is_the_first_32_bits_of_sha256() -> None:
    assert rng.seed_of("abc") == 0xBA7816BF  # SHA-256("abc") = ba7816bf...
    assert rng.seed_of("") == 0xE3B0C442
    text = "blockhash_02ab_nonce7"
    assert rng.seed_of(text) == int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


@pytest.mark.parametrize("seed", SEEDS)
def test_murmur3_matches_the_reference_bit_for_bit(seed: int) -> None:
    indices = [0, 1, 2, 255, 65535, 65536, 2**31 - 1, 2**31, M32 - 1, M32]
    got = rng.murmur3(seed, torch.tensor(indices, dtype=torch.int64))
    assert got.dtype == torch.int64
    assert got.tolist() == [ref_murmur3(seed, i) for i in indices]
    rows = rng.murmur3_rows([seed, 7], torch.arange(50))
    assert rows.shape == (2, 50)
    assert rows[0].tolist() == [ref_murmur3(seed, i) for i in range(50)]
    assert rows[1].tolist() == [ref_murmur3(7, i) for i in range(50)]


@pytest.mark.parametrize("seed", SEEDS)
def test_uniform_is_bit_exact(seed: int) -> None:
    got = rng.uniform(seed, 1000)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    assert got.tolist() == ref_uniform(seed, 1000)
    assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 2, 999, 1000])
def test_normal_matches_math_box_muller(seed: int, n: int) -> None:
    got = rng.normal(seed, n)
    assert got.dtype == np.float32 and got.shape == (n,)
    # float32 rounds the angle 2*pi*u2 by up to ~5e-7, times a radius of at most 6.8; the
    # observed worst case here is 1.2e-6.
    np.testing.assert_allclose(got, np.array(ref_normal(seed, n)), rtol=1e-6, atol=4e-6)


def test_normal_clamps_a_zero_uniform() -> None:
    # u1 = 0 would give an infinite radius; the clamp at 1e-10 bounds |z| by sqrt(46.05).
    values = rng.normal_rows([s for s in range(64)], 4096, "cpu")
    assert bool(torch.isfinite(values).all())
    assert float(values.abs().max()) <= math.sqrt(-2 * math.log(1e-10)) + 1e-4


def test_normal_statistics() -> None:
    values = rng.normal(rng.seed_of("stats"), 200_000).astype(np.float64)
    assert abs(values.mean()) < 0.01
    assert abs(values.std() - 1.0) < 0.01


def test_device_argument_returns_a_tensor_with_the_same_values() -> None:
    seed = rng.seed_of("device")
    u = rng.uniform(seed, 300, "cpu")
    z = rng.normal(seed, 301, torch.device("cpu"))
    assert isinstance(u, torch.Tensor) and u.dtype == torch.float32
    assert isinstance(z, torch.Tensor) and z.dtype == torch.float32 and z.shape == (301,)
    assert u.tolist() == rng.uniform(seed, 300).tolist()
    assert z.tolist() == rng.normal(seed, 301).tolist()
    rows = rng.normal_rows([seed, seed + 1], 301, "cpu")
    assert rows[0].tolist() == z.tolist()
    assert rows[1].tolist() == rng.normal(seed + 1, 301).tolist()


def test_precise_normals_agree_with_the_float32_ones() -> None:
    seeds = [rng.seed_of(f"precise_{i}") for i in range(4)]
    fast = rng.normal_rows(seeds, 5000, "cpu")
    precise = rng.normal_rows(seeds, 5000, "cpu", precise=True)
    assert precise.dtype == torch.float32
    torch.testing.assert_close(fast, precise, rtol=1e-5, atol=2e-6)


def test_unit_vector() -> None:
    v = rng.unit_vector("block_layer_0_householder", 64)
    expected = np.array(ref_normal(rng.seed_of("block_layer_0_householder"), 64))
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-6)
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-6
    rows = rng.unit_vectors(["a", "b"], 12, "cpu")
    assert rows.shape == (2, 12)
    assert rows[0].tolist() == rng.unit_vector("a", 12, "cpu").tolist()


@pytest.mark.parametrize("n", [50, 64, 9, 3, 1])
def test_normal_strong_segments(n: int) -> None:
    # Spec §2.5: segment k = normal(s_k, min(ceil(n/8), n - k*ceil(n/8))), only while
    # k*ceil(n/8) < n; the last segment is drawn at its own length (its Box-Muller pairs
    # change), not cut from a full one.
    text = "hash_02ab_nonce3"
    digest = hashlib.sha256(text.encode()).digest()
    seeds = [int.from_bytes(digest[i : i + 4], "big") for i in range(0, 32, 4)]
    seg = -(-n // 8)
    expected: list[float] = []
    for k, seed in enumerate(seeds):
        if k * seg < n:
            expected.extend(ref_normal(seed, min(seg, n - k * seg)))
    got = rng.normal_strong(text, n)
    assert len(got) == n
    np.testing.assert_allclose(got, np.array(expected, dtype=np.float64), rtol=0, atol=2e-5)
    if n == 50:  # 7 x 7 + 1: the last value is segment 7's only one, not a cut pair
        assert got[-1] != rng.normal(seeds[7], 7)[0]


def test_empty_and_bad_arguments() -> None:
    assert rng.uniform(5, 0).shape == (0,)
    assert rng.normal(5, 0).shape == (0,)
    with pytest.raises(InvalidComputeInput):
        rng.uniform(-1, 3)
    with pytest.raises(InvalidComputeInput):
        rng.normal(2**32, 3)
    with pytest.raises(InvalidComputeInput):
        rng.uniform(1, -3)
    with pytest.raises(InvalidComputeInput):
        rng.murmur3(1, torch.tensor([0.5]))
    with pytest.raises(InvalidComputeInput):
        rng.unit_vector("x", 0)
    for text in ("\ud800", b"bytes", None):
        with pytest.raises(InvalidComputeInput):
            rng.seed_of(text)  # type: ignore[arg-type]
    with pytest.raises(InvalidComputeInput, match="unknown device"):
        rng.uniform(1, 3, "gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_raises() -> None:
    with pytest.raises(DeviceUnavailable):
        rng.normal(1, 3, "cuda")
    with pytest.raises(DeviceUnavailable):
        rng.unit_vectors(["a"], 12, "cuda:0")


def test_light_compute_modules_do_not_import_torch_or_numpy() -> None:
    code = (
        "import sys\n"
        "import gonka_cli.compute, gonka_cli.compute.rng, gonka_cli.compute.tokenizer\n"
        "import gonka_cli.compute.poc, gonka_cli.compute.inference\n"
        "import gonka_cli.compute.artifacts, gonka_cli.compute.smst, gonka_cli.compute.validation\n"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
