"""The REST broadcast route, served ahead of FastAPI's stack (`api._NodeApp.hot_routes`), answers
exactly as the same handler does through FastAPI: same statuses, bodies and error shapes."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gonka_cli.errors import InvalidAmount
from gonka_cli.node.api import BROADCAST_PATH
from gonka_cli.node.genesis import GNK
from gonka_cli.node.http import MAX_BODY_BYTES
from gonka_cli.node.runner import Node
from tests.conftest import StartNode
from tests.node.helpers import TXS, Api, account, assert_error, b64, transfer

ALICE = account("alice")
BOB = account("bob")
#: Blocks only when a test makes one: answers stay comparable.
MANUAL_BLOCKS = {"block_time_s": 3600}


@pytest.fixture
def api(start_node: StartNode) -> Api:
    return Api(start_node(accounts=[(ALICE.address, 1_000 * GNK)], **MANUAL_BLOCKS))


def _app(node: Node) -> Any:
    """The node's FastAPI application (a node without an RPC port serves it directly)."""
    server = node._server
    assert server is not None
    return server.config.app


def _answer(api: Api, body: Any = None, **kwargs: Any) -> tuple[int, str, Any]:
    resp = api.post(TXS, body, **kwargs)
    return resp.status_code, resp.headers["content-type"], resp.json()


def test_the_broadcast_path_is_a_hot_route(api: Api) -> None:
    assert TXS == BROADCAST_PATH
    assert BROADCAST_PATH in _app(api.node).hot_routes


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"data": b"{not json"},
        {"data": b"[1, 2]"},
        {"body": {}},
        {"body": {"tx_bytes": "%%%"}},
        {"body": {"tx_bytes": b64(b"\x0a"), "mode": "BROADCAST_MODE_BLOCK"}},
        {"body": {"tx_bytes": b64(b"not a tx")}},
        {"body": {"txBytes": b64(b"not a tx"), "mode": 2}},
        # ASYNC answers code 0 before CheckTx, whatever the transaction.
        {"body": {"tx_bytes": b64(b"not a tx"), "mode": "BROADCAST_MODE_ASYNC"}},
        {"data": b'{"tx_bytes": "' + b"A" * MAX_BODY_BYTES + b'"}'},
    ],
)
def test_refusals_are_the_same_with_and_without_the_hot_route(
    api: Api, request_kwargs: dict[str, Any]
) -> None:
    hot = _answer(api, **request_kwargs)
    handler = _app(api.node).hot_routes.pop(BROADCAST_PATH)
    try:
        through_fastapi = _answer(api, **request_kwargs)
    finally:
        _app(api.node).hot_routes[BROADCAST_PATH] = handler
    assert hot == through_fastapi


def test_accepted_transfers_are_the_same_with_and_without_the_hot_route(api: Api) -> None:
    # Sequences 1 and 2: their transactions have the same size, hence the same gas.
    assert api.broadcast(transfer(api.node, ALICE, BOB.address, 5).tx_bytes)["code"] == 0
    first = transfer(api.node, ALICE, BOB.address, 5, sequence=1)
    hot = _answer(api, {"tx_bytes": b64(first.tx_bytes), "mode": "BROADCAST_MODE_SYNC"})
    handler = _app(api.node).hot_routes.pop(BROADCAST_PATH)
    try:
        second = transfer(api.node, ALICE, BOB.address, 5, sequence=2)
        slow = _answer(api, {"tx_bytes": b64(second.tx_bytes), "mode": "BROADCAST_MODE_SYNC"})
        # The same transaction again: refused by CheckTx (code 19) on either path.
        again_slow = _answer(api, {"tx_bytes": b64(first.tx_bytes)})
    finally:
        _app(api.node).hot_routes[BROADCAST_PATH] = handler
    again_hot = _answer(api, {"tx_bytes": b64(first.tx_bytes)})
    assert hot[2]["tx_response"]["txhash"] == first.txhash
    assert slow[2]["tx_response"]["txhash"] == second.txhash
    slow[2]["tx_response"]["txhash"] = first.txhash
    assert hot == slow
    assert hot[2]["tx_response"]["code"] == 0
    assert again_hot == again_slow
    assert again_hot[2]["tx_response"]["code"] == 19


def test_a_bug_on_the_broadcast_route_is_a_logged_500(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="gonka_cli.node.api")

    def broken(tx_bytes: bytes) -> Any:
        raise RuntimeError("a bug")

    assert api.node.ledger is not None
    monkeypatch.setattr(api.node.ledger, "check_tx", broken)
    body = assert_error(api.post(TXS, {"tx_bytes": b64(b"\x0a\x00")}), 500, 13)
    assert body["message"] == "internal error; see the node's log"
    assert f"internal error on POST {TXS}" in caplog.text
    assert "a bug" in caplog.text


def test_a_gonka_error_on_the_broadcast_route_is_a_400(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(tx_bytes: bytes) -> Any:
        raise InvalidAmount("the amount is refused")

    assert api.node.ledger is not None
    monkeypatch.setattr(api.node.ledger, "check_tx", refused)
    body = assert_error(api.post(TXS, {"tx_bytes": b64(b"\x0a\x00")}), 400, 3)
    assert body["message"] == "the amount is refused"


def test_other_methods_on_the_broadcast_path_still_go_through_fastapi(api: Api) -> None:
    assert_error(api.http.put(api.url + TXS, timeout=10), 405, 12)
    # GET is the search, with its own refusals.
    assert_error(api.get(TXS), 400, 3)
