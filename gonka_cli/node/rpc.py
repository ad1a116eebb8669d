"""CometBFT's JSON-RPC for the local node (the `rpc` URL of cosmjs, Keplr and `inferenced`).

What CometBFT v0.38 serves on its RPC port, over the same ledger as the REST API:

- URI requests (`GET /status`, `GET /block?height=5`, `GET /tx?hash=0xABCD`) and JSON-RPC 2.0
  POSTs to `/` (one request or a batch);
- `status`, `abci_info`, `abci_query`, `broadcast_tx_sync|async|commit`, `tx`, `tx_search`,
  `block`, `block_results`, `blockchain`, `validators`, `health` and `net_info`;
- `abci_query` answers the gRPC query paths of the Cosmos SDK that cosmjs and Keplr use, in
  protobuf (`QUERY_PATHS`), with the SDK's ABCI codes for failures;
- `/websocket`: the same methods, plus `subscribe` to `tm.event='NewBlock'` and `tm.event='Tx'`
  (optionally narrowed with `AND key='value'` on the transaction's events).

The JSON shapes are CometBFT's: int64 as strings, bytes as base64, hashes as upper-case hex.
A request that cannot be answered gets a JSON-RPC error (-32700 parse error, -32600 invalid
request, -32601 unknown method, -32602 invalid params, -32603 for what the method refused,
such as a height the chain does not have), never an HTTP error without a JSON-RPC body.

The devnet has one validator (the node's key) and no Merkle store: `app_hash` is the SHA-256
of the block hash, commits carry no signatures, and `abci_query` has no proofs.

It is a bare ASGI application: handlers run on the event loop one at a time, like the REST
API's, so the ledger is never used by two requests at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

from gonka_cli import __version__
from gonka_cli.chain import tx as txlib
from gonka_cli.chain.amount import DENOM
from gonka_cli.crypto import address as addr
from gonka_cli.errors import InputError

# COMETBFT_VERSION is what `status` reports: cosmjs picks its client by it.
from gonka_cli.node.api import COMETBFT_VERSION, COSMOS_SDK_VERSION, decoded_tx, tx_response
from gonka_cli.node.http import MAX_BODY_BYTES
from gonka_cli.node.ledger import Block, Ledger, Outcome, TxRecord, tx_msg_data
from gonka_cli.validate import is_int

if TYPE_CHECKING:
    from google.protobuf.message import Message

log = logging.getLogger(__name__)

DEFAULT_RPC_PORT = 26657
MAX_HEIGHT = 2**63 - 1
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30
#: CometBFT's `max_subscriptions_per_client`.
MAX_SUBSCRIPTIONS = 5
#: Events queued for one websocket client before it is dropped as too slow.
MAX_QUEUED_EVENTS = 1000
#: CometBFT's `timeout_broadcast_tx_commit`.
COMMIT_TIMEOUT_S = 10.0
#: Conditions joined by AND in one query.
MAX_QUERY_CONDITIONS = 16
MAX_QUERY_CHARS = 4096

# JSON-RPC 2.0 error codes, with CometBFT's messages.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
_MESSAGES = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
}

_BUG = "internal error; see the node's log"
_EMPTY_HASH = hashlib.sha256(b"").hexdigest().upper()
_SECP256K1_PUBKEY = "tendermint/PubKeySecp256k1"


class RpcError(Exception):
    """A JSON-RPC error: `code` from the table above, `data` says what was wrong."""

    def __init__(self, code: int, data: str, http_status: int = 500) -> None:
        super().__init__(data)
        self.code = code
        self.data = data
        self.http_status = http_status

    def body(self, request_id: Any) -> dict[str, Any]:
        return {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {"code": self.code, "message": _MESSAGES[self.code], "data": self.data},
        }


def _invalid(text: str) -> RpcError:
    return RpcError(INVALID_PARAMS, text)


def _refused(text: str) -> RpcError:
    return RpcError(INTERNAL_ERROR, text)


# --- encodings --------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _digest(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def merkle_root(items: list[bytes]) -> bytes:
    """CometBFT's (RFC 6962) Merkle root of `items`: SHA-256 of nothing for an empty list."""
    if not items:
        return _digest()
    if len(items) == 1:
        return _digest(b"\x00", items[0])
    split = 1 << ((len(items) - 1).bit_length() - 1)
    return _digest(b"\x01", merkle_root(items[:split]), merkle_root(items[split:]))


def app_hash(block_hash: str) -> str:
    """The devnet's stand-in for the app hash (it keeps no Merkle store)."""
    return _digest(b"app", bytes.fromhex(block_hash)).hex().upper()


def _tx_data(record: TxRecord) -> bytes:
    """`TxMsgData` of a successful transaction (empty for a failed one)."""
    decoded = decoded_tx(record.tx_bytes) if record.code == 0 else None
    return tx_msg_data(decoded) if decoded is not None else b""


def _events(record: TxRecord) -> list[dict[str, Any]]:
    """The transaction's events, as the REST API reports them (the SDK's)."""
    events: list[dict[str, Any]] = tx_response(record)["events"]
    return events


def exec_tx_result(record: TxRecord) -> dict[str, Any]:
    """CometBFT's `ExecTxResult` for a transaction in a block."""
    return {
        "code": record.code,
        "data": _b64(_tx_data(record)),
        "log": record.raw_log,
        "info": "",
        "gas_wanted": str(record.gas_wanted),
        "gas_used": str(record.gas_used),
        "events": _events(record),
        "codespace": record.codespace,
    }


def _check_tx_result(outcome: Outcome) -> dict[str, Any]:
    return {
        "code": outcome.code,
        "data": "",
        "log": outcome.raw_log,
        "info": "",
        "gas_wanted": str(outcome.gas_wanted),
        "gas_used": str(outcome.gas_used),
        "events": [],
        "codespace": outcome.codespace,
    }


def tx_result_json(record: TxRecord) -> dict[str, Any]:
    """CometBFT's `ResultTx` (the answer of `tx`, an item of `tx_search`)."""
    return {
        "hash": record.hash.upper(),
        "height": str(record.height),
        "index": record.index,
        "tx_result": exec_tx_result(record),
        "tx": _b64(record.tx_bytes),
    }


# --- parameters -------------------------------------------------------------------------


def _int_param(value: Any, name: str, low: int = 0, high: int = MAX_HEIGHT) -> int:
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] == "-" else text
        if not digits.isascii() or not digits.isdigit() or len(digits) > 20:
            raise _invalid(f"{name}: {value[:40]!r} is not an integer")
        value = int(text)
    if not is_int(value):
        raise _invalid(f"{name}: expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise _invalid(f"{name}: {value} is out of range [{low}, {high}]")
    return int(value)


def _str_param(value: Any, name: str, max_chars: int = MAX_QUERY_CHARS) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{name}: expected a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise _invalid(f"{name}: longer than {max_chars} characters")
    return value


def _bool_param(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise _invalid(f"{name}: expected true or false")


def _base64_param(value: Any, name: str) -> bytes:
    """Bytes as JSON-RPC carries them: base64 (or 0x-prefixed hex, as URI requests write)."""
    text = _str_param(value, name, 2 * MAX_BODY_BYTES)
    if text[:2] in ("0x", "0X"):
        return _hex_param(text, name)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{name}: not valid base64") from None


def _hex_param(value: Any, name: str) -> bytes:
    """`HexBytes`: hex, with or without 0x."""
    text = _str_param(value, name, 2 * MAX_BODY_BYTES)
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise _invalid(f"{name}: not valid hex") from None


def _hash_param(value: Any, name: str = "hash") -> str:
    data = _base64_param(value, name)
    if len(data) != 32:
        raise _invalid(f"{name}: a transaction hash is 32 bytes, got {len(data)}")
    return data.hex().upper()


def _uri_value(text: str) -> Any:
    """A URI parameter: "quoted" is a string, 0x... hex stays as it is, the rest is literal."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return json.loads(text)
        except ValueError:
            raise _invalid(f"cannot parse the quoted value {text[:40]!r}") from None
    return text


@dataclass
class _Condition:
    key: str
    value: str


def parse_query(query: str, *, event_query: bool = False) -> list[_Condition]:
    """A CometBFT query limited to `key='value'` (or `key=N`) conditions joined by AND."""
    text = query.strip()
    if not text:
        raise _invalid("query cannot be empty")
    parts = text.split(" AND ")
    if len(parts) > MAX_QUERY_CONDITIONS:
        raise _invalid(f"query: at most {MAX_QUERY_CONDITIONS} conditions, got {len(parts)}")
    conditions = []
    for part in parts:
        key, sep, value = part.strip().partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise _invalid(f"failed to parse query {query[:80]!r}: expected key='value' [AND ...]")
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif not (value.isascii() and value.isdigit()):
            raise _invalid(f"failed to parse query {query[:80]!r}: quote the value, as key='value'")
        conditions.append(_Condition(key, value))
    if event_query and not any(c.key == "tm.event" for c in conditions):
        raise _invalid("query must name the event type, as tm.event='NewBlock' or tm.event='Tx'")
    return conditions


def _search_conditions(conditions: list[_Condition]) -> list[tuple[str, str]]:
    """The conditions `Ledger.search` understands (its keys are the indexed events)."""
    allowed = ("message.sender", "transfer.recipient", "transfer.sender", "tx.height", "tx.hash")
    out = []
    for c in conditions:
        if c.key == "tm.event" and c.value == "Tx":
            continue
        if c.key not in allowed:
            raise _invalid(f"unsupported query key {c.key!r}; supported: {', '.join(allowed)}")
        if c.key == "tx.height" and not (c.value.isdigit() and len(c.value) < 19):
            raise _invalid("tx.height takes a number")
        out.append((c.key, c.value))
    return out


# --- the server -------------------------------------------------------------------------

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass
class _Method:
    handler: Handler
    params: tuple[str, ...] = ()


@dataclass(eq=False)  # compared and hashed by identity: a set holds the connected ones
class _Subscriber:
    """One websocket client: its subscriptions (query -> the subscribe request's id)."""

    queue: asyncio.Queue[dict[str, Any] | None]
    subscriptions: dict[str, tuple[Any, list[_Condition]]] = field(default_factory=dict)


class RpcServer:
    """CometBFT's RPC over one ledger, as an ASGI application."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        rpc_address: str = "",
        moniker: str = "gonka-devnet-node",
    ) -> None:
        self.ledger = ledger
        self.rpc_address = rpc_address
        self.moniker = moniker
        self.chain_id = ledger.chain_id
        node = ledger.account(ledger.node_address) if ledger.node_address else None
        self._validator_pubkey = node.pubkey if node and node.pubkey else b""
        self._validator_address = (
            addr.address_bytes_from_pubkey(self._validator_pubkey).hex().upper()
            if self._validator_pubkey
            else _digest(self.chain_id.encode())[:20].hex().upper()
        )
        self._subscribers: set[_Subscriber] = set()
        self._commit_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.methods: dict[str, _Method] = {
            "health": _Method(self._health),
            "status": _Method(self._status),
            "net_info": _Method(self._net_info),
            "abci_info": _Method(self._abci_info),
            "abci_query": _Method(self._abci_query, ("path", "data", "height", "prove")),
            "broadcast_tx_sync": _Method(self._broadcast_sync, ("tx",)),
            "broadcast_tx_async": _Method(self._broadcast_async, ("tx",)),
            "broadcast_tx_commit": _Method(self._broadcast_commit, ("tx",)),
            "tx": _Method(self._tx, ("hash", "prove")),
            "tx_search": _Method(
                self._tx_search, ("query", "prove", "page", "per_page", "order_by")
            ),
            "block": _Method(self._block, ("height",)),
            "block_results": _Method(self._block_results, ("height",)),
            "blockchain": _Method(self._blockchain, ("minHeight", "maxHeight")),
            "validators": _Method(self._validators, ("height", "page", "per_page")),
        }

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, body = await self._http(scope, receive)
        except Exception:  # a bug of ours: answered in JSON-RPC's shape, logged
            log.exception("internal error on RPC %s %s", scope.get("method"), scope.get("path"))
            status, body = (
                500,
                RpcError(INTERNAL_ERROR, _BUG).body(-1),
            )
        payload = json.dumps(body, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _read_body(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]]
    ) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RpcError(INVALID_REQUEST, "the client disconnected", 400)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise RpcError(
                    INVALID_REQUEST, f"request body too large (limit {MAX_BODY_BYTES} bytes)", 413
                )
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _http(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]]
    ) -> tuple[int, Any]:
        method = scope["method"]
        path = scope["path"]
        if method == "POST":
            try:
                raw = await self._read_body(scope, receive)
            except RpcError as exc:
                return exc.http_status, exc.body(-1)
            return await self._post(raw)
        if method not in ("GET", "HEAD"):
            return 405, RpcError(INVALID_REQUEST, f"HTTP {method[:16]} is not served", 405).body(-1)
        name = path.strip("/")
        if not name:
            return 200, {"jsonrpc": "2.0", "id": -1, "result": {"methods": sorted(self.methods)}}
        entry = self.methods.get(name)
        if entry is None:
            return 404, RpcError(METHOD_NOT_FOUND, f"unknown method {name[:64]!r}").body(-1)
        try:
            query = scope.get("query_string", b"").decode("utf-8")
            params = {}
            for key, value in parse_qsl(query, keep_blank_values=True, max_num_fields=32):
                if key in entry.params:
                    params[key] = _uri_value(value)
            result = await entry.handler(params)
        except RpcError as exc:
            return exc.http_status, exc.body(-1)
        except (UnicodeDecodeError, ValueError):
            return 500, _invalid("the query string is not valid").body(-1)
        return 200, {"jsonrpc": "2.0", "id": -1, "result": result}

    async def _post(self, raw: bytes) -> tuple[int, Any]:
        try:
            request = json.loads(raw)
        except (ValueError, RecursionError):
            return 500, RpcError(PARSE_ERROR, "the request body is not valid JSON").body(None)
        if isinstance(request, list):
            if not request:
                return 500, RpcError(INVALID_REQUEST, "empty batch").body(None)
            if len(request) > 100:
                return 500, RpcError(INVALID_REQUEST, "at most 100 requests in a batch").body(None)
            answers = [await self.call(item) for item in request]
            return 200, [a for a in answers if a is not None]
        answer = await self.call(request)
        if answer is None:  # a notification: nothing to answer
            return 200, {}
        if "error" in answer and answer["error"]["code"] in (PARSE_ERROR, INVALID_REQUEST):
            return 500, answer
        return 200, answer

    async def call(self, request: Any) -> dict[str, Any] | None:
        """Answer one JSON-RPC request object (None for a notification, which has no id)."""
        if not isinstance(request, dict):
            return RpcError(INVALID_REQUEST, "a request must be a JSON object").body(None)
        request_id = request.get("id")
        if request_id is not None and not (
            (isinstance(request_id, str) and len(request_id) <= 256)
            or (is_int(request_id) and abs(request_id) < 2**63)
        ):
            return RpcError(INVALID_REQUEST, "id must be a string or an integer").body(None)
        if request.get("jsonrpc") != "2.0":
            return RpcError(INVALID_REQUEST, 'jsonrpc must be "2.0"').body(request_id)
        name = request.get("method")
        if not isinstance(name, str):
            return RpcError(INVALID_REQUEST, "method must be a string").body(request_id)
        if "id" not in request:
            return None
        entry = self.methods.get(name)
        if entry is None:
            return RpcError(METHOD_NOT_FOUND, f"unknown method {name[:64]!r}").body(request_id)
        try:
            params = _named_params(request.get("params"), entry.params)
            result = await entry.handler(params)
        except RpcError as exc:
            return exc.body(request_id)
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    # -- methods -------------------------------------------------------------------------

    async def _health(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _node_info(self) -> dict[str, Any]:
        return {
            "protocol_version": {"p2p": "8", "block": "11", "app": "0"},
            "id": self._validator_address.lower(),
            "listen_addr": "tcp://127.0.0.1:26656",
            "network": self.chain_id,
            "version": COMETBFT_VERSION,
            "channels": "40202122233038606100",
            "moniker": self.moniker,
            "other": {"tx_index": "on", "rpc_address": self.rpc_address},
        }

    def _validator(self) -> dict[str, Any]:
        return {
            "address": self._validator_address,
            "pub_key": {"type": _SECP256K1_PUBKEY, "value": _b64(self._validator_pubkey)},
            "voting_power": "10",
        }

    async def _status(self, params: dict[str, Any]) -> dict[str, Any]:
        ledger = self.ledger
        first = ledger.block(1)
        return {
            "node_info": self._node_info(),
            "sync_info": {
                "latest_block_hash": ledger.last_hash,
                "latest_app_hash": app_hash(ledger.last_hash),
                "latest_block_height": str(ledger.height),
                "latest_block_time": ledger.last_time,
                "earliest_block_hash": first.hash if first else "",
                "earliest_app_hash": app_hash(first.hash) if first else "",
                "earliest_block_height": "1" if first else "0",
                "earliest_block_time": first.time if first else ledger.genesis.genesis_time,
                "catching_up": False,
            },
            "validator_info": self._validator(),
        }

    async def _net_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"listening": True, "listeners": [], "n_peers": "0", "peers": []}

    async def _abci_info(self, params: dict[str, Any]) -> dict[str, Any]:
        ledger = self.ledger
        return {
            "response": {
                "data": "gonka",
                "version": __version__,
                "app_version": "0",
                "last_block_height": str(ledger.height),
                "last_block_app_hash": _b64(bytes.fromhex(app_hash(ledger.last_hash))),
            }
        }

    def _height(self, params: dict[str, Any]) -> int:
        """The `height` parameter, checked against the chain as CometBFT does (0: latest)."""
        value = params.get("height")
        if value is None or value == "":
            height = 0
        else:
            height = _int_param(value, "height", -MAX_HEIGHT, MAX_HEIGHT)
        current = self.ledger.height
        if height == 0:
            if current == 0:
                raise _refused("no block yet: the node has not made its first block")
            return current
        if height < 0:
            raise _refused(f"height must be greater than 0, but got {height}")
        if height > current:
            raise _refused(
                f"height {height} must be less than or equal to the current blockchain "
                f"height {current}"
            )
        return height

    def _get_block(self, height: int) -> Block:
        block = self.ledger.block(height)
        if block is None:
            raise _refused(f"height {height} is not available")
        return block

    async def _block(self, params: dict[str, Any]) -> dict[str, Any]:
        block = self._get_block(self._height(params))
        return self._block_response(block)

    def _block_response(self, block: Block) -> dict[str, Any]:
        txs = [self._tx_bytes(h) for h in block.tx_hashes]
        return {"block_id": _block_id(block.hash), "block": self._block_json(block, txs)}

    def _tx_bytes(self, txhash: str) -> bytes:
        record = self.ledger.tx(txhash)
        return record.tx_bytes if record else b""

    def _block_json(self, block: Block, txs: list[bytes]) -> dict[str, Any]:
        first = block.height == 1
        last_id = _block_id("") if first else _block_id(block.prev_hash)
        return {
            "header": self._header(block, txs),
            "data": {"txs": [_b64(t) for t in txs]},
            "evidence": {"evidence": []},
            "last_commit": {
                "height": str(block.height - 1),
                "round": 0,
                "block_id": last_id,
                "signatures": [],
            },
        }

    def _header(self, block: Block, txs: list[bytes]) -> dict[str, Any]:
        first = block.height == 1
        prev = self.ledger.block(block.height - 1) if not first else None
        validators_hash = merkle_root([self._validator_pubkey]).hex().upper()
        return {
            "version": {"block": "11", "app": "0"},
            "chain_id": self.chain_id,
            "height": str(block.height),
            "time": block.time,
            "last_block_id": _block_id("") if first else _block_id(block.prev_hash),
            "last_commit_hash": _EMPTY_HASH,
            "data_hash": merkle_root([_digest(t) for t in txs]).hex().upper(),
            "validators_hash": validators_hash,
            "next_validators_hash": validators_hash,
            "consensus_hash": _digest(self.chain_id.encode(), b"consensus").hex().upper(),
            # The app hash a header carries is the one after the previous block.
            "app_hash": app_hash(prev.hash) if prev else _EMPTY_HASH,
            "last_results_hash": _EMPTY_HASH,
            "evidence_hash": _EMPTY_HASH,
            "proposer_address": self._validator_address,
        }

    async def _block_results(self, params: dict[str, Any]) -> dict[str, Any]:
        block = self._get_block(self._height(params))
        results = []
        for h in block.tx_hashes:
            record = self.ledger.tx(h)
            if record is not None:
                results.append(exec_tx_result(record))
        return {
            "height": str(block.height),
            "txs_results": results or None,
            "finalize_block_events": [],
            "validator_updates": None,
            "consensus_param_updates": None,
            "app_hash": _b64(bytes.fromhex(app_hash(block.hash))),
        }

    async def _blockchain(self, params: dict[str, Any]) -> dict[str, Any]:
        current = self.ledger.height
        low = _int_param(params.get("minHeight") or 0, "minHeight", 0, MAX_HEIGHT)
        high = _int_param(params.get("maxHeight") or 0, "maxHeight", 0, MAX_HEIGHT)
        if current == 0:
            raise _refused("no block yet: the node has not made its first block")
        high = current if high == 0 else min(high, current)
        low = max(low, 1, high - 19)  # CometBFT returns at most 20 blocks
        if low > high:
            raise _refused(f"min height {low} can't be greater than max height {high}")
        metas = []
        for height in range(high, low - 1, -1):
            block = self._get_block(height)
            txs = [self._tx_bytes(h) for h in block.tx_hashes]
            metas.append(
                {
                    "block_id": _block_id(block.hash),
                    "block_size": str(sum(len(t) for t in txs) + 200),
                    "header": self._header(block, txs),
                    "num_txs": str(len(txs)),
                }
            )
        return {"last_height": str(current), "block_metas": metas}

    async def _validators(self, params: dict[str, Any]) -> dict[str, Any]:
        height = self._height(params)
        page = _int_param(params.get("page") or 1, "page", 1, 1_000_000)
        _int_param(params.get("per_page") or DEFAULT_PER_PAGE, "per_page", 1, MAX_PER_PAGE)
        if page != 1:
            raise _refused(f"page should be within [1, 1] range, given {page}")
        validator = {**self._validator(), "proposer_priority": "0"}
        return {"block_height": str(height), "validators": [validator], "count": "1", "total": "1"}

    # -- transactions ----------------------------------------------------------------------

    async def _broadcast_sync(self, params: dict[str, Any]) -> dict[str, Any]:
        tx_bytes = _base64_param(_required(params, "tx"), "tx")
        txhash, outcome = self.ledger.check_tx(tx_bytes)
        return _broadcast_json(txhash, outcome)

    async def _broadcast_async(self, params: dict[str, Any]) -> dict[str, Any]:
        tx_bytes = _base64_param(_required(params, "tx"), "tx")
        txhash, _ = self.ledger.check_tx(tx_bytes)
        # ASYNC answers before CheckTx on a real node: the result is not known yet.
        return _broadcast_json(txhash, Outcome())

    async def _broadcast_commit(self, params: dict[str, Any]) -> dict[str, Any]:
        tx_bytes = _base64_param(_required(params, "tx"), "tx")
        txhash = txlib.tx_hash(tx_bytes)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commit_waiters.setdefault(txhash, []).append(waiter)
        try:
            txhash, outcome = self.ledger.check_tx(tx_bytes)
            if not outcome.ok:
                return {
                    "check_tx": _check_tx_result(outcome),
                    "tx_result": _check_tx_result(Outcome()),
                    "hash": txhash,
                    "height": "0",
                }
            try:
                await asyncio.wait_for(waiter, COMMIT_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise _refused("timed out waiting for tx to be included in a block") from None
        finally:
            waiters = self._commit_waiters.get(txhash, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._commit_waiters.pop(txhash, None)
        record = self.ledger.tx(txhash)
        if record is None:
            raise _refused("the transaction was not found in its block")
        return {
            "check_tx": _check_tx_result(outcome),
            "tx_result": exec_tx_result(record),
            "hash": txhash,
            "height": str(record.height),
        }

    async def _tx(self, params: dict[str, Any]) -> dict[str, Any]:
        txhash = _hash_param(_required(params, "hash"))
        record = self.ledger.tx(txhash)
        if record is None:
            raise _refused(f"tx ({txhash}) not found")
        return tx_result_json(record)

    async def _tx_search(self, params: dict[str, Any]) -> dict[str, Any]:
        query = _str_param(_required(params, "query"), "query")
        conditions = _search_conditions(parse_query(query))
        page = _int_param(params.get("page") or 1, "page", 1, 1_000_000)
        per_page = _int_param(params.get("per_page") or DEFAULT_PER_PAGE, "per_page", 1, MAX_HEIGHT)
        per_page = min(per_page, MAX_PER_PAGE)  # CometBFT caps it rather than refuse
        order = params.get("order_by") or "asc"
        if order not in ("asc", "desc"):
            raise _invalid("order_by: expected asc or desc")
        records, total = self.ledger.search(
            conditions, limit=per_page, offset=(page - 1) * per_page, newest_first=order == "desc"
        )
        pages = max(1, -(-total // per_page))
        if page > pages:
            raise _refused(f"page should be within [1, {pages}] range, given {page}")
        return {"txs": [tx_result_json(r) for r in records], "total_count": str(total)}

    # -- abci_query --------------------------------------------------------------------------

    async def _abci_query(self, params: dict[str, Any]) -> dict[str, Any]:
        path = _str_param(_required(params, "path"), "path", 256)
        data = _hex_param(params.get("data") or "", "data")
        if params.get("height") not in (None, "", 0, "0"):
            self._height(params)  # checked; the devnet keeps only the latest state
        if params.get("prove") not in (None, ""):
            _bool_param(params["prove"], "prove")
        height = self.ledger.height
        handler = _QUERY_HANDLERS.get(path)
        if handler is None:
            return _query_response(6, "sdk", f"unknown query path {path}: unknown request", height)
        try:
            value = handler(self, data)
        except _QueryError as exc:
            return _query_response(exc.code, "sdk", exc.log, height)
        return _query_response(0, "", "", height, value.SerializeToString())

    def _q_account(self, data: bytes) -> Message:
        from google.protobuf import any_pb2

        from gonka_cli.chain.proto.cosmos.auth.v1beta1 import auth_pb2
        from gonka_cli.chain.proto.cosmos.auth.v1beta1 import query_pb2 as auth_query

        request = _parse(auth_query.QueryAccountRequest, data)
        address = _query_address(request.address)
        account = self.ledger.account(address)
        if account is None:
            raise _QueryError(
                38,
                f"rpc error: code = NotFound desc = account {address} not found: key not found",
            )
        base = auth_pb2.BaseAccount(
            address=address, account_number=account.number, sequence=account.sequence
        )
        if account.pubkey:
            from gonka_cli.chain.proto.cosmos.crypto.secp256k1 import keys_pb2

            base.pub_key.CopyFrom(
                any_pb2.Any(
                    type_url=txlib.SECP256K1_PUBKEY_TYPE_URL,
                    value=keys_pb2.PubKey(key=account.pubkey).SerializeToString(),
                )
            )
        packed = any_pb2.Any(
            type_url="/cosmos.auth.v1beta1.BaseAccount", value=base.SerializeToString()
        )
        return auth_query.QueryAccountResponse(account=packed)

    def _coins(self, address: str) -> list[Any]:
        from gonka_cli.chain.proto.cosmos.base.v1beta1 import coin_pb2

        account = self.ledger.account(address)
        amount = account.balance if account else 0
        return [coin_pb2.Coin(denom=DENOM, amount=str(amount))] if amount else []

    def _q_balance(self, data: bytes) -> Message:
        from gonka_cli.chain.proto.cosmos.bank.v1beta1 import query_pb2 as bank_query
        from gonka_cli.chain.proto.cosmos.base.v1beta1 import coin_pb2

        request = _parse(bank_query.QueryBalanceRequest, data)
        address = _query_address(request.address)
        if not request.denom:
            raise _QueryError(
                18, "rpc error: code = InvalidArgument desc = invalid denom: invalid request"
            )
        account = self.ledger.account(address)
        amount = account.balance if account and request.denom == DENOM else 0
        return bank_query.QueryBalanceResponse(
            balance=coin_pb2.Coin(denom=request.denom, amount=str(amount))
        )

    def _q_all_balances(self, data: bytes) -> Message:
        from gonka_cli.chain.proto.cosmos.bank.v1beta1 import query_pb2 as bank_query

        return self._balances(
            data, bank_query.QueryAllBalancesRequest, bank_query.QueryAllBalancesResponse
        )

    def _q_spendable(self, data: bytes) -> Message:
        from gonka_cli.chain.proto.cosmos.bank.v1beta1 import query_pb2 as bank_query

        # No vesting or locks on the devnet: everything held is spendable.
        return self._balances(
            data,
            bank_query.QuerySpendableBalancesRequest,
            bank_query.QuerySpendableBalancesResponse,
        )

    def _balances(self, data: bytes, request_type: Any, response_type: Any) -> Message:
        """A balances query answered with every coin held (one page, `total` set)."""
        request = _parse(request_type, data)
        coins = self._coins(_query_address(request.address))
        response = response_type(balances=coins)
        response.pagination.total = len(coins)
        return cast("Message", response)

    def _q_simulate(self, data: bytes) -> Message:
        from gonka_cli.chain.proto.cosmos.tx.v1beta1 import service_pb2

        request = _parse(service_pb2.SimulateRequest, data)
        tx_bytes = request.tx_bytes or (
            request.tx.SerializeToString() if request.HasField("tx") else b""
        )
        if not tx_bytes:
            raise _QueryError(
                18,
                "rpc error: code = InvalidArgument desc = empty txBytes is not allowed"
                ": invalid request",
            )
        outcome = self.ledger.simulate(tx_bytes)
        if not outcome.ok:
            raise _QueryError(
                6,
                f"rpc error: code = Unknown desc = {outcome.raw_log} With gas wanted: "
                f"'{outcome.gas_wanted}' and gas used: '{outcome.gas_used}' : unknown request",
            )
        response = service_pb2.SimulateResponse()
        response.gas_info.gas_wanted = outcome.gas_wanted
        response.gas_info.gas_used = outcome.gas_used
        response.result.log = ""
        return response

    def _q_get_tx(self, data: bytes) -> Message:
        from google.protobuf import any_pb2

        from gonka_cli.chain.proto.cosmos.tx.v1beta1 import service_pb2

        request = _parse(service_pb2.GetTxRequest, data)
        text = request.hash
        if len(text) != 64 or not all(c in "0123456789abcdefABCDEF" for c in text):
            raise _QueryError(
                18,
                "rpc error: code = InvalidArgument desc = tx hash must be 64 hex characters"
                ": invalid request",
            )
        record = self.ledger.tx(text)
        if record is None:
            raise _QueryError(
                38, f"rpc error: code = NotFound desc = tx not found: {text.upper()}: key not found"
            )
        response = service_pb2.GetTxResponse()
        response.tx.ParseFromString(record.tx_bytes)
        r = response.tx_response
        r.height = record.height
        r.txhash = record.hash.upper()
        r.codespace = record.codespace
        r.code = record.code
        r.data = _tx_data(record).hex().upper()
        r.raw_log = record.raw_log
        r.gas_wanted = record.gas_wanted
        r.gas_used = record.gas_used
        r.tx.CopyFrom(any_pb2.Any(type_url="/cosmos.tx.v1beta1.Tx", value=record.tx_bytes))
        r.timestamp = record.time[:19] + "Z"
        for event in _events(record):
            e = r.events.add(type=event["type"])
            for a in event["attributes"]:
                e.attributes.add(key=a["key"], value=a["value"], index=bool(a.get("index")))
        return response

    def _q_node_info(self, data: bytes) -> Message:
        from gonka_cli.chain.proto.cosmos.base.tendermint.v1beta1 import query_pb2 as tm_query

        response = tm_query.GetNodeInfoResponse()
        info = response.default_node_info
        info.protocol_version.p2p, info.protocol_version.block = 8, 11
        info.default_node_id = self._validator_address.lower()
        info.listen_addr = "tcp://127.0.0.1:26656"
        info.network = self.chain_id
        info.version = COMETBFT_VERSION
        info.channels = bytes.fromhex("40202122233038606100")
        info.moniker = self.moniker
        info.other.tx_index = "on"
        info.other.rpc_address = self.rpc_address
        app = response.application_version
        app.name, app.app_name, app.version = "gonka", "gonka node", __version__
        app.cosmos_sdk_version = COSMOS_SDK_VERSION
        return response

    def _q_latest_block(self, data: bytes) -> Message:
        from gonka_cli.chain.proto.cosmos.base.tendermint.v1beta1 import query_pb2 as tm_query

        if self.ledger.height == 0:
            raise _QueryError(
                18, "rpc error: code = InvalidArgument desc = no block yet: invalid request"
            )
        block = self._get_block(self.ledger.height)
        txs = [self._tx_bytes(h) for h in block.tx_hashes]
        header = self._header(block, txs)
        response = tm_query.GetLatestBlockResponse()
        _fill_block_id(response.block_id, block.hash)
        h = response.block.header
        h.version.block = 11
        h.chain_id = self.chain_id
        h.height = block.height
        h.time.FromJsonString(block.time)
        if block.height > 1:
            _fill_block_id(h.last_block_id, block.prev_hash)
        for name in (
            "last_commit_hash",
            "data_hash",
            "validators_hash",
            "next_validators_hash",
            "consensus_hash",
            "app_hash",
            "last_results_hash",
            "evidence_hash",
            "proposer_address",
        ):
            setattr(h, name, bytes.fromhex(header[name]))
        response.block.data.txs.extend(txs)
        response.block.evidence.SetInParent()
        commit = response.block.last_commit
        commit.height = block.height - 1
        if block.height > 1:
            _fill_block_id(commit.block_id, block.prev_hash)
        return response

    # -- events ----------------------------------------------------------------------------

    def on_block(self, block: Block) -> None:
        """Called on the event loop after each block: wakes `broadcast_tx_commit` waiters and
        sends NewBlock and Tx events to websocket subscribers."""
        for txhash in block.tx_hashes:
            for waiter in self._commit_waiters.get(txhash, ()):
                if not waiter.done():
                    waiter.set_result(None)
        if not self._subscribers:
            return
        records = [r for r in (self.ledger.tx(h) for h in block.tx_hashes) if r is not None]
        txs = [r.tx_bytes for r in records]
        results = [exec_tx_result(r) for r in records]
        new_block = {
            "type": "tendermint/event/NewBlock",
            "value": {
                "block": self._block_json(block, txs),
                "block_id": _block_id(block.hash),
                "result_finalize_block": {
                    "events": [],
                    "tx_results": results or None,
                    "validator_updates": None,
                    "consensus_param_updates": None,
                    "app_hash": _b64(bytes.fromhex(app_hash(block.hash))),
                },
            },
        }
        block_events = {"tm.event": ["NewBlock"], "block.height": [str(block.height)]}
        tx_events = []
        for record, result in zip(records, results, strict=True):
            events: dict[str, list[str]] = {
                "tm.event": ["Tx"],
                "tx.hash": [record.hash.upper()],
                "tx.height": [str(record.height)],
            }
            for event in result["events"]:
                for a in event["attributes"]:
                    events.setdefault(f"{event['type']}.{a['key']}", []).append(a["value"])
            data = {
                "type": "tendermint/event/Tx",
                "value": {
                    "TxResult": {
                        "height": str(record.height),
                        "index": record.index,
                        "tx": _b64(record.tx_bytes),
                        "result": result,
                    }
                },
            }
            tx_events.append((data, events))
        for subscriber in list(self._subscribers):
            # A copy: a client that falls too far behind is dropped (its subscriptions
            # cleared) on the way.
            for query, (request_id, conditions) in list(subscriber.subscriptions.items()):
                for data, events in [(new_block, block_events), *tx_events]:
                    if subscriber not in self._subscribers:
                        break
                    if _matches(conditions, events):
                        self._push(
                            subscriber,
                            {
                                "jsonrpc": "2.0",
                                "id": request_id,
                                "result": {"query": query, "data": data, "events": events},
                            },
                        )

    def _push(self, subscriber: _Subscriber, message: dict[str, Any]) -> None:
        if subscriber.queue.qsize() >= MAX_QUEUED_EVENTS:
            # Too slow to keep up: CometBFT drops such a client rather than buffer forever.
            self._subscribers.discard(subscriber)
            subscriber.subscriptions.clear()
            subscriber.queue.put_nowait(None)
            return
        subscriber.queue.put_nowait(message)

    async def _websocket(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        if scope["path"].rstrip("/") != "/websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        subscriber = _Subscriber(asyncio.Queue())
        self._subscribers.add(subscriber)

        async def writer() -> None:
            while True:
                message = await subscriber.queue.get()
                if message is None:
                    await send({"type": "websocket.close", "code": 1008})
                    return
                text = json.dumps(message, separators=(",", ":"))
                await send({"type": "websocket.send", "text": text})

        writing = asyncio.create_task(writer())
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text")
                if raw is None:
                    raw = (message.get("bytes") or b"").decode("utf-8", "replace")
                if len(raw) > MAX_BODY_BYTES:
                    answer: Any = RpcError(INVALID_REQUEST, "message too large").body(None)
                else:
                    try:
                        answer = await self._ws_message(subscriber, raw)
                    except Exception:  # a bug of ours: logged, answered, the socket kept
                        log.exception("internal error on RPC websocket message")
                        answer = RpcError(INTERNAL_ERROR, _BUG).body(None)
                if answer is not None and subscriber in self._subscribers:
                    subscriber.queue.put_nowait(answer)
                if writing.done():
                    return
        finally:
            self._subscribers.discard(subscriber)
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writing  # the socket is gone: nothing to tell

    async def _ws_message(self, subscriber: _Subscriber, raw: str) -> dict[str, Any] | None:
        try:
            request = json.loads(raw)
        except (ValueError, RecursionError):
            return RpcError(PARSE_ERROR, "the message is not valid JSON").body(None)
        if not isinstance(request, dict) or request.get("method") not in (
            "subscribe",
            "unsubscribe",
            "unsubscribe_all",
        ):
            return await self.call(request)
        request_id = request.get("id")
        if request.get("jsonrpc") != "2.0" or "id" not in request:
            return RpcError(INVALID_REQUEST, 'jsonrpc must be "2.0", with an id').body(
                request_id if isinstance(request_id, (str, int)) else None
            )
        try:
            params = _named_params(request.get("params"), ("query",))
            method = request["method"]
            if method == "unsubscribe_all":
                if not subscriber.subscriptions:
                    raise _refused("subscription not found")
                subscriber.subscriptions.clear()
                return {"jsonrpc": "2.0", "id": request_id, "result": {}}
            query = _str_param(_required(params, "query"), "query")
            if method == "unsubscribe":
                if subscriber.subscriptions.pop(query, None) is None:
                    raise _refused("subscription not found")
                return {"jsonrpc": "2.0", "id": request_id, "result": {}}
            conditions = parse_query(query, event_query=True)
            if query in subscriber.subscriptions:
                raise _refused("already subscribed")
            if len(subscriber.subscriptions) >= MAX_SUBSCRIPTIONS:
                raise _refused(f"max_subscriptions_per_client {MAX_SUBSCRIPTIONS} reached")
            subscriber.subscriptions[query] = (request_id, conditions)
        except RpcError as exc:
            return exc.body(request_id)
        return {"jsonrpc": "2.0", "id": request_id, "result": {}}


# --- helpers ------------------------------------------------------------------------------


class _QueryError(Exception):
    def __init__(self, code: int, log_text: str) -> None:
        super().__init__(log_text)
        self.code = code
        self.log = log_text


_QUERY_HANDLERS: dict[str, Callable[[RpcServer, bytes], Message]] = {
    "/cosmos.auth.v1beta1.Query/Account": RpcServer._q_account,
    "/cosmos.bank.v1beta1.Query/Balance": RpcServer._q_balance,
    "/cosmos.bank.v1beta1.Query/AllBalances": RpcServer._q_all_balances,
    "/cosmos.bank.v1beta1.Query/SpendableBalances": RpcServer._q_spendable,
    "/cosmos.tx.v1beta1.Service/Simulate": RpcServer._q_simulate,
    "/cosmos.tx.v1beta1.Service/GetTx": RpcServer._q_get_tx,
    "/cosmos.base.tendermint.v1beta1.Service/GetNodeInfo": RpcServer._q_node_info,
    "/cosmos.base.tendermint.v1beta1.Service/GetLatestBlock": RpcServer._q_latest_block,
}
#: The gRPC query paths `abci_query` answers.
QUERY_PATHS = tuple(_QUERY_HANDLERS)


def _parse(message_type: Any, data: bytes) -> Any:
    from google.protobuf.message import DecodeError

    try:
        return message_type.FromString(data)
    except (DecodeError, RecursionError):
        raise _QueryError(
            18,
            f"rpc error: code = InvalidArgument desc = cannot decode the request as "
            f"{message_type.DESCRIPTOR.full_name}: invalid request",
        ) from None


def _query_address(text: str) -> str:
    if not text:
        raise _QueryError(
            18,
            "rpc error: code = InvalidArgument desc = empty address string is not allowed"
            ": invalid request",
        )
    try:
        return addr.normalize(text, "gonka")
    except InputError as exc:
        raise _QueryError(
            18, f"rpc error: code = InvalidArgument desc = invalid address: {exc}: invalid request"
        ) from None


def _query_response(
    code: int, codespace: str, log_text: str, height: int, value: bytes = b""
) -> dict[str, Any]:
    return {
        "response": {
            "code": code,
            "log": log_text,
            "info": "",
            "index": "0",
            "key": None,
            "value": _b64(value) if value else None,
            "proofOps": None,
            "height": str(height),
            "codespace": codespace,
        }
    }


def _broadcast_json(txhash: str, outcome: Outcome) -> dict[str, Any]:
    return {
        "code": outcome.code,
        "data": "",
        "log": outcome.raw_log,
        "codespace": outcome.codespace,
        "hash": txhash,
    }


def _block_id(block_hash: str) -> dict[str, Any]:
    """CometBFT's BlockID; the empty one ("" hashes, 0 parts) for no block."""
    if not block_hash:
        return {"hash": "", "parts": {"total": 0, "hash": ""}}
    parts = _digest(b"parts", bytes.fromhex(block_hash)).hex().upper()
    return {"hash": block_hash.upper(), "parts": {"total": 1, "hash": parts}}


def _fill_block_id(target: Any, block_hash: str) -> None:
    target.hash = bytes.fromhex(block_hash)
    target.part_set_header.total = 1
    target.part_set_header.hash = _digest(b"parts", bytes.fromhex(block_hash))


def _required(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None:
        raise _invalid(f"missing required parameter {name!r}")
    return value


def _named_params(params: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """JSON-RPC params by name (an object) or by position (an array) as a dict."""
    if params is None:
        return {}
    if isinstance(params, dict):
        return {k: v for k, v in params.items() if k in names}
    if isinstance(params, list):
        if len(params) > len(names):
            raise _invalid(f"expected at most {len(names)} parameters, got {len(params)}")
        return dict(zip(names, params, strict=False))
    raise _invalid("params must be an object or an array")


def _matches(conditions: list[_Condition], events: dict[str, list[str]]) -> bool:
    return all(c.value in events.get(c.key, ()) for c in conditions)


def rpc_url(host: str, port: int) -> str:
    """The RPC's URL for a host and port (IPv6 hosts bracketed)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
