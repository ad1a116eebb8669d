"""`gonka bench run` and `compare` through the CLI, on the CPU with gonka-tiny.

One quick run (JSON and --save) is shared by the tests of this module; the others run
smaller pieces (an interrupted run, a model that does not fit) or the core directly.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from gonka_cli import __version__
from gonka_cli.bench.devices import _cpu_model
from gonka_cli.bench.results import RUN_SCHEMA
from gonka_cli.bench.runner import BenchConfig, Progress, plan_models, run_bench
from gonka_cli.bench.steps import poc as poc_steps
from gonka_cli.cli.bench import _render_run
from gonka_cli.cli.main import app
from gonka_cli.compute.models import MODELS, clear_model_cache
from gonka_cli.compute.poc import poc_flops
from tests.conftest import StartNode, dead_url, node_url

cli = CliRunner()
QUICK = ["bench", "run", "--quick", "--devices", "cpu", "--models", "gonka-tiny", "--offline"]


def gonka(*args: str, env: dict[str, str] | None = None) -> Result:
    return cli.invoke(app, list(args), env=env)


def error_line(result: Result, exit_code: int) -> str:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One GONKA_HOME for the module, so gonka-tiny is exported to ONNX once."""
    return tmp_path_factory.mktemp("bench-home")


@pytest.fixture(scope="module")
def quick_run(home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    saved = tmp_path_factory.mktemp("saved") / "quick.json"
    env = {"GONKA_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}
    result = gonka(*QUICK, "--json", "--save", str(saved), env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return {"result": result, "data": json.loads(result.stdout), "saved": saved}


@pytest.fixture
def data(quick_run: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(quick_run["data"]))  # a copy each test may change


def test_the_result_object(data: dict[str, Any], quick_run: dict[str, Any]) -> None:
    assert list(data) == [
        "schema",
        "gonka_version",
        "created_at",
        "duration_s",
        "quick",
        "complete",
        "software",
        "devices",
        "kernels",
        "poc",
        "inference",
        "replay",
        "correctness",
        "share",
        "notes",
    ]
    assert data["schema"] == RUN_SCHEMA == "gonka.bench.run/1"
    assert data["gonka_version"] == __version__
    created = dt.datetime.fromisoformat(data["created_at"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 600
    assert data["duration_s"] > 0
    assert (data["quick"], data["complete"]) == (True, True)
    import onnxruntime
    import torch

    assert data["software"]["torch"] == torch.__version__
    assert data["software"]["onnxruntime"] == onnxruntime.__version__
    assert data["software"]["torch_threads"] == torch.get_num_threads()
    assert data["devices"] == [
        {
            "id": "cpu",
            "kind": "cpu",
            "name": _cpu_model() or "CPU",
            "torch_device": "cpu",
            "memory_total_bytes": psutil.virtual_memory().total,
            "known_card": None,
            "pcie_peak_gbps": None,
        }
    ]
    # --json: the one object on stdout, no progress lines on stderr; --save: the same object.
    assert "[1/" not in quick_run["result"].stderr
    assert json.loads(quick_run["saved"].read_text()) == quick_run["data"]


def check_measurement(row: dict[str, Any], reps: int) -> None:
    assert row["reps"] == reps
    assert 0 < row["min"] <= row["median"] <= row["max"]
    spread = 100 * (row["max"] - row["min"]) / row["median"]
    assert row["spread_percent"] == pytest.approx(spread, rel=1e-3, abs=0.01)


def test_kernels(data: dict[str, Any]) -> None:
    matmul, bandwidth = data["kernels"]
    assert {k: matmul[k] for k in ("device", "kernel", "dtype", "problem", "unit", "status")} == {
        "device": "cpu",
        "kernel": "matmul",
        "dtype": "fp32",
        "problem": "n=1024",
        "unit": "GFLOP/s",
        "status": "ok",
    }
    check_measurement(matmul, reps=5)
    # The CPU is in no datasheet table: no percentage.
    assert (matmul["peak"], matmul["percent_of_peak"], matmul["peak_source"]) == (None,) * 3
    assert (bandwidth["kernel"], bandwidth["dtype"], bandwidth["unit"]) == (
        "memory_bandwidth",
        None,
        "GB/s",
    )
    assert bandwidth["problem"] == "128 MiB"
    check_measurement(bandwidth, reps=5)


def test_poc_rows(data: dict[str, Any]) -> None:
    rows = {r["backend"]: r for r in data["poc"]}
    assert list(rows) == ["torch", "onnxruntime"]
    flops = poc_flops(MODELS["gonka-tiny"], 32)
    for backend, row in rows.items():
        assert (row["device"], row["model"], row["status"], row["reason"]) == (
            "cpu",
            "gonka-tiny",
            "ok",
            "",
        )
        assert (row["precision"], row["seq_len"]) == ("fp32", 32)
        sizes = [p["batch_size"] for p in row["curve"]]
        # How far the sweep goes depends on the machine's speed: a prefix of the candidates.
        assert sizes and sizes == [1, 2, 4, 8, 16][: len(sizes)]
        assert row["batch_size"] in sizes
        for point in row["curve"]:
            assert point["items_per_second"] == pytest.approx(
                point["batch_size"] / point["seconds_per_batch"], rel=1e-4
            )
        assert row["sweep_stopped"] in (
            "swept every candidate",
            "throughput flat for 2 sizes",
            "time budget of 4 s spent",
        )
        assert row["nonces_per_minute"] == pytest.approx(60 * row["nonces_per_second"], rel=1e-4)
        assert row["gflops_per_second"] == pytest.approx(
            row["nonces_per_second"] * flops / 1e9, rel=1e-4
        )
        assert row["reps"] >= 3 and row["spread_percent"] >= 0
        assert row["provider"] == (None if backend == "torch" else "CPUExecutionProvider")
    # gonka mine uses the faster of the two.
    faster = max(rows.values(), key=lambda r: r["nonces_per_second"])
    assert [r["used_by_mine"] for r in rows.values()] == [r is faster for r in rows.values()]


def test_inference_and_replay(data: dict[str, Any]) -> None:
    assert [
        (r["batch_size"], r["prompt_tokens"], r["decode_tokens"]) for r in data["inference"]
    ] == [
        (1, 64, 16),
        (8, 64, 16),
    ]
    for row in data["inference"]:
        assert (row["device"], row["model"], row["status"], row["reps"]) == (
            "cpu",
            "gonka-tiny",
            "ok",
            2,
        )
        assert row["prefill_tokens_per_second"] > 0 and row["decode_tokens_per_second"] > 0
    (replay,) = data["replay"]
    assert (replay["model"], replay["status"], replay["tokens"], replay["passed"]) == (
        "gonka-tiny",
        "ok",
        32,
        True,
    )
    # The same model on the same device replays its own answer almost exactly.
    assert replay["similarity"] > 0.999
    ratio = replay["generate_tokens_per_second"] / replay["replay_tokens_per_second"]
    assert replay["replay_over_generate"] == pytest.approx(ratio, rel=1e-4)


def test_correctness_and_share(data: dict[str, Any]) -> None:
    assert [(r["backend"], r["status"]) for r in data["correctness"]] == [
        ("torch", "PASS"),
        ("onnxruntime", "PASS"),
    ]
    for row in data["correctness"]:
        assert (row["nonces"], row["mismatches"], row["threshold"]) == (8, 0, 0.15)
        assert 0 <= row["worst_distance"] < 0.01
        assert row["reason"] == "all 8 artifacts within 0.15 of the CPU fp32 reference"
    assert data["share"] == {
        "status": "unknown",
        "reason": "no node was asked (offline)",
        "model": "gonka-tiny",
        "nonces_per_minute": max(r["nonces_per_minute"] for r in data["poc"]),
        "generate_phase_s": None,
        "weight": None,
        "network_total_weight": None,
        "participants": None,
        "epoch": None,
        "share_percent": None,
        "node_url": None,
    }


def test_the_results_for_people(data: dict[str, Any]) -> None:
    buffer = io.StringIO()
    _render_run(Console(file=buffer, width=120, no_color=True), data)
    text = buffer.getvalue()
    lines = text.splitlines()
    assert lines[0].startswith("gonka bench run --quick: ")
    assert lines[1] == f"cpu: {_cpu_model() or 'CPU'} (not in the table of known cards)"
    for title in ("Kernels", "PoC", "Batch-size sweeps", "Inference", "Replay", "Correctness"):
        assert any(line.startswith(title) for line in lines), title
    mine = next(r for r in data["poc"] if r["used_by_mine"])
    assert lines[-1].startswith(f"gonka mine on cpu with gonka-tiny: {mine['backend']}, batch ")
    assert "Estimated share: unknown; no node was asked (offline)" in lines
    assert text.count("PASS") == 2


def test_saved_runs_compare(quick_run: dict[str, Any], tmp_path: Path) -> None:
    a = quick_run["saved"]
    data = json.loads(a.read_text())
    for row in data["poc"]:
        row["nonces_per_minute"] *= 2
    data["share"]["nonces_per_minute"] *= 2
    data["kernels"][0]["unit"] = "TFLOP/s"  # the same rate, in other units
    data["kernels"][0]["median"] /= 1000
    data["correctness"][1]["status"] = "FAIL"
    b = tmp_path / "b.json"
    b.write_text(json.dumps(data))
    result = gonka("bench", "compare", str(a), str(b), "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["schema"] == "gonka.bench.compare/1"
    assert out["a"]["file"] == str(a) and out["b"]["file"] == str(b)
    assert out["a"]["devices"] == [f"cpu: {_cpu_model() or 'CPU'}"]
    rows = {(r["section"], r["metric"]): r for r in out["rows"]}
    assert rows["kernels", "cpu matmul fp32"]["ratio"] == pytest.approx(1.0, rel=1e-4)
    assert rows["kernels", "cpu matmul fp32"]["unit"] == "GFLOP/s"
    assert rows["kernels", "cpu memory bandwidth"]["ratio"] == 1.0
    assert rows["poc", "cpu gonka-tiny torch"]["ratio"] == pytest.approx(2.0, rel=1e-4)
    assert rows["poc", "cpu gonka-tiny onnxruntime"]["unit"] == "nonces/min"
    assert rows["inference", "cpu gonka-tiny batch 8 decode"]["ratio"] == 1.0
    assert rows["replay", "cpu gonka-tiny replay"]["ratio"] == 1.0
    check = rows["correctness", "cpu gonka-tiny onnxruntime"]
    assert (check["a"], check["b"], check["ratio"]) == ("PASS", "FAIL", None)
    assert rows["share", "nonces_per_minute"]["ratio"] == pytest.approx(2.0, rel=1e-4)
    assert len(rows) == 2 + 2 + 4 + 1 + 2 + 1

    people = gonka("bench", "compare", str(a), str(b))
    assert people.exit_code == 0, people.stderr
    assert people.stdout.splitlines()[0].startswith(f"A: {a}, ")
    line = next(x for x in people.stdout.splitlines() if "cpu gonka-tiny torch" in x)
    assert line.split()[-1] == "2.00x"


def test_runs_from_other_machines_line_up(data: dict[str, Any], tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(data))
    data["poc"] = [r for r in data["poc"] if r["backend"] == "torch"]
    data["inference"] = []
    b.write_text(json.dumps(data))
    out = json.loads(gonka("bench", "compare", str(a), str(b), "--json").stdout)
    rows = {(r["section"], r["metric"]): r for r in out["rows"]}
    onnx = rows["poc", "cpu gonka-tiny onnxruntime"]
    assert onnx["a"] > 0 and onnx["b"] is None and onnx["ratio"] is None
    assert rows["inference", "cpu gonka-tiny batch 1 prefill"]["b"] is None


def test_compare_refuses_what_is_not_a_saved_run(quick_run: dict[str, Any], tmp_path: Path) -> None:
    good = str(quick_run["saved"])
    cases: list[tuple[str, str]] = [
        ("missing.json", "does not exist; save a run with gonka bench run --save FILE"),
        ("text.json", "is not JSON (line 1): not a saved benchmark"),
        ("list.json", "is not a saved benchmark (no schema field)"),
        ("devices.json", "holds 'gonka.bench.devices/1', not a saved gonka bench run"),
        (
            "future.json",
            "is a 'gonka.bench.run/2' result; this gonka reads gonka.bench.run/1 (upgrade gonka)",
        ),
        ("bad-rows.json", "is malformed: 'poc' is not a list of objects"),
    ]
    (tmp_path / "text.json").write_text("garbage{")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "devices.json").write_text(json.dumps({"schema": "gonka.bench.devices/1"}))
    run = json.loads(quick_run["saved"].read_text())
    (tmp_path / "future.json").write_text(json.dumps({**run, "schema": "gonka.bench.run/2"}))
    (tmp_path / "bad-rows.json").write_text(json.dumps({**run, "poc": {"torch": 1}}))
    for name, message in cases:
        path = tmp_path / name
        line = error_line(gonka("bench", "compare", good, str(path)), 2)
        assert line.startswith(f"Error: {path} ") and line.endswith(message), line
    line = error_line(gonka("bench", "compare", str(tmp_path), good), 2)
    assert line == f"Error: {tmp_path} is a directory, not a saved benchmark"


def test_unknown_devices_and_models() -> None:
    line = error_line(gonka("bench", "run", "--devices", "7", "--offline"), 2)
    assert line.startswith("Error: no GPU 7: ")
    assert line.endswith(("use --devices cpu", "(gonka bench devices lists them)"))
    line = error_line(gonka("bench", "run", "--devices", "gpu", "--offline"), 2)
    assert line == (
        "Error: invalid --devices 'gpu': use GPU indices like 0,1 (see gonka bench devices) or cpu"
    )
    line = error_line(gonka("bench", "run", "--models", "gonka-huge", "--offline"), 2)
    assert line.startswith("Error: unknown model 'gonka-huge'; known models: gonka-tiny, ")
    line = error_line(gonka("bench", "run", "--quick", "--save", "/nonexistent/dir/x.json"), 2)
    assert line == "Error: cannot save to /nonexistent/dir/x.json: its directory does not exist"


def test_quick_runs_the_two_smallest_models() -> None:
    assert plan_models(BenchConfig(quick=True)) == ["gonka-tiny", "gonka-small"]
    assert plan_models(BenchConfig()) == list(MODELS)
    # Named models run smallest first, once each.
    config = BenchConfig(models=("gonka-small", "gonka-tiny", "gonka-small"))
    assert plan_models(config) == ["gonka-tiny", "gonka-small"]


def test_ctrl_c_keeps_what_was_measured(
    monkeypatch: pytest.MonkeyPatch, home: Path, tmp_path: Path
) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(poc_steps, "poc_step", interrupted)
    saved = tmp_path / "partial.json"
    result = gonka(*QUICK, "--json", "--save", str(saved), env={"GONKA_HOME": str(home)})
    assert result.exit_code == 130, (result.stdout, result.stderr)
    assert result.stderr.splitlines()[-1] == "Interrupted."
    data = json.loads(result.stdout)
    assert data["complete"] is False
    assert [k["kernel"] for k in data["kernels"]] == ["matmul", "memory_bandwidth"]
    assert data["poc"] == data["inference"] == data["correctness"] == []
    assert data["share"]["reason"] == "the run was interrupted"
    assert json.loads(saved.read_text()) == data


def test_ctrl_c_in_a_real_process(home: Path) -> None:
    """SIGINT while the PoC sweep runs: the partial table, then exit 130."""
    import os
    import signal
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("GONKA_")}
    env.update({"GONKA_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "gonka_cli", *QUICK],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "PoC batch sweep on torch" in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (seen, out, err)
    assert err.splitlines()[-1] == "Interrupted."
    lines = out.splitlines()
    assert "(interrupted: partial results)" in lines[0]
    assert any(line.startswith("Kernels") for line in lines)
    assert not any(line.startswith("Correctness") for line in lines)


def test_a_model_too_large_is_skipped(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    from gonka_cli.compute import models

    clear_model_cache()
    monkeypatch.setattr(models, "free_memory_bytes", lambda device: 1_000_000)
    try:
        result = gonka(*QUICK, "--json", env={"GONKA_HOME": str(home)})
    finally:
        clear_model_cache()
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    reason = data["poc"][0]["reason"]
    assert reason.startswith("gonka-tiny needs about ")
    assert reason.endswith(" GB are free; use a smaller model or a 16-bit dtype, or free memory")
    assert [(r["backend"], r["status"], r["reason"]) for r in data["poc"]] == [
        ("torch", "skipped", reason),
        ("onnxruntime", "skipped", reason),
    ]
    assert [(r["status"], r["reason"]) for r in data["inference"]] == [("skipped", reason)] * 2
    assert [(r["status"], r["reason"]) for r in data["replay"]] == [("skipped", reason)]
    assert [r["status"] for r in data["correctness"]] == ["SKIPPED", "SKIPPED"]
    assert data["share"]["reason"] == "no PoC rate was measured"
    assert data["share"]["weight"] is None
    assert data["share"]["nonces_per_minute"] is None


# --- the share, against a stand-in for a node's participants endpoint ---------------------


class _Participants(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, Any]]] = {}

    def do_GET(self) -> None:
        status, body = self.answers.get(self.path, (404, {"code": 5, "message": "not found"}))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Participants)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


PATH = "/v1/epochs/current/participants"


def test_share_from_a_node(node: str, monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("GONKA_HOME", str(home))
    _Participants.answers = {
        PATH: (
            200,
            {
                "participants": [
                    {"address": "gonka1a", "weight": 900_000},
                    {"address": "gonka1b", "weight": "100000"},
                ]
            },
        )
    }
    events: list[Progress] = []
    config = BenchConfig(
        devices=("cpu",),
        models=("gonka-tiny",),
        quick=True,
        kernels=False,
        backends=("torch",),
        inference=False,
        correctness=False,
        share_urls=(dead_url(), node),
    )
    result = run_bench(config, events.append)
    assert [e.description for e in events] == [
        "gonka-tiny on cpu: building the model",
        "gonka-tiny on cpu: PoC batch sweep on torch",
        "gonka-tiny: releasing memory",
        "estimating the share",
        "done",
    ]
    assert [(e.step, e.total, e.done) for e in events] == [
        (1, 4, False),
        (2, 4, False),
        (3, 4, False),
        (4, 4, False),
        (4, 4, True),
    ]
    (row,) = result.poc
    share = result.share
    # Weights count the nonces of a generate phase; this node does not say how long one lasts,
    # so the rate per minute is not compared with them.
    assert share is not None and share.status == "unknown"
    assert share.reason == (
        f"{node} does not say how long its PoC generate phase lasts (GET /v1/epochs/current): "
        "weights count the nonces of one generate phase, so nonces per minute cannot be "
        "compared with them"
    )
    assert share.nonces_per_minute == row.nonces_per_minute
    assert (share.weight, share.share_percent, share.generate_phase_s) == (None, None, None)
    assert (share.network_total_weight, share.participants, share.node_url) == (
        1_000_000,
        2,
        node,
    )
    assert result.kernels == () and result.correctness == ()


def test_share_parsing() -> None:
    from gonka_cli.bench.share import parse_participants

    gonka_shape = {
        "active_participants": {
            "participants": [{"index": "gonka1a", "weight": 10}, {"index": "gonka1b", "weight": 5}],
            "epoch_group_id": 42,
        }
    }
    parsed = parse_participants(gonka_shape, "http://n")
    assert (parsed.total_weight, parsed.participants, parsed.epoch) == (15, 2, 42)
    with_total = {"participants": [{"weight": 1}], "total_weight": "7", "epoch": 3}
    assert parse_participants(with_total, "http://n").total_weight == 7
    # gonka node's answer (docs/protocol.md): the weights belong to `weight_epoch`.
    node_shape = {
        "epoch": 9,
        "weight_epoch": 8,
        "total_weight": 1500,
        "participants": [
            {"address": "gonka1a", "weight": 1000, "weight_epoch": 8, "commit": None},
            {"address": "gonka1b", "weight": 500, "weight_epoch": 8, "commit": None},
        ],
    }
    parsed = parse_participants(node_shape, "http://n")
    assert (parsed.total_weight, parsed.participants, parsed.epoch) == (1500, 2, 8)
    for bad in (
        [],
        {"participants": "x"},
        {"participants": [{"w": 1}]},
        {"participants": [{"weight": -1}]},
        {"participants": [{"weight": "1.5"}]},
        {"participants": [{"weight": True}]},
    ):
        with pytest.raises(ValueError):
            parse_participants(bad, "http://n")


def test_share_is_unknown_without_an_endpoint(node: str) -> None:
    from gonka_cli.bench.share import (
        PocRound,
        WeightUnavailable,
        estimate_share,
        fetch_weight,
        parse_participants,
    )

    _Participants.answers = {}
    with pytest.raises(WeightUnavailable) as missing:
        fetch_weight([node])
    assert str(missing.value) == f"{node}: no {PATH} endpoint (HTTP 404)"
    _Participants.answers = {PATH: (200, {"participants": [{"weight": "lots"}]})}
    with pytest.raises(WeightUnavailable, match="not a participant list"):
        fetch_weight([node])
    dead = dead_url()
    with pytest.raises(WeightUnavailable, match=f"^{dead}: unreachable"):
        fetch_weight([dead])
    rates = {"gonka-tiny": 1200.0}
    estimate = estimate_share(rates, None, None, "the network's weight is unknown: x")
    assert (estimate.status, estimate.reason) == ("unknown", "the network's weight is unknown: x")
    assert (estimate.nonces_per_minute, estimate.weight, estimate.share_percent) == (
        1200.0,
        None,
        None,
    )
    assert estimate_share({}, None, None).reason == "no PoC rate was measured"
    assert estimate_share({"gonka-tiny": 0.0}, None, None).reason == "no PoC rate was measured"
    empty = parse_participants({"weight_epoch": None, "participants": [{"weight": 0}]}, node)
    before = estimate_share(rates, empty, PocRound("gonka-tiny", 40.0))
    assert (before.status, before.network_total_weight, before.share_percent) == (
        "unknown",
        0,
        None,
    )
    assert (
        before.reason
        == "the network has no accepted weight yet (1 participants; no epoch validated)"
    )
    assert not math.isnan(estimate.weight or 0)


def test_share_against_a_real_local_node(start_node: StartNode) -> None:
    from gonka_cli.bench.share import PocRound, estimate_share, fetch_weight

    node = start_node()
    weight = fetch_weight([node_url(node)])
    # A fresh devnet: nobody registered, no epoch validated.
    assert (weight.node_url, weight.participants, weight.total_weight) == (node_url(node), 0, 0)
    estimate = estimate_share({"gonka-tiny": 600.0}, weight, PocRound("gonka-tiny", 120.0))
    assert estimate.status == "unknown"
    assert estimate.reason.startswith("the network has no accepted weight yet")


def test_share_on_a_gonka_node_counts_one_generate_phase(
    node: str, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setenv("GONKA_HOME", str(home))
    _Participants.answers = {
        PATH: (200, {"participants": [{"weight": 5_000}], "total_weight": 5_000}),
        "/v1/epochs/current": (
            200,
            {
                "block_time_s": 1.0,
                "phases": {"generate": {"start_height": 121, "end_height": 160}},
                "poc": {"model": "gonka-tiny"},
            },
        ),
    }
    config = BenchConfig(
        devices=("cpu",),
        models=("gonka-tiny",),
        quick=True,
        kernels=False,
        backends=("torch",),
        inference=False,
        correctness=False,
        share_urls=(node,),
    )
    result = run_bench(config, lambda _e: None)
    (row,) = result.poc
    share = result.share
    assert share is not None and share.status == "estimated" and row.nonces_per_minute
    # The node weighs the nonces of a 40-block, 40 s generate phase: one unit on both sides.
    assert share.weight == pytest.approx(row.nonces_per_minute / 60 * 40)
    assert (share.nonces_per_minute, share.generate_phase_s) == (row.nonces_per_minute, 40.0)
    assert share.reason == (
        f"{share.weight:,.0f} nonces in a 40 s generate phase ({row.nonces_per_minute:,.0f} "
        "nonces/min) against the 1 participants' total weight 5,000"
    )
    assert share.share_percent == pytest.approx(100 * share.weight / (5_000 + share.weight))


def test_share_needs_the_networks_poc_model_measured() -> None:
    from gonka_cli.bench.share import NetworkWeight, PocRound, estimate_share

    network = NetworkWeight("http://n", 5_000, 1, 7)
    rates = {"gonka-tiny": 600.0, "gonka-small": 60.0}
    other = estimate_share(rates, network, PocRound("gonka-1b", 40.0))
    assert (other.status, other.model, other.weight) == ("unknown", "gonka-small", None)
    assert other.reason == (
        "the network's PoC model is gonka-1b, which this run did not measure; "
        "pass --models gonka-1b"
    )
    # The network's model is used even when a larger one was measured.
    tiny = estimate_share(rates, network, PocRound("gonka-tiny", 60.0))
    assert (tiny.status, tiny.model, tiny.weight, tiny.epoch) == (
        "estimated",
        "gonka-tiny",
        600.0,
        7,
    )
    assert tiny.share_percent == pytest.approx(100 * 600 / 5_600)
