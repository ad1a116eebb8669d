"""`gonka node load`: signed inference requests at a steady rate, from faucet-funded keys.

A devnet has no outside users; this gives its miners inference work. Fresh keys (never
written to disk) are funded by the node's faucet, then requests go out at `rps` per second
on a thread pool, each a short chat with a random prompt, signed by one of the keys in turn.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gonka_cli.chain.client import ChainClient
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import GonkaError, InputError, RequestRefused
from gonka_cli.workclient import WorkClient

WORDS = ("mine", "gonka", "proof", "compute", "block", "epoch", "nonce", "model", "token")
MAX_RPS = 1000.0
FUND_NGONKA = 1_000 * 10**9


@dataclass
class LoadStats:
    """What a load run did so far; `errors` counts refusals by their HTTP status."""

    started: float = field(default_factory=time.monotonic)
    sent: int = 0
    completed: int = 0
    tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        ordered = sorted(self.latencies)

        def pct(q: float) -> float | None:
            return (
                round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4) if ordered else None
            )

        return {
            "elapsed_s": round(elapsed, 3),
            "sent": self.sent,
            "completed": self.completed,
            "failed": sum(self.errors.values()),
            "errors": dict(self.errors),
            "completed_per_s": round(self.completed / elapsed, 3),
            "completion_tokens": self.tokens,
            "latency_p50_s": pct(0.5),
            "latency_p99_s": pct(0.99),
            "last_error": self.last_error,
        }


def fund_keys(chain: ChainClient, count: int, timeout_s: float = 30.0) -> list[PrivateKey]:
    """`count` fresh keys, each funded by the faucet and confirmed in a block."""
    keys = [PrivateKey(secrets.token_bytes(32)) for _ in range(count)]
    hashes = []
    for key in keys:
        from gonka_cli.crypto.address import address_from_pubkey

        txhash, _ = chain.faucet(address_from_pubkey(key.public_key.to_bytes()), FUND_NGONKA)
        hashes.append(txhash)
    for txhash in hashes:
        chain.wait_for_tx(txhash, timeout_s=timeout_s)
    return keys


def run_load(
    url: str,
    keys: list[PrivateKey],
    *,
    rps: float,
    model: str,
    duration_s: float | None = None,
    max_tokens: int = 16,
    stop: threading.Event | None = None,
    on_tick: Callable[[LoadStats], None] | None = None,
) -> LoadStats:
    """Send signed chat requests at `rps` per second until `duration_s`, `stop` or Ctrl-C;
    returns once the requests in flight have finished."""
    if not 0 < rps <= MAX_RPS:
        raise InputError(f"--rps must be between 0 and {MAX_RPS:g}")
    if not keys:
        raise InputError("the load needs at least one funded key")
    stop = stop or threading.Event()
    stats = LoadStats()
    lock = threading.Lock()
    clients = [WorkClient(url, key, timeout_s=10.0) for key in keys]
    rng = random.Random()  # noqa: S311 - prompts, not secrets

    def one(client: WorkClient) -> None:
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))
        began = time.perf_counter()
        try:
            answer = client.chat(
                model, [{"role": "user", "content": prompt}], max_tokens=max_tokens
            )
        except RequestRefused as exc:
            with lock:
                stats.errors[str(exc.status)] += 1
                stats.last_error = str(exc)
            return
        except GonkaError as exc:
            with lock:
                stats.errors["unreachable"] += 1
                stats.last_error = str(exc)
            return
        with lock:
            stats.completed += 1
            stats.tokens += answer.usage.completion_tokens
            stats.latencies.append(time.perf_counter() - began)

    interval = 1.0 / rps
    workers = max(4, min(256, int(rps * 30)))
    next_at = time.monotonic()
    next_tick = next_at + 1.0
    with ThreadPoolExecutor(workers, thread_name_prefix="gonka-load") as pool:
        try:
            while not stop.is_set():
                now = time.monotonic()
                if duration_s is not None and now - stats.started >= duration_s:
                    break
                if now >= next_at:
                    pool.submit(one, clients[stats.sent % len(clients)])
                    stats.sent += 1
                    next_at += interval
                    continue
                if on_tick is not None and now >= next_tick:
                    on_tick(stats)
                    next_tick = now + 1.0
                stop.wait(min(next_at - now, 0.05))
        except KeyboardInterrupt:  # Ctrl-C is how an open-ended load stops
            pass
        finally:
            stop.set()
    for client in clients:
        client.close()
    return stats
