"""`gonka node init|status` and `gonka wallet faucet` through the CLI, against real nodes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gonka_cli import settings
from gonka_cli.chain.client import ChainClient
from gonka_cli.cli.main import app
from gonka_cli.cli.node import parse_duration
from gonka_cli.errors import InputError, NodeUnreachable
from gonka_cli.node.genesis import ChainParams, NodeHome, init_home
from gonka_cli.node.runner import Node
from tests.conftest import PASSWORD, StartNode, dead_url, use_devnet

GNK = 10**9
CAROL = "gonka1zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg33gsu4d"

runner = CliRunner()


def gonka(*args: str) -> Result:
    return runner.invoke(app, list(args), env={settings.ENV_KEYRING_PASSWORD: PASSWORD})


def ok_json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def error_line(result: Result, exit_code: int) -> str:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_init_writes_the_genesis(tmp_path: Path) -> None:
    home = tmp_path / "n"
    data = ok_json(
        gonka(
            "node",
            "init",
            "--home",
            str(home),
            "--chain-id",
            "my-devnet",
            "--genesis-account",
            f"{CAROL}=1000gnk",
            "--block-time",
            "500ms",
            "--min-gas-price",
            "0.5",
            "--json",
        )
    )
    assert data["home"] == str(home)
    assert data["chain_id"] == "my-devnet"
    assert data["accounts"][1] == {"address": CAROL, "amount_ngonka": str(1000 * GNK)}
    assert data["accounts"][0]["address"] == data["faucet_address"]
    assert data["params"]["block_time_s"] == 0.5
    assert data["params"]["min_gas_price"] == "0.5"
    genesis = NodeHome(home).load_genesis()
    assert genesis.chain_id == "my-devnet"
    assert dict(genesis.balances)[CAROL] == 1000 * GNK

    text = gonka(
        "node", "init", "--home", str(tmp_path / "m"), "--genesis-account", f"{CAROL}=1000.5gnk"
    )
    assert text.exit_code == 0, text.stderr
    assert f"genesis account: {CAROL} 1,000.5 GNK\n" in text.stdout

    again = gonka("node", "init", "--home", str(home))
    assert error_line(again, 1) == (
        f"Error: {home} already holds a node (genesis.json exists); use another --home or delete it"
    )


def test_init_defaults_to_the_data_directory(gonka_home: Path) -> None:
    result = gonka("node", "init")
    assert result.exit_code == 0, result.stderr
    assert f"Initialised node home {gonka_home / 'data' / 'node'}" in result.stdout
    assert NodeHome(gonka_home / "data" / "node").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--genesis-account", "nonsense"], "is not ADDR=AMOUNT"),
        (["--genesis-account", f"{CAROL}=12"], "add a unit"),
        (["--block-time", "soon"], "invalid duration 'soon'"),
        (["--block-time", "0s"], "block_time_s must be between"),
        (["--min-gas-price", "-1"], "min_gas_price must be >= 0"),
    ],
)
def test_init_bad_values(tmp_path: Path, args: list[str], message: str) -> None:
    result = gonka("node", "init", "--home", str(tmp_path / "n"), *args)
    assert result.exit_code in (1, 2)
    assert message in error_line(result, result.exit_code)
    assert not NodeHome(tmp_path / "n").exists()


@pytest.mark.parametrize(
    ("text", "seconds"), [("1s", 1.0), ("500ms", 0.5), ("2m", 120.0), ("3", 3.0), ("0.25s", 0.25)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_refuses_garbage() -> None:
    with pytest.raises(InputError):
        parse_duration("1h")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # 0 used to be taken as "the genesis' block time" without a word.
        (["--block-time", "0s"], "Error: the block time must be between 50 ms and 1 hour"),
        # "" used to listen on every interface, and print http://:PORT as the node's URL.
        (["--host", ""], "Error: --host is empty: give the address to listen on, e.g. 127.0.0.1"),
        (["--host", "203.0.113.7"], "Error: cannot listen on 203.0.113.7:0 ("),
        (["--port", "70000"], "Error: invalid --port 70000: use 0-65535"),
    ],
)
def test_start_refuses_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    result = gonka("node", "start", "--home", str(tmp_path / "n"), "--port", "0", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.splitlines()[-1].startswith(message), result.stderr


@pytest.mark.parametrize("command", [["init"], ["start", "--port", "0"]])
def test_a_home_below_a_file(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "file").write_text("x")
    home = tmp_path / "file" / "n"
    result = gonka("node", *command, "--home", str(home))
    assert error_line(result, 1) == (
        f"Error: cannot use {home} as the node's home (Not a directory)"
    )


def test_start_with_a_damaged_database(tmp_path: Path) -> None:
    home = tmp_path / "n"
    assert gonka("node", "init", "--home", str(home)).exit_code == 0
    NodeHome(home).db_file.write_bytes(b"not a database" * 100)
    result = gonka("node", "start", "--home", str(home), "--port", "0")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stderr.splitlines()[-1] == (
        f"Error: cannot open the node's database {home / 'node.db'}: file is not a database; "
        "check that the home is writable and the file is a gonka node's database"
    )


def test_status_of_a_running_node(start_node: StartNode) -> None:
    node = start_node()
    assert node.info is not None and node.ledger is not None
    data = ok_json(gonka("node", "status", "--node", node.info.url, "--json"))
    assert data["url"] == node.info.url
    assert data["chain_id"] == "gonka-devnet"
    assert data["accounts"] == 2  # the faucet and the node's own account
    assert data["mempool_txs"] == 0
    assert data["faucet_address"] == node.info.faucet_address
    assert int(data["total_supply_ngonka"]) == node.ledger.total_supply()
    assert data["height"] >= 0 and data["uptime_s"] >= 0

    text = gonka("node", "status", "--node", node.info.url)
    assert text.exit_code == 0
    assert text.stdout.splitlines()[1] == "chain id      gonka-devnet"


def test_status_uses_the_devnet_profile(local_node: Node) -> None:
    assert local_node.info is not None
    assert ok_json(gonka("node", "status", "--json"))["url"] == local_node.info.url


def test_status_when_no_node_runs() -> None:
    url = dead_url()
    line = error_line(gonka("node", "status", "--node", url), 1)
    assert line == (
        f"Error: no node answered: tried {url} (connection refused); check the connection or "
        "pass --node URL"
    )


def test_status_of_the_devnet_when_its_node_is_down_says_how_to_start_it(
    gonka_home: Path,
) -> None:
    url = dead_url()
    use_devnet(gonka_home, url)

    for command in (["node", "status"], ["wallet", "faucet", CAROL, "--json"]):
        line = error_line(gonka(*command), 1)
        assert line == (
            f"Error: no node answered: tried {url} (connection refused); is the devnet node "
            "running? start it with `gonka node start`"
        ), command


def test_faucet_funds_a_key_and_waits_for_the_block(local_node: Node) -> None:
    assert gonka("wallet", "create", "alice", "--yes").exit_code == 0
    data = ok_json(gonka("wallet", "faucet", "alice", "--amount", "12.5gnk", "--json"))
    alice = ok_json(gonka("wallet", "show", "alice", "--json"))["address"]
    assert data["address"] == alice
    assert data["amount_ngonka"] == str(12_500_000_000)
    assert data["balance_ngonka"] == str(12_500_000_000)
    assert data["height"] >= 1
    history = ok_json(gonka("wallet", "history", "alice", "--json"))
    assert history["transfers"][0]["txhash"] == data["txhash"]

    text = gonka("wallet", "faucet", alice)
    assert text.exit_code == 0, text.stderr
    assert text.stdout.startswith("Received 1,000 GNK from the")
    assert f"{alice} now holds 1,012.5 GNK" in text.stdout


def test_faucet_refusals(local_node: Node, gonka_home: Path) -> None:
    over = gonka("wallet", "faucet", CAROL, "--amount", "1000000gnk")
    assert error_line(over, 1) == (
        "Error: the faucet refused: the faucet gives between 1 and 10000000000000 ngonka per "
        "request"
    )
    bad = gonka("wallet", "faucet", "gonka1nope")
    assert error_line(bad, 2).startswith("Error: invalid address 'gonka1nope'")
    mainnet = gonka("wallet", "faucet", CAROL, "--network", "mainnet")
    assert error_line(mainnet, 2) == (
        "Error: there is no faucet on gonka-mainnet; use --network devnet with `gonka node start`"
    )


class _SdkNodeWithoutFaucet(BaseHTTPRequestHandler):
    """A Cosmos SDK REST gateway: node_info, and 404 (grpc-gateway JSON) for the rest."""

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/cosmos/base/tendermint/v1beta1/node_info":
            return self._send(200, {"default_node_info": {"network": "other-devnet"}})
        self._send(404, {"code": 5, "message": "Not Found", "details": []})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._send(404, {"code": 5, "message": "Not Found", "details": []})


def test_faucet_on_a_node_without_one(gonka_home: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SdkNodeWithoutFaucet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        use_devnet(gonka_home, url)
        line = error_line(gonka("wallet", "faucet", CAROL), 1)
        assert line == f"Error: node {url} has no faucet: only a local devnet node has one"
    finally:
        server.shutdown()
        server.server_close()


class _OtherStatusApi(BaseHTTPRequestHandler):
    """Some other service that answers /v1/node/status with JSON of its own."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        data = json.dumps({"status": "ok", "uptime_s": "a while", "height": [1]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_status_of_something_that_is_not_a_gonka_node(json_flag: list[str]) -> None:
    # It used to print the foreign JSON as if it were a status (--json), or crash with
    # "unexpected ValueError" (text).
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OtherStatusApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        line = error_line(gonka("node", "status", "--node", url, *json_flag), 1)
        assert line == (
            f"Error: {url} is not a gonka node: its /v1/node/status is not a node status"
        )
    finally:
        server.shutdown()
        server.server_close()


def test_faucet_without_waiting_reports_what_the_node_sends(local_node: Node) -> None:
    data = ok_json(gonka("wallet", "faucet", CAROL, "--amount", "3gnk", "--no-wait", "--json"))
    assert data["amount_ngonka"] == str(3 * GNK)
    assert data["height"] is None and data["balance_ngonka"] is None
    assert len(data["txhash"]) == 64


def test_init_refuses_mainnets_chain_id(tmp_path: Path) -> None:
    result = gonka("node", "init", "--home", str(tmp_path / "n"), "--chain-id", "gonka-mainnet")
    assert error_line(result, 1).startswith(
        "Error: genesis: gonka-mainnet is the real network's chain id; pick another"
    )


# --- gonka node load --------------------------------------------------------------------


def test_load_sends_signed_requests_that_miners_serve(start_node: StartNode) -> None:
    from gonka_cli.node.epochs import NetworkParams
    from tests.node.participant import TestParticipant

    node = start_node(network=NetworkParams(validation_share=0.0))
    assert node.info is not None
    worker = TestParticipant(node.info.url, mine_poc=False).start()
    try:
        data = ok_json(
            gonka(
                "node",
                "load",
                "--rps",
                "4",
                "--duration",
                "2s",
                "--keys",
                "2",
                "--max-tokens",
                "3",
                "--node",
                node.info.url,
                "--json",
            )
        )
    finally:
        worker.stop()
    assert data["sent"] >= 6
    assert data["completed"] == data["sent"], data
    assert data["failed"] == 0
    served = [d for d in worker.done if d["item"]["kind"] == "inference"]
    assert len(served) == data["completed"]
    assert all(len(d["item"]["prompt_tokens"]) > 3 for d in served)


def test_load_without_miners_reports_the_refusals(start_node: StartNode) -> None:
    node = start_node()
    assert node.info is not None
    data = ok_json(
        gonka(
            "node",
            "load",
            "--rps",
            "5",
            "--duration",
            "1s",
            "--keys",
            "1",
            "--node",
            node.info.url,
            "--json",
        )
    )
    assert data["completed"] == 0
    assert data["errors"] == {"503": data["sent"]}
    assert "no participant serves gonka-tiny" in data["last_error"]


@pytest.mark.parametrize(
    ("args", "wording"),
    [
        (("--rps", "0"), "--rps must be between 0 and 1000"),
        (("--keys", "0"), "--keys must be between 1 and 256"),
        (("--duration", "soon"), "invalid duration"),
    ],
)
def test_load_bad_options(args: tuple[str, ...], wording: str) -> None:
    assert wording in error_line(gonka("node", "load", *args, "--node", dead_url()), 2)


def test_load_against_an_unreachable_node() -> None:
    result = gonka("node", "load", "--node", dead_url())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("Error: no node answered")


# --- Ctrl-C: exit 130 (README "Exit codes"), after the same clean stop ------------------------


def _gonka_process(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONKA_")}
    env.update({"GONKA_HOME": str(home), "NO_COLOR": "1"})
    return subprocess.Popen(
        [sys.executable, "-m", "gonka_cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(stream: Any, text: str) -> str:
    """Lines of `stream` up to the one holding `text` (a test timeout stops a silent process)."""
    seen = ""
    for line in stream:
        seen += line
        if text in line:
            return seen
    raise AssertionError(f"the process ended before {text!r}; it printed:\n{seen}")


@pytest.mark.parametrize(
    ("stop", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)], ids=["ctrl-c", "term"]
)
def test_node_start_stops_cleanly_and_ctrl_c_exits_130(
    stop: signal.Signals, exit_code: int, tmp_path: Path, gonka_home: Path
) -> None:
    home = tmp_path / "node"
    init_home(home, params=ChainParams(block_time_s=0.1))
    proc = _gonka_process(gonka_home, "node", "start", "--home", str(home), "--port", "0")
    try:
        shown = _read_until(proc.stdout, "Press Ctrl-C to stop.")
        url = re.search(r" at (http://\S+), height", shown)
        assert url, shown
        # "Press Ctrl-C" comes just before the server takes over the signals: wait until it
        # answers, so that the signal reaches the running node.
        status = ChainClient(settings.resolve_network(settings.load_config(), "devnet", url[1]))
        with status:
            for _ in range(600):
                try:
                    status.node_status()
                    break
                except NodeUnreachable:
                    threading.Event().wait(0.05)
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == exit_code, err
    assert re.search(r"^Node stopped at height \d+\.$", err, re.MULTILINE), err
    assert "Traceback" not in err


def test_node_load_ctrl_c_prints_the_totals_and_exits_130(
    start_node: StartNode, gonka_home: Path
) -> None:
    node = start_node()
    assert node.info is not None
    proc = _gonka_process(
        gonka_home, "node", "load", "--rps", "5", "--keys", "1", "--node", node.info.url
    )
    try:
        _read_until(proc.stderr, "Ctrl-C stops")
        _read_until(proc.stderr, "sent ")  # the first progress line: the load runs
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert re.match(r"^0 of \d+ requests completed in \d+\.\d s", out), out
    assert "Traceback" not in err
