"""The node's mining API under load, and its cost to validate one participant's PoC.

1. Inference dispatch. Starts `gonka node start` as a separate process on 127.0.0.1 (a genesis
   funding one requester per client), registers 100 participants for gonka-tiny, each
   long-polling `GET /v1/work?wait=S` on its own thread and key, and answering every item at
   once with a fixed valid result (instant fake executors and validators: the node alone is
   measured). Then, for 1, 8 and 32 concurrent requesters (threads, keep-alive connections):

   - sends `POST /v1/chat/completions` (escrow at the network's price) and reports completed
     inferences/s, the dispatch latency (the requester's send to the executor's long poll
     returning the item, both read with time.perf_counter in this process) and the
     requester's round trip, p50 and p99;
   - calls the trivial `GET /v1/identity` as many times, for the server's bare requests/s;
   - reads the CPU time of the node, of this process and of every other process (psutil):
     the node's CPU milliseconds per inference and per identity call are the figures that
     other load on the machine disturbs least.

   First with validation_share 0, then (unless --no-validation-run) on a fresh node with the
   default share, validation items answered at once with {passed: true, similarity: 1}. At the
   end every inference record is checked.

2. PoC validation. The node's code path for one participant (default gonka-small, 200
   sampled leaves): on the event loop, parse the proof answers from JSON and run the
   structural checks (sum-tree proofs against the committed root); on the worker thread,
   `validation.validate` (the structural checks again, then the recomputation of the
   sampled nonces with `compute_artifacts` on this CPU, as `PocRound.recompute_artifacts`
   runs it). The commitment holds N leaves; only the sampled ones hold computed artifacts
   unless --all-honest (the node never reads the others, so its work is the same). torch
   uses its default threads, as in the node, unless --torch-threads.

Requests are signed with libsecp256k1 (coincurve: the same RFC 6979, low-S signatures as
`chain.signed_request`, checked at start) and sent over http.client: python-ecdsa alone would
cost this process about 1.4 ms of CPU per inference (three signatures), on the cores the node
runs on.

    python scripts/bench_network.py [--requests 800] [--requesters 1,8,32] [--model gonka-small]
    python scripts/bench_network.py --quick
    python scripts/bench_network.py --no-network --model gonka-tiny --repeats 5 --torch-threads 1
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import coincurve
import psutil  # type: ignore[import-untyped]

from gonka_cli.chain.signed_request import (
    HEADER_ADDRESS,
    HEADER_PUBKEY,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    sign_request,
    signed_bytes,
)
from gonka_cli.crypto.address import address_from_pubkey
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.node.epochs import NetworkParams
from gonka_cli.node.genesis import ChainParams, init_home
from gonka_cli.workclient import WorkClient

GNK = 10**9
MODEL = "gonka-tiny"
CHAT_BODY = json.dumps(
    {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
        "temperature": 0,
    },
    separators=(",", ":"),
).encode()
INFERENCE_ANSWER = json.dumps(
    {"tokens": [65], "top_logprobs": [[{"token": 65, "logprob": -0.1}]], "finish_reason": "length"},
    separators=(",", ":"),
).encode()
VALIDATION_ANSWER = b'{"passed":true,"similarity":1.0}'
JSON_HEADERS = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> str:
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    physical = psutil.cpu_count(logical=False)
    memory = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({physical} physical), {name}, {memory:.1f} GiB; "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"load average {load}"
    )


class Signer:
    """The signed-request headers of one key for one node, signed with libsecp256k1."""

    def __init__(self, key: PrivateKey, receiver: str) -> None:
        self._key = coincurve.PrivateKey(key.to_bytes())
        self._receiver = receiver
        pubkey = key.public_key.to_bytes()
        self.address = address_from_pubkey(pubkey)
        self._fixed = {
            HEADER_ADDRESS: self.address,
            HEADER_PUBKEY: base64.b64encode(pubkey).decode(),
        }

    def headers(self, body: bytes, timestamp_ns: int | None = None) -> dict[str, str]:
        ts = time.time_ns() if timestamp_ns is None else timestamp_ns
        digest = hashlib.sha256(signed_bytes(body, ts, self._receiver)).digest()
        signature = self._key.sign_recoverable(digest, hasher=None)[:64]
        return {
            **self._fixed,
            HEADER_TIMESTAMP: str(ts),
            HEADER_SIGNATURE: base64.b64encode(signature).decode(),
        }


def check_signer(key: PrivateKey, receiver: str) -> None:
    """The fast signer must produce exactly what `sign_request` does."""
    body, ts = CHAT_BODY, time.time_ns()
    if Signer(key, receiver).headers(body, ts) != sign_request(
        key, body, receiver, timestamp_ns=ts, with_pubkey=True
    ):
        raise SystemExit("the libsecp256k1 signer disagrees with chain.signed_request")


class Http:
    """One keep-alive connection to the node."""

    def __init__(self, port: int, timeout_s: float) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)

    def call(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        self._conn.request(method, path, body=body or None, headers=headers or {})
        response = self._conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self._conn.close()


def participant(
    port: int,
    signer: Signer,
    wait_s: float,
    stop: threading.Event,
    received: dict[str, float],
    errors: list[str],
) -> None:
    """Long-poll for work and answer every inference and validation item at once."""
    path = f"/v1/work?wait={wait_s:g}&max=16"
    conn: Http | None = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = Http(port, wait_s + 30)
            status, data = conn.call("GET", path, headers=signer.headers(b""))
            now = time.perf_counter()
            if status != 200:
                errors.append(f"poll {status}: {data[:200]!r}")
                time.sleep(0.05)
                continue
            for item in json.loads(data)["items"]:
                if item["kind"] == "inference":
                    received[item["inference_id"]] = now
                    body = INFERENCE_ANSWER
                elif item["kind"] == "validation":
                    body = VALIDATION_ANSWER
                else:
                    continue  # PoC proof requests: this run commits nothing
                status, data = conn.call(
                    "POST",
                    f"/v1/work/{item['id']}/result",
                    body,
                    {**signer.headers(body), **JSON_HEADERS},
                )
                if status != 200:
                    errors.append(f"result {status}: {data[:200]!r}")
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()
                conn = None
            if not stop.is_set():
                errors.append(f"participant connection: {exc!r}")
                time.sleep(0.05)
    if conn is not None:
        conn.close()


def run_threads(n: int, work: Callable[[int, threading.Barrier], None]) -> float:
    """Runs `work(i, barrier)` on n threads; the seconds from the barrier to the last one."""
    barrier = threading.Barrier(n + 1)
    threads = [threading.Thread(target=work, args=(i, barrier)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def chats(port: int, signers: list[Signer], n: int, per_requester: int) -> dict[str, Any]:
    sent: dict[str, float] = {}
    latencies: list[float] = []
    failures: list[str] = []

    def requester(i: int, barrier: threading.Barrier) -> None:
        conn, signer = Http(port, 300), signers[i]
        mine: list[float] = []
        barrier.wait()
        for _ in range(per_requester):
            headers = {**signer.headers(CHAT_BODY), **JSON_HEADERS}
            started = time.perf_counter()
            status, data = conn.call("POST", "/v1/chat/completions", CHAT_BODY, headers)
            mine.append(time.perf_counter() - started)
            if status == 200:
                sent[json.loads(data)["id"]] = started
            else:
                failures.append(f"chat {status}: {data[:200]!r}")
        conn.close()
        latencies.extend(mine)

    elapsed = run_threads(n, requester)
    return {"elapsed": elapsed, "sent": sent, "latencies": latencies, "failures": failures}


def pings(port: int, n: int, per_requester: int) -> dict[str, Any]:
    latencies: list[float] = []
    failures: list[int] = []

    def pinger(i: int, barrier: threading.Barrier) -> None:
        conn = Http(port, 60)
        mine: list[float] = []
        barrier.wait()
        for _ in range(per_requester):
            started = time.perf_counter()
            status, _ = conn.call("GET", "/v1/identity")
            mine.append(time.perf_counter() - started)
            if status != 200:
                failures.append(status)
        conn.close()
        latencies.extend(mine)

    elapsed = run_threads(n, pinger)
    if failures:
        raise SystemExit(f"{len(failures)} identity calls failed (first: HTTP {failures[0]})")
    return {"elapsed": elapsed, "latencies": latencies}


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def metered(node: psutil.Process, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`work()`'s result with the CPU seconds the node, this process and the rest spent."""
    me = psutil.Process()
    node_s, my_s, all_s = cpu_seconds(node), cpu_seconds(me), busy_seconds()
    result = work()
    node_s, my_s = cpu_seconds(node) - node_s, cpu_seconds(me) - my_s
    result.update(
        node_cpu_s=node_s,
        my_cpu_s=my_s,
        other_cpu_s=max(0.0, busy_seconds() - all_s - node_s - my_s),
    )
    return result


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all processes)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0))


def network_run(args: argparse.Namespace, levels: list[int], share: float) -> None:
    requester_keys = [PrivateKey((i + 1).to_bytes(32, "big")) for i in range(max(levels))]
    participant_keys = [
        PrivateKey((10**6 + i).to_bytes(32, "big")) for i in range(args.participants)
    ]
    params = NetworkParams(validation_share=share)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "node"
        env = {**os.environ, "GONKA_HOME": tmp}
        accounts = [
            (address_from_pubkey(k.public_key.to_bytes()), 10**6 * GNK) for k in requester_keys
        ]
        init_home(home, accounts=accounts, params=ChainParams(), network=params)
        port = free_port()
        log_path = Path(tmp) / "node.log"
        with log_path.open("wb") as log_file:
            server = subprocess.Popen(
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
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        url = f"http://127.0.0.1:{port}"
        stop = threading.Event()
        threads: list[threading.Thread] = []
        try:
            identity = None
            for _ in range(400):
                try:
                    conn = Http(port, 1)
                    status, data = conn.call("GET", "/v1/identity")
                    conn.close()
                    if status == 200:
                        identity = json.loads(data)
                        break
                except OSError:
                    time.sleep(0.05)
            if identity is None:
                raise SystemExit(f"the node did not start; its log:\n{log_path.read_text()}")
            receiver = identity["address"]
            check_signer(requester_keys[0], receiver)
            node = psutil.Process(server.pid)

            for key in participant_keys:
                client = WorkClient(url, key)
                client.register([MODEL], [{"name": "cpu"}])
                client.close()
            received: dict[str, float] = {}
            errors: list[str] = []
            for key in participant_keys:
                thread = threading.Thread(
                    target=participant,
                    args=(port, Signer(key, receiver), args.wait, stop, received, errors),
                    daemon=True,
                )
                thread.start()
                threads.append(thread)
            signers = [Signer(k, receiver) for k in requester_keys]
            time.sleep(1.0)  # every participant is in its long poll
            warm = chats(port, signers, 1, 20)
            if warm["failures"]:
                raise SystemExit(f"warm-up refused: {warm['failures'][0]}")
            rss_before = node.memory_info().rss

            print(
                f"validation_share {share:g}: node {url} (separate process), "
                f"{args.participants} participants long-polling (wait={args.wait:g} s), "
                f"{args.requests} requests per level, price "
                f"{params.price_per_token_ngonka} ngonka/token\n"
            )
            rows = []
            all_sent: dict[str, float] = dict(warm["sent"])
            failures = 0
            for n in levels:
                per_requester = max(1, args.requests // n)
                run = metered(node, partial(chats, port, signers, n, per_requester))
                ping = metered(node, partial(pings, port, n, per_requester))
                failures += len(run["failures"])
                for failure in run["failures"][:3]:
                    print(f"  refused at {n} requesters: {failure}")
                dispatch = [received[i] - t for i, t in run["sent"].items() if i in received]
                all_sent.update(run["sent"])
                rows.append((n, run, ping, dispatch))
            print(
                f"{'requesters':>10}  {'inferences/s':>12}  {'dispatch p50':>12}  "
                f"{'p99 ms':>7}  {'chat p50':>8}  {'p99 ms':>7}  {'identity req/s':>14}  "
                f"{'p50 ms':>6}  {'inferences/trivial':>18}"
            )
            for n, run, ping, dispatch in rows:
                ips = len(run["sent"]) / run["elapsed"]
                rps = len(ping["latencies"]) / ping["elapsed"]
                print(
                    f"{n:>10}  {ips:>12.0f}  {1000 * statistics.median(dispatch):>12.2f}  "
                    f"{1000 * percentile(dispatch, 0.99):>7.2f}  "
                    f"{1000 * statistics.median(run['latencies']):>8.2f}  "
                    f"{1000 * percentile(run['latencies'], 0.99):>7.2f}  {rps:>14.0f}  "
                    f"{1000 * statistics.median(ping['latencies']):>6.2f}  {ips / rps:>18.3f}"
                )
            print(
                f"\n{'requesters':>10}  {'node CPU ms/inference':>21}  {'ms/identity':>11}  "
                f"{'ratio':>6}  {'node CPU':>8}  {'bench CPU':>9}  {'other CPU':>9}"
            )
            for n, run, ping, _ in rows:
                per_inference = 1000 * run["node_cpu_s"] / len(run["sent"])
                per_identity = 1000 * ping["node_cpu_s"] / len(ping["latencies"])
                # A run too short for the process clock's resolution measures no CPU at all.
                ratio = f"{per_inference / per_identity:>6.1f}" if per_identity else f"{'n/a':>6}"
                print(
                    f"{n:>10}  {per_inference:>21.2f}  {per_identity:>11.3f}  "
                    f"{ratio}  "
                    f"{100 * run['node_cpu_s'] / run['elapsed']:>7.0f}%  "
                    f"{100 * run['my_cpu_s'] / run['elapsed']:>8.0f}%  "
                    f"{100 * run['other_cpu_s'] / run['elapsed']:>8.0f}%"
                )
            print(
                "(dispatch: the requester's send to the executor's poll returning the item; "
                "chat: the requester's round trip; ratio: node CPU per inference over per "
                "identity call; CPU %: of one core over the inference run; other: every other "
                "process on this machine)\n"
            )

            rss_after = node.memory_info().rss
            reader = WorkClient(url)
            statuses: dict[str, int] = {}
            validations: dict[str, int] = {}
            for inference_id in all_sent:
                record = reader.inference(inference_id)
                statuses[record.status] = statuses.get(record.status, 0) + 1
                validations[record.validation] = validations.get(record.validation, 0) + 1
            reader.close()
            growth = (rss_after - rss_before) / max(1, len(all_sent) - len(warm["sent"]))
            print(
                f"{len(all_sent)} inferences answered (warm-up included), {failures} refused; "
                f"records: {_counts(statuses)}; validation: {_counts(validations)}"
            )
            print(
                f"node RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB over the "
                f"timed requests ({growth / 1024:+.2f} KiB per inference)"
            )
            if errors:
                print(f"participant errors: {len(errors)}; first: {errors[0]}")
        finally:
            stop.set()
            server.terminate()
            server.wait(timeout=30)
            for thread in threads:
                thread.join(timeout=5)
        print(block_summary(log_path.read_text(errors="replace")))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


def block_summary(log_text: str) -> str:
    """The node's own timing of its blocks (`block N: K txs in X ms` lines)."""
    times, sizes = [], []
    for line in log_text.splitlines():
        words = line.split()
        if len(words) >= 6 and words[0] == "block" and words[3] == "txs" and words[-1] == "ms":
            sizes.append(int(words[2]))
            times.append(float(words[-2]))
    if not times:
        return "node blocks: none with transactions\n"
    return (
        f"node blocks with transactions: {len(times)}, up to {max(sizes)} txs; "
        f"make_block median {statistics.median(times):.1f} ms, longest {max(times):.1f} ms "
        "(the event loop serves nothing meanwhile)\n"
    )


def poc_run(args: argparse.Namespace) -> None:
    import torch

    from gonka_cli.compute import artifacts as art
    from gonka_cli.compute.models import get_spec, load_model
    from gonka_cli.compute.poc import PocInputParams, compute_artifacts
    from gonka_cli.compute.smst import SMST
    from gonka_cli.compute.validation import (
        ProofAnswer,
        build_answers,
        check_answers,
        sample_indices,
        validate,
    )

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    spec = get_spec(args.model)
    network = NetworkParams(poc_model=args.model)
    params = network.poc_params()
    poc = PocInputParams(seq_len=network.seq_len())
    prover = PrivateKey((4242).to_bytes(32, "big")).public_key
    pubkey_hex = prover.to_hex()
    address = address_from_pubkey(prover.to_bytes())
    seed = hashlib.sha256(b"epoch seed").hexdigest()
    sample_seed = f"{hashlib.sha256(b'validate block').hexdigest()}_{address}"
    count = args.nonces
    requested = sample_indices(sample_seed, count, params.sample_size)

    started = time.perf_counter()
    model = load_model(args.model)
    load_s = time.perf_counter() - started
    honest = list(range(count)) if args.all_honest else requested
    started = time.perf_counter()
    vectors = compute_artifacts(model, seed, pubkey_hex, honest, params=poc)
    computed = dict(zip(honest, vectors, strict=True))
    build_s = time.perf_counter() - started
    placeholder = art.encode_artifact([1.0] + [0.0] * (art.K_DIM - 1))
    tree = SMST()
    tree.insert_many(art.leaf_data(n, computed.get(n, placeholder)) for n in range(count))
    root = tree.root()
    raw = json.dumps(
        {"answers": [a.to_dict() for a in build_answers(tree, requested, count)]}
    ).encode()
    me = psutil.Process()

    def once() -> dict[str, Any]:
        """The node's steps for one participant's answers, each timed."""
        times: dict[str, Any] = {"recompute": 0.0}
        started = time.perf_counter()
        answers = [ProofAnswer.from_dict(a) for a in json.loads(raw)["answers"]]
        times["parse"] = time.perf_counter() - started
        started = time.perf_counter()
        times["ok"] = check_answers(root, count, requested, answers, params).ok
        times["structural"] = time.perf_counter() - started

        def recompute(nonces: list[int]) -> list[bytes]:
            began = time.perf_counter()
            out = compute_artifacts(load_model(args.model), seed, pubkey_hex, nonces, params=poc)
            times["recompute"] += time.perf_counter() - began
            return out

        my_s, all_s = cpu_seconds(me), busy_seconds()
        started = time.perf_counter()
        times["verdict"] = validate(root, count, requested, answers, recompute, params)
        times["validate"] = time.perf_counter() - started
        times["my_cpu"] = cpu_seconds(me) - my_s
        times["other_cpu"] = max(0.0, busy_seconds() - all_s - times["my_cpu"])
        times["node"] = times["parse"] + times["structural"] + times["validate"]
        return times

    runs = [once() for _ in range(args.repeats)]
    n = len(requested)

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    print(
        f"{args.model} (dim {spec.dim}, {spec.n_layers} layers) at seq_len {poc.seq_len}, "
        f"float32 on the CPU, torch threads {torch.get_num_threads()}; commitment of {count} "
        f"leaves, {n} sampled; {len(honest)} artifacts computed to build it in {build_s:.1f} s "
        f"({len(honest) / build_s:.1f} nonces/s); model built in {load_s:.2f} s; "
        f"median of {len(runs)} run(s)\n"
    )
    print(f"{'step':<58}  {'seconds':>8}  {'nonces/s':>9}")
    for step, key in (
        (f"event loop: parse the {n} proof answers (JSON)", "parse"),
        ("event loop: structural checks (sum-tree proofs vs root)", "structural"),
        ("worker thread: validate() in all", "validate"),
        (f"  of which the recomputation of {n} artifacts", "recompute"),
        ("the node's time for one participant", "node"),
    ):
        seconds = median(key)
        print(f"{step:<58}  {seconds:>8.3f}  {n / seconds:>9.1f}")
    node_s = median("node")
    if len(runs) > 1:
        spread = sorted(r["node"] for r in runs)
        print(f"(one participant: fastest {spread[0]:.3f} s, slowest {spread[-1]:.3f} s)")
    verdict = runs[-1]["verdict"]
    print(
        f"\nverdict: {verdict.reason} (structural checks ok: {runs[-1]['ok']}; max distance "
        f"{verdict.max_distance})"
    )
    print(
        f"CPU over validate(): this process {100 * median('my_cpu') / median('validate'):.0f}%, "
        f"every other process {100 * median('other_cpu') / median('validate'):.0f}% "
        "(% of one core)"
    )
    phase_s = network.poc_validate_blocks * ChainParams().block_time_s
    print(
        f"one validator thread checks {phase_s / node_s:.1f} participants in a validate phase "
        f"of {network.poc_validate_blocks} blocks ({phase_s:g} s) at the default block time"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=None, help="inferences per level")
    parser.add_argument("--requesters", default="1,8,32")
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--wait", type=float, default=10.0, help="long-poll wait, seconds")
    parser.add_argument("--no-validation-run", action="store_true")
    parser.add_argument("--no-network", action="store_true", help="skip part 1")
    parser.add_argument("--no-poc", action="store_true", help="skip part 2")
    parser.add_argument("--model", default=None, help="PoC model (default gonka-small)")
    parser.add_argument("--nonces", type=int, default=None, help="leaves in the commitment")
    parser.add_argument("--all-honest", action="store_true", help="compute every leaf")
    parser.add_argument("--repeats", type=int, default=1, help="validations of one participant")
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="PoC part (default: torch's, as the node)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run: fewer requests, PoC on gonka-tiny unless --model is given",
    )
    args = parser.parse_args()
    args.requests = args.requests or (120 if args.quick else 800)
    args.model = args.model or ("gonka-tiny" if args.quick else "gonka-small")
    args.nonces = args.nonces or (400 if args.quick else 1000)
    levels = [int(x) for x in args.requesters.split(",")]

    print(f"command: {shlex.join(['python', *sys.argv])}")
    print(f"machine: {machine()}\n")
    if not args.no_network:
        print("1. Inference dispatch through the node (instant fake executors)\n")
        network_run(args, levels, 0.0)
        if not args.no_validation_run:
            network_run(args, levels, NetworkParams().validation_share)
    if not args.no_poc:
        print("2. PoC validation of one participant by the node\n")
        poc_run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
