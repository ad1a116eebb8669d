"""Helpers for the tests of the node's CometBFT RPC: a real node serving REST and RPC."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from gonka_cli.node.genesis import ChainParams, init_home
from gonka_cli.node.runner import Node
from gonka_cli.wallet import keystore as keystore_module
from tests.conftest import TEST_BLOCK_TIME_S
from tests.node.helpers import WAIT_S


@contextmanager
def rpc_node(root: Path, accounts: Sequence[tuple[str, int]] = (), **params: Any) -> Iterator[Node]:
    """A node on free REST and RPC ports over a new home at `root`."""
    params.setdefault("block_time_s", TEST_BLOCK_TIME_S)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keystore_module, "DEFAULT_KDF", keystore_module.KdfParams(1024, 1, 1))
        init_home(root, accounts=list(accounts), params=ChainParams(**params))
    node = Node(root, port=0, rpc_port=0)
    node.start()
    try:
        yield node
    finally:
        node.stop()


class Rpc:
    """JSON-RPC calls to one node's RPC port."""

    def __init__(self, node: Node) -> None:
        assert node.info is not None and node.info.rpc_url
        self.url = node.info.rpc_url
        self.http = requests.Session()
        self._id = 0

    def post(self, body: Any) -> requests.Response:
        return self.http.post(self.url, json=body, timeout=WAIT_S)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """The `result` of a successful call (the test fails on a JSON-RPC error)."""
        self._id += 1
        resp = self.post({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["id"] == self._id and body["jsonrpc"] == "2.0", body
        assert "error" not in body, body
        result: dict[str, Any] = body["result"]
        return result

    def error(self, method: str, **params: Any) -> dict[str, Any]:
        """The `error` of a call that must fail."""
        self._id += 1
        resp = self.post({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        return assert_rpc_error(resp, self._id)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.url + path, params=params or None, timeout=WAIT_S)

    def height(self) -> int:
        return int(self.call("status")["sync_info"]["latest_block_height"])

    def wait_height(self, height: int) -> None:
        limit = time.monotonic() + WAIT_S
        while self.height() < height:
            assert time.monotonic() < limit, f"no block {height} within {WAIT_S} s"
            time.sleep(0.02)


def assert_rpc_error(resp: requests.Response, request_id: Any = None) -> dict[str, Any]:
    """`resp` is a JSON-RPC 2.0 error: a JSON body with `error.code` < 0 and a message."""
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict) and body.get("jsonrpc") == "2.0", body
    assert "result" not in body, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], int) and error["code"] < 0, body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["data"], str), body
    if request_id is not None:
        assert body["id"] == request_id, body
    return error
