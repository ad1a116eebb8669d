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
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from gonka_cli import __version__
from gonka_cli.chain import tx as txlib
from gonka_cli.chain.amount import DENOM, parse_amount
from gonka_cli.crypto import address as addr
from gonka_cli.errors import GonkaError, InputError
from gonka_cli.node.ledger import Block, FaucetRefused, Ledger, Outcome, TxRecord

if TYPE_CHECKING:
    from gonka_cli.node.network import Network

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_PAGE_LIMIT = 100
MAX_HEIGHT = 2**63 - 1  # SQLite's INTEGER
#: Conditions joined by AND in one search (each one is a nested SQL expression).
MAX_QUERY_CONDITIONS = 16
_HTTP_FOR_GRPC = {3: 400, 5: 404, 8: 429, 12: 501, 13: 500, 16: 401}


class ApiError(Exception):
    def __init__(self, grpc_code: int, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.grpc_code = grpc_code
        self.message = message
        self.status = status or _HTTP_FOR_GRPC.get(grpc_code, 400)


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def _error(status: int, grpc_code: int, message: str) -> Response:
    return _json({"code": grpc_code, "message": message, "details": []}, status)


async def read_body(request: Request) -> bytes:
    """The raw request body, refusing bodies over `MAX_BODY_BYTES`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(3, f"request body too large (limit {MAX_BODY_BYTES} bytes)", 413)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ApiError(3, f"request body too large (limit {MAX_BODY_BYTES} bytes)", 413)
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went away mid-body: nobody reads the answer, and it is not our error.
        raise ApiError(3, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def parse_json(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(3, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(3, "request body must be a JSON object")
    return body


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, refusing bodies over `MAX_BODY_BYTES`."""
    return parse_json(await read_body(request))


def _tx_bytes(body: dict[str, Any]) -> bytes:
    value = body.get("tx_bytes")
    if not isinstance(value, str) or not value:
        raise ApiError(3, "tx_bytes is required (base64 of the signed TxRaw)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(3, "tx_bytes is not valid base64") from None


def _address(text: str) -> str:
    try:
        return addr.normalize(text, "gonka")
    except InputError as exc:
        raise ApiError(3, f"invalid address: {exc}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- JSON shapes ------------------------------------------------------------------------


def tx_json(tx_bytes: bytes) -> dict[str, Any]:
    """The `tx` object of the SDK's JSON for a TxRaw (messages decoded where known)."""
    try:
        decoded = txlib.decode_tx(tx_bytes)
    except InputError:
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
            "mode_info": {"single": {"mode": "SIGN_MODE_DIRECT" if s.mode == 1 else str(s.mode)}},
            "sequence": str(s.sequence),
        }
        for s in decoded.signers
    ]
    return {
        "@type": "/cosmos.tx.v1beta1.Tx",
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


def _events(tx: dict[str, Any], ok: bool) -> list[dict[str, Any]]:
    def attrs(**kv: str) -> list[dict[str, Any]]:
        return [{"key": k, "value": v, "index": True} for k, v in kv.items()]

    events = []
    for msg in tx["body"]["messages"]:
        if msg.get("@type") != txlib.MSG_SEND_TYPE_URL:
            continue
        events.append({"type": "message", "attributes": attrs(sender=msg["from_address"])})
        if ok:
            amount = ",".join(f"{c['amount']}{c['denom']}" for c in msg["amount"])
            events.append(
                {
                    "type": "transfer",
                    "attributes": attrs(
                        recipient=msg["to_address"], sender=msg["from_address"], amount=amount
                    ),
                }
            )
    return events


def tx_response(record: TxRecord) -> dict[str, Any]:
    tx = tx_json(record.tx_bytes)
    return {
        "height": str(record.height),
        "txhash": record.hash,
        "codespace": record.codespace,
        "code": record.code,
        "data": "",
        "raw_log": record.raw_log,
        "logs": [],
        "info": "",
        "gas_wanted": str(record.gas_wanted),
        "gas_used": str(record.gas_used),
        "tx": tx,
        "timestamp": record.time[:19] + "Z",
        "events": _events(tx, record.code == 0),
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


def block_json(block: Block, chain_id: str, ledger: Ledger) -> dict[str, Any]:
    txs = []
    for h in block.tx_hashes:
        record = ledger.tx(h)
        if record is not None:
            txs.append(_b64(record.tx_bytes))
    block_id = {"hash": _b64(bytes.fromhex(block.hash)), "part_set_header": None}
    header = {
        "chain_id": chain_id,
        "height": str(block.height),
        "time": block.time,
        "last_block_id": {"hash": _b64(bytes.fromhex(block.prev_hash))},
        "proposer_address": "",
    }
    return {
        "block_id": block_id,
        "block": {"header": header, "data": {"txs": txs}},
        "sdk_block": {"header": header, "data": {"txs": txs}},
        # Not in the SDK: the hash as hex, as PoC seeds use it.
        "gonka": {
            "hash": block.hash,
            "prev_hash": block.prev_hash,
            "tx_hashes": block.tx_hashes,
            "entropy": block.entropy,
        },
    }


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
            if not _is_uint(value, MAX_HEIGHT):
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


def _is_uint(text: str, high: int) -> bool:
    """ASCII digits only (str.isdigit() also takes '²' and '١'), at most `high`."""
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit() and int(text) <= high


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name) or request.query_params.get(f"pagination.{name}")
    if text is None or text == "":
        return default
    if not _is_uint(text, high) or not low <= int(text):
        raise ApiError(3, f"{name} must be an integer between {low} and {high}")
    return int(text)


# --- the app ----------------------------------------------------------------------------


def create_app(
    ledger: Ledger, network: Network | None = None, *, moniker: str = "gonka-devnet-node"
) -> FastAPI:
    """The node's FastAPI application over `ledger` (and the mining API over `network`)."""
    app = FastAPI(title="gonka node", version=__version__, docs_url=None, redoc_url=None)
    started = time.monotonic()
    chain_id = ledger.chain_id

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.grpc_code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        grpc = {404: 5, 405: 12}.get(exc.status_code, 3)
        return _error(exc.status_code, grpc, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, 3, f"invalid request: {where}: {first.get('msg', 'bad value')}")

    @app.exception_handler(GonkaError)
    async def gonka_error(request: Request, exc: GonkaError) -> Response:
        return _error(400, 3, str(exc))

    @app.middleware("http")
    async def internal_errors(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        try:
            return await call_next(request)
        except Exception:  # a bug of ours: log it, answer in the API's shape
            log.exception("internal error on %s %s", request.method, request.url.path)
            return _error(500, 13, "internal error; see the node's log")

    # -- node and blocks -----------------------------------------------------------------

    @app.get("/cosmos/base/tendermint/v1beta1/node_info")
    async def node_info() -> Response:
        return _json(
            {
                "default_node_info": {
                    "network": chain_id,
                    "moniker": moniker,
                    "version": __version__,
                    "protocol_version": {"p2p": "0", "block": "0", "app": "0"},
                },
                "application_version": {
                    "name": "gonka",
                    "app_name": "gonka node",
                    "version": __version__,
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
        if not _is_uint(height, MAX_HEIGHT):
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
        tx_bytes = _tx_bytes(await read_json(request))
        outcome = ledger.simulate(tx_bytes)
        if not outcome.ok:
            raise ApiError(3, f"rpc error: code = Unknown desc = {outcome.raw_log}")
        return _json(
            {
                "gas_info": {
                    "gas_wanted": str(outcome.gas_wanted),
                    "gas_used": str(outcome.gas_used),
                },
                "result": {"data": "", "log": "", "events": [], "msg_responses": []},
            }
        )

    @app.post("/cosmos/tx/v1beta1/txs")
    async def broadcast(request: Request) -> Response:
        body = await read_json(request)
        mode = body.get("mode", "BROADCAST_MODE_SYNC")
        if mode == "BROADCAST_MODE_BLOCK":
            raise ApiError(3, "BROADCAST_MODE_BLOCK was removed in SDK v0.47: use SYNC and poll")
        if mode not in ("BROADCAST_MODE_SYNC", "BROADCAST_MODE_ASYNC"):
            raise ApiError(3, f"unsupported broadcast mode {mode!r}")
        txhash, outcome = ledger.check_tx(_tx_bytes(body))
        if mode == "BROADCAST_MODE_ASYNC":
            # ASYNC answers before CheckTx on a real node; the result is then unknown.
            outcome = Outcome()
        return _json(broadcast_response(txhash, outcome))

    @app.get("/cosmos/tx/v1beta1/txs/{txhash}")
    async def get_tx(txhash: str) -> Response:
        if len(txhash) != 64 or not all(c in "0123456789abcdefABCDEF" for c in txhash):
            raise ApiError(3, f"invalid tx hash {txhash!r}: 64 hex characters expected")
        record = ledger.tx(txhash)
        if record is None:
            raise ApiError(5, f"tx not found: {txhash.upper()}")
        response = tx_response(record)
        return _json({"tx": response["tx"], "tx_response": response})

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
        responses = [tx_response(r) for r in records]
        return _json(
            {
                "txs": [r["tx"] for r in responses],
                "tx_responses": responses,
                "pagination": None,
                "total": str(total),
            }
        )

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
            if not isinstance(amount_text, (str, int)) or isinstance(amount_text, bool):
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
