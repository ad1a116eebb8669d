"""The CLI at a real terminal (a pseudo-terminal): prompts, confirmations and Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pexpect
import pytest

from tests.chain_server import Chain, ChainServer
from tests.conftest import MNEMONIC, PASSWORD

BOB = "gonka1f85frkfw89cgpva0vgpyuldjgu6uhyd86zuv9p"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


def spawn(home: Path, *args: str) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONKA_")}
    env.update({"GONKA_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})
    return pexpect.spawn(
        sys.executable,
        ["-m", "gonka_cli", *args],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(50, 200),
    )


def finish(child: pexpect.spawn) -> tuple[int, str]:
    rest = child.read()
    child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus, rest


def create_interactively(home: Path, name: str = "alice") -> str:
    child = spawn(home, "wallet", "create", name)
    child.expect(f"New password for key '{name}'")
    child.sendline(PASSWORD)
    child.expect("Repeat to confirm")
    child.sendline(PASSWORD)
    child.expect(r"Have you written down the mnemonic\? \[y/N\]")
    shown = child.before
    child.sendline("y")
    code, rest = finish(child)
    assert code == 0, rest
    assert f"Created key '{name}'" in rest
    numbered = {int(n): w for n, w in re.findall(r"(\d+)\. ([a-z]+)", shown)}
    return " ".join(numbered[i] for i in sorted(numbered))


def test_create_prompts_twice_shows_the_mnemonic_and_export_gives_it_back(gonka_home: Path) -> None:
    shown_words = create_interactively(gonka_home)
    assert (gonka_home / "keys" / "alice.json").exists()
    child = spawn(gonka_home, "wallet", "export", "alice", "--json")
    child.expect(r"Print the mnemonic of key 'alice'\?.*\[y/N\]")
    child.sendline("y")
    child.expect("Password for key 'alice'")
    child.sendline(PASSWORD)
    code, rest = finish(child)
    assert code == 0, rest
    exported = json.loads(rest[rest.index("{") :])["mnemonic"]
    assert exported == shown_words
    assert len(exported.split()) == 24
    assert PASSWORD not in rest


def test_mismatched_passwords_save_nothing(gonka_home: Path) -> None:
    child = spawn(gonka_home, "wallet", "create", "alice")
    child.expect("New password")
    child.sendline(PASSWORD)
    child.expect("Repeat to confirm")
    child.sendline(PASSWORD + "x")
    code, rest = finish(child)
    assert code == 2
    assert "do not match" in rest
    assert not (gonka_home / "keys" / "alice.json").exists()


def test_answering_no_to_written_down_saves_nothing(gonka_home: Path) -> None:
    child = spawn(gonka_home, "wallet", "create", "alice")
    child.expect("New password")
    child.sendline(PASSWORD)
    child.expect("Repeat to confirm")
    child.sendline(PASSWORD)
    child.expect(r"\[y/N\]")
    child.sendline("n")
    code, rest = finish(child)
    assert code == 1
    assert "nothing was saved" in rest
    assert not (gonka_home / "keys" / "alice.json").exists()


def test_ctrl_c_at_a_prompt_exits_130_and_writes_nothing(gonka_home: Path) -> None:
    child = spawn(gonka_home, "wallet", "create", "alice")
    child.expect("New password")
    child.kill(signal.SIGINT)
    code, rest = finish(child)
    assert code == 130
    assert "Interrupted" in rest
    assert not (gonka_home / "keys").exists() or not any((gonka_home / "keys").iterdir())


def test_import_reads_the_mnemonic_without_echoing_it(gonka_home: Path) -> None:
    child = spawn(gonka_home, "wallet", "import", "alice")
    child.expect("Mnemonic")
    child.sendline(MNEMONIC)
    child.expect("New password")
    assert "economy" not in child.before
    child.sendline(PASSWORD)
    child.expect("Repeat to confirm")
    child.sendline(PASSWORD)
    code, rest = finish(child)
    assert code == 0, rest
    assert "economy" not in rest
    assert "Imported key 'alice'" in rest


def test_wrong_password_at_the_prompt(gonka_home: Path) -> None:
    create_interactively(gonka_home)
    child = spawn(gonka_home, "wallet", "export", "alice", "--hex")
    child.expect(r"\[y/N\]")
    child.sendline("y")
    child.expect("Password for key 'alice'")
    child.sendline("wrong password")
    code, rest = finish(child)
    assert code == 1
    assert "wrong password for key 'alice'" in rest


def test_delete_asks_and_no_keeps_the_key(gonka_home: Path) -> None:
    create_interactively(gonka_home)
    child = spawn(gonka_home, "wallet", "delete", "alice")
    child.expect(r"Delete key 'alice'.*\[y/N\]")
    child.sendline("")
    code, rest = finish(child)
    assert code == 1 and "nothing was deleted" in rest
    assert (gonka_home / "keys" / "alice.json").exists()
    child = spawn(gonka_home, "wallet", "delete", "alice")
    child.expect(r"\[y/N\]")
    child.sendline("y")
    code, rest = finish(child)
    assert code == 0 and "Deleted key 'alice'" in rest
    assert not (gonka_home / "keys" / "alice.json").exists()


def funded_alice(home: Path, chain: Chain) -> str:
    """Create key 'alice' at the prompts and fund it on the test chain."""
    create_interactively(home)
    alice = json.loads((home / "keys" / "alice.json").read_text())["address"]
    chain.fund(alice, 10**10)
    return alice


def test_send_shows_the_transfer_and_sends_only_after_yes(
    gonka_home: Path, chain: Chain, devnet: ChainServer
) -> None:
    funded_alice(gonka_home, chain)

    child = spawn(gonka_home, "wallet", "send", "alice", BOB, "2gnk")
    child.expect(r"Sign and send\? \[y/N\]")
    assert "2.000000000 GNK" in child.before and BOB in child.before
    child.sendline("n")
    code, rest = finish(child)
    assert code == 1 and "nothing was signed or sent" in rest
    assert chain.broadcasts == []

    child = spawn(gonka_home, "wallet", "send", "alice", BOB, "2gnk")
    child.expect(r"\[y/N\]")
    child.sendline("y")
    child.expect("Password for key 'alice'")
    child.sendline(PASSWORD)
    code, rest = finish(child)
    assert code == 0, rest
    assert "is in block" in rest
    assert chain.accounts[BOB].balance == 2 * 10**9


def test_ctrl_c_while_waiting_for_the_block_names_the_sent_transaction(
    gonka_home: Path, chain: Chain, devnet: ChainServer
) -> None:
    chain.block_after_polls = 10**9
    funded_alice(gonka_home, chain)

    child = spawn(gonka_home, "wallet", "send", "alice", BOB, "1gnk", "--yes")
    child.expect("Password for key 'alice'")
    child.sendline(PASSWORD)
    child.expect(r"Transaction ([0-9A-F]{64}) accepted")
    txhash = child.match.group(1)
    time.sleep(0.5)  # let it start polling for the block
    child.kill(signal.SIGINT)
    code, rest = finish(child)
    assert code == 130
    assert f"gonka wallet tx {txhash}" in rest
    assert chain.broadcasts == [txhash]
