"""`gonka mine`'s human output: the live view, the periodic line and the summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gonka_cli.cli import mine as mine_cli
from gonka_cli.cli.main import app
from tests.conftest import PASSWORD, StartNode, node_url
from tests.miner.helpers import make_wallet, mining_network

SNAPSHOT = {
    "address": "gonka1abc",
    "node_url": "http://127.0.0.1:1317",
    "node_reachable": False,
    "uptime_s": 61.0,
    "epoch": 4,
    "phase": "generate",
    "height": 490,
    "phase_time_left_s": 12.4,
    "devices": [
        {
            "id": "gpu:0",
            "name": "NVIDIA H100 80GB HBM3",
            "state": "mining",
            "nonces": 123456,
            "nonces_per_second": 4321.5,
            "temperature_c": 71,
            "power_w": 612.3,
            "utilization_pct": 99.0,
            "restarts": 1,
            "last_error": None,
        },
        {
            "id": "gpu:1",
            "name": "NVIDIA H100 80GB HBM3",
            "state": "paused",
            "nonces": 5,
            "nonces_per_second": 0.0,
            "temperature_c": None,
            "power_w": None,
            "utilization_pct": None,
            "restarts": 0,
            "last_error": None,
        },
    ],
    "totals": {
        "nonces": 123461,
        "artifacts_committed": 120000,
        "proofs_answered": 3,
        "inference_tasks": 17,
        "validations": 2,
        "accepted": 22,
        "rejected": 1,
        "rejections": {"late result": 1},
        "weight_estimated": 120000,
        "weight_accepted": 98000,
        "balance_ngonka": "1500000000000",
        "earned_ngonka": "500000000000",
        "outbox_pending": 2,
    },
}


def test_the_live_view_shows_devices_work_and_earnings() -> None:
    console = Console(width=160, record=True, no_color=True)
    console.print(mine_cli.render_status(SNAPSHOT))
    text = console.export_text()
    assert "epoch 4 · generate · 12 s left · height 490" in text
    assert "node unreachable, retrying" in text
    row = next(line for line in text.splitlines() if line.startswith("gpu:0"))
    for cell in (
        "NVIDIA H100 80GB HBM3",
        "mining",
        "4,322",
        "123,456",
        "71 °C",
        "612 W",
        "99%",
        "1",
    ):
        assert cell in row
    paused = next(line for line in text.splitlines() if line.startswith("gpu:1"))
    assert "paused" in paused and paused.count("N/A") == 3
    assert "rejected 1 (late result ×1)" in text
    assert "weight: estimated 120,000, accepted 98,000" in text
    assert "balance 1,500 GNK · earned 500 GNK" in text


def test_the_status_line_for_logs() -> None:
    line = mine_cli.status_line(SNAPSHOT)
    assert "epoch 4 generate (12s left) | 4,322 nonces/s | committed 120,000" in line
    assert "accepted 22 rejected 1 | weight 98,000 | earned 500 GNK" in line
    assert line.endswith("node unreachable, retrying")


def test_between_generate_phases_the_view_says_when_the_next_begins() -> None:
    idle = {
        **SNAPSHOT,
        "phase": "inference",
        "phase_time_left_s": 3.2,
        "next_generate_in_s": 41.6,
        "devices": [
            {
                **SNAPSHOT["devices"][0],
                "state": "idle",
                "warning": "cannot read the temperature of gpu:0: --temp-limit 83 °C cannot "
                "pause it",
            }
        ],
    }
    console = Console(width=200, record=True, no_color=True)
    console.print(mine_cli.render_status(idle))
    text = console.export_text()
    assert "epoch 4 · inference · 3 s left · next generate phase in 42 s · height 490" in text
    assert (
        "warning: cannot read the temperature of gpu:0: --temp-limit 83 °C cannot pause it" in text
    )
    line = mine_cli.status_line(idle)
    assert "epoch 4 inference (3s left) | next generate phase in 42 s | 4,322 nonces/s" in line
    # In a generate phase there is no such line.
    assert "next generate" not in mine_cli.status_line({**idle, "phase": "generate"})


@pytest.mark.slow
def test_without_a_terminal_a_line_every_period_then_the_summary(
    start_node: StartNode, gonka_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mine_cli, "SUMMARY_EVERY_S", 1.0)
    node = start_node(network=mining_network())
    make_wallet(gonka_home, fund_at=node_url(node))
    result = CliRunner().invoke(
        app,
        ["mine", "--node", node_url(node), "--devices", "cpu", "--duration", "6"],
        env={"GONKA_KEYRING_PASSWORD": PASSWORD},
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    periodic = [line for line in lines if " nonces/s | committed " in line]
    assert len(periodic) >= 3
    summary = lines[lines.index("Mining summary") :]
    assert summary[1].startswith("duration") and any(s.startswith("nonces ") for s in summary)
    assert f"log: {gonka_home / 'logs' / 'mine.log'}" in result.stderr
    assert "Mining as gonka1" in result.stderr and "with cpu (" in result.stderr
    log = (gonka_home / "logs" / "mine.log").read_text()
    assert "registered" in log and PASSWORD not in log
