"""ML-node fixtures: a tiny Qwen3 in a Hugging Face cache under a repo id, a fake DAPI, and an
ML node (service and HTTP server) on free 127.0.0.1 ports."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.mlnode.dapi import DapiClient, FakeDapi

if TYPE_CHECKING:
    from gonka_cli.mlnode.server import MlNodeServer
    from gonka_cli.mlnode.service import MlNode

#: The repo id the tiny checkpoint is cached under: a slash and a dot, as mainnet's ids have,
#: so that the callback path carries `%252F` (spec §1.4).
REPO_ID = "gonka-test/Qwen3-tiny-0.6B"
#: Short enough for a fast CPU forward, a real model's shape otherwise.
SEQ_LEN = 16
#: The block hash as CometBFT prints it (64 upper-case hex) and a real compressed pubkey.
BLOCK_HASH = "3C0FFEE9D1B2A4C6E8F0123456789ABCDEF0123456789ABCDEF0123456789ABC"
PROVER_PRIVATE_KEY = "1f" * 32


def prover_public_key() -> str:
    from gonka_cli.crypto.secp256k1 import PrivateKey

    return PrivateKey.from_hex(PROVER_PRIVATE_KEY).public_key.to_hex()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def hub_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face hub cache holding the tiny Qwen3 (tests/compute/hf_checkpoints.py) as
    `REPO_ID`, written once per session."""
    from tests.compute.hf_checkpoints import lay_into_hub_cache, write_checkpoint

    root = tmp_path_factory.mktemp("mlnode-hf")
    checkpoint = write_checkpoint("qwen3", root / "checkpoint")
    cache = root / "hub"
    lay_into_hub_cache(checkpoint, cache, REPO_ID)
    return cache


def hub_env(cache: Path) -> dict[str, str]:
    """The environment that makes `REPO_ID` resolve from `cache`, and no hub reachable."""
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(name, value)
        yield


@pytest.fixture
def fake_dapi() -> Iterator[FakeDapi]:
    fake = FakeDapi().start()
    yield fake
    fake.stop()


@dataclass
class RunningNode:
    node: MlNode
    server: MlNodeServer

    def client(self, **kwargs: Any) -> DapiClient:
        return DapiClient(self.server.control_url, self.server.inference_url, **kwargs)

    def close(self) -> None:
        self.server.stop()
        self.node.close()


def start_node(data_dir: Path, token: str | None = None, **config: Any) -> RunningNode:
    """An ML node on the CPU (service and server, ports chosen by the system)."""
    from gonka_cli.miner.devices import MiningDevice
    from gonka_cli.mlnode.server import MlNodeServer
    from gonka_cli.mlnode.service import MlNode, MlNodeConfig

    cpu = MiningDevice(id="cpu", name="CPU", torch_device="cpu")
    node = MlNode(MlNodeConfig(devices=(cpu,), data_dir=data_dir, **config))
    node.start()
    server = MlNodeServer(node, host="127.0.0.1", control_port=0, inference_port=0, token=token)
    try:
        server.start()
    except BaseException:
        node.close()
        raise
    return RunningNode(node, server)


def subprocess_env(home: Path, cache: Path, **extra: str) -> dict[str, str]:
    """The environment of a `python -m gonka_cli` child: its own GONKA_HOME and HF cache."""
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONKA_")}
    env.update(hub_env(cache))
    env.update(
        GONKA_HOME=str(home),
        NO_COLOR="1",
        PYTHONPATH=str(repo),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env
