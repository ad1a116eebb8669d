"""The genesis of a local network and the layout of a node's home directory.

A node's home holds:

- `genesis.json`: chain id, genesis time, initial balances and the chain parameters
  (written once by `gonka node init`, never changed by the node);
- `node.db`: the SQLite state (WAL), see `ledger`;
- `network.db`: the state of PoC rounds and inference (participants, commits, results),
  see `network`;
- `keys/`: the node's keystore (the devnet faucet key and the node's own key, which signs
  its identity and its system transactions), encrypted with the password in
  `keys.password` (0600). A devnet's keys guard play money; the file lets the node start
  unattended.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from gonka_cli.chain.amount import DENOM, MAX_AMOUNT
from gonka_cli.crypto import address as addr
from gonka_cli.errors import GenesisError, InputError, InvalidAddress, NodeError
from gonka_cli.node.epochs import NetworkParams
from gonka_cli.storage import atomic_write
from gonka_cli.validate import is_int, is_number

GENESIS_FILE = "genesis.json"
DB_FILE = "node.db"
KEYS_DIR = "keys"
PASSWORD_FILE = "keys.password"  # noqa: S105 - a file name, not a password
FAUCET_KEY = "faucet"
NODE_KEY = "node"
NETWORK_DB_FILE = "network.db"
DEFAULT_CHAIN_ID = "gonka-devnet"
MAINNET_CHAIN_ID = "gonka-mainnet"
GNK = 10**9


@dataclass(frozen=True)
class ChainParams:
    """Parameters of the local chain; every one is recorded in the genesis."""

    block_time_s: float = 1.0
    #: Minimum gas price in ngonka per gas unit (mainnet: 0).
    min_gas_price: str = "0"
    max_tx_bytes: int = 65_536
    max_memo_characters: int = 256
    max_mempool_txs: int = 10_000
    #: The mempool's size in bytes of signed transactions (CometBFT's max_txs_bytes): it
    #: bounds the node's memory and the work of one block.
    max_mempool_bytes: int = 64 * 2**20
    #: Gas: per transaction, per byte of the signed transaction, per signature, per message.
    gas_base: int = 10_000
    gas_per_byte: int = 10
    gas_per_signature: int = 1_000
    gas_per_message: int = 20_000
    #: The faucet hands out at most `faucet_max_ngonka` per request and `faucet_limit_ngonka`
    #: per address over the life of the chain.
    faucet_amount_ngonka: int = 1_000 * GNK
    faucet_max_ngonka: int = 10_000 * GNK
    faucet_limit_ngonka: int = 100_000 * GNK
    #: Like mainnet's `restrictions` module: user-to-user sends fail (code 1108) below this
    #: height. 0 disables the restriction (the devnet default).
    transfer_restriction_end_height: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def gas_price(self) -> Decimal:
        return Decimal(self.min_gas_price)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChainParams:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise GenesisError(f"genesis params: unknown field(s) {', '.join(sorted(unknown))}")
        params = cls(**data)
        params.check()
        return params

    def check(self) -> None:
        try:
            price = Decimal(self.min_gas_price)
        except (InvalidOperation, TypeError):
            raise GenesisError(
                f"genesis params: min_gas_price {self.min_gas_price!r} is not a number"
            ) from None
        if not price.is_finite() or price < 0:
            raise GenesisError("genesis params: min_gas_price must be >= 0")
        # A hand-edited genesis may hold "1" or true: refuse them here, not in the block clock.
        if not is_number(self.block_time_s) or not 0.05 <= self.block_time_s <= 3600:
            raise GenesisError("genesis params: block_time_s must be between 0.05 and 3600")
        for name in (
            "max_tx_bytes",
            "max_memo_characters",
            "max_mempool_txs",
            "max_mempool_bytes",
            "faucet_amount_ngonka",
            "faucet_max_ngonka",
            "faucet_limit_ngonka",
        ):
            value = getattr(self, name)
            if not is_int(value) or value <= 0:
                raise GenesisError(f"genesis params: {name} must be a positive integer")
        for name in (
            "gas_base",
            "gas_per_byte",
            "gas_per_signature",
            "gas_per_message",
            "transfer_restriction_end_height",
        ):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                raise GenesisError(f"genesis params: {name} must be an integer >= 0")
        if self.faucet_amount_ngonka > self.faucet_max_ngonka:
            raise GenesisError(
                "genesis params: faucet_amount_ngonka must not exceed faucet_max_ngonka"
            )


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time: str
    #: address -> ngonka, in the order account numbers are given.
    balances: tuple[tuple[str, int], ...]
    params: ChainParams = field(default_factory=ChainParams)
    faucet_address: str = ""
    #: The `network` section (epochs, PoC, inference, rewards). None in a genesis written
    #: before it existed: such a chain runs with the defaults, and its genesis hash stays.
    network: NetworkParams | None = None

    @property
    def network_params(self) -> NetworkParams:
        return self.network or NetworkParams()

    @property
    def total_supply(self) -> int:
        return sum(amount for _, amount in self.balances)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "chain_id": self.chain_id,
            "genesis_time": self.genesis_time,
            "faucet_address": self.faucet_address,
            "params": self.params.to_dict(),
            "accounts": [
                {"address": a, "balance": {"denom": DENOM, "amount": str(n)}}
                for a, n in self.balances
            ],
        }
        if self.network is not None:
            data["network"] = self.network.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Genesis:
        if not isinstance(data, dict):
            raise GenesisError("genesis must be a JSON object")
        try:
            balances = []
            for entry in data["accounts"]:
                coin = entry["balance"]
                if coin["denom"] != DENOM:
                    raise GenesisError(f"genesis: only {DENOM} balances, got {coin['denom']!r}")
                amount = coin["amount"]
                # Decimal digits only: int() would also take "1_000", " 5" or "+5".
                if not (
                    is_int(amount)
                    or (isinstance(amount, str) and amount.isascii() and amount.isdigit())
                ):
                    raise GenesisError(
                        f"genesis: balance of {entry['address']} is not a whole number of "
                        f"{DENOM}: {str(amount)[:40]!r}"
                    )
                balances.append((str(entry["address"]), int(amount)))
            genesis = cls(
                chain_id=str(data["chain_id"]),
                genesis_time=str(data["genesis_time"]),
                balances=tuple(balances),
                params=ChainParams.from_dict(dict(data.get("params") or {})),
                faucet_address=str(data.get("faucet_address") or ""),
                network=(NetworkParams.from_dict(data["network"]) if "network" in data else None),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GenesisError(f"genesis is malformed ({type(exc).__name__}: {exc})") from None
        genesis.check()
        return genesis

    def check(self) -> None:
        if not self.chain_id or len(self.chain_id) > 48 or not self.chain_id.isascii():
            raise GenesisError(f"genesis: bad chain id {self.chain_id!r}")
        if self.chain_id == MAINNET_CHAIN_ID:
            raise GenesisError(
                f"genesis: {MAINNET_CHAIN_ID} is the real network's chain id; pick another, so "
                "that transactions signed for this network can never be replayed there"
            )
        seen = set()
        for address, amount in self.balances:
            # Accounts are keyed by the canonical form: "GONKA1..." would be a second account
            # that no query could reach.
            _check_canonical(address, "account")
            if address in seen:
                raise GenesisError(f"genesis: {address} is listed twice")
            seen.add(address)
            if not 0 <= amount <= MAX_AMOUNT:
                raise GenesisError(f"genesis: balance of {address} is out of range")
        if self.total_supply > MAX_AMOUNT:
            raise GenesisError("genesis: total supply is out of range")
        if self.faucet_address:
            _check_canonical(self.faucet_address, "faucet address")


def _check_canonical(address: str, what: str) -> None:
    try:
        canonical = addr.normalize(address, "gonka")
    except InvalidAddress as exc:
        raise GenesisError(f"genesis: {what}: {exc}") from None
    if canonical != address:
        raise GenesisError(
            f"genesis: {what} {address!r} is not written canonically (lower case, no spaces): "
            f"write {canonical}"
        )


def parse_genesis_account(text: str) -> tuple[str, int]:
    """Parse `--genesis-account ADDR=AMOUNT` (AMOUNT with a unit, e.g. `1000gnk`)."""
    from gonka_cli.chain.amount import parse_amount

    address, sep, amount = text.partition("=")
    if not sep:
        raise InputError(f"genesis account {text!r} is not ADDR=AMOUNT (e.g. gonka1...=1000gnk)")
    address = addr.normalize(address.strip(), "gonka")
    return address, parse_amount(amount.strip())


def new_genesis(
    chain_id: str = DEFAULT_CHAIN_ID,
    accounts: list[tuple[str, int]] | tuple[tuple[str, int], ...] = (),
    params: ChainParams | None = None,
    faucet_address: str = "",
    network: NetworkParams | None = None,
) -> Genesis:
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        balances=tuple(accounts),
        params=params or ChainParams(),
        faucet_address=faucet_address,
        network=network or NetworkParams(),
    )
    genesis.check()
    return genesis


def with_params(genesis: Genesis, **changes: Any) -> Genesis:
    params = replace(genesis.params, **changes)
    params.check()
    return replace(genesis, params=params)


def with_network(genesis: Genesis, **changes: Any) -> Genesis:
    network = replace(genesis.network_params, **changes)
    network.check()
    return replace(genesis, network=network)


# --- the home directory -----------------------------------------------------------------


@dataclass(frozen=True)
class NodeHome:
    root: Path

    @property
    def genesis_file(self) -> Path:
        return self.root / GENESIS_FILE

    @property
    def db_file(self) -> Path:
        return self.root / DB_FILE

    @property
    def keys_dir(self) -> Path:
        return self.root / KEYS_DIR

    @property
    def password_file(self) -> Path:
        return self.root / PASSWORD_FILE

    @property
    def lock_file(self) -> Path:
        return self.root / "node.lock"

    @property
    def network_db_file(self) -> Path:
        return self.root / NETWORK_DB_FILE

    def exists(self) -> bool:
        return self.genesis_file.exists()

    def keystore_password(self) -> str:
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise GenesisError(
                f"cannot read {self.password_file}: {exc.strerror}; re-create the node home "
                "with `gonka node init`"
            ) from None

    def load_genesis(self) -> Genesis:
        try:
            data = json.loads(self.genesis_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GenesisError(
                f"no genesis in {self.root}: run `gonka node init --home {self.root}` first"
            ) from None
        except (OSError, ValueError) as exc:
            raise GenesisError(f"cannot read {self.genesis_file}: {exc}") from None
        return Genesis.from_dict(data)


def default_home() -> Path:
    from gonka_cli.settings import paths

    return paths().data_dir / "node"


def init_home(
    root: Path,
    *,
    chain_id: str = DEFAULT_CHAIN_ID,
    accounts: list[tuple[str, int]] | tuple[tuple[str, int], ...] = (),
    params: ChainParams | None = None,
    network: NetworkParams | None = None,
    faucet_ngonka: int = 1_000_000_000 * GNK,
) -> Genesis:
    """Create a node home: a faucet key, then the genesis funding it and `accounts`.

    Refuses a home that already has a genesis (its state would no longer match).
    """
    from gonka_cli.crypto import hd
    from gonka_cli.wallet.keystore import Keystore

    home = NodeHome(root)
    if home.exists():
        raise GenesisError(
            f"{root} already holds a node (genesis.json exists); use another --home or delete it"
        )
    password = secrets.token_urlsafe(24)
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A new file, so that it is 0600 whatever was there (a readable file, a link elsewhere).
        home.password_file.unlink(missing_ok=True)
        fd = os.open(home.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(password + "\n")
    except OSError as exc:
        raise NodeError(f"cannot use {root} as the node's home ({exc.strerror})") from None
    keystore = Keystore(home.keys_dir)
    if keystore.exists(FAUCET_KEY):
        keystore.delete(FAUCET_KEY)
    faucet = keystore.add_mnemonic(
        FAUCET_KEY, hd.generate_mnemonic(24), password, path=hd.HDPath.bip44()
    )
    balances = [(faucet.address, faucet_ngonka), *accounts]
    node_key(home)
    genesis = new_genesis(chain_id, balances, params, faucet.address, network)
    atomic_write(home.genesis_file, json.dumps(genesis.to_dict(), indent=2) + "\n")
    return genesis


def node_key(home: NodeHome) -> Any:
    """The node's own key (its identity), created in the node's keystore on first use."""
    from gonka_cli.crypto import hd
    from gonka_cli.wallet.keystore import Keystore

    keystore = Keystore(home.keys_dir)
    password = home.keystore_password()
    if not keystore.exists(NODE_KEY):
        keystore.add_mnemonic(NODE_KEY, hd.generate_mnemonic(24), password, path=hd.HDPath.bip44())
    return keystore.unlock(NODE_KEY, password).private_key
