"""The ML node driven in-process: a real device pool (two CPU workers) on gonka-tiny, a real
callback server on 127.0.0.1, no HTTP in front."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.compute.poc import nonce_iterator
from gonka_cli.miner.devices import MiningDevice
from gonka_cli.mlnode.service import MlNode, MlNodeConfig, MlNodeError
from tests.mlnode.test_callbacks import PATH, Target

MODEL = "gonka-tiny"
SERVED = "tiny-served"
SEQ_LEN = 4
BLOCK_HASH = "9F" * 32  # CometBFT's upper-case hex, used verbatim
PUBLIC_KEY = "02" + "5a" * 32
DEVICES = (MiningDevice("cpu:0", "CPU", "cpu"), MiningDevice("cpu:1", "CPU", "cpu"))


def config(data_dir: Path, **changes: Any) -> MlNodeConfig:
    options: dict[str, Any] = {"devices": DEVICES, "data_dir": data_dir, "callback_interval_s": 0.1}
    options.update(changes)
    return MlNodeConfig(**options)


def init_body(url: str | None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "block_hash": BLOCK_HASH,
        "block_height": 500,
        "public_key": PUBLIC_KEY,
        "node_id": 1,
        "node_count": 3,
        "params": {"model": MODEL, "seq_len": SEQ_LEN},
    }
    if url is not None:
        body["url"] = url
    body.update(changes)
    return body


def chat_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 3,
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 5,
    }
    body.update(changes)
    return body


def status_of(call: Any, *args: Any) -> int:
    with pytest.raises(MlNodeError) as error:
        call(*args)
    return error.value.status


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlNode]:
    """One node for the module, its model up: each test leaves it IDLE."""
    served = MlNode(config(tmp_path_factory.mktemp("mlnode")))
    served.start()
    answer = served.inference_up(
        {
            "model": MODEL,
            "dtype": "auto",
            "additional_args": [
                "--served-model-name",
                SERVED,
                "--max-model-len=256",
                "--enable-prefix-caching",
                "--tool-call-parser",
                "hermes",
            ],
        }
    )
    assert answer == {"status": "OK"}
    yield served
    served.close()


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.stop()


def test_without_a_model_the_node_is_stopped_and_says_so(tmp_path: Path) -> None:
    idle = MlNode(config(tmp_path))
    idle.start()
    try:
        state = idle.state()
        assert state["state"] == "STOPPED" and state["loaded_model"] is None
        assert state["poc_validation_inference"] is False
        assert idle.models() == {"object": "list", "data": []}
        assert idle.pow_status() == {"status": "NO_BACKENDS", "backends": []}
        assert not idle.healthy()
        assert status_of(idle.init_generate, init_body(None)) == 503
        assert status_of(idle.chat, chat_body()) == 503
        assert status_of(idle.generate, {**init_body(None), "nonces": [1]}) == 503
        assert status_of(idle.inference_up, {"model": "nobody/no-such-model"}) == 404
        assert status_of(idle.inference_up, {"dtype": "auto"}) == 422
        assert status_of(idle.inference_up, {"model": MODEL, "additional_args": "x"}) == 422
        assert (
            status_of(idle.inference_up, {"model": MODEL, "additional_args": ["-tp", "x"]}) == 422
        )
        assert idle.pow_stop() == {
            "status": "OK",
            "results": [{"port": 5000, "status": "stopped"}],
            "errors": None,
        }
        assert idle.stop() == {"status": "OK"}
    finally:
        idle.close()


def test_a_loaded_model_is_served_under_its_id_and_served_names(node: MlNode) -> None:
    state = node.state()
    assert state["state"] == "INFERENCE"
    assert state["inference_healthy"] is True and state["loaded_model"] == MODEL
    assert state["poc_status"] == "IDLE"
    assert node.served_model() == MODEL
    models = node.models()
    assert [m["id"] for m in models["data"]] == [MODEL, SERVED]
    assert {m["object"] for m in models["data"]} == {"model"}
    assert models["data"][0]["max_model_len"] == 256
    assert status_of(node.inference_up, {"model": MODEL}) == 409


def test_chat_answers_in_mainnets_format_under_the_name_asked_for(node: MlNode) -> None:
    answer = node.chat(chat_body(model=SERVED))
    assert answer["model"] == SERVED
    assert answer["object"] == "chat.completion"
    [choice] = answer["choices"]
    content = choice["logprobs"]["content"]
    assert len(content) == answer["usage"]["completion_tokens"] >= 1
    assert all(entry["token"].isdigit() and len(entry["top_logprobs"]) == 5 for entry in content)
    replay = node.chat(
        chat_body(
            enforced_tokens={
                "tokens": [
                    {"token": e["token"], "top_tokens": [t["token"] for t in e["top_logprobs"]]}
                    for e in content
                ]
            }
        )
    )
    assert [e["token"] for e in replay["choices"][0]["logprobs"]["content"]] == [
        e["token"] for e in content
    ]
    assert status_of(node.chat, chat_body(model="someone/else")) == 404
    assert status_of(node.chat, {"model": MODEL}) == 400
    assert status_of(node.chat, chat_body(top_logprobs=99)) == 400
    assert status_of(node.chat, None) == 422
    # inference/up said --max-model-len=256: a longer request is refused as vLLM refuses it.
    assert status_of(node.chat, chat_body(max_tokens=300)) == 400


def test_init_generate_streams_each_groups_nonces_to_the_callback(
    node: MlNode, target: Target
) -> None:
    from gonka_cli.compute.models import load_model
    from gonka_cli.compute.poc import PocInputParams, compute_poc

    assert (
        status_of(node.init_generate, init_body(target.url, params={"model": "x", "seq_len": 4}))
        == 409
    )
    assert (
        status_of(
            node.init_generate, init_body(target.url, params={"model": MODEL, "seq_len": 9999})
        )
        == 400
    )
    answer = node.init_generate(init_body(target.url))
    try:
        assert answer == {
            "status": "OK",
            "backends": 1,
            "n_groups": 2,
            "results": [{"port": 5000, "status": "OK"}],
            "errors": None,
        }
        assert status_of(node.init_generate, init_body(target.url)) == 409
        assert status_of(node.chat, chat_body()) == 503
        assert node.state()["poc_status"] == "GENERATING"
        posts = target.wait_posts(2)
        status = node.pow_status()
        assert status["status"] == "GENERATING"
        configs = [b["config"] for b in status["backends"]]
        assert [(c["group_id"], c["n_groups"], c["k_dim"]) for c in configs] == [
            (0, 2, 12),
            (1, 2, 12),
        ]
        assert {c["block_hash"] for c in configs} == {BLOCK_HASH}
        assert all(
            set(b["stats"]) == {"total_processed", "nonces_per_second"} for b in status["backends"]
        )
        mine = node.status()
        assert mine["poc"]["status"] == "GENERATING" and mine["poc"]["block_height"] == 500
        assert [g["devices"] for g in mine["poc"]["groups"]] == [["cpu:0"], ["cpu:1"]]
    finally:
        stopped = node.pow_stop()
    assert stopped["results"] == [{"port": 5000, "status": "stopped"}]
    assert node.pow_status()["status"] == "IDLE"
    assert node.state()["poc_status"] == "IDLE"
    posts = list(target.posts)
    assert {path for path, _ in posts} == {PATH + "/generated"}
    for _, body in posts:
        assert body["block_hash"] == BLOCK_HASH and body["public_key"] == PUBLIC_KEY
        assert (body["block_height"], body["node_id"]) == (500, 1)
        assert "request_id" not in body
    artifacts = {a["nonce"]: a["vector_b64"] for _, b in posts for a in b["artifacts"]}
    # Each group computes its own nonces in order: what arrived is a prefix of each.
    for group in (0, 1):
        stride_start = 1 + group * 3  # node_id + group_id * node_count
        got = sorted(n for n in artifacts if n % 6 == stride_start)
        assert got == list(itertools.islice(nonce_iterator(1, 3, group, 2), len(got)))
    assert all(n % 6 in (1, 4) for n in artifacts)
    assert len(artifacts) >= 1
    sample = sorted(artifacts)[:4]
    expected = compute_poc(
        load_model(MODEL), BLOCK_HASH, PUBLIC_KEY, sample, params=PocInputParams(seq_len=SEQ_LEN)
    )
    assert [artifacts[n] for n in sample] == [
        base64.b64encode(a).decode() for a in expected.artifacts
    ]
    # Inference is back once generation stopped.
    assert node.chat(chat_body())["choices"][0]["finish_reason"] in ("length", "stop")


def test_a_validation_job_recomputes_on_the_devices_and_posts_its_verdict(
    node: MlNode, target: Target
) -> None:
    nonces = [4, 7, 10, 13, 16, 19]
    computed = node.generate({**init_body(None), "nonces": nonces, "wait": True})
    vectors = {a["nonce"]: a["vector_b64"] for a in computed["artifacts"]}
    assert sorted(vectors) == nonces
    vectors[10] = vectors[13]  # a copied vector is a mismatch
    vectors[19] = base64.b64encode(b"\x00" * 24).decode()
    body = {
        **init_body(target.url),
        "nonces": nonces,
        "validation": {"artifacts": [{"nonce": n, "vector_b64": v} for n, v in vectors.items()]},
        "stat_test": {"dist_threshold": 0.4, "p_mismatch": 0.1, "p_value_threshold": 0.05},
    }
    queued = node.generate(body)
    assert queued["status"] == "queued"
    [(path, verdict)] = target.wait_posts(1)
    assert path == PATH + "/validated"
    assert verdict["request_id"] == queued["request_id"]
    assert (verdict["n_total"], verdict["n_mismatch"]) == (6, 2)
    assert verdict["mismatch_nonces"] == [10, 19]
    assert node.job(queued["request_id"])["status"] == "completed"
    assert node.status()["validation"]["completed"] >= 1
    assert status_of(node.job, "0:unknown") == 404
    assert status_of(node.generate, {**body, "params": {"model": "other", "seq_len": 4}}) == 409


def test_nan_rows_are_dropped_from_a_chunk_not_sent() -> None:
    from gonka_cli.compute.models import load_model
    from gonka_cli.compute.poc import PocInputParams, compute_poc
    from gonka_cli.miner.worker import _Runner

    real = load_model(MODEL)

    class NanRow:
        """gonka-tiny whose forward yields NaN for the second row of each batch."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def poc_forward(self, inputs: Any, reflections: Any) -> Any:
            hidden = real.poc_forward(inputs, reflections).clone()
            if hidden.shape[0] > 1:
                hidden[1] = float("nan")
            return hidden

    runner = _Runner("cpu")
    runner._models[MODEL] = NanRow()
    payload = {
        "model": MODEL,
        "block_hash": BLOCK_HASH,
        "public_key": PUBLIC_KEY,
        "seq_len": SEQ_LEN,
        "nonces": [3, 6, 9],
    }
    pairs = runner.run("poc", payload)
    assert [n for n, _ in pairs] == [3, 9]
    honest = compute_poc(real, BLOCK_HASH, PUBLIC_KEY, [3], params=PocInputParams(seq_len=SEQ_LEN))
    assert pairs[0] == (3, honest.artifacts[0])


def test_stop_unloads_and_a_new_round_can_follow(tmp_path: Path) -> None:
    single = MlNode(config(tmp_path, devices=DEVICES[:1], model=MODEL))
    single.start()  # preloads config.model
    try:
        assert single.state()["state"] == "INFERENCE"
        assert single.init_generate(init_body(None, node_id=0, node_count=1))["n_groups"] == 1
        assert single.stop() == {"status": "OK"}
        state = single.state()
        assert (state["state"], state["poc_status"], state["loaded_model"]) == (
            "STOPPED",
            "IDLE",
            None,
        )
        assert status_of(single.chat, chat_body()) == 503
    finally:
        single.close()


def test_a_model_that_fails_to_load_is_a_500_and_a_second_load_meanwhile_409(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken-checkpoint"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    during: list[int] = []

    def on_event(name: str, fields: dict[str, Any]) -> None:
        if name == "device_starting":  # the first load is under way
            during.append(status_of(node.inference_up, {"model": MODEL}))

    node = MlNode(config(tmp_path / "data", devices=DEVICES[:1], max_restarts=0), on_event=on_event)
    node.start()
    try:
        with pytest.raises(MlNodeError) as error:
            node.inference_up({"model": str(broken), "dtype": "auto", "additional_args": []})
        assert error.value.status == 500
        assert "cannot load" in error.value.message
        assert during == [409]
        assert node.state()["state"] == "STOPPED"
    finally:
        node.close()


def test_tensor_parallel_groups_gpus_into_one_model_copy_each() -> None:
    from gonka_cli.mlnode.service import _device_groups

    gpus = tuple(MiningDevice(f"gpu:{i}", "H100", f"cuda:{i}", gpu_index=i) for i in range(5))
    groups = _device_groups(gpus, 2)
    assert [(g.id, g.torch_device) for g in groups] == [
        ("gpu:0+gpu:1", "cuda:0,1"),
        ("gpu:2+gpu:3", "cuda:2,3"),
    ]
    assert _device_groups(gpus, 1) == gpus
    assert _device_groups(DEVICES, 4) == DEVICES  # the CPU is one device whatever the split
    with pytest.raises(MlNodeError) as error:
        _device_groups(gpus[:2], 4)
    assert "--tensor-parallel-size 4" in error.value.message


def test_inference_up_reads_the_vllm_arguments_it_understands_and_ignores_the_rest() -> None:
    from gonka_cli.mlnode.messages import InferenceUpRequest

    request = InferenceUpRequest.from_dict(
        {
            "model": "Qwen/Qwen3-235B-A22B-Instruct-2507-FP8",
            "dtype": "auto",
            "additional_args": [
                "--tensor-parallel-size 4",
                "--max-model-len",
                "240000",
                "--kv-cache-dtype",
                "fp8",
                "--tool-call-parser",
                "hermes",
                "--enable-auto-tool-choice",
                "--quantization=fp8",
                "--served-model-name",
                "a",
                "b",
                "-tp",
                "8",
            ],
        }
    )
    assert request.max_model_len == 240000
    assert request.tensor_parallel_size == 8  # repeated: the last one counts
    assert request.kv_cache_dtype == "fp8"
    assert request.served_model_names == ("a", "b")
    assert request.ignored_args == (
        "--tool-call-parser",
        "--enable-auto-tool-choice",
        "--quantization",
    )
    bare = InferenceUpRequest.from_dict({"model": MODEL})
    assert (bare.dtype, bare.additional_args, bare.tensor_parallel_size) == ("auto", (), 1)


def test_init_generate_takes_dapis_body_with_omitted_fields_defaulted() -> None:
    from gonka_cli.mlnode.messages import InitGenerateRequest

    request = InitGenerateRequest.from_dict(init_body(None))
    assert request.url is None and request.poc_stronger_rng is False
    assert request.params.k_dim == 12 and request.batch_size is None
    assert request.block_hash == BLOCK_HASH  # verbatim, upper-case kept
    with pytest.raises(MlNodeError) as error:
        InitGenerateRequest.from_dict(
            init_body(None, params={"model": MODEL, "seq_len": 4, "x": 1})
        )
    assert error.value.status == 422
