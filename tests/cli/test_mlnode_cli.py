"""`gonka mlnode serve|status` as real processes on 127.0.0.1, and `gonka mine`'s mainnet stop."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gonka_cli.cli.main import app
from tests.conftest import dead_url
from tests.miner.helpers import make_wallet
from tests.mlnode.conftest import (
    BLOCK_HASH,
    REPO_ID,
    SEQ_LEN,
    fake_dapi,
    free_port,
    hub_cache_root,
    prover_public_key,
    subprocess_env,
)
from tests.mlnode.dapi import DapiClient, FakeDapi, callback_url, init_generate_request

__all__ = ["fake_dapi", "hub_cache_root"]  # fixtures shared with tests/mlnode

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token-for-tests"
WAIT_S = 180  # a safety net on a busy machine, not a timing assertion


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[Any, list[str]]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result, result.stderr.strip().splitlines()


class ServeProcess:
    """`python -m gonka_cli mlnode serve ...`, its stdout and stderr read as they come."""

    def __init__(self, home: Path, cache: Path, *args: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gonka_cli", "mlnode", "serve", *args],
            env=subprocess_env(home, cache, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.out_lines: list[str] = []
        self.err_lines: list[str] = []
        for stream, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    @staticmethod
    def _read(stream: Any, lines: queue.Queue[str]) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    def _next(self, lines: queue.Queue[str], seen: list[str], deadline: float) -> str:
        while True:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        "gonka mlnode serve said nothing expected; stderr:\n"
                        + "\n".join(self.err_lines)
                    ) from None
                if self.proc.poll() is not None and lines.empty():
                    time.sleep(0.5)  # the readers may still hold the last lines
                    if lines.empty():
                        raise AssertionError(
                            f"gonka mlnode serve exited ({self.proc.returncode}); stderr:\n"
                            + "\n".join(self.err_lines + list(self.stderr.queue))
                        ) from None
                continue
            seen.append(line)
            return line

    def event(self, name: str) -> dict[str, Any]:
        """The next JSON line on stdout whose event is `name` (--json mode)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            data = json.loads(self._next(self.stdout, self.out_lines, deadline))
            if data.get("event") == name:
                return data

    def err_line(self, words: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while True:
            line = self._next(self.stderr, self.err_lines, deadline)
            if words in line:
                return line

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)

    def rest_of_stdout(self) -> str:
        time.sleep(0.2)
        while not self.stdout.empty():
            self.out_lines.append(self.stdout.get())
        return "\n".join(self.out_lines)


@pytest.fixture
def serving(hub_cache_root: Path, gonka_home: Path) -> Iterator[ServeProcess]:
    """A CPU ML node in its own process with the tiny checkpoint preloaded, a token and
    --json."""
    control, inference = free_port(), free_port()
    node = ServeProcess(
        gonka_home,
        hub_cache_root,
        "--devices",
        "cpu",
        "--control-port",
        str(control),
        "--inference-port",
        str(inference),
        "--model",
        REPO_ID,
        "--token",
        TOKEN,
        "--json",
        POC_CALLBACK_INTERVAL_SEC="0.5",
    )
    try:
        yield node
    finally:
        node.stop(signal.SIGKILL)


def test_serve_prints_the_node_config_entry_and_status_reads_the_node(
    serving: ServeProcess, gonka_home: Path
) -> None:
    started = serving.event("serving")
    entry = started["node_config"]
    control, inference = started["control_url"], started["inference_url"]
    assert control.startswith("http://127.0.0.1:") and inference.startswith("http://127.0.0.1:")
    assert entry == {
        "id": "gonka1",
        "host": "127.0.0.1",
        "inference_port": int(inference.rsplit(":", 1)[1]),
        "inference_segment": "",
        "poc_port": int(control.rsplit(":", 1)[1]),
        "poc_segment": "",
        "max_concurrent": 4,
        "models": {REPO_ID: {"args": []}},
        "hardware": [],
    }
    assert started["devices"] == ["cpu"]
    assert [json.loads(line)["event"] for line in serving.out_lines].count("model_loaded") == 1
    # The state that must survive a restart lives under gonka's data directory.
    assert (gonka_home / "data" / "mlnode" / "callbacks.db").exists()

    result, err = invoke("mlnode", "status", "--url", control, "--token", TOKEN, "--json")
    assert result.exit_code == 0, err
    status = json.loads(result.stdout)
    assert (status["state"], status["model"]) == ("INFERENCE", REPO_ID)
    assert status["poc"]["status"] == "IDLE" and status["last_callback"] is None

    result, err = invoke("mlnode", "status", "--url", control, "--token", TOKEN)
    assert result.exit_code == 0, err
    lines = result.stdout.splitlines()
    assert lines[0] == "ML node"
    assert lines[1].split() == ["state", "INFERENCE"]
    assert lines[2].split() == ["model", REPO_ID]
    assert lines[4].split() == ["PoC", "IDLE"]
    assert lines[-1].split() == ["last", "callback", "none", "yet"]

    result, err = invoke("mlnode", "status", "--url", control, env={"GONKA_MLNODE_TOKEN": TOKEN})
    assert result.exit_code == 0, err
    assert result.stdout.splitlines()[1].split() == ["state", "INFERENCE"]

    result, err = invoke("mlnode", "status", "--url", control)
    assert result.exit_code == 1
    assert err == [
        f"Error: the ML node at {control} wants a token: pass --token (the one it was started with)"
    ]
    assert serving.stop(signal.SIGTERM) == 0


def test_status_follows_a_poc_round(serving: ServeProcess, fake_dapi: FakeDapi) -> None:
    started = serving.event("serving")
    control = started["control_url"]
    dapi = DapiClient(control, started["inference_url"], token=TOKEN)
    fake_dapi.stage.block_height = 1234
    init = init_generate_request(
        block_hash=BLOCK_HASH,
        block_height=1234,
        public_key=prover_public_key(),
        node_id=0,
        node_count=1,
        model=REPO_ID,
        seq_len=SEQ_LEN,
        url=callback_url(fake_dapi.url, REPO_ID),
    )
    answer = dapi.init_generate(init)
    assert answer.status_code == 200, answer.text
    assert serving.event("generate_started")["block_height"] == 1234
    # Each delivery is an event on stdout, with the host's answer.
    delivered = serving.event("callback")
    assert (delivered["kind"], delivered["http_status"]) == ("generated", 200)

    result, err = invoke("mlnode", "status", "--url", control, "--token", TOKEN)
    assert result.exit_code == 0, err
    rows = {line.strip().split("  ")[0]: line for line in result.stdout.splitlines()}
    assert rows["PoC"].split()[1:5] == ["GENERATING", "at", "height", "1234"]
    group = rows["group 0"]
    assert "nonces/s" in group and "(cpu)" in group
    last = rows["last callback"].split()
    assert last[2:6] == ["generated", "->", "HTTP", "200,"]
    assert "artifacts" in rows["last callback"] and "s ago)" in rows["last callback"]

    result, err = invoke("mlnode", "status", "--url", control, "--token", TOKEN, "--json")
    status = json.loads(result.stdout)
    assert status["poc"]["block_height"] == 1234
    assert [g["devices"] for g in status["poc"]["groups"]] == [["cpu"]]
    assert status["last_callback"]["http_status"] == 200
    assert dapi.pow_stop().status_code == 200
    assert serving.stop(signal.SIGTERM) == 0


def test_serve_without_json_prints_the_entry_on_stdout_and_ctrl_c_exits_130(
    gonka_home: Path, tmp_path: Path
) -> None:
    control, inference = free_port(), free_port()
    log = tmp_path / "node.log"
    node = ServeProcess(
        gonka_home,
        tmp_path / "empty-hub",
        "--devices",
        "cpu",
        "--control-port",
        str(control),
        "--inference-port",
        str(inference),
        "--log-file",
        str(log),
    )
    try:
        node.err_line("Ctrl-C stops")
        assert any(f"http://127.0.0.1:{control}" in line for line in node.err_lines)
        assert any(f"http://127.0.0.1:{inference}" in line for line in node.err_lines)
        result, err = invoke("mlnode", "status", "--url", f"http://127.0.0.1:{control}", "--json")
        assert result.exit_code == 0, err
        assert json.loads(result.stdout)["state"] == "STOPPED"
        assert node.stop(signal.SIGINT) == 130
    finally:
        node.stop(signal.SIGKILL)
    entry = json.loads(node.rest_of_stdout())
    assert (entry["poc_port"], entry["inference_port"], entry["models"]) == (control, inference, {})
    assert log.exists()


# --- errors in one line -----------------------------------------------------------------------


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result, err = invoke("mlnode", "serve", "--devices", "cpu", "--control-port", str(port))
    assert result.exit_code == 1
    assert len(err) == 1
    assert err[0].startswith(f"Error: port {port} on 127.0.0.1 is in use")
    assert "--control-port" in err[0]


@pytest.mark.parametrize(
    ("args", "env", "code", "words"),
    [
        (["--devices", "7"], {}, 2, "no GPU 7"),
        (["--devices", "0,x"], {}, 2, "invalid --devices '0,x'"),
        (["--devices", "cpu", "--model", "acme/absent"], {}, 2, "acme/absent is not in the local"),
        (["--devices", "cpu", "--model", "nothing-like-it"], {}, 2, "unknown model"),
        (["--devices", "cpu", "--temp-limit", "500"], {}, 2, "--temp-limit must be between"),
        (["--control-port", "70000"], {}, 2, "invalid --control-port 70000"),
        (["--devices", "cpu", "--token", " x "], {}, 2, "the token must be printable ASCII"),
        ([], {"POC_CALLBACK_INTERVAL_SEC": "soon"}, 1, "POC_CALLBACK_INTERVAL_SEC='soon'"),
    ],
)
def test_bad_serve_options_are_one_line(
    args: list[str], env: dict[str, str], code: int, words: str, tmp_path: Path
) -> None:
    ports = ["--control-port", str(free_port()), "--inference-port", str(free_port())]
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", **env}
    result, err = invoke("mlnode", "serve", *ports, *args, env=env)
    assert result.exit_code == code, (result.stdout, err)
    errors = [line for line in err if line.startswith("Error:")]
    assert len(errors) == 1 and words in errors[0], err


def test_status_of_no_node_says_how_to_start_one() -> None:
    url = dead_url()
    result, err = invoke("mlnode", "status", "--url", url)
    assert result.exit_code == 1
    assert err == [
        f"Error: no node answered: tried {url} (connection refused); start the ML node with "
        "`gonka mlnode serve` (or pass --url of a running one)"
    ]
    result, err = invoke("mlnode", "status", "--url", "localhost:8080")
    assert result.exit_code == 2 and "invalid --url 'localhost:8080'" in err[0]


# --- gonka mine on mainnet --------------------------------------------------------------------

MAINNET_STOP = (
    "Error: mainnet mining runs as `gonka mlnode serve` under the host's decentralized-api, "
    "not as gonka mine; see docs/mainnet.md (gonka mine mines on gonka's own devnet: --devnet)"
)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--network", "mainnet"], {}),
        ([], {}),  # mainnet is the default network
        ([], {"GONKA_NETWORK": "mainnet"}),
        (["--network", "mainnet", "--node", "http://127.0.0.1:9"], {}),
    ],
)
def test_mine_on_mainnet_stops_at_once(
    args: list[str], env: dict[str, str], gonka_home: Path
) -> None:
    # A wallet and no password source: a prompt (or a password check) would fail otherwise.
    make_wallet(gonka_home)
    result, err = invoke("mine", *args, "--devices", "cpu", env=env)
    assert result.exit_code == 1
    assert err == [MAINNET_STOP]
    assert not (gonka_home / "logs" / "mine.log").exists()  # nothing started, not even a log


def test_mine_against_a_node_without_the_work_api_stops_before_the_password(
    server: Any, gonka_home: Path
) -> None:
    make_wallet(gonka_home)
    result, err = invoke("mine", "--node", server.url, "--devices", "cpu")
    assert result.exit_code == 1
    errors = [line for line in err if line.startswith("Error:")]
    assert len(errors) == 1
    assert "does not serve gonka's mining API" in errors[0]
    assert "`gonka mlnode serve`" in errors[0] and "docs/mainnet.md" in errors[0]
    assert "password" not in " ".join(err).lower()
