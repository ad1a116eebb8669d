"""The engine's model interface, and the built-in models: seeded Llama-style decoders that
any machine rebuilds in seconds.

`GonkaModel` is the interface every engine model implements (its docstring is the contract):
the built-in `BuiltinModel` here, and `checkpoints.CheckpointModel` around a Hugging Face
checkpoint. `load_model` returns either, by name, directory or repo id.

A model is RMSNorm, rotary positions (RoPE), grouped-query attention through
`scaled_dot_product_attention` (causal) and a SwiGLU MLP, in plain torch. Its weights are not
downloaded: like PoC v1 (reference §2 "PoC v1"), they come from a pool of normal(0, 0.02)
values and each parameter is a slice of that pool.

- Pool: chunks of `POOL_CHUNK` values,
  chunk i = `normal_rows([seed_of(f"{name}_{weights_seed}_{i}")], precise=True) * 0.02`.
  The pool is as long as the largest parameter (rounded up to a chunk, at most `POOL_MAX`),
  so no parameter repeats itself.
- Parameter `p`: the pool read circularly from offset
  `int(SHA-256(f"{name}_{p}")[:8 bytes], big-endian) % pool_size`, times a per-parameter gain
  (`param_std(p) / 0.02`). Norm weights are ones.
- `BuiltinModel.fingerprint`: SHA-256 over, for each parameter in `named_parameters()`
  order, the line `f"{name}:{'x'.join(shape)}\\n"` then its float32 values little-endian.
  It names the weights, whatever dtype the model then runs in.

Where we differ from PoC v1 (a flat std of 0.02): the gain gives linear layers a fan-in init
(std 1/sqrt(fan_in)), token embeddings std 1 (the scale of PoC's inputs) and the output head
std `LOGIT_STD`/sqrt(dim). With a flat 0.02 the layers of a small model barely move the
residual stream, so PoC could skip them: gonka-small's artifacts computed from the inputs
alone landed within L2 0.23 of the real ones, under mainnet's 0.4 mismatch threshold. And random
heads give a nearly flat next-token distribution (logit std about 0.2), where inference
replay cannot tell two models apart; trained models are peaked, so logits get a std of
about `LOGIT_STD`.

Two forwards:

- `forward_tokens(tokens, cache)`: token ids in, float32 logits out, with an optional cache
  (`new_cache`) for prefill and decode.
- `poc_forward(embeddings, householder)`: PoC's forward (see its docstring). For built-in
  models it is a pure tensor function, and `PocForward(model)` wraps it as a module for
  `torch.onnx.export`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gonka_cli.compute import rng
from gonka_cli.compute.devices import free_memory_bytes, resolve_device, resolve_dtype
from gonka_cli.compute.tokenizer import STOP_IDS, VOCAB_SIZE
from gonka_cli.errors import (
    InsufficientMemory,
    InvalidComputeInput,
    UnknownModel,
)

logger = logging.getLogger(__name__)

__all__ = [
    "MODELS",
    "BuiltinModel",
    "GonkaModel",
    "KVCache",
    "ModelCache",
    "ModelSpec",
    "PocForward",
    "build_model",
    "clear_model_cache",
    "get_spec",
    "householder",
    "list_models",
    "load_builtin",
    "load_model",
    "param_std",
    "quantized_copy",
    "resolve_device",
    "resolve_dtype",
]

INIT_STD = 0.02
LOGIT_STD = 4.0
POOL_CHUNK = 1 << 16
POOL_MAX = 1 << 25
_POOL_BLOCK_CHUNKS = 64  # chunks drawn per call: int64 temporaries of 32 MB each


@dataclass(frozen=True)
class ModelSpec:
    """The shape and identity of a model: a built-in one, or a checkpoint's (then `name` is
    its repo id or directory, `architecture` its `model_type`, `head_dim_override` a head size
    decoupled from `dim / n_heads` (Qwen3), `n_params` its exact parameter count, and
    `ffn_dim` the FFN width one token runs through: an MoE's expert width times the experts
    per token)."""

    name: str
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int
    max_seq_len: int
    poc_seq_len: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    weights_seed: int = 1
    description: str = ""
    architecture: str = "gonka"
    head_dim_override: int = 0
    n_params: int = 0

    def __post_init__(self) -> None:
        if self.head_dim_override:
            if self.head_dim_override % 2:
                raise InvalidComputeInput(f"{self.name}: the head size must be even")
        elif self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise InvalidComputeInput(f"{self.name}: dim must split into heads of even size")
        if self.n_heads % self.n_kv_heads:
            raise InvalidComputeInput(f"{self.name}: n_heads must be a multiple of n_kv_heads")
        if not 1 <= self.poc_seq_len <= self.max_seq_len:
            raise InvalidComputeInput(f"{self.name}: poc_seq_len must be in [1, max_seq_len]")

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.dim // self.n_heads

    @property
    def param_count(self) -> int:
        """Number of parameters (a built-in model's: embeddings and output head, untied)."""
        if self.n_params:
            return self.n_params
        d, kv = self.dim, self.n_kv_heads * self.head_dim
        attention = 2 * d * d + 2 * d * kv
        layer = attention + 3 * d * self.ffn_dim + 2 * d
        return self.n_layers * layer + 2 * self.vocab_size * d + d

    @property
    def largest_param(self) -> int:
        return max(self.vocab_size * self.dim, self.dim * self.ffn_dim, self.dim * self.dim)

    @property
    def pool_size(self) -> int:
        """Length of the weight pool: the largest parameter rounded up to a chunk, capped."""
        chunks = -(-self.largest_param // POOL_CHUNK)
        return min(chunks * POOL_CHUNK, POOL_MAX)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(head_dim=self.head_dim, param_count=self.param_count)
        return data


def _spec(**kwargs: Any) -> ModelSpec:
    return ModelSpec(vocab_size=VOCAB_SIZE, **kwargs)


_CATALOGUE = (
    _spec(
        name="gonka-tiny",
        dim=128,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=512,
        max_seq_len=512,
        poc_seq_len=32,
        description="about 1 M parameters; for tests",
    ),
    _spec(
        name="gonka-small",
        dim=512,
        n_layers=8,
        n_heads=8,
        n_kv_heads=4,
        ffn_dim=1536,
        max_seq_len=2048,
        poc_seq_len=256,
        description="about 25 M parameters; the CPU devnet default",
    ),
    _spec(
        name="gonka-medium",
        dim=1024,
        n_layers=16,
        n_heads=16,
        n_kv_heads=8,
        ffn_dim=2816,
        max_seq_len=2048,
        poc_seq_len=512,
        description="about 190 M parameters; small GPUs and fast CPUs",
    ),
    _spec(
        name="gonka-1b",
        dim=2048,
        n_layers=16,
        n_heads=32,
        n_kv_heads=8,
        ffn_dim=8192,
        max_seq_len=4096,
        poc_seq_len=1024,
        rope_theta=500000.0,
        description="about 1 B parameters (Llama-3.2-1B body); for GPUs",
    ),
    _spec(
        name="gonka-poc-v1",
        dim=1024,
        n_layers=32,
        n_heads=32,
        n_kv_heads=32,
        ffn_dim=27392,
        max_seq_len=2048,
        poc_seq_len=128,
        rope_theta=500000.0,
        description=(
            "the PoC v1 testnet shape (about 2.8 B parameters, full multi-head attention); "
            "our byte vocabulary replaces its 8196 tokens, which PoC never reads"
        ),
    ),
)

#: The built-in models by name.
MODELS: Mapping[str, ModelSpec] = MappingProxyType({s.name: s for s in _CATALOGUE})


def list_models() -> tuple[ModelSpec, ...]:
    """The catalogue, smallest first."""
    return tuple(MODELS.values())


def get_spec(name: str) -> ModelSpec:
    """The spec of a built-in model; UnknownModel names the known ones."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        known = ", ".join(MODELS)
        raise UnknownModel(f"unknown model {name!r}; known models: {known}") from None


# --- the network ---------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 whatever the model's dtype."""

    def __init__(self, dim: int, eps: float, device: torch.device | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (rotate-half layout) x [B, H, T, hd] by position tables cos/sin [T, hd/2]."""
    half = x.shape[-1] // 2
    xf = x.float()
    x1, x2 = xf[..., :half], xf[..., half:]
    rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return rotated.to(x.dtype)


def _repeat_kv(x: torch.Tensor, times: int) -> torch.Tensor:
    """[B, KV, T, hd] -> [B, KV*times, T, hd]; each kv head serves `times` query heads."""
    if times == 1:
        return x
    b, kv, t, hd = x.shape
    return x[:, :, None].expand(b, kv, times, t, hd).reshape(b, kv * times, t, hd)


class Attention(nn.Module):
    def __init__(self, spec: ModelSpec, device: torch.device | None = None) -> None:
        super().__init__()
        self.n_heads = spec.n_heads
        self.n_kv_heads = spec.n_kv_heads
        self.head_dim = spec.head_dim
        q_dim, kv_dim = spec.n_heads * spec.head_dim, spec.n_kv_heads * spec.head_dim
        self.wq = nn.Linear(spec.dim, q_dim, bias=False, device=device)
        self.wk = nn.Linear(spec.dim, kv_dim, bias=False, device=device)
        self.wv = nn.Linear(spec.dim, kv_dim, bias=False, device=device)
        self.wo = nn.Linear(q_dim, spec.dim, bias=False, device=device)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None,
        start: int,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q = _apply_rope(q, cos, sin)
        k = _apply_rope(k, cos, sin)
        if cache is not None:
            cache_k, cache_v = cache
            cache_k[:, :, start : start + t] = k
            cache_v[:, :, start : start + t] = v
            k = cache_k[:, :, : start + t]
            v = cache_v[:, :, : start + t]
        rep = self.n_heads // self.n_kv_heads
        k = _repeat_kv(k, rep)
        v = _repeat_kv(v, rep)
        if start == 0:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif t == 1:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            # Queries at absolute positions start..start+t-1 see keys up to their own position
            # (is_causal would align the mask top-left, which is wrong with a cache).
            rows = torch.arange(start, start + t, device=x.device)[:, None]
            cols = torch.arange(start + t, device=x.device)[None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=cols <= rows)
        projected: torch.Tensor = self.wo(
            out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim)
        )
        return projected


class FeedForward(nn.Module):
    def __init__(self, spec: ModelSpec, device: torch.device | None = None) -> None:
        super().__init__()
        self.w1 = nn.Linear(spec.dim, spec.ffn_dim, bias=False, device=device)
        self.w2 = nn.Linear(spec.ffn_dim, spec.dim, bias=False, device=device)
        self.w3 = nn.Linear(spec.dim, spec.ffn_dim, bias=False, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.w2(F.silu(self.w1(x)) * self.w3(x))
        return out


class DecoderLayer(nn.Module):
    def __init__(self, spec: ModelSpec, device: torch.device | None = None) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(spec.dim, spec.norm_eps, device)
        self.attention = Attention(spec, device)
        self.ffn_norm = RMSNorm(spec.dim, spec.norm_eps, device)
        self.feed_forward = FeedForward(spec, device)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin, cache, start)
        out: torch.Tensor = h + self.feed_forward(self.ffn_norm(h))
        return out


def householder(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """PoC's reflection of the residual stream, x <- x - 2 (x.v) v along the last axis.

    As Gonka's vLLM computes it (spec §2.1 step 3): `v` is cast to x's dtype, and the dot
    product and the update run in that dtype (bf16 for a bf16 model).
    """
    vx = v.to(x.dtype)
    dot = (x * vx).sum(dim=-1, keepdim=True)
    return x - 2 * dot * vx


class ModelCache:
    """The keys and values of the positions a model has seen (`GonkaModel.new_cache`).

    `length` is how many positions it holds; `max_len` how many it can hold.
    `forward_tokens` writes the new positions and advances `length`.
    """

    length: int

    @property
    def max_len(self) -> int:
        raise NotImplementedError


class KVCache(ModelCache):
    """A built-in model's cache, per layer: [B, n_kv_heads, max_len, hd] keys and values."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        self.keys = keys
        self.values = values
        self.length = 0

    @property
    def max_len(self) -> int:
        return int(self.keys[0].shape[2])


class GonkaModel(nn.Module):
    """The engine's model interface: what `poc`, `inference` and the miner use of a model.

    `load_model` returns one: a `BuiltinModel` (seeded, byte tokenizer) or a
    `checkpoints.CheckpointModel` (a Hugging Face checkpoint run by `transformers`). Models
    are in eval mode, without gradients, and shared by `load_model`: do not modify them.

    Attributes:

    - `spec` (`ModelSpec`): `name` (built-in name, repo id or directory), `architecture`,
      `dim` (hidden size), `n_layers` (decoder layers: one PoC reflection each), `n_heads`,
      `n_kv_heads`, `head_dim`, `ffn_dim`, `vocab_size` (rows of the logits, which can exceed
      the tokenizer's vocabulary: padding rows), `max_seq_len` (positions a sequence may use),
      `poc_seq_len` (the default PoC sequence length), `param_count`.
    - `fingerprint` (str, hex): names the weights; equal fingerprints compute the same.
    - `device` (`torch.device`): where inputs go (the first device of a model split across
      GPUs); `dtype` (`torch.dtype`): the weights' and activations' dtype.
    - `tokenizer`: None for built-in models (they use `compute.tokenizer`'s byte tokenizer);
      for a checkpoint, its `transformers` fast tokenizer (`PreTrainedTokenizerFast`),
      with its chat template (`tokenizer.chat_template`, `apply_chat_template`) and
      `eos_token_id`; `len(tokenizer)` may be below `spec.vocab_size`.
    - `generation_eos_ids` (tuple of int): the token ids that end a generation.

    Methods:

    - `new_cache(batch_size, max_len=None) -> ModelCache`: an empty cache for `batch_size`
      sequences of up to `max_len` positions (default `spec.max_seq_len`).
    - `forward_tokens(tokens, cache=None, *, last_only=False) -> Tensor`: token ids
      [B, T] (int64, on `device`) -> float32 logits [B, T, vocab_size] ([B, 1, vocab_size]
      with `last_only`). With a cache the tokens continue its positions (prefill when empty,
      decode after) and the cache then holds them too; without one positions start at 0.
      Every row of a batch is at the same position (no padding).
    - `poc_forward(embeddings, householder) -> Tensor`: PoC v2's forward (spec §2.1 steps
      2-5). Embeddings [B, T, dim] in the model's dtype replace the token embeddings at
      positions 0..T-1 (causal, unscaled); after every decoder layer i the residual stream is
      reflected with `householder(x, v_i)` in the model's dtype, v_i = `householder[i]`
      (unit vectors, float32 [n_layers, dim]); returns the last position after the final
      norm, as float32 [B, dim]. NaN is returned, not raised (`poc` drops such rows).
    """

    spec: ModelSpec
    fingerprint: str
    tokenizer: Any = None
    generation_eos_ids: tuple[int, ...] = ()

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        raise NotImplementedError

    def new_cache(self, batch_size: int, max_len: int | None = None) -> ModelCache:
        raise NotImplementedError

    def forward_tokens(
        self, tokens: torch.Tensor, cache: ModelCache | None = None, *, last_only: bool = False
    ) -> torch.Tensor:
        raise NotImplementedError

    def forward(
        self, tokens: torch.Tensor, cache: ModelCache | None = None, *, last_only: bool = False
    ) -> torch.Tensor:
        return self.forward_tokens(tokens, cache, last_only=last_only)

    def poc_forward(self, embeddings: torch.Tensor, householder: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BuiltinModel(GonkaModel):
    """A seeded Llama-style decoder. Build it with `load_model` or `build_model`."""

    rope_cos: torch.Tensor
    rope_sin: torch.Tensor

    def __init__(self, spec: ModelSpec, device: torch.device | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.fingerprint = ""
        self.generation_eos_ids = STOP_IDS
        # An explicit weight skips nn.Embedding's random init (normal_ on the meta device
        # costs a second of imports the first time).
        embedding = torch.empty(spec.vocab_size, spec.dim, device=device)
        self.tok_embeddings = nn.Embedding(spec.vocab_size, spec.dim, _weight=embedding)
        self.layers = nn.ModuleList(DecoderLayer(spec, device) for _ in range(spec.n_layers))
        self.norm = RMSNorm(spec.dim, spec.norm_eps, device)
        self.output = nn.Linear(spec.dim, spec.vocab_size, bias=False, device=device)
        rope = (spec.max_seq_len, spec.head_dim // 2)
        self.register_buffer("rope_cos", torch.empty(rope, device=device), persistent=False)
        self.register_buffer("rope_sin", torch.empty(rope, device=device), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.tok_embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tok_embeddings.weight.dtype

    def init_rope(self) -> None:
        """Fill the float32 rotary tables, computed on the CPU in float64 for portability."""
        spec = self.spec
        exponents = torch.arange(0, spec.head_dim, 2, dtype=torch.float64) / spec.head_dim
        inv_freq = 1.0 / (spec.rope_theta**exponents)
        angles = torch.outer(torch.arange(spec.max_seq_len, dtype=torch.float64), inv_freq)
        device = self.device
        self.rope_cos = torch.cos(angles).to(device=device, dtype=torch.float32)
        self.rope_sin = torch.sin(angles).to(device=device, dtype=torch.float32)

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for `batch_size` sequences of up to `max_len` positions."""
        spec = self.spec
        length = spec.max_seq_len if max_len is None else max_len
        if not 1 <= length <= spec.max_seq_len:
            raise InvalidComputeInput(f"a cache holds 1 to {spec.max_seq_len} positions")
        shape = (batch_size, spec.n_kv_heads, length, spec.head_dim)
        opts: dict[str, Any] = {"device": self.device, "dtype": self.dtype}
        keys = [torch.zeros(shape, **opts) for _ in range(spec.n_layers)]
        values = [torch.zeros(shape, **opts) for _ in range(spec.n_layers)]
        return KVCache(keys, values)

    def forward_tokens(
        self, tokens: torch.Tensor, cache: ModelCache | None = None, *, last_only: bool = False
    ) -> torch.Tensor:
        """Logits (float32) for token ids [B, T]: [B, T, vocab], or [B, 1, vocab] if last_only.

        With a cache the tokens continue the cached positions (prefill when the cache is
        empty, decode after); the cache then holds them too.
        """
        if cache is not None and not isinstance(cache, KVCache):
            raise InvalidComputeInput("this cache belongs to another model; use new_cache()")
        _, t = tokens.shape
        start = 0 if cache is None else cache.length
        limit = self.spec.max_seq_len if cache is None else cache.max_len
        if start + t > limit:
            raise InvalidComputeInput(
                f"{start + t} positions exceed the {limit} this model or cache holds"
            )
        cos = self.rope_cos[start : start + t]
        sin = self.rope_sin[start : start + t]
        x = self.tok_embeddings(tokens)
        for i, layer in enumerate(self.layers):
            kv = None if cache is None else (cache.keys[i], cache.values[i])
            x = layer(x, cos, sin, kv, start)
        if cache is not None:
            cache.length = start + t
        if last_only:
            x = x[:, -1:, :]
        # The head runs in float32: bf16 logits of size ~10 would be off by ~0.05.
        hidden = self.norm(x).float()
        return F.linear(hidden, self.output.weight.float())

    def poc_forward(self, embeddings: torch.Tensor, reflections: torch.Tensor) -> torch.Tensor:
        """PoC v2's forward: embeddings [B, T, dim] -> last hidden state [B, dim], float32.

        `embeddings` (in the model's dtype) replace token embeddings at positions 0..T-1 with
        causal attention; after every layer i the residual stream is reflected in the
        model's dtype, `householder(x, reflections[i])` (unit vectors [n_layers, dim]); the
        result is the last position after the final norm, cast to float32.

        A pure tensor function: no data-dependent Python control flow, no cache, no
        in-place writes to inputs, so `torch.onnx.export(PocForward(model), ...)` traces it
        (T can be a dynamic axis).
        """
        t = embeddings.shape[1]
        cos = self.rope_cos[:t]
        sin = self.rope_sin[:t]
        x = embeddings
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin)
            x = householder(x, reflections[i])
        last: torch.Tensor = self.norm(x[:, -1, :])
        return last.float()


class PocForward(nn.Module):
    """`BuiltinModel.poc_forward` as a module: `forward(embeddings, householder) -> [B, dim]`.

    This is the graph to export to ONNX: inputs embeddings [B, T, dim] (model dtype) and
    householder [n_layers, dim] (float32), output [B, dim] float32.
    """

    def __init__(self, model: BuiltinModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, embeddings: torch.Tensor, householder: torch.Tensor) -> torch.Tensor:
        return self.model.poc_forward(embeddings, householder)


# --- building --------------------------------------------------------------------------------


def _weight_pool(spec: ModelSpec, device: torch.device) -> torch.Tensor:
    """The pool, drawn on the CPU whatever the device: a GPU's float64 `log` and `cos` may be
    an ulp off the CPU's, and across millions of values that would change a float32 weight."""
    n_chunks = spec.pool_size // POOL_CHUNK
    seeds = [rng.seed_of(f"{spec.name}_{spec.weights_seed}_{i}") for i in range(n_chunks)]
    blocks = [
        rng.normal_rows(seeds[i : i + _POOL_BLOCK_CHUNKS], POOL_CHUNK, "cpu", precise=True)
        for i in range(0, n_chunks, _POOL_BLOCK_CHUNKS)
    ]
    return (torch.cat(blocks).reshape(-1) * INIT_STD).to(device)


def _check_memory(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse a model that cannot fit, before the kernel kills the process half way."""
    element = torch.empty((), dtype=dtype).element_size()
    # The weights, the float32 pool, and a float32 parameter with its cast in flight.
    need = spec.param_count * element + spec.pool_size * 4 + spec.largest_param * 8
    free = free_memory_bytes(device)
    if free is not None and need > free:
        raise InsufficientMemory(
            f"{spec.name} needs about {need / 1e9:.2f} GB of memory on {device} in "
            f"{str(dtype).removeprefix('torch.')}, but {free / 1e9:.2f} GB are free; "
            "use a smaller model or a 16-bit dtype, or free memory"
        )


def param_std(param_name: str, shape: tuple[int, ...]) -> float:
    """The standard deviation a built-in model's parameter is scaled to (see module doc)."""
    if param_name == "tok_embeddings.weight":
        return 1.0
    if param_name == "output.weight":
        return LOGIT_STD / math.sqrt(shape[1])
    return 1.0 / math.sqrt(shape[1])


def _pool_offset(spec: ModelSpec, param_name: str) -> int:
    digest = hashlib.sha256(f"{spec.name}_{param_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % spec.pool_size


def _take_circular(pool: torch.Tensor, offset: int, count: int) -> torch.Tensor:
    size = pool.numel()
    if offset + count <= size:
        return pool[offset : offset + count]
    pieces = [pool[offset:]]
    remaining = count - (size - offset)
    while remaining > 0:
        pieces.append(pool[: min(size, remaining)])
        remaining -= size
    return torch.cat(pieces)


def _fingerprint_update(digest: Any, name: str, values: torch.Tensor) -> None:
    shape = "x".join(str(n) for n in values.shape)
    digest.update(f"{name}:{shape}\n".encode())
    array = values.detach().to("cpu", torch.float32).contiguous().numpy()
    digest.update(array.astype("<f4", copy=False).tobytes())


def build_model(
    spec: ModelSpec, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
) -> BuiltinModel:
    """Build `spec`'s model from its seed on `device` (not cached; see `load_model`)."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    _check_memory(spec, dev, dt)
    started = time.perf_counter()
    # Built on the meta device (no memory, no random init), then every parameter is replaced
    # by its pool slice: to_empty() would cost a second of imports on the first call.
    model = BuiltinModel(spec, torch.device("meta"))
    pool = _weight_pool(spec, dev)
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in list(model.named_parameters()):
            if name.endswith("norm.weight"):
                values = torch.ones(param.shape, dtype=torch.float32, device=dev)
            else:
                offset = _pool_offset(spec, name)
                gain = param_std(name, tuple(param.shape)) / INIT_STD
                values = _take_circular(pool, offset, param.numel()).view(param.shape) * gain
            _fingerprint_update(digest, name, values)
            owner, _, leaf = name.rpartition(".")
            weight = nn.Parameter(values.to(dt).contiguous(), requires_grad=False)
            setattr(model.get_submodule(owner), leaf, weight)
    model.init_rope()
    model.fingerprint = digest.hexdigest()
    model.eval()
    model.requires_grad_(False)
    logger.info(
        "built %s on %s (%s) in %.2f s, fingerprint %s",
        spec.name,
        dev,
        str(dt).removeprefix("torch."),
        time.perf_counter() - started,
        model.fingerprint[:16],
    )
    return model


def quantized_copy(model: GonkaModel, bits: int) -> BuiltinModel:
    """A float32 CPU copy of `model` whose matrices are rounded to `bits`-bit integers.

    Symmetric, per output row: scale = max|w| / (2^(bits-1) - 1). It stands for a host that
    serves a coarser model than the network's, in calibration and tests.
    """
    if not 2 <= bits <= 16:
        raise InvalidComputeInput(f"bits must be between 2 and 16, got {bits}")
    if not isinstance(model, BuiltinModel):
        raise InvalidComputeInput("quantized_copy rebuilds built-in models only")
    copy = build_model(model.spec, "cpu", torch.float32)
    levels = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for _, param in copy.named_parameters():
            if param.dim() == 2:
                scale = param.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / levels
                param.copy_(torch.round(param / scale) * scale)
    return copy


_CACHE_SIZE = 4
_cache: OrderedDict[tuple[str, str, str], GonkaModel] = OrderedDict()
_cache_lock = threading.Lock()


def load_builtin(
    name: str, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
) -> BuiltinModel:
    """The built-in model `name` (see `load_model`); UnknownModel for any other name."""
    spec = get_spec(name)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    key = (name, str(dev), str(dt))
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            model = build_model(spec, dev, dt)
            _remember(key, model)
        else:
            _cache.move_to_end(key)
        assert isinstance(model, BuiltinModel)
        return model


def _remember(key: tuple[str, str, str], model: GonkaModel) -> None:
    _cache[key] = model
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)


def load_model(
    name: str, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
) -> GonkaModel:
    """A model for the engine, loaded once per process and then shared (do not modify it).

    `name` is, in this order:

    - a built-in model's name (`MODELS`): built from its seed; `dtype` None or "auto" means
      float32 on the CPU and bfloat16 on CUDA (fp16 and, on the CPU, bf16 allowed);
    - a local directory in the Hugging Face layout (`config.json`, `*.safetensors` with or
      without `model.safetensors.index.json`, `tokenizer.json`, `tokenizer_config.json`);
    - a Hugging Face repo id ("Qwen/Qwen3-0.6B", optionally "ID@REVISION"), resolved from the
      local Hugging Face cache as `huggingface_hub` resolves it (`HF_HOME`, `HF_HUB_CACHE`),
      never downloaded here (`gonka models pull` downloads).

    A checkpoint runs through `transformers` (`checkpoints.CheckpointModel`); its `dtype`
    None or "auto" is the checkpoint's own dtype. `device` is "cpu", "cuda", "cuda:N", or
    for a checkpoint "cuda:0,1,..." to split it across those GPUs; plain "cuda" splits it
    across all visible GPUs when it does not fit on one.

    Raises UnknownModel (neither a built-in name, a directory nor a cached repo id; the
    message names the fix), `checkpoints.CheckpointError` (unreadable, corrupt or
    unsupported checkpoint), DeviceUnavailable (CUDA asked for and not usable) and
    InsufficientMemory (the model would not fit in the device's free memory).
    """
    if isinstance(name, str) and name in MODELS:
        return load_builtin(name, device, dtype)
    from gonka_cli.compute import checkpoints

    source = checkpoints.resolve(name)
    key = (source.cache_key, str(device), str(dtype))
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            model = checkpoints.load_checkpoint(source, device, dtype)
            _remember(key, model)
        else:
            _cache.move_to_end(key)
        return model


def clear_model_cache() -> None:
    """Forget the models `load_model` built (their memory is freed once unused)."""
    with _cache_lock:
        _cache.clear()
