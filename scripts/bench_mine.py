"""Figures for `gonka mine`: duty cycle, mining speed against the engine, time to first commit.

1. Mining. A node runs as its own process (`gonka node start`, a fresh home whose generate
   phase is --generate-blocks blocks of --block-time, and whose validate and inference phases
   last as long together), and `gonka mine --node URL --devices D --json --duration S` mines
   on it. From its `generate_done` events, for every generate phase it saw from start to end:
   - duty cycle: the share of the phase's wall time the device spent computing (the worker
     times each task with the machine-wide monotonic clock);
   - nonces/s: artifacts inserted into the sum tree per second of the phase's wall time.
2. Engine benchmark, in the same run. Right after each generate phase, while the miner waits
   for the next one (no inference load is sent, so its device is idle), a fresh process runs
   `compute_artifacts` for the same model and device with the batch size the worker uses
   (`choose_batch_size`), on consecutive chunks of the size the miner settles on, for
   --engine-s seconds. Each whole generate phase is compared with the engine runs just before
   and just after it: this machine's speed drifts by 10-20% from minute to minute, so only
   measurements minutes apart would otherwise be compared.
3. Time to first commit. `gonka mine --devnet --json` on a fresh GONKA_HOME (the config file
   only points the devnet profile at a free port): it starts the embedded node, creates the
   wallet (Argon2id at the keystore's real cost) and funds it, starts the worker, and mines.
   The time from launching the command to each start-up event and to the first commit the
   node acknowledged, over --fresh-runs runs.

    python scripts/bench_mine.py [--devices cpu] [--engine-s 10] [--duration 170]
    python scripts/bench_mine.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from gonka_cli.node.epochs import NetworkParams
from gonka_cli.node.genesis import ChainParams, init_home

ENGINE = r"""
import sys, time
from gonka_cli.compute.models import load_model
from gonka_cli.compute.poc import choose_batch_size, compute_artifacts, PocInputParams
model_name, device, seconds, chunk = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
model = load_model(model_name, device=device)
params = PocInputParams.for_model(model.spec)
batch = choose_batch_size(model, params.seq_len)
pk, seed = "02" + "11" * 32, "AB" * 32
compute_artifacts(model, seed, pk, range(chunk), params=params, batch_size=batch)  # warm-up
n, started = chunk, time.perf_counter()
while time.perf_counter() - started < seconds:
    compute_artifacts(model, seed, pk, range(n, n + chunk), params=params, batch_size=batch)
    n += chunk
print((n - chunk) / (time.perf_counter() - started), batch)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_rate(model: str, device: str, seconds: float, chunk: int) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", ENGINE, model, device, str(seconds), str(chunk)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), int(out[1])


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/v1/identity", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise SystemExit(f"nothing answers at {url}")


def run_json(
    cmd: list[str],
    env: dict[str, str],
    timeout_s: float,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run a `--json` gonka command; its events, each with `wall_s` since the launch."""
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    events = []
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        event["wall_s"] = time.monotonic() - started
        events.append(event)
        if on_event is not None:
            on_event(event)
    _, err = proc.communicate(timeout=timeout_s)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:5])} failed ({proc.returncode}): {err}")
    return events


def mining_run(
    args: argparse.Namespace, work: Path, device: str, chunk: int
) -> tuple[list[dict[str, Any]], dict[int, float]]:
    """The miner's events, and the engine's nonces/s measured right after each generate phase
    (keyed by that phase's epoch)."""
    home = work / "node"
    params = NetworkParams(
        epoch_blocks=args.generate_blocks * 2,
        poc_generate_blocks=args.generate_blocks,
        poc_validate_blocks=max(1, args.generate_blocks // 4),
    )
    init_home(home, params=ChainParams(block_time_s=args.block_time), network=params)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "GONKA_HOME": str(work / "miner-home"),
        "GONKA_KEYRING_PASSWORD": "bench-password",
    }
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gonka_cli",
            "node",
            "start",
            "--home",
            str(home),
            "--port",
            str(port),
        ],
        env={**os.environ, "GONKA_HOME": str(work / "node-home")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engine: dict[int, float] = {}
    try:
        wait_http(url)
        subprocess.run(
            [sys.executable, "-m", "gonka_cli", "wallet", "create", "miner", "--yes", "--json"],
            env=env,
            check=True,
            capture_output=True,
        )

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "generate_done":
                engine[event["epoch"]], _ = engine_rate(args.model, device, args.engine_s, chunk)

        events = run_json(
            [
                sys.executable,
                "-m",
                "gonka_cli",
                "mine",
                "--node",
                url,
                "--devices",
                args.devices,
                "--duration",
                str(args.duration),
                "--json",
            ],
            env,
            args.duration + 120,
            on_event,
        )
        return events, engine
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)


def first_commit_run(args: argparse.Namespace, work: Path) -> dict[str, float]:
    home = work / "home"
    home.mkdir(parents=True)
    port = free_port()
    (home / "config.toml").write_text(f'[networks.devnet]\nrest = ["http://127.0.0.1:{port}"]\n')
    env = {**os.environ, "GONKA_HOME": str(home), "GONKA_KEYRING_PASSWORD": "bench-password"}
    events = run_json(
        [
            sys.executable,
            "-m",
            "gonka_cli",
            "mine",
            "--devnet",
            "--devices",
            args.devices,
            "--duration",
            "25",
            "--json",
        ],
        env,
        240,
    )
    found: dict[str, float] = {}
    for event in events:
        found.setdefault(event["event"], event["wall_s"])
    return {
        k: found[k]
        for k in ("devnet_started", "wallet_created", "registered", "device_ready", "commit")
        if k in found
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="cpu")
    parser.add_argument("--model", default="gonka-tiny")
    parser.add_argument("--engine-s", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=170.0)
    parser.add_argument("--block-time", type=float, default=0.5)
    parser.add_argument("--generate-blocks", type=int, default=40)
    parser.add_argument("--fresh-runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short runs, one fresh start")
    args = parser.parse_args()
    if args.quick:
        args.engine_s, args.duration, args.generate_blocks, args.fresh_runs = 6, 95, 30, 1
    device = "cpu" if args.devices == "cpu" else f"cuda:{args.devices.split(',')[0]}"

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # The chunk the miner settles on: about 0.25 s of compute.
        probe, batch = engine_rate(args.model, device, 3, 64)
        chunk = max(16, int(probe * 0.25))
        events, engine = mining_run(args, work, device, chunk)
        fresh = [first_commit_run(args, work / f"fresh{i}") for i in range(args.fresh_runs)]

    done = {e["epoch"]: e for e in events if e["event"] == "generate_done"}
    phases = [
        p
        for p in done.values()
        if p["full_phase"] and p["epoch"] - 1 in engine and p["epoch"] in engine
    ]
    if not phases:
        raise SystemExit("no whole generate phase between two engine runs: raise --duration")
    print(
        f"model {args.model} on {args.devices}; batch {batch}, chunk {chunk} nonces; "
        f"generate phase {args.generate_blocks} blocks x {args.block_time:g} s"
    )
    print(
        "engine benchmark after each generate phase (nonces/s): "
        + ", ".join(f"epoch {e}: {r:,.0f}" for e, r in sorted(engine.items()))
    )
    print("whole generate phases of gonka mine:")
    print("  epoch  seconds  busy_s  duty_cycle  nonces  nonces/s  engine before/after  ratio")
    ratios = []
    for p in phases:
        before, after = engine[p["epoch"] - 1], engine[p["epoch"]]
        ratio = p["nonces_per_second"] / ((before + after) / 2)
        ratios.append(ratio)
        print(
            f"  {p['epoch']:>5}  {p['seconds']:>7.2f}  {p['busy_s']:>6.2f}  "
            f"{p['duty_cycle']:>10.4f}  {p['nonces']:>6}  {p['nonces_per_second']:>8,.0f}  "
            f"{before:>8,.0f} / {after:<8,.0f}  {ratio:.3f}"
        )
    duty = statistics.mean(p["duty_cycle"] for p in phases)
    print(
        f"mean duty cycle {duty:.4f}; mining/engine {statistics.mean(ratios):.3f} "
        f"(per phase {min(ratios):.3f}-{max(ratios):.3f})"
    )
    print("fresh `gonka mine --devnet` (seconds from launch):")
    for i, run in enumerate(fresh):
        print(f"  run {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in run.items()))
    commits = [r["commit"] for r in fresh if "commit" in r]
    if commits:
        print(
            f"time to first committed artifact: median {statistics.median(commits):.2f} s "
            f"(min {min(commits):.2f}, max {max(commits):.2f})"
        )


if __name__ == "__main__":
    main()
