"""Portable randomness for PoC v2: SHA-256 seeds, MurmurHash3 uniforms, Box-Muller normals.

Every random number in a PoC round comes from here, so a GPU host and a CPU validator draw
the same values (reference §2 "Randomness"):

- `seed_of(text)`: the integer value of the first 8 hex characters of SHA-256(text).
- `uniform(seed, n)`: element i is a MurmurHash3-style 32-bit hash of the single block
  `k = i` with that seed, *without* xoring the key length into the state before the finaliser
  (Gonka's variant), converted to float32 and then divided by 2^32.
- `normal(seed, n)`: Box-Muller over `uniform(seed, 2*ceil(n/2))`, u1 (first half) clamped to
  >= 1e-10, u2 the second half; all z0 first, then all z1, cut to n, computed in float32.

The hash is computed with int64 tensors whose values always stay below 2^49, so no step
relies on integer overflow and the bits are identical on every device; on the CPU it runs
in NumPy `uint32`, whose arithmetic is defined modulo 2^32 (the same bits, about ten times
faster: PoC draws seq_len * hidden values per nonce). `uniform` is therefore bit-exact
everywhere; `normal` inherits the (ulp-level) differences of each device's `log`/`cos`/`sin`.

Return types: with `device=None` the functions return a NumPy float32 array (computed on the
CPU); with a device (`"cpu"`, `"cuda:0"`, a `torch.device`) they return a float32 torch
tensor on that device (CUDA where it is not usable raises DeviceUnavailable, as
`devices.resolve_device` does). torch and NumPy are imported on first use only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, overload

from gonka_cli.errors import InvalidComputeInput

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

    DeviceLike = str | torch.device

__all__ = [
    "murmur3",
    "murmur3_rows",
    "normal",
    "normal_rows",
    "normal_strong",
    "seed_of",
    "uniform",
    "uniform_rows",
    "unit_vector",
    "unit_vectors",
]

_MASK32 = 0xFFFFFFFF
_C1 = 0xCC9E2D51
_C2 = 0x1B873593
_F1 = 0x85EBCA6B
_F2 = 0xC2B2AE35
_TWO_POW_32 = 4294967296.0
_U1_MIN = 1e-10
_TWO_PI = 2.0 * math.pi


def seed_of(text: str) -> int:
    """The 32-bit seed of a string: int of the first 8 hex characters of SHA-256(text)."""
    return int(hashlib.sha256(_utf8(text)).hexdigest()[:8], 16)


def _utf8(text: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidComputeInput(f"a seed string must be text, got {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidComputeInput(
            "a seed string holds a lone surrogate: not valid Unicode"
        ) from None


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MASK32:
        raise InvalidComputeInput(f"a seed is an integer in [0, 2^32), got {seed!r}")
    return seed


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidComputeInput(f"a count of random values is an integer >= 0, got {n!r}")
    return n


def _mul32(a: torch.Tensor, b: int) -> torch.Tensor:
    """(a * b) mod 2^32 for 0 <= a, b < 2^32, splitting b so no int64 product overflows."""
    low = a * (b & 0xFFFF)
    high = ((a * (b >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK32


def _rotl32(x: torch.Tensor, r: int) -> torch.Tensor:
    return ((x << r) | (x >> (32 - r))) & _MASK32


def _murmur3_uint32(seeds: torch.Tensor, keys: torch.Tensor) -> npt.NDArray[np.uint32]:
    """`_murmur3_tensor` on the CPU in NumPy uint32 (wrapping arithmetic: the same bits)."""
    import numpy as np

    k = keys.numpy().astype(np.uint32)
    k *= np.uint32(_C1)
    k = (k << np.uint32(15)) | (k >> np.uint32(17))
    k *= np.uint32(_C2)
    h = seeds.numpy().astype(np.uint32) ^ k
    h = (h << np.uint32(13)) | (h >> np.uint32(19))
    h *= np.uint32(5)
    h += np.uint32(0xE6546B64)
    h ^= h >> np.uint32(16)
    h *= np.uint32(_F1)
    h ^= h >> np.uint32(13)
    h *= np.uint32(_F2)
    h ^= h >> np.uint32(16)
    out: npt.NDArray[np.uint32] = h
    return out


def _murmur3_tensor(seeds: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Hash int64 `keys` (values in [0, 2^32)) with int64 `seeds`; broadcasts; int64 out."""
    import torch

    if keys.device.type == "cpu" and seeds.device.type == "cpu":
        import numpy as np

        return torch.from_numpy(_murmur3_uint32(seeds, keys).astype(np.int64))
    k = _mul32(keys, _C1)
    k = _rotl32(k, 15)
    k = _mul32(k, _C2)
    h = seeds ^ k
    h = _rotl32(h, 13)
    h = (_mul32(h, 5) + 0xE6546B64) & _MASK32
    # Finaliser (fmix32); Gonka's variant does not xor the key length in first.
    h = h ^ (h >> 16)
    h = _mul32(h, _F1)
    h = h ^ (h >> 13)
    h = _mul32(h, _F2)
    return h ^ (h >> 16)


def _device(device: DeviceLike | None) -> torch.device:
    """The device to draw on; CUDA where it is not usable raises DeviceUnavailable."""
    import torch

    if device is None:
        return torch.device("cpu")
    from gonka_cli.compute.devices import resolve_device

    return resolve_device(device)


def murmur3(seed: int, indices: torch.Tensor) -> torch.Tensor:
    """The 32-bit hash of each index with `seed`, as int64 values in [0, 2^32).

    `indices` is an integer tensor with values in [0, 2^32); the result has its shape and
    device. This is the score PoC's pick step sorts (reference §2, step 4).
    """
    import torch

    _check_seed(seed)
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise InvalidComputeInput("murmur3 hashes integer indices")
    keys = indices.to(torch.int64) & _MASK32
    seeds = torch.tensor(seed, dtype=torch.int64, device=indices.device)
    return _murmur3_tensor(seeds, keys)


def murmur3_rows(seeds: Sequence[int], indices: torch.Tensor) -> torch.Tensor:
    """`murmur3(seed, indices)` for each seed, stacked: int64 [len(seeds), *indices.shape]."""
    import torch

    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise InvalidComputeInput("murmur3 hashes integer indices")
    keys = indices.to(torch.int64) & _MASK32
    seed_t = torch.tensor([_check_seed(s) for s in seeds], dtype=torch.int64, device=keys.device)
    return _murmur3_tensor(seed_t.view(-1, *([1] * keys.dim())), keys[None])


def _uniform_rows(seeds: Sequence[int], n: int, device: torch.device) -> torch.Tensor:
    import torch

    seed_t = torch.tensor([_check_seed(s) for s in seeds], dtype=torch.int64, device=device)
    keys = torch.arange(n, dtype=torch.int64, device=device)
    # float32 first, then the division: that rounding is part of the spec (NumPy's and
    # torch's conversions both round to nearest even).
    if device.type == "cpu":
        import numpy as np

        values = _murmur3_uint32(seed_t[:, None], keys[None, :]).astype(np.float32)
        return torch.from_numpy(values) / _TWO_POW_32
    hashes = _murmur3_tensor(seed_t[:, None], keys[None, :])
    return hashes.to(torch.float32) / _TWO_POW_32


def _normal_rows(
    seeds: Sequence[int], n: int, device: torch.device, compute_dtype: torch.dtype
) -> torch.Tensor:
    import torch

    half = (n + 1) // 2
    u = _uniform_rows(seeds, 2 * half, device).to(compute_dtype)
    u1 = u[:, :half].clamp_min(_U1_MIN)
    u2 = u[:, half:]
    radius = torch.sqrt(-2.0 * torch.log(u1))
    angle = _TWO_PI * u2
    z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return z[:, :n].to(torch.float32)


def uniform_rows(seeds: Sequence[int], n: int, device: DeviceLike) -> torch.Tensor:
    """`uniform(seed, n)` for each seed, stacked: a float32 tensor [len(seeds), n] on `device`."""
    return _uniform_rows(seeds, _check_count(n), _device(device))


def normal_rows(
    seeds: Sequence[int], n: int, device: DeviceLike, *, precise: bool = False
) -> torch.Tensor:
    """`normal(seed, n)` for each seed, stacked: a float32 tensor [len(seeds), n] on `device`.

    With `precise=True` the Box-Muller step runs in float64 and is rounded to float32 at the
    end. That is not the PoC spec (which is float32 throughout); it is for values that must be
    the same on every machine bit for bit (the built-in models' weights): a float64 `log` or
    `cos` that is one ulp off changes the float32 result only about once in 2^29 values.
    """
    import torch

    dtype = torch.float64 if precise else torch.float32
    return _normal_rows(seeds, _check_count(n), _device(device), dtype)


@overload
def uniform(seed: int, n: int, device: None = None) -> npt.NDArray[np.float32]: ...
@overload
def uniform(seed: int, n: int, device: DeviceLike) -> torch.Tensor: ...
def uniform(
    seed: int, n: int, device: DeviceLike | None = None
) -> npt.NDArray[np.float32] | torch.Tensor:
    """n uniform values in [0, 1] from `seed` (PoC v2 spec, bit-exact on every device).

    Returns a NumPy float32 array when `device` is None, else a float32 tensor on `device`.
    """
    values = _uniform_rows([seed], _check_count(n), _device(device))[0]
    return values.numpy() if device is None else values


@overload
def normal(seed: int, n: int, device: None = None) -> npt.NDArray[np.float32]: ...
@overload
def normal(seed: int, n: int, device: DeviceLike) -> torch.Tensor: ...
def normal(
    seed: int, n: int, device: DeviceLike | None = None
) -> npt.NDArray[np.float32] | torch.Tensor:
    """n standard normal values from `seed` by Box-Muller in float32 (PoC v2 spec).

    Returns a NumPy float32 array when `device` is None, else a float32 tensor on `device`.
    """
    import torch

    values = _normal_rows([seed], _check_count(n), _device(device), torch.float32)[0]
    return values.numpy() if device is None else values


def _strong_seeds(text: str) -> list[int]:
    digest = hashlib.sha256(_utf8(text)).digest()
    return [int.from_bytes(digest[i : i + 4], "big") for i in range(0, 32, 4)]


@overload
def normal_strong(text: str, n: int, device: None = None) -> npt.NDArray[np.float32]: ...
@overload
def normal_strong(text: str, n: int, device: DeviceLike) -> torch.Tensor: ...
def normal_strong(
    text: str, n: int, device: DeviceLike | None = None
) -> npt.NDArray[np.float32] | torch.Tensor:
    """The "stronger" input generator (a governance flag in Gonka).

    The 32 bytes of SHA-256(text) give 8 big-endian 32-bit seeds; with `s = ceil(n/8)`,
    seed k draws segment k as `normal(seed_k, min(s, n - k*s))` (the last segment at its own,
    shorter length, which changes its Box-Muller pairing; segments that would start past n
    are not drawn) and the segments are concatenated (spec §2.5).
    """
    import torch

    _check_count(n)
    dev = _device(device)
    segment = (n + 7) // 8
    pieces = [
        _normal_rows([seed], min(segment, n - k * segment), dev, torch.float32)[0]
        for k, seed in enumerate(_strong_seeds(text))
        if k * segment < n
    ]
    values = torch.cat(pieces) if pieces else torch.empty(0, dtype=torch.float32, device=dev)
    return values.numpy() if device is None else values


def unit_vectors(texts: Sequence[str], dim: int, device: DeviceLike) -> torch.Tensor:
    """`normal(seed_of(text), dim)` divided by its L2 norm, per text: float32 [len, dim]."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise InvalidComputeInput(f"a unit vector needs dim >= 1, got {dim!r}")
    rows = normal_rows([seed_of(t) for t in texts], dim, device)
    unit: torch.Tensor = rows / rows.norm(dim=1, keepdim=True)
    return unit


@overload
def unit_vector(text: str, dim: int, device: None = None) -> npt.NDArray[np.float32]: ...
@overload
def unit_vector(text: str, dim: int, device: DeviceLike) -> torch.Tensor: ...
def unit_vector(
    text: str, dim: int, device: DeviceLike | None = None
) -> npt.NDArray[np.float32] | torch.Tensor:
    """The unit vector of a seed string: `normal(seed_of(text), dim)` / its L2 norm (float32).

    Returns a NumPy array when `device` is None, else a tensor on `device`.
    """
    values = unit_vectors([text], dim, _device(device))[0]
    return values.numpy() if device is None else values
