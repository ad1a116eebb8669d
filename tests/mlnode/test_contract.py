"""The DAPI contract, end to end on the CPU: one host's round as the Go decentralized-api drives
it (spec §1.2, §6 item 1), against the real ML node (service + HTTP server on 127.0.0.1).

The client (`tests/mlnode/dapi.py`) is written from DAPI's Go request structs, the callbacks go
to a fake DAPI on 127.0.0.1, and the model is a tiny random Qwen3 laid into a Hugging Face
cache under a repo id, loaded by `inference/up` as a real host's model would be.
"""

from __future__ import annotations

import base64
import json
import random
import struct
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.compute import compare_logits as cl
from gonka_cli.compute.poc import nonce_iterator
from tests.mlnode.conftest import (
    BLOCK_HASH,
    REPO_ID,
    SEQ_LEN,
    RunningNode,
    environment,
    hub_env,
    prover_public_key,
    start_node,
)
from tests.mlnode.dapi import (
    DEFAULT_STAT_TEST,
    DapiClient,
    FakeDapi,
    callback_url,
    dapi_chat_body,
    generate_request,
    init_generate_request,
)

INTERVAL_S = 1.0
BLOCK_HEIGHT = 4_242_001
NODE_ID, NODE_COUNT = 1, 3
#: What DAPI merges from the chain's model args and the node config (spec §1.3).
VLLM_ARGS = [
    "--tensor-parallel-size",
    "1",
    "--max-model-len",
    "256",
    "--kv-cache-dtype",
    "fp8",
    "--tool-call-parser",
    "hermes",
    "--enable-auto-tool-choice",
    "--gpu-memory-utilization=0.9",
    "--quantization",
    "fp8",
]
USER_BODY = {
    "model": REPO_ID,
    "messages": [{"role": "user", "content": "Gonka is a decentralized compute network."}],
    "max_tokens": 8,
    "temperature": 0.7,
}


@pytest.fixture(scope="module")
def ml_node(
    hub_cache_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningNode]:
    with environment(hub_env(hub_cache_root)):
        running = start_node(tmp_path_factory.mktemp("mlnode-data"), callback_interval_s=INTERVAL_S)
        try:
            yield running
        finally:
            running.close()


@pytest.fixture(scope="module")
def local_model(hub_cache_root: Path) -> Any:
    """The same checkpoint, loaded by the engine in this process (the reference)."""
    from gonka_cli.compute.models import load_model

    with environment(hub_env(hub_cache_root)):
        return load_model(REPO_ID)


def json_of(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text[:500])
    return response.json()


def flip(vector_b64: str) -> str:
    """The same vector negated (L2 distance 2 from the original: a sure mismatch)."""
    raw = base64.b64decode(vector_b64)
    values = struct.unpack("<12e", raw)
    return base64.b64encode(struct.pack("<12e", *(-v for v in values))).decode()


def expected_nonces(delivered: set[int], n_groups: int) -> set[int]:
    """Per group, the first nonces of `nonce_iterator` as many as the group delivered."""
    expected: set[int] = set()
    stride = NODE_COUNT * n_groups
    for group in range(n_groups):
        first = NODE_ID + group * NODE_COUNT
        count = sum(1 for n in delivered if n % stride == first % stride)
        it = nonce_iterator(NODE_ID, NODE_COUNT, group, n_groups)
        expected.update(next(it) for _ in range(count))
    return expected


# --- the round ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_full_round(ml_node: RunningNode, fake_dapi: FakeDapi, local_model: Any) -> None:
    # DAPI with the chain's MLNodeVersion set puts the version first in every path.
    dapi = ml_node.client(version="v3.0.8")
    plain = ml_node.client()
    pubkey = prover_public_key()

    # -- state, inference/up, health, models --------------------------------------------------
    state = json_of(dapi.state())
    assert state["state"] == "STOPPED"
    assert isinstance(state["version"], str) and state["version"]
    assert state["poc_validation_inference"] is False
    assert json_of(dapi.inference_up(REPO_ID, VLLM_ARGS)) == {"status": "OK"}
    assert json_of(dapi.state())["state"] == "INFERENCE"
    assert json_of(plain.state())["state"] == "INFERENCE"
    assert dapi.health().status_code == 200
    models = json_of(dapi.models())
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]][:1] == [REPO_ID]

    # The control port serves /v1/* too, and the optional calls DAPI's background loop makes.
    assert json_of(dapi.get(dapi.poc_url, "/v1/models"))["data"][0]["id"] == REPO_ID
    assert json_of(dapi.models_status(REPO_ID))["status"] == "DOWNLOADED"
    devices = json_of(dapi.gpu_devices())
    assert devices["count"] == len(devices["devices"])

    # -- chat with DAPI's rewritten body, then the validator's replay ---------------------------
    answer = json_of(dapi.chat(dapi_chat_body(USER_BODY, seed=1234567)))
    assert answer["model"] == REPO_ID
    choice = answer["choices"][0]
    content = choice["logprobs"]["content"]
    assert content, "no logprobs"
    for position in content:
        assert position["token"].isdigit(), position  # a decimal token id, never text
        assert len(position["top_logprobs"]) == 5
        assert all(e["token"].isdigit() for e in position["top_logprobs"])
        assert isinstance(position["logprob"], float)
    assert answer["usage"]["prompt_tokens"] > 0
    assert answer["usage"]["completion_tokens"] == len(content)
    assert choice["token_ids"] == [int(p["token"]) for p in content]

    original = cl.parse_content(content)
    replay_body = dapi_chat_body(USER_BODY, seed=1234567)
    replay_body["enforced_tokens"] = cl.enforced_tokens(original)
    replay_body["stream"] = False
    replay = json_of(dapi.chat(replay_body))
    usage = (answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"])
    replay_usage = (replay["usage"]["prompt_tokens"], replay["usage"]["completion_tokens"])
    verdict = cl.judge(
        original,
        cl.parse_content(replay["choices"][0]["logprobs"]["content"]),
        0.99,
        claimed_usage=usage,
        replay_usage=replay_usage,
    )
    assert verdict.passed, verdict
    # The replay runs the enforced tokens through the engine again: equal up to float32
    # rounding (one ulp in places), far inside any model's pass mark.
    assert verdict.similarity == pytest.approx(1.0, abs=1e-6)

    # Streamed, as devshardd asks for it: SSE chunks, a usage chunk, then [DONE].
    stream = dapi.chat(dapi_chat_body(dict(USER_BODY, stream=True), seed=1234567), stream=True)
    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = [
        line[len("data: ") :]
        for line in stream.iter_lines(decode_unicode=True)
        if line.startswith("data: ")
    ]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    streamed = [
        entry
        for chunk in chunks
        for c in chunk["choices"]
        for entry in ((c.get("logprobs") or {}).get("content") or [])
    ]
    assert [e["token"] for e in streamed] == [p["token"] for p in content]
    assert chunks[-1]["usage"]["completion_tokens"] == answer["usage"]["completion_tokens"]

    # -- init/generate and the /generated callbacks ---------------------------------------------
    fake_dapi.stage.block_height = BLOCK_HEIGHT
    fake_dapi.stage.node_ids = set(range(NODE_COUNT))
    url = callback_url(fake_dapi.url, REPO_ID)
    assert "%252F" in url
    init = init_generate_request(
        block_hash=BLOCK_HASH,
        block_height=BLOCK_HEIGHT,
        public_key=pubkey,
        node_id=NODE_ID,
        node_count=NODE_COUNT,
        model=REPO_ID,
        seq_len=SEQ_LEN,
        url=url,
    )
    started = json_of(dapi.init_generate(init))
    assert started["status"] == "OK"
    n_groups = int(started["n_groups"])
    assert n_groups == 1  # one CPU device: one group
    fake_dapi.wait_for(
        lambda: (
            len(fake_dapi.of("generated", 200)) >= 4 and len(fake_dapi.artifacts(REPO_ID)) > 200
        ),
        180,
        "4 batches and 200 artifacts",
    )

    status = json_of(dapi.pow_status())
    assert status["status"] == "GENERATING"
    backend = status["backends"][0]
    assert backend["status"] == "GENERATING"
    assert backend["config"]["block_height"] == BLOCK_HEIGHT
    assert backend["config"]["block_hash"] == BLOCK_HASH
    assert isinstance(backend["stats"]["nonces_per_second"], (int, float))
    assert backend["stats"]["total_processed"] > 0

    chat_during_poc = dapi.chat(dapi_chat_body(USER_BODY, seed=1))
    assert chat_during_poc.status_code == 503
    assert "detail" in chat_during_poc.json()

    assert json_of(dapi.pow_stop())["status"] == "OK"
    assert json_of(dapi.pow_status())["status"] == "IDLE"

    posts = fake_dapi.of("generated")
    assert all(p.status == 200 for p in posts), [(p.status, p.body[:200]) for p in posts]
    assert {p.model_id for p in posts} == {REPO_ID}
    assert all(p.raw_path.endswith("/generated") for p in posts)
    for post in posts:
        body = post.json
        assert set(body) >= {"public_key", "block_hash", "block_height", "node_id", "artifacts"}
        assert "request_id" not in body
        assert body["public_key"] == pubkey
        assert body["block_hash"] == BLOCK_HASH
        assert body["block_height"] == BLOCK_HEIGHT
        assert body["node_id"] == NODE_ID
        assert body.get("encoding", {"dtype": "f16", "k_dim": 12, "endian": "le"}) == {
            "dtype": "f16",
            "k_dim": 12,
            "endian": "le",
        }
        assert body["artifacts"], "an empty batch was posted"
        for artifact in body["artifacts"]:
            assert len(artifact["vector_b64"]) == 32
            assert len(base64.b64decode(artifact["vector_b64"], validate=True)) == 24
    # The sender batches: at most one POST per interval, not one per artifact or chunk. (How
    # many intervals pass between two posts depends on the machine's speed: not checked.)
    # Arrival times carry the loopback's jitter: the count is checked over the whole span.
    span = posts[-1].at - posts[0].at
    assert len(posts) - 1 <= span / INTERVAL_S + 1, [b.at - a.at for a, b in pairwise(posts)]
    assert fake_dapi.duplicates == 0

    stored = fake_dapi.artifacts(REPO_ID)
    assert set(stored) == expected_nonces(set(stored), n_groups)

    # Independently recomputed by the engine in this process, the vectors agree.
    from gonka_cli.compute.artifacts import artifact_distance, artifact_from_b64
    from gonka_cli.compute.poc import PocInputParams, compute_poc

    sample = sorted(stored)[:8]
    mine = compute_poc(
        local_model, BLOCK_HASH, pubkey, sample, params=PocInputParams(seq_len=SEQ_LEN)
    )
    for nonce, vector in zip(mine.nonces, mine.artifacts, strict=True):
        assert artifact_distance(vector, artifact_from_b64(stored[nonce])) < 1e-3

    # -- validation: an honest prover and a cheating one -----------------------------------------
    assert len(stored) >= 200, f"only {len(stored)} artifacts in {len(posts)} batches"
    nonces = sorted(random.Random(7).sample(sorted(stored), 200))
    honest: list[dict[str, Any]] = [{"nonce": n, "vector_b64": stored[n]} for n in nonces]
    tampered_nonces = set(random.Random(8).sample(nonces, 31))
    cheating = [
        {"nonce": a["nonce"], "vector_b64": flip(a["vector_b64"])}
        if a["nonce"] in tampered_nonces
        else a
        for a in honest
    ]
    borderline_nonces = set(sorted(tampered_nonces)[:30])
    borderline = [
        {"nonce": a["nonce"], "vector_b64": flip(a["vector_b64"])}
        if a["nonce"] in borderline_nonces
        else a
        for a in honest
    ]

    def job(artifacts: list[dict[str, Any]], node_id: int = 0) -> dict[str, Any]:
        return generate_request(
            block_hash=BLOCK_HASH,
            block_height=BLOCK_HEIGHT,
            public_key=pubkey,
            node_id=node_id,
            node_count=2,
            nonces=nonces,
            model=REPO_ID,
            seq_len=SEQ_LEN,
            url=url,
            artifacts=artifacts,
            stat_test=DEFAULT_STAT_TEST,  # p_value_threshold 0.05, as DAPI sends it
        )

    ids = {}
    for name, artifacts in (("honest", honest), ("cheating", cheating), ("30", borderline)):
        queued = json_of(dapi.generate(job(artifacts)))
        assert queued["status"] == "queued"
        assert isinstance(queued["request_id"], str) and queued["request_id"]
        ids[name] = queued["request_id"]

    def results() -> dict[str, dict[str, Any]] | None:
        found = {b["request_id"]: b for b in fake_dapi.validated.get(REPO_ID, [])}
        return found if set(ids.values()) <= set(found) else None

    validated = fake_dapi.wait_for(results, 120, "three /validated callbacks")
    from gonka_cli.compute.validation import binomial_tail

    for name, n_mismatch, fraud in (
        ("honest", 0, False),
        ("cheating", 31, True),
        # DAPI's p_value_threshold 0.05 is dropped as by the Python ML node: alpha 0.01.
        ("30", 30, False),
    ):
        body = validated[ids[name]]
        assert body["block_hash"] == BLOCK_HASH
        assert body["block_height"] == BLOCK_HEIGHT
        assert body["public_key"] == pubkey
        assert body["node_id"] == 0
        assert body["n_total"] == 200
        assert body["n_mismatch"] == n_mismatch, name
        assert body["fraud_detected"] is fraud, name
        assert body["p_value"] == pytest.approx(binomial_tail(n_mismatch, 200, 0.1), rel=1e-6)
    assert sorted(validated[ids["cheating"]]["mismatch_nonces"]) == sorted(tampered_nonces)
    assert validated[ids["honest"]]["mismatch_nonces"] == []

    # A finished job can be fetched by its request id.
    fetched = json_of(dapi.job(ids["cheating"]))
    assert fetched["status"] == "completed"
    assert fetched["request_id"] == ids["cheating"]
    assert fetched["n_mismatch"] == 31 and fetched["fraud_detected"] is True
    assert dapi.job("0:no-such-request").status_code == 404

    # -- wait=true: artifacts inline, and a validation inline ------------------------------------
    inline = generate_request(
        block_hash=BLOCK_HASH,
        block_height=BLOCK_HEIGHT,
        public_key=pubkey,
        node_id=0,
        node_count=1,
        nonces=nonces[:5],
        model=REPO_ID,
        seq_len=SEQ_LEN,
        wait=True,
    )
    done = json_of(dapi.generate(inline))
    assert done["status"] == "completed"
    assert done["encoding"] == {"dtype": "f16", "k_dim": 12, "endian": "le"}
    got = {a["nonce"]: a["vector_b64"] for a in done["artifacts"]}
    assert set(got) == set(nonces[:5])
    for nonce, vector in got.items():
        assert artifact_distance(artifact_from_b64(vector), artifact_from_b64(stored[nonce])) < 1e-3
    inline_check = dict(
        inline, validation={"artifacts": cheating[:40]}, stat_test=DEFAULT_STAT_TEST
    )
    inline_check["nonces"] = [a["nonce"] for a in cheating[:40]]
    checked = json_of(dapi.generate(inline_check))
    assert checked["status"] == "completed"
    assert checked["n_total"] == 40
    assert checked["n_mismatch"] == sum(1 for a in cheating[:40] if a["nonce"] in tampered_nonces)

    # -- the golden file's strings (`TEST_BLOCK`, `test_pub_keys`: not hex) go through verbatim ----
    golden = dict(inline, block_hash="TEST_BLOCK", public_key="test_pub_keys", nonces=[0, 1, 2, 3])
    done = json_of(plain.generate(golden))
    got = {a["nonce"]: artifact_from_b64(a["vector_b64"]) for a in done["artifacts"]}
    assert sorted(got) == [0, 1, 2, 3]
    mine = compute_poc(
        local_model, "TEST_BLOCK", "test_pub_keys", range(4), params=PocInputParams(SEQ_LEN)
    )
    for nonce, vector in zip(mine.nonces, mine.artifacts, strict=True):
        assert artifact_distance(vector, got[nonce]) < 1e-3

    metrics = dapi.metrics()
    assert metrics.status_code == 200 and "gonka_mlnode_" in metrics.text

    # -- stop with no body ----------------------------------------------------------------------
    assert json_of(dapi.stop()) == {"status": "OK"}
    assert json_of(dapi.state())["state"] == "STOPPED"


def test_bearer_token(tmp_path: Path) -> None:
    """With a token, every request on both ports needs `Authorization: Bearer T`."""
    running = start_node(tmp_path / "data", token="s3cret-token")
    try:
        with_token = running.client(token="s3cret-token")
        without = running.client()
        wrong = running.client(token="other")
        assert json_of(with_token.state())["state"] == "STOPPED"
        for client in (without, wrong):
            assert client.state().status_code == 401
            assert client.stop().status_code == 401
            assert client.models().status_code == 401
        assert json_of(with_token.stop()) == {"status": "OK"}
    finally:
        running.close()


def test_client_sends_what_dapi_sends(fake_dapi: FakeDapi) -> None:
    """The client itself, against the fake: no Content-Type, no body for stop, prefix first."""
    client = DapiClient(fake_dapi.url, fake_dapi.url, version="v3.0.8")
    client.stop()
    client.init_generate({"a": 1})
    posts = fake_dapi.posts
    assert [p.raw_path for p in posts] == [
        "/v3.0.8/api/v1/stop",
        "/v3.0.8/api/v1/inference/pow/init/generate",
    ]
    assert all("Content-Type" not in p.headers for p in posts)
    assert posts[0].body == b""
    assert posts[1].body == b'{"a":1}'
    body = generate_request(
        block_hash="H",
        block_height=1,
        public_key="K",
        node_id=0,
        node_count=1,
        nonces=None,
        model="m",
        seq_len=8,
    )
    assert body["nonces"] is None
    assert not {"wait", "url", "validation", "stat_test", "poc_stronger_rng"} & set(body)
    assert "k_dim" not in body["params"] and "batch_size" not in body
