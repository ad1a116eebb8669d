"""`gonka mine` as a real process against a real node, and what its tests share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gonka_cli.chain.client import ChainClient
from gonka_cli.crypto import hd
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.node.epochs import NetworkParams
from gonka_cli.settings import NetworkProfile
from gonka_cli.wallet.keystore import Keystore
from tests.conftest import PASSWORD

GNK = 10**9


def mining_network(**changes: Any) -> NetworkParams:
    """Short epochs for 0.1 s blocks: generate 3 s, validate 2 s, inference 3 s."""
    base: dict[str, Any] = {
        "epoch_blocks": 80,
        "poc_generate_blocks": 30,
        "poc_validate_blocks": 20,
        "inference_timeout_s": 5.0,
        "participant_timeout_s": 10.0,
    }
    base.update(changes)
    return NetworkParams(**base)


def make_wallet(gonka_home: Path, name: str = "miner", fund_at: str | None = None) -> PrivateKey:
    """A wallet in GONKA_HOME's keystore, at the tests' light KDF cost; with `fund_at` (a
    node's URL), funded there with the collateral that registering locks."""
    store = Keystore(gonka_home / "keys")
    store.add_mnemonic(name, hd.generate_mnemonic(24), PASSWORD, path=hd.HDPath.bip44())
    key = store.unlock(name, PASSWORD).private_key
    if fund_at is not None:
        from gonka_cli.crypto.address import address_from_pubkey
        from tests.node.network_helpers import fund_collateral

        fund_collateral(fund_at, address_from_pubkey(key.public_key.to_bytes()))
    return key


def chain(url: str) -> ChainClient:
    return ChainClient(NetworkProfile(name="test", chain_id="gonka-devnet", rest_urls=(url,)))


class MinerProcess:
    """`python -m gonka_cli mine ... --json` with its events read as they come."""

    def __init__(
        self,
        gonka_home: Path,
        *args: str,
        password: str = PASSWORD,
        env: dict[str, str] | None = None,
    ) -> None:
        self.events: list[dict[str, Any]] = []
        self.stderr = ""
        environment = {
            **os.environ,
            "GONKA_HOME": str(gonka_home),
            "GONKA_KEYRING_PASSWORD": password,
            "NO_COLOR": "1",
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gonka_cli", "mine", "--json", *args],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)  # every stdout line must be JSON
            with self._lock:
                self.events.append(event)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line

    def of(self, event: str, /, **match: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e["event"] == event and all(e.get(k) == v for k, v in match.items())
            ]

    def wait_for(self, check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                value = check()
                if value:
                    return value
                raise AssertionError(
                    f"gonka mine exited ({self.proc.returncode}) before {what}: {self.stderr}"
                )
            time.sleep(0.05)
        with self._lock:
            last = [(e["event"], e.get("t"), e.get("epoch"), e.get("phase")) for e in self.events]
            refused = [e for e in self.events if e["event"] == "rejected"]
        raise AssertionError(
            f"timed out waiting for {what}; last events: {last[-12:]}; rejected: {refused}; "
            f"stderr: {self.stderr}"
        )

    def wait_event(self, event: str, /, timeout: float = 60.0, **match: Any) -> dict[str, Any]:
        found = self.wait_for(lambda: self.of(event, **match), timeout, f"event {event} {match}")
        return dict(found[0])

    def finish(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait for the exit; the summary (the last line)."""
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        self._err_reader.join(timeout=10)
        assert self.proc.returncode == 0, self.stderr
        summaries = self.of("summary")
        assert len(summaries) == 1 and self.events[-1]["event"] == "summary"
        return summaries[0]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
