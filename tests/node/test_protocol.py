"""The typed work protocol (`gonka_cli.protocol`): wire forms, checks and refusals.

The messages are checked against answers of a real node in test_network_api.py and
test_earnings.py; here each one round-trips its documented JSON, every malformed field is
refused with a `ProtocolError` that names it, and arbitrary JSON never raises anything else.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gonka_cli import protocol as p
from gonka_cli.errors import GonkaError

ADDRESS = "gonka1" + "q" * 38
ROOT = "ab" * 32
SEED = "AB" * 32
PUBKEY = "02" + "cd" * 32

PROOF = {
    "id": "a" * 32,
    "kind": "poc_proof",
    "deadline": 1795618976.5,
    "deadline_height": 70,
    "epoch": 0,
    "model": "gonka-tiny",
    "seed": SEED,
    "count": 5000,
    "root": ROOT,
    "sample_seed": f"{SEED}_{ADDRESS}",
    "leaf_indices": [3, 17, 4000],
}
TASK = {
    "id": "b" * 32,
    "kind": "inference",
    "deadline": 1795618976.25,
    "deadline_height": None,
    "inference_id": "inf-" + "c" * 32,
    "model": "gonka-tiny",
    "prompt_tokens": [256, 1, 2],
    "max_tokens": 8,
    "temperature": 0.0,
    "top_p": 1.0,
    "seed": None,
    "top_logprobs": 5,
}
REPLAY = {
    "id": "d" * 32,
    "kind": "validation",
    "deadline": 1795618977.0,
    "deadline_height": None,
    "inference_id": "inf-" + "c" * 32,
    "model": "gonka-tiny",
    "prompt_tokens": [256, 1, 2],
    "tokens": [65, 66],
    "top_logprobs": [[{"token": 65, "logprob": -0.1}], [[66, -0.2], [1, -3.0]]],
    "threshold": 0.96,
    "temperature": 0.7,
    "top_p": 0.9,
}
POC_VOTE = {
    "id": "e" * 32,
    "kind": "poc_validation",
    "deadline": 1795618977.0,
    "deadline_height": 190,
    "epoch": 1,
    "prover": ADDRESS,
    "pubkey": PUBKEY,
    "model": "gonka-tiny",
    "seed": "AB" * 32,
    "seq_len": 32,
    "nonces": [3, 7],
    "vectors": ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
    "dist_threshold": 0.15,
    "p_mismatch": 0.05,
    "alpha": 0.05,
}
EPOCH = {
    "epoch": 1,
    "phase": "generate",
    "height": 125,
    "start_height": 121,
    "end_height": 240,
    "phases": {
        "generate": {"start_height": 121, "end_height": 160},
        "validate": {"start_height": 161, "end_height": 190},
        "inference": {"start_height": 191, "end_height": 240},
    },
    "seed": SEED,
    "block_time_s": 1.0,
    "poc": {
        "model": "gonka-tiny",
        "seq_len": 32,
        "k_dim": 12,
        "dist_threshold": 0.15,
        "sample_size": 200,
        "p_mismatch": 0.05,
        "alpha": 0.05,
        "max_porosity": 100.0,
    },
    "inference": {
        "price_per_token_ngonka": "1000",
        "max_tokens_limit": 256,
        "timeout_s": 30.0,
        "validation_share": 0.1,
        "replay_threshold": 0.96,
    },
    "epoch_reward_ngonka": "10000000000000",
}
RECORD = {
    "epoch": 0,
    "seed": SEED,
    "ended": True,
    "secret_sha256": "ef" * 32,
    "secret": "01" * 32,
    "validation_share": 0.1,
    "poc_results": [
        {"address": ADDRESS, "count": 200, "weight": 200, "status": "valid", "reason": "ok"}
    ],
    "total_weight": 200,
    "settlement_tx": "AB" * 32,
    "settled_height": 121,
}
PARTICIPANTS = {
    "epoch": 1,
    "weight_epoch": 0,
    "total_weight": 200,
    "participants": [
        {
            "address": ADDRESS,
            "pubkey": PUBKEY,
            "models": ["gonka-tiny"],
            "devices": [{"name": "cpu"}],
            "registered_height": 3,
            "weight": 200,
            "weight_epoch": 0,
            "commit": {"count": 10, "root": ROOT},
            "poc_status": None,
            "poc_weight": None,
            "poc_reason": None,
            "penalties": 0,
            "busy": 1,
            "responsive": True,
            "collateral_ngonka": "1000000000000",
            "eligible": False,
            "jailed_until_epoch": 3,
            "unbonding_until_epoch": None,
        }
    ],
}
STAKE = {
    "address": ADDRESS,
    "epoch": 2,
    "status": "jailed",
    "eligible": False,
    "collateral_ngonka": "800000000000",
    "required_ngonka": "1000000000000",
    "jailed_until_epoch": 3,
    "unbonding_until_epoch": None,
    "collateral_address": ADDRESS,
    "moves": [
        {"epoch": 0, "kind": "lock", "amount_ngonka": "1000000000000", "subject": "AB" * 32},
        {"epoch": 1, "kind": "fraud_slash", "amount_ngonka": "200000000000", "subject": None},
    ],
}
COMPLETION = {
    "id": "inf-" + "c" * 32,
    "object": "chat.completion",
    "created": 1795618976,
    "model": "gonka-tiny",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "AB"},
            "logprobs": None,
            "finish_reason": "length",
        }
    ],
    "usage": {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8},
    "gonka": {
        "inference_id": "inf-" + "c" * 32,
        "executor": ADDRESS,
        "escrow_ngonka": "70000",
        "epoch": 0,
    },
}
INFERENCE = {
    "id": "inf-" + "c" * 32,
    "epoch": 0,
    "requester": ADDRESS,
    "model": "gonka-tiny",
    "prompt_tokens": 6,
    "max_tokens": 64,
    "escrow_ngonka": "70000",
    "escrow_tx": "AB" * 32,
    "status": "completed",
    "executor": ADDRESS,
    "completion_tokens": 2,
    "validation": "passed",
    "validator": ADDRESS,
    "similarity": 0.99,
    "settled_epoch": 0,
    "selection_epoch": 0,
}
EARNINGS = {
    "address": ADDRESS,
    "since_height": 10,
    "height": 250,
    "poc_reward_ngonka": "10000000000000",
    "inference_fees_ngonka": "8000",
    "validation_reward_ngonka": "0",
    "total_ngonka": "10000000008000",
    "records": [
        {
            "height": 122,
            "epoch": 0,
            "kind": "poc_reward",
            "amount_ngonka": "10000000000000",
            "inference_id": None,
        },
        {
            "height": 122,
            "epoch": 0,
            "kind": "inference_fee",
            "amount_ngonka": "8000",
            "inference_id": "inf-" + "c" * 32,
        },
    ],
}

#: (class or parser, a wire form it must reproduce exactly)
WIRE: list[tuple[Any, dict[str, Any]]] = [
    (p.Identity, {"address": ADDRESS, "pubkey": PUBKEY, "chain_id": "gonka-devnet"}),
    (p.EpochCurrent, EPOCH),
    (p.EpochRecord, RECORD),
    (p.ParticipantsView, PARTICIPANTS),
    (p.RegisterRequest, {"pubkey": PUBKEY, "models": ["gonka-tiny"], "devices": [{"n": 1}]}),
    (
        p.Registration,
        {
            "address": ADDRESS,
            "models": ["gonka-tiny"],
            "capacity": 1,
            "registered_height": 3,
            "node_address": ADDRESS,
            "collateral_ngonka": "1000000000000",
            "collateral_tx": "AB" * 32,
        },
    ),
    (p.StakeInfo, STAKE),
    (p.CommitRequest, {"epoch": 1, "model": "gonka-tiny", "count": 10, "root": ROOT}),
    (p.CommitAnswer, {"epoch": 1, "count": 10, "root": ROOT, "duplicate": False}),
    (p.work_item_from_dict, PROOF),
    (p.work_item_from_dict, TASK),
    (p.work_item_from_dict, REPLAY),
    (p.work_item_from_dict, POC_VOTE),
    (p.WorkBatch, {"epoch": 1, "phase": "validate", "height": 170, "items": [PROOF, TASK]}),
    (p.ProofResult, {"answers": [{"leaf_index": 3, "nonce": 3, "vector": "AA==", "proof": []}]}),
    (
        p.InferenceResult,
        {"tokens": [65], "top_logprobs": [[[65, -0.5]]], "finish_reason": "stop"},
    ),
    (p.ValidationResult, {"passed": True, "similarity": 0.99}),
    (p.PocValidationResult, {"valid": False, "n_mismatch": 17}),
    (p.ResultAnswer, {"id": "a" * 32, "status": "accepted", "validation": "pending"}),
    (p.ResultAnswer, {"id": "a" * 32, "status": "late"}),
    (
        p.ChatRequest,
        {
            "model": "gonka-tiny",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 8,
            "temperature": 0.0,
            "seed": 7,
            "logprobs": True,
        },
    ),
    (p.ChatCompletion, COMPLETION),
    (p.InferenceRecord, INFERENCE),
    (p.Earnings, EARNINGS),
    (
        p.ErrorBody,
        {"code": 6, "message": "m", "details": [], "error_code": "commits_closed"},
    ),
]


def _parse(parser: Any, data: Any) -> Any:
    return parser(data) if not isinstance(parser, type) else parser.from_dict(data)


@pytest.mark.parametrize(("parser", "wire"), WIRE, ids=[f"{i}" for i in range(len(WIRE))])
def test_every_message_round_trips_its_wire_form(parser: Any, wire: dict[str, Any]) -> None:
    message = _parse(parser, json.loads(json.dumps(wire)))
    assert message.to_dict() == wire
    assert json.loads(json.dumps(message.to_dict())) == wire


def test_work_items_parse_to_their_kind() -> None:
    assert isinstance(p.work_item_from_dict(PROOF), p.ProofRequest)
    assert isinstance(p.work_item_from_dict(TASK), p.InferenceTask)
    replay = p.work_item_from_dict(REPLAY)
    assert isinstance(replay, p.ValidationTask)
    assert isinstance(p.work_item_from_dict(POC_VOTE), p.PocValidationTask)
    assert (replay.temperature, replay.top_p) == (0.7, 0.9)
    # An older node's validation item has no sampling: the defaults are the neutral ones.
    old = {k: v for k, v in REPLAY.items() if k not in ("temperature", "top_p")}
    assert (p.ValidationTask.from_dict(old).temperature, p.ValidationTask.from_dict(old).top_p) == (
        1.0,
        1.0,
    )


BAD_FIELDS: list[tuple[Any, dict[str, Any], str, Any]] = [
    (p.CommitRequest, {"epoch": 1, "model": "m", "count": 10, "root": ROOT}, "count", True),
    (p.CommitRequest, {"epoch": 1, "model": "m", "count": 10, "root": ROOT}, "count", 0),
    (p.CommitRequest, {"epoch": 1, "model": "m", "count": 10, "root": ROOT}, "root", "ab" * 31),
    (p.CommitRequest, {"epoch": 1, "model": "m", "count": 10, "root": ROOT}, "root", "zz" * 32),
    (p.CommitRequest, {"epoch": 1, "model": "m", "count": 10, "root": ROOT}, "epoch", -1),
    (p.CommitRequest, {"epoch": 1, "model": "m", "count": 10, "root": ROOT}, "model", None),
    (p.RegisterRequest, {"pubkey": PUBKEY, "models": ["m"]}, "models", []),
    (p.RegisterRequest, {"pubkey": PUBKEY, "models": ["m"]}, "models", "m"),
    (p.RegisterRequest, {"pubkey": PUBKEY, "models": ["m"]}, "pubkey", "02"),
    (p.RegisterRequest, {"pubkey": PUBKEY, "models": ["m"]}, "devices", ["cpu"]),
    (p.work_item_from_dict, PROOF, "kind", "mystery"),
    (p.work_item_from_dict, PROOF, "leaf_indices", [1, "2"]),
    (p.work_item_from_dict, TASK, "temperature", float("nan")),
    (p.work_item_from_dict, REPLAY, "top_logprobs", [["x"], []]),
    (p.work_item_from_dict, POC_VOTE, "vectors", ["AAAA"]),
    (p.work_item_from_dict, POC_VOTE, "nonces", [3, -7]),
    (p.PocValidationResult, {"valid": True, "n_mismatch": 0}, "n_mismatch", -1),
    (p.PocValidationResult, {"valid": True, "n_mismatch": 0}, "valid", "yes"),
    (p.InferenceResult, {"tokens": [1], "top_logprobs": [[]]}, "top_logprobs", [[], []]),
    (p.InferenceResult, {"tokens": [1], "top_logprobs": [[]]}, "finish_reason", "eos"),
    (p.ValidationResult, {"passed": True, "similarity": 0.5}, "similarity", 1.5),
    (p.ValidationResult, {"passed": True, "similarity": 0.5}, "passed", 1),
    (p.Earnings, EARNINGS, "total_ngonka", "1"),
    (p.Earnings, EARNINGS, "poc_reward_ngonka", 1.5),
    (p.InferenceRecord, INFERENCE, "escrow_ngonka", "-5"),
    (p.EpochCurrent, EPOCH, "phase", "resting"),
    (p.ChatRequest, {"model": "m", "messages": []}, "n", 2),
    (p.ChatRequest, {"model": "m", "messages": []}, "stop", ["\n"]),
]


@pytest.mark.parametrize(
    ("parser", "good", "name", "value"),
    BAD_FIELDS,
    ids=[f"{i}-{name}" for i, (_, _, name, _) in enumerate(BAD_FIELDS)],
)
def test_a_bad_field_is_a_protocol_error_naming_it(
    parser: Any, good: dict[str, Any], name: str, value: Any
) -> None:
    _parse(parser, good)  # the message is fine without the change
    with pytest.raises(p.ProtocolError) as caught:
        _parse(parser, {**good, name: value})
    message = str(caught.value)
    assert f".{name} " in message, message
    assert "\n" not in message


@pytest.mark.parametrize("data", [None, [], "x", 5, True])
def test_a_message_that_is_not_an_object_is_a_protocol_error(data: Any) -> None:
    with pytest.raises(p.ProtocolError, match="must be a JSON object"):
        p.CommitRequest.from_dict(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from([w for _, w in WIRE]),
    changes=st.dictionaries(st.text(max_size=12), JSON, max_size=4),
    parser=st.sampled_from([w for w, _ in WIRE]),
)
def test_any_json_parses_or_is_a_protocol_error(
    base: dict[str, Any], changes: dict[str, Any], parser: Any
) -> None:
    try:
        message = _parse(parser, {**base, **changes})
    except p.ProtocolError:
        return
    # What parses, serialises to JSON that parses to the same message.
    again = _parse(parser, json.loads(json.dumps(message.to_dict())))
    assert again == message or again.to_dict() == message.to_dict()


def test_each_error_code_has_one_status_and_the_refusal_carries_it() -> None:
    assert len({c.value for c in p.ErrorCode}) == len(p.ErrorCode)
    for code in p.ErrorCode:
        refusal = p.Refusal(code, "why")
        assert isinstance(refusal, GonkaError)
        assert refusal.status == code.http_status
        assert refusal.grpc_code == p.GRPC_FOR_HTTP[code.http_status]
        body = refusal.to_body().to_dict()
        assert body == {
            "code": refusal.grpc_code,
            "message": "why",
            "details": [],
            "error_code": code.value,
        }
        back = p.Refusal.from_response(refusal.status, body)
        assert (back.status, back.code, back.message) == (refusal.status, code, "why")


@pytest.mark.parametrize(
    "body",
    [
        {"code": 7, "message": "not registered", "details": []},  # an older node
        {"code": 7, "message": "x", "details": [], "error_code": "a_code_from_the_future"},
        None,
        "Bad Gateway",
    ],
)
def test_a_refusal_without_a_known_code_reads_as_unknown(body: Any) -> None:
    refusal = p.Refusal.from_response(403, body)
    assert refusal.code is p.ErrorCode.UNKNOWN
    assert refusal.status == 403
    assert refusal.message


def test_the_protocol_imports_neither_the_node_nor_the_miner_nor_torch() -> None:
    code = (
        "import sys, gonka_cli.protocol; "
        "bad = [m for m in sys.modules if m.startswith(('gonka_cli.node', 'gonka_cli.miner', "
        "'torch', 'numpy', 'fastapi'))]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
