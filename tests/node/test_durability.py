"""The node as a real process: kill -9 under load, SIGTERM, restart, one node per home."""

from __future__ import annotations

import base64
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gonka_cli.chain import tx as txlib
from gonka_cli.crypto.address import address_from_pubkey
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.node.genesis import ChainParams, init_home
from gonka_cli.node.ledger import FEE_COLLECTOR_ADDRESS

GNK = 10**9
FEE = 500
SENDERS = [PrivateKey((i + 7).to_bytes(32, "big")) for i in range(4)]
SENDER_ADDRESSES = [address_from_pubkey(k.public_key.to_bytes()) for k in SENDERS]
RECIPIENTS = [
    address_from_pubkey(PrivateKey((1000 + i).to_bytes(32, "big")).public_key.to_bytes())
    for i in range(3)
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_start(home: Path, port: int, *extra: str) -> list[str]:
    """The command line of `gonka node start` in this Python."""
    return [
        sys.executable,
        "-m",
        "gonka_cli",
        "node",
        "start",
        "--home",
        str(home),
        "--port",
        str(port),
        "--rpc-port",
        "0",
        *extra,
    ]


class NodeProcess:
    """`python -m gonka_cli node start` in a subprocess."""

    def __init__(
        self, home: Path, gonka_home: Path, block_time: str = "100ms", port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            node_start(home, self.port, "--block-time", block_time),
            env={**os.environ, "GONKA_HOME": str(gonka_home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited: {self.proc.communicate()}")
            try:
                requests.get(self.url + "/v1/node/status", timeout=5)
                return
            except (requests.ConnectionError, requests.Timeout):
                # Not listening yet, or listening but slow to answer on a busy machine.
                time.sleep(0.05)
        raise AssertionError("node did not start")

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, how: signal.Signals = signal.SIGTERM) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(how)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err


@pytest.fixture
def node_home(tmp_path: Path) -> Path:
    home = tmp_path / "node"
    init_home(
        home,
        accounts=[(a, 1_000 * GNK) for a in SENDER_ADDRESSES],
        params=ChainParams(block_time_s=0.1),
    )
    return home


@pytest.fixture
def processes() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.kill9()


def signed_transfer(sender: int, sequence: int, to: str, amount: int) -> txlib.SignedTx:
    return txlib.sign_send(
        SENDERS[sender],
        chain_id="gonka-devnet",
        account_number=sender + 1,  # the faucet is account 0
        sequence=sequence,
        from_address=SENDER_ADDRESSES[sender],
        to_address=to,
        amount=amount,
        fee=txlib.Fee(txlib.coins(FEE), 200_000),
    )


def broadcast(url: str, signed: txlib.SignedTx) -> int:
    body = {"tx_bytes": base64.b64encode(signed.tx_bytes).decode(), "mode": "BROADCAST_MODE_SYNC"}
    response = requests.post(url + "/cosmos/tx/v1beta1/txs", json=body, timeout=10)
    return int(response.json()["tx_response"]["code"])


def balance(node: NodeProcess, address: str) -> int:
    coins = node.get(f"/cosmos/bank/v1beta1/balances/{address}").json()["balances"]
    return int(coins[0]["amount"]) if coins else 0


def test_kill_9_under_load_loses_no_acknowledged_transfer_and_invents_no_money(
    node_home: Path, gonka_home: Path, processes: list[NodeProcess]
) -> None:
    node = NodeProcess(node_home, gonka_home)
    processes.append(node)
    sent: dict[str, tuple[int, str, int]] = {}  # txhash -> (sender, recipient, amount)
    acknowledged: set[str] = set()
    stop = threading.Event()
    lock = threading.Lock()

    def load(sender: int) -> None:
        rng = random.Random(sender)
        sequence = 0
        while not stop.is_set():
            to, amount = rng.choice(RECIPIENTS), rng.randint(1, 10**6)
            signed = signed_transfer(sender, sequence, to, amount)
            try:
                code = broadcast(node.url, signed)
            except requests.RequestException:
                return  # the node was killed
            if code == 0:
                with lock:
                    sent[signed.txhash] = (sender, to, amount)
                sequence += 1

    def watch() -> None:
        # What a wallet would have seen as final: the transaction in a block with code 0.
        while not stop.is_set():
            with lock:
                pending = [h for h in sent if h not in acknowledged][-20:]
            for txhash in pending:
                try:
                    response = node.get(f"/cosmos/tx/v1beta1/txs/{txhash}")
                except requests.RequestException:
                    return
                if response.status_code == 200:
                    assert response.json()["tx_response"]["code"] == 0
                    acknowledged.add(txhash)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(len(SENDERS))]
    threads.append(threading.Thread(target=watch))
    for t in threads:
        t.start()
    time.sleep(2.0)
    node.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acknowledged) > 20, "the load did not get going"

    restarted = NodeProcess(node_home, gonka_home)
    processes.append(restarted)
    included: dict[str, dict] = {}
    for txhash in sent:
        response = restarted.get(f"/cosmos/tx/v1beta1/txs/{txhash}")
        if response.status_code == 200:
            included[txhash] = response.json()["tx_response"]
        else:
            assert response.status_code == 404
    assert acknowledged <= set(included), "an acknowledged transfer was lost"
    assert all(r["code"] == 0 for r in included.values())

    # Every balance is the genesis plus exactly the transfers the ledger holds.
    expected = {a: 1_000 * GNK for a in SENDER_ADDRESSES}
    fees = 0
    for txhash in included:
        sender, to, amount = sent[txhash]
        expected[SENDER_ADDRESSES[sender]] -= amount + FEE
        expected[to] = expected.get(to, 0) + amount
        fees += FEE
    for address, amount in expected.items():
        assert balance(restarted, address) == amount, address
    assert balance(restarted, FEE_COLLECTOR_ADDRESS) == fees
    supply = restarted.get("/cosmos/bank/v1beta1/supply").json()["supply"][0]["amount"]
    status = restarted.get("/v1/node/status").json()
    assert int(supply) == int(status["total_supply_ngonka"]) == 1_000_000_000 * GNK + 4_000 * GNK

    # The chain goes on: each sender's next sequence is exactly its included count.
    for sender, address in enumerate(SENDER_ADDRESSES):
        info = restarted.get(f"/cosmos/auth/v1beta1/account_info/{address}").json()["info"]
        count = sum(1 for h in included if sent[h][0] == sender)
        assert int(info["sequence"]) == count
        assert broadcast(restarted.url, signed_transfer(sender, count, RECIPIENTS[0], 1)) == 0
    code, _, err = restarted.stop()
    assert code == 0, err


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_stopping_applies_the_mempool_and_exits_cleanly(
    stop_signal: signal.Signals, node_home: Path, gonka_home: Path, processes: list[NodeProcess]
) -> None:
    # A block a minute: only the shutdown block can include the transfer.
    node = NodeProcess(node_home, gonka_home, block_time="60s")
    processes.append(node)
    signed = signed_transfer(0, 0, RECIPIENTS[1], 12345)
    assert broadcast(node.url, signed) == 0
    code, out, err = node.stop(stop_signal)
    # SIGTERM is a normal stop; Ctrl-C (SIGINT) exits 130, as every command does.
    assert code == (130 if stop_signal == signal.SIGINT else 0), err
    assert "Node stopped at height " in err
    assert "chain gonka-devnet at " + node.url in out

    restarted = NodeProcess(node_home, gonka_home)
    processes.append(restarted)
    response = restarted.get(f"/cosmos/tx/v1beta1/txs/{signed.txhash}")
    assert response.status_code == 200
    assert response.json()["tx_response"]["code"] == 0
    assert balance(restarted, RECIPIENTS[1]) == 12345


def start_in_foreground(
    home: Path, gonka_home: Path, port: int
) -> subprocess.CompletedProcess[str]:
    """`gonka node start` expected to fail at once."""
    return subprocess.run(
        node_start(home, port),
        env={**os.environ, "GONKA_HOME": str(gonka_home)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_node_on_the_same_home_is_refused(
    node_home: Path, gonka_home: Path, processes: list[NodeProcess]
) -> None:
    processes.append(NodeProcess(node_home, gonka_home))
    result = start_in_foreground(node_home, gonka_home, 0)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: another node is already running with home {node_home}; stop it first or use "
        "another --home"
    )


def test_a_busy_port_is_refused(
    node_home: Path, tmp_path: Path, gonka_home: Path, processes: list[NodeProcess]
) -> None:
    node = NodeProcess(node_home, gonka_home)
    processes.append(node)
    other = tmp_path / "other"
    result = start_in_foreground(other, gonka_home, node.port)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"Error: cannot listen on 127.0.0.1:{node.port} (Address already in use)")
    )
