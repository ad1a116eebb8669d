"""PoC generate/validation jobs: parsing, the verdict, the queue (real compute on gonka-tiny)."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.compute.validation import fraud_cutoff
from gonka_cli.mlnode.callbacks import Outbox, Sender
from gonka_cli.mlnode.jobs import JobQueue, judge
from gonka_cli.mlnode.messages import GenerateRequest, MlNodeError, StatTest
from tests.mlnode.test_callbacks import PATH, Target

MODEL = "gonka-tiny"
SEQ_LEN = 4
BLOCK_HASH = "TEST_BLOCK"  # any string, verbatim (the golden file uses this one)
PUBLIC_KEY = "test_pub_keys"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def fp16(values: list[float]) -> bytes:
    return struct.pack("<12e", *values)


@pytest.fixture(scope="module")
def compute() -> Any:
    from gonka_cli.compute.models import load_model
    from gonka_cli.compute.poc import PocInputParams, compute_poc

    model = load_model(MODEL)

    def run(request: GenerateRequest) -> Mapping[int, bytes]:
        batch = compute_poc(
            model,
            request.block_hash,
            request.public_key,
            request.nonces,
            params=PocInputParams(seq_len=request.params.seq_len),
        )
        return dict(zip(batch.nonces, batch.artifacts, strict=True))

    return run


def body(nonces: list[int], /, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "block_hash": BLOCK_HASH,
        "block_height": 77,
        "public_key": PUBLIC_KEY,
        "node_id": 0,
        "node_count": 1,
        "params": {"model": MODEL, "seq_len": SEQ_LEN},
        "nonces": nonces,
    }
    data.update(changes)
    return data


def honest(compute: Any, nonces: list[int]) -> dict[int, str]:
    computed = compute(GenerateRequest.from_dict(body(nonces)))
    return {n: b64(computed[n]) for n in nonces}


# --- parsing ----------------------------------------------------------------------------------


def test_dapi_stat_test_is_read_as_the_python_ml_node_reads_it() -> None:
    request = GenerateRequest.from_dict(
        body(
            [1, 2],
            validation={
                "artifacts": [{"nonce": 2, "vector_b64": "x"}, {"nonce": 1, "vector_b64": "y"}]
            },
            stat_test={"dist_threshold": 0.2, "p_mismatch": 0.1, "p_value_threshold": 0.05},
        )
    )
    assert request.stat_test == StatTest(0.2, 0.1, 0.01, 0.05)
    assert request.validation == {1: "y", 2: "x"}
    assert request.wait is False and request.url is None
    assert request.params.k_dim == 12


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        (
            {"nonces": [1, 2], "validation": {"artifacts": [{"nonce": 1, "vector_b64": "x"}]}},
            400,
            "must equal nonces",
        ),
        ({"nonces": [1, 1]}, 400, "repeat"),
        ({"nonces": []}, 422, "nonces"),
        ({"nonces": [2**31]}, 422, "nonces[0]"),
        ({"nonces": ["1"]}, 422, "nonces[0]"),
        ({"params": {"model": MODEL, "seq_len": 4, "batch": 3}}, 422, "params"),
        ({"params": {"model": MODEL, "seq_len": 4, "k_dim": 8}}, 422, "k_dim"),
        ({"params": {"model": MODEL}}, 422, "params.seq_len"),
        ({"node_id": 3, "node_count": 2}, 422, "node_id"),
        ({"block_hash": 5}, 422, "block_hash"),
        ({"url": "ftp://x"}, 422, "url"),
        ({"wait": "yes"}, 422, "wait"),
        ({"stat_test": {"p_mismatch": 2}}, 422, "p_mismatch"),
        ({"validation": {"artifacts": [{"nonce": 1}]}}, 422, "vector_b64"),
    ],
)
def test_a_bad_generate_body_is_refused_naming_the_field(
    changes: dict[str, Any], status: int, words: str
) -> None:
    with pytest.raises(MlNodeError) as error:
        GenerateRequest.from_dict({**body([1, 2]), **changes})
    assert error.value.status == status
    assert words in error.value.message


@pytest.mark.parametrize("value", [None, [], "text", 5])
def test_a_body_that_is_not_an_object_is_422(value: Any) -> None:
    with pytest.raises(MlNodeError) as error:
        GenerateRequest.from_dict(value)
    assert error.value.status == 422


# --- the verdict ------------------------------------------------------------------------------


def test_honest_vectors_pass_and_tampered_ones_are_counted_exactly(compute: Any) -> None:
    nonces = list(range(10, 30))
    vectors = honest(compute, nonces)
    computed = compute(GenerateRequest.from_dict(body(nonces)))
    verdict = judge(vectors, computed, nonces, StatTest())
    assert verdict == {
        "n_total": 20,
        "n_mismatch": 0,
        "mismatch_nonces": [],
        "p_value": 1.0,
        "fraud_detected": False,
    }
    tampered = dict(vectors)
    for n in (12, 25, 17):
        tampered[n] = b64(fp16([1.0] + [0.0] * 11))
    verdict = judge(tampered, computed, nonces, StatTest())
    assert verdict["n_mismatch"] == 3
    assert verdict["mismatch_nonces"] == [12, 17, 25]


def test_vectors_that_are_not_12_finite_values_mismatch_and_dropped_nonces_do_not_count() -> None:
    good = fp16([0.5] * 4 + [0.0] * 8)
    computed = {1: good, 2: good, 3: good, 4: good}  # nonce 5 held NaN on recomputation
    vectors = {
        1: b64(good),
        2: "not base64!",
        3: b64(good[:22]),
        4: b64(fp16([float("nan")] + [0.0] * 11)),
        5: b64(good),
    }
    verdict = judge(vectors, computed, [1, 2, 3, 4, 5], StatTest())
    assert verdict["n_total"] == 5
    assert verdict["mismatch_nonces"] == [2, 3, 4]


def test_distance_is_compared_with_dist_threshold() -> None:
    ours = fp16([1.0] + [0.0] * 11)
    near = fp16([1.0, 0.25] + [0.0] * 10)  # L2 0.25
    verdict = judge({1: b64(near)}, {1: ours}, [1], StatTest(dist_threshold=0.3))
    assert verdict["n_mismatch"] == 0
    verdict = judge({1: b64(near)}, {1: ours}, [1], StatTest(dist_threshold=0.2))
    assert verdict["n_mismatch"] == 1


@pytest.mark.parametrize(("mismatches", "fraud"), [(28, False), (30, False), (31, True)])
def test_fraud_is_detected_at_the_ml_nodes_effective_alpha(mismatches: int, fraud: bool) -> None:
    # DAPI's p_value_threshold 0.05 would cut at 28; the ML node applies 0.01: 31 of 200.
    assert fraud_cutoff(200, 0.1, 0.01) == 31
    good = fp16([1.0] + [0.0] * 11)
    bad = b64(fp16([0.0, 1.0] + [0.0] * 10))
    nonces = list(range(200))
    vectors = {n: bad if n < mismatches else b64(good) for n in nonces}
    stat = StatTest.from_dict({"dist_threshold": 0.4, "p_mismatch": 0.1, "p_value_threshold": 0.05})
    verdict = judge(vectors, dict.fromkeys(nonces, good), nonces, stat)
    assert verdict["n_mismatch"] == mismatches
    assert verdict["fraud_detected"] is fraud


# --- the queue --------------------------------------------------------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "callbacks.db")
    yield box
    box.close()


def test_a_queued_validation_posts_its_verdict_to_validated(compute: Any, outbox: Outbox) -> None:
    target = Target()
    delivery = Sender(outbox, interval_s=0.05)
    delivery.start()
    queue = JobQueue(compute, outbox, wake_sender=delivery.wake)
    queue.start()
    nonces = [3, 8, 13, 21]
    vectors = honest(compute, nonces)
    vectors[8] = b64(fp16([0.0] * 11 + [1.0]))
    try:
        answer = queue.submit(
            GenerateRequest.from_dict(
                body(
                    nonces,
                    url=target.url,
                    validation={
                        "artifacts": [{"nonce": n, "vector_b64": v} for n, v in vectors.items()]
                    },
                    stat_test={"dist_threshold": 0.4, "p_mismatch": 0.1, "p_value_threshold": 0.05},
                )
            )
        )
        [(path, posted)] = target.wait_posts(1)
    finally:
        queue.close()
        delivery.stop()
        target.stop()
    assert answer["status"] == "queued" and answer["queued_count"] == 4
    assert answer["request_id"].startswith("0:")
    assert path == PATH + "/validated"
    assert posted == {
        "request_id": answer["request_id"],
        "block_hash": BLOCK_HASH,
        "block_height": 77,
        "public_key": PUBLIC_KEY,
        "node_id": 0,
        "n_total": 4,
        "n_mismatch": 1,
        "mismatch_nonces": [8],
        "p_value": pytest.approx(1 - 0.9**4),
        "fraud_detected": False,
    }
    result = queue.get(answer["request_id"])
    assert result["status"] == "completed" and result["n_mismatch"] == 1


def test_a_queued_generate_job_sends_its_artifacts_with_its_request_id(
    compute: Any, outbox: Outbox
) -> None:
    target = Target()
    delivery = Sender(outbox, interval_s=0.05)
    delivery.start()
    queue = JobQueue(compute, outbox, wake_sender=delivery.wake)
    queue.start()
    try:
        answer = queue.submit(GenerateRequest.from_dict(body([5, 6], url=target.url)))
        [(path, posted)] = target.wait_posts(1)
    finally:
        queue.close()
        delivery.stop()
        target.stop()
    assert path == PATH + "/generated"
    assert posted["request_id"] == answer["request_id"]
    assert [a["nonce"] for a in posted["artifacts"]] == [5, 6]
    assert {a["vector_b64"] for a in posted["artifacts"]} == set(honest(compute, [5, 6]).values())


def test_wait_answers_inline(compute: Any, outbox: Outbox) -> None:
    queue = JobQueue(compute, outbox)
    nonces = [1, 2, 3]
    answer = queue.submit(GenerateRequest.from_dict(body(nonces, wait=True)))
    assert answer["status"] == "completed"
    assert answer["encoding"] == {"dtype": "f16", "k_dim": 12, "endian": "le"}
    assert {a["nonce"]: a["vector_b64"] for a in answer["artifacts"]} == honest(compute, nonces)
    vectors = honest(compute, nonces)
    answer = queue.submit(
        GenerateRequest.from_dict(
            body(
                nonces,
                wait=True,
                validation={
                    "artifacts": [{"nonce": n, "vector_b64": v} for n, v in vectors.items()]
                },
            )
        )
    )
    assert {k: answer[k] for k in ("status", "n_total", "n_mismatch", "fraud_detected")} == {
        "status": "completed",
        "n_total": 3,
        "n_mismatch": 0,
        "fraud_detected": False,
    }
    assert queue.get(answer["request_id"])["n_total"] == 3


def test_the_queue_refuses_past_its_nonce_cap_and_waits_while_generation_runs(
    compute: Any, outbox: Outbox
) -> None:
    queue = JobQueue(compute, outbox, max_queued_nonces=5)
    queue.pause(True)  # PoC generation is running
    queue.start()
    try:
        first = queue.submit(GenerateRequest.from_dict(body([1, 2, 3])))
        with pytest.raises(MlNodeError) as error:
            queue.submit(GenerateRequest.from_dict(body([4, 5, 6])))
        assert error.value.status == 429
        second = queue.submit(GenerateRequest.from_dict(body([4, 5])))
        assert second["queued_count"] == 2  # the job's nonces
        assert queue.get(first["request_id"])["status"] == "queued"
        assert queue.counts() == {"queued_jobs": 2, "queued_nonces": 5, "completed": 0}
        assert queue.clear() == 2  # pow/stop
        cancelled = queue.get(first["request_id"])
        assert cancelled["status"] == "failed" and "pow/stop" in cancelled["error"]
    finally:
        queue.close()


def test_results_expire_after_their_ttl(compute: Any, outbox: Outbox) -> None:
    queue = JobQueue(compute, outbox, result_ttl_s=0.05)
    answer = queue.submit(GenerateRequest.from_dict(body([1], wait=True)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            queue.get(answer["request_id"])
        except MlNodeError as error:
            assert error.status == 404
            break
        time.sleep(0.02)
    else:
        pytest.fail("the result never expired")
    with pytest.raises(MlNodeError) as unknown:
        queue.get("0:nothing")
    assert unknown.value.status == 404
