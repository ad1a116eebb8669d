"""A stand-in for a node's Cosmos REST API, for what the real local node cannot do on demand.

Tests run against the real node (`gonka_cli.node`, the `start_node` fixture) wherever it
serves; this small server remains for fault injection and for what the devnet lacks:

- `forced_broadcast` / `forced_simulate`: answers a test picks (a sequence race, mainnet's
  error wording, a failing node);
- `mode = "html"`: a gateway's HTML page instead of JSON;
- locked funds (`fund(..., locked=)`): spendable below total, as vesting makes on mainnet.

Otherwise it keeps a small ledger and answers the paths and JSON shapes in
`tests/vectors/rest_endpoints.json`: transactions are decoded and their signatures verified with
gonka's own `chain.tx`, checked for sequence and funds, and put in a block when a client polls
for a transaction.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

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
    #: Each broadcast pops one of these (codespace, code, raw_log) answers, if any.
    forced_broadcast: list[tuple[str, int, str]] = field(default_factory=list)
    #: Each simulate pops one of these (http status, message) answers, if any.
    forced_simulate: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- ledger --------------------------------------------------------------------------

    def fund(self, address: str, amount: int, locked: int = 0) -> Account:
        with self.lock:
            account = self._account(address)
            account.balance += amount
            account.locked += locked
            return account

    def _account(self, address: str) -> Account:
        account = self.accounts.get(address)
        if account is None:
            account = self.accounts[address] = Account(address, number=len(self.accounts) + 7)
        return account

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
        signer = address_from_pubkey(decoded.signers[0].pubkey.to_bytes())
        account = self.accounts.get(signer)
        if account is None:
            return "sdk", 9, f"account {signer} does not exist: unknown address", decoded
        sequence = decoded.signers[0].sequence
        if sequence != account.sequence:
            return (
                "sdk",
                32,
                f"account sequence mismatch, expected {account.sequence}, got "
                f"{sequence}: incorrect account sequence",
                decoded,
            )
        if not simulate and not decoded.verify(self.chain_id, account.number):
            return (
                "sdk",
                4,
                "signature verification failed; please verify account number "
                f"({account.number}) and chain-id ({self.chain_id}): unauthorized",
                decoded,
            )
        spent = sum(c.amount for c in decoded.fee.amount) + sum(
            c.amount for m in decoded.messages if isinstance(m, txlib.MsgSend) for c in m.amount
        )
        if spent > account.balance - account.locked:
            return (
                "sdk",
                5,
                f"spendable balance {account.balance - account.locked}ngonka is "
                f"smaller than {spent}ngonka: insufficient funds",
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
            signer.balance -= sum(c.amount for c in decoded.fee.amount)
            for msg in decoded.messages:
                if isinstance(msg, txlib.MsgSend):
                    amount = sum(c.amount for c in msg.amount)
                    signer.balance -= amount
                    self._account(msg.to_address).balance += amount
            self.txs[decoded.txhash] = {
                "height": self.height,
                "gas_wanted": decoded.fee.gas_limit,
                "gas_used": GAS_BASE + GAS_PER_BYTE * len(decoded.tx_bytes),
                "decoded": decoded,
            }
        self.mempool.clear()

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
            "codespace": "",
            "code": 0,
            "data": "",
            "raw_log": "",
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
        path = urlparse(self.path).path
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
                chain.commit()  # a block comes as soon as anyone looks for one
                if txhash not in chain.txs:
                    return self._not_found(f"tx not found: {txhash}")
                return self._send(200, chain.tx_json(txhash))
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
                if chain.forced_broadcast:
                    codespace, code, log = chain.forced_broadcast.pop(0)
                else:
                    codespace, code, log, decoded = chain.check(tx_bytes)
                    if code == 0 and decoded is not None:
                        chain.mempool.append(decoded)
                return self._send(
                    200,
                    {
                        "tx_response": {
                            "height": "0",
                            "txhash": txlib.tx_hash(tx_bytes),
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


__all__ = ["Chain", "ChainServer"]
