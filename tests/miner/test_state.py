"""The miner's durable state: outbox, commits, nonce reservations, the lock, crashes."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gonka_cli.errors import MinerError
from gonka_cli.miner.state import ACKED, PENDING, REJECTED, MinerState


@pytest.fixture
def state(tmp_path: Path) -> MinerState:
    s = MinerState(tmp_path / "state")
    yield s
    s.close()


def test_nonce_ranges_never_repeat_within_a_run(state: MinerState) -> None:
    ranges = [state.reserve_nonces(3, n) for n in (16, 700, 1, (1 << 16) + 5, 16)]
    seen: set[int] = set()
    for r in ranges:
        assert not seen & set(r)
        seen |= set(r)
    assert ranges[0].start == 0 and ranges[1].start == 16
    assert state.reserve_nonces(4, 10) == range(0, 10)  # each epoch has its own nonces


def test_nonce_ranges_never_repeat_after_a_restart(tmp_path: Path) -> None:
    s = MinerState(tmp_path / "state")
    handed = s.reserve_nonces(1, 100)
    s.close()
    s = MinerState(tmp_path / "state")
    again = s.reserve_nonces(1, 100)
    s.close()
    # Right after what was handed out: a restart leaves no gap that would make the epoch's
    # nonces too sparse for the network's porosity check.
    assert again.start == handed.stop


def test_nonces_reserved_before_a_kill_9_are_not_handed_out_again(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from gonka_cli.miner.state import MinerState\n"
        "s = MinerState(Path(sys.argv[1]))\n"
        "last = 0\n"
        "for _ in range(5000):\n"
        "    last = s.reserve_nonces(7, 97).stop\n"
        "print(last, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "state")], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL
    handed_until = int(proc.stdout)
    s = MinerState(tmp_path / "state")  # the lock died with the process
    try:
        assert s.reserve_nonces(7, 10).start == handed_until
    finally:
        s.close()


def test_the_latest_commit_is_pending_until_acknowledged(state: MinerState) -> None:
    assert state.pending_commit() is None
    state.record_commit(2, "gonka-tiny", 100, "aa" * 32)
    state.record_commit(2, "gonka-tiny", 50, "bb" * 32)  # never goes down
    pending = state.pending_commit()
    assert pending is not None and (pending.epoch, pending.count, pending.root) == (
        2,
        100,
        "aa" * 32,
    )
    state.commit_acked(2, 100)
    assert state.pending_commit() is None
    state.record_commit(2, "gonka-tiny", 180, "cc" * 32)
    record = state.pending_commit()
    assert record is not None and (record.count, record.acked_count) == (180, 100)
    state.record_commit(3, "gonka-tiny", 10, "dd" * 32)
    assert state.pending_commit().epoch == 3  # the newest epoch first
    state.commit_closed(3, "the generate phase ended")
    state.commit_closed(2, "the generate phase ended")
    assert state.pending_commit() is None
    assert state.commit_of(2).acked_count == 100


def test_results_are_kept_until_acknowledged_or_refused(state: MinerState) -> None:
    assert state.add_result("a", "inference", 1, {"tokens": [1, 2]})
    assert state.add_result("b", "poc_proof", 1, {"answers": []})
    assert not state.add_result("a", "inference", 1, {"tokens": [9]})  # the first one stays
    pending = state.pending_results()
    assert [(e.item_id, e.body) for e in pending] == [
        ("a", {"tokens": [1, 2]}),
        ("b", {"answers": []}),
    ]
    state.result_attempted("a")
    state.result_done("a", ACKED)
    state.result_done("b", REJECTED, "the validate phase of epoch 1 is over")
    assert state.pending_results() == []
    assert state.outbox_counts() == {PENDING: 0, ACKED: 1, REJECTED: 1}
    rows = {r["item_id"]: r for r in state.outbox_rows()}
    assert rows["a"]["attempts"] == 1
    assert rows["b"]["reason"] == "the validate phase of epoch 1 is over"
    assert state.has_result("a") and not state.has_result("c")


def test_prune_drops_old_epochs_but_never_pending_results(state: MinerState) -> None:
    for epoch in range(6):
        state.artifacts_path(epoch).write_bytes(b"x")
        state.add_result(f"r{epoch}", "inference", epoch, {})
        state.result_done(f"r{epoch}", ACKED)
    state.add_result("old-pending", "inference", 0, {})
    (state.directory / "epoch-1.mmr").write_bytes(b"x")  # an earlier version's store
    state.prune(5)
    assert sorted(p.name for p in state.directory.glob("epoch-*")) == [
        "epoch-3.smst",
        "epoch-4.smst",
        "epoch-5.smst",
    ]
    assert {r["item_id"] for r in state.outbox_rows()} == {"r3", "r4", "r5", "old-pending"}


def test_prune_keeps_an_epoch_whose_verdict_is_awaited(state: MinerState) -> None:
    for epoch in range(6):
        state.artifacts_path(epoch).write_bytes(b"x")
        state.record_commit(epoch, "gonka-tiny", 10, "ab" * 32)
        state.commit_acked(epoch, 10)
    state.prune(5, keep={1})
    assert sorted(p.name for p in state.directory.glob("epoch-*")) == [
        "epoch-1.smst",
        "epoch-3.smst",
        "epoch-4.smst",
        "epoch-5.smst",
    ]
    assert state.acked_epochs() == [1, 3, 4, 5]


def test_one_miner_per_state_directory(state: MinerState) -> None:
    with pytest.raises(MinerError, match="another gonka mine is already running with this wallet"):
        MinerState(state.directory)


def test_a_corrupt_state_file_says_what_to_do(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    (directory / "miner.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(MinerError, match=r"is unreadable .* move it away to start afresh"):
        MinerState(directory)
    # The failed open left no lock behind.
    (directory / "miner.sqlite").unlink()
    MinerState(directory).close()


def test_kill_9_while_writing_leaves_whole_rows(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from gonka_cli.miner.state import MinerState\n"
        "s = MinerState(Path(sys.argv[1]))\n"
        "i = 0\n"
        "while True:\n"
        "    s.add_result(f'item-{i}', 'inference', 1, {'tokens': list(range(200)), 'i': i})\n"
        "    if i == 50: print('going', flush=True)\n"
        "    i += 1\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "going"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    db = sqlite3.connect(tmp_path / "state" / "miner.sqlite")
    rows = db.execute("SELECT item_id, body FROM outbox").fetchall()
    db.close()
    assert len(rows) > 50
    for item_id, body in rows:
        data = json.loads(body)
        assert item_id == f"item-{data['i']}" and data["tokens"] == list(range(200))
    s = MinerState(tmp_path / "state")
    try:
        assert len(s.pending_results(limit=10_000)) == len(rows)
    finally:
        s.close()
