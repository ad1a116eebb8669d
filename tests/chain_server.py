"""A small, real Cosmos-REST chain for tests, served over HTTP on 127.0.0.1.

It keeps a ledger (accounts, balances, sequences) and answers the paths and JSON shapes in
`tests/vectors/rest_endpoints.json`. Transactions are decoded and their signatures verified
with gonka's own `chain.tx` (which the vector tests pin to the SDK's bytes), then checked the
way an SDK node's CheckTx does: chain id and account number (through the signature), sequence,
fee against the minimum gas price, funds. A block holds the mempool once `block_after_polls`
queries for a transaction have passed. Knobs let tests force any SDK error.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from gonka_cli.chain import codes
from gonka_cli.chain import tx as txlib
from gonka_cli.crypto.address import address_from_pubkey
from gonka_cli.errors import InputError

GAS_BASE = 60_000
GAS_PER_BYTE = 10


@dataclass
class Account:
    address: str
    number: int
    sequence: int = 0
    pubkey: bytes | None = None
    balance: int = 0
    locked: int = 0


@dataclass
class Chain:
    chain_id: str = "gonka-devnet"
    accounts: dict[str, Account] = field(default_factory=dict)
    txs: dict[str, dict[str, Any]] = field(default_factory=dict)
    mempool: list[txlib.DecodedTx] = field(default_factory=list)
    height: int = 100
    min_gas_price: Decimal = Decimal(0)
    restrict_transfers: bool = False
    #: Each broadcast pops one of these (codespace, code, raw_log) answers, if any.
    forced_broadcast: list[tuple[str, int, str]] = field(default_factory=list)
    #: Each simulate pops one of these (http status, message) answers, if any.
    forced_simulate: list[tuple[int, str]] = field(default_factory=list)
    block_after_polls: int = 1
    polls: int = 0
    broadcasts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- ledger --------------------------------------------------------------------------

    def fund(self, address: str, amount: int, locked: int = 0) -> Account:
        with self.lock:
            account = self.accounts.get(address)
            if account is None:
                account = Account(address, number=len(self.accounts) + 7)
                self.accounts[address] = account
            account.balance += amount
            account.locked += locked
            return account

    def total_supply(self) -> int:
        return sum(a.balance for a in self.accounts.values())

    # -- CheckTx -------------------------------------------------------------------------

    def check(
        self, tx_bytes: bytes, *, simulate: bool = False
    ) -> tuple[str, int, str, txlib.DecodedTx | None]:
        try:
            decoded = txlib.decode_tx(tx_bytes)
        except InputError as exc:
            return "sdk", 2, f"{exc}: tx parse error", None
        if len(decoded.signers) != 1 or decoded.signers[0].pubkey is None:
            return "sdk", 4, "exactly one secp256k1 signer expected: unauthorized", decoded
        pubkey = decoded.signers[0].pubkey
        signer = address_from_pubkey(pubkey.to_bytes())
        account = self.accounts.get(signer)
        if account is None:
            return "sdk", 5, f"account {signer} not found: insufficient funds", decoded
        sequence = decoded.signers[0].sequence
        if sequence != account.sequence:
            return (
                "sdk",
                32,
                f"account sequence mismatch, expected {account.sequence}, got "
                f"{sequence}: incorrect account sequence",
                decoded,
            )
        if not simulate:
            if decoded.txhash in self.txs or any(m.txhash == decoded.txhash for m in self.mempool):
                return "sdk", 19, "tx already exists in cache", decoded
            if not decoded.verify(self.chain_id, account.number):
                return (
                    "sdk",
                    4,
                    "signature verification failed; please verify account number "
                    f"({account.number}) and chain-id ({self.chain_id}): unauthorized",
                    decoded,
                )
            needed_fee = txlib.fee_for_gas(decoded.fee.gas_limit, self.min_gas_price)
            paid = sum(c.amount for c in decoded.fee.amount if c.denom == "ngonka")
            if paid < needed_fee:
                return (
                    "sdk",
                    13,
                    f"insufficient fees; got: {paid}ngonka required: "
                    f"{needed_fee}ngonka: insufficient fee",
                    decoded,
                )
        fee = sum(c.amount for c in decoded.fee.amount if c.denom == "ngonka")
        amount = sum(
            c.amount for m in decoded.messages if isinstance(m, txlib.MsgSend) for c in m.amount
        )
        if self.restrict_transfers:
            return ("restrictions", 1108, "transfer restricted during bootstrap period", decoded)
        if amount + fee > account.balance - account.locked:
            return (
                "sdk",
                5,
                f"spendable balance {account.balance - account.locked}ngonka is "
                f"smaller than {amount + fee}ngonka: insufficient funds",
                decoded,
            )
        return "", 0, "", decoded

    # -- blocks --------------------------------------------------------------------------

    def commit(self) -> None:
        """Apply the mempool as one block."""
        if not self.mempool:
            return
        self.height += 1
        for decoded in self.mempool:
            signer_key = decoded.signers[0].pubkey
            assert signer_key is not None
            signer = self.accounts[address_from_pubkey(signer_key.to_bytes())]
            signer.sequence += 1
            signer.pubkey = signer_key.to_bytes()
            fee = sum(c.amount for c in decoded.fee.amount if c.denom == "ngonka")
            gas_used = GAS_BASE + GAS_PER_BYTE * len(decoded.tx_bytes)
            code, codespace, log = 0, "", ""
            if decoded.fee.gas_limit < gas_used:
                code, codespace = 11, "sdk"
                log = (
                    f"out of gas in location: txSize; gasWanted: {decoded.fee.gas_limit}, "
                    f"gasUsed: {gas_used}: out of gas"
                )
            signer.balance -= min(fee, signer.balance)
            recipients: list[str] = []
            if code == 0:
                for msg in decoded.messages:
                    if isinstance(msg, txlib.MsgSend):
                        amount = sum(c.amount for c in msg.amount if c.denom == "ngonka")
                        signer.balance -= amount
                        self.fund_locked_free(msg.to_address, amount)
                        recipients.append(msg.to_address)
            self.txs[decoded.txhash] = {
                "height": self.height,
                "code": code,
                "codespace": codespace,
                "raw_log": log,
                "gas_wanted": decoded.fee.gas_limit,
                "gas_used": gas_used,
                "sender": signer.address,
                "recipients": recipients,
                "decoded": decoded,
            }
        self.mempool.clear()

    def fund_locked_free(self, address: str, amount: int) -> None:
        account = self.accounts.get(address)
        if account is None:
            account = Account(address, number=len(self.accounts) + 7)
            self.accounts[address] = account
        account.balance += amount

    def tx_json(self, txhash: str) -> dict[str, Any]:
        entry = self.txs[txhash]
        decoded: txlib.DecodedTx = entry["decoded"]
        tx = {
            "@type": "/cosmos.tx.v1beta1.Tx",
            "body": {
                "messages": [
                    m.to_dict() if isinstance(m, txlib.MsgSend) else {"@type": m.type_url}
                    for m in decoded.messages
                ],
                "memo": decoded.memo,
                "timeout_height": str(decoded.timeout_height),
            },
            "auth_info": {"fee": decoded.fee.to_dict()},
            "signatures": [base64.b64encode(s).decode() for s in decoded.signatures],
        }
        response = {
            "height": str(entry["height"]),
            "txhash": txhash,
            "codespace": entry["codespace"],
            "code": entry["code"],
            "data": "",
            "raw_log": entry["raw_log"],
            "logs": [],
            "info": "",
            "gas_wanted": str(entry["gas_wanted"]),
            "gas_used": str(entry["gas_used"]),
            "tx": tx,
            "timestamp": f"2026-11-25T12:00:{entry['height'] % 60:02d}Z",
            "events": [],
        }
        return {"tx": tx, "tx_response": response}


class _Handler(BaseHTTPRequestHandler):
    server: ChainServer

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self, message: str) -> None:
        self._send(404, {"code": 5, "message": message, "details": []})

    def do_GET(self) -> None:
        if self.server.mode == "html":
            data = b"<html>gateway</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        chain = self.server.chain
        url = urlparse(self.path)
        path = url.path
        with chain.lock:
            if path == "/cosmos/base/tendermint/v1beta1/node_info":
                return self._send(
                    200,
                    {
                        "default_node_info": {
                            "network": chain.chain_id,
                            "moniker": "test-node",
                            "version": "0.38.17",
                        },
                        "application_version": {"name": "inferenced", "version": "test"},
                    },
                )
            if path.startswith("/cosmos/auth/v1beta1/account_info/"):
                address = path.rsplit("/", 1)[1]
                account = chain.accounts.get(address)
                if account is None:
                    return self._not_found(f"account {address} not found")
                pub = (
                    {
                        "@type": "/cosmos.crypto.secp256k1.PubKey",
                        "key": base64.b64encode(account.pubkey).decode(),
                    }
                    if account.pubkey
                    else None
                )
                return self._send(
                    200,
                    {
                        "info": {
                            "address": address,
                            "pub_key": pub,
                            "account_number": str(account.number),
                            "sequence": str(account.sequence),
                        }
                    },
                )
            for prefix, spendable in (
                ("/cosmos/bank/v1beta1/balances/", False),
                ("/cosmos/bank/v1beta1/spendable_balances/", True),
            ):
                if path.startswith(prefix):
                    account = chain.accounts.get(path[len(prefix) :])
                    amount = (
                        0
                        if account is None
                        else account.balance - (account.locked if spendable else 0)
                    )
                    balances = [{"denom": "ngonka", "amount": str(amount)}] if amount else []
                    return self._send(
                        200,
                        {
                            "balances": balances,
                            "pagination": {"next_key": None, "total": str(len(balances))},
                        },
                    )
            if path.startswith("/cosmos/tx/v1beta1/txs/"):
                txhash = path.rsplit("/", 1)[1].upper()
                chain.polls += 1
                if chain.polls >= chain.block_after_polls:
                    chain.commit()
                    chain.polls = 0
                if txhash not in chain.txs:
                    return self._not_found(f"tx not found: {txhash}")
                return self._send(200, chain.tx_json(txhash))
            if path == "/cosmos/tx/v1beta1/txs":
                query = unquote(parse_qs(url.query).get("query", [""])[0])
                limit = int(parse_qs(url.query).get("limit", ["100"])[0])
                if not query:
                    return self._send(
                        400, {"code": 3, "message": "query cannot be empty", "details": []}
                    )
                kind, _, value = query.partition("=")
                value = value.strip("'")
                hits = [
                    h
                    for h, e in chain.txs.items()
                    if (kind == "message.sender" and e["sender"] == value)
                    or (kind == "transfer.recipient" and value in e["recipients"])
                ]
                hits.sort(key=lambda h: chain.txs[h]["height"], reverse=True)
                hits = hits[:limit]
                items = [chain.tx_json(h) for h in hits]
                return self._send(
                    200,
                    {
                        "txs": [i["tx"] for i in items],
                        "tx_responses": [i["tx_response"] for i in items],
                        "pagination": None,
                        "total": str(len(items)),
                    },
                )
        self._send(501, {"code": 12, "message": "Not Implemented", "details": []})

    def do_POST(self) -> None:
        chain = self.server.chain
        length = int(self.headers.get("Content-Length", "0"))
        try:
            body = json.loads(self.rfile.read(length))
            tx_bytes = base64.b64decode(body["tx_bytes"], validate=True)
        except (ValueError, KeyError, TypeError):
            return self._send(400, {"code": 3, "message": "invalid request body", "details": []})
        path = urlparse(self.path).path
        with chain.lock:
            if path == "/cosmos/tx/v1beta1/simulate":
                if chain.forced_simulate:
                    status, message = chain.forced_simulate.pop(0)
                    return self._send(status, {"code": 2, "message": message, "details": []})
                codespace, code, log, _ = chain.check(tx_bytes, simulate=True)
                if code:
                    return self._send(
                        400,
                        {
                            "code": 2,
                            "message": f"rpc error: code = Unknown desc = {log}",
                            "details": [],
                        },
                    )
                gas = GAS_BASE + GAS_PER_BYTE * (len(tx_bytes) + 64)
                return self._send(
                    200,
                    {
                        "gas_info": {"gas_wanted": "0", "gas_used": str(gas)},
                        "result": {"data": "", "log": "", "events": [], "msg_responses": []},
                    },
                )
            if path == "/cosmos/tx/v1beta1/txs":
                if body.get("mode") not in ("BROADCAST_MODE_SYNC", "BROADCAST_MODE_ASYNC"):
                    return self._send(
                        400, {"code": 3, "message": "unsupported broadcast mode", "details": []}
                    )
                txhash = txlib.tx_hash(tx_bytes)
                chain.broadcasts.append(txhash)
                if chain.forced_broadcast:
                    codespace, code, log = chain.forced_broadcast.pop(0)
                    decoded = None
                else:
                    codespace, code, log, decoded = chain.check(tx_bytes)
                if code == 0 and decoded is not None:
                    chain.mempool.append(decoded)
                return self._send(
                    200,
                    {
                        "tx_response": {
                            "height": "0",
                            "txhash": txhash,
                            "codespace": codespace,
                            "code": code,
                            "data": "",
                            "raw_log": log,
                            "logs": [],
                            "info": "",
                            "gas_wanted": "0",
                            "gas_used": "0",
                            "tx": None,
                            "timestamp": "",
                            "events": [],
                        }
                    },
                )
        self._send(501, {"code": 12, "message": "Not Implemented", "details": []})


class ChainServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, chain: Chain) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.chain = chain
        self.mode = "json"
        # A short poll interval makes stop() quick; tests start and stop many servers.
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> ChainServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


__all__ = ["Chain", "ChainServer", "codes"]
