"""Figures for `gonka mlnode serve`: callback throughput, time to first artifact, chat latency.

One run, one device, all figures as ratios of quantities measured in that run:

(a) PoC throughput. The engine alone (`compute_poc` in this process on the same model, seq_len
    and batch size the worker uses, consecutive chunks, for --engine-s seconds) against the
    ML node: the service and its HTTP server started here (the device worker is its own
    process, as in `gonka mlnode serve`), driven over HTTP as DAPI drives it, its callbacks
    received by a small DAPI stand-in on 127.0.0.1. Delivered rate = artifacts in the
    callbacks after the first one, over the time from the first callback to the last, for
    --node-s seconds. Engine and node phases alternate (E N E ... N E, --repeats node phases:
    this machine's speed drifts); each node phase is set against the mean of the engine
    phases on either side, and the median ratio printed; also the best node phase against
    the best engine phase (robust when the machine's speed jumps, as on a shared box), and
    the delivered rate against the pool's own `nonces_per_second`. Target: >= 0.95.
(b) Time from `init/generate` (the POST leaving) to the first artifact computed, seen as
    `total_processed > 0` in `pow/status` polled every 5 ms, model loaded, and as the
    service's own `first_artifact` event; also the time to the first callback (bounded by
    the callback interval). Median of --rounds rounds, each begun on an idle device; the
    longest the device stayed busy after `pow/stop` is printed beside it (a round started
    sooner waits that long). Target: <= 1 s.
(c) Chat latency: the DAPI-rewritten body (processed top-5 logprobs, seed) through the
    inference port against `compute.chat.complete` on the same model in this process; median
    of --chats requests each. Printed as a ratio.

    python scripts/bench_mlnode.py [--device cpu] [--model gonka-tiny] [--seq-len N]
    python scripts/bench_mlnode.py --device 0 --model Qwen/Qwen3-0.6B --seq-len 1024

Nothing is asserted: the figures are printed (`--json` for one JSON object).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

BLOCK_HASH = "5E1F0C2B7A9D3E4F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7"
PUBLIC_KEY = "02" + "3a" * 32
MESSAGES = [{"role": "user", "content": "Gonka is a decentralized compute network."}]


class Receiver:
    """DAPI's callback routes, counting artifacts with their arrival times."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                now = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if urllib.parse.urlsplit(self.path).path.endswith("/generated"):
                    count = len(json.loads(body).get("artifacts", []))
                    with receiver.lock:
                        receiver.batches.append((now, count))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.batches.clear()

    def snapshot(self) -> list[tuple[float, int]]:
        with self.lock:
            return list(self.batches)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def path_escape(text: str) -> str:
    """Go's `url.PathEscape`."""
    return urllib.parse.quote(text, safe="-_.~!$&'()*+,;=:@")


def callback_base(url: str, model: str) -> str:
    """DAPI's callback base: the model id escaped twice (spec §1.4)."""
    return f"{url}/v2/poc-batches/{path_escape(path_escape(model))}"


def engine_rate(model: Any, seq_len: int, batch: int, seconds: float, start: int) -> float:
    """Artifacts per second of `compute_poc` alone, on consecutive chunks of `batch` nonces."""
    from gonka_cli.compute.poc import PocInputParams, compute_poc

    params = PocInputParams(seq_len=seq_len)
    compute_poc(model, BLOCK_HASH, PUBLIC_KEY, range(start, start + batch), params=params)
    n, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        first = start + batch + n
        compute_poc(
            model,
            BLOCK_HASH,
            PUBLIC_KEY,
            range(first, first + batch),
            params=params,
            batch_size=batch,
        )
        n += batch
    return n / (time.perf_counter() - began)


def post(url: str, payload: Any = None, timeout_s: float = 600.0) -> requests.Response:
    """A POST as DAPI sends it: JSON bytes, no Content-Type."""
    data = None if payload is None else json.dumps(payload).encode()
    return requests.post(url, data=data, timeout=timeout_s)


def init_body(model: str, seq_len: int, height: int, url: str) -> dict[str, Any]:
    return {
        "block_hash": BLOCK_HASH,
        "block_height": height,
        "public_key": PUBLIC_KEY,
        "node_id": 0,
        "node_count": 1,
        "params": {"model": model, "seq_len": seq_len},
        "url": url,
    }


def total_processed(control: str) -> int:
    status = requests.get(control + "/api/v1/inference/pow/status", timeout=30).json()
    return sum(int((b.get("stats") or {}).get("total_processed") or 0) for b in status["backends"])


def nonces_per_second(control: str) -> float:
    status = requests.get(control + "/api/v1/inference/pow/status", timeout=30).json()
    return sum(
        float((b.get("stats") or {}).get("nonces_per_second") or 0) for b in status["backends"]
    )


def wait_idle(control: str, timeout_s: float = 60.0) -> float:
    """Seconds until every device of the node is idle (no PoC chunk left on it)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        status = requests.get(control + "/api/v1/gonka/status", timeout=30).json()
        if all(d.get("state") == "idle" for d in status.get("devices", [])):
            break
        time.sleep(0.01)
    return time.monotonic() - began


def chat_body(model: str, max_tokens: int, seed: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": MESSAGES,
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "logprobs": True,
        "top_logprobs": 5,
        "skip_special_tokens": False,
        "return_token_ids": True,
        "seed": seed,
        "logprobs_mode": "processed_logprobs",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, or a GPU index as `gonka mine`")
    parser.add_argument("--model", default="gonka-tiny", help="built-in name, directory, repo id")
    parser.add_argument("--seq-len", type=int, default=None, help="default: the model's own")
    parser.add_argument("--engine-s", type=float, default=3.0)
    parser.add_argument("--node-s", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=6, help="node phases in (a)")
    parser.add_argument("--interval-s", type=float, default=1.0, help="callback interval")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chats", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from gonka_cli.bench.devices import inventory
    from gonka_cli.compute.chat import ChatRequest, complete
    from gonka_cli.compute.models import load_model
    from gonka_cli.compute.poc import choose_batch_size
    from gonka_cli.miner.devices import select_devices
    from gonka_cli.mlnode.server import MlNodeServer
    from gonka_cli.mlnode.service import MlNode, MlNodeConfig

    (device,) = select_devices(args.device, inventory())
    model = load_model(args.model, device=device.torch_device)
    seq_len = args.seq_len or int(model.spec.poc_seq_len)
    batch = choose_batch_size(model, seq_len)
    figures: dict[str, Any] = {
        "load_average_start": round(os.getloadavg()[0], 2),
        "device": device.id,
        "model": args.model,
        "seq_len": seq_len,
        "batch_size": batch,
    }

    receiver = Receiver()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-mlnode-"))
    events: list[dict[str, Any]] = []

    def on_event(name: str, fields: dict[str, Any]) -> None:
        if name == "first_artifact":
            events.append(dict(fields))

    node = MlNode(
        MlNodeConfig(devices=(device,), data_dir=data_dir, callback_interval_s=args.interval_s),
        on_event=on_event,
    )
    node.start()
    server = MlNodeServer(node, host="127.0.0.1", control_port=0, inference_port=0)
    server.start()
    control, inference = server.control_url, server.inference_url
    url = callback_base(receiver.url, args.model)
    try:
        up = post(control + "/api/v1/inference/up", {"model": args.model, "dtype": "auto"})
        up.raise_for_status()

        # (a) engine and node phases in turn: E N E N ... E; each node phase against the
        # mean of the engine phases on either side of it.
        engines = [engine_rate(model, seq_len, batch, args.engine_s, 10_000_000)]
        delivered: list[float] = []
        pool_rates: list[float] = []
        busy_after_stop: list[float] = []
        callbacks = 0
        for phase in range(args.repeats):
            receiver.reset()
            body = init_body(args.model, seq_len, 1 + phase, url)
            post(control + "/api/v1/inference/pow/init/generate", body).raise_for_status()
            time.sleep(args.node_s)
            pool_rates.append(nonces_per_second(control))
            batches = receiver.snapshot()
            post(control + "/api/v1/inference/pow/stop").raise_for_status()
            busy_after_stop.append(wait_idle(control))  # the engine gets the device alone
            callbacks += len(batches)
            span = batches[-1][0] - batches[0][0] if len(batches) >= 2 else 0.0
            delivered.append(sum(n for _, n in batches[1:]) / span if span else float("nan"))
            start = 20_000_000 + 10_000_000 * phase
            engines.append(engine_rate(model, seq_len, batch, args.engine_s, start))
        # A phase with fewer than two callbacks (a very slow moment) gives no figure.
        ratios = [
            d / ((engines[i] + engines[i + 1]) / 2)
            for i, d in enumerate(delivered)
            if not math.isnan(d)
        ]
        valid = [d for d in delivered if not math.isnan(d)]
        to_pool = [
            d / r for d, r in zip(delivered, pool_rates, strict=True) if not math.isnan(d) and r
        ]
        figures["a"] = {
            "engine_per_s": [round(e, 1) for e in engines],
            "delivered_per_s": [round(d, 1) for d in delivered],
            "pool_nonces_per_second": [round(r, 1) for r in pool_rates],
            "callbacks": callbacks,
            "busy_after_stop_s": [round(b, 2) for b in busy_after_stop],
            "ratios": [round(r, 3) for r in ratios],
            "ratio": round(statistics.median(ratios), 3) if ratios else None,
            "ratio_to_pool": round(statistics.median(to_pool), 3) if to_pool else None,
            # On a shared machine whose speed jumps, the quietest moments of each compare best.
            "peak_ratio": round(max(valid) / max(engines), 3) if valid else None,
        }

        # (b) init/generate to the first artifact computed (seen over HTTP, and as the
        # service's own `first_artifact` event), and to the first callback, each round begun
        # on an idle device; and how long the device stays busy after `pow/stop` (chunks of
        # the stopped round already queued on it).
        firsts: list[float] = []
        own: list[float] = []
        callbacks_s: list[float] = []
        answered: list[float] = []
        drains: list[float] = []
        for round_ in range(args.rounds):
            drains.append(wait_idle(control))
            receiver.reset()
            events.clear()
            began = time.monotonic()
            post(
                control + "/api/v1/inference/pow/init/generate",
                init_body(args.model, seq_len, 100 + round_, url),
            ).raise_for_status()
            answered.append(time.monotonic() - began)
            while total_processed(control) == 0:
                time.sleep(0.005)
            firsts.append(time.monotonic() - began)
            while not receiver.snapshot():
                time.sleep(0.005)
            callbacks_s.append(receiver.snapshot()[0][0] - began)
            own.extend(float(e["seconds"]) for e in events if "seconds" in e)
            post(control + "/api/v1/inference/pow/stop").raise_for_status()
        drains.append(wait_idle(control))
        figures["b"] = {
            "init_answered_s": round(statistics.median(answered), 3),
            "first_artifact_s": round(statistics.median(firsts), 3),
            "first_artifact_event_s": round(statistics.median(own), 3) if own else None,
            "first_callback_s": round(statistics.median(callbacks_s), 3),
            "busy_after_stop_s": round(max(drains[1:]), 3),
            "rounds": args.rounds,
        }

        # (c) chat through the server against the engine alone.
        served, alone = [], []
        for i in range(args.chats):
            body = chat_body(args.model, args.max_tokens, seed=i + 1)
            began = time.perf_counter()
            post(inference + "/v1/chat/completions", body).raise_for_status()
            served.append(time.perf_counter() - began)
            began = time.perf_counter()
            complete(model, ChatRequest.from_dict(body), model_name=args.model)
            alone.append(time.perf_counter() - began)
        figures["c"] = {
            "server_s": round(statistics.median(served), 4),
            "engine_s": round(statistics.median(alone), 4),
            "ratio": round(statistics.median(served) / statistics.median(alone), 3),
            "max_tokens": args.max_tokens,
        }
        post(control + "/api/v1/stop")
    finally:
        server.stop()
        node.close()
        receiver.close()

    figures["load_average_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(figures))
        return
    a, b, c = figures["a"], figures["b"], figures["c"]
    print(
        f"device {figures['device']}, model {figures['model']}, seq_len {seq_len}, "
        f"batch {batch}; load average {figures['load_average_start']} at the start, "
        f"{figures['load_average_end']} at the end, on {os.cpu_count()} CPUs"
    )
    print(
        f"(a) delivered through {a['callbacks']} callbacks {a['delivered_per_s']}/s, engine "
        f"alone {a['engine_per_s']}/s (pool's own figure {a['pool_nonces_per_second']}/s): "
        f"ratio {a['ratio']} (median of {a['ratios']}; target >= 0.95); to the pool's figure "
        f"{a['ratio_to_pool']}; best against best {a['peak_ratio']}; "
        f"device busy {a['busy_after_stop_s']} s after each pow/stop"
    )
    print(
        f"(b) init/generate answered in {b['init_answered_s']} s; first artifact computed "
        f"{b['first_artifact_s']} s over HTTP, {b['first_artifact_event_s']} s by the service; "
        f"first callback {b['first_callback_s']} s (median of {b['rounds']}, each on an idle "
        f"device; target <= 1 s); the device stays busy up to {b['busy_after_stop_s']} s "
        f"after pow/stop"
    )
    print(
        f"(c) chat ({c['max_tokens']} tokens): server {c['server_s']} s vs engine "
        f"{c['engine_s']} s: ratio {c['ratio']}"
    )


if __name__ == "__main__":
    main()
