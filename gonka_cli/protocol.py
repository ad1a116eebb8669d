"""The devnet's work protocol, typed: every request, answer and refusal of the mining API.

The node (`gonka_cli.node`) builds its answers with these classes and the miner parses them
with the same classes, so the wire format is written down once, here. docs/protocol.md is its
prose. Each message is a frozen dataclass with `to_dict()`, the exact JSON the wire carries,
and `from_dict(data)`, which checks types and shapes and raises `ProtocolError` naming the bad
field. Range checks that depend on the network's parameters (a model the node serves, a count
below the committed one) stay with the node.

Amounts of ngonka are Python ints here and decimal strings on the wire (they may exceed 2^53).

A refusal is `Refusal(code, message)`; its wire body keeps the grpc-gateway shape of the rest
of the node's API (`code` is the gRPC code, an integer) and adds `error_code`, the stable
machine-readable `ErrorCode`. Clients act on `error_code`, never on the English `message`.

This module is a layer below both the node and the miner: it imports neither, nor torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from gonka_cli.errors import GonkaError
from gonka_cli.validate import is_hex, is_int, is_list, is_number, is_uint

__all__ = [
    "AnyWorkItem",
    "ChatChoice",
    "ChatCompletion",
    "ChatRequest",
    "Commit",
    "CommitAnswer",
    "CommitRequest",
    "EarningRecord",
    "Earnings",
    "EpochCurrent",
    "EpochRecord",
    "ErrorBody",
    "ErrorCode",
    "GonkaInfo",
    "Identity",
    "InferenceRecord",
    "InferenceResult",
    "InferenceTask",
    "InferenceTerms",
    "ParticipantInfo",
    "ParticipantsView",
    "PhaseSpan",
    "PocResult",
    "PocTerms",
    "PocValidationResult",
    "PocValidationTask",
    "ProofRequest",
    "ProofResult",
    "ProtocolError",
    "Refusal",
    "RegisterRequest",
    "Registration",
    "ResultAnswer",
    "StakeInfo",
    "StakeMove",
    "Usage",
    "ValidationResult",
    "ValidationTask",
    "WorkBatch",
    "WorkItem",
    "work_item_from_dict",
]

#: Work item kinds.
POC_PROOF = "poc_proof"
INFERENCE_TASK = "inference"
VALIDATION_TASK = "validation"
POC_VALIDATION = "poc_validation"
#: Phases of an epoch (`starting` before the first block).
PHASES = ("starting", "generate", "validate", "inference")
#: PoC result statuses.
POC_STATUSES = ("valid", "fraud", "invalid", "no_answer", "unvalidated")
#: Earning kinds (`EarningRecord.kind`).
POC_REWARD = "poc_reward"
INFERENCE_FEE = "inference_fee"
VALIDATION_REWARD = "validation_reward"
EARNING_KINDS = (POC_REWARD, INFERENCE_FEE, VALIDATION_REWARD)
MAX_UINT64 = 2**64 - 1


class ProtocolError(GonkaError):
    """A protocol message that does not have the documented shape (names the bad field)."""


class ErrorCode(str, Enum):
    """Stable, machine-readable reasons for a refusal (`error_code` in an error body).

    Each has one HTTP status (`http_status`); docs/protocol.md says what a client should do.
    """

    BAD_REQUEST = "bad_request"
    BODY_TOO_LARGE = "body_too_large"
    UNKNOWN_MODEL = "unknown_model"
    WRONG_POC_MODEL = "wrong_poc_model"
    BAD_PUBKEY = "bad_pubkey"
    BAD_SIGNATURE = "bad_signature"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    INSUFFICIENT_COLLATERAL = "insufficient_collateral"
    NOT_ELIGIBLE = "not_eligible"
    NOT_REGISTERED = "not_registered"
    KEY_MISMATCH = "key_mismatch"
    NOT_ASSIGNEE = "not_assignee"
    NOT_FOUND = "not_found"
    UNKNOWN_ITEM = "unknown_item"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    STALE_EPOCH = "stale_epoch"
    COMMITS_CLOSED = "commits_closed"
    COUNT_DECREASED = "count_decreased"
    COUNT_TOO_LARGE = "count_too_large"
    ROOT_CONFLICT = "root_conflict"
    RESULT_CONFLICT = "result_conflict"
    ITEM_EXPIRED = "item_expired"
    VALIDATION_CLOSED = "validation_closed"
    PROOFS_INVALID = "proofs_invalid"
    INTERNAL = "internal"
    NO_EXECUTOR = "no_executor"
    INFERENCE_TIMEOUT = "inference_timeout"
    #: What a client reads when a body carries no code it knows (an older or newer node).
    UNKNOWN = "unknown"

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self]


_HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.BODY_TOO_LARGE: 413,
    ErrorCode.UNKNOWN_MODEL: 400,
    ErrorCode.WRONG_POC_MODEL: 400,
    ErrorCode.BAD_PUBKEY: 400,
    ErrorCode.BAD_SIGNATURE: 401,
    ErrorCode.INSUFFICIENT_FUNDS: 402,
    ErrorCode.INSUFFICIENT_COLLATERAL: 402,
    ErrorCode.NOT_ELIGIBLE: 403,
    ErrorCode.NOT_REGISTERED: 403,
    ErrorCode.KEY_MISMATCH: 403,
    ErrorCode.NOT_ASSIGNEE: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNKNOWN_ITEM: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.STALE_EPOCH: 409,
    ErrorCode.COMMITS_CLOSED: 409,
    ErrorCode.COUNT_DECREASED: 409,
    ErrorCode.COUNT_TOO_LARGE: 422,
    ErrorCode.ROOT_CONFLICT: 409,
    ErrorCode.RESULT_CONFLICT: 409,
    ErrorCode.ITEM_EXPIRED: 410,
    ErrorCode.VALIDATION_CLOSED: 410,
    ErrorCode.PROOFS_INVALID: 422,
    ErrorCode.INTERNAL: 500,
    ErrorCode.NO_EXECUTOR: 503,
    ErrorCode.INFERENCE_TIMEOUT: 504,
    ErrorCode.UNKNOWN: 500,
}

#: The gRPC code each HTTP status of the mining API stands for (grpc-gateway's mapping).
GRPC_FOR_HTTP: dict[int, int] = {
    400: 3,
    401: 16,
    402: 9,
    403: 7,
    404: 5,
    405: 12,
    409: 6,
    410: 9,
    413: 3,
    422: 3,
    500: 13,
    503: 14,
    504: 4,
}


def _error_code(text: object) -> ErrorCode:
    try:
        return ErrorCode(text)
    except ValueError:
        return ErrorCode.UNKNOWN


@dataclass(frozen=True)
class ErrorBody:
    """The JSON of a refusal: `{code (gRPC), message, details: [], error_code}`."""

    grpc_code: int
    message: str
    error_code: ErrorCode

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.grpc_code,
            "message": self.message,
            "details": [],
            "error_code": self.error_code.value,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ErrorBody:
        """Lenient on purpose: a body without `error_code` (an older node) or with a code this
        version does not know reads as `ErrorCode.UNKNOWN`."""
        r = _Reader(data, "error")
        code = data.get("code")
        message = data.get("message")
        return cls(
            grpc_code=code if is_int(code) else 2,
            message=message if isinstance(message, str) else "",
            error_code=_error_code(r.data.get("error_code")),
        )


class Refusal(GonkaError):
    """The node refuses a request: HTTP `status`, a stable `code` and a one-line `message`.

    The node raises it and answers with `to_body()`; a client rebuilds it with
    `Refusal.from_response(status, body)` and acts on `code`.
    """

    def __init__(self, code: ErrorCode, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status if status is not None else code.http_status

    @property
    def grpc_code(self) -> int:
        return GRPC_FOR_HTTP.get(self.status, 2)

    def to_body(self) -> ErrorBody:
        return ErrorBody(self.grpc_code, self.message, self.code)

    @classmethod
    def from_response(cls, status: int, data: Any) -> Refusal:
        """A refusal from an HTTP status and its parsed JSON body (anything, even None)."""
        if isinstance(data, Mapping):
            body = ErrorBody.from_dict(data)
            return cls(body.error_code, body.message or f"HTTP {status}", status=status)
        return cls(ErrorCode.UNKNOWN, f"HTTP {status}", status=status)


# --- parsing helpers ----------------------------------------------------------------------


class _Reader:
    """Typed reads of one JSON object's fields, each failure a `ProtocolError` naming it."""

    def __init__(self, data: Any, what: str) -> None:
        if not isinstance(data, Mapping):
            raise ProtocolError(f"{what} must be a JSON object")
        self.data: Mapping[str, Any] = data
        self.what = what

    def fail(self, name: str, expected: str) -> ProtocolError:
        value = repr(self.data.get(name))[:40]
        return ProtocolError(f"{self.what}.{name} must be {expected} (got {value})")

    def has(self, name: str) -> bool:
        return name in self.data and self.data[name] is not None

    def integer(self, name: str, low: int | None = None, high: int | None = None) -> int:
        value = self.data.get(name)
        if (
            not is_int(value)
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            bounds = (
                f" in [{low}, {high}]"
                if high is not None
                else (f" >= {low}" if low is not None else "")
            )
            raise self.fail(name, f"an integer{bounds}")
        return value

    def opt_integer(self, name: str, low: int | None = None, high: int | None = None) -> int | None:
        return self.integer(name, low, high) if self.has(name) else None

    def number(self, name: str, low: float | None = None, high: float | None = None) -> float:
        value = self.data.get(name)
        if (
            not is_number(value)
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            raise self.fail(
                name,
                "a finite number"
                + (f" in [{low}, {high}]" if low is not None and high is not None else ""),
            )
        return float(value)

    def opt_number(self, name: str) -> float | None:
        return self.number(name) if self.has(name) else None

    def flag(self, name: str) -> bool:
        value = self.data.get(name)
        if not isinstance(value, bool):
            raise self.fail(name, "true or false")
        return value

    def text(self, name: str, choices: Sequence[str] | None = None) -> str:
        value = self.data.get(name)
        if not isinstance(value, str) or (choices is not None and value not in choices):
            raise self.fail(name, "one of " + ", ".join(choices) if choices else "a string")
        return value

    def opt_text(self, name: str) -> str | None:
        return self.text(name) if self.has(name) else None

    def hex(self, name: str, length: int) -> str:
        value = self.data.get(name)
        if not is_hex(value) or len(value) != length:
            raise self.fail(name, f"{length} hex characters")
        return value

    def amount(self, name: str) -> int:
        """An amount of ngonka: decimal digits in a string (a bare integer is taken too)."""
        value = self.data.get(name)
        if is_uint(value):
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 40:
            return int(value)
        raise self.fail(name, "an amount of ngonka (decimal digits in a string)")

    def seq(self, name: str, max_len: int | None = None) -> Sequence[Any]:
        value = self.data.get(name)
        if not is_list(value) or (max_len is not None and len(value) > max_len):
            raise self.fail(name, "a list" + (f" of at most {max_len}" if max_len else ""))
        return value

    def ints(self, name: str, low: int = 0, high: int | None = None) -> tuple[int, ...]:
        values = self.seq(name)
        if not all(is_int(v) and v >= low and (high is None or v <= high) for v in values):
            raise self.fail(name, "a list of integers")
        return tuple(values)

    def strs(self, name: str) -> tuple[str, ...]:
        values = self.seq(name)
        if not all(isinstance(v, str) for v in values):
            raise self.fail(name, "a list of strings")
        return tuple(values)

    def objects(self, name: str) -> tuple[Mapping[str, Any], ...]:
        values = self.seq(name)
        if not all(isinstance(v, Mapping) for v in values):
            raise self.fail(name, "a list of objects")
        return tuple(values)

    def obj(self, name: str) -> Mapping[str, Any]:
        value = self.data.get(name)
        if not isinstance(value, Mapping):
            raise self.fail(name, "an object")
        return value


def _logprob_entry(entry: Any) -> bool:
    """`{"token": id, "logprob": x}` or `[id, x]`, with an integer id and a finite logprob."""
    if isinstance(entry, Mapping) and set(entry) == {"token", "logprob"}:
        token, logprob = entry["token"], entry["logprob"]
    elif is_list(entry) and len(entry) == 2:
        token, logprob = entry
    else:
        return False
    return is_uint(token) and is_number(logprob)


def _top_logprobs(r: _Reader, name: str) -> tuple[tuple[Any, ...], ...]:
    rows = r.seq(name)
    if not all(is_list(row) and all(_logprob_entry(e) for e in row) for row in rows):
        raise r.fail(name, 'one list per token of {"token": id, "logprob": x} entries')
    return tuple(tuple(row) for row in rows)


def _plain(entries: tuple[tuple[Any, ...], ...]) -> list[list[Any]]:
    return [[dict(e) if isinstance(e, Mapping) else list(e) for e in row] for row in entries]


# --- identity and epochs ------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """`GET /v1/identity`: the node's address (bound by every signature), key and chain id."""

    address: str
    pubkey: str
    chain_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "pubkey": self.pubkey, "chain_id": self.chain_id}

    @classmethod
    def from_dict(cls, data: Any) -> Identity:
        r = _Reader(data, "identity")
        return cls(r.text("address"), r.hex("pubkey", 66), r.text("chain_id"))


@dataclass(frozen=True)
class PhaseSpan:
    start_height: int
    end_height: int

    def to_dict(self) -> dict[str, Any]:
        return {"start_height": self.start_height, "end_height": self.end_height}

    @classmethod
    def from_dict(cls, data: Any, what: str = "phase") -> PhaseSpan:
        r = _Reader(data, what)
        return cls(r.integer("start_height", 0), r.integer("end_height", 0))


@dataclass(frozen=True)
class PocTerms:
    """`poc` of the current epoch: what a PoC round runs and how it is judged."""

    model: str
    seq_len: int
    k_dim: int
    dist_threshold: float
    sample_size: int
    p_mismatch: float
    alpha: float
    max_porosity: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "seq_len": self.seq_len,
            "k_dim": self.k_dim,
            "dist_threshold": self.dist_threshold,
            "sample_size": self.sample_size,
            "p_mismatch": self.p_mismatch,
            "alpha": self.alpha,
            "max_porosity": self.max_porosity,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PocTerms:
        r = _Reader(data, "poc")
        return cls(
            model=r.text("model"),
            seq_len=r.integer("seq_len", 0),
            k_dim=r.integer("k_dim", 1),
            dist_threshold=r.number("dist_threshold"),
            sample_size=r.integer("sample_size", 1),
            p_mismatch=r.number("p_mismatch"),
            alpha=r.number("alpha"),
            max_porosity=r.number("max_porosity"),
        )


@dataclass(frozen=True)
class InferenceTerms:
    """`inference` of the current epoch: what a requester pays and how answers are judged."""

    price_per_token_ngonka: int
    max_tokens_limit: int
    timeout_s: float
    validation_share: float
    replay_threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "price_per_token_ngonka": str(self.price_per_token_ngonka),
            "max_tokens_limit": self.max_tokens_limit,
            "timeout_s": self.timeout_s,
            "validation_share": self.validation_share,
            "replay_threshold": self.replay_threshold,
        }

    @classmethod
    def from_dict(cls, data: Any) -> InferenceTerms:
        r = _Reader(data, "inference")
        return cls(
            price_per_token_ngonka=r.amount("price_per_token_ngonka"),
            max_tokens_limit=r.integer("max_tokens_limit", 1),
            timeout_s=r.number("timeout_s"),
            validation_share=r.number("validation_share", 0.0, 1.0),
            replay_threshold=r.number("replay_threshold"),
        )


@dataclass(frozen=True)
class EpochSchedule:
    """Where the chain stands in the epoch schedule at `height`: the epoch, phase and spans."""

    epoch: int
    phase: str
    height: int
    start_height: int
    end_height: int
    generate: PhaseSpan
    validate: PhaseSpan
    inference: PhaseSpan

    @property
    def phase_end_height(self) -> int:
        """The last height of the current phase."""
        ends = {"generate": self.generate.end_height, "validate": self.validate.end_height}
        return ends.get(self.phase, self.end_height)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "phase": self.phase,
            "height": self.height,
            "start_height": self.start_height,
            "end_height": self.end_height,
            "phases": {
                "generate": self.generate.to_dict(),
                "validate": self.validate.to_dict(),
                "inference": self.inference.to_dict(),
            },
        }


@dataclass(frozen=True)
class EpochCurrent(EpochSchedule):
    """`GET /v1/epochs/current`: the schedule, the seed and the parameters."""

    seed: str | None
    block_time_s: float
    poc: PocTerms
    terms: InferenceTerms
    epoch_reward_ngonka: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **EpochSchedule.to_dict(self),
            "seed": self.seed,
            "block_time_s": self.block_time_s,
            "poc": self.poc.to_dict(),
            "inference": self.terms.to_dict(),
            "epoch_reward_ngonka": str(self.epoch_reward_ngonka),
        }

    @classmethod
    def from_dict(cls, data: Any) -> EpochCurrent:
        r = _Reader(data, "epoch")
        phases = _Reader(r.obj("phases"), "epoch.phases")
        seed = r.opt_text("seed")
        return cls(
            epoch=r.integer("epoch", 0),
            phase=r.text("phase", PHASES),
            height=r.integer("height", 0),
            start_height=r.integer("start_height", 0),
            end_height=r.integer("end_height", 0),
            generate=PhaseSpan.from_dict(phases.obj("generate"), "epoch.phases.generate"),
            validate=PhaseSpan.from_dict(phases.obj("validate"), "epoch.phases.validate"),
            inference=PhaseSpan.from_dict(phases.obj("inference"), "epoch.phases.inference"),
            seed=seed,
            block_time_s=r.number("block_time_s", 0.0),
            poc=PocTerms.from_dict(r.obj("poc")),
            terms=InferenceTerms.from_dict(r.obj("inference")),
            epoch_reward_ngonka=r.amount("epoch_reward_ngonka"),
        )


@dataclass(frozen=True)
class PocResult:
    """One committer's PoC verdict in an epoch."""

    address: str
    count: int
    weight: int
    status: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "count": self.count,
            "weight": self.weight,
            "status": self.status,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PocResult:
        r = _Reader(data, "poc_result")
        return cls(
            r.text("address"),
            r.integer("count", 0),
            r.integer("weight", 0),
            r.text("status", POC_STATUSES),
            r.text("reason"),
        )


@dataclass(frozen=True)
class EpochRecord:
    """`GET /v1/epochs/{n}`: an epoch's PoC results, secret and settlement."""

    epoch: int
    seed: str | None
    ended: bool
    secret_sha256: str
    secret: str | None
    validation_share: float
    poc_results: tuple[PocResult, ...]
    settlement_tx: str | None
    settled_height: int | None

    @property
    def total_weight(self) -> int:
        return sum(r.weight for r in self.poc_results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "ended": self.ended,
            "secret_sha256": self.secret_sha256,
            "secret": self.secret,
            "validation_share": self.validation_share,
            "poc_results": [p.to_dict() for p in self.poc_results],
            "total_weight": self.total_weight,
            "settlement_tx": self.settlement_tx,
            "settled_height": self.settled_height,
        }

    @classmethod
    def from_dict(cls, data: Any) -> EpochRecord:
        r = _Reader(data, "epoch_record")
        return cls(
            epoch=r.integer("epoch", 0),
            seed=r.opt_text("seed"),
            ended=r.flag("ended"),
            secret_sha256=r.hex("secret_sha256", 64),
            secret=r.hex("secret", 64) if r.has("secret") else None,
            validation_share=r.number("validation_share", 0.0, 1.0),
            poc_results=tuple(PocResult.from_dict(p) for p in r.seq("poc_results")),
            settlement_tx=r.opt_text("settlement_tx"),
            settled_height=r.opt_integer("settled_height", 0),
        )


# --- participants -------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisterRequest:
    """`POST /v1/participants`: the signer's key, the models it serves, its devices."""

    MAX_MODELS: ClassVar[int] = 16
    MAX_DEVICES: ClassVar[int] = 64

    pubkey: str
    models: tuple[str, ...]
    devices: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "pubkey": self.pubkey,
            "models": list(self.models),
            "devices": [dict(d) for d in self.devices],
        }

    @classmethod
    def from_dict(cls, data: Any) -> RegisterRequest:
        r = _Reader(data, "registration")
        pubkey = r.hex("pubkey", 66)
        models = r.strs("models")
        if not 1 <= len(models) <= cls.MAX_MODELS:
            raise r.fail("models", f"a list of 1 to {cls.MAX_MODELS} model names")
        devices = r.objects("devices") if r.has("devices") else ()
        if len(devices) > cls.MAX_DEVICES:
            raise r.fail("devices", f"a list of at most {cls.MAX_DEVICES} objects")
        return cls(pubkey, models, devices)


@dataclass(frozen=True)
class Registration:
    """The answer to a registration."""

    address: str
    models: tuple[str, ...]
    capacity: int
    registered_height: int
    node_address: str
    #: The collateral held for it after this registration, and the transaction that locked
    #: what this registration added ("" when nothing was added).
    collateral_ngonka: int = 0
    collateral_tx: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "models": list(self.models),
            "capacity": self.capacity,
            "registered_height": self.registered_height,
            "node_address": self.node_address,
            "collateral_ngonka": str(self.collateral_ngonka),
            "collateral_tx": self.collateral_tx,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Registration:
        r = _Reader(data, "registration")
        return cls(
            r.text("address"),
            r.strs("models"),
            r.integer("capacity", 1),
            r.integer("registered_height", 0),
            r.text("node_address"),
            r.amount("collateral_ngonka") if r.has("collateral_ngonka") else 0,
            r.opt_text("collateral_tx") or "",
        )


@dataclass(frozen=True)
class Commit:
    """A `(count, root)` commitment."""

    count: int
    root: str

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "root": self.root}

    @classmethod
    def from_dict(cls, data: Any) -> Commit:
        r = _Reader(data, "commit")
        return cls(r.integer("count", 1), r.hex("root", 64))


@dataclass(frozen=True)
class ParticipantInfo:
    """One row of `GET /v1/epochs/current/participants`."""

    address: str
    pubkey: str
    models: tuple[str, ...]
    devices: tuple[Mapping[str, Any], ...]
    registered_height: int
    weight: int
    weight_epoch: int | None
    commit: Commit | None
    poc_status: str | None
    poc_weight: int | None
    poc_reason: str | None
    penalties: int
    busy: int
    responsive: bool
    #: Stake (an older node sends none of these): the collateral held for it, whether it may
    #: have weight and work now, and until when it is jailed or unbonding.
    collateral_ngonka: int = 0
    eligible: bool = True
    jailed_until_epoch: int | None = None
    unbonding_until_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "pubkey": self.pubkey,
            "models": list(self.models),
            "devices": [dict(d) for d in self.devices],
            "registered_height": self.registered_height,
            "weight": self.weight,
            "weight_epoch": self.weight_epoch,
            "commit": self.commit.to_dict() if self.commit else None,
            "poc_status": self.poc_status,
            "poc_weight": self.poc_weight,
            "poc_reason": self.poc_reason,
            "penalties": self.penalties,
            "busy": self.busy,
            "responsive": self.responsive,
            "collateral_ngonka": str(self.collateral_ngonka),
            "eligible": self.eligible,
            "jailed_until_epoch": self.jailed_until_epoch,
            "unbonding_until_epoch": self.unbonding_until_epoch,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ParticipantInfo:
        r = _Reader(data, "participant")
        return cls(
            address=r.text("address"),
            pubkey=r.hex("pubkey", 66),
            models=r.strs("models"),
            devices=r.objects("devices"),
            registered_height=r.integer("registered_height", 0),
            weight=r.integer("weight", 0),
            weight_epoch=r.opt_integer("weight_epoch", 0),
            commit=Commit.from_dict(r.data["commit"]) if r.has("commit") else None,
            poc_status=r.opt_text("poc_status"),
            poc_weight=r.opt_integer("poc_weight", 0),
            poc_reason=r.opt_text("poc_reason"),
            penalties=r.integer("penalties", 0),
            busy=r.integer("busy", 0),
            responsive=r.flag("responsive"),
            collateral_ngonka=(r.amount("collateral_ngonka") if r.has("collateral_ngonka") else 0),
            eligible=r.flag("eligible") if r.has("eligible") else True,
            jailed_until_epoch=r.opt_integer("jailed_until_epoch", 0),
            unbonding_until_epoch=r.opt_integer("unbonding_until_epoch", 0),
        )


@dataclass(frozen=True)
class ParticipantsView:
    """`GET /v1/epochs/current/participants`."""

    epoch: int
    weight_epoch: int | None
    participants: tuple[ParticipantInfo, ...]

    @property
    def total_weight(self) -> int:
        return sum(p.weight for p in self.participants)

    def get(self, address: str) -> ParticipantInfo | None:
        return next((p for p in self.participants if p.address == address), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "weight_epoch": self.weight_epoch,
            "total_weight": self.total_weight,
            "participants": [p.to_dict() for p in self.participants],
        }

    @classmethod
    def from_dict(cls, data: Any) -> ParticipantsView:
        r = _Reader(data, "participants")
        return cls(
            r.integer("epoch", 0),
            r.opt_integer("weight_epoch", 0),
            tuple(ParticipantInfo.from_dict(p) for p in r.seq("participants")),
        )


#: Stake statuses (`StakeInfo.status`).
STAKE_STATUSES = ("none", "bonded", "jailed", "unbonding", "returned")
#: Stake move kinds (`StakeMove.kind`).
STAKE_MOVE_KINDS = ("lock", "fraud_slash", "validation_slash", "return")


@dataclass(frozen=True)
class StakeMove:
    """One change of a participant's collateral: locked at registration, slashed (burned) by
    a settlement, or returned by one. `subject` is the inference id of a failed validation,
    the locking transaction's hash, else null."""

    epoch: int
    kind: str
    amount_ngonka: int
    subject: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "kind": self.kind,
            "amount_ngonka": str(self.amount_ngonka),
            "subject": self.subject,
        }

    @classmethod
    def from_dict(cls, data: Any) -> StakeMove:
        r = _Reader(data, "stake move")
        return cls(
            r.integer("epoch", 0),
            r.text("kind", STAKE_MOVE_KINDS),
            r.amount("amount_ngonka"),
            r.opt_text("subject"),
        )


@dataclass(frozen=True)
class StakeInfo:
    """`GET /v1/participants/{address}/stake`, also the answer to a leave request."""

    address: str
    epoch: int
    status: str
    eligible: bool
    collateral_ngonka: int
    required_ngonka: int
    jailed_until_epoch: int | None
    unbonding_until_epoch: int | None
    collateral_address: str
    moves: tuple[StakeMove, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "epoch": self.epoch,
            "status": self.status,
            "eligible": self.eligible,
            "collateral_ngonka": str(self.collateral_ngonka),
            "required_ngonka": str(self.required_ngonka),
            "jailed_until_epoch": self.jailed_until_epoch,
            "unbonding_until_epoch": self.unbonding_until_epoch,
            "collateral_address": self.collateral_address,
            "moves": [m.to_dict() for m in self.moves],
        }

    @classmethod
    def from_dict(cls, data: Any) -> StakeInfo:
        r = _Reader(data, "stake")
        return cls(
            address=r.text("address"),
            epoch=r.integer("epoch", 0),
            status=r.text("status", STAKE_STATUSES),
            eligible=r.flag("eligible"),
            collateral_ngonka=r.amount("collateral_ngonka"),
            required_ngonka=r.amount("required_ngonka"),
            jailed_until_epoch=r.opt_integer("jailed_until_epoch", 0),
            unbonding_until_epoch=r.opt_integer("unbonding_until_epoch", 0),
            collateral_address=r.text("collateral_address"),
            moves=tuple(StakeMove.from_dict(m) for m in r.seq("moves")),
        )


# --- commits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommitRequest:
    """`POST /v1/poc/commits`."""

    epoch: int
    model: str
    count: int
    root: str

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "model": self.model, "count": self.count, "root": self.root}

    @classmethod
    def from_dict(cls, data: Any) -> CommitRequest:
        r = _Reader(data, "commit")
        return cls(
            r.integer("epoch", 0, 2**62),
            r.text("model"),
            r.integer("count", 1, 2**62),
            r.hex("root", 64),
        )


@dataclass(frozen=True)
class CommitAnswer:
    """The answer to a commit (`duplicate`: the same `(count, root)` again)."""

    epoch: int
    count: int
    root: str
    duplicate: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "count": self.count,
            "root": self.root,
            "duplicate": self.duplicate,
        }

    @classmethod
    def from_dict(cls, data: Any) -> CommitAnswer:
        r = _Reader(data, "commit")
        return cls(
            r.integer("epoch", 0), r.integer("count", 1), r.hex("root", 64), r.flag("duplicate")
        )


# --- work items ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkItem:
    """What every work item has: `id`, `kind`, `deadline` (Unix s), `deadline_height`."""

    KIND: ClassVar[str] = ""

    id: str
    deadline: float
    deadline_height: int | None

    @property
    def kind(self) -> str:
        return self.KIND

    def _head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.KIND,
            "deadline": round(self.deadline, 3),
            "deadline_height": self.deadline_height,
        }

    def to_dict(self) -> dict[str, Any]:
        return self._head()

    @staticmethod
    def _head_of(r: _Reader) -> tuple[str, float, int | None]:
        return r.text("id"), r.number("deadline"), r.opt_integer("deadline_height", 0)


@dataclass(frozen=True, kw_only=True)
class ProofRequest(WorkItem):
    """`poc_proof`: prove the sampled leaves of a commit (`leaf_indices` are ranks of the
    nonces in ascending uint32 order, in the sum tree of the first `count` leaves)."""

    KIND: ClassVar[str] = POC_PROOF

    epoch: int
    model: str
    seed: str
    count: int
    root: str
    sample_seed: str
    leaf_indices: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._head(),
            "epoch": self.epoch,
            "model": self.model,
            "seed": self.seed,
            "count": self.count,
            "root": self.root,
            "sample_seed": self.sample_seed,
            "leaf_indices": list(self.leaf_indices),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ProofRequest:
        r = _Reader(data, POC_PROOF)
        return cls(
            *cls._head_of(r),
            epoch=r.integer("epoch", 0),
            model=r.text("model"),
            seed=r.text("seed"),
            count=r.integer("count", 1),
            root=r.hex("root", 64),
            sample_seed=r.text("sample_seed"),
            leaf_indices=r.ints("leaf_indices"),
        )


@dataclass(frozen=True, kw_only=True)
class InferenceTask(WorkItem):
    """`inference`: generate an answer for a request."""

    KIND: ClassVar[str] = INFERENCE_TASK

    inference_id: str
    model: str
    prompt_tokens: tuple[int, ...]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    top_logprobs: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._head(),
            "inference_id": self.inference_id,
            "model": self.model,
            "prompt_tokens": list(self.prompt_tokens),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "top_logprobs": self.top_logprobs,
        }

    @classmethod
    def from_dict(cls, data: Any) -> InferenceTask:
        r = _Reader(data, INFERENCE_TASK)
        return cls(
            *cls._head_of(r),
            inference_id=r.text("inference_id"),
            model=r.text("model"),
            prompt_tokens=r.ints("prompt_tokens"),
            max_tokens=r.integer("max_tokens", 1),
            temperature=r.number("temperature", 0.0, 2.0),
            top_p=r.number("top_p", 0.0, 1.0),
            seed=r.opt_integer("seed", 0),
            top_logprobs=r.integer("top_logprobs", 0),
        )


@dataclass(frozen=True, kw_only=True)
class ValidationTask(WorkItem):
    """`validation`: replay another participant's answer."""

    KIND: ClassVar[str] = VALIDATION_TASK

    inference_id: str
    model: str
    prompt_tokens: tuple[int, ...]
    tokens: tuple[int, ...]
    #: Per token, the executor's entries as it posted them (`{token, logprob}` or pairs).
    top_logprobs: tuple[tuple[Any, ...], ...]
    threshold: float
    #: The request's sampling, which processed logprobs depend on (1.0 from older nodes).
    temperature: float = 1.0
    top_p: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._head(),
            "inference_id": self.inference_id,
            "model": self.model,
            "prompt_tokens": list(self.prompt_tokens),
            "tokens": list(self.tokens),
            "top_logprobs": _plain(self.top_logprobs),
            "threshold": self.threshold,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ValidationTask:
        r = _Reader(data, VALIDATION_TASK)
        return cls(
            *cls._head_of(r),
            inference_id=r.text("inference_id"),
            model=r.text("model"),
            prompt_tokens=r.ints("prompt_tokens"),
            tokens=r.ints("tokens"),
            top_logprobs=_top_logprobs(r, "top_logprobs"),
            threshold=r.number("threshold", 0.0, 1.0),
            temperature=r.number("temperature", 0.0, 2.0) if r.has("temperature") else 1.0,
            top_p=r.number("top_p", 0.0, 1.0) if r.has("top_p") else 1.0,
        )


@dataclass(frozen=True, kw_only=True)
class PocValidationTask(WorkItem):
    """`poc_validation`: recompute the sampled nonces of another participant's accepted proof
    answers and vote on them (`PocValidationResult`)."""

    KIND: ClassVar[str] = POC_VALIDATION

    epoch: int
    #: The prover's address and public key (66 lower-case hex characters, taken verbatim).
    prover: str
    pubkey: str
    model: str
    seed: str
    seq_len: int
    #: The sampled nonces and, in the same order, the prover's vectors (base64, 24 bytes).
    nonces: tuple[int, ...]
    vectors: tuple[str, ...]
    dist_threshold: float
    p_mismatch: float
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._head(),
            "epoch": self.epoch,
            "prover": self.prover,
            "pubkey": self.pubkey,
            "model": self.model,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "nonces": list(self.nonces),
            "vectors": list(self.vectors),
            "dist_threshold": self.dist_threshold,
            "p_mismatch": self.p_mismatch,
            "alpha": self.alpha,
        }

    @classmethod
    def from_dict(cls, data: Any) -> PocValidationTask:
        r = _Reader(data, POC_VALIDATION)
        nonces, vectors = r.ints("nonces", 0, 2**32 - 1), r.strs("vectors")
        if len(vectors) != len(nonces):
            raise r.fail("vectors", "one vector per nonce")
        return cls(
            *cls._head_of(r),
            epoch=r.integer("epoch", 0),
            prover=r.text("prover"),
            pubkey=r.text("pubkey"),
            model=r.text("model"),
            seed=r.text("seed"),
            seq_len=r.integer("seq_len", 1),
            nonces=nonces,
            vectors=vectors,
            dist_threshold=r.number("dist_threshold", 0.0, 1e6),
            p_mismatch=r.number("p_mismatch", 0.0, 1.0),
            alpha=r.number("alpha", 0.0, 1.0),
        )


AnyWorkItem = ProofRequest | InferenceTask | ValidationTask | PocValidationTask

_ITEM_KINDS: dict[
    str,
    type[ProofRequest] | type[InferenceTask] | type[ValidationTask] | type[PocValidationTask],
] = {
    POC_PROOF: ProofRequest,
    INFERENCE_TASK: InferenceTask,
    VALIDATION_TASK: ValidationTask,
    POC_VALIDATION: PocValidationTask,
}


def work_item_from_dict(data: Any) -> AnyWorkItem:
    """A work item of any kind; `ProtocolError` for an unknown kind."""
    r = _Reader(data, "work item")
    kind = r.text("kind", tuple(_ITEM_KINDS))
    return _ITEM_KINDS[kind].from_dict(data)


@dataclass(frozen=True)
class WorkBatch:
    """`GET /v1/work`: the caller's next items."""

    epoch: int
    phase: str
    height: int
    items: tuple[AnyWorkItem, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "phase": self.phase,
            "height": self.height,
            "items": [i.to_dict() for i in self.items],
        }

    @classmethod
    def from_dict(cls, data: Any) -> WorkBatch:
        r = _Reader(data, "work")
        return cls(
            r.integer("epoch", 0),
            r.text("phase", PHASES),
            r.integer("height", 0),
            tuple(work_item_from_dict(i) for i in r.seq("items")),
        )


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofResult:
    """The body answering a `poc_proof`: one `ProofAnswer.to_dict()` per requested leaf
    (`gonka_cli.compute.validation` owns that format and parses each answer)."""

    answers: tuple[Mapping[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"answers": [dict(a) for a in self.answers]}

    @classmethod
    def from_dict(cls, data: Any) -> ProofResult:
        return cls(_Reader(data, "proof result").objects("answers"))


@dataclass(frozen=True)
class InferenceResult:
    """The body answering an `inference` task."""

    tokens: tuple[int, ...]
    top_logprobs: tuple[tuple[Any, ...], ...]
    finish_reason: str = "length"

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": list(self.tokens),
            "top_logprobs": _plain(self.top_logprobs),
            "finish_reason": self.finish_reason,
        }

    @classmethod
    def from_dict(cls, data: Any) -> InferenceResult:
        r = _Reader(data, "inference result")
        tokens = r.ints("tokens")
        top = _top_logprobs(r, "top_logprobs")
        if len(top) != len(tokens):
            raise r.fail("top_logprobs", "one list per token")
        finish = r.text("finish_reason", ("stop", "length")) if r.has("finish_reason") else "length"
        return cls(tokens, top, finish)


@dataclass(frozen=True)
class ValidationResult:
    """The body answering a `validation` task: the replay check's verdict and statistics.

    `similarity` is the logprob similarity over the answer's N tokens; `support_margin`,
    `log10_p` and `z_score` are `replay_check.ReplayVerdict`'s (absent from older miners,
    and None where they do not apply); `reason` says in words what failed.
    """

    passed: bool
    similarity: float
    support_margin: float | None = None
    log10_p: float | None = None
    z_score: float | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"passed": self.passed, "similarity": self.similarity}
        for name in ("support_margin", "log10_p", "z_score", "reason"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ValidationResult:
        r = _Reader(data, "validation result")
        log10_p = r.opt_number("log10_p")
        if log10_p is not None and log10_p > 0:
            raise r.fail("log10_p", "a number <= 0")
        return cls(
            r.flag("passed"),
            r.number("similarity", 0.0, 1.0),
            r.opt_number("support_margin"),
            log10_p,
            r.opt_number("z_score"),
            r.opt_text("reason"),
        )


@dataclass(frozen=True)
class PocValidationResult:
    """The body answering a `poc_validation` item: the validator's vote. `valid` must be what
    the binomial test says of `n_mismatch` mismatches among the item's nonces."""

    valid: bool
    n_mismatch: int

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "n_mismatch": self.n_mismatch}

    @classmethod
    def from_dict(cls, data: Any) -> PocValidationResult:
        r = _Reader(data, "PoC validation result")
        return cls(r.flag("valid"), r.integer("n_mismatch", 0))


@dataclass(frozen=True)
class ResultAnswer:
    """The answer to `POST /v1/work/{id}/result`: `status` is `accepted`, `duplicate` or
    `late`; `validation` is `pending` for an accepted proof, else absent."""

    id: str
    status: str
    validation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.validation is not None:
            data["validation"] = self.validation
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ResultAnswer:
        r = _Reader(data, "result")
        return cls(
            r.text("id"),
            r.text("status", ("accepted", "duplicate", "late")),
            r.opt_text("validation"),
        )


# --- chat completions ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChatRequest:
    """`POST /v1/chat/completions` (OpenAI's body; the fields this network reads).

    `from_dict` checks types only; the node checks the model, the context and its limits.
    """

    model: str
    messages: tuple[Mapping[str, Any], ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    logprobs: bool = False
    stream: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in self.messages]}
        for name in ("max_tokens", "temperature", "top_p", "seed"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.logprobs:
            data["logprobs"] = True
        if self.stream:
            data["stream"] = True
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ChatRequest:
        r = _Reader(data, "chat")
        max_tokens = r.opt_integer("max_tokens", 1)
        if max_tokens is None:
            max_tokens = r.opt_integer("max_completion_tokens", 1)
        if r.has("n") and r.data["n"] != 1:
            raise r.fail("n", "1 (this network returns one choice per request)")
        if r.has("stop"):
            raise r.fail("stop", "null: stop sequences are not supported")
        return cls(
            model=r.text("model"),
            messages=r.objects("messages"),
            max_tokens=max_tokens,
            temperature=r.number("temperature", 0.0, 2.0) if r.has("temperature") else None,
            top_p=r.number("top_p", 0.0, 1.0) if r.has("top_p") else None,
            seed=r.opt_integer("seed", 0, 2**63 - 1),
            logprobs=r.flag("logprobs") if "logprobs" in r.data else False,
            stream=r.flag("stream") if "stream" in r.data else False,
        )


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Usage:
        r = _Reader(data, "usage")
        return cls(r.integer("prompt_tokens", 0), r.integer("completion_tokens", 0))


@dataclass(frozen=True)
class GonkaInfo:
    """The `gonka` object of a completion: who served it and what was escrowed."""

    inference_id: str
    executor: str
    escrow_ngonka: int
    epoch: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "inference_id": self.inference_id,
            "executor": self.executor,
            "escrow_ngonka": str(self.escrow_ngonka),
            "epoch": self.epoch,
        }

    @classmethod
    def from_dict(cls, data: Any) -> GonkaInfo:
        r = _Reader(data, "gonka")
        return cls(
            r.text("inference_id"),
            r.text("executor"),
            r.amount("escrow_ngonka"),
            r.integer("epoch", 0),
        )


@dataclass(frozen=True)
class ChatChoice:
    content: str
    finish_reason: str
    #: OpenAI's `choices[0].logprobs` object, or None when not asked for.
    logprobs: Mapping[str, Any] | None = None
    index: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "message": {"role": "assistant", "content": self.content},
            "logprobs": dict(self.logprobs) if self.logprobs is not None else None,
            "finish_reason": self.finish_reason,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ChatChoice:
        r = _Reader(data, "choice")
        message = _Reader(r.obj("message"), "choice.message")
        logprobs = r.obj("logprobs") if r.has("logprobs") else None
        return cls(
            message.text("content"), r.text("finish_reason"), logprobs, r.integer("index", 0)
        )


@dataclass(frozen=True)
class ChatCompletion:
    """The answer to a chat completion (`stream` false)."""

    id: str
    created: int
    model: str
    choice: ChatChoice
    usage: Usage
    gonka: GonkaInfo

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [self.choice.to_dict()],
            "usage": self.usage.to_dict(),
            "gonka": self.gonka.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ChatCompletion:
        r = _Reader(data, "completion")
        choices = r.seq("choices")
        if len(choices) != 1:
            raise r.fail("choices", "a list of one choice")
        return cls(
            r.text("id"),
            r.integer("created", 0),
            r.text("model"),
            ChatChoice.from_dict(choices[0]),
            Usage.from_dict(r.obj("usage")),
            GonkaInfo.from_dict(r.obj("gonka")),
        )


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferenceRecord:
    """`GET /v1/inferences/{id}`: one inference, its validation and settlement."""

    id: str
    epoch: int
    requester: str
    model: str
    prompt_tokens: int
    max_tokens: int
    escrow_ngonka: int
    escrow_tx: str
    status: str
    executor: str
    completion_tokens: int
    validation: str
    validator: str
    similarity: float | None
    settled_epoch: int | None
    selection_epoch: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "epoch": self.epoch,
            "requester": self.requester,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "max_tokens": self.max_tokens,
            "escrow_ngonka": str(self.escrow_ngonka),
            "escrow_tx": self.escrow_tx,
            "status": self.status,
            "executor": self.executor,
            "completion_tokens": self.completion_tokens,
            "validation": self.validation,
            "validator": self.validator,
            "similarity": self.similarity,
            "settled_epoch": self.settled_epoch,
            "selection_epoch": self.selection_epoch,
        }

    @classmethod
    def from_dict(cls, data: Any) -> InferenceRecord:
        r = _Reader(data, "inference")
        return cls(
            id=r.text("id"),
            epoch=r.integer("epoch", 0),
            requester=r.text("requester"),
            model=r.text("model"),
            prompt_tokens=r.integer("prompt_tokens", 0),
            max_tokens=r.integer("max_tokens", 0),
            escrow_ngonka=r.amount("escrow_ngonka"),
            escrow_tx=r.text("escrow_tx"),
            status=r.text("status", ("queued", "completed", "failed")),
            executor=r.text("executor"),
            completion_tokens=r.integer("completion_tokens", 0),
            validation=r.text("validation", ("none", "pending", "passed", "failed")),
            validator=r.text("validator"),
            similarity=r.opt_number("similarity"),
            settled_epoch=r.opt_integer("settled_epoch", 0),
            selection_epoch=r.opt_integer("selection_epoch", 0),
        )


@dataclass(frozen=True)
class EarningRecord:
    """One payment the network made to an address: a PoC reward, an inference fee, or a
    validation reward (per validation vote the weighted majority agreed with)."""

    height: int
    epoch: int
    kind: str
    amount_ngonka: int
    inference_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "epoch": self.epoch,
            "kind": self.kind,
            "amount_ngonka": str(self.amount_ngonka),
            "inference_id": self.inference_id,
        }

    @classmethod
    def from_dict(cls, data: Any) -> EarningRecord:
        r = _Reader(data, "earning")
        return cls(
            r.integer("height", 0),
            r.integer("epoch", 0),
            r.text("kind", EARNING_KINDS),
            r.amount("amount_ngonka"),
            r.opt_text("inference_id"),
        )


@dataclass(frozen=True)
class Earnings:
    """`GET /v1/participants/{address}/earnings?since_height=H`: what the network paid
    `address` in blocks after `since_height`, up to `height`; sums by kind and the records."""

    address: str
    since_height: int
    height: int
    records: tuple[EarningRecord, ...] = field(default_factory=tuple)

    def _sum(self, kind: str) -> int:
        return sum(r.amount_ngonka for r in self.records if r.kind == kind)

    @property
    def poc_reward_ngonka(self) -> int:
        return self._sum(POC_REWARD)

    @property
    def inference_fees_ngonka(self) -> int:
        return self._sum(INFERENCE_FEE)

    @property
    def validation_reward_ngonka(self) -> int:
        return self._sum(VALIDATION_REWARD)

    @property
    def total_ngonka(self) -> int:
        return sum(r.amount_ngonka for r in self.records)

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "since_height": self.since_height,
            "height": self.height,
            "poc_reward_ngonka": str(self.poc_reward_ngonka),
            "inference_fees_ngonka": str(self.inference_fees_ngonka),
            "validation_reward_ngonka": str(self.validation_reward_ngonka),
            "total_ngonka": str(self.total_ngonka),
            "records": [rec.to_dict() for rec in self.records],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Earnings:
        r = _Reader(data, "earnings")
        earnings = cls(
            r.text("address"),
            r.integer("since_height", 0),
            r.integer("height", 0),
            tuple(EarningRecord.from_dict(e) for e in r.seq("records")),
        )
        for name in (
            "poc_reward_ngonka",
            "inference_fees_ngonka",
            "validation_reward_ngonka",
            "total_ngonka",
        ):
            if r.amount(name) != getattr(earnings, name):
                raise r.fail(name, "the sum of its records")
        return earnings
