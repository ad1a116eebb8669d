"""`gonka mine` end to end: a real miner process on a real node, earning through the wallet."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from gonka_cli.cli.main import app
from gonka_cli.workclient import WorkClient
from tests.conftest import PASSWORD, StartNode, dead_url, node_url
from tests.miner.helpers import GNK, MinerProcess, chain, make_wallet, mining_network
from tests.node.helpers import account, transfer
from tests.node.test_durability import free_port

pytestmark = pytest.mark.slow

REQUESTER = account("mine-requester")
HELLO = [{"role": "user", "content": "hello"}]


def metric_values(text: str) -> dict[str, float]:
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.timeout(300)  # whole epochs on a busy machine: a safety net only
def test_a_miner_earns_through_a_full_epoch(start_node: StartNode, gonka_home: Path) -> None:
    node = start_node(accounts=[(REQUESTER.address, 1_000 * GNK)], network=mining_network())
    url = node_url(node)
    make_wallet(gonka_home, fund_at=url)
    port = free_port()
    miner = MinerProcess(gonka_home, "--node", url, "--devices", "cpu", "--api-port", str(port))
    try:
        registered = miner.wait_event("registered", timeout=60)
        address = registered["address"]
        first = miner.wait_event("commit", timeout=60)
        assert first["count"] > 0

        # Monitoring while it mines: /status and /metrics on 127.0.0.1.
        status = requests.get(f"http://127.0.0.1:{port}/status", timeout=5).json()
        assert status["address"] == address
        assert status["devices"][0]["id"] == "cpu"
        metrics = metric_values(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        assert (
            metrics[
                'gonka_miner_device_nonces_total{"device": "cpu", "name": "'
                + status["devices"][0]["name"]
                + '"}'
            ]
            > 0
        )

        # Money that is not earned: a faucet funding and a transfer from another wallet.
        funds = chain(url)
        funds.wait_for_tx(funds.faucet(address, 7 * GNK)[0])
        signed = transfer(node, REQUESTER, address, 3 * GNK)
        funds.broadcast(signed.tx_bytes)
        funds.wait_for_tx(signed.txhash)

        # A worker that dies is started again, and mining goes on.
        ready = miner.wait_event("device_ready")
        os.kill(ready["pid"], signal.SIGKILL)
        exited = miner.wait_event("device_exited")
        assert exited["restart"] is True and exited["restarts"] == 1
        miner.wait_for(lambda: len(miner.of("device_ready")) == 2, 30, "the restarted worker")

        # Inference requests are answered by this miner, the only participant.
        requester = WorkClient(url, REQUESTER.key)
        answers = [requester.chat("gonka-tiny", HELLO, max_tokens=8, seed=i) for i in range(3)]
        assert all(a.gonka.executor == address for a in answers)

        # A whole generate phase, its verdict, and a reward paid: then stop.
        miner.wait_for(
            lambda: [e for e in miner.of("generate_done") if e["full_phase"]],
            120,
            "a generate phase seen whole",
        )
        miner.wait_for(lambda: miner.of("poc_accepted"), 120, "a PoC verdict")
        miner.wait_for(
            lambda: [e for e in miner.of("balance") if int(e["earned_ngonka"] or 0) > 0],
            120,
            "a reward",
        )
        miner.proc.send_signal(signal.SIGTERM)
        summary = miner.finish()
    finally:
        miner.stop()

    assert summary["nonces"] > 0
    assert summary["artifacts_committed"] > 0
    assert summary["weight_accepted"] > 0
    assert summary["inference_tasks"] == 3
    assert summary["rejected"] == 0, summary["rejections"]
    assert summary["outbox_pending"] == 0
    accepted = miner.of("poc_accepted")
    assert accepted and sum(e["weight"] for e in accepted) == summary["weight_accepted"]
    assert any(p["full_phase"] for p in summary["generate_phases"])

    # Earned is what the node's records say it paid this address since the miner started,
    # up to the height the miner last read them at: not the funding, not the transfer.
    earned = int(summary["earned_ngonka"])
    earnings = summary["earnings"]
    assert earnings["since_height"] == registered["height"]
    records = WorkClient(url).earnings(address, registered["height"]).records
    paid = [r for r in records if r.height <= earnings["height"]]
    assert paid and earned == sum(r.amount_ngonka for r in paid)
    assert int(earnings["poc_reward_ngonka"]) == sum(
        r.amount_ngonka for r in paid if r.kind == "poc_reward"
    )
    assert int(earnings["poc_reward_ngonka"]) > 0
    balance = int(summary["balance_ngonka"])
    assert balance >= earned + 10 * GNK  # the wallet started empty

    # The wallet sees the earnings and the other money.
    result = CliRunner().invoke(app, ["wallet", "balance", "miner", "--node", url, "--json"])
    assert result.exit_code == 0, result.output
    assert int(json.loads(result.stdout)["spendable_ngonka"]) >= balance


# --- bad input: one line each ----------------------------------------------------------------


def mine(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(app, ["mine", *args], env=env)
    lines = result.stderr.strip().splitlines()
    return result, [line for line in lines if line.startswith("Error:")]


def test_a_missing_wallet_is_named(gonka_home: Path) -> None:
    result, errors = mine("--node", dead_url(), "--devices", "cpu")
    assert result.exit_code == 1
    assert errors == [
        "Error: no wallet named 'miner': create it with gonka wallet create miner, pass "
        "--wallet NAME, or mine on the local devnet with --devnet (which creates it) "
        f"(log: {gonka_home / 'logs' / 'mine.log'})"
    ]


def test_a_wrong_password_is_refused(gonka_home: Path) -> None:
    make_wallet(gonka_home)
    result, errors = mine(
        "--node", dead_url(), "--devices", "cpu", env={"GONKA_KEYRING_PASSWORD": "not it at all"}
    )
    assert result.exit_code == 1
    assert len(errors) == 1 and "wrong password for key 'miner'" in errors[0].lower()


def test_no_password_and_no_terminal_says_what_to_set(gonka_home: Path) -> None:
    make_wallet(gonka_home)
    result, errors = mine("--node", dead_url(), "--devices", "cpu")
    assert result.exit_code == 1
    assert len(errors) == 1 and "set GONKA_KEYRING_PASSWORD or pass --password-file" in errors[0]


def test_an_unknown_model_is_a_usage_error(gonka_home: Path) -> None:
    result, errors = mine("--node", dead_url(), "--model", "gonka-huge")
    assert result.exit_code == 2
    assert len(errors) == 1 and "gonka-huge" in errors[0] and "gonka-tiny" in errors[0]


def test_an_unreachable_node_is_one_line(gonka_home: Path) -> None:
    make_wallet(gonka_home)
    url = dead_url()
    result, errors = mine(
        "--node", url, "--devices", "cpu", env={"GONKA_KEYRING_PASSWORD": PASSWORD}
    )
    assert result.exit_code == 1
    assert len(errors) == 1
    assert f"no node answered: tried {url} (connection refused)" in errors[0]
    assert "gonka mine --devnet starts a local one" in errors[0]


def test_a_node_without_the_mining_api_is_named(server: Any, gonka_home: Path) -> None:
    make_wallet(gonka_home)
    result, errors = mine(
        "--node", server.url, "--devices", "cpu", env={"GONKA_KEYRING_PASSWORD": PASSWORD}
    )
    assert result.exit_code == 1
    assert len(errors) == 1 and "does not serve gonka's mining API" in errors[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--devices", "0,x"], "invalid --devices '0,x'"),
        (["--devices", "3"], "no GPU 3"),
        (["--temp-limit", "200"], "--temp-limit must be between 30 and 110"),
        (["--duration", "0"], "invalid --duration '0'"),
        (["--duration", "soon"], "invalid duration 'soon'"),
        (["--devnet", "--network", "mainnet"], "--devnet mines on the devnet profile"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str, gonka_home: Path) -> None:
    make_wallet(gonka_home)
    result, errors = mine("--node", dead_url(), *args)
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and message in errors[0]


def test_a_second_miner_with_the_same_wallet_is_refused(
    start_node: StartNode, gonka_home: Path
) -> None:
    node = start_node(network=mining_network())
    make_wallet(gonka_home, fund_at=node_url(node))
    first = MinerProcess(gonka_home, "--node", node_url(node), "--devices", "cpu")
    try:
        first.wait_event("registered", timeout=60)
        second = MinerProcess(gonka_home, "--node", node_url(node), "--devices", "cpu")
        second.proc.wait(timeout=60)
        second._err_reader.join(timeout=5)
        assert second.proc.returncode == 1
        errors = [line for line in second.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1
        assert "another gonka mine is already running with this wallet" in errors[0]
    finally:
        first.stop()


def test_ctrl_c_stops_with_a_summary(start_node: StartNode, gonka_home: Path) -> None:
    node = start_node(network=mining_network())
    make_wallet(gonka_home, fund_at=node_url(node))
    miner = MinerProcess(gonka_home, "--node", node_url(node), "--devices", "cpu")
    try:
        miner.wait_event("commit", timeout=60)
        miner.proc.send_signal(signal.SIGINT)
        miner.proc.wait(timeout=60)
        miner._reader.join(timeout=5)
    finally:
        miner.stop()
    assert miner.proc.returncode == 130
    assert miner.events[-1]["event"] == "summary"
    assert miner.events[-1]["nonces"] > 0
    # Every artifact appended before the stop was committed to the node.
    committed = max(e["count"] for e in miner.of("commit"))
    assert miner.events[-1]["artifacts_committed"] == committed


def test_the_devnet_is_started_and_the_wallet_made_and_funded(gonka_home: Path) -> None:
    port = free_port()
    gonka_home.mkdir(parents=True, exist_ok=True)
    (gonka_home / "config.toml").write_text(
        f'[networks.devnet]\nrest = ["http://127.0.0.1:{port}"]\n'
    )
    miner = MinerProcess(gonka_home, "--devnet")
    try:
        miner.wait_event("commit", timeout=120)
        miner.proc.send_signal(signal.SIGTERM)
        summary = miner.finish()
    finally:
        miner.stop()
    assert miner.of("devnet_started", url=f"http://127.0.0.1:{port}")
    created = miner.wait_event("wallet_created", wallet="miner")
    assert created["funded_ngonka"] == str(2_000 * GNK)
    # Registration locked the collateral (1,000 GNK): the rest is spendable,
    assert int(summary["balance_ngonka"]) == 1_000 * GNK
    assert int(summary["earned_ngonka"]) < 1_000 * GNK  # and the funding is not earned
    assert (gonka_home / "keys" / "miner.json").exists()
    # The node stopped with the miner: the port is free again.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/v1/identity", timeout=2)


def test_the_devnet_already_running_is_joined(start_node: StartNode, gonka_home: Path) -> None:
    node = start_node(network=mining_network())
    gonka_home.mkdir(parents=True, exist_ok=True)
    (gonka_home / "config.toml").write_text(f'[networks.devnet]\nrest = ["{node_url(node)}"]\n')
    make_wallet(gonka_home, fund_at=node_url(node))
    miner = MinerProcess(gonka_home, "--devnet")
    try:
        miner.wait_event("commit", timeout=120)
        miner.proc.send_signal(signal.SIGTERM)
        miner.finish()
    finally:
        miner.stop()
    assert miner.of("devnet_joined", url=node_url(node))
    assert not miner.of("wallet_created")
    # The node this miner did not start keeps running.
    assert requests.get(node_url(node) + "/v1/identity", timeout=5).status_code == 200
