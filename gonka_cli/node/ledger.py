"""The ledger of the local network: accounts, the mempool and blocks, with SQLite as the truth.

It is the node's state machine, in the shape of a Cosmos SDK application:

- `check_tx` is CheckTx: it decodes a signed TxRaw, checks it against the *check state* (the
  committed state plus every transaction already in the mempool) and, when it passes, puts it
  in the mempool. Because the check state already counts pending transactions, two sends from
  one account can never both spend the same funds or reuse a sequence.
- `make_block` is FinalizeBlock + Commit: it applies the mempool in order (fees and sequence
  first, then the messages, all or nothing per transaction) and writes the new accounts, the
  transactions with their result codes and the block in **one** SQLite transaction. A
  transaction acknowledged in a block (code 0) is therefore on disk before anyone can see it,
  and survives kill -9.

Money is never lost: fees move to the `fee_collector` module account. It is made and burned
only by the node's *system transactions* (`submit_system`): MsgSends signed by the node's own
key that the node's modules issue (PoC and validation rewards minted from the `mint` module
account, inference escrow and its settlement through the `inference` module account,
collateral locked in and returned from the `collateral` one). A send *to* `mint` burns what
it sends, as a send from it mints (slashed collateral). They pay no fee and their senders
need not sign: the node's key vouches for them, as a chain's modules do. The sum of all
balances is always the genesis supply plus everything minted less everything burned
(checked each time the ledger opens).

Answers use the SDK's codespaces, codes and `raw_log` wording (`chain.codes` describes them
to users). The block hash is SHA-256(previous hash || height as 8 bytes big-endian || the
included transactions' hashes, 32 bytes each, in block order || the block's 32 random bytes);
the first block's previous hash is the SHA-256 of the canonical genesis JSON. The random
bytes (`entropy`, drawn by the node for each block and kept with it) stand in for what makes
a real chain's next block hash unpredictable (validators' signatures, the app hash): PoC
seeds are block hashes, and a host that could compute them ahead could precompute its
work or learn which leaves will be sampled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from google.protobuf import any_pb2

from gonka_cli.chain import tx as txlib
from gonka_cli.chain.amount import DENOM, MAX_AMOUNT
from gonka_cli.chain.proto.cosmos.base.abci.v1beta1 import abci_pb2
from gonka_cli.crypto import address as addr
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import InputError, InvalidAddress, InvalidAmount, NodeStateError
from gonka_cli.node.genesis import Genesis
from gonka_cli.storage import open_sqlite, transaction

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FEE_COLLECTOR = "fee_collector"
RESTRICTIONS = "restrictions"
#: The SDK's `tx.MaxGasWanted`: larger gas limits are refused (code 18); this one fits in
#: SQLite's 64-bit integers.
MAX_GAS_WANTED = 2**63 - 1
#: The size of a secp256k1 public key's Any inside a SignerInfo (tag, length, type URL, key).
_PUBKEY_INFO_BYTES = 72


#: Cosmos SDK module accounts: the first 20 bytes of SHA-256(module name).
def module_address(name: str) -> str:
    """A Cosmos SDK module account: the first 20 bytes of SHA-256(module name)."""
    return addr.encode("gonka", hashlib.sha256(name.encode()).digest()[:20])


FEE_COLLECTOR_ADDRESS = module_address(FEE_COLLECTOR)
#: Rewards are minted as sends from this account: its balance is created as it sends.
MINT_ADDRESS = module_address("mint")
#: Inference escrow: requesters' deposits wait here until their epoch is settled.
ESCROW_ADDRESS = module_address("inference")
#: Participants' collateral, locked at registration until it is slashed or returned.
COLLATERAL_ADDRESS = module_address("collateral")
BLOCKED_RECIPIENTS = frozenset(
    {FEE_COLLECTOR_ADDRESS, MINT_ADDRESS, ESCROW_ADDRESS, COLLATERAL_ADDRESS}
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY,
    number INTEGER NOT NULL UNIQUE,
    sequence INTEGER NOT NULL,
    pubkey BLOB,
    balance TEXT NOT NULL            -- decimal ngonka: may exceed 2^63
);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    time TEXT NOT NULL,
    num_txs INTEGER NOT NULL,
    entropy TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS txs (
    hash TEXT PRIMARY KEY,
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    code INTEGER NOT NULL,
    codespace TEXT NOT NULL,
    raw_log TEXT NOT NULL,
    gas_wanted INTEGER NOT NULL,
    gas_used INTEGER NOT NULL,
    tx_bytes BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS txs_by_height ON txs (height, idx);
CREATE TABLE IF NOT EXISTS events (
    tx_hash TEXT NOT NULL,
    key TEXT NOT NULL,                -- e.g. message.sender, transfer.recipient
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_value ON events (key, value);
CREATE TABLE IF NOT EXISTS faucet_grants (address TEXT PRIMARY KEY, total TEXT NOT NULL);
"""


# --- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The answer to CheckTx or DeliverTx: code 0 with an empty codespace means success."""

    code: int = 0
    codespace: str = ""
    raw_log: str = ""
    gas_wanted: int = 0
    gas_used: int = 0

    @property
    def ok(self) -> bool:
        return self.code == 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _sdk(code: int, log_text: str, gas_wanted: int = 0, gas_used: int = 0) -> Outcome:
    return Outcome(code, "sdk", log_text, gas_wanted, gas_used)


def _wrong_sequence(expected: int, got: int, gas_wanted: int = 0) -> Outcome:
    return _sdk(
        32,
        f"account sequence mismatch, expected {expected}, got {got}: incorrect account sequence",
        gas_wanted,
    )


def _insufficient(
    balance: int, needed: int, denom: str = DENOM, gas_wanted: int = 0, gas_used: int = 0
) -> Outcome:
    return _sdk(
        5,
        f"spendable balance {balance}{denom} is smaller than {needed}{denom}: insufficient funds",
        gas_wanted,
        gas_used,
    )


@dataclass
class AccountState:
    address: str
    number: int
    sequence: int = 0
    pubkey: bytes | None = None
    balance: int = 0

    def copy(self) -> AccountState:
        return AccountState(self.address, self.number, self.sequence, self.pubkey, self.balance)


@dataclass(frozen=True)
class Block:
    height: int
    hash: str
    prev_hash: str
    time: str
    tx_hashes: tuple[str, ...]
    #: Hex of the block's random bytes ('' for blocks made before they existed).
    entropy: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "hash": self.hash,
            "prev_hash": self.prev_hash,
            "time": self.time,
            "tx_hashes": list(self.tx_hashes),
            "entropy": self.entropy,
        }


@dataclass(frozen=True)
class TxRecord:
    """A transaction as a block recorded it."""

    hash: str
    height: int
    index: int
    code: int
    codespace: str
    raw_log: str
    gas_wanted: int
    gas_used: int
    tx_bytes: bytes
    time: str


@dataclass(frozen=True)
class Status:
    chain_id: str
    height: int
    latest_block_hash: str
    latest_block_time: str
    accounts: int
    mempool_txs: int
    total_supply_ngonka: int
    txs: int

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["total_supply_ngonka"] = str(self.total_supply_ngonka)
        return data


@dataclass
class _Pending:
    """A transaction in the mempool, with what CheckTx learnt about it."""

    decoded: txlib.DecodedTx
    txhash: str
    signer: str
    fee: int
    sends: tuple[tuple[str, str, int], ...]  # (recipient, denom, amount)
    faucet: bool = False
    #: A system transaction's transfers, (sender, recipient, ngonka); empty for user txs.
    transfers: tuple[tuple[str, str, int], ...] = ()

    @property
    def system(self) -> bool:
        return bool(self.transfers)


@dataclass
class _CheckState:
    sequence: int
    balance: int


class FaucetRefused(InputError):
    """A faucet request over the per-request or per-address limit."""


class FundsShort(InputError):
    """A system transaction whose sender cannot cover it (e.g. an escrow over the balance)."""


# --- the ledger -------------------------------------------------------------------------


class Ledger:
    """The chain state of one node. Thread-safe: every public method holds one lock."""

    def __init__(
        self,
        db_path: str,
        genesis: Genesis,
        *,
        faucet_key: PrivateKey | None = None,
        node_key: PrivateKey | None = None,
        block_time_s: float | None = None,
    ):
        self.genesis = genesis
        self.params = genesis.params
        #: The pace of blocks (the genesis value unless `gonka node start --block-time`).
        self.block_time_s = genesis.params.block_time_s if block_time_s is None else block_time_s
        self.chain_id = genesis.chain_id
        self._gas_price = genesis.params.gas_price
        self._fees: dict[int, int] = {}
        self._lock = threading.RLock()
        self._faucet_key = faucet_key
        self._node_key = node_key
        self.node_address = (
            addr.address_from_pubkey(node_key.public_key.to_bytes()) if node_key else ""
        )
        #: ngonka minted and burned since genesis (the supply is the genesis supply plus
        #: `minted` less `burned`).
        self.minted = 0
        self.burned = 0
        self.accounts: dict[str, AccountState] = {}
        self.mempool: list[_Pending] = []
        self._mempool_hashes: set[str] = set()
        self._mempool_bytes = 0
        self._check: dict[str, _CheckState] = {}
        self._faucet_pending: dict[str, int] = {}
        self.height = 0
        self.last_hash = ""
        self.last_time = ""
        message = (
            f"cannot open the node's database {db_path}: {{}}; check that the home is "
            "writable and the file is a gonka node's database"
        )
        try:
            # Durable: a block is on disk before its transactions can be read back as committed.
            self._db = open_sqlite(db_path, durable=True)
        except sqlite3.Error as exc:
            raise NodeStateError(message.format(exc)) from None
        try:
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(blocks)")}
            if "entropy" not in columns:  # a database from before blocks had entropy
                self._db.execute("ALTER TABLE blocks ADD COLUMN entropy TEXT NOT NULL DEFAULT ''")
            self._open()
        except sqlite3.Error as exc:
            self._db.close()
            raise NodeStateError(message.format(exc)) from None
        except BaseException:
            self._db.close()
            raise

    # -- opening -------------------------------------------------------------------------

    def _open(self) -> None:
        genesis_hash = genesis_digest(self.genesis)
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            with transaction(self._db):
                self._db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("schema", str(SCHEMA_VERSION)),
                        ("chain_id", self.chain_id),
                        ("genesis_hash", genesis_hash),
                    ],
                )
                for number, (address, amount) in enumerate(self.genesis.balances):
                    self._db.execute(
                        "INSERT INTO accounts VALUES (?, ?, 0, NULL, ?)",
                        (address, number, str(amount)),
                    )
        elif meta.get("genesis_hash") != genesis_hash:
            raise NodeStateError(
                "the node's database was made from another genesis; restore the matching "
                "genesis.json or start from an empty home"
            )
        elif meta.get("schema") != str(SCHEMA_VERSION):
            raise NodeStateError(
                f"the node's database has schema {meta.get('schema')}, "
                f"this gonka reads {SCHEMA_VERSION}: upgrade gonka"
            )
        for address, number, sequence, pubkey, balance in self._db.execute(
            "SELECT address, number, sequence, pubkey, balance FROM accounts"
        ):
            self.accounts[address] = AccountState(
                address, number, sequence, bytes(pubkey) if pubkey else None, int(balance)
            )
        row = self._db.execute(
            "SELECT height, hash, time FROM blocks ORDER BY height DESC LIMIT 1"
        ).fetchone()
        if row:
            self.height, self.last_hash, self.last_time = row
        else:
            self.last_hash, self.last_time = genesis_hash, self.genesis.genesis_time
        self.minted = int(meta.get("minted", "0"))
        self.burned = int(meta.get("burned", "0"))
        supply = self.total_supply()
        if supply != self.supply_expected():
            raise NodeStateError(
                f"the ledger holds {supply} ngonka but the genesis created "
                f"{self.genesis.total_supply}, {self.minted} were minted and {self.burned} "
                "burned: the database is damaged; start from an empty home"
            )
        if self.node_address and self.node_address not in self.accounts:
            # The node's own account signs system transactions: it needs an account number.
            assert self._node_key is not None
            number = max((a.number for a in self.accounts.values()), default=-1) + 1
            account = AccountState(
                self.node_address, number, 0, self._node_key.public_key.to_bytes(), 0
            )
            with transaction(self._db):
                self._db.execute(
                    "INSERT INTO accounts VALUES (?, ?, 0, ?, '0')",
                    (account.address, account.number, account.pubkey),
                )
            self.accounts[account.address] = account
        log.info("ledger open at height %d with %d accounts", self.height, len(self.accounts))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- queries -------------------------------------------------------------------------

    def total_supply(self) -> int:
        with self._lock:
            return sum(a.balance for a in self.accounts.values())

    def account(self, address: str) -> AccountState | None:
        with self._lock:
            account = self.accounts.get(address)
            return account.copy() if account else None

    def supply_expected(self) -> int:
        """What the supply must be: the genesis supply plus everything minted, less
        everything burned."""
        return self.genesis.total_supply + self.minted - self.burned

    def status(self) -> Status:
        with self._lock:
            (txs,) = self._db.execute("SELECT COUNT(*) FROM txs").fetchone()
            return Status(
                chain_id=self.chain_id,
                height=self.height,
                latest_block_hash=self.last_hash,
                latest_block_time=self.last_time,
                accounts=len(self.accounts),
                mempool_txs=len(self.mempool),
                total_supply_ngonka=sum(a.balance for a in self.accounts.values()),
                txs=txs,
            )

    def block(self, height: int | None = None) -> Block | None:
        with self._lock:
            if height is None:
                height = self.height
            row = self._db.execute(
                "SELECT height, hash, prev_hash, time, entropy FROM blocks WHERE height = ?",
                (height,),
            ).fetchone()
            if row is None:
                return None
            hashes = tuple(
                h
                for (h,) in self._db.execute(
                    "SELECT hash FROM txs WHERE height = ? ORDER BY idx", (height,)
                )
            )
            return Block(row[0], row[1], row[2], row[3], hashes, row[4])

    def tx(self, txhash: str) -> TxRecord | None:
        with self._lock:
            row = self._db.execute(_TX_COLUMNS + " WHERE t.hash = ?", (txhash.upper(),)).fetchone()
            return _record(row) if row else None

    def search(
        self,
        conditions: list[tuple[str, str]],
        *,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> tuple[list[TxRecord], int]:
        """Transactions matching every `(key, value)` event condition; and the total count.

        Keys: `message.sender`, `transfer.recipient`, `transfer.sender`, `tx.height`,
        `tx.hash`.
        """
        where: list[str] = []
        args: list[str | int] = []
        for key, value in conditions:
            if key == "tx.height":
                where.append("t.height = ?")
                args.append(int(value))
            elif key == "tx.hash":
                where.append("t.hash = ?")
                args.append(value.upper())
            else:
                where.append("t.hash IN (SELECT tx_hash FROM events WHERE key = ? AND value = ?)")
                args.extend([key, value])
        clause = " AND ".join(where) or "1"
        order = "DESC" if newest_first else "ASC"
        # `clause` and `order` are built from fixed strings only; values go in as parameters.
        count_sql = "SELECT COUNT(*) FROM txs t WHERE " + clause  # noqa: S608
        rows_sql = (
            _TX_COLUMNS
            + " WHERE "
            + clause
            + f" ORDER BY t.height {order}, t.idx {order} LIMIT ? OFFSET ?"
        )
        with self._lock:
            (total,) = self._db.execute(count_sql, args).fetchone()
            rows = self._db.execute(rows_sql, [*args, limit, offset]).fetchall()
        return [_record(r) for r in rows], total

    # -- gas -----------------------------------------------------------------------------

    def gas_for(self, tx_size: int, n_signatures: int, n_messages: int) -> int:
        p = self.params
        return (
            p.gas_base
            + p.gas_per_byte * tx_size
            + p.gas_per_signature * n_signatures
            + p.gas_per_message * n_messages
        )

    def _ante_gas(self, tx_size: int, n_signatures: int) -> int:
        p = self.params
        return p.gas_base + p.gas_per_byte * tx_size + p.gas_per_signature * n_signatures

    # -- CheckTx -------------------------------------------------------------------------

    def check_tx(self, tx_bytes: bytes) -> tuple[str, Outcome]:
        """Check a broadcast transaction; on success it joins the mempool. Returns its hash."""
        txhash = txlib.tx_hash(tx_bytes)
        with self._lock:
            outcome, pending = self._check_tx(tx_bytes, txhash, simulate=False)
            if pending is not None:
                self._admit(pending)
            return txhash, outcome

    def simulate(self, tx_bytes: bytes) -> Outcome:
        """Run the checks without a signature and return the gas the transaction will use."""
        with self._lock:
            outcome, _ = self._check_tx(tx_bytes, txlib.tx_hash(tx_bytes), simulate=True)
            return outcome

    def _check_tx(
        self, tx_bytes: bytes, txhash: str, *, simulate: bool
    ) -> tuple[Outcome, _PendingCheck | None]:
        p = self.params
        if len(tx_bytes) > p.max_tx_bytes:
            return _sdk(
                21,
                f"tx too large; max size is {p.max_tx_bytes} bytes, got "
                f"{len(tx_bytes)}: tx too large",
            ), None
        if not simulate and (txhash in self._mempool_hashes or self._committed(txhash)):
            return _sdk(19, "tx already exists in cache"), None
        if not simulate and (
            len(self.mempool) >= p.max_mempool_txs
            or self._mempool_bytes + len(tx_bytes) > p.max_mempool_bytes
        ):
            return _sdk(
                20,
                f"mempool is full ({len(self.mempool)} txs, {self._mempool_bytes} bytes; "
                f"limits {p.max_mempool_txs} txs, {p.max_mempool_bytes} bytes): mempool is full",
            ), None
        try:
            decoded = txlib.decode_tx(tx_bytes)
        except InputError as exc:
            return _sdk(2, f"{exc}: tx parse error"), None
        pending, outcome = self._validate_basic(decoded, txhash, simulate=simulate)
        if pending is None:
            return outcome, None
        gas_limit = decoded.fee.gas_limit
        # The empty signature of a simulation will be 64 bytes once signed, and a missing
        # public key 72 bytes (its Any in the SignerInfo).
        size = len(tx_bytes)
        if simulate:
            size += 64 if not any(decoded.signatures) else 0
            size += _PUBKEY_INFO_BYTES if decoded.signers[0].pubkey is None else 0
        gas_used = self.gas_for(size, 1, len(pending.sends_msgs))
        state = self._check_state(pending.signer)
        if state is None:
            return _sdk(9, f"account {pending.signer} does not exist: unknown address"), None
        sequence = decoded.signers[0].sequence
        if sequence != state.sequence:
            return _wrong_sequence(state.sequence, sequence), None
        account = self.accounts[pending.signer]
        if not simulate:
            ante_gas = self._ante_gas(len(tx_bytes), 1)
            if gas_limit < ante_gas:
                return _sdk(
                    11,
                    f"out of gas in location: txSize; gasWanted: {gas_limit}, gasUsed: "
                    f"{ante_gas}: out of gas",
                    gas_limit,
                    ante_gas,
                ), None
            if not decoded.verify(self.chain_id, account.number):
                return _sdk(4, self._unverified(decoded, account.number)), None
            required = self._required_fee(gas_limit)
            if pending.fee < required:
                return _sdk(
                    13,
                    f"insufficient fees; got: {pending.fee}{DENOM} required: "
                    f"{required}{DENOM}: insufficient fee",
                ), None
        restricted = self._restriction(pending)
        if restricted is not None:
            return restricted, None
        if pending.fee > state.balance:
            return _insufficient(state.balance, pending.fee), None
        spent = sum(amount for _, denom, amount in pending.sends if denom == DENOM)
        for _, denom, amount in pending.sends:
            if denom != DENOM:
                return _insufficient(0, amount, denom), None
        if pending.fee + spent > state.balance:
            return _insufficient(state.balance - pending.fee, spent), None
        return Outcome(0, "", "", gas_limit, gas_used), pending

    def _required_fee(self, gas_limit: int) -> int:
        """The least fee for `gas_limit`: exact Decimal arithmetic, so kept per gas limit
        (clients use a handful of limits; the cache is bounded all the same)."""
        fee = self._fees.get(gas_limit)
        if fee is None:
            if len(self._fees) >= 1024:
                self._fees.clear()
            fee = self._fees[gas_limit] = txlib.fee_for_gas(gas_limit, self._gas_price)
        return fee

    def _unverified(self, decoded: txlib.DecodedTx, account_number: int) -> str:
        """The SDK's raw_log for a signature that does not verify, by sign mode."""
        mode = decoded.signers[0].mode
        if mode == txlib.SIGN_MODE_LEGACY_AMINO_JSON:
            return (
                f"signature verification failed; please verify account number ({account_number}),"
                f" sequence ({decoded.signers[0].sequence}) and chain-id ({self.chain_id}): "
                "unauthorized"
            )
        cause = ""
        if mode not in txlib.SUPPORTED_SIGN_MODES:
            cause = f": (unsupported sign mode {txlib.sign_mode_name(mode)})"
        return (
            "signature verification failed; please verify account number "
            f"({account_number}) and chain-id ({self.chain_id}){cause}: unauthorized"
        )

    def _committed(self, txhash: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM txs WHERE hash = ?", (txhash,)).fetchone() is not None
        )

    def _check_state(self, address: str) -> _CheckState | None:
        state = self._check.get(address)
        if state is not None:
            return state
        account = self.accounts.get(address)
        if account is None:
            return None
        return _CheckState(account.sequence, account.balance)

    def _validate_basic(
        self, decoded: txlib.DecodedTx, txhash: str, *, simulate: bool
    ) -> tuple[_PendingCheck | None, Outcome]:
        p = self.params
        if not decoded.messages:
            return None, _sdk(18, "must contain at least one message: invalid request")
        if decoded.has_extension_options:
            return None, _sdk(31, "unknown extension options: unknown extension options")
        if decoded.fee.gas_limit > MAX_GAS_WANTED:
            return None, _sdk(
                18,
                f"invalid gas supplied; {decoded.fee.gas_limit} > {MAX_GAS_WANTED}: "
                "invalid request",
            )
        sends: list[tuple[str, str, int]] = []
        msgs: list[txlib.MsgSend] = []
        for msg in decoded.messages:
            if not isinstance(msg, txlib.MsgSend):
                return None, _sdk(2, f"unable to resolve type URL {msg.type_url}: tx parse error")
            canonical = []
            for what, value in (("from", msg.from_address), ("to", msg.to_address)):
                try:
                    # As the SDK's AccAddressFromBech32: spaces trimmed, either case; the
                    # account is the decoded bytes, so credit the canonical address.
                    canonical.append(addr.normalize(value, "gonka"))
                except InvalidAddress as exc:
                    return None, _sdk(7, f"invalid {what} address: {exc}: invalid address")
            msg = txlib.MsgSend(canonical[0], canonical[1], msg.amount)
            if msg.to_address in BLOCKED_RECIPIENTS:
                # The bank module's blocked addresses: module accounts take no user funds.
                return None, _sdk(
                    4, f"{msg.to_address} is not allowed to receive funds: unauthorized"
                )
            if not msg.amount:
                return None, _sdk(10, "send amount is empty: invalid coins")
            denoms = [c.denom for c in msg.amount]
            if len(set(denoms)) != len(denoms) or denoms != sorted(denoms):
                return None, _sdk(10, f"{_coins_text(msg.amount)}: invalid coins")
            for coin in msg.amount:
                if coin.amount <= 0 or not _valid_denom(coin.denom):
                    return None, _sdk(10, f"{_coins_text(msg.amount)}: invalid coins")
                sends.append((msg.to_address, coin.denom, coin.amount))
            msgs.append(msg)
        if len(decoded.signatures) != 1 or len(decoded.signers) != 1:
            return None, _sdk(
                4,
                f"wrong number of signers; expected 1, got {len(decoded.signatures)}: unauthorized",
            )
        signer_info = decoded.signers[0]
        if signer_info.pubkey is None and not simulate:
            return None, _sdk(8, "pubkey on account is not set: invalid pubkey")
        if signer_info.pubkey is not None:
            signer = addr.address_from_pubkey(signer_info.pubkey.to_bytes())
        else:
            # A simulation without a public key: as the SDK's, the signer is the messages'.
            signer = msgs[0].from_address
        for msg in msgs:
            if msg.from_address != signer:
                return None, _sdk(
                    8,
                    f"pubKey does not match signer address {msg.from_address} with signer "
                    "index: 0: invalid pubkey",
                )
        # The SDK counts the memo with Go's len(): UTF-8 bytes, whatever its wording says.
        memo_bytes = len(decoded.memo.encode("utf-8"))
        if memo_bytes > p.max_memo_characters:
            return None, _sdk(
                12,
                f"maximum number of characters is {p.max_memo_characters} but received "
                f"{memo_bytes} characters: memo too large",
            )
        if decoded.timeout_height and decoded.timeout_height <= self.height:
            return None, _sdk(
                30,
                f"block height: {self.height + 1}, timeout height: {decoded.timeout_height}: "
                "tx timeout height",
            )
        fee = 0
        if not simulate:
            for coin in decoded.fee.amount:
                if coin.denom != DENOM:
                    return None, _sdk(
                        13,
                        f"insufficient fees; got: {_coins_text(decoded.fee.amount)} required: "
                        f"fees in {DENOM}: insufficient fee",
                    )
                fee += coin.amount
        pending = _PendingCheck(decoded, txhash, signer, fee, tuple(sends), tuple(msgs))
        return pending, Outcome()

    def _restriction(self, pending: _PendingCheck | _Pending) -> Outcome | None:
        end = self.params.transfer_restriction_end_height
        if not end or self.height + 1 >= end or pending.signer == self.genesis.faucet_address:
            return None
        return Outcome(1108, RESTRICTIONS, "transfer restricted during bootstrap period")

    def _admit(self, check: _PendingCheck, *, faucet: bool = False) -> None:
        state = self._check_state(check.signer)
        if state is None:  # _check_tx found the account a moment ago, under the same lock
            raise NodeStateError(f"account {check.signer} vanished from the check state")
        spent = sum(a for _, d, a in check.sends if d == DENOM)
        balance = state.balance - check.fee - spent
        self._check[check.signer] = _CheckState(state.sequence + 1, balance)
        self.mempool.append(
            _Pending(check.decoded, check.txhash, check.signer, check.fee, check.sends, faucet)
        )
        self._mempool_hashes.add(check.txhash)
        self._mempool_bytes += len(check.decoded.tx_bytes)
        if faucet:
            for recipient, _, amount in check.sends:
                self._faucet_pending[recipient] = self._faucet_pending.get(recipient, 0) + amount

    # -- faucet --------------------------------------------------------------------------

    def faucet(self, address: str, amount: int | None = None) -> tuple[str, Outcome]:
        """Send devnet GNK from the faucet account, through the mempool like any transfer."""
        if self._faucet_key is None:
            raise FaucetRefused("this node has no faucet")
        address = addr.normalize(address, "gonka")
        p = self.params
        amount = p.faucet_amount_ngonka if amount is None else amount
        if not 0 < amount <= p.faucet_max_ngonka:
            raise InvalidAmount(
                f"the faucet gives between 1 and {p.faucet_max_ngonka} ngonka per request"
            )
        with self._lock:
            given = self._faucet_total(address) + self._faucet_pending.get(address, 0)
            if given + amount > p.faucet_limit_ngonka:
                raise FaucetRefused(
                    f"{address} already received {given} ngonka from the faucet; the limit is "
                    f"{p.faucet_limit_ngonka} ngonka per address"
                )
            faucet_address = self.genesis.faucet_address
            state = self._check_state(faucet_address)
            faucet_account = self.accounts.get(faucet_address)
            if state is None or faucet_account is None:
                raise FaucetRefused("the faucet account is missing from the ledger")
            gas = txlib.gas_with_adjustment(self.gas_for(400, 1, 1))
            fee = txlib.Fee(txlib.coins(txlib.fee_for_gas(gas, self._gas_price)), gas)
            signed = txlib.sign_send(
                self._faucet_key,
                chain_id=self.chain_id,
                account_number=faucet_account.number,
                sequence=state.sequence,
                from_address=faucet_address,
                to_address=address,
                amount=amount,
                fee=fee,
                memo="faucet",
            )
            txhash = txlib.tx_hash(signed.tx_bytes)
            outcome, check = self._check_tx(signed.tx_bytes, txhash, simulate=False)
            if check is not None:
                self._admit(check, faucet=True)
            return txhash, outcome

    def _faucet_total(self, address: str) -> int:
        row = self._db.execute(
            "SELECT total FROM faucet_grants WHERE address = ?", (address,)
        ).fetchone()
        return int(row[0]) if row else 0

    # -- system transactions -------------------------------------------------------------

    def spendable(self, address: str) -> int:
        """The balance `address` can still commit: the committed one less what it has pending."""
        with self._lock:
            state = self._check_state(address)
            return state.balance if state else 0

    def submit_system(self, transfers: list[tuple[str, str, int]], memo: str) -> str:
        """Sign `transfers` (sender, recipient, ngonka) with the node's key as one system
        transaction and put it in the mempool; returns its hash.

        Sends from `MINT_ADDRESS` mint; any other sender must be able to cover its part out
        of its check-state balance (what is committed less what is pending), else FundsShort.
        """
        if self._node_key is None:
            raise NodeStateError("this node has no key for system transactions")
        if not transfers:
            raise InputError("a system transaction needs at least one transfer")
        with self._lock:
            needed: dict[str, int] = {}
            for sender, _recipient, amount in transfers:
                if amount <= 0 or amount > MAX_AMOUNT:
                    raise InvalidAmount(f"a system transfer of {amount} ngonka is out of range")
                if sender != MINT_ADDRESS:
                    needed[sender] = needed.get(sender, 0) + amount
            states: dict[str, _CheckState] = {}
            for sender, amount in needed.items():
                state = self._check_state(sender)
                balance = state.balance if state else 0
                if state is None or balance < amount:
                    raise FundsShort(
                        f"{sender} can spend {balance} ngonka, {amount} ngonka are needed"
                    )
                states[sender] = state
            node_state = self._check_state(self.node_address)
            node_account = self.accounts[self.node_address]
            assert node_state is not None
            messages = [txlib.MsgSend(s, r, txlib.coins(a)) for s, r, a in transfers]
            body = txlib.encode_body(messages, memo)
            auth_info = txlib.encode_auth_info(
                self._node_key.public_key, node_state.sequence, txlib.Fee((), 0)
            )
            signed = txlib.sign(self._node_key, body, auth_info, self.chain_id, node_account.number)
            for sender, amount in needed.items():
                state = states[sender]
                self._check[sender] = _CheckState(state.sequence, state.balance - amount)
            current = self._check_state(self.node_address)
            assert current is not None
            self._check[self.node_address] = _CheckState(current.sequence + 1, current.balance)
            self.mempool.append(
                _Pending(
                    txlib.decode_tx(signed.tx_bytes),
                    signed.txhash,
                    self.node_address,
                    0,
                    (),
                    transfers=tuple(transfers),
                )
            )
            self._mempool_hashes.add(signed.txhash)
            self._mempool_bytes += len(signed.tx_bytes)
            return signed.txhash

    def pending(self, txhash: str) -> bool:
        with self._lock:
            return txhash in self._mempool_hashes

    # -- blocks --------------------------------------------------------------------------

    def make_block(self, now: datetime | None = None) -> Block:
        """Apply the mempool as the next block and commit it to disk atomically."""
        with self._lock:
            height = self.height + 1
            block_time = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            changed: dict[str, AccountState] = {}

            def get(address: str) -> AccountState | None:
                if address in changed:
                    return changed[address]
                account = self.accounts.get(address)
                if account is None:
                    return None
                changed[address] = account.copy()
                return changed[address]

            next_number = max((a.number for a in self.accounts.values()), default=-1) + 1
            rows: list[tuple[Any, ...]] = []
            events: list[tuple[str, str, str]] = []
            grants: dict[str, int] = {}
            minted = burned = 0
            started = time.perf_counter()
            for index, pending in enumerate(self.mempool):
                if pending.system:
                    outcome, next_number, made, destroyed = self._deliver_system(
                        pending, get, changed, next_number
                    )
                    minted += made
                    burned += destroyed
                else:
                    outcome, next_number = self._deliver(pending, height, get, changed, next_number)
                rows.append(
                    (
                        pending.txhash,
                        height,
                        index,
                        outcome.code,
                        outcome.codespace,
                        outcome.raw_log,
                        outcome.gas_wanted,
                        outcome.gas_used,
                        pending.decoded.tx_bytes,
                    )
                )
                if pending.system:
                    for sender in dict.fromkeys(s for s, _, _ in pending.transfers):
                        events.append((pending.txhash, "message.sender", sender))
                    if outcome.ok:
                        for sender, recipient, _ in pending.transfers:
                            events.append((pending.txhash, "transfer.recipient", recipient))
                            events.append((pending.txhash, "transfer.sender", sender))
                    continue
                events.append((pending.txhash, "message.sender", pending.signer))
                if outcome.ok:
                    for recipient, _, amount in pending.sends:
                        events.append((pending.txhash, "transfer.recipient", recipient))
                        events.append((pending.txhash, "transfer.sender", pending.signer))
                        if pending.faucet:
                            grants[recipient] = grants.get(recipient, 0) + amount
            tx_hashes = [r[0] for r in rows]
            entropy = secrets.token_bytes(32)
            block_hash = block_digest(self.last_hash, height, tx_hashes, entropy)
            try:
                self._commit_block(
                    height,
                    block_hash,
                    block_time,
                    changed,
                    rows,
                    events,
                    grants,
                    minted,
                    entropy.hex(),
                    burned,
                )
            except sqlite3.Error as exc:
                raise NodeStateError(
                    f"cannot write block {height} to the node's database: {exc}"
                ) from exc
            prev_hash = self.last_hash
            self.minted += minted
            self.burned += burned
            self.accounts.update(changed)
            self.height, self.last_hash, self.last_time = height, block_hash, block_time
            self.mempool.clear()
            self._mempool_hashes.clear()
            self._mempool_bytes = 0
            self._check.clear()
            self._faucet_pending.clear()
            if rows:
                log.info(
                    "block %d: %d txs in %.1f ms",
                    height,
                    len(rows),
                    1000 * (time.perf_counter() - started),
                )
            return Block(height, block_hash, prev_hash, block_time, tuple(tx_hashes), entropy.hex())

    def _commit_block(
        self,
        height: int,
        block_hash: str,
        block_time: str,
        changed: dict[str, AccountState],
        rows: list[tuple[Any, ...]],
        events: list[tuple[str, str, str]],
        grants: dict[str, int],
        minted: int = 0,
        entropy: str = "",
        burned: int = 0,
    ) -> None:
        """Write a block in one SQLite transaction: all of it is on disk, or none of it."""
        with transaction(self._db):
            if minted:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('minted', ?)", (str(self.minted + minted),)
                )
            if burned:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('burned', ?)", (str(self.burned + burned),)
                )
            self._db.executemany(
                "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?, ?)",
                [
                    (a.address, a.number, a.sequence, a.pubkey, str(a.balance))
                    for a in changed.values()
                ],
            )
            self._db.executemany("INSERT INTO txs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.executemany("INSERT INTO events VALUES (?, ?, ?)", events)
            for address, amount in grants.items():
                # Added up in Python: amounts may exceed SQLite's 64-bit integers.
                self._db.execute(
                    "INSERT OR REPLACE INTO faucet_grants VALUES (?, ?)",
                    (address, str(self._faucet_total(address) + amount)),
                )
            self._db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?)",
                (height, block_hash, self.last_hash, block_time, len(rows), entropy),
            )

    def _deliver_system(
        self, pending: _Pending, get: Any, changed: dict[str, AccountState], next_number: int
    ) -> tuple[Outcome, int, int, int]:
        """Apply a system transaction, all or nothing; returns the outcome, the next account
        number, and what it minted and burned."""
        node = get(self.node_address)
        if node is None:
            raise NodeStateError("the node's account is missing from the ledger")
        node.sequence += 1
        needed: dict[str, int] = {}
        for sender, _, amount in pending.transfers:
            if sender != MINT_ADDRESS:
                needed[sender] = needed.get(sender, 0) + amount
        for sender, amount in needed.items():
            account = get(sender)
            balance = account.balance if account else 0
            if balance < amount:
                return _insufficient(balance, amount), next_number, 0, 0
        minted = burned = 0
        for sender, recipient, amount in pending.transfers:
            if sender == MINT_ADDRESS:
                minted += amount
            else:
                get(sender).balance -= amount
            if recipient == MINT_ADDRESS:
                burned += amount  # the mint destroys what it receives
                continue
            target = get(recipient)
            if target is None:
                target = changed[recipient] = AccountState(recipient, next_number)
                next_number += 1
            target.balance += amount
        return Outcome(), next_number, minted, burned

    def _deliver(
        self,
        pending: _Pending,
        height: int,
        get: Any,
        changed: dict[str, AccountState],
        next_number: int,
    ) -> tuple[Outcome, int]:
        decoded = pending.decoded
        gas_limit = decoded.fee.gas_limit
        gas_used = self.gas_for(len(decoded.tx_bytes), 1, len(decoded.messages))
        signer: AccountState | None = get(pending.signer)
        if signer is None:
            return _sdk(9, f"account {pending.signer} does not exist: unknown address"), next_number
        sequence = decoded.signers[0].sequence
        if sequence != signer.sequence:
            return _wrong_sequence(signer.sequence, sequence, gas_limit), next_number
        if pending.fee > signer.balance:
            return _insufficient(signer.balance, pending.fee, gas_wanted=gas_limit), next_number
        # The ante handler's effects stay even when the messages fail: fee paid, sequence used.
        collector = get(FEE_COLLECTOR_ADDRESS)
        if collector is None:
            collector = changed[FEE_COLLECTOR_ADDRESS] = AccountState(
                FEE_COLLECTOR_ADDRESS, next_number
            )
            next_number += 1
        signer.balance -= pending.fee
        collector.balance += pending.fee
        signer.sequence += 1
        if signer.pubkey is None and decoded.signers[0].pubkey is not None:
            signer.pubkey = decoded.signers[0].pubkey.to_bytes()
        if gas_limit < gas_used:
            return _sdk(
                11,
                f"out of gas in location: WriteFlat; gasWanted: {gas_limit}, gasUsed: "
                f"{gas_used}: out of gas",
                gas_limit,
                gas_used,
            ), next_number
        restricted = self._restriction(pending)
        if restricted is not None:
            return Outcome(
                restricted.code, restricted.codespace, restricted.raw_log, gas_limit, gas_used
            ), next_number
        spent = sum(a for _, d, a in pending.sends if d == DENOM)
        if any(d != DENOM for _, d, _ in pending.sends) or spent > signer.balance:
            return _insufficient(signer.balance, spent, DENOM, gas_limit, gas_used), next_number
        for recipient, _, amount in pending.sends:
            target = get(recipient)
            if target is None:
                target = changed[recipient] = AccountState(recipient, next_number)
                next_number += 1
            # Debit first: in a self-send `target` is `signer`, and crediting first would
            # count the amount twice.
            signer.balance -= amount
            target.balance += amount
            if target.balance > MAX_AMOUNT:
                # Cannot happen while supply <= MAX_AMOUNT; kept as a guard on the invariant.
                raise NodeStateError("a balance would exceed the largest amount")
        return Outcome(0, "", "", gas_limit, gas_used), next_number


@dataclass(frozen=True)
class _PendingCheck:
    decoded: txlib.DecodedTx
    txhash: str
    signer: str
    fee: int
    sends: tuple[tuple[str, str, int], ...]
    sends_msgs: tuple[txlib.MsgSend, ...]


@dataclass(frozen=True)
class Event:
    """An ABCI event as the SDK emits it: a type and its (key, value) attributes."""

    type: str
    attributes: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "attributes": [{"key": k, "value": v, "index": True} for k, v in self.attributes],
        }


def _event(kind: str, *attributes: tuple[str, str]) -> Event:
    return Event(kind, attributes)


def tx_events(decoded: txlib.DecodedTx, code: int, gas_used: int) -> list[Event]:
    """The events of a delivered transaction, in the SDK v0.50's order and wording.

    The ante handler's (fee transfer, `tx.fee`, `tx.acc_seq`, `tx.signature`) stay when the
    messages fail, as the fee and sequence do; a transaction refused before its fee was taken
    (gas_used 0) has none. Each message adds `message` (action, sender, module),
    `coin_spent`, `coin_received`, `transfer` and `message` (sender), tagged with `msg_index`.
    """
    if code != 0 and gas_used == 0:
        return []
    sends = [m for m in decoded.messages if isinstance(m, txlib.MsgSend)]
    pubkey = decoded.signers[0].pubkey if decoded.signers else None
    if pubkey is not None:
        signer = addr.address_from_pubkey(pubkey.to_bytes())
    elif sends:
        signer = sends[0].from_address
    else:
        return []
    fee = _coins_text(decoded.fee.amount)
    events: list[Event] = []
    if fee:
        events += [
            _event("coin_spent", ("spender", signer), ("amount", fee)),
            _event("coin_received", ("receiver", FEE_COLLECTOR_ADDRESS), ("amount", fee)),
            _event(
                "transfer",
                ("recipient", FEE_COLLECTOR_ADDRESS),
                ("sender", signer),
                ("amount", fee),
            ),
            _event("message", ("sender", signer)),
        ]
    events.append(_event("tx", ("fee", fee), ("fee_payer", signer)))
    sequence = decoded.signers[0].sequence if decoded.signers else 0
    events.append(_event("tx", ("acc_seq", f"{signer}/{sequence}")))
    for signature in decoded.signatures:
        events.append(_event("tx", ("signature", base64.b64encode(signature).decode("ascii"))))
    if code != 0:
        return events
    for index, msg in enumerate(sends):
        i = ("msg_index", str(index))
        amount = _coins_text(msg.amount)
        sender, recipient = msg.from_address, msg.to_address
        events += [
            _event(
                "message",
                ("action", txlib.MSG_SEND_TYPE_URL),
                ("sender", sender),
                ("module", "bank"),
                i,
            ),
            _event("coin_spent", ("spender", sender), ("amount", amount), i),
            _event("coin_received", ("receiver", recipient), ("amount", amount), i),
            _event("transfer", ("recipient", recipient), ("sender", sender), ("amount", amount), i),
            _event("message", ("sender", sender), i),
        ]
    return events


def tx_msg_data(decoded: txlib.DecodedTx) -> bytes:
    """The SDK's TxMsgData of a successful transaction: one (empty) response per message."""
    responses = [
        any_pb2.Any(type_url=f"{m.type_url}Response")
        for m in decoded.messages
        if isinstance(m, txlib.MsgSend)
    ]
    return abci_pb2.TxMsgData(msg_responses=responses).SerializeToString()


_TX_COLUMNS = (
    "SELECT t.hash, t.height, t.idx, t.code, t.codespace, t.raw_log, t.gas_wanted, "
    "t.gas_used, t.tx_bytes, b.time FROM txs t JOIN blocks b ON b.height = t.height"
)


def _record(row: tuple[Any, ...]) -> TxRecord:
    return TxRecord(
        hash=row[0],
        height=row[1],
        index=row[2],
        code=row[3],
        codespace=row[4],
        raw_log=row[5],
        gas_wanted=row[6],
        gas_used=row[7],
        tx_bytes=bytes(row[8]),
        time=row[9],
    )


def _coins_text(coins: tuple[txlib.Coin, ...]) -> str:
    return ",".join(f"{c.amount}{c.denom}" for c in coins)


def _valid_denom(denom: str) -> bool:
    # The SDK's denom regex: [a-zA-Z][a-zA-Z0-9/:._-]{2,127}
    return (
        3 <= len(denom) <= 128
        and denom.isascii()
        and denom[0].isalpha()
        and all(ch.isalnum() or ch in "/:._-" for ch in denom)
    )


def genesis_digest(genesis: Genesis) -> str:
    """SHA-256 (upper-case hex) of the canonical genesis JSON (sorted keys, no spaces)."""
    canonical = json.dumps(genesis.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest().upper()


def block_digest(prev_hash: str, height: int, tx_hashes: list[str], entropy: bytes = b"") -> str:
    """SHA-256(prev hash || height (8 bytes, big-endian) || tx hashes || entropy), upper-case
    hex."""
    digest = hashlib.sha256(bytes.fromhex(prev_hash))
    digest.update(height.to_bytes(8, "big"))
    for h in tx_hashes:
        digest.update(bytes.fromhex(h))
    digest.update(entropy)
    return digest.hexdigest().upper()
