"""`gonka models list|pull|rm` and the core behind them, on a real Hugging Face cache layout.

No test reaches a hub: downloads are tested for their errors (offline, unreachable endpoint,
bad ids); listing and removal run on the tiny checkpoints the tests lay into a cache.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gonka_cli.cli.main import app
from gonka_cli.compute import hub
from gonka_cli.compute.models import MODELS
from gonka_cli.errors import InputError, ModelDownloadError, UnknownModel
from tests.compute.conftest import HUB_REPO_ID
from tests.compute.hf_checkpoints import lay_into_hub_cache
from tests.conftest import dead_url

runner = CliRunner()


def gonka(*args: str) -> Result:
    return runner.invoke(app, list(args))


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qwen3_checkpoint: Path) -> Path:
    """A writable cache holding the tiny Qwen3 and an unsupported-architecture copy."""
    cache = tmp_path / "hub"
    lay_into_hub_cache(qwen3_checkpoint, cache, HUB_REPO_ID)
    odd = tmp_path / "odd"
    odd.mkdir()
    for file in qwen3_checkpoint.iterdir():
        (odd / file.name).write_bytes(file.read_bytes())
    config = json.loads((odd / "config.json").read_text())
    config["model_type"] = "mamba"
    (odd / "config.json").write_text(json.dumps(config))
    lay_into_hub_cache(odd, cache, "gonka-test/odd-model", revision="1" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_list_shows_built_in_and_cached_models(own_cache: Path, qwen3_checkpoint: Path) -> None:
    data = ok_json(gonka("models", "list", "--json"))
    assert data["hub_cache"] == str(own_cache)
    by_id = {m["id"]: m for m in data["models"]}
    assert list(by_id)[: len(MODELS)] == list(MODELS)
    assert by_id["gonka-tiny"]["source"] == "built-in" and by_id["gonka-tiny"]["runnable"]
    tiny = by_id[HUB_REPO_ID]
    size = (qwen3_checkpoint / "model.safetensors").stat().st_size
    assert tiny["source"] == "hub-cache" and tiny["architecture"] == "qwen3"
    assert tiny["dtype"] == "float32" and tiny["runnable"] and tiny["revision"] == "0" * 40
    assert tiny["param_count"] == 180_864 and tiny["size_on_disk_bytes"] > size
    odd = by_id["gonka-test/odd-model"]
    assert not odd["runnable"] and "'mamba' is not supported" in odd["reason"]
    human = gonka("models", "list")
    assert human.exit_code == 0
    assert HUB_REPO_ID in human.stdout and "no: architecture 'mamba'" in human.stdout


def test_list_without_a_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "none"))
    data = ok_json(gonka("models", "list", "--json"))
    assert [m["id"] for m in data["models"]] == list(MODELS)


def test_rm_removes_a_cached_checkpoint(own_cache: Path) -> None:
    assert "Error:" in gonka("models", "rm", HUB_REPO_ID).stderr  # no terminal, no --yes
    assert (own_cache / "models--gonka-test--tiny-qwen3").exists()
    data = ok_json(gonka("models", "rm", HUB_REPO_ID, "--yes", "--json"))
    assert data["id"] == HUB_REPO_ID and data["revisions"] == ["0" * 40]
    assert data["freed_bytes"] > 0
    assert not (own_cache / "models--gonka-test--tiny-qwen3" / "snapshots" / ("0" * 40)).exists()
    ids = [m["id"] for m in ok_json(gonka("models", "list", "--json"))["models"]]
    assert HUB_REPO_ID not in ids and "gonka-test/odd-model" in ids
    line = error_line(gonka("models", "rm", HUB_REPO_ID, "-y"), 2)
    assert line.startswith("Error: gonka-test/tiny-qwen3 is not in the Hugging Face cache")


def test_pull_offline_is_a_clear_error(own_cache: Path) -> None:
    line = error_line(gonka("models", "pull", "Qwen/Qwen3-0.6B"), 1)
    assert "HF_HUB_OFFLINE is set" in line
    with pytest.raises(ModelDownloadError, match="HF_HUB_OFFLINE"):
        hub.pull("Qwen/Qwen3-0.6B")


def test_pull_from_an_unreachable_hub(own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    url = dead_url()
    monkeypatch.setenv("HF_ENDPOINT", url)
    with pytest.raises(ModelDownloadError) as err:
        hub.pull("Qwen/Qwen3-0.6B", revision="main")
    assert f"{url} is not reachable" in str(err.value) or url in str(err.value)
    data = gonka("models", "pull", "Qwen/Qwen3-0.6B", "--json")
    assert data.exit_code == 1 and data.stdout == ""
    assert "cannot download Qwen/Qwen3-0.6B" in data.stderr


@pytest.mark.parametrize("bad", ["not a repo", "/abs/path", "org/name@rev", "noslash"])
def test_pull_refuses_what_is_not_a_repo_id(bad: str, own_cache: Path) -> None:
    with pytest.raises(InputError, match="not a Hugging Face repo id"):
        hub.pull(bad)


def test_remove_unknown(own_cache: Path) -> None:
    with pytest.raises(UnknownModel):
        hub.remove("gonka-test/never-pulled")
