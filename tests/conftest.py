"""Shared fixtures: an isolated GONKA_HOME, light KDF costs, vectors, and a real chain server."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gonka_cli.node.epochs import NetworkParams
from gonka_cli.node.genesis import ChainParams, NodeHome, init_home
from gonka_cli.node.ledger import Ledger
from gonka_cli.node.runner import Node
from gonka_cli.wallet import keystore as keystore_module
from tests.chain_server import Chain, ChainServer

VECTORS = Path(__file__).parent / "vectors"

PASSWORD = "correct horse battery"
#: The cosmjs/simd test mnemonic (tests/vectors/cosmos_tx_vectors.json).
MNEMONIC = (
    "economy stock theory fatal elder harbor betray wasp final emotion task crumble siren bottom "
    "lizard educate guess current outdoor pair theory focus wife stone"
)


def load_vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


@pytest.fixture(autouse=True)
def gonka_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own GONKA_HOME, plain output, and no inherited GONKA_* settings."""
    home = tmp_path / "gonka-home"
    for name in ("GONKA_KEYRING_PASSWORD", "GONKA_NETWORK", "GONKA_NODE", "GONKA_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GONKA_HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    return home


@pytest.fixture(autouse=True)
def light_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at 1 MiB so the suite stays fast; files still record (and honour) their cost."""
    monkeypatch.setattr(keystore_module, "DEFAULT_KDF", keystore_module.KdfParams(1024, 1, 1))


@pytest.fixture
def chain() -> Chain:
    return Chain()


@pytest.fixture
def server(chain: Chain) -> Iterator[ChainServer]:
    srv = ChainServer(chain).start()
    yield srv
    srv.stop()


@pytest.fixture
def devnet(server: ChainServer, gonka_home: Path) -> ChainServer:
    """Make devnet the default network, served by the test chain (through the config file)."""
    gonka_home.mkdir(parents=True, exist_ok=True)
    (gonka_home / "config.toml").write_text(
        f'default_network = "devnet"\n[networks.devnet]\nrest = ["{server.url}"]\n'
    )
    return server


def dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the real local node ----------------------------------------------------------------

#: Blocks come quickly in tests, so waiting for one costs little.
TEST_BLOCK_TIME_S = 0.1

StartNode = Callable[..., Node]


class NodeStarter:
    """Starts real `gonka node`s (HTTP on a free 127.0.0.1 port, SQLite) on server threads.

    `starter(accounts=[(address, ngonka)], home=None, name="node", network=NetworkParams(),
    **chain_params)`
    initialises a home (unless `home` exists, which restarts that node) and returns the running
    `Node`: `info.url` is its REST base, `ledger` its state. `stop_all()` stops them.
    """

    def __init__(self, make_dir: Callable[[str], Path]) -> None:
        self._make_dir = make_dir
        self.nodes: list[Node] = []

    def __call__(
        self,
        accounts: Sequence[tuple[str, int]] = (),
        home: Path | None = None,
        *,
        name: str = "node",
        network: NetworkParams | None = None,
        **params: Any,
    ) -> Node:
        root = home or self._make_dir(f"{name}{len(self.nodes)}")
        if not NodeHome(root).exists():
            params.setdefault("block_time_s", TEST_BLOCK_TIME_S)
            # The faucet key, at the light KDF cost (`light_kdf` covers single tests only).
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(keystore_module, "DEFAULT_KDF", keystore_module.KdfParams(1024, 1, 1))
                init_home(
                    root, accounts=list(accounts), params=ChainParams(**params), network=network
                )
        node = Node(root, port=0)
        node.start()
        self.nodes.append(node)
        return node

    def stop_all(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[StartNode]:
    """Real nodes for one test (see `NodeStarter`)."""
    starter = NodeStarter(lambda name: tmp_path / name)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def start_module_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartNode]:
    """Real nodes that several tests of a module share (a node takes ~0.2 s to stop)."""
    starter = NodeStarter(lambda name: tmp_path_factory.mktemp(name) / "node")
    yield starter
    starter.stop_all()


def node_url(node: Node) -> str:
    assert node.info is not None, "the node was never opened"
    return node.info.url


def node_ledger(node: Node) -> Ledger:
    assert node.ledger is not None, "the node is stopped"
    return node.ledger


def use_devnet(home: Path, *urls: str) -> None:
    """Make devnet the default network, served by `urls` (through the config file)."""
    home.mkdir(parents=True, exist_ok=True)
    rest = ", ".join(f'"{u}"' for u in urls)
    (home / "config.toml").write_text(
        f'default_network = "devnet"\n[networks.devnet]\nrest = [{rest}]\n'
    )


@pytest.fixture
def local_node(start_node: StartNode, gonka_home: Path) -> Node:
    """A running node that the devnet profile (the default network) points at."""
    node = start_node()
    assert node.info is not None
    use_devnet(gonka_home, node.info.url)
    return node
