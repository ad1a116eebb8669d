"""`gonka mine` through faults: kill -9 mid-generate, a node away for 20 s, two miners at once.

Real processes throughout: the miner (`python -m gonka_cli mine`), its device worker, and in
the outage test the node itself. Generate phases are 10 s (100 blocks of 0.1 s) so that a
fault can be placed inside one.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.compute.artifacts import parse_leaf
from gonka_cli.compute.mmr import MMR
from gonka_cli.errors import GonkaError
from gonka_cli.miner.client import NetworkClient
from gonka_cli.node.genesis import ChainParams, init_home
from tests.conftest import StartNode, node_url
from tests.miner.helpers import GNK, MinerProcess, make_wallet, mining_network
from tests.node.helpers import account
from tests.node.test_durability import NodeProcess, free_port

pytestmark = pytest.mark.slow

REQUESTER = account("faults-requester")
HELLO = [{"role": "user", "content": "hi"}]


def long_generate(**changes: Any) -> Any:
    return mining_network(
        epoch_blocks=150, poc_generate_blocks=100, poc_validate_blocks=20, **changes
    )


def wait_for_fresh_generate(miner: MinerProcess, min_left_s: float = 6.0) -> int:
    """The epoch of a generate phase the miner saw start with time to spare; its first commit."""
    event = miner.wait_for(
        lambda: [e for e in miner.of("generate_started") if e["seconds_left"] >= min_left_s],
        timeout=60,
        what="a generate phase with time left",
    )[0]
    epoch = int(event["epoch"])
    miner.wait_for(
        lambda: [e for e in miner.of("commit", epoch=epoch) if e["count"] > 0], 30, "a commit"
    )
    return epoch


def outbox(state_dir: Path) -> list[tuple[str, str, str | None]]:
    db = sqlite3.connect(state_dir / "miner.sqlite")
    try:
        return db.execute("SELECT item_id, state, reason FROM outbox").fetchall()
    finally:
        db.close()


class Requester:
    """Sends chat requests in the background, as users of the network would."""

    def __init__(self, url: str, every_s: float = 0.4) -> None:
        self.client = NetworkClient(url, REQUESTER.key, timeout_s=30)
        self.answers: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._every_s = every_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seed = 0
        while not self._stop.wait(self._every_s):
            seed += 1
            try:
                self.answers.append(
                    self.client.chat("gonka-tiny", HELLO, max_tokens=6, seed=seed, timeout_s=60)
                )
            except GonkaError as exc:
                self.errors.append(str(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=90)


@pytest.fixture
def processes() -> Iterator[list[MinerProcess]]:
    started: list[MinerProcess] = []
    yield started
    for p in started:
        p.stop()


def test_kill_9_mid_generate_loses_nothing(
    start_node: StartNode, gonka_home: Path, processes: list[MinerProcess]
) -> None:
    node = start_node(accounts=[(REQUESTER.address, 1_000 * GNK)], network=long_generate())
    url = node_url(node)
    make_wallet(gonka_home)
    requester = Requester(url)
    first = MinerProcess(gonka_home, "--node", url, "--devices", "cpu")
    processes.append(first)
    state_dir = Path(first.wait_event("registered")["state_dir"])
    epoch = wait_for_fresh_generate(first)
    time.sleep(1.0)
    first.kill9()

    with MMR(state_dir / f"epoch-{epoch}.mmr") as mmr:
        at_kill = mmr.count
        root_at_kill = mmr.root()
    queued = outbox(state_dir)
    assert at_kill > 0

    second = MinerProcess(gonka_home, "--node", url, "--devices", "cpu")
    processes.append(second)
    resumed = second.wait_event("generate_started", epoch=epoch)
    assert resumed["resumed_count"] == at_kill
    accepted = second.wait_event("poc_accepted", timeout=90, epoch=epoch)
    requester.stop()
    second.proc.send_signal(signal.SIGINT)
    second.proc.wait(timeout=60)

    # Every artifact on disk at the kill was committed, and the node weighed them all.
    final = max(e["count"] for e in second.of("commit", epoch=epoch))
    assert final > at_kill
    assert accepted["weight"] == final
    record = NetworkClient(url).epoch_record(epoch)
    mine = [r for r in record["poc_results"] if r["status"] == "valid"]
    assert [r["weight"] for r in mine] == [final]
    with MMR(state_dir / f"epoch-{epoch}.mmr") as mmr:
        mmr.verify_integrity()
        assert mmr.root_at(at_kill) == root_at_kill  # the restart appended, never rewrote
        nonces = [parse_leaf(mmr.leaf(i))[0] for i in range(mmr.count)]
    assert len(set(nonces)) == len(nonces)

    # Every result queued at the kill was delivered after the restart (or refused, with why).
    after = {item_id: (state, reason) for item_id, state, reason in outbox(state_dir)}
    for item_id, _, _ in queued:
        state, reason = after[item_id]
        assert state == "acked" or (state == "rejected" and reason), (item_id, state)
    assert not [i for i, (s, _) in after.items() if s == "pending"]
    assert requester.answers, requester.errors


def test_the_node_gone_for_20_s_mid_epoch(
    tmp_path: Path, gonka_home: Path, processes: list[MinerProcess]
) -> None:
    home = tmp_path / "node"
    init_home(home, params=ChainParams(block_time_s=0.1), network=long_generate())
    port = free_port()
    node = NodeProcess(home, tmp_path / "node-gonka-home", port=port)
    try:
        make_wallet(gonka_home)
        miner = MinerProcess(gonka_home, "--node", node.url, "--devices", "cpu")
        processes.append(miner)
        epoch = wait_for_fresh_generate(miner)
        # At once (a graceful stop lets open long polls finish, and blocks go on meanwhile).
        node.kill9()
        before = max(e["count"] for e in miner.of("commit", epoch=epoch))
        miner.wait_event("node_unreachable", timeout=10)
        time.sleep(20)
        assert miner.proc.poll() is None  # still running, retrying
        node = NodeProcess(home, tmp_path / "node-gonka-home", port=port)
        miner.wait_event("node_reachable", timeout=30)
        # The chain made no block while it was away: the same generate phase goes on, and
        # what the miner computed meanwhile is committed.
        later = miner.wait_for(
            lambda: [e for e in miner.of("commit", epoch=epoch) if e["count"] > before],
            30,
            "a commit after the outage",
        )
        assert later
        accepted = miner.wait_event("poc_accepted", timeout=90, epoch=epoch)
        miner.proc.send_signal(signal.SIGINT)
        miner.proc.wait(timeout=60)
        miner._reader.join(timeout=5)
    finally:
        node.stop()
    summary = miner.events[-1]
    assert summary["event"] == "summary"
    assert summary["rejected"] == 0, summary["rejections"]
    assert summary["outbox_pending"] == 0
    final = max(e["count"] for e in miner.of("commit", epoch=epoch))
    assert accepted["weight"] == final


def test_two_miners_share_one_node(
    start_node: StartNode, gonka_home: Path, processes: list[MinerProcess]
) -> None:
    node = start_node(
        accounts=[(REQUESTER.address, 1_000 * GNK)],
        network=mining_network(validation_share=1.0, inference_timeout_s=15.0),
    )
    url = node_url(node)
    make_wallet(gonka_home, "alpha")
    make_wallet(gonka_home, "beta")
    miners = [
        MinerProcess(
            gonka_home,
            "--node",
            url,
            "--wallet",
            name,
            "--devices",
            "cpu",
            "--duration",
            "32",
            # Two miners share this machine's cores: one torch thread each.
            env={"OMP_NUM_THREADS": "1"},
        )
        for name in ("alpha", "beta")
    ]
    processes.extend(miners)

    # Requests go to participants in proportion to 1 + their last accepted weight: wait until
    # both have some in one same epoch, so that both get a share.
    def weighed_together() -> set[int]:
        first, second = ({e["epoch"] for e in m.of("poc_accepted")} for m in miners)
        return first & second

    miners[0].wait_for(weighed_together, 60, "both miners accepted in one epoch")
    client = NetworkClient(url, REQUESTER.key, timeout_s=60)
    for seed in range(16):
        client.chat("gonka-tiny", HELLO, max_tokens=6, seed=seed)
    summaries = [m.finish() for m in miners]
    dirs = [Path(m.of("registered")[0]["state_dir"]) for m in miners]

    # Both earned weight in one same epoch, each for its own artifacts.
    epochs = [{e["epoch"]: e["weight"] for e in m.of("poc_accepted")} for m in miners]
    common = sorted(set(epochs[0]) & set(epochs[1]))
    assert common, epochs
    epoch = common[-1]  # the miners keep the MMRs of their last epochs only
    leaves = []
    for directory in dirs:
        assert (directory / f"epoch-{epoch}.mmr").exists()
        with MMR(directory / f"epoch-{epoch}.mmr") as mmr:
            leaves.append([parse_leaf(mmr.leaf(i)) for i in range(mmr.count)])
    for found, weights in zip(leaves, epochs, strict=True):
        nonces = [n for n, _ in found]
        assert len(set(nonces)) == len(nonces)  # no nonce computed twice
        assert weights[epoch] <= len(found)
    # The same nonce number gives each miner a different artifact (its key is in the seed),
    # so neither did work the other could have claimed.
    vectors = [{n: v for n, v in found} for found in leaves]
    shared = set(vectors[0]) & set(vectors[1])
    assert shared
    assert all(vectors[0][n] != vectors[1][n] for n in shared)

    # The inference work was shared, and each answer replayed by the other miner.
    tasks = [s["inference_tasks"] for s in summaries]
    assert sum(tasks) == 16 and min(tasks) > 0, tasks
    assert sum(s["validations"] for s in summaries) > 0
    assert all(s["rejected"] == 0 for s in summaries), [s["rejections"] for s in summaries]
