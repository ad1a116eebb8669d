"""DAPI's request bodies, checked: one frozen dataclass per body, built with `from_dict`.

The field names and types are those of DAPI's Go request structs (`mlnodeclient`), read as
the Python ML node reads them: a field Go leaves out (`omitempty`: `url`, `wait`,
`poc_stronger_rng`, `validation`, `stat_test`, `params.k_dim`, `batch_size`) takes the ML
node's default. A body that is not the expected shape raises `MlNodeError(422, ...)` naming
the field, as the ML node's FastAPI models answer; a body whose parts contradict each other
(a validation whose nonces differ from `nonces`) raises `MlNodeError(400, ...)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gonka_cli.errors import GonkaError

__all__ = [
    "DEFAULT_FRAUD_THRESHOLD",
    "GenerateRequest",
    "InferenceUpRequest",
    "InitGenerateRequest",
    "MlNodeError",
    "PocParams",
    "StatTest",
]

K_DIM = 12
#: The Python ML node's `StatTestModel.fraud_threshold` default: the alpha that applies when
#: DAPI sends `p_value_threshold`, a name the ML node does not read (spec §1.6 #1).
DEFAULT_FRAUD_THRESHOLD = 0.01
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64 = 2**63


class MlNodeError(GonkaError):
    """A request the ML node refuses: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _invalid(field: str, what: str, value: object) -> MlNodeError:
    return MlNodeError(422, f"{field} must be {what}, got {value!r:.60}")


def body_object(body: object, what: str) -> Mapping[str, Any]:
    """`body` as a JSON object, or 422 naming the request."""
    if not isinstance(body, Mapping):
        raise MlNodeError(422, f"the body of {what} must be a JSON object")
    return body


def _int(body: Mapping[str, Any], field: str, *, default: int | None = None) -> int:
    value = body.get(field.rsplit(".", 1)[-1])
    if value is None and default is not None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a JSON number written 5.0
    if isinstance(value, bool) or not isinstance(value, int) or not -_INT64 <= value < _INT64:
        raise _invalid(field, "an integer", value)
    return value


def _str(body: Mapping[str, Any], field: str, *, required: bool = True) -> str:
    value = body.get(field.rsplit(".", 1)[-1])
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise _invalid(field, "a non-empty string", value)
    return value


def _bool(body: Mapping[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(field, "true or false", value)
    return value


def _number(body: Mapping[str, Any], field: str, default: float | None) -> float | None:
    value = body.get(field.rsplit(".", 1)[-1])
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _invalid(field, "a number", value)
    return float(value)


def _nonce(value: object, field: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not _INT32_MIN <= value <= _INT32_MAX
    ):
        raise _invalid(field, f"an int32 integer in [{_INT32_MIN}, {_INT32_MAX}]", value)
    return value


# --- inference/up ------------------------------------------------------------------------


@dataclass(frozen=True)
class InferenceUpRequest:
    """`inferenceUpDto`: the model id and the vLLM arguments gonka understands.

    Understood: `--max-model-len N`, `--tensor-parallel-size N` (`-tp N`),
    `--served-model-name A [B ...]`, `--kv-cache-dtype D` (recorded; the engine keeps its
    cache in the model's dtype). `--arg=value` and `--arg value` both work; every other
    argument (and its value) is ignored, as is `dtype` (the engine runs the checkpoint's own
    dtype, which is what the ML node's forced `auto` means).
    """

    model: str
    dtype: str = "auto"
    additional_args: tuple[str, ...] = ()
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    served_model_names: tuple[str, ...] = ()
    kv_cache_dtype: str | None = None
    ignored_args: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, body: object) -> InferenceUpRequest:
        data = body_object(body, "inference/up")
        model = _str(data, "model")
        dtype = data.get("dtype")
        if dtype is not None and not isinstance(dtype, str):
            raise _invalid("dtype", "a string", dtype)
        raw = data.get("additional_args")
        if raw is None:
            raw = []
        if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
            raise _invalid("additional_args", "a list of strings", raw)
        return cls._parse_args(model, dtype or "auto", tuple(raw))

    @classmethod
    def _parse_args(cls, model: str, dtype: str, args: tuple[str, ...]) -> InferenceUpRequest:
        # Split "--name=value" first, then walk: an option owns the words up to the next "-x".
        words: list[str] = []
        for arg in args:
            if arg.startswith("--") and "=" in arg:
                words.extend(arg.split("=", 1))
            else:
                words.extend(arg.split() if arg.startswith("-") and " " in arg else [arg])
        options: dict[str, list[str]] = {}
        ignored: list[str] = []
        name: str | None = None
        for word in words:
            if word.startswith("-") and not _is_number(word):
                name = {"-tp": "--tensor-parallel-size"}.get(word, word).replace("_", "-")
                options[name] = []  # a repeated option: the last one counts, as in argparse
            elif name is not None:
                options[name].append(word)
            else:
                ignored.append(word)
        known = {
            "--max-model-len",
            "--tensor-parallel-size",
            "--served-model-name",
            "--kv-cache-dtype",
        }
        ignored.extend(n for n in options if n not in known)

        def one_int(option: str) -> int | None:
            values = options.get(option)
            if values is None:
                return None
            if len(values) != 1 or not _is_positive_int(values[0]):
                raise MlNodeError(422, f"{option} needs one integer >= 1, got {values!r:.60}")
            return int(values[0])

        served = options.get("--served-model-name")
        if served is not None and not served:
            raise MlNodeError(422, "--served-model-name needs at least one name")
        kv = options.get("--kv-cache-dtype")
        if kv is not None and len(kv) != 1:
            raise MlNodeError(422, f"--kv-cache-dtype needs one value, got {kv!r:.60}")
        return cls(
            model=model,
            dtype=dtype,
            additional_args=args,
            max_model_len=one_int("--max-model-len"),
            tensor_parallel_size=one_int("--tensor-parallel-size") or 1,
            served_model_names=tuple(served or ()),
            kv_cache_dtype=kv[0] if kv else None,
            ignored_args=tuple(ignored),
        )


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _is_positive_int(word: str) -> bool:
    return word.isascii() and word.isdigit() and int(word) >= 1


# --- PoC ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PocParams:
    """`params`: the PoC model and its input length (`k_dim` is 12; extra keys refused, as
    the ML node's `extra="forbid"` model does)."""

    model: str
    seq_len: int
    k_dim: int = K_DIM

    @classmethod
    def from_dict(cls, value: object) -> PocParams:
        if not isinstance(value, Mapping):
            raise _invalid("params", "an object {model, seq_len}", value)
        extra = sorted(set(value) - {"model", "seq_len", "k_dim"})
        if extra:
            raise MlNodeError(
                422, f"params: unknown field {extra[0]!r:.60} (extra fields are refused)"
            )
        model = _str(value, "params.model")
        seq_len = _int(value, "params.seq_len")
        if seq_len < 1:
            raise _invalid("params.seq_len", "an integer >= 1", seq_len)
        k_dim = _int(value, "params.k_dim", default=K_DIM)
        if k_dim != K_DIM:
            raise MlNodeError(
                422, f"params.k_dim must be {K_DIM} (the only one served), got {k_dim}"
            )
        return cls(model=model, seq_len=seq_len, k_dim=k_dim)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "seq_len": self.seq_len, "k_dim": self.k_dim}


@dataclass(frozen=True)
class InitGenerateRequest:
    """`PoCInitGenerateRequestV2`: one PoC round. `block_hash` and `public_key` are strings
    used verbatim; `batch_size` is accepted and has no effect (the engine sizes its own)."""

    block_hash: str
    block_height: int
    public_key: str
    node_id: int
    node_count: int
    params: PocParams
    url: str | None = None
    poc_stronger_rng: bool = False
    batch_size: int | None = None

    @classmethod
    def from_dict(cls, body: object) -> InitGenerateRequest:
        data = body_object(body, "pow/init/generate")
        return cls(**_init_fields(data))


def _init_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    node_id = _int(data, "node_id")
    node_count = _int(data, "node_count")
    if node_count < 1:
        raise _invalid("node_count", "an integer >= 1", node_count)
    if not 0 <= node_id < node_count:
        raise MlNodeError(422, f"node_id must be in [0, node_count={node_count}), got {node_id}")
    url = data.get("url")
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        raise _invalid("url", "an http:// or https:// URL", url)
    batch = data.get("batch_size")
    if batch is not None:
        batch = _int(data, "batch_size")
        if batch < 1:
            raise _invalid("batch_size", "an integer >= 1", batch)
    return {
        "block_hash": _str(data, "block_hash"),
        "block_height": _int(data, "block_height"),
        "public_key": _str(data, "public_key"),
        "node_id": node_id,
        "node_count": node_count,
        "params": PocParams.from_dict(data.get("params")),
        "url": url or None,
        "poc_stronger_rng": _bool(data, "poc_stronger_rng"),
        "batch_size": batch,
    }


@dataclass(frozen=True)
class StatTest:
    """`stat_test`: how a validation job judges the prover.

    The fraud test's alpha is `fraud_threshold`, default 0.01, exactly as the Python ML node
    reads it; DAPI sends `p_value_threshold` instead, which that node drops unread, so the
    chain's value never applies (spec §1.6 #1): with 200 nonces and `p_mismatch` 0.1, fraud
    from 31 mismatches. gonka reproduces that effective behaviour and keeps
    `p_value_threshold` only to report it.
    """

    dist_threshold: float = 0.4
    p_mismatch: float = 0.1
    fraud_threshold: float = DEFAULT_FRAUD_THRESHOLD
    p_value_threshold: float | None = None

    @classmethod
    def from_dict(cls, value: object) -> StatTest:
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise _invalid("stat_test", "an object", value)
        dist = _number(value, "stat_test.dist_threshold", 0.4)
        p = _number(value, "stat_test.p_mismatch", 0.1)
        alpha = _number(value, "stat_test.fraud_threshold", DEFAULT_FRAUD_THRESHOLD)
        unused = _number(value, "stat_test.p_value_threshold", None)
        assert dist is not None and p is not None and alpha is not None
        if dist < 0:
            raise _invalid("stat_test.dist_threshold", "a number >= 0", dist)
        if not 0 <= p <= 1:
            raise _invalid("stat_test.p_mismatch", "a probability in [0, 1]", p)
        if not 0 < alpha <= 1:
            raise _invalid("stat_test.fraud_threshold", "a number in (0, 1]", alpha)
        return cls(dist, p, alpha, unused)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dist_threshold": self.dist_threshold,
            "p_mismatch": self.p_mismatch,
            "fraud_threshold": self.fraud_threshold,
        }


@dataclass(frozen=True)
class GenerateRequest:
    """`PoCGenerateRequestV2`: the init fields plus the nonces to compute and, for a
    validation job, the prover's vectors (`validation`, base64 strings kept as sent: a bad
    one counts as a mismatch, as the ML node counts it) and the `stat_test`."""

    block_hash: str
    block_height: int
    public_key: str
    node_id: int
    node_count: int
    params: PocParams
    nonces: tuple[int, ...]
    url: str | None = None
    poc_stronger_rng: bool = False
    batch_size: int | None = None
    wait: bool = False
    #: nonce -> the prover's vector_b64, in `nonces` order; None without `validation`.
    validation: Mapping[int, str] | None = None
    stat_test: StatTest = StatTest()

    @classmethod
    def from_dict(cls, body: object) -> GenerateRequest:
        data = body_object(body, "pow/generate")
        fields = _init_fields(data)
        raw = data.get("nonces")
        if not isinstance(raw, list) or not raw:
            raise _invalid("nonces", "a non-empty list of integers", raw)
        nonces = tuple(_nonce(n, f"nonces[{i}]") for i, n in enumerate(raw))
        if len(set(nonces)) != len(nonces):
            raise MlNodeError(400, "nonces must not repeat")
        validation = _validation(data.get("validation"), nonces)
        return cls(
            **fields,
            nonces=nonces,
            wait=_bool(data, "wait"),
            validation=validation,
            stat_test=StatTest.from_dict(data.get("stat_test")),
        )


def _validation(value: object, nonces: Sequence[int]) -> Mapping[int, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _invalid("validation", "an object {artifacts: [...]}", value)
    artifacts = value.get("artifacts")
    if not isinstance(artifacts, list):
        raise _invalid("validation.artifacts", "a list of {nonce, vector_b64}", artifacts)
    vectors: dict[int, str] = {}
    for i, entry in enumerate(artifacts):
        if not isinstance(entry, Mapping):
            raise _invalid(f"validation.artifacts[{i}]", "an object {nonce, vector_b64}", entry)
        nonce = _nonce(entry.get("nonce"), f"validation.artifacts[{i}].nonce")
        vector = entry.get("vector_b64")
        if not isinstance(vector, str):
            raise _invalid(f"validation.artifacts[{i}].vector_b64", "a base64 string", vector)
        if nonce in vectors:
            raise MlNodeError(400, f"validation.artifacts: nonce {nonce} appears twice")
        vectors[nonce] = vector
    if set(vectors) != set(nonces):
        missing = sorted(set(nonces) - set(vectors))[:5]
        extra = sorted(set(vectors) - set(nonces))[:5]
        raise MlNodeError(
            400,
            "the nonces of validation.artifacts must equal nonces "
            f"(missing: {missing}, not asked for: {extra})",
        )
    return {n: vectors[n] for n in nonces}
