"""`gonka --version`, `--help`, wallet and node-client commands must not load heavy modules.

The compute stack (torch, onnxruntime, numpy) and the node's server (fastapi, uvicorn) load
only in the commands that use them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, dead_url

HEAVY = ("torch", "onnxruntime", "numpy", "fastapi", "uvicorn", "starlette", "pydantic")


def imported_modules(home: Path, *args: str, stdin: str = "") -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONKA_")}
    env.update({"GONKA_HOME": str(home), "GONKA_KEYRING_PASSWORD": PASSWORD, "NO_COLOR": "1"})
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gonka_cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    modules = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    assert modules, proc.stderr
    return modules


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("imports-home")


COMMANDS = [
    ("--version",),
    ("--help",),
    ("wallet", "--help"),
    ("wallet", "create", "alice", "--yes", "--words", "12"),
    ("wallet", "list"),
    ("wallet", "show", "alice"),
    ("wallet", "export", "alice", "--hex", "--yes"),
    ("wallet", "balance", "alice", "--node", "NODE"),
    (
        "wallet",
        "send",
        "alice",
        "gonka1f85frkfw89cgpva0vgpyuldjgu6uhyd86zuv9p",
        "1gnk",
        "--yes",
        "--offline",
        "--chain-id",
        "gonka-devnet",
        "--account-number",
        "1",
        "--sequence",
        "0",
    ),
    ("wallet", "tx", "A" * 64, "--node", "NODE"),
    ("wallet", "history", "alice", "--node", "NODE"),
    ("wallet", "send", "alice", "alice", "1gnk", "--yes", "--node", "NODE"),
    ("wallet", "faucet", "alice", "--node", "NODE"),
    ("wallet", "delete", "alice", "--yes"),
    ("node", "--help"),
    ("node", "status", "--node", "NODE"),
    ("mine", "--help"),
    ("bench", "--help"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_command_does_not_import_heavy_modules(args: tuple[str, ...], home: Path) -> None:
    args = tuple(dead_url() if a == "NODE" else a for a in args)
    modules = imported_modules(home, *args)
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"`gonka {' '.join(args)}` imported {heavy[:5]}"


def test_the_import_log_lists_what_the_command_loaded(home: Path) -> None:
    modules = imported_modules(home, "--version")
    assert "gonka_cli.cli.main" in modules and "typer" in modules


@pytest.mark.parametrize(
    "module", ["gonka_cli.cli.mine", "gonka_cli.cli.wallet", "gonka_cli.cli.node"]
)
def test_command_modules_do_not_import_the_root_command(module: str) -> None:
    """No cycle: the root (`cli.main`) imports the command groups, never the other way round,
    not even lazily (what they share lives in `cli.output` and `cli.options`)."""
    source = (Path(__file__).parents[1] / (module.replace(".", "/") + ".py")).read_text()
    assert "gonka_cli.cli.main" not in source
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert module in loaded and "gonka_cli.cli.main" not in loaded
