"""Starting and stopping a node (`runner`): the home, the lock, the port, a broken disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import requests

from gonka_cli.errors import InputError, NodeError, NodeRunning, NodeStateError
from gonka_cli.node.genesis import NodeHome
from gonka_cli.node.runner import Node, _HomeLock, bind
from tests.conftest import StartNode, node_ledger, node_url
from tests.node.helpers import WAIT_S, account


def test_a_locked_empty_home_is_not_initialised(tmp_path: Path) -> None:
    # Two nodes started together on an empty home must not both write a genesis and a faucet
    # key: the one that does not hold the lock leaves the home alone.
    root = tmp_path / "home"
    root.mkdir()
    lock = _HomeLock(root / "node.lock")
    lock.acquire()
    try:
        with pytest.raises(NodeRunning, match="another node is already running"):
            Node(root, port=0).open()
        assert not NodeHome(root).exists()
        assert not NodeHome(root).password_file.exists()
    finally:
        lock.release()


def test_a_home_below_a_file_is_a_node_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NodeError, match=r"cannot use .* as the node's home"):
        Node(tmp_path / "file" / "home", port=0).open()


@pytest.mark.parametrize("seconds", [0.0, 0.01, 7200.0])
def test_a_block_time_out_of_range_is_refused(tmp_path: Path, seconds: float) -> None:
    # 0 used to mean "the genesis value" without a word.
    with pytest.raises(InputError, match="block time must be between"):
        Node(tmp_path / "home", port=0, block_time_s=seconds).open()
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("host", ["203.0.113.7", "192.0.2.1"])  # TEST-NET: not ours
def test_an_address_of_another_machine_is_an_input_error(host: str) -> None:
    with pytest.raises(InputError, match=f"cannot listen on {host}:0 .*check --host"):
        bind(host, 0)


def test_an_empty_host_is_refused() -> None:
    # "" would listen on every interface, and the banner would show http://:PORT.
    with pytest.raises(InputError, match="--host is empty"):
        bind("", 0)


def test_a_node_that_cannot_write_blocks_stops(start_node: StartNode) -> None:
    node = start_node()
    ledger = node_ledger(node)
    url = node_url(node)
    with ledger._lock:  # the disk is full from now on
        (pages,) = ledger._db.execute("PRAGMA page_count").fetchone()
        ledger._db.execute(f"PRAGMA max_page_count = {pages}")
    height = ledger.height
    for i in range(40):
        try:
            requests.post(url + "/faucet", json={"address": account(f"r{i}").address}, timeout=5)
        except requests.ConnectionError:
            break  # it stopped
    assert node._thread is not None
    node._thread.join(timeout=WAIT_S)
    # It stopped instead of acknowledging transactions that no block would ever hold.
    assert not node._thread.is_alive()
    assert isinstance(node.failure, NodeStateError)
    assert "database or disk is full" in str(node.failure)
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/v1/node/status", timeout=WAIT_S)
    # What it served is what is on disk: nothing of the failed block.
    with sqlite3.connect(NodeHome(node.home_path).db_file) as db:
        (stored,) = db.execute("SELECT MAX(height) FROM blocks").fetchone()
    assert ledger.height == (stored or 0) >= height
