"""The CLI at a real terminal (a pseudo-terminal): prompts, confirmations and Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest

from gonka_cli.node.runner import Node
from tests.conftest import MNEMONIC, PASSWORD, StartNode, use_devnet

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


def funded_alice(home: Path, start_node: StartNode, **params: Any) -> tuple[str, Node]:
    """Create key 'alice' at the prompts; a node funding it in its genesis is the devnet."""
    create_interactively(home)
    alice = json.loads((home / "keys" / "alice.json").read_text())["address"]
    node = start_node(accounts=[(alice, 10**10)], **params)
    assert node.info is not None
    use_devnet(home, node.info.url)
    return alice, node


def test_send_shows_the_transfer_and_sends_only_after_yes(
    gonka_home: Path, start_node: StartNode
) -> None:
    alice, node = funded_alice(gonka_home, start_node)
    assert node.ledger is not None

    child = spawn(gonka_home, "wallet", "send", "alice", BOB, "2gnk")
    child.expect(r"Sign and send\? \[y/N\]")
    assert "2.000000000 GNK" in child.before and BOB in child.before
    child.sendline("n")
    code, rest = finish(child)
    assert code == 1 and "nothing was signed or sent" in rest
    status = node.ledger.status()
    assert (status.txs, status.mempool_txs) == (0, 0)

    child = spawn(gonka_home, "wallet", "send", "alice", BOB, "2gnk")
    child.expect(r"\[y/N\]")
    child.sendline("y")
    child.expect("Password for key 'alice'")
    child.sendline(PASSWORD)
    code, rest = finish(child)
    assert code == 0, rest
    assert "is in block" in rest
    bob = node.ledger.account(BOB)
    assert bob is not None and bob.balance == 2 * 10**9
    sender = node.ledger.account(alice)
    assert sender is not None and sender.sequence == 1


def test_ctrl_c_while_waiting_for_the_block_names_the_sent_transaction(
    gonka_home: Path, start_node: StartNode
) -> None:
    # No block comes on its own while the command waits.
    _, node = funded_alice(gonka_home, start_node, block_time_s=3600)

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
    assert node.ledger is not None
    assert node.ledger.status().mempool_txs == 1
    # The transaction the message names was sent: the node applies it (a last block on stop).
    node.stop()
    again = start_node(home=node.home_path)
    assert again.ledger is not None
    landed = again.ledger.tx(txhash)
    assert landed is not None and landed.code == 0
