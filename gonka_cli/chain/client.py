"""A client for the Cosmos REST API of a Gonka node, failing over between the profile's nodes.

The transport is `gonka_cli.httpclient.FailoverSession`: every request has a timeout;
connection failures, timeouts, gateway errors (502/503/504) and answers that are not JSON move
on to the next node; the node that answered last is tried first next time. When none answers,
`NodeUnreachable` names every node tried and why.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gonka_cli.chain import codes
from gonka_cli.chain.amount import DENOM, parse_chain_amount
from gonka_cli.errors import (
    AccountNotFound,
    ChainError,
    NodeResponseError,
    NodeUnreachable,
    TxError,
    TxNotFound,
    TxTimeout,
)
from gonka_cli.httpclient import FailoverSession
from gonka_cli.settings import NetworkProfile
from gonka_cli.validate import is_int

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeInfo:
    url: str
    chain_id: str
    moniker: str
    version: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Account:
    address: str
    account_number: int
    sequence: int
    pubkey_b64: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "account_number": str(self.account_number),
            "sequence": str(self.sequence),
            "pubkey": self.pubkey_b64,
        }


@dataclass(frozen=True)
class Balance:
    address: str
    denom: str
    spendable: int
    total: int


@dataclass(frozen=True)
class Transfer:
    """One MsgSend of a transaction, in `denom` units."""

    from_address: str
    to_address: str
    amount: int
    denom: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "send",
            "from": self.from_address,
            "to": self.to_address,
            "amount_ngonka": str(self.amount) if self.denom == DENOM else None,
            "amount": f"{self.amount}{self.denom}",
        }


@dataclass(frozen=True)
class TxResult:
    """A transaction as the chain reports it (`tx_response` plus its decoded body)."""

    txhash: str
    height: int
    code: int
    codespace: str
    raw_log: str
    gas_wanted: int
    gas_used: int
    timestamp: str
    memo: str = ""
    fee_ngonka: int = 0
    transfers: tuple[Transfer, ...] = ()
    other_messages: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "txhash": self.txhash,
            "height": str(self.height),
            "status": "success" if self.ok else "failed",
            "code": self.code,
            "codespace": self.codespace,
            "raw_log": self.raw_log,
            "error": None if self.ok else codes.describe(self.codespace, self.code, self.raw_log),
            "gas_wanted": str(self.gas_wanted),
            "gas_used": str(self.gas_used),
            "timestamp": self.timestamp,
            "memo": self.memo,
            "fee_ngonka": str(self.fee_ngonka),
            "messages": [t.to_dict() for t in self.transfers]
            + [{"type": t} for t in self.other_messages],
        }


@dataclass(frozen=True)
class BroadcastResult:
    txhash: str
    code: int
    codespace: str
    raw_log: str

    @property
    def ok(self) -> bool:
        return self.code == 0


class ChainClient:
    """REST access to one network, over its list of nodes (`httpclient.FailoverSession`)."""

    def __init__(self, profile: NetworkProfile, *, timeout_s: float = 10.0) -> None:
        self.profile = profile
        self.timeout_s = timeout_s
        self._nodes = FailoverSession(
            profile.rest_urls, timeout_s=timeout_s, headers={"Accept": "application/json"}
        )

    @property
    def url(self) -> str:
        """The node tried first (the last one that answered)."""
        return self._nodes.url

    def close(self) -> None:
        self._nodes.close()

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -----------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        reply = self._nodes.request(method, path, params=params, json=body)
        return reply.status, reply.data

    def _get_ok(self, path: str, params: dict[str, Any] | None = None) -> Any:
        status, data = self._request("GET", path, params=params)
        if status != 200:
            raise _http_error(self.url, "GET", path, status, data)
        return data

    # -- queries -------------------------------------------------------------------------

    def node_info(self) -> NodeInfo:
        data = self._get_ok("/cosmos/base/tendermint/v1beta1/node_info")
        info = _field(data, "default_node_info", dict, self.url)
        chain_id = _field(info, "network", str, self.url)
        version = (data.get("application_version") or {}).get("version", "")
        return NodeInfo(self.url, chain_id, str(info.get("moniker", "")), str(version))

    def account(self, address: str) -> Account:
        """Account number and sequence; `AccountNotFound` for an address the chain never saw."""
        status, data = self._request("GET", f"/cosmos/auth/v1beta1/account_info/{address}")
        if status == 404 or (status >= 400 and _grpc_code(data) == 5):
            raise AccountNotFound(
                f"account {address} does not exist on chain yet: it has never received funds; "
                "send it some GNK first"
            )
        if status != 200:
            raise _http_error(self.url, "GET", "account_info", status, data)
        info = _field(data, "info", dict, self.url)
        pubkey = info.get("pub_key") or None
        return Account(
            address=str(info.get("address", address)),
            account_number=_int_field(info, "account_number", self.url),
            sequence=_int_field(info, "sequence", self.url),
            pubkey_b64=pubkey.get("key") if isinstance(pubkey, dict) else None,
        )

    def balance(self, address: str, denom: str = DENOM) -> Balance:
        spendable_data = self._get_ok(f"/cosmos/bank/v1beta1/spendable_balances/{address}")
        total_data = self._get_ok(f"/cosmos/bank/v1beta1/balances/{address}")
        return Balance(
            address=address,
            denom=denom,
            spendable=_amount_of(spendable_data, denom, self.url),
            total=_amount_of(total_data, denom, self.url),
        )

    def get_tx(self, txhash: str) -> TxResult | None:
        """The transaction once it is in a block; None while it is not (404)."""
        status, data = self._request("GET", f"/cosmos/tx/v1beta1/txs/{txhash}")
        if status == 404 or (status >= 400 and _grpc_code(data) == 5):
            return None
        if status != 200:
            raise _http_error(self.url, "GET", "txs/{hash}", status, data)
        response = _field(data, "tx_response", dict, self.url)
        return _tx_result(response, data.get("tx"), self.url)

    def search_txs(self, query: str, limit: int = 20) -> list[TxResult]:
        """Transactions matching a CometBFT event query, newest first."""
        params = {"query": query, "order_by": "ORDER_BY_DESC", "page": 1, "limit": limit}
        status, data = self._request("GET", "/cosmos/tx/v1beta1/txs", params=params)
        if status != 200:
            raise _http_error(self.url, "GET", "txs?query", status, data)
        responses = data.get("tx_responses") or []
        txs = data.get("txs") or []
        if not isinstance(responses, list):
            raise NodeResponseError(
                f"node {self.url} answered a tx search without a tx_responses list"
            )
        return [
            _tx_result(r, txs[i] if i < len(txs) else None, self.url)
            for i, r in enumerate(responses)
        ]

    def node_status(self) -> dict[str, Any]:
        """A gonka node's own status (`/v1/node/status`): height, accounts, mempool, uptime."""
        status, data = self._request("GET", "/v1/node/status")
        if status == 404:
            raise NodeResponseError(
                f"{self.url} is not a gonka node (no /v1/node/status); is it a Cosmos SDK node?"
            )
        if status != 200 or not isinstance(data, dict):
            raise _http_error(self.url, "GET", "/v1/node/status", status, data)
        return data

    def faucet(self, address: str, amount_ngonka: int | None = None) -> tuple[str, int]:
        """Ask a devnet node's faucet for GNK: the hash of its transfer and the amount."""
        body: dict[str, Any] = {"address": address}
        if amount_ngonka is not None:
            body["amount"] = str(amount_ngonka)
        status, data = self._request("POST", "/faucet", body=body)
        message = str(data.get("message", "")) if isinstance(data, dict) else ""
        if status == 404:
            raise ChainError(f"node {self.url} has no faucet: only a local devnet node has one")
        if status != 200:
            raise ChainError(f"the faucet refused: {codes.first_line(message) or f'HTTP {status}'}")
        try:
            txhash = str(data["txhash"]).upper()
            amount = parse_chain_amount(data["amount"]["amount"])
        except (KeyError, TypeError, ValueError):
            raise NodeResponseError(f"node {self.url} sent a malformed faucet answer") from None
        return txhash, amount

    # -- transactions --------------------------------------------------------------------

    def simulate(self, tx_bytes: bytes) -> int:
        """Gas used by the transaction, from the node's simulation."""
        status, data = self._request(
            "POST", "/cosmos/tx/v1beta1/simulate", body={"tx_bytes": _b64(tx_bytes)}
        )
        if status != 200:
            message = str(data.get("message", "")) if isinstance(data, dict) else ""
            known = codes.classify(message)
            if known is not None:
                raise TxError(
                    codes.describe(known.codespace, known.code, message),
                    codespace=known.codespace,
                    code=known.code,
                )
            raise ChainError(
                "the node could not simulate the transaction: "
                f"{codes.first_line(message) or f'HTTP {status}'}"
            )
        gas_info = _field(data, "gas_info", dict, self.url)
        return _int_field(gas_info, "gas_used", self.url)

    def broadcast(self, tx_bytes: bytes, mode: str = "BROADCAST_MODE_SYNC") -> BroadcastResult:
        """Send a signed transaction; code 0 means the node's mempool took it."""
        status, data = self._request(
            "POST", "/cosmos/tx/v1beta1/txs", body={"tx_bytes": _b64(tx_bytes), "mode": mode}
        )
        if status != 200:
            message = str(data.get("message", "")) if isinstance(data, dict) else ""
            raise ChainError(
                f"node {self.url} refused the broadcast (HTTP {status}): "
                f"{codes.first_line(message) or 'no details'}"
            )
        response = _field(data, "tx_response", dict, self.url)
        return BroadcastResult(
            txhash=str(response.get("txhash", "")).upper(),
            code=int(response.get("code") or 0),
            codespace=str(response.get("codespace") or ""),
            raw_log=str(response.get("raw_log") or ""),
        )

    def wait_for_tx(
        self,
        txhash: str,
        *,
        timeout_s: float = 60.0,
        poll_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> TxResult:
        """Poll until the transaction is in a block. Node outages meanwhile are retried.

        The first polls come quickly (a local devnet makes a block every second or faster),
        then the interval doubles up to `poll_s`.
        """
        deadline = time.monotonic() + timeout_s
        interval = min(0.2, poll_s)
        while True:
            try:
                result = self.get_tx(txhash)
            except NodeUnreachable as exc:
                log.warning("waiting for %s: %s", txhash, exc)
                result = None
            if result is not None:
                return result
            if time.monotonic() + interval > deadline:
                raise TxTimeout(
                    f"transaction {txhash} is not in a block after {timeout_s:g} s; it may still "
                    f"land: check with `gonka wallet tx {txhash}`"
                )
            sleep(interval)
            interval = min(interval * 2, poll_s)

    def require_tx(self, txhash: str) -> TxResult:
        result = self.get_tx(txhash)
        if result is None:
            raise TxNotFound(
                f"transaction {txhash} was not found on {self.url}: it is not in a block (yet), "
                "or this node does not index transactions"
            )
        return result


# --- helpers ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _grpc_code(data: Any) -> int | None:
    if isinstance(data, dict) and is_int(data.get("code")):
        return int(data["code"])
    return None


def _http_error(url: str, method: str, what: str, status: int, data: Any) -> ChainError:
    message = data.get("message", "") if isinstance(data, dict) else ""
    return NodeResponseError(
        f"node {url} answered {method} {what} with HTTP {status}: "
        f"{codes.first_line(str(message)) or 'no details'}"
    )


def _field(data: Any, name: str, kind: type, url: str) -> Any:
    if not isinstance(data, dict) or not isinstance(data.get(name), kind):
        raise NodeResponseError(f"node {url} sent a malformed answer (no {name!r})")
    return data[name]


def _int_field(data: dict[str, Any], name: str, url: str) -> int:
    value = data.get(name, "0")
    try:
        return parse_chain_amount(str(value))
    except ValueError:
        raise NodeResponseError(f"node {url} sent a malformed {name}: {value!r}") from None


def _amount_of(data: Any, denom: str, url: str) -> int:
    balances = _field(data, "balances", list, url)
    for coin in balances:
        if isinstance(coin, dict) and coin.get("denom") == denom:
            try:
                return parse_chain_amount(coin.get("amount"))
            except ValueError:
                raise NodeResponseError(f"node {url} sent a malformed balance: {coin!r}") from None
    return 0


def _tx_result(response: dict[str, Any], tx: Any, url: str) -> TxResult:
    if not isinstance(response, dict):
        raise NodeResponseError(f"node {url} sent a malformed transaction")
    tx = tx if isinstance(tx, dict) else response.get("tx")
    body = tx.get("body", {}) if isinstance(tx, dict) else {}
    auth_info = tx.get("auth_info", {}) if isinstance(tx, dict) else {}
    transfers: list[Transfer] = []
    others: list[str] = []
    for msg in body.get("messages", []) or []:
        if not isinstance(msg, dict):
            continue
        if msg.get("@type") == "/cosmos.bank.v1beta1.MsgSend":
            for coin in msg.get("amount", []) or []:
                try:
                    transfers.append(
                        Transfer(
                            str(msg.get("from_address", "")),
                            str(msg.get("to_address", "")),
                            parse_chain_amount(coin.get("amount")),
                            str(coin.get("denom", "")),
                        )
                    )
                except (ValueError, AttributeError):
                    raise NodeResponseError(f"node {url} sent a malformed MsgSend") from None
        else:
            others.append(str(msg.get("@type", "unknown")))
    fee = 0
    for coin in (auth_info.get("fee") or {}).get("amount", []) or []:
        if isinstance(coin, dict) and coin.get("denom") == DENOM:
            fee += parse_chain_amount(coin.get("amount"))
    try:
        return TxResult(
            txhash=str(response.get("txhash", "")).upper(),
            height=int(response.get("height") or 0),
            code=int(response.get("code") or 0),
            codespace=str(response.get("codespace") or ""),
            raw_log=str(response.get("raw_log") or ""),
            gas_wanted=int(response.get("gas_wanted") or 0),
            gas_used=int(response.get("gas_used") or 0),
            timestamp=str(response.get("timestamp") or ""),
            memo=str(body.get("memo", "")),
            fee_ngonka=fee,
            transfers=tuple(transfers),
            other_messages=tuple(others),
        )
    except (TypeError, ValueError):
        raise NodeResponseError(f"node {url} sent a malformed transaction") from None
