"""Throughput of the local node: signed transfers per second against a trivial endpoint.

Starts `gonka node start` as a separate process on 127.0.0.1 with a genesis funding one
sender per client, pre-signs every transfer (so the clients' signing is not timed), then,
for 1, 8 and 32 concurrent clients (threads with keep-alive connections):

- broadcasts the signed transfers (BROADCAST_MODE_SYNC) and reports accepted transfers/s
  and the p50/p99 broadcast latency;
- calls a trivial endpoint (node_info) as many times, for the server's bare requests/s.

The ratio of the two is what the ledger and the signature checks cost. At the end every
accepted transfer is checked to be in a block with code 0.

    python scripts/bench_node.py [--txs-per-client 60] [--clients 1,8,32]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from gonka_cli.chain import tx as txlib
from gonka_cli.crypto.address import address_from_pubkey
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.node.genesis import ChainParams, init_home

GNK = 10**9


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_clients(n_clients: int, jobs: list[list[tuple[str, str, bytes | None]]]) -> dict:
    """Each client runs its (method, url, body) jobs in order; returns timings and answers."""
    latencies: list[float] = []
    codes: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_clients + 1)

    def client(my_jobs: list[tuple[str, str, bytes | None]]) -> None:
        session = requests.Session()
        mine, my_codes = [], []
        barrier.wait()
        for method, url, body in my_jobs:
            started = time.perf_counter()
            response = session.request(
                method, url, data=body, headers={"Content-Type": "application/json"}
            )
            mine.append(time.perf_counter() - started)
            data = response.json()
            my_codes.append(int(data.get("tx_response", {}).get("code", 0)) if body else 0)
        with lock:
            latencies.extend(mine)
            codes.extend(my_codes)

    threads = [threading.Thread(target=client, args=(j,)) for j in jobs[:n_clients]]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "latencies": latencies, "codes": codes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs-per-client", type=int, default=60)
    parser.add_argument("--clients", default="1,8,32")
    args = parser.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    per_client = args.txs_per_client
    max_clients = max(levels)

    keys = [PrivateKey((i + 1).to_bytes(32, "big")) for i in range(max_clients)]
    addresses = [address_from_pubkey(k.public_key.to_bytes()) for k in keys]
    recipient = address_from_pubkey(PrivateKey((10**6).to_bytes(32, "big")).public_key.to_bytes())

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "node"
        env = {**os.environ, "GONKA_HOME": tmp}
        init_home(home, accounts=[(a, 10**6 * GNK) for a in addresses], params=ChainParams())
        port = free_port()
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
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    requests.get(url + "/v1/node/status", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.05)
            print(f"node: {url} (separate process); {per_client} requests per client\n")
            # Account numbers: the faucet is 0, senders 1..n in genesis order.
            sequences = [0] * max_clients
            fee = txlib.Fee(txlib.coins(0), 200_000)
            accepted_hashes: list[str] = []
            rows = []
            for n in levels:
                tx_jobs, ping_jobs = [], []
                for c in range(n):
                    jobs = []
                    for _ in range(per_client):
                        signed = txlib.sign_send(
                            keys[c],
                            chain_id="gonka-devnet",
                            account_number=c + 1,
                            sequence=sequences[c],
                            from_address=addresses[c],
                            to_address=recipient,
                            amount=1000,
                            fee=fee,
                        )
                        sequences[c] += 1
                        body = json.dumps(
                            {
                                "tx_bytes": base64.b64encode(signed.tx_bytes).decode(),
                                "mode": "BROADCAST_MODE_SYNC",
                            }
                        ).encode()
                        jobs.append(("POST", url + "/cosmos/tx/v1beta1/txs", body))
                        accepted_hashes.append(signed.txhash)
                    tx_jobs.append(jobs)
                    ping_jobs.append(
                        [("GET", url + "/cosmos/base/tendermint/v1beta1/node_info", None)]
                        * per_client
                    )
                txs = run_clients(n, tx_jobs)
                pings = run_clients(n, ping_jobs)
                ok = sum(1 for code in txs["codes"] if code == 0)
                if ok != len(txs["codes"]):
                    print(f"  {len(txs['codes']) - ok} transfers refused at {n} clients!")
                tps = ok / txs["elapsed"]
                rps = len(pings["latencies"]) / pings["elapsed"]
                rows.append(
                    (
                        n,
                        tps,
                        1000 * statistics.median(txs["latencies"]),
                        1000 * percentile(txs["latencies"], 0.99),
                        rps,
                        1000 * statistics.median(pings["latencies"]),
                    )
                )
            print(
                f"{'clients':>7}  {'transfers/s':>11}  {'p50 ms':>7}  {'p99 ms':>7}  "
                f"{'node_info req/s':>15}  {'p50 ms':>7}  {'transfers/trivial':>17}"
            )
            for n, tps, p50, p99, rps, p50p in rows:
                print(
                    f"{n:>7}  {tps:>11.0f}  {p50:>7.2f}  {p99:>7.2f}  {rps:>15.0f}  "
                    f"{p50p:>7.2f}  {tps / rps:>17.2f}"
                )
            # Every accepted transfer must land in a block with code 0.
            session = requests.Session()
            deadline = time.time() + 30
            while time.time() < deadline:
                status = session.get(url + "/v1/node/status", timeout=10).json()
                if status["mempool_txs"] == 0:
                    break
                time.sleep(0.5)
            missing = [
                h
                for h in accepted_hashes
                if session.get(url + f"/cosmos/tx/v1beta1/txs/{h}", timeout=10)
                .json()
                .get("tx_response", {})
                .get("code")
                != 0
            ]
            print(
                f"\n{len(accepted_hashes)} transfers broadcast; not in a block with code 0: "
                f"{len(missing)}"
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
