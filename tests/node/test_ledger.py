"""The ledger as a library: blocks, persistence, the check state, delivery, the faucet."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from gonka_cli.chain import tx as txlib
from gonka_cli.chain.amount import MAX_AMOUNT
from gonka_cli.chain.proto.cosmos.tx.v1beta1 import tx_pb2
from gonka_cli.crypto.address import address_from_pubkey
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import GenesisError, InputError, InvalidAmount, NodeStateError
from gonka_cli.node.genesis import (
    ChainParams,
    Genesis,
    NodeHome,
    init_home,
    new_genesis,
    parse_genesis_account,
)
from gonka_cli.node.ledger import (
    FEE_COLLECTOR_ADDRESS,
    MINT_ADDRESS,
    FaucetRefused,
    Ledger,
    block_digest,
    genesis_digest,
    tx_events,
    tx_msg_data,
)
from gonka_cli.wallet.keystore import Keystore

GNK = 10**9
ALICE_KEY = PrivateKey((11).to_bytes(32, "big"))
BOB_KEY = PrivateKey((12).to_bytes(32, "big"))
ALICE = address_from_pubkey(ALICE_KEY.public_key.to_bytes())
BOB = address_from_pubkey(BOB_KEY.public_key.to_bytes())
CAROL = address_from_pubkey(PrivateKey((13).to_bytes(32, "big")).public_key.to_bytes())


def open_ledger(tmp_path: Path, genesis: Genesis, faucet: PrivateKey | None = None) -> Ledger:
    return Ledger(str(tmp_path / "node.db"), genesis, faucet_key=faucet)


@pytest.fixture
def genesis() -> Genesis:
    return new_genesis(accounts=[(ALICE, 100 * GNK), (BOB, 5 * GNK)])


def transfer(
    key: PrivateKey,
    sequence: int,
    to: str,
    amount: int,
    *,
    number: int = 0,
    fee: int = 0,
    gas: int = 200_000,
    chain_id: str = "gonka-devnet",
) -> bytes:
    return txlib.sign_send(
        key,
        chain_id=chain_id,
        account_number=number,
        sequence=sequence,
        from_address=address_from_pubkey(key.public_key.to_bytes()),
        to_address=to,
        amount=amount,
        fee=txlib.Fee(txlib.coins(fee), gas),
    ).tx_bytes


def test_blocks_chain_by_hash_from_the_genesis(tmp_path: Path, genesis: Genesis) -> None:
    ledger = open_ledger(tmp_path, genesis)
    first = ledger.make_block()
    txhash, outcome = ledger.check_tx(transfer(ALICE_KEY, 0, CAROL, GNK))
    assert outcome.ok
    second = ledger.make_block()
    canonical = json.dumps(genesis.to_dict(), sort_keys=True, separators=(",", ":"))
    assert first.prev_hash == hashlib.sha256(canonical.encode()).hexdigest().upper()
    assert first.prev_hash == genesis_digest(genesis)
    entropy = bytes.fromhex(second.entropy)
    assert len(entropy) == 32 and second.entropy != first.entropy
    expected = (
        hashlib.sha256(
            bytes.fromhex(first.hash) + (2).to_bytes(8, "big") + bytes.fromhex(txhash) + entropy
        )
        .hexdigest()
        .upper()
    )
    assert second.hash == expected == block_digest(first.hash, 2, [txhash], entropy)
    assert second.prev_hash == first.hash
    assert second.tx_hashes == (txhash,)
    assert ledger.block(2) == second
    assert ledger.block(3) is None


def test_state_survives_reopening(tmp_path: Path, genesis: Genesis) -> None:
    ledger = open_ledger(tmp_path, genesis)
    ledger.check_tx(transfer(ALICE_KEY, 0, CAROL, 3 * GNK, fee=100))
    block = ledger.make_block()
    ledger.close()
    again = open_ledger(tmp_path, genesis)
    assert (again.height, again.last_hash) == (1, block.hash)
    alice = again.account(ALICE)
    assert alice is not None
    assert (alice.balance, alice.sequence) == (97 * GNK - 100, 1)
    assert alice.pubkey == ALICE_KEY.public_key.to_bytes()
    assert again.account(CAROL) is not None
    assert again.account(FEE_COLLECTOR_ADDRESS).balance == 100  # type: ignore[union-attr]
    assert again.total_supply() == 105 * GNK
    assert again.tx(block.tx_hashes[0]).code == 0  # type: ignore[union-attr]


def test_another_genesis_is_refused(tmp_path: Path, genesis: Genesis) -> None:
    open_ledger(tmp_path, genesis).close()
    other = new_genesis(accounts=[(ALICE, 1)])
    with pytest.raises(NodeStateError, match="made from another genesis"):
        open_ledger(tmp_path, other)


def test_a_tampered_balance_is_detected_on_open(tmp_path: Path, genesis: Genesis) -> None:
    open_ledger(tmp_path, genesis).close()
    with sqlite3.connect(tmp_path / "node.db") as db:
        db.execute("UPDATE accounts SET balance = '999' WHERE address = ?", (BOB,))
    with pytest.raises(NodeStateError, match="the database is damaged"):
        open_ledger(tmp_path, genesis)


def test_the_check_state_stops_double_spends_and_reused_sequences(
    tmp_path: Path, genesis: Genesis
) -> None:
    ledger = open_ledger(tmp_path, genesis)
    # Bob holds 5 GNK: two 3 GNK sends with consecutive sequences cannot both pass.
    _, first = ledger.check_tx(transfer(BOB_KEY, 0, CAROL, 3 * GNK, number=1))
    _, second = ledger.check_tx(transfer(BOB_KEY, 1, CAROL, 3 * GNK, number=1))
    assert first.ok
    assert (second.code, second.raw_log) == (
        5,
        f"spendable balance {2 * GNK}ngonka is smaller than {3 * GNK}ngonka: insufficient funds",
    )
    _, reused = ledger.check_tx(transfer(BOB_KEY, 0, ALICE, 1, number=1))
    assert reused.code == 32
    assert reused.raw_log == (
        "account sequence mismatch, expected 1, got 0: incorrect account sequence"
    )
    ledger.make_block()
    assert ledger.account(BOB).balance == 2 * GNK  # type: ignore[union-attr]


def test_concurrent_sends_from_one_account_spend_once(tmp_path: Path, genesis: Genesis) -> None:
    ledger = open_ledger(tmp_path, genesis)
    # 16 threads race the same sequence with different recipients: exactly one wins.
    txs = [transfer(BOB_KEY, 0, CAROL, 4 * GNK + i, number=1) for i in range(16)]
    results: list[int] = []
    barrier = threading.Barrier(len(txs))

    def send(tx_bytes: bytes) -> None:
        barrier.wait()
        results.append(ledger.check_tx(tx_bytes)[1].code)

    threads = [threading.Thread(target=send, args=(t,)) for t in txs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0] + [32] * 15
    ledger.make_block()
    bob = ledger.account(BOB)
    assert bob is not None and bob.sequence == 1 and bob.balance < GNK
    assert ledger.total_supply() == 105 * GNK


def test_running_out_of_gas_in_the_block_still_charges_the_fee(
    tmp_path: Path, genesis: Genesis
) -> None:
    ledger = open_ledger(tmp_path, genesis)
    # (a placeholder gas limit of the same varint length, so the size does not change)
    size = len(transfer(ALICE_KEY, 0, CAROL, GNK, fee=7, gas=10_000))
    # Enough gas for the size and signature (CheckTx), not for the message (the block).
    gas = ledger.gas_for(size, 1, 0) + 1
    tx_bytes = transfer(ALICE_KEY, 0, CAROL, GNK, fee=7, gas=gas)
    txhash, outcome = ledger.check_tx(tx_bytes)
    assert outcome.ok
    ledger.make_block()
    record = ledger.tx(txhash)
    assert record is not None
    assert (record.code, record.codespace) == (11, "sdk")
    assert record.raw_log.endswith(
        f"gasWanted: {gas}, gasUsed: {ledger.gas_for(size, 1, 1)}: out of gas"
    )
    alice = ledger.account(ALICE)
    assert alice is not None and (alice.balance, alice.sequence) == (100 * GNK - 7, 1)
    assert ledger.account(CAROL) is None
    assert ledger.search([("transfer.recipient", CAROL)])[1] == 0
    assert ledger.search([("message.sender", ALICE)])[1] == 1


def test_transfers_are_restricted_until_the_end_height(tmp_path: Path) -> None:
    genesis = new_genesis(
        accounts=[(ALICE, 10 * GNK)], params=ChainParams(transfer_restriction_end_height=3)
    )
    ledger = open_ledger(tmp_path, genesis)
    _, outcome = ledger.check_tx(transfer(ALICE_KEY, 0, CAROL, 1))
    assert (outcome.codespace, outcome.code, outcome.raw_log) == (
        "restrictions",
        1108,
        "transfer restricted during bootstrap period",
    )
    ledger.make_block()
    ledger.make_block()  # the next block is height 3: transfers are open
    _, outcome = ledger.check_tx(transfer(ALICE_KEY, 0, CAROL, 1))
    assert outcome.ok


def test_a_timeout_height_that_passed_is_refused(tmp_path: Path, genesis: Genesis) -> None:
    ledger = open_ledger(tmp_path, genesis)
    ledger.make_block()
    message = txlib.MsgSend(ALICE, CAROL, txlib.coins(1))
    body = txlib.encode_body([message], "", timeout_height=1)
    auth = txlib.encode_auth_info(ALICE_KEY.public_key, 0, txlib.Fee((), 200_000))
    signed = txlib.sign(ALICE_KEY, body, auth, "gonka-devnet", 0)
    _, outcome = ledger.check_tx(signed.tx_bytes)
    assert (outcome.code, outcome.raw_log) == (
        30,
        "block height: 2, timeout height: 1: tx timeout height",
    )


def test_the_faucet_limits_requests_and_addresses_across_restarts(tmp_path: Path) -> None:
    faucet_key = PrivateKey((99).to_bytes(32, "big"))
    faucet = address_from_pubkey(faucet_key.public_key.to_bytes())
    params = ChainParams(
        faucet_amount_ngonka=2 * GNK, faucet_max_ngonka=5 * GNK, faucet_limit_ngonka=8 * GNK
    )
    genesis = new_genesis(accounts=[(faucet, 1_000 * GNK)], params=params, faucet_address=faucet)
    ledger = open_ledger(tmp_path, genesis, faucet_key)
    _, outcome = ledger.faucet(CAROL)
    assert outcome.ok
    _, outcome = ledger.faucet(CAROL, 5 * GNK)
    assert outcome.ok
    with pytest.raises(InvalidAmount, match="per request"):
        ledger.faucet(CAROL, 6 * GNK)
    with pytest.raises(FaucetRefused, match=f"already received {7 * GNK} ngonka"):
        ledger.faucet(CAROL, 2 * GNK)  # pending grants count too
    ledger.make_block()
    ledger.close()
    again = open_ledger(tmp_path, genesis, faucet_key)
    assert again.account(CAROL).balance == 7 * GNK  # type: ignore[union-attr]
    with pytest.raises(FaucetRefused, match="limit is"):
        again.faucet(CAROL, 2 * GNK)
    _, outcome = again.faucet(CAROL, GNK)
    assert outcome.ok
    with pytest.raises(InputError):
        again.faucet("gonka1notanaddress")


def test_a_node_without_faucet_key_refuses_faucet_requests(
    tmp_path: Path, genesis: Genesis
) -> None:
    with pytest.raises(FaucetRefused, match="no faucet"):
        open_ledger(tmp_path, genesis).faucet(CAROL)


# --- genesis and the home ---------------------------------------------------------------


def test_init_home_writes_a_funded_faucet_and_secret_files(tmp_path: Path) -> None:
    root = tmp_path / "home"
    genesis = init_home(root, accounts=[(ALICE, 7)])
    home = NodeHome(root)
    assert genesis.balances[1:] == ((ALICE, 7),)
    assert genesis.balances[0][0] == genesis.faucet_address
    assert home.load_genesis() == genesis
    assert (home.password_file.stat().st_mode & 0o777) == 0o600
    key = Keystore(home.keys_dir).get("faucet")
    assert key.address == genesis.faucet_address
    secret = Keystore(home.keys_dir).unlock("faucet", home.keystore_password())
    assert address_from_pubkey(secret.private_key.public_key.to_bytes()) == key.address
    with pytest.raises(GenesisError, match="already holds a node"):
        init_home(root)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{ALICE}=1000gnk", (ALICE, 1000 * GNK)),
        (f" {ALICE} = 5ngonka ", (ALICE, 5)),
    ],
)
def test_parse_genesis_account(text: str, expected: tuple[str, int]) -> None:
    assert parse_genesis_account(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ALICE, "is not ADDR=AMOUNT"),
        ("gonka1xyz=5gnk", "invalid address"),
        (f"{ALICE}=5", "add a unit"),
        (f"{ALICE}=-5gnk", "invalid amount"),
    ],
)
def test_bad_genesis_accounts(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_genesis_account(text)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chain_id": ""}, "bad chain id"),
        ({"accounts": "x"}, "malformed"),
        ({"params": {"block_time_s": 0}}, "block_time_s"),
        ({"params": {"min_gas_price": "cheap"}}, "min_gas_price"),
        ({"params": {"unknown": 1}}, "unknown field"),
        ({"params": {"max_tx_bytes": -1}}, "max_tx_bytes"),
    ],
)
def test_bad_genesis_files_are_refused(
    genesis: Genesis, change: dict[str, object], message: str
) -> None:
    data = {**genesis.to_dict(), **change}
    with pytest.raises(GenesisError, match=message):
        Genesis.from_dict(data)


def test_duplicate_genesis_accounts_are_refused() -> None:
    with pytest.raises(GenesisError, match="listed twice"):
        new_genesis(accounts=[(ALICE, 1), (ALICE, 2)])


def test_a_missing_or_corrupt_genesis_says_what_to_do(tmp_path: Path) -> None:
    home = NodeHome(tmp_path)
    with pytest.raises(GenesisError, match="run `gonka node init"):
        home.load_genesis()
    home.genesis_file.write_text("{not json")
    with pytest.raises(GenesisError, match="cannot read"):
        home.load_genesis()


# --- edge cases found in review -----------------------------------------------------------


def test_a_self_send_of_most_of_a_huge_supply_is_applied(tmp_path: Path) -> None:
    # Crediting before debiting counted the amount twice: over MAX_AMOUNT, the block failed
    # and the same mempool failed every block after it (the chain stopped).
    ledger = open_ledger(tmp_path, new_genesis(accounts=[(ALICE, MAX_AMOUNT)]))
    txhash, outcome = ledger.check_tx(transfer(ALICE_KEY, 0, ALICE, MAX_AMOUNT - 1))
    assert outcome.ok
    ledger.make_block()
    record = ledger.tx(txhash)
    assert record is not None and record.code == 0
    alice = ledger.account(ALICE)
    assert alice is not None and (alice.balance, alice.sequence) == (MAX_AMOUNT, 1)
    assert ledger.total_supply() == MAX_AMOUNT


class _CommitFails:
    """A connection whose COMMIT fails (an I/O error, the disk full) and commits nothing."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)


def test_a_block_whose_commit_fails_is_not_served(tmp_path: Path, genesis: Genesis) -> None:
    ledger = open_ledger(tmp_path, genesis)
    txhash, outcome = ledger.check_tx(transfer(ALICE_KEY, 0, CAROL, GNK))
    assert outcome.ok
    real = ledger._db
    ledger._db = _CommitFails(real)  # type: ignore[assignment]
    with pytest.raises(NodeStateError, match=r"cannot write block 1 .*disk I/O error"):
        ledger.make_block()
    ledger._db = real
    # Nothing of the failed block can be read back: it is not on disk.
    assert (ledger.height, ledger.tx(txhash), ledger.block(1)) == (0, None, None)
    assert ledger.account(CAROL) is None
    assert ledger.search([("message.sender", ALICE)])[1] == 0
    # Once the disk works again, the same mempool makes the block.
    ledger.make_block()
    record = ledger.tx(txhash)
    assert record is not None and record.code == 0 and ledger.height == 1
    assert ledger.account(CAROL).balance == GNK  # type: ignore[union-attr]
    ledger.close()
    assert open_ledger(tmp_path, genesis).account(CAROL).balance == GNK  # type: ignore[union-attr]


def test_a_full_disk_is_reported_as_such(tmp_path: Path, genesis: Genesis) -> None:
    ledger = open_ledger(tmp_path, genesis)
    (pages,) = ledger._db.execute("PRAGMA page_count").fetchone()
    ledger._db.execute(f"PRAGMA max_page_count = {pages}")
    for sequence in range(50):
        assert ledger.check_tx(transfer(ALICE_KEY, sequence, CAROL, 1))[1].ok
    # SQLite rolls back by itself here; a second ROLLBACK used to hide the real error.
    with pytest.raises(NodeStateError, match="database or disk is full"):
        ledger.make_block()
    assert ledger.height == 0 and ledger.account(CAROL) is None
    assert ledger.total_supply() == genesis.total_supply


@pytest.mark.parametrize("content", [b"garbage, not a database" * 100, b"SQLite format 3\x00junk"])
def test_a_damaged_database_file_is_a_node_state_error(
    tmp_path: Path, genesis: Genesis, content: bytes
) -> None:
    (tmp_path / "node.db").write_bytes(content)
    with pytest.raises(NodeStateError, match="cannot open the node's database"):
        open_ledger(tmp_path, genesis)


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        ([(ALICE.upper(), 1)], "not written canonically"),
        ([(f" {ALICE}", 1)], "not written canonically"),
        # One account listed twice, once in upper case: it would get two balances.
        ([(ALICE, 1), (ALICE.upper(), 2)], "not written canonically"),
    ],
)
def test_genesis_addresses_must_be_canonical(accounts: list[tuple[str, int]], message: str) -> None:
    with pytest.raises(GenesisError, match=message):
        new_genesis(accounts=accounts)
    with pytest.raises(GenesisError, match="faucet address"):
        new_genesis(accounts=[(ALICE, 1)], faucet_address=ALICE.upper())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"block_time_s": "1"}, "block_time_s"),
        ({"block_time_s": True}, "block_time_s"),
        ({"gas_base": -1}, "gas_base"),
        ({"gas_per_byte": "10"}, "gas_per_byte"),
        ({"gas_per_message": 1.5}, "gas_per_message"),
        ({"transfer_restriction_end_height": "5"}, "transfer_restriction_end_height"),
        ({"max_tx_bytes": True}, "max_tx_bytes"),
        ({"faucet_amount_ngonka": 2 * GNK, "faucet_max_ngonka": GNK}, "faucet_amount_ngonka"),
    ],
)
def test_genesis_params_of_the_wrong_type_are_refused(
    genesis: Genesis, params: dict[str, object], message: str
) -> None:
    data = {**genesis.to_dict(), "params": {**genesis.params.to_dict(), **params}}
    with pytest.raises(GenesisError, match=message):
        Genesis.from_dict(data)


@pytest.mark.parametrize("amount", ["1_000", " 5", "\u0663", "+5", 1.5, True])
def test_genesis_balances_are_plain_digits(genesis: Genesis, amount: object) -> None:
    data = genesis.to_dict()
    data["accounts"][0]["balance"]["amount"] = amount
    with pytest.raises(GenesisError, match="balance"):
        Genesis.from_dict(data)


def test_faucet_grants_over_64_bits_are_counted_exactly(tmp_path: Path) -> None:
    faucet_key = PrivateKey((99).to_bytes(32, "big"))
    faucet = address_from_pubkey(faucet_key.public_key.to_bytes())
    big = 2**64
    params = ChainParams(
        faucet_amount_ngonka=big, faucet_max_ngonka=big, faucet_limit_ngonka=2 * big + 1
    )
    genesis = new_genesis(accounts=[(faucet, 4 * big)], params=params, faucet_address=faucet)
    ledger = open_ledger(tmp_path, genesis, faucet_key)
    for _ in range(2):  # a new grant, then one added to a stored total
        assert ledger.faucet(CAROL)[1].ok
        ledger.make_block()
    assert ledger.account(CAROL).balance == 2 * big  # type: ignore[union-attr]
    with pytest.raises(FaucetRefused, match=f"already received {2 * big} ngonka"):
        ledger.faucet(CAROL, 2)
    assert ledger.faucet(CAROL, 1)[1].ok


def test_the_largest_gas_limit_the_sdk_takes_is_written_to_the_block(
    tmp_path: Path, genesis: Genesis
) -> None:
    ledger = open_ledger(tmp_path, genesis)
    txhash, outcome = ledger.check_tx(transfer(ALICE_KEY, 0, CAROL, 1, gas=2**63 - 1))
    assert outcome.ok
    ledger.make_block()
    record = ledger.tx(txhash)
    assert record is not None and (record.code, record.gas_wanted) == (0, 2**63 - 1)
    _, outcome = ledger.check_tx(transfer(ALICE_KEY, 1, CAROL, 1, gas=2**63))
    assert (outcome.code, outcome.raw_log) == (
        18,
        f"invalid gas supplied; {2**63} > {2**63 - 1}: invalid request",
    )


def test_a_dry_faucet_refuses_without_using_up_the_address_limit(tmp_path: Path) -> None:
    faucet_key = PrivateKey((99).to_bytes(32, "big"))
    faucet = address_from_pubkey(faucet_key.public_key.to_bytes())
    params = ChainParams(
        faucet_amount_ngonka=2 * GNK, faucet_max_ngonka=2 * GNK, faucet_limit_ngonka=4 * GNK
    )
    genesis = new_genesis(accounts=[(faucet, 3 * GNK)], params=params, faucet_address=faucet)
    ledger = open_ledger(tmp_path, genesis, faucet_key)
    assert ledger.faucet(CAROL)[1].ok
    _, dry = ledger.faucet(CAROL)  # 1 GNK left, and the pending grant already counts
    assert (dry.code, len(ledger.mempool)) == (5, 1)
    assert ledger.faucet(CAROL, GNK)[1].ok  # the refused request took nothing of the limit
    ledger.make_block()
    assert ledger.account(CAROL).balance == 3 * GNK  # type: ignore[union-attr]
    assert ledger.account(faucet).balance == 0  # type: ignore[union-attr]
    assert ledger.total_supply() == 3 * GNK


def test_init_home_writes_a_fresh_private_password_file(tmp_path: Path) -> None:
    # A home left by an interrupted or hand-made set-up: a readable password file, or a link.
    root = tmp_path / "home"
    root.mkdir()
    (root / "keys.password").write_text("old")
    (root / "keys.password").chmod(0o644)
    init_home(root)
    assert (NodeHome(root).password_file.stat().st_mode & 0o777) == 0o600

    other = tmp_path / "other"
    other.mkdir()
    target = tmp_path / "not-the-node's.txt"
    target.write_text("keep me")
    (other / "keys.password").symlink_to(target)
    init_home(other)
    assert target.read_text() == "keep me"
    assert not NodeHome(other).password_file.is_symlink()


def test_the_mempool_is_bounded_in_bytes(tmp_path: Path) -> None:
    genesis = new_genesis(
        accounts=[(ALICE, 100 * GNK), (BOB, 5 * GNK)], params=ChainParams(max_mempool_bytes=400)
    )
    ledger = open_ledger(tmp_path, genesis)
    first = transfer(ALICE_KEY, 0, CAROL, 1)
    assert 200 < len(first) <= 400
    assert ledger.check_tx(first)[1].ok
    _, full = ledger.check_tx(transfer(BOB_KEY, 0, CAROL, 1, number=1))
    assert full.code == 20
    assert full.raw_log.startswith(f"mempool is full (1 txs, {len(first)} bytes; limits ")
    ledger.make_block()  # the block empties the mempool
    assert ledger.check_tx(transfer(BOB_KEY, 0, CAROL, 1, number=1))[1].ok


def test_module_accounts_take_no_user_funds(tmp_path: Path, genesis: Genesis) -> None:
    ledger = open_ledger(tmp_path, genesis)
    _, outcome = ledger.check_tx(transfer(ALICE_KEY, 0, FEE_COLLECTOR_ADDRESS, GNK))
    assert (outcome.code, outcome.raw_log) == (
        4,
        f"{FEE_COLLECTOR_ADDRESS} is not allowed to receive funds: unauthorized",
    )
    assert ledger.account(ALICE).sequence == 0  # type: ignore[union-attr]


def test_a_devnet_cannot_take_mainnets_chain_id() -> None:
    with pytest.raises(GenesisError, match="gonka-mainnet is the real network's chain id"):
        new_genesis(chain_id="gonka-mainnet", accounts=[(ALICE, 1)])


# --- amino signing, keyless simulation, events of system transactions ----------------------


def test_check_tx_takes_amino_signatures(tmp_path: Path, genesis: Genesis) -> None:
    ledger = open_ledger(tmp_path, genesis)
    send = txlib.MsgSend(ALICE, CAROL, txlib.coins(3 * GNK))
    signed = txlib.sign_amino(
        ALICE_KEY,
        [send],
        txlib.Fee((), 200_000),
        chain_id="gonka-devnet",
        account_number=0,
        sequence=0,
        memo="amino",
    )
    txhash, outcome = ledger.check_tx(signed.tx_bytes)
    assert outcome.ok, outcome
    block = ledger.make_block()
    record = ledger.tx(txhash)
    assert record is not None and record.code == 0 and block.tx_hashes == (txhash,)
    account = ledger.account(CAROL)
    assert account is not None and account.balance == 3 * GNK
    # The same document signed for the next sequence is refused with the SDK's amino wording.
    replayed = txlib.sign_amino(
        ALICE_KEY,
        [send],
        txlib.Fee((), 200_000),
        chain_id="gonka-devnet",
        account_number=0,
        sequence=1,
        memo="amino",
    )
    forged = txlib.encode_tx_raw(replayed.body_bytes, replayed.auth_info_bytes, [signed.signature])
    _, refused = ledger.check_tx(forged)
    assert refused.code == 4
    assert "account number (0), sequence (1) and chain-id (gonka-devnet)" in refused.raw_log


def test_simulate_without_a_public_key_counts_the_senders_account(
    tmp_path: Path, genesis: Genesis
) -> None:
    ledger = open_ledger(tmp_path, genesis)
    body = txlib.encode_body([txlib.MsgSend(BOB, CAROL, txlib.coins(6 * GNK))])
    info = tx_pb2.AuthInfo(signer_infos=[tx_pb2.SignerInfo(sequence=0)], fee=tx_pb2.Fee())
    outcome = ledger.simulate(txlib.encode_tx_raw(body, info.SerializeToString(), [b""]))
    # Bob holds 5 GNK: the keyless simulation ran the checks against his account.
    assert outcome.code == 5 and "insufficient funds" in outcome.raw_log
    # A broadcast without a key is still refused.
    _, broadcast = ledger.check_tx(txlib.encode_tx_raw(body, info.SerializeToString(), [bytes(64)]))
    assert broadcast.code == 8


def test_system_transactions_have_the_senders_events(tmp_path: Path, genesis: Genesis) -> None:
    node_key = PrivateKey((14).to_bytes(32, "big"))
    ledger = Ledger(str(tmp_path / "node.db"), genesis, node_key=node_key)
    txhash = ledger.submit_system([(MINT_ADDRESS, CAROL, 5)], "reward")
    ledger.make_block()
    record = ledger.tx(txhash)
    assert record is not None and record.code == 0
    decoded = txlib.decode_tx(record.tx_bytes)
    events = tx_events(decoded, record.code, record.gas_used)
    assert [(e.type, e.attributes[0]) for e in events] == [
        ("tx", ("fee", "")),
        ("tx", ("acc_seq", f"{ledger.node_address}/0")),
        ("tx", ("signature", base64.b64encode(decoded.signatures[0]).decode())),
        ("message", ("action", txlib.MSG_SEND_TYPE_URL)),
        ("coin_spent", ("spender", MINT_ADDRESS)),
        ("coin_received", ("receiver", CAROL)),
        ("transfer", ("recipient", CAROL)),
        ("message", ("sender", MINT_ADDRESS)),
    ]
    assert tx_msg_data(decoded).endswith(b"/cosmos.bank.v1beta1.MsgSendResponse")
