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
from gonka_cli.compute.smst import SMST
from gonka_cli.errors import GonkaError
from gonka_cli.node.genesis import ChainParams, init_home
from gonka_cli.protocol import ChatCompletion
from gonka_cli.workclient import WorkClient
from tests.conftest import StartNode, node_url
from tests.miner.helpers import GNK, MinerProcess, make_wallet, mining_network
from tests.node.helpers import account
from tests.node.test_durability import NodeProcess, free_port

# Whole epochs on a busy machine: a generous deadline, as a safety net only.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

REQUESTER = account("faults-requester")
HELLO = [{"role": "user", "content": "hi"}]


def long_generate(generate_blocks: int = 100, **changes: Any) -> Any:
    return mining_network(
        epoch_blocks=generate_blocks + 50,
        poc_generate_blocks=generate_blocks,
        poc_validate_blocks=20,
        **changes,
    )


def wait_for_fresh_generate(miner: MinerProcess, commits: int = 1) -> int:
    """The epoch of a generate phase that began after the miner's device was ready (so it
    computes from the phase's start), as soon as the node has acknowledged `commits` commits
    of it. A phase that gets none (on a busy machine the miner may restart a worker that slowed
    down, and lose the phase) is passed over for the next one."""
    ready = miner.wait_event("device_ready", timeout=120)

    def found() -> tuple[int] | None:
        for started in miner.of("generate_started"):
            epoch = int(started["epoch"])
            acked = [e for e in miner.of("commit", epoch=epoch) if e["count"] > 0]
            if started["t"] > ready["t"] and len(acked) >= commits:
                return (epoch,)
        return None

    # A safety net only: the wait ends on the events.
    (epoch,) = miner.wait_for(
        found, 240, f"{commits} commits in a generate phase begun with the device ready"
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
        self.client = WorkClient(url, REQUESTER.key, timeout_s=30)
        self.answers: list[ChatCompletion] = []
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
    # A generate phase long enough for a restart inside it on a busy machine (25 s), and
    # inference deadlines longer than a restart takes: a refused result can only be a bug.
    node = start_node(
        accounts=[(REQUESTER.address, 1_000 * GNK)],
        network=long_generate(250, inference_timeout_s=60.0, participant_timeout_s=30.0),
    )
    url = node_url(node)
    make_wallet(gonka_home, fund_at=url)
    requester = Requester(url)
    first = MinerProcess(gonka_home, "--node", url, "--devices", "cpu")
    processes.append(first)
    state_dir = Path(first.wait_event("registered")["state_dir"])
    # Mid-phase: once the node has acknowledged two growing counts.
    epoch = wait_for_fresh_generate(first, commits=2)
    first.kill9()

    with SMST(state_dir / f"epoch-{epoch}.smst") as store:
        at_kill = store.count
        root_at_kill = store.root()
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
    second._reader.join(timeout=10)
    summary = second.events[-1]
    assert summary["event"] == "summary"
    assert summary["rejected"] == 0, summary["rejections"]

    # Every artifact on disk at the kill was committed, and the node weighed them all.
    final = max(e["count"] for e in second.of("commit", epoch=epoch))
    assert final > at_kill
    assert accepted["weight"] == final
    record = WorkClient(url).epoch_record(epoch)
    mine = [r for r in record.poc_results if r.status == "valid"]
    assert [r.weight for r in mine] == [final]
    with SMST(state_dir / f"epoch-{epoch}.smst") as store:
        store.verify_integrity()
        assert store.root_at(at_kill) == root_at_kill  # the restart added, never rewrote
        nonces = [parse_leaf(store.leaf(i))[0] for i in range(store.count)]
    assert len(set(nonces)) == len(nonces)

    # Every result queued at the kill, and every one since, was delivered and acknowledged:
    # a refusal is not a delivery. On a slow machine the run can outlast KEEP_EPOCHS, and the
    # miner then prunes finished rows of old epochs (never pending ones): a row that is gone
    # was finished, and the summary's `rejected == 0` above says it was not refused.
    after = {item_id: (state, reason) for item_id, state, reason in outbox(state_dir)}
    for item_id, _, _ in queued:
        assert after.get(item_id, ("acked", None))[0] == "acked", (item_id, after[item_id])
    assert {state for state, _ in after.values()} <= {"acked"}, after
    assert requester.answers, requester.errors


def test_the_node_gone_for_20_s_mid_epoch(
    tmp_path: Path, gonka_home: Path, processes: list[MinerProcess]
) -> None:
    home = tmp_path / "node"
    init_home(home, params=ChainParams(block_time_s=0.1), network=long_generate())
    port = free_port()
    node = NodeProcess(home, tmp_path / "node-gonka-home", port=port)
    try:
        make_wallet(gonka_home, fund_at=node.url)
        miner = MinerProcess(gonka_home, "--node", node.url, "--devices", "cpu")
        processes.append(miner)
        epoch = wait_for_fresh_generate(miner, commits=1)
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
    make_wallet(gonka_home, "alpha", fund_at=url)
    make_wallet(gonka_home, "beta", fund_at=url)
    miners = [
        MinerProcess(
            gonka_home,
            "--node",
            url,
            "--wallet",
            name,
            "--devices",
            "cpu",
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

    # A safety net only: on a busy machine the node's verdicts may lag epochs behind.
    common = miners[0].wait_for(weighed_together, 240, "both miners accepted in one epoch")
    # That epoch's artifacts, read at once: the miners keep the stores of their last epochs only.
    epoch = max(common)
    dirs = [Path(m.of("registered")[0]["state_dir"]) for m in miners]
    leaves = []
    for directory in dirs:
        with SMST(directory / f"epoch-{epoch}.smst") as store:
            leaves.append([parse_leaf(store.leaf(i)) for i in range(store.count)])
    client = WorkClient(url, REQUESTER.key, timeout_s=60)
    for seed in range(16):
        client.chat("gonka-tiny", HELLO, max_tokens=6, seed=seed)
    # Answers are replayed by the other miner: wait until a validation is delivered.
    miners[0].wait_for(
        lambda: sum(len(m.of("result_accepted", kind="validation")) for m in miners) > 0,
        120,
        "a validation",
    )
    for m in miners:
        m.proc.send_signal(signal.SIGTERM)
    summaries = [m.finish() for m in miners]

    # Both earned weight in one same epoch, each for its own artifacts; what each miner was
    # told is what the node recorded.
    epochs = [{e["epoch"]: e["weight"] for e in m.of("poc_accepted")} for m in miners]
    for m, accepted in zip(miners, epochs, strict=True):
        address = m.of("registered")[0]["address"]
        for n, weight in accepted.items():
            record = client.epoch_record(n)
            assert [(r.status, r.weight) for r in record.poc_results if r.address == address] == [
                ("valid", weight)
            ], record
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
