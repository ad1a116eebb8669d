"""Hugging Face checkpoints: find one, check it, and run it through `transformers`.

A checkpoint is a directory in the Hugging Face layout (`config.json`, `*.safetensors` with or
without `model.safetensors.index.json`, `tokenizer.json`, `tokenizer_config.json` with its chat
template), given by path or by repo id. A repo id is looked up in the local Hugging Face cache
as `huggingface_hub` looks it up (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
`~/.cache/huggingface/hub`), never downloaded here: `hub.pull` downloads.

`CheckpointModel` adapts a `transformers` causal LM to the engine's `models.GonkaModel`
interface. Its PoC forward is `transformers`' own forward with `inputs_embeds`, plus a
forward hook on every decoder layer that reflects the layer's output (the residual stream;
element 0 of a tuple) while a PoC forward runs in the calling thread (spec §2.1, §2.2).

Supported architectures (`SUPPORTED`): Llama, Qwen2, Qwen3 and Qwen3-MoE, in their
`transformers` implementations.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from gonka_cli.compute.models import MODELS, GonkaModel, ModelCache, ModelSpec, householder
from gonka_cli.errors import (
    CheckpointError,
    InsufficientMemory,
    InvalidComputeInput,
    UnknownModel,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = [
    "MAINNET_POC_SEQ_LEN",
    "SUPPORTED",
    "CheckpointCache",
    "CheckpointInfo",
    "CheckpointModel",
    "CheckpointSource",
    "hub_cache_dir",
    "inspect_checkpoint",
    "load_checkpoint",
    "resolve",
]

#: model_type (config.json) -> the `transformers` class that runs it.
SUPPORTED: Mapping[str, str] = MappingProxyType(
    {
        "llama": "LlamaForCausalLM",
        "qwen2": "Qwen2ForCausalLM",
        "qwen3": "Qwen3ForCausalLM",
        "qwen3_moe": "Qwen3MoeForCausalLM",
    }
)
#: PoC sequence lengths the chain sets per model (spec §2.6); other checkpoints get the
#: chain's default for a new model config.
MAINNET_POC_SEQ_LEN: Mapping[str, int] = MappingProxyType(
    {
        "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8": 1024,
        "moonshotai/Kimi-K2.6": 1024,
        "MiniMaxAI/MiniMax-M2.7": 1024,
    }
)
DEFAULT_POC_SEQ_LEN = 256
#: Room left beside the weights when checking memory (activations, allocator slack).
MEMORY_MARGIN = 1.10
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")
_SAFETENSORS_DTYPES = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
_FLOAT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


# --- where a checkpoint is -------------------------------------------------------------------


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now, as `huggingface_hub` does
    at import: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
    `$XDG_CACHE_HOME/huggingface/hub` (`~/.cache/huggingface/hub`)."""

    def expand(path: str) -> str:
        return os.path.expandvars(os.path.expanduser(path))

    xdg = os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    home = expand(os.getenv("HF_HOME", os.path.join(xdg, "huggingface")))
    legacy = os.getenv("HUGGINGFACE_HUB_CACHE", os.path.join(home, "hub"))
    return Path(expand(os.getenv("HF_HUB_CACHE", legacy)))


@dataclass(frozen=True)
class CheckpointSource:
    """A checkpoint found on disk: `path` is its directory (a cache snapshot for a repo id)."""

    name: str
    path: Path
    repo_id: str | None = None
    revision: str | None = None

    @property
    def cache_key(self) -> str:
        return str(self.path.resolve())


def split_repo_id(text: str) -> tuple[str, str | None]:
    """ "org/name@rev" -> ("org/name", "rev"); "org/name" -> ("org/name", None)."""
    repo_id, _, revision = text.partition("@")
    return repo_id, revision or None


def looks_like_repo_id(text: str) -> bool:
    return bool(_REPO_ID.fullmatch(text)) and not text.startswith((".", "/", "~"))


def resolve(name: str) -> CheckpointSource:
    """Where checkpoint `name` is: a local directory, or a repo id in the hub cache.

    Raises UnknownModel naming the fix when it is neither (for a repo id missing from the
    cache: `gonka models pull ID`), CheckpointError when the path is a file.
    """
    if not isinstance(name, str) or not name:
        raise UnknownModel(f"a model is a built-in name, a directory or a repo id, not {name!r}")
    path = Path(name).expanduser()
    if path.is_dir():
        return CheckpointSource(name=name, path=path)
    if path.exists():
        raise CheckpointError(
            f"{name} is a file; a checkpoint is a directory holding config.json and *.safetensors"
        )
    if looks_like_repo_id(name):
        return _from_cache(name)
    known = ", ".join(MODELS)
    raise UnknownModel(
        f"unknown model {name!r}: not a built-in model ({known}), a checkpoint directory, "
        "or a Hugging Face repo id such as Qwen/Qwen3-0.6B"
    )


def _from_cache(name: str) -> CheckpointSource:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id, revision = split_repo_id(name)
    cache = hub_cache_dir()
    try:
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=cache, local_files_only=True
        )
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError):
        pull = f"gonka models pull {repo_id}" + (f" --revision {revision}" if revision else "")
        raise UnknownModel(
            f"{name} is not in the local Hugging Face cache ({cache}); download it with "
            f"`{pull}` (or point HF_HUB_CACHE / HF_HOME at the cache that holds it; no "
            f"directory {name} exists either)"
        ) from None
    path = Path(str(folder))
    return CheckpointSource(name=name, path=path, repo_id=repo_id, revision=path.name)


# --- what a checkpoint holds -------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointInfo:
    """What `config.json` and the safetensors headers say, without loading any weight."""

    path: Path
    config: Mapping[str, Any]
    architecture: str
    weight_files: tuple[Path, ...]
    param_count: int
    dtype: str
    size_bytes: int

    @property
    def supported(self) -> bool:
        return self.architecture in SUPPORTED

    def bytes_in(self, dtype: str) -> int:
        """The weights' size in `dtype` (float32, bfloat16, float16)."""
        return self.param_count * _FLOAT_BYTES.get(dtype, 2)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def _weight_files(directory: Path) -> tuple[Path, ...]:
    index = directory / "model.safetensors.index.json"
    if index.exists():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index} has no weight_map")
        files = tuple(directory / str(f) for f in sorted(set(weight_map.values())))
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise CheckpointError(
                f"{directory}: the shard index names missing files ({', '.join(missing[:3])}); "
                "download the checkpoint again"
            )
        return files
    files = tuple(sorted(directory.glob("*.safetensors")))
    if not files:
        bins = sorted(directory.glob("*.bin"))
        hint = (
            " (only PyTorch .bin weights: re-save them with save_pretrained(..., "
            "safe_serialization=True))"
            if bins
            else ""
        )
        raise CheckpointError(f"{directory} holds no *.safetensors weights{hint}")
    return files


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, checked against the file's size."""
    try:
        with path.open("rb") as f:
            raw = f.read(8)
            size = path.stat().st_size
            length = int.from_bytes(raw, "little") if len(raw) == 8 else -1
            if not 2 <= length <= min(size - 8, 100_000_000):
                raise ValueError("bad header length")
            header = json.loads(f.read(length))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise _corrupt(path, str(exc)) from None
    if not isinstance(header, dict):
        raise _corrupt(path, "the header is not a JSON object")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise _corrupt(path, f"tensor {key} has no data offsets")
        end = max(end, int(offsets[1]))
    if 8 + length + end != size:
        raise _corrupt(path, f"the file is {size} bytes, its header describes {8 + length + end}")
    return header


def _corrupt(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a valid safetensors file ({why}); download it again "
        "(gonka models rm ID, then gonka models pull ID) or re-save the checkpoint"
    )


def inspect_checkpoint(directory: Path) -> CheckpointInfo:
    """Read a checkpoint's config and weight headers; raise CheckpointError naming the fix."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{directory} holds no checkpoint: config.json is missing (a checkpoint directory "
            "holds config.json, *.safetensors and the tokenizer files, as save_pretrained "
            "writes them)"
        )
    config = _read_json(config_path)
    architecture = str(config.get("model_type", "unknown"))
    files = _weight_files(directory)
    params = 0
    size = 0
    by_dtype: dict[str, int] = {}
    for file in files:
        size += file.stat().st_size
        for key, entry in _safetensors_header(file).items():
            if key == "__metadata__":
                continue
            count = 1
            for n in entry.get("shape", []):
                count *= int(n)
            params += count
            name = _SAFETENSORS_DTYPES.get(str(entry.get("dtype")), (str(entry.get("dtype")), 0))
            by_dtype[name[0]] = by_dtype.get(name[0], 0) + count
    declared = config.get("dtype") or config.get("torch_dtype")
    dtype = str(declared) if declared else max(by_dtype, key=by_dtype.__getitem__, default="?")
    return CheckpointInfo(
        path=directory,
        config=MappingProxyType(config),
        architecture=architecture,
        weight_files=files,
        param_count=params,
        dtype=dtype,
        size_bytes=size,
    )


def _check_supported(info: CheckpointInfo) -> None:
    if not info.supported:
        raise CheckpointError(
            f"{info.path}: architecture {info.architecture!r} is not supported; supported "
            f"architectures: {', '.join(SUPPORTED)} (model_type in config.json)"
        )


def _spec_of(name: str, info: CheckpointInfo) -> ModelSpec:
    c = info.config
    dim = int(c["hidden_size"])
    heads = int(c["num_attention_heads"])
    rope = c.get("rope_parameters") or {}
    theta = c.get("rope_theta") or (rope.get("rope_theta") if isinstance(rope, dict) else None)
    if info.architecture == "qwen3_moe":
        ffn = int(c.get("moe_intermediate_size", 0)) * int(c.get("num_experts_per_tok", 1))
    else:
        ffn = int(c.get("intermediate_size", 0))
    max_len = int(c.get("max_position_embeddings") or 4096)
    repo = split_repo_id(name)[0]
    poc_len = min(MAINNET_POC_SEQ_LEN.get(repo, DEFAULT_POC_SEQ_LEN), max_len)
    try:
        return ModelSpec(
            name=name,
            dim=dim,
            n_layers=int(c["num_hidden_layers"]),
            n_heads=heads,
            n_kv_heads=int(c.get("num_key_value_heads") or heads),
            ffn_dim=ffn,
            vocab_size=int(c["vocab_size"]),
            max_seq_len=max_len,
            poc_seq_len=poc_len,
            rope_theta=float(theta or 10000.0),
            norm_eps=float(c.get("rms_norm_eps", 1e-6)),
            architecture=info.architecture,
            head_dim_override=int(c.get("head_dim") or dim // heads),
            n_params=info.param_count,
            description=str(info.path),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{info.path}/config.json lacks a usable {exc}") from None


def _fingerprint(source: CheckpointSource, info: CheckpointInfo) -> str:
    """SHA-256 over config.json and the weights' content hashes.

    In the hub cache a weight file is a link to a blob named by its SHA-256, which is used as
    is; a local directory's weights are hashed (read once, as loading reads them anyway)."""
    digest = hashlib.sha256()
    digest.update((info.path / "config.json").read_bytes())
    for file in info.weight_files:
        digest.update(f"\n{file.name}:".encode())
        target = file.resolve()
        if file.is_symlink() and re.fullmatch(r"[0-9a-f]{64}", target.name):
            digest.update(target.name.encode())
            continue
        content = hashlib.sha256()
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                content.update(block)
        digest.update(content.hexdigest().encode())
    return digest.hexdigest()


# --- memory and devices ------------------------------------------------------------------------


def _target_dtype(info: CheckpointInfo, dtype: str | torch.dtype | None) -> torch.dtype:
    import torch

    from gonka_cli.compute.devices import AUTO, parse_dtype

    if dtype is None or (isinstance(dtype, str) and dtype.lower() == AUTO):
        own = getattr(torch, info.dtype, None)
        if isinstance(own, torch.dtype) and own in (torch.float32, torch.bfloat16, torch.float16):
            return own
        # FP8 or unknown: activations run in bf16, as Gonka's vLLM does.
        return torch.bfloat16
    return parse_dtype(dtype)


def _devices(device: str | torch.device) -> list[torch.device]:
    """One device, or the GPUs of "cuda:0,1,..." (each checked)."""
    from gonka_cli.compute.devices import resolve_device

    text = str(device)
    if text.startswith("cuda:") and "," in text:
        indices = [part.strip() for part in text.removeprefix("cuda:").split(",")]
        if not all(i.isdigit() for i in indices):
            raise InvalidComputeInput(f"unknown device {text!r}; use 'cuda:0,1,...'")
        return [resolve_device(f"cuda:{i}") for i in dict.fromkeys(indices)]
    return [resolve_device(device)]


def _placement(
    info: CheckpointInfo, devices: list[torch.device], dtype: torch.dtype, split_all: bool
) -> tuple[Any, dict[Any, int] | None]:
    """`device_map` and `max_memory` for `from_pretrained`, or InsufficientMemory."""
    import torch

    from gonka_cli.compute.devices import free_memory_bytes

    element = torch.empty((), dtype=dtype).element_size()
    need = int(info.param_count * element * MEMORY_MARGIN)
    gib = 1 << 30
    dtype_name = str(dtype).removeprefix("torch.")
    free = [free_memory_bytes(d) for d in devices]
    if len(devices) == 1:
        room = free[0]
        if room is None or need <= room:
            return {"": str(devices[0])}, None
        if devices[0].type != "cuda" or not split_all or torch.cuda.device_count() < 2:
            raise InsufficientMemory(
                f"{info.path.name} needs about {need / gib:.1f} GiB on {devices[0]} in "
                f"{dtype_name} ({info.param_count:,} parameters), but {room / gib:.1f} GiB "
                "are free; use a 16-bit dtype, more GPUs (--device cuda:0,1,...), a machine "
                "with more memory, or a smaller model"
            )
        # Plain "cuda" and one GPU is not enough: every visible GPU.
        devices = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        free = [free_memory_bytes(d) for d in devices]
    total = sum(f or 0 for f in free)
    if need > total:
        where = ", ".join(str(d) for d in devices)
        raise InsufficientMemory(
            f"{info.path.name} needs about {need / gib:.1f} GiB in {dtype_name} "
            f"({info.param_count:,} parameters), but {where} have {total / gib:.1f} GiB free "
            "together; add GPUs, use a 16-bit dtype, or a smaller model"
        )
    # accelerate places whole decoder layers, filling the GPUs in order ("auto" would balance
    # them, splitting a model that fits on the first GPU across all of them).
    max_memory: dict[Any, int] = {
        int(d.index or 0): int((f or 0) / MEMORY_MARGIN) for d, f in zip(devices, free, strict=True)
    }
    return "sequential", max_memory


# --- loading ------------------------------------------------------------------------------------


def load_checkpoint(
    source: CheckpointSource,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
) -> CheckpointModel:
    """Load a checkpoint found by `resolve` (see `models.load_model` for the arguments).

    Checks the files, the architecture and the memory before any weight is read.
    """
    import torch

    info = inspect_checkpoint(source.path)
    _check_supported(info)
    spec = _spec_of(source.name, info)
    devices = _devices(device)
    target = _target_dtype(info, dtype)
    split_all = str(device) == "cuda"
    device_map, max_memory = _placement(info, devices, target, split_all)
    fingerprint = _fingerprint(source, info)
    hf_model = _from_pretrained(source.path, target, device_map, max_memory)
    tokenizer = _tokenizer(source.path)
    with torch.no_grad():
        model = CheckpointModel(hf_model, spec, fingerprint, tokenizer)
    logger.info(
        "loaded %s (%s, %s parameters) on %s in %s, fingerprint %s",
        source.name,
        info.architecture,
        f"{info.param_count:,}",
        ", ".join(str(d) for d in devices),
        str(target).removeprefix("torch."),
        fingerprint[:16],
    )
    return model


def _from_pretrained(
    path: Path, dtype: torch.dtype, device_map: Any, max_memory: dict[Any, int] | None
) -> Any:
    import transformers
    from safetensors import SafetensorError

    kwargs: dict[str, Any] = {"dtype": dtype, "device_map": device_map}
    if max_memory is not None:
        kwargs["max_memory"] = max_memory
    try:
        with _quiet_transformers():
            model: Any = transformers.AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except SafetensorError as exc:
        raise _corrupt(path, str(exc)) from None
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        if "CUDA" in str(exc) and "out of memory" in str(exc):
            raise InsufficientMemory(f"loading {path.name} ran out of GPU memory: {exc}") from None
        raise CheckpointError(
            f"{path}: transformers could not load the checkpoint: {exc}"
        ) from None
    model.eval()
    model.requires_grad_(False)
    return model


class _quiet_transformers:
    """transformers logs load reports and shows progress bars: the core never prints."""

    def __enter__(self) -> None:
        hf_logging: Any = importlib.import_module("transformers.utils.logging")
        self._verbosity = hf_logging.get_verbosity()
        self._bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc: object) -> None:
        hf_logging: Any = importlib.import_module("transformers.utils.logging")
        hf_logging.set_verbosity(self._verbosity)
        if self._bars:
            hf_logging.enable_progress_bar()


def _tokenizer(path: Path) -> Any:
    """The checkpoint's fast tokenizer with its chat template, or None without tokenizer files."""
    if not (path / "tokenizer.json").exists():
        logger.warning("%s has no tokenizer.json: inference needs one, PoC does not", path)
        return None
    import transformers

    try:
        with _quiet_transformers():
            return transformers.AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: the tokenizer files are not usable: {exc}") from None


# --- the adapter ---------------------------------------------------------------------------------


class CheckpointCache(ModelCache):
    """A checkpoint model's cache: a `transformers` `DynamicCache` and its length bound."""

    def __init__(self, past: Any, max_len: int) -> None:
        self.past = past
        self.length = 0
        self._max_len = max_len

    @property
    def max_len(self) -> int:
        return self._max_len


class _PocState(threading.local):
    reflections: torch.Tensor | None = None


class CheckpointModel(GonkaModel):
    """A `transformers` causal LM behind the engine's `GonkaModel` interface.

    `hf_model` is the wrapped model (`...ForCausalLM`), `hf_model.model` its decoder stack.
    A forward hook sits on every decoder layer and reflects its output only inside
    `poc_forward` (per thread), so inference and PoC share one loaded model.
    """

    def __init__(
        self, hf_model: Any, spec: ModelSpec, fingerprint: str, tokenizer: Any = None
    ) -> None:
        super().__init__()
        self.hf_model = hf_model
        self.spec = spec
        self.fingerprint = fingerprint
        self.tokenizer = tokenizer
        self.generation_eos_ids = _eos_ids(hf_model, tokenizer)
        self._poc = _PocState()
        # transformers 5.x renamed `past_key_values` to `cache`.
        parameters = inspect.signature(hf_model.forward).parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        layers = self.decoder_layers
        if len(layers) != spec.n_layers:
            raise CheckpointError(
                f"{spec.name}: config.json says {spec.n_layers} layers, the model has {len(layers)}"
            )
        for i, layer in enumerate(layers):
            layer.register_forward_hook(self._hook(i))

    @property
    def decoder_layers(self) -> list[Any]:
        return list(self.hf_model.get_decoder().layers)

    @property
    def device(self) -> torch.device:
        weight: torch.Tensor = self.hf_model.get_input_embeddings().weight
        return weight.device

    @property
    def dtype(self) -> torch.dtype:
        weight: torch.Tensor = self.hf_model.get_input_embeddings().weight
        return weight.dtype

    def _hook(self, index: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> Any:
            reflections = self._poc.reflections
            if reflections is None:
                return output
            if isinstance(output, tuple):
                # Element 0 is the stream; the rest (attention weights, cache) stays as is.
                return (_reflect(output[0], reflections[index]), *output[1:])
            return _reflect(output, reflections[index])

        return hook

    def new_cache(self, batch_size: int, max_len: int | None = None) -> CheckpointCache:
        """An empty cache for `batch_size` sequences of up to `max_len` positions."""
        from transformers import DynamicCache

        length = self.spec.max_seq_len if max_len is None else max_len
        if not 1 <= length <= self.spec.max_seq_len:
            raise InvalidComputeInput(f"a cache holds 1 to {self.spec.max_seq_len} positions")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidComputeInput(f"batch size must be an integer >= 1, got {batch_size!r}")
        return CheckpointCache(DynamicCache(config=self.hf_model.config), length)

    def forward_tokens(
        self, tokens: torch.Tensor, cache: ModelCache | None = None, *, last_only: bool = False
    ) -> torch.Tensor:
        """Logits (float32) for token ids [B, T]: [B, T, vocab], or [B, 1, vocab] if last_only.

        The head runs in the model's dtype, as vLLM's does; the logits are then cast to
        float32. With a cache the tokens continue its positions.
        """
        import torch

        if cache is not None and not isinstance(cache, CheckpointCache):
            raise InvalidComputeInput("this cache belongs to another model; use new_cache()")
        t = tokens.shape[1]
        start = 0 if cache is None else cache.length
        limit = self.spec.max_seq_len if cache is None else cache.max_len
        if start + t > limit:
            raise InvalidComputeInput(
                f"{start + t} positions exceed the {limit} this model or cache holds"
            )
        past = {self._cache_arg: cache.past} if cache is not None else {}
        with torch.no_grad():
            out = self.hf_model(
                input_ids=tokens,
                use_cache=cache is not None,
                logits_to_keep=1 if last_only else 0,
                **past,
            )
        if cache is not None:
            cache.length = start + t
        logits: torch.Tensor = out.logits.float()
        return logits

    def poc_forward(self, embeddings: torch.Tensor, reflections: torch.Tensor) -> torch.Tensor:
        """PoC v2's forward (see `GonkaModel`): `transformers`' decoder over `inputs_embeds`,
        each layer's output reflected by its hook, the last position after the final norm."""
        import torch

        if reflections.shape[0] != self.spec.n_layers:
            raise InvalidComputeInput(
                f"{self.spec.n_layers} reflection vectors are needed, got {reflections.shape[0]}"
            )
        self._poc.reflections = reflections.to(self.device)
        try:
            with torch.no_grad():
                out = self.hf_model.get_decoder()(
                    inputs_embeds=embeddings.to(self.device, self.dtype), use_cache=False
                )
        finally:
            self._poc.reflections = None
        last: torch.Tensor = out.last_hidden_state[:, -1, :].float()
        return last


def _reflect(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return householder(x, v.to(x.device))


def _eos_ids(hf_model: Any, tokenizer: Any) -> tuple[int, ...]:
    ids: list[int] = []
    generation = getattr(hf_model, "generation_config", None)
    for value in (
        getattr(generation, "eos_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
    ):
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, int) and item not in ids:
                ids.append(item)
    return tuple(ids)
