"""The CLI at a real terminal (a pseudo-terminal): prompts, confirmations and Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import termios
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pexpect
import pytest
import requests

from gonka_cli.node.runner import Node
from tests.conftest import (
    MNEMONIC,
    PASSWORD,
    StartNode,
    dead_url,
    node_ledger,
    node_url,
    use_devnet,
)

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


def test_mismatched_passwords_ask_again_three_times_then_save_nothing(gonka_home: Path) -> None:
    child = spawn(gonka_home, "wallet", "create", "alice")
    for attempt in range(3):
        child.expect("New password for key 'alice'")
        child.sendline(PASSWORD)
        child.expect("Repeat to confirm")
        child.sendline(PASSWORD + "x")
        if attempt < 2:
            child.expect("The two entries do not match; try again.")
    code, rest = finish(child)
    assert code == 2
    assert "try again" not in rest
    assert rest.strip().splitlines()[-1] == (
        "Error: the two entries do not match; nothing was changed"
    )
    assert not (gonka_home / "keys" / "alice.json").exists()


def test_a_mismatch_or_a_short_password_asks_again(gonka_home: Path) -> None:
    child = spawn(gonka_home, "wallet", "create", "alice", "--words", "12")
    child.expect("New password for key 'alice'")
    child.sendline("short")
    child.expect("Password too short: use at least 8 characters; try again.")
    child.expect("New password for key 'alice'")
    child.sendline(PASSWORD)
    child.expect("Repeat to confirm")
    child.sendline(PASSWORD + "x")
    child.expect("The two entries do not match; try again.")
    child.expect("New password for key 'alice'")
    child.sendline(PASSWORD)
    child.expect("Repeat to confirm")
    child.sendline(PASSWORD)
    child.expect(r"Have you written down the mnemonic\? \[y/N\]")
    child.sendline("y")
    code, rest = finish(child)
    assert code == 0, rest
    assert "Created key 'alice'" in rest


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


def test_a_wrong_password_at_the_prompt_asks_again_three_times(gonka_home: Path) -> None:
    create_interactively(gonka_home)
    child = spawn(gonka_home, "wallet", "export", "alice", "--hex")
    child.expect(r"\[y/N\]")
    child.sendline("y")
    for _ in range(2):
        child.expect("Password for key 'alice'")
        child.sendline("wrong password")
        child.expect(
            re.escape("wrong password for key 'alice' (or the key file is damaged); try again.")
        )
    child.expect("Password for key 'alice'")
    child.sendline("wrong password")
    code, rest = finish(child)
    assert code == 1
    assert rest.strip().splitlines()[-1] == (
        "Error: wrong password for key 'alice' (or the key file is damaged)"
    )


def test_a_typo_in_the_password_is_forgiven(gonka_home: Path) -> None:
    create_interactively(gonka_home)
    child = spawn(gonka_home, "wallet", "export", "alice", "--hex", "--yes")
    child.expect("Password for key 'alice'")
    child.sendline(PASSWORD + "x")
    child.expect("try again")
    child.expect("Password for key 'alice'")
    child.sendline(PASSWORD)
    code, rest = finish(child)
    assert code == 0, rest
    assert re.search(r"^[0-9a-f]{64}\r?$", rest, re.MULTILINE)


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
    assert "2 GNK" in child.before and BOB in child.before
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


class HoldingProxy(ThreadingHTTPServer):
    """Forwards requests to a real node, holding those whose path starts with `hold` until
    `release` is set (`held` is set when one arrives): a command's spinner stays up meanwhile."""

    daemon_threads = True

    def __init__(self, target: str, hold: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.target, self.hold = target, hold
        self.held, self.release = threading.Event(), threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: HoldingProxy

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        if self.path.startswith(self.server.hold):
            self.server.held.set()
            self.server.release.wait(60)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = requests.request(
            self.command, self.server.target + self.path, data=body or None, timeout=30
        )
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = _forward


def test_keys_typed_during_a_spinner_are_not_echoed_and_do_not_answer_the_next_question(
    gonka_home: Path, start_node: StartNode
) -> None:
    alice, node = funded_alice(gonka_home, start_node)
    proxy = HoldingProxy(node_url(node), hold="/cosmos/auth/v1beta1/account_info")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        use_devnet(gonka_home, proxy.url)
        child = spawn(gonka_home, "wallet", "send", "alice", BOB, "2gnk")
        assert proxy.held.wait(30), "the command never asked for the account"
        # The spinner runs: the terminal does not echo, whatever is typed.
        assert not termios.tcgetattr(child.child_fd)[3] & termios.ECHO
        # Typed ahead: neither shown, nor taken as the answer to "Sign and send?".
        child.send("zq-typed-ahead\ry\r")
        proxy.release.set()
        child.expect(r"Sign and send\? \[y/N\]: ")
        shown = child.before
        assert termios.tcgetattr(child.child_fd)[3] & termios.ECHO  # back for the question
        child.sendline("n")
        code, rest = finish(child)
    finally:
        proxy.release.set()
        proxy.shutdown()
        proxy.server_close()
    assert "zq-typed-ahead" not in shown + rest
    assert code == 1, rest
    assert rest.strip().splitlines()[-1] == "Error: cancelled; nothing was signed or sent"
    status = node_ledger(node).status()
    assert (status.txs, status.mempool_txs) == (0, 0)
    assert node_ledger(node).account(alice) is not None


def test_ctrl_c_during_a_spinner_gives_the_terminal_its_echo_back(
    gonka_home: Path, start_node: StartNode
) -> None:
    _, node = funded_alice(gonka_home, start_node)
    proxy = HoldingProxy(node_url(node), hold="/cosmos/bank/v1beta1")
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        use_devnet(gonka_home, proxy.url)
        child = spawn(gonka_home, "wallet", "balance", "alice")
        assert proxy.held.wait(30), "the command never asked for the balance"
        assert not termios.tcgetattr(child.child_fd)[3] & termios.ECHO
        child.kill(signal.SIGINT)
        child.expect("Interrupted")
        # The process restored the terminal on its way out (checked before it is gone).
        echo_back = bool(termios.tcgetattr(child.child_fd)[3] & termios.ECHO)
        code, _ = finish(child)
    finally:
        proxy.release.set()
        proxy.shutdown()
        proxy.server_close()
    assert code == 130
    assert echo_back


# --- gonka mine: the password before the node, and typos forgiven ----------------------------


def _port_is_free(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_mine_devnet_asks_for_the_new_password_before_starting_the_node(
    gonka_home: Path,
) -> None:
    url = dead_url()
    gonka_home.mkdir(parents=True, exist_ok=True)
    (gonka_home / "config.toml").write_text(f'[networks.devnet]\nrest = ["{url}"]\n')
    child = spawn(gonka_home, "mine", "--devnet", "--devices", "cpu")
    child.timeout = 120
    child.expect("New password for key 'miner'")
    assert _port_is_free(url), "the node started before the password was asked"
    child.sendline(PASSWORD)
    child.expect("Repeat to confirm")
    child.sendline(PASSWORD + "x")  # a typo in the confirmation: asked again, not the end
    child.expect("The two entries do not match; try again.")
    child.expect("New password for key 'miner'")
    assert _port_is_free(url)
    child.sendline(PASSWORD)
    child.expect("Repeat to confirm")
    child.sendline(PASSWORD)
    child.expect(f"Started the devnet node at {url}")
    child.expect(r"Created wallet 'miner' \(gonka1[0-9a-z]+\) and funded it with 2,000 GNK")
    child.kill(signal.SIGINT)
    code, rest = finish(child)
    assert code == 130, rest
    assert (gonka_home / "keys" / "miner.json").exists()
    assert _port_is_free(url), "the node did not stop with the miner"


def test_mine_forgives_a_wrong_password_before_joining_the_devnet(
    gonka_home: Path, start_node: StartNode
) -> None:
    create_interactively(gonka_home, "miner")
    node = start_node()
    use_devnet(gonka_home, node_url(node))
    child = spawn(gonka_home, "mine", "--devnet", "--devices", "cpu")
    child.timeout = 120
    child.expect("Password for key 'miner'")
    child.sendline("a typo")
    child.expect(
        re.escape("wrong password for key 'miner' (or the key file is damaged); try again.")
    )
    assert "altered" not in child.before
    child.expect("Password for key 'miner'")
    child.sendline(PASSWORD)
    child.expect(f"Joined the devnet node at {node_url(node)}")
    child.kill(signal.SIGINT)
    code, rest = finish(child)
    assert code == 130, rest
