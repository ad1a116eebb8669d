"""Proof of Compute v2: nonces to artifacts, exactly as Gonka's ML node computes them (spec §2).

For each nonce, with `bh` the block hash and `pk` the public key, both strings taken verbatim
(DAPI sends the block hash as upper-case hex and the key as lower-case hex; the golden file
uses `TEST_BLOCK` / `test_pub_keys`; their format is the caller's business):

1. Inputs: `normal(seed_of(f"{bh}_{pk}_nonce{nonce}"), seq_len*dim)` shaped (seq_len, dim),
   cast to the model's dtype and fed in place of token embeddings, unscaled (causal,
   positions 0..seq_len-1). With the stronger generator (`strong_inputs`),
   `rng.normal_strong` of the same string.
2. After every decoder layer i, the Householder reflection x <- x - 2 (x.v) v in the model's
   dtype, v = normalize(normal(seed_of(f"{bh}_layer_{i}_householder"), dim)) cast to it.
3. The final norm, the last position, float32 from there on.
4. A row holding NaN is dropped and reported (`PocBatch.dropped`), not raised.
   The rest are normalized as `x / (||x|| + 1e-8)`.
5. Pick k = 12 coordinates, in the order CUDA's `topk(-scores, 12, sorted=False)` returns
   them (spec §2.3): score index j by `murmur3(seed_of(f"{bh}_{pk}_nonce_{nonce}_pick_12"),
   j)`; the 11 indices with the smallest scores in ascending index order, then the index with
   the 12th-smallest score.
6. Eleven Householder reflections of the 12-vector, reflection j with
   normalize(normal(seed_of(f"{bh}_{pk}_nonce_{nonce}_haar_hh_12_{j}"), 12));
   `y / (||y|| + 1e-8)`.
7. The artifact: the 12 values as fp16 little-endian, 24 bytes (`artifacts.encode_artifact`);
   a row that is not finite in fp16 is dropped too.

Steps 4-7 (`artifacts_from_hidden`) run on the CPU in float32 whatever device ran the model,
so every model (built-in, checkpoint, ONNX) shares them, and the inputs (`poc_inputs`) and
reflections (`householder_vectors`) are public for the same reason. Nonces are int32.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gonka_cli.compute import rng
from gonka_cli.compute.artifacts import K_DIM, NONCE_MAX, check_nonce, encode_artifact
from gonka_cli.errors import InvalidComputeInput

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

    from gonka_cli.compute.models import GonkaModel, ModelSpec

    HiddenStates = torch.Tensor | npt.NDArray[np.floating[Any]]

logger = logging.getLogger(__name__)

__all__ = [
    "PocBatch",
    "PocInputParams",
    "artifacts_from_hidden",
    "check_seed_text",
    "choose_batch_size",
    "compute_artifacts",
    "compute_poc",
    "householder_vectors",
    "nonce_iterator",
    "per_nonce_bytes",
    "pick_indices",
    "poc_flops",
    "poc_inputs",
]

NORM_EPS = 1e-8
#: Upper bounds for the automatic batch size (a larger batch stops paying off long before).
MAX_BATCH_CPU = 16
MAX_BATCH_GPU = 512
#: Share of free memory the automatic batch size may plan to use.
MEMORY_SHARE_CPU = 0.25
MEMORY_SHARE_GPU = 0.6
_RNG_ELEMENTS = 1 << 23  # random values drawn per call: bounds the int64 temporaries
NON_FINITE = "hidden states hold NaN or infinite values"


@dataclass(frozen=True)
class PocInputParams:
    """What a PoC round fixes for the inputs besides the model: their length and generator.

    (The validation parameters live in `validation.PocParams`.)
    """

    seq_len: int
    strong_inputs: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int):
            raise InvalidComputeInput("seq_len must be an integer")
        if self.seq_len < 1:
            raise InvalidComputeInput(f"seq_len must be >= 1, got {self.seq_len}")

    @classmethod
    def for_model(
        cls, spec: ModelSpec, *, seq_len: int | None = None, strong_inputs: bool = False
    ) -> PocInputParams:
        """The model's PoC parameters (its `poc_seq_len` unless `seq_len` is given)."""
        length = spec.poc_seq_len if seq_len is None else seq_len
        params = cls(seq_len=length, strong_inputs=strong_inputs)
        if params.seq_len > spec.max_seq_len:
            raise InvalidComputeInput(
                f"seq_len {params.seq_len} exceeds {spec.name}'s {spec.max_seq_len} positions"
            )
        return params

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- inputs ------------------------------------------------------------------------------


def check_seed_text(name: str, value: str) -> str:
    """Return a block hash or public key unchanged: any non-empty string, used verbatim."""
    if not isinstance(value, str) or not value:
        raise InvalidComputeInput(f"{name} must be a non-empty string, got {value!r:.80}")
    return value


def _check_size(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidComputeInput(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_nonces(nonces: Sequence[int]) -> list[int]:
    if isinstance(nonces, (str, bytes)) or not isinstance(nonces, Sequence):
        raise InvalidComputeInput("nonces must be a list of integers")
    return [check_nonce(n) for n in nonces]


def householder_vectors(
    block_hash: str, n_layers: int, dim: int, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """The per-layer reflection vectors of a round: float32 [n_layers, dim], unit length."""
    check_seed_text("block hash", block_hash)
    layers = range(_check_size("n_layers", n_layers, 0))
    texts = [f"{block_hash}_layer_{i}_householder" for i in layers]
    return rng.unit_vectors(texts, dim, device)


def poc_inputs(
    block_hash: str,
    public_key_hex: str,
    nonces: Sequence[int],
    seq_len: int,
    dim: int,
    device: str | torch.device = "cpu",
    *,
    strong: bool = False,
) -> torch.Tensor:
    """The input embeddings of `nonces`: float32 [len(nonces), seq_len, dim] on `device`."""
    import torch

    check_seed_text("block hash", block_hash)
    pk = check_seed_text("public key", public_key_hex)
    nonce_list = _check_nonces(nonces)
    n = _check_size("seq_len", seq_len, 1) * _check_size("dim", dim, 1)
    texts = [f"{block_hash}_{pk}_nonce{nonce}" for nonce in nonce_list]
    if strong:
        rows = [rng.normal_strong(text, n, device) for text in texts]
        return torch.stack(rows).view(len(texts), seq_len, dim) if rows else _empty(dim, device)
    out = torch.empty((len(texts), n), dtype=torch.float32, device=device)
    step = max(1, _RNG_ELEMENTS // max(n, 1))
    for i in range(0, len(texts), step):
        seeds = [rng.seed_of(t) for t in texts[i : i + step]]
        out[i : i + step] = rng.normal_rows(seeds, n, device)
    return out.view(len(texts), seq_len, dim)


def _empty(dim: int, device: str | torch.device) -> torch.Tensor:
    import torch

    return torch.empty((0, 0, dim), dtype=torch.float32, device=device)


# --- hidden state -> artifact ------------------------------------------------------------


@dataclass(frozen=True)
class PocBatch:
    """Artifacts of a list of nonces: `nonces[i]` has `artifacts[i]` (24 bytes); `dropped`
    are the nonces whose hidden state held NaN (spec §2.4: absent from the answer)."""

    nonces: tuple[int, ...]
    artifacts: tuple[bytes, ...]
    dropped: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "nonces": list(self.nonces),
            "artifacts": [a.hex() for a in self.artifacts],
            "dropped": list(self.dropped),
        }


def _normalize(x: torch.Tensor) -> torch.Tensor:
    unit: torch.Tensor = x / (x.norm(dim=-1, keepdim=True) + NORM_EPS)
    return unit


def pick_indices(scores: torch.Tensor, k: int = K_DIM) -> torch.Tensor:
    """The k coordinates PoC picks per row of Murmur3 `scores` [B, dim], in CUDA's order.

    `torch.topk(-scores, k, sorted=False)` on NVIDIA GPUs writes the elements strictly
    better than the k-th in ascending index order, then the k-th itself (spec §2.3); the
    scores never tie (Murmur3 with a fixed seed is a bijection on 32-bit keys).
    """
    import torch

    if scores.dim() != 2 or not 1 <= k <= scores.shape[1]:
        raise InvalidComputeInput(f"cannot pick {k} of scores shaped {list(scores.shape)}")
    smallest = torch.topk(scores, k, dim=1, largest=False, sorted=True).indices
    head = torch.sort(smallest[:, : k - 1], dim=1).values
    return torch.cat([head, smallest[:, k - 1 :]], dim=1)


def artifacts_from_hidden(
    hidden: HiddenStates, block_hash: str, public_key_hex: str, nonces: Sequence[int]
) -> PocBatch:
    """Steps 4-7 for a batch: last hidden states [B, dim] (tensor or array) -> artifacts.

    Runs on the CPU in float32: drop NaN rows, normalize, pick 12 coordinates in CUDA's
    order, 11 seeded Householder reflections, normalize, fp16 little-endian.
    """
    import torch

    check_seed_text("block hash", block_hash)
    pk = check_seed_text("public key", public_key_hex)
    nonce_list = _check_nonces(nonces)
    h = torch.as_tensor(hidden).detach().to("cpu", torch.float32)
    if h.dim() != 2 or h.shape[0] != len(nonce_list):
        raise InvalidComputeInput(
            f"hidden states must be [{len(nonce_list)}, dim], got {list(h.shape)}"
        )
    if h.shape[1] < K_DIM:
        raise InvalidComputeInput(f"hidden size {h.shape[1]} is below the {K_DIM} picked")
    keep = ~torch.isnan(h).any(dim=1)
    dropped = [n for n, ok in zip(nonce_list, keep.tolist(), strict=True) if not ok]
    kept = [n for n, ok in zip(nonce_list, keep.tolist(), strict=True) if ok]
    if not kept:
        return PocBatch((), (), tuple(dropped))
    h = _normalize(h[keep])
    base = [f"{block_hash}_{pk}_nonce_{nonce}" for nonce in kept]
    pick_seeds = [rng.seed_of(f"{b}_pick_{K_DIM}") for b in base]
    scores = rng.murmur3_rows(pick_seeds, torch.arange(h.shape[1]))
    y = torch.gather(h, 1, pick_indices(scores))
    texts = [f"{b}_haar_hh_{K_DIM}_{j}" for b in base for j in range(K_DIM - 1)]
    reflections = rng.unit_vectors(texts, K_DIM, "cpu").view(len(base), K_DIM - 1, K_DIM)
    for j in range(K_DIM - 1):
        v = reflections[:, j]
        y = y - 2.0 * (y * v).sum(dim=1, keepdim=True) * v
    y = _normalize(y)
    finite = torch.isfinite(y.half()).all(dim=1).tolist()
    out_nonces: list[int] = []
    out: list[bytes] = []
    for nonce, row, ok in zip(kept, y.tolist(), finite, strict=True):
        if ok:
            out_nonces.append(nonce)
            out.append(encode_artifact(row))
        else:
            dropped.append(nonce)
    return PocBatch(tuple(out_nonces), tuple(out), tuple(dropped))


# --- batching -----------------------------------------------------------------------------


def _available_cpu_bytes() -> int:
    import psutil  # type: ignore[import-untyped]

    return int(psutil.virtual_memory().available)


def per_nonce_bytes(spec: ModelSpec, seq_len: int, element_bytes: int, on_cpu: bool) -> int:
    """A generous estimate of the memory one nonce of a batch needs during the forward."""
    t, d = seq_len, spec.dim
    activations = t * (8 * d + 3 * spec.ffn_dim) * element_bytes + t * d * 4 * 4
    # The CPU kernels materialize attention scores; the GPU's fused kernels do not.
    scores = spec.n_heads * t * t * (4 if on_cpu else 0) * 2
    inputs = t * d * 4 * 2
    return activations + scores + inputs


def poc_flops(spec: ModelSpec, seq_len: int) -> int:
    """Matmul FLOPs of one nonce's forward (what benchmarks divide by time).

    Per layer, with T = seq_len, d = dim, q = the query width (n_heads * head_dim, which
    Qwen3 decouples from d), kv = the key/value width and f = ffn_dim (an MoE's active
    width): projections 2T(2dq + 2d*kv), MLP 6Tdf, attention scores and values 2T^2 q
    (causal: half of the full 4T^2 q). Norms, RoPE, routers and the reflections are left out
    (< 1%); PoC reads the last hidden state, so there is no output head.
    """
    t, d, f = seq_len, spec.dim, spec.ffn_dim
    q = spec.n_heads * spec.head_dim
    kv = spec.n_kv_heads * spec.head_dim
    per_layer = 2 * t * (2 * d * q + 2 * d * kv) + 6 * t * d * f + 2 * t * t * q
    return spec.n_layers * per_layer


def choose_batch_size(model: GonkaModel, seq_len: int) -> int:
    """The number of nonces per forward that fits in a share of free memory, capped.

    CUDA: `torch.cuda.mem_get_info` (free memory after the model is loaded); CPU: the
    available system memory (psutil).
    """
    import torch

    device = model.device
    element = torch.empty((), dtype=model.dtype).element_size()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget, cap = int(free * MEMORY_SHARE_GPU), MAX_BATCH_GPU
    else:
        budget, cap = int(_available_cpu_bytes() * MEMORY_SHARE_CPU), MAX_BATCH_CPU
    need = per_nonce_bytes(model.spec, seq_len, element, device.type != "cuda")
    size = max(1, min(cap, budget // max(need, 1)))
    logger.debug("batch size %d (%d bytes per nonce, budget %d)", size, need, budget)
    return size


# --- the whole pipeline ---------------------------------------------------------------------


def compute_poc(
    model: GonkaModel,
    block_hash: str,
    public_key: str,
    nonces: Sequence[int],
    *,
    params: PocInputParams | None = None,
    batch_size: int | None = None,
) -> PocBatch:
    """The artifacts of `nonces` on `model` (a built-in model or a checkpoint: one path).

    `block_hash` and `public_key` are used verbatim. `params` defaults to the model's PoC
    parameters; `batch_size` (nonces per forward) defaults to `choose_batch_size`. Nonces
    whose hidden state holds NaN are left out of the artifacts and listed in `dropped` (and
    logged). Raises InvalidComputeInput for a bad nonce, string or batch size.
    """
    import torch

    check_seed_text("block hash", block_hash)
    pk = check_seed_text("public key", public_key)
    nonce_list = _check_nonces(nonces)
    spec = model.spec
    poc = params if params is not None else PocInputParams.for_model(spec)
    if poc.seq_len > spec.max_seq_len:
        raise InvalidComputeInput(f"seq_len {poc.seq_len} exceeds {spec.max_seq_len}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise InvalidComputeInput(f"batch size must be an integer >= 1, got {batch_size!r}")
    if not nonce_list:
        return PocBatch((), ())
    size = batch_size or choose_batch_size(model, poc.seq_len)
    device, dtype = model.device, model.dtype
    done: list[int] = []
    artifacts: list[bytes] = []
    dropped: list[int] = []
    with torch.inference_mode():
        reflections = householder_vectors(block_hash, spec.n_layers, spec.dim, device)
        for i in range(0, len(nonce_list), size):
            batch = nonce_list[i : i + size]
            inputs = poc_inputs(
                block_hash, pk, batch, poc.seq_len, spec.dim, device, strong=poc.strong_inputs
            )
            hidden = model.poc_forward(inputs.to(dtype), reflections)
            result = artifacts_from_hidden(hidden, block_hash, pk, batch)
            done.extend(result.nonces)
            artifacts.extend(result.artifacts)
            dropped.extend(result.dropped)
    if dropped:
        logger.warning(
            "%d of %d nonces dropped: their hidden state held NaN (first: %d)",
            len(dropped),
            len(nonce_list),
            dropped[0],
        )
    return PocBatch(tuple(done), tuple(artifacts), tuple(dropped))


def compute_artifacts(
    model: GonkaModel,
    block_hash: str,
    public_key_hex: str,
    nonces: Sequence[int],
    *,
    params: PocInputParams | None = None,
    batch_size: int | None = None,
) -> list[bytes]:
    """The 24-byte artifact of each nonce, in the order given (an empty list gives []).

    `compute_poc` for callers that need one artifact per nonce (the devnet miner and
    validator): a dropped NaN row cannot be answered there, so it raises
    InvalidComputeInput (`NON_FINITE`) instead.
    """
    result = compute_poc(
        model, block_hash, public_key_hex, nonces, params=params, batch_size=batch_size
    )
    if result.dropped:
        raise InvalidComputeInput(NON_FINITE)
    return list(result.artifacts)


def nonce_iterator(
    node_id: int, node_count: int, group_id: int = 0, n_groups: int = 1, start: int = 0
) -> Iterator[int]:
    """The nonces of one ML node's GPU group, in increasing order.

    Nonce x is `node_id + group_id*node_count + x*(n_groups*node_count)`; x runs from
    `start` (a restarted miner passes how many it already did) until the nonce would leave
    int32. Nodes 0..node_count-1 and groups 0..n_groups-1 never share a nonce.
    """
    for name, value in (
        ("node_id", node_id),
        ("node_count", node_count),
        ("group_id", group_id),
        ("n_groups", n_groups),
        ("start", start),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidComputeInput(f"{name} must be an integer, got {value!r}")
    if node_count < 1 or n_groups < 1:
        raise InvalidComputeInput("node_count and n_groups must be >= 1")
    if not 0 <= node_id < node_count:
        raise InvalidComputeInput(f"node_id must be in [0, {node_count}), got {node_id}")
    if not 0 <= group_id < n_groups:
        raise InvalidComputeInput(f"group_id must be in [0, {n_groups}), got {group_id}")
    if start < 0:
        raise InvalidComputeInput(f"start must be >= 0, got {start}")
    return _nonces(node_id + group_id * node_count, n_groups * node_count, start)


def _nonces(first: int, stride: int, start: int) -> Iterator[int]:
    nonce = first + start * stride
    while nonce <= NONCE_MAX:
        yield nonce
        nonce += stride
