"""`gonka mine --devnet`: the local network node and a funded wallet, made ready to mine.

The devnet profile's URL (`http://127.0.0.1:1317` unless the config file says otherwise) is
joined when a node already answers there; otherwise a node is started in this process, on a
background thread, over the default node home (`gonka node start`'s). A wallet that does
not exist yet is created from a new mnemonic and funded from the node's faucet.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import requests

from gonka_cli.errors import MinerError

if TYPE_CHECKING:
    from gonka_cli.chain.client import ChainClient
    from gonka_cli.node.runner import Node
    from gonka_cli.wallet.keystore import KeyInfo, Keystore

log = logging.getLogger(__name__)

#: What a new devnet miner wallet receives from the faucet: the default collateral that
#: registering locks (1,000 GNK) and as much again to spend.
FUNDING_NGONKA = 2_000 * 10**9
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def node_answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether a gonka node's mining API answers at `url`."""
    try:
        response = requests.get(url.rstrip("/") + "/v1/identity", timeout=timeout_s)
    except requests.RequestException:
        return False
    return response.status_code == 200


def join_or_start(url: str, home: Path) -> tuple[Node | None, str]:
    """The devnet node to mine against: `(None, url)` when one runs there, else a node
    started in this process `(node, its url)`; stop it with `node.stop()`."""
    if node_answers(url):
        return None, url
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port
    if host not in _LOCAL_HOSTS or port is None:
        raise MinerError(
            f"no devnet node answers at {url}, and gonka can only start one on this machine "
            "(a 127.0.0.1 URL with a port); start that node, or fix the devnet profile"
        )
    import torch

    from gonka_cli.node.runner import Node

    # The node recomputes sampled artifacts in this process while the device workers compute
    # theirs: two torch thread pools on the same cores slow each other down many times over.
    # One thread leaves the cores to the workers (this process computes nothing else).
    torch.set_num_threads(1)
    node = Node(home, host=host, port=port)
    info = node.start()
    log.info("started the devnet node at %s (home %s)", info.url, info.home)
    return node, info.url


def create_wallet(keystore: Keystore, name: str, password: str) -> KeyInfo:
    """A new key from a fresh 24-word mnemonic (`gonka wallet export NAME` shows it)."""
    from gonka_cli.crypto import hd

    return keystore.add_mnemonic(name, hd.generate_mnemonic(24), password, path=hd.HDPath.bip44())


def fund(chain: ChainClient, address: str) -> int:
    """Faucet GNK for a new wallet; returns the amount sent."""
    _, amount = chain.faucet(address, FUNDING_NGONKA)
    return amount
