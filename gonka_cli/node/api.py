"""The node's HTTP API (FastAPI): the Cosmos REST paths and shapes the wallet speaks.

Errors use the grpc-gateway shape `{"code": <gRPC code>, "message": ..., "details": []}` with
a 4xx status: 3 (InvalidArgument, HTTP 400) for malformed requests, 5 (NotFound, 404),
8 (ResourceExhausted, 429) for the faucet's limit, 12 (Unimplemented, 501) for a wrong method.
Transaction results use the SDK's `tx_response` with its codespace, code and `raw_log`.
Bodies are limited to `MAX_BODY_BYTES`.

Handlers are `async` and run on the event loop one at a time, like an ABCI application:
the ledger is never touched by two requests at once.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gonka_cli import __version__
from gonka_cli.chain import tx as txlib
from gonka_cli.chain.amount import DENOM, parse_amount
from gonka_cli.crypto import address as addr
from gonka_cli.errors import GonkaError, InputError
from gonka_cli.node.http import ApiError, read_json
from gonka_cli.node.http import error_response as _error
from gonka_cli.node.http import json_response as _json
from gonka_cli.node.ledger import (
    Block,
    FaucetRefused,
    Ledger,
    Outcome,
    TxRecord,
    tx_events,
    tx_msg_data,
)
from gonka_cli.protocol import ErrorCode
from gonka_cli.validate import is_int, is_uint_text

if TYPE_CHECKING:
    from gonka_cli.node.network import Network

log = logging.getLogger(__name__)

#: What Gonka's chain builds with (product-science/cosmos-sdk v0.53.3-ps5 and CometBFT
#: v0.38.17); the fork's suffix is left out, since clients parse this as a version number.
COSMOS_SDK_VERSION = "v0.53.3"
COMETBFT_VERSION = "0.38.17"
COMETBFT_BLOCK_PROTOCOL = "11"
COMETBFT_P2P_PROTOCOL = "8"
#: CometBFT's default block size limit (the devnet reports it; it does not enforce it).
CONSENSUS_MAX_BLOCK_BYTES = 22_020_096
MAX_PAGE_LIMIT = 100
MAX_HEIGHT = 2**63 - 1  # SQLite's INTEGER
#: Conditions joined by AND in one search (each one is a nested SQL expression).
MAX_QUERY_CONDITIONS = 16


def _tx_bytes(body: dict[str, Any], *, allow_tx: bool = False) -> bytes:
    """The signed TxRaw of a broadcast or simulate body.

    As the SDK's gateway: `tx_bytes` or its JSON name `txBytes` (base64); simulate also takes
    the deprecated `tx` (the Tx as JSON), whose protobuf encoding is read as the TxRaw.
    """
    value = body.get("tx_bytes")
    if value is None:
        value = body.get("txBytes")
    if value is None and allow_tx and body.get("tx") is not None:
        return _tx_from_json(body["tx"])
    if not isinstance(value, str) or not value:
        raise ApiError(3, "tx_bytes is required (base64 of the signed TxRaw)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(3, "tx_bytes is not valid base64") from None


def _tx_from_json(value: Any) -> bytes:
    from google.protobuf import json_format

    from gonka_cli.chain.proto.cosmos.tx.v1beta1 import tx_pb2

    if not isinstance(value, dict):
        raise ApiError(3, "invalid tx: a JSON object is expected")
    try:
        message = json_format.ParseDict(value, tx_pb2.Tx())
    except Exception as exc:
        # protobuf's JSON parser raises more than ParseError on odd input (AttributeError for
        # a numeric "@type", RecursionError for deep nesting): all of it is a malformed tx.
        raise ApiError(3, f"invalid tx: {str(exc)[:200] or type(exc).__name__}") from None
    return message.SerializeToString(deterministic=True)


#: BroadcastMode by name and by number, as the gateway takes either.
_BROADCAST_MODES = {
    "BROADCAST_MODE_UNSPECIFIED": "BROADCAST_MODE_UNSPECIFIED",
    "BROADCAST_MODE_BLOCK": "BROADCAST_MODE_BLOCK",
    "BROADCAST_MODE_SYNC": "BROADCAST_MODE_SYNC",
    "BROADCAST_MODE_ASYNC": "BROADCAST_MODE_ASYNC",
    "0": "BROADCAST_MODE_UNSPECIFIED",
    "1": "BROADCAST_MODE_BLOCK",
    "2": "BROADCAST_MODE_SYNC",
    "3": "BROADCAST_MODE_ASYNC",
}


def _broadcast_mode(body: dict[str, Any]) -> str:
    mode = body.get("mode", "BROADCAST_MODE_SYNC")
    if is_int(mode):
        mode = str(mode)
    name = _BROADCAST_MODES.get(mode) if isinstance(mode, str) else None
    if name == "BROADCAST_MODE_BLOCK":
        raise ApiError(3, "BROADCAST_MODE_BLOCK was removed in SDK v0.47: use SYNC and poll")
    if name not in ("BROADCAST_MODE_SYNC", "BROADCAST_MODE_ASYNC"):
        raise ApiError(
            3, f"unsupported broadcast mode {repr(mode)[:40]}; supported types: sync, async"
        )
    return name


def _address(text: str) -> str:
    try:
        return addr.normalize(text, "gonka")
    except InputError as exc:
        raise ApiError(3, f"invalid address: {exc}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- JSON shapes ------------------------------------------------------------------------


def tx_json(tx_bytes: bytes, *, type_url: bool = True) -> dict[str, Any]:
    """The SDK's JSON for a TxRaw (messages decoded where known).

    `type_url` adds `"@type": "/cosmos.tx.v1beta1.Tx"`, as `tx_response.tx` (an Any) has it;
    `GetTxResponse.tx` and `txs[]` are plain Tx messages, without it.
    """
    decoded = decoded_tx(tx_bytes)
    if decoded is None:
        return {"body": {"messages": []}, "auth_info": {}, "signatures": []}
    messages = [
        m.to_dict() if isinstance(m, txlib.MsgSend) else {"@type": m.type_url}
        for m in decoded.messages
    ]
    signer_infos = [
        {
            "public_key": (
                {"@type": s.pubkey_type_url, "key": _b64(s.pubkey.to_bytes())} if s.pubkey else None
            ),
            "mode_info": {"single": {"mode": txlib.sign_mode_name(s.mode)}},
            "sequence": str(s.sequence),
        }
        for s in decoded.signers
    ]
    tx = {
        "body": {
            "messages": messages,
            "memo": decoded.memo,
            "timeout_height": str(decoded.timeout_height),
            "extension_options": [],
            "non_critical_extension_options": [],
        },
        "auth_info": {"signer_infos": signer_infos, "fee": decoded.fee.to_dict(), "tip": None},
        "signatures": [_b64(s) for s in decoded.signatures],
    }
    return {"@type": "/cosmos.tx.v1beta1.Tx", **tx} if type_url else tx


# Cached: answering for one stored transaction (`tx_response` with its `tx`, the RPC's
# `ExecTxResult`) reads it several times, and clients poll the same few transactions.
# A DecodedTx is immutable, so answers can share it.
@functools.lru_cache(maxsize=1024)
def decoded_tx(tx_bytes: bytes) -> txlib.DecodedTx | None:
    """A stored transaction decoded; None for bytes that do not decode."""
    try:
        return txlib.decode_tx(tx_bytes)
    except InputError:
        return None


def tx_response(record: TxRecord) -> dict[str, Any]:
    """The SDK's `TxResponse` of a transaction in a block."""
    decoded = decoded_tx(record.tx_bytes)
    events = tx_events(decoded, record.code, record.gas_used) if decoded else []
    data = tx_msg_data(decoded).hex().upper() if decoded and record.code == 0 else ""
    return {
        "height": str(record.height),
        "txhash": record.hash,
        "codespace": record.codespace,
        "code": record.code,
        "data": data,
        "raw_log": record.raw_log,
        "logs": [],
        "info": "",
        "gas_wanted": str(record.gas_wanted),
        "gas_used": str(record.gas_used),
        "tx": tx_json(record.tx_bytes),
        "timestamp": record.time[:19] + "Z",
        "events": [e.to_dict() for e in events],
    }


def broadcast_response(txhash: str, outcome: Outcome) -> dict[str, Any]:
    return {
        "tx_response": {
            "height": "0",
            "txhash": txhash,
            "codespace": outcome.codespace,
            "code": outcome.code,
            "data": "",
            "raw_log": outcome.raw_log,
            "logs": [],
            "info": "",
            "gas_wanted": str(outcome.gas_wanted),
            "gas_used": str(outcome.gas_used),
            "tx": None,
            "timestamp": "",
            "events": [],
        }
    }


def _block_id(hash_hex: str) -> dict[str, Any]:
    return {"hash": _b64(bytes.fromhex(hash_hex)), "part_set_header": {"total": 0, "hash": ""}}


def block_json(block: Block, chain_id: str, ledger: Ledger) -> dict[str, Any]:
    """`GetBlockByHeightResponse`: the CometBFT block and the SDK's `sdk_block`, nothing else.

    The devnet has no validators: hashes other than the block's own and its parent's, the
    proposer and the commit signatures are empty.
    """
    txs = []
    for h in block.tx_hashes:
        record = ledger.tx(h)
        if record is not None:
            txs.append(_b64(record.tx_bytes))
    header = {
        "version": {"block": COMETBFT_BLOCK_PROTOCOL, "app": "0"},
        "chain_id": chain_id,
        "height": str(block.height),
        "time": block.time,
        "last_block_id": _block_id(block.prev_hash),
        "last_commit_hash": "",
        "data_hash": "",
        "validators_hash": "",
        "next_validators_hash": "",
        "consensus_hash": "",
        "app_hash": "",
        "last_results_hash": "",
        "evidence_hash": "",
        "proposer_address": "",
    }
    body = {
        "header": header,
        "data": {"txs": txs},
        "evidence": {"evidence": []},
        "last_commit": {
            "height": str(block.height - 1),
            "round": 0,
            "block_id": _block_id(block.prev_hash),
            "signatures": [],
        },
    }
    return {"block_id": _block_id(block.hash), "block": body, "sdk_block": body}


def _account_json(ledger: Ledger, address: str) -> dict[str, Any]:
    account = ledger.account(address)
    if account is None:
        raise ApiError(5, f"account {address} not found: key not found")
    pub = (
        {"@type": txlib.SECP256K1_PUBKEY_TYPE_URL, "key": _b64(account.pubkey)}
        if account.pubkey
        else None
    )
    return {
        "address": address,
        "pub_key": pub,
        "account_number": str(account.number),
        "sequence": str(account.sequence),
    }


def _parse_query(query: str) -> list[tuple[str, str]]:
    """A CometBFT event query limited to `key='value'` (or `tx.height=N`) joined by AND."""
    conditions = []
    parts = query.split(" AND ")
    if len(parts) > MAX_QUERY_CONDITIONS:
        raise ApiError(
            3, f"invalid query: at most {MAX_QUERY_CONDITIONS} conditions, got {len(parts)}"
        )
    for part in parts:
        key, sep, value = part.strip().partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ApiError(3, f"invalid query {query!r}: expected key='value' [AND ...]")
        if key == "tx.height":
            if not is_uint_text(value, MAX_HEIGHT):
                raise ApiError(3, f"invalid query {query!r}: tx.height takes a number")
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        else:
            raise ApiError(3, f"invalid query {query!r}: quote the value, as key='value'")
        if key not in (
            "message.sender",
            "transfer.recipient",
            "transfer.sender",
            "tx.height",
            "tx.hash",
        ):
            raise ApiError(3, f"unsupported query key {key!r}")
        conditions.append((key, value))
    return conditions


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name) or request.query_params.get(f"pagination.{name}")
    if text is None or text == "":
        return default
    if not is_uint_text(text, high) or not low <= int(text):
        raise ApiError(3, f"{name} must be an integer between {low} and {high}")
    return int(text)


# --- the app ----------------------------------------------------------------------------


def _internal_error() -> Response:
    return _error(500, 13, "internal error; see the node's log", ErrorCode.INTERNAL)


def _refusal(exc: ApiError | GonkaError) -> Response:
    """The answer to a refusal: the API's own shape, or a 400 for any other GonkaError."""
    if isinstance(exc, ApiError):
        return _error(exc.status, exc.grpc_code, exc.message, exc.error_code)
    return _error(400, 3, str(exc))


class _InternalErrors:
    """A bug of ours (an exception no handler took) answered as a 500 in the API's shape.

    A plain ASGI middleware: `@app.middleware("http")` (Starlette's BaseHTTPMiddleware) runs
    every request in a task group and streams its body through a queue, which cost a signed
    transfer more than the ledger's checks (scripts/bench_node.py).
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if started:  # the answer is under way: nothing can replace it
                raise
            await _internal_error()(scope, receive, send)


BROADCAST_PATH = "/cosmos/tx/v1beta1/txs"


class _NodeApp(FastAPI):
    """FastAPI, with a few hot POST routes served ahead of its middleware and router.

    Each request through FastAPI's stack (its middlewares, route matching, dependency
    solving) cost a signed transfer about as much as the ledger's checks
    (scripts/bench_node.py); a hot route skips that and answers errors in the same shapes
    as the app's exception handlers and `_InternalErrors` do. Other methods on its path
    (405, GET) still go through FastAPI.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: POST path -> handler (a Request in, a Response out).
        self.hot_routes: dict[str, Callable[[Request], Awaitable[Response]]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        handler = (
            self.hot_routes.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if handler is None:
            await super().__call__(scope, receive, send)
            return
        try:
            response = await handler(Request(scope, receive))
        except (ApiError, GonkaError) as exc:
            response = _refusal(exc)
        except Exception:
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            response = _internal_error()
        await response(scope, receive, send)


def create_app(
    ledger: Ledger, network: Network | None = None, *, moniker: str = "gonka-devnet-node"
) -> FastAPI:
    """The node's FastAPI application over `ledger` (and the mining API over `network`)."""
    app = _NodeApp(title="gonka node", version=__version__, docs_url=None, redoc_url=None)
    started = time.monotonic()
    chain_id = ledger.chain_id

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _refusal(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        grpc = {404: 5, 405: 12}.get(exc.status_code, 3)
        code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(exc.status_code)
        return _error(exc.status_code, grpc, str(exc.detail), code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, 3, f"invalid request: {where}: {first.get('msg', 'bad value')}")

    @app.exception_handler(GonkaError)
    async def gonka_error(request: Request, exc: GonkaError) -> Response:
        return _refusal(exc)

    app.add_middleware(_InternalErrors)

    # -- broadcast: the hot path ---------------------------------------------------------

    async def broadcast(request: Request) -> Response:
        body = await read_json(request)
        mode = _broadcast_mode(body)
        txhash, outcome = ledger.check_tx(_tx_bytes(body))
        if mode == "BROADCAST_MODE_ASYNC":
            # ASYNC answers before CheckTx on a real node; the result is then unknown.
            outcome = Outcome()
        return _json(broadcast_response(txhash, outcome))

    app.hot_routes[BROADCAST_PATH] = broadcast
    # Also a FastAPI route, never reached by a POST: it keeps the path in the OpenAPI schema
    # and the answers to its other methods (405) as they were.
    app.post(BROADCAST_PATH)(broadcast)

    # -- node and blocks -----------------------------------------------------------------

    @app.get("/cosmos/base/tendermint/v1beta1/node_info")
    async def node_info() -> Response:
        node_id = hashlib.sha256(f"{chain_id}/{moniker}/{ledger.node_address}".encode())
        return _json(
            {
                "default_node_info": {
                    "protocol_version": {
                        "p2p": COMETBFT_P2P_PROTOCOL,
                        "block": COMETBFT_BLOCK_PROTOCOL,
                        "app": "0",
                    },
                    "default_node_id": node_id.hexdigest()[:40],
                    "listen_addr": "",
                    "network": chain_id,
                    "version": COMETBFT_VERSION,
                    "channels": "",
                    "moniker": moniker,
                    "other": {"tx_index": "on", "rpc_address": ""},
                },
                "application_version": {
                    "name": "gonka",
                    "app_name": "gonka node",
                    "version": __version__,
                    "git_commit": "",
                    "build_tags": "",
                    "go_version": "",
                    "build_deps": [],
                    "cosmos_sdk_version": COSMOS_SDK_VERSION,
                },
            }
        )

    @app.get("/cosmos/base/tendermint/v1beta1/blocks/latest")
    async def latest_block() -> Response:
        block = ledger.block()
        if block is None:
            raise ApiError(5, "no block yet: the node has not made its first block")
        return _json(block_json(block, chain_id, ledger))

    @app.get("/cosmos/base/tendermint/v1beta1/blocks/{height}")
    async def block_at(height: str) -> Response:
        if not is_uint_text(height, MAX_HEIGHT):
            raise ApiError(3, f"height {height[:24]!r} is not a block height")
        block = ledger.block(int(height))
        if block is None:
            raise ApiError(
                3,
                f"requested block height {height} is bigger than the chain length {ledger.height}"
                if int(height) > ledger.height
                else f"no block {height}",
            )
        return _json(block_json(block, chain_id, ledger))

    @app.get("/v1/node/blocks/{height}")
    async def gonka_block(height: str) -> Response:
        """A block as the node hashed it (hex hashes, tx hashes, entropy): not in the SDK's
        block answers, which strict clients parse."""
        if height == "latest":
            block = ledger.block()
        elif is_uint_text(height, MAX_HEIGHT):
            block = ledger.block(int(height))
        else:
            raise ApiError(3, f"height {height[:24]!r} is not a block height")
        if block is None:
            raise ApiError(5, f"no block {height[:24]}")
        return _json(block.to_dict())

    @app.get("/v1/node/status")
    async def status() -> Response:
        data = ledger.status().to_dict()
        data.update(
            uptime_s=round(time.monotonic() - started, 3),
            version=__version__,
            block_time_s=ledger.block_time_s,
            min_gas_price=ledger.params.min_gas_price,
            faucet_address=ledger.genesis.faucet_address,
        )
        if getattr(app.state, "rpc_url", ""):  # set by the runner when it serves the RPC
            data["rpc_url"] = app.state.rpc_url
        if network is not None:
            view = network.view()
            data.update(
                node_address=network.address,
                epoch=view.epoch,
                phase=view.phase,
                phase_end_height=view.phase_end_height,
                participants=len(network.participants),
                minted_ngonka=str(ledger.minted),
            )
        return _json(data)

    # -- accounts and balances -----------------------------------------------------------

    @app.get("/cosmos/auth/v1beta1/account_info/{address}")
    async def account_info(address: str) -> Response:
        return _json({"info": _account_json(ledger, _address(address))})

    @app.get("/cosmos/auth/v1beta1/accounts/{address}")
    async def account(address: str) -> Response:
        info = _account_json(ledger, _address(address))
        return _json({"account": {"@type": "/cosmos.auth.v1beta1.BaseAccount", **info}})

    def balances(address: str) -> dict[str, Any]:
        account = ledger.account(_address(address))
        amount = account.balance if account else 0
        coins = [{"denom": DENOM, "amount": str(amount)}] if amount else []
        return {"balances": coins, "pagination": {"next_key": None, "total": str(len(coins))}}

    @app.get("/cosmos/bank/v1beta1/balances/{address}")
    async def all_balances(address: str) -> Response:
        return _json(balances(address))

    @app.get("/cosmos/bank/v1beta1/spendable_balances/{address}")
    async def spendable_balances(address: str) -> Response:
        # No vesting or locks on the devnet: everything held is spendable.
        return _json(balances(address))

    @app.get("/cosmos/bank/v1beta1/balances/{address}/by_denom")
    async def balance_by_denom(address: str, request: Request) -> Response:
        denom = request.query_params.get("denom", "")
        if not denom:
            raise ApiError(3, "invalid denom: the denom query parameter is required")
        account = ledger.account(_address(address))
        amount = account.balance if account and denom == DENOM else 0
        return _json({"balance": {"denom": denom, "amount": str(amount)}})

    @app.get("/cosmos/bank/v1beta1/supply")
    async def supply() -> Response:
        total = ledger.total_supply()
        return _json(
            {
                "supply": [{"denom": DENOM, "amount": str(total)}],
                "pagination": {"next_key": None, "total": "1"},
            }
        )

    # -- transactions --------------------------------------------------------------------

    @app.post("/cosmos/tx/v1beta1/simulate")
    async def simulate(request: Request) -> Response:
        tx_bytes = _tx_bytes(await read_json(request), allow_tx=True)
        outcome = ledger.simulate(tx_bytes)
        if not outcome.ok:
            # The SDK answers a failed simulation with gRPC Unknown (2). Its gateway would
            # make that HTTP 500; this node keeps 5xx for its own faults.
            raise ApiError(
                2,
                f"{outcome.raw_log} With gas wanted: '{outcome.gas_wanted}' and gas used: "
                f"'{outcome.gas_used}' ",
                400,
            )
        decoded = txlib.decode_tx(tx_bytes)
        events = tx_events(decoded, 0, outcome.gas_used)
        return _json(
            {
                "gas_info": {
                    "gas_wanted": str(outcome.gas_wanted),
                    "gas_used": str(outcome.gas_used),
                },
                "result": {
                    "data": "",
                    "log": "",
                    "events": [e.to_dict() for e in events],
                    "msg_responses": [{"@type": f"{m.type_url}Response"} for m in decoded.messages],
                },
            }
        )

    @app.get("/cosmos/tx/v1beta1/txs/{txhash}")
    async def get_tx(txhash: str) -> Response:
        if len(txhash) != 64 or not all(c in "0123456789abcdefABCDEF" for c in txhash):
            raise ApiError(3, f"invalid tx hash {txhash!r}: 64 hex characters expected")
        record = ledger.tx(txhash)
        if record is None:
            raise ApiError(5, f"tx not found: {txhash.upper()}")
        return _json(
            {"tx": tx_json(record.tx_bytes, type_url=False), "tx_response": tx_response(record)}
        )

    @app.get("/cosmos/tx/v1beta1/txs")
    async def search(request: Request) -> Response:
        query = unquote(request.query_params.get("query", "")).strip()
        if not query:
            raise ApiError(3, "query cannot be empty")
        conditions = _parse_query(query)
        limit = _int_param(request, "limit", 100, 1, MAX_PAGE_LIMIT)
        page = _int_param(request, "page", 1, 1, 1_000_000)
        newest = request.query_params.get("order_by", "") in ("ORDER_BY_DESC", "2")
        records, total = ledger.search(
            conditions, limit=limit, offset=(page - 1) * limit, newest_first=newest
        )
        return _json(
            {
                "txs": [tx_json(r.tx_bytes, type_url=False) for r in records],
                "tx_responses": [tx_response(r) for r in records],
                "pagination": None,
                "total": str(total),
            }
        )

    # -- modules the devnet does not run: empty but valid answers ------------------------

    empty_page = {"next_key": None, "total": "0"}

    @app.get("/cosmos/consensus/v1/params")
    async def consensus_params() -> Response:
        return _json(
            {
                "params": {
                    "block": {"max_bytes": str(CONSENSUS_MAX_BLOCK_BYTES), "max_gas": "-1"},
                    "evidence": {
                        "max_age_num_blocks": "100000",
                        "max_age_duration": "172800s",
                        "max_bytes": "1048576",
                    },
                    "validator": {"pub_key_types": ["ed25519"]},
                    "version": {"app": "0"},
                    "abci": {"vote_extensions_enable_height": "0"},
                }
            }
        )

    @app.get("/cosmos/staking/v1beta1/validators")
    async def validators() -> Response:
        return _json({"validators": [], "pagination": empty_page})

    @app.get("/cosmos/staking/v1beta1/delegations/{delegator}")
    async def delegations(delegator: str) -> Response:
        _address(delegator)
        return _json({"delegation_responses": [], "pagination": empty_page})

    @app.get("/cosmos/staking/v1beta1/delegators/{delegator}/unbonding_delegations")
    async def unbonding(delegator: str) -> Response:
        _address(delegator)
        return _json({"unbonding_responses": [], "pagination": empty_page})

    @app.get("/cosmos/staking/v1beta1/delegators/{delegator}/redelegations")
    async def redelegations(delegator: str) -> Response:
        _address(delegator)
        return _json({"redelegation_responses": [], "pagination": empty_page})

    @app.get("/cosmos/staking/v1beta1/delegators/{delegator}/validators")
    async def delegator_validators(delegator: str) -> Response:
        _address(delegator)
        return _json({"validators": [], "pagination": empty_page})

    @app.get("/cosmos/staking/v1beta1/params")
    async def staking_params() -> Response:
        return _json(
            {
                "params": {
                    "unbonding_time": "1814400s",
                    "max_validators": 100,
                    "max_entries": 7,
                    "historical_entries": 10000,
                    "bond_denom": DENOM,
                    "min_commission_rate": "0.000000000000000000",
                }
            }
        )

    @app.get("/cosmos/staking/v1beta1/pool")
    async def staking_pool() -> Response:
        return _json({"pool": {"not_bonded_tokens": "0", "bonded_tokens": "0"}})

    @app.get("/cosmos/distribution/v1beta1/delegators/{delegator}/rewards")
    async def rewards(delegator: str) -> Response:
        _address(delegator)
        return _json({"rewards": [], "total": []})

    @app.get("/cosmos/distribution/v1beta1/delegators/{delegator}/validators")
    async def distribution_validators(delegator: str) -> Response:
        _address(delegator)
        return _json({"validators": []})

    @app.get("/cosmos/distribution/v1beta1/delegators/{delegator}/withdraw_address")
    async def withdraw_address(delegator: str) -> Response:
        return _json({"withdraw_address": _address(delegator)})

    @app.get("/cosmos/distribution/v1beta1/community_pool")
    async def community_pool() -> Response:
        return _json({"pool": []})

    @app.get("/cosmos/distribution/v1beta1/params")
    async def distribution_params() -> Response:
        return _json(
            {
                "params": {
                    "community_tax": "0.000000000000000000",
                    "base_proposer_reward": "0.000000000000000000",
                    "bonus_proposer_reward": "0.000000000000000000",
                    "withdraw_addr_enabled": True,
                }
            }
        )

    @app.get("/cosmos/gov/v1/proposals")
    @app.get("/cosmos/gov/v1beta1/proposals")
    async def proposals() -> Response:
        return _json({"proposals": [], "pagination": empty_page})

    @app.get("/cosmos/mint/v1beta1/params")
    async def mint_params() -> Response:
        return _json(
            {
                "params": {
                    "mint_denom": DENOM,
                    "inflation_rate_change": "0.000000000000000000",
                    "inflation_max": "0.000000000000000000",
                    "inflation_min": "0.000000000000000000",
                    "goal_bonded": "0.000000000000000000",
                    "blocks_per_year": "0",
                }
            }
        )

    @app.get("/cosmos/mint/v1beta1/inflation")
    async def inflation() -> Response:
        return _json({"inflation": "0.000000000000000000"})

    @app.get("/cosmos/mint/v1beta1/annual_provisions")
    async def annual_provisions() -> Response:
        return _json({"annual_provisions": "0.000000000000000000"})

    @app.get("/cosmos/params/v1beta1/params")
    async def legacy_params(request: Request) -> Response:
        subspace = request.query_params.get("subspace", "")
        key = request.query_params.get("key", "")
        if not subspace or not key:
            raise ApiError(3, "subspace and key are required")
        # The devnet keeps no x/params subspaces: an unset key's value is empty.
        return _json({"param": {"subspace": subspace[:64], "key": key[:64], "value": ""}})

    # -- devnet faucet -------------------------------------------------------------------

    @app.post("/faucet")
    async def faucet(request: Request) -> Response:
        body = await read_json(request)
        address = body.get("address")
        if not isinstance(address, str):
            raise ApiError(3, "address is required")
        amount_text = body.get("amount")
        amount = None
        if amount_text is not None:
            if not (isinstance(amount_text, str) or is_int(amount_text)):
                raise ApiError(3, "amount must be a string such as '1000gnk' or '5000ngonka'")
            text = str(amount_text)
            try:
                amount = parse_amount(text if not text.isdigit() else text + "ngonka")
            except InputError as exc:
                raise ApiError(3, str(exc)) from None
        try:
            txhash, outcome = ledger.faucet(_address(address), amount)
        except FaucetRefused as exc:
            raise ApiError(8, str(exc)) from None
        if not outcome.ok:
            raise ApiError(8, f"the faucet could not send: {outcome.raw_log}", 503)
        return _json(
            {
                "txhash": txhash,
                "address": _address(address),
                "amount": {
                    "denom": DENOM,
                    "amount": str(amount or ledger.params.faucet_amount_ngonka),
                },
            }
        )

    if network is not None:
        from gonka_cli.node.network_api import add_routes

        add_routes(app, network)
    return app
