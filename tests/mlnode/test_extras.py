"""The ML node's extras: Prometheus metrics, gpu/devices and gpu/driver over NVML (a stand-in
binding), the models endpoints over a real Hugging Face cache, and the node-config entry."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gonka_cli.miner.devices import MiningDevice
from gonka_cli.mlnode import hardware
from gonka_cli.mlnode.downloads import ModelDownloads
from gonka_cli.mlnode.host import node_config_entry
from gonka_cli.mlnode.metrics import MlNodeMetrics
from gonka_cli.mlnode.service import MlNodeError
from tests.bench.test_devices import H100, RTX, FakeNvml
from tests.compute.hf_checkpoints import lay_into_hub_cache
from tests.conftest import dead_url
from tests.mlnode.conftest import REPO_ID

REVISION = "0" * 40


# --- metrics ----------------------------------------------------------------------------------


def samples(metrics: MlNodeMetrics) -> dict[str, float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {
        sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_metrics_count_what_the_node_does() -> None:
    metrics = MlNodeMetrics()
    metrics.artifacts_computed(0, 32)
    metrics.artifacts_computed(1, 8)
    metrics.artifacts_computed(0, 32)
    metrics.artifacts_sent(60)
    metrics.callback("generated", True)
    metrics.callback("generated", False)
    metrics.callback("validated", True)
    metrics.validation(False, 200)
    metrics.validation(True, 200)
    metrics.chat(0.2, 12, 30)
    metrics.set_state("INFERENCE")
    metrics.set_buffered(12)
    got = samples(metrics)
    assert got["gonka_mlnode_artifacts_computed_total|group=0"] == 64
    assert got["gonka_mlnode_artifacts_computed_total|group=1"] == 8
    assert got["gonka_mlnode_artifacts_sent_total"] == 60
    assert got["gonka_mlnode_callbacks_total|kind=generated|result=ok"] == 1
    assert got["gonka_mlnode_callbacks_total|kind=generated|result=failed"] == 1
    assert got["gonka_mlnode_callbacks_total|kind=validated|result=ok"] == 1
    assert got["gonka_mlnode_callbacks_total|kind=validated|result=failed"] == 0
    assert got["gonka_mlnode_validations_total|result=honest"] == 1
    assert got["gonka_mlnode_validations_total|result=fraud"] == 1
    assert got["gonka_mlnode_validated_nonces_total"] == 400
    assert got["gonka_mlnode_chat_requests_total"] == 1
    assert got["gonka_mlnode_chat_prompt_tokens_total"] == 12
    assert got["gonka_mlnode_chat_completion_tokens_total"] == 30
    assert got["gonka_mlnode_chat_duration_seconds_count"] == 1
    assert got["gonka_mlnode_chat_duration_seconds_bucket|le=0.25"] == 1
    assert got["gonka_mlnode_chat_duration_seconds_bucket|le=0.1"] == 0
    assert got["gonka_mlnode_buffered_artifacts"] == 12
    assert got["gonka_mlnode_state|state=INFERENCE"] == 1
    assert got["gonka_mlnode_state|state=STOPPED"] == 0
    # Every sample is gonka's, with no `_created` timestamps beside the counters.
    assert all(name.startswith("gonka_mlnode_") for name in got)
    assert not any("_created" in name for name in got)


def test_each_node_has_its_own_registry() -> None:
    first, second = MlNodeMetrics(), MlNodeMetrics()
    first.artifacts_sent(5)
    first.set_state("SOMETHING_NEW")
    assert samples(first)["gonka_mlnode_artifacts_sent_total"] == 5
    assert samples(second)["gonka_mlnode_artifacts_sent_total"] == 0
    # A new state gets its sample; the known ones stay, at 0.
    assert samples(first)["gonka_mlnode_state|state=SOMETHING_NEW"] == 1
    assert samples(first)["gonka_mlnode_state|state=STOPPED"] == 0
    assert samples(second)["gonka_mlnode_state|state=STOPPED"] == 1


# --- gpu/devices, gpu/driver ------------------------------------------------------------------


class UtilNvml(FakeNvml):
    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> Any:
        return type("Utilization", (), {"gpu": self._get(h, "util"), "memory": 3})()


def test_gpu_devices_in_the_real_nodes_shape() -> None:
    answer = hardware.gpu_devices(UtilNvml([{**H100, "util": 45}, RTX]))
    assert answer["count"] == 2
    h100, rtx = answer["devices"]
    assert h100 == {
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "total_memory_mb": 85520809984 // 2**20,
        "free_memory_mb": 84929937408 // 2**20,
        "used_memory_mb": 590872576 // 2**20,
        "utilization_percent": 45,
        "temperature_c": 34,
        "is_available": True,
        "error_message": None,
    }
    # The consumer card reports neither load nor temperature: None, and still available.
    assert rtx["name"] == "NVIDIA GeForce RTX 4090"
    assert rtx["total_memory_mb"] == 25757220864 // 2**20
    assert (rtx["utilization_percent"], rtx["temperature_c"]) == (None, None)
    assert rtx["is_available"] is True


def test_gpu_driver_versions() -> None:
    assert hardware.gpu_driver(FakeNvml([H100])) == {
        "driver_version": "550.54.15",
        "cuda_driver_version": "12.4",
        "nvml_version": "12.550.54.15",
    }


@pytest.mark.parametrize(
    ("binding", "why"),
    [
        (FakeNvml([], init_error="Driver Not Loaded"), "Driver Not Loaded"),
        (None, "nvidia-ml-py is not installed"),
    ],
)
def test_without_nvml_no_devices_and_the_driver_is_503(binding: Any, why: str) -> None:
    assert hardware.gpu_devices(binding) == {"devices": [], "count": 0}
    with pytest.raises(MlNodeError) as caught:
        hardware.gpu_driver(binding)
    assert caught.value.status == 503
    assert why in str(caught.value) and "listing the CPU" not in str(caught.value)


# --- the node-config entry --------------------------------------------------------------------


def gpu(index: int, name: str = "NVIDIA H200", memory: int = 150_754_820_096) -> MiningDevice:
    return MiningDevice(
        id=f"gpu:{index}",
        name=name,
        torch_device=f"cuda:{index}",
        gpu_index=index,
        memory_total_bytes=memory,
    )


def test_node_config_entry_is_dapis_inference_node_config() -> None:
    devices = [gpu(0), gpu(1), gpu(2, "NVIDIA GeForce RTX 4090", 25757220864)]
    entry = node_config_entry(
        host="10.0.0.7",
        control_port=8080,
        inference_port=5000,
        model="Qwen/Qwen3-235B-A22B-Instruct-2507-FP8",
        devices=devices,
    )
    assert entry == {
        "id": "gonka1",
        "host": "10.0.0.7",
        "inference_port": 5000,
        "inference_segment": "",
        "poc_port": 8080,
        "poc_segment": "",
        "max_concurrent": 12,
        "models": {"Qwen/Qwen3-235B-A22B-Instruct-2507-FP8": {"args": []}},
        # DAPI's own grouping of gpu/devices: "{name} | {total_memory_mb / 1024}GB".
        "hardware": [
            {"type": "NVIDIA H200 | 140GB", "count": 2},
            {"type": "NVIDIA GeForce RTX 4090 | 23GB", "count": 1},
        ],
    }


def test_node_config_entry_on_every_interface_names_this_machine() -> None:
    cpu = MiningDevice(id="cpu", name="CPU", torch_device="cpu")
    entry = node_config_entry(
        host="0.0.0.0",  # noqa: S104
        control_port=18080,
        inference_port=15000,
        model=None,
        devices=[cpu],
        node_id="box-7",
    )
    assert entry["host"] == socket.gethostname()
    assert (entry["id"], entry["models"], entry["hardware"]) == ("box-7", {}, [])
    assert (entry["poc_port"], entry["inference_port"], entry["max_concurrent"]) == (
        18080,
        15000,
        4,
    )


# --- models: status, list, download, delete ---------------------------------------------------


@pytest.fixture
def hub(hub_cache_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache of this test's own, holding the tiny checkpoint as REPO_ID."""
    from huggingface_hub import constants

    snapshot = next(
        (hub_cache_root / ("models--" + REPO_ID.replace("/", "--"))).glob("snapshots/*")
    )
    cache = tmp_path / "hub"
    lay_into_hub_cache(snapshot, cache, REPO_ID, REVISION)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: another test may have imported it
    # offline. These tests need it online (against local servers only).
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", dead_url())
    return cache


def model(repo: str = REPO_ID, commit: str | None = None) -> dict[str, Any]:
    return {"hf_repo": repo, "hf_commit": commit}


def test_status_of_cached_and_missing_models(hub: Path) -> None:
    downloads = ModelDownloads()
    assert downloads.status(model()) == {
        "model": model(),
        "status": "DOWNLOADED",
        "progress": None,
        "error_message": None,
    }
    assert downloads.status(model(commit=REVISION))["status"] == "DOWNLOADED"
    assert downloads.status(model(commit="main"))["status"] == "DOWNLOADED"
    assert downloads.status(model(commit="1" * 40))["status"] == "NOT_FOUND"
    assert downloads.status(model("acme/absent"))["status"] == "NOT_FOUND"
    assert downloads.list() == {
        "models": [{"model": {"hf_repo": REPO_ID, "hf_commit": REVISION}, "status": "DOWNLOADED"}]
    }


def test_an_incomplete_checkpoint_is_partial(hub: Path) -> None:
    snapshot = hub / ("models--" + REPO_ID.replace("/", "--")) / "snapshots" / REVISION
    (snapshot / "model.safetensors").unlink()
    answer = ModelDownloads().status(model())
    assert answer["status"] == "PARTIAL"
    assert "no *.safetensors weights" in answer["error_message"]
    assert ModelDownloads().list()["models"][0]["status"] == "PARTIAL"
    # A repo folder with no snapshot at all (a download cut short) is partial too.
    shutil.rmtree(snapshot.parent)
    assert ModelDownloads().status(model())["status"] == "PARTIAL"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (None, 422, "hf_repo"),
        ({}, 422, "hf_repo is required"),
        ({"hf_repo": 7}, 400, "not a Hugging Face repo id"),
        ({"hf_repo": "no-slash"}, 400, "not a Hugging Face repo id"),
        ({"hf_repo": "a/b", "hf_commit": 5}, 400, "hf_commit"),
    ],
)
def test_bad_bodies(hub: Path, body: Any, status: int, words: str) -> None:
    downloads = ModelDownloads()
    for call in (downloads.status, downloads.download, downloads.delete):
        with pytest.raises(MlNodeError) as caught:
            call(body)
        assert caught.value.status == status and words in str(caught.value)


def test_a_cached_model_is_not_downloaded_again(hub: Path) -> None:
    assert ModelDownloads().download(model()) == (
        200,
        {"task_id": f"{REPO_ID}:latest", "model": model(), "status": "DOWNLOADED"},
    )


def test_a_download_without_network_fails_with_the_reason(hub: Path) -> None:
    downloads = ModelDownloads()
    status, answer = downloads.download(model("acme/absent"))
    assert (status, answer["status"], answer["task_id"]) == (
        202,
        "DOWNLOADING",
        "acme/absent:latest",
    )
    assert downloads.wait(model("acme/absent"), timeout_s=120)
    after = downloads.status(model("acme/absent"))
    assert after["status"] == "NOT_FOUND"
    assert "cannot download acme/absent" in after["error_message"]
    assert "is not reachable" in after["error_message"]


def test_offline_mode_ignores_downloads(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ModelDownloads().download(model("acme/absent")) == (
        202,
        {
            "task_id": "acme/absent:latest:offline",
            "model": model("acme/absent"),
            "status": "IGNORED",
        },
    )


class HangingHub:
    """A model hub on 127.0.0.1 that holds every request until released, then hangs up."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.requests = threading.Semaphore(0)
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hub.requests.release()
                hub.release.wait(60)
                self.close_connection = True  # no answer at all: a dropped connection

            do_HEAD = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hanging_hub(hub: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HangingHub]:
    server = HangingHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()


def test_downloads_run_in_the_background_three_at_a_time(
    hanging_hub: HangingHub, hub: Path
) -> None:
    downloads = ModelDownloads()
    names = ["acme/one", "acme/two", "acme/three"]
    for name in names:
        assert downloads.download(model(name))[0] == 202
    for _ in names:  # every download has reached the hub, and waits there
        assert hanging_hub.requests.acquire(timeout=60)
    with pytest.raises(MlNodeError) as busy:
        downloads.download(model("acme/one"))
    assert busy.value.status == 409 and "already downloading" in str(busy.value)
    with pytest.raises(MlNodeError) as full:
        downloads.download(model("acme/four"))
    assert full.value.status == 429
    running = downloads.status(model("acme/two"))
    assert running["status"] == "DOWNLOADING" and running["error_message"] is None
    assert set(running["progress"]) == {"start_time", "elapsed_seconds"}
    # A model that is already there still answers at once, busy or not.
    assert downloads.download(model())[0] == 200
    # Deleting a model being downloaded cancels it: its files go once it ends.
    assert downloads.delete(model("acme/three")) == {
        "status": "cancelled",
        "model": model("acme/three"),
    }
    hanging_hub.release.set()
    for name in names:
        assert downloads.wait(model(name), timeout_s=120)
    for name in names:
        answer = downloads.status(model(name))
        assert answer["status"] == "NOT_FOUND", answer
        assert f"cannot download {name} from {hanging_hub.url}" in answer["error_message"]
        assert "check the network connection" in answer["error_message"]
    assert not (hub / "models--acme--three").exists()


class LocalHub:
    """A model hub on 127.0.0.1 serving one repo at one commit, with the routes
    huggingface_hub's `snapshot_download` uses: the revision's info, its file tree, and each
    file by `resolve` (HEAD for the metadata, GET for the bytes)."""

    COMMIT = "c0ffee" + "0" * 34

    def __init__(self, repo_id: str, folder: Path) -> None:
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        commit = self.COMMIT

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self.answer(send_body=False)

            def do_GET(self) -> None:
                self.answer(send_body=True)

            def answer(self, *, send_body: bool) -> None:
                path = self.path.split("?")[0]
                api = f"/api/models/{repo_id}"
                headers = {"X-Repo-Commit": commit}
                if path.startswith(f"{api}/tree/"):
                    tree = [
                        {
                            "type": "file",
                            "path": n,
                            "size": len(d),
                            "oid": hashlib.sha1(d).hexdigest(),  # noqa: S324 - git's blob id
                        }
                        for n, d in files.items()
                    ]
                    body = json.dumps(tree).encode()
                elif path.startswith(f"{api}/revision/"):
                    siblings = [{"rfilename": name} for name in files]
                    body = json.dumps({"id": repo_id, "sha": commit, "siblings": siblings}).encode()
                elif path.startswith(f"/{repo_id}/resolve/") and path.rsplit("/", 1)[1] in files:
                    body = files[path.rsplit("/", 1)[1]]
                    headers["ETag"] = f'"{hashlib.sha256(body).hexdigest()}"'
                else:
                    body, headers = b"", {}
                self.send_response(200 if headers else 404)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_download_lands_in_the_cache(
    hub: Path, hub_cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = hub_cache_root / ("models--" + REPO_ID.replace("/", "--"))
    local = LocalHub("acme/tiny", next(repo.glob("snapshots/*")))
    monkeypatch.setenv("HF_ENDPOINT", local.url)
    try:
        downloads = ModelDownloads()
        assert downloads.status(model("acme/tiny"))["status"] == "NOT_FOUND"
        assert downloads.download(model("acme/tiny")) == (
            202,
            {"task_id": "acme/tiny:latest", "model": model("acme/tiny"), "status": "DOWNLOADING"},
        )
        assert downloads.wait(model("acme/tiny"), timeout_s=120)
    finally:
        local.stop()
    assert downloads.status(model("acme/tiny")) == {
        "model": model("acme/tiny"),
        "status": "DOWNLOADED",
        "progress": None,
        "error_message": None,
    }
    assert downloads.status(model("acme/tiny", LocalHub.COMMIT))["status"] == "DOWNLOADED"
    listed = [m["model"] for m in downloads.list()["models"]]
    assert {"hf_repo": "acme/tiny", "hf_commit": LocalHub.COMMIT} in listed
    assert downloads.download(model("acme/tiny"))[0] == 200  # there now: not downloaded again


def test_delete_one_revision_or_every_one(hub: Path) -> None:
    downloads = ModelDownloads()
    with pytest.raises(MlNodeError) as missing:
        downloads.delete(model("acme/absent"))
    assert missing.value.status == 404
    with pytest.raises(MlNodeError) as no_revision:
        downloads.delete(model(commit="1" * 40))
    assert no_revision.value.status == 404
    assert downloads.delete(model(commit=REVISION)) == {
        "status": "deleted",
        "model": model(commit=REVISION),
    }
    assert downloads.status(model(commit=REVISION))["status"] == "NOT_FOUND"
    lay_again = downloads.list()["models"]
    assert lay_again == []
    folder = hub / ("models--" + REPO_ID.replace("/", "--"))
    if folder.exists():  # what a revision leaves (refs, blobs) goes with a delete of the repo
        assert downloads.delete(model())["status"] == "deleted"
    assert not folder.exists()
    assert downloads.status(model())["status"] == "NOT_FOUND"


def test_space(hub: Path) -> None:
    answer = ModelDownloads().space()
    assert answer["cache_path"] == str(hub)
    assert answer["cache_size_gb"] >= 0 and answer["available_gb"] > 0
