"""`gonka wallet balance|send|broadcast|tx|history` against a real local node over HTTP.

Tests that only read the chain share nodes started once for the module (a node takes 0.2 s
to stop); tests that move funds get a node of their own. The stand-in REST server
(`tests/chain_server.py`) serves only what the real node cannot produce on demand: forced
broadcast answers and locked (vesting) funds.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gonka_cli import settings
from gonka_cli.chain import tx as txlib
from gonka_cli.chain.client import BroadcastResult, ChainClient
from gonka_cli.cli.main import app
from gonka_cli.crypto.address import address_from_pubkey
from gonka_cli.crypto.hd import HDPath, derive_private_key
from gonka_cli.crypto.secp256k1 import PublicKey
from gonka_cli.errors import TxTimeout
from gonka_cli.node.genesis import ChainParams, init_home
from gonka_cli.node.ledger import FEE_COLLECTOR_ADDRESS, AccountState
from gonka_cli.node.runner import Node
from gonka_cli.wallet import transfer
from gonka_cli.wallet.keystore import Keystore
from tests.chain_server import Chain, ChainServer
from tests.conftest import (
    MNEMONIC,
    PASSWORD,
    TEST_BLOCK_TIME_S,
    StartNode,
    dead_url,
    use_devnet,
)
from tests.conftest import node_ledger as ledger
from tests.conftest import node_url as url

GNK = 10**9
#: The address of MNEMONIC on gonka's path m/44'/1200'/0'/0/0.
ALICE = "gonka1kr8kwwzl93t7ufxrz8qxqs8n2q8v37935m25pn"
#: A valid address no key in the keystore holds (20 bytes of 0x11).
CAROL = "gonka1zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg33gsu4d"
BAD_CHECKSUM = "gonka1f85fmcltqpzn3ra4ttnxtypj4tmwxpwh82hmjzr"
#: The same 20 bytes as CAROL under another chain's prefix (its checksum is right).
COSMOS_PREFIX = "cosmos1zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3pahzj0"
#: A checksummed gonka address of 19 bytes.
NINETEEN_BYTES = "gonka1zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygz26dj0"
MIXED_CASE = CAROL[:12] + CAROL[12:].upper()
REFUSED = "Error: the node refused the transaction: "

runner = CliRunner()


# --- helpers ----------------------------------------------------------------------------


def gonka(*args: str, input: str | None = None, password: str | None = PASSWORD) -> Result:
    """Run `gonka ARGS`; `password=None` leaves GONKA_KEYRING_PASSWORD unset."""
    return runner.invoke(
        app, list(args), input=input, env={settings.ENV_KEYRING_PASSWORD: password}
    )


def send(*args: str, password: str | None = PASSWORD) -> Result:
    """`gonka wallet send ARGS --yes --json`: nothing but the result on stdout."""
    return gonka("wallet", "send", *args, "--yes", "--json", password=password)


def ok_json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def error_line(result: Result, exit_code: int) -> str:
    """The command failed with `exit_code` and printed exactly one `Error: ...` line."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def balance_of(node: Node, address: str) -> int:
    account = ledger(node).account(address)
    return 0 if account is None else account.balance


def account_of(node: Node, address: str) -> AccountState:
    account = ledger(node).account(address)
    assert account is not None, f"{address} has no account on the node"
    return account


def chain_state(node: Node) -> tuple[Any, ...]:
    """What any accepted transaction changes: transactions, mempool, accounts, alice's account."""
    status = ledger(node).status()
    return (
        status.txs,
        status.mempool_txs,
        status.accounts,
        status.total_supply_ngonka,
        ledger(node).account(ALICE),
    )


def landed_from(node: Node, sender: str = ALICE) -> list[str]:
    """The hashes of the transactions from `sender` in the node's blocks, oldest first."""
    records, _ = ledger(node).search([("message.sender", sender)])
    return [r.hash for r in records]


def height_of(node: Node, txhash: str) -> int:
    record = ledger(node).tx(txhash)
    assert record is not None, f"{txhash} is not in a block"
    return record.height


def simulated_gas(
    node: Node,
    from_address: str,
    pubkey_hex: str,
    to_address: str,
    amount: int,
    memo: str,
    sequence: int,
) -> int:
    """The gas the node's simulation of this transfer answers (64 bytes for the signature)."""
    sim = txlib.simulation_tx(
        PublicKey.from_hex(pubkey_hex),
        sequence=sequence,
        message=txlib.MsgSend(from_address, to_address, txlib.coins(amount)),
        memo=memo,
    )
    return ledger(node).gas_for(len(sim) + 64, 1, 1)


def sign_offline(
    to: str,
    amount: str,
    *,
    account_number: int,
    sequence: int,
    chain_id: str = "gonka-devnet",
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`send --offline` from alice, with a node that does not exist."""
    return ok_json(
        send(
            "alice",
            to,
            amount,
            "--offline",
            "--chain-id",
            chain_id,
            "--account-number",
            str(account_number),
            "--sequence",
            str(sequence),
            "--node",
            dead_url(),
            *extra,
        )
    )


def stand_in_state(chain: Chain) -> dict[str, tuple[int, int]]:
    """Every stand-in account's (balance, sequence)."""
    return {a.address: (a.balance, a.sequence) for a in chain.accounts.values()}


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_node(start_module_node: StartNode) -> Node:
    """One node for the tests that change nothing on chain; alice holds 1000 GNK in its genesis."""
    return start_module_node(name="shared-node", accounts=[(ALICE, 1000 * GNK)])


@pytest.fixture
def idle(shared_node: Node, gonka_home: Path) -> Iterator[Node]:
    """The devnet profile points at the shared node; the test must leave its state as it was."""
    use_devnet(gonka_home, url(shared_node))
    before = chain_state(shared_node)
    yield shared_node
    assert chain_state(shared_node) == before, "a test on the shared node changed its state"


@pytest.fixture
def node(start_node: StartNode, gonka_home: Path) -> Node:
    """A node of this test's own, alice holding 1000 GNK in its genesis, as the devnet profile."""
    started = start_node(accounts=[(ALICE, 1000 * GNK)])
    use_devnet(gonka_home, url(started))
    return started


@pytest.fixture
def stand_in(devnet: ChainServer, chain: Chain) -> Chain:
    """The devnet profile points at the stand-in chain, where alice holds 1000 GNK."""
    chain.fund(ALICE, 1000 * GNK)
    return chain


@pytest.fixture
def alice(gonka_home: Path) -> str:
    """Key 'alice' (MNEMONIC); the node fixtures fund its address."""
    info = ok_json(gonka("wallet", "import", "alice", "--json", input=MNEMONIC))
    assert info["address"] == ALICE
    return ALICE


@pytest.fixture
def bob(gonka_home: Path) -> str:
    """Key 'bob': a new mnemonic, never funded."""
    return str(ok_json(gonka("wallet", "create", "bob", "--yes", "--json"))["address"])


@pytest.fixture
def alice_pubkey(alice: str) -> str:
    return str(ok_json(gonka("wallet", "show", "alice", "--json"))["pubkey_hex"])


@pytest.fixture
def broadcasts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hash of every transaction the test broadcasts, whatever the node answers.

    A node keeps no trace of a transaction it refused, so the client's calls are recorded
    (and passed on unchanged).
    """
    sent: list[str] = []
    real_broadcast = ChainClient.broadcast

    def recording(
        self: ChainClient, tx_bytes: bytes, mode: str = "BROADCAST_MODE_SYNC"
    ) -> BroadcastResult:
        sent.append(txlib.tx_hash(tx_bytes))
        return real_broadcast(self, tx_bytes, mode)

    monkeypatch.setattr(ChainClient, "broadcast", recording)
    return sent


@pytest.fixture
def restart() -> Iterator[Callable[[Node, int], Node]]:
    """Start a stopped node's home again on a given port; stopped at the end."""
    started: list[Node] = []

    def start(stopped: Node, port: int) -> Node:
        again = Node(stopped.home_path, port=port)
        again.start()
        started.append(again)
        return again

    yield start
    for again in started:
        again.stop()


def start_chain(start_node: StartNode, root: Path, chain_id: str) -> Node:
    """A node of another chain id (start_node initialises devnet homes only)."""
    init_home(
        root,
        chain_id=chain_id,
        accounts=[(ALICE, 1000 * GNK)],
        params=ChainParams(block_time_s=TEST_BLOCK_TIME_S),
    )
    return start_node(home=root)


# --- balance ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd_balance_node(start_module_node: StartNode) -> Node:
    """A node where alice holds 1234.500000001 GNK; nothing is ever sent on it."""
    return start_module_node(name="odd-balance-node", accounts=[(ALICE, 1_234_500_000_001)])


@pytest.mark.parametrize(
    "target", ["alice", ALICE, ALICE.upper()], ids=["key-name", "address", "upper-case-address"]
)
def test_balance_json_fields(
    alice: str, odd_balance_node: Node, gonka_home: Path, target: str
) -> None:
    use_devnet(gonka_home, url(odd_balance_node))

    data = ok_json(gonka("wallet", "balance", target, "--json"))

    assert data == {
        "address": ALICE,
        "network": "devnet",
        "denom": "ngonka",
        "spendable_ngonka": "1234500000001",
        "spendable_gnk": "1234.500000001",
        "total_ngonka": "1234500000001",
        "total_gnk": "1234.500000001",
    }


def test_balance_human_text(alice: str, idle: Node) -> None:
    result = gonka("wallet", "balance", "alice")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{ALICE}: 1,000 GNK spendable\n"


def test_balance_shows_locked_funds_apart(alice: str, stand_in: Chain) -> None:
    # The local node has no vesting: locked funds exist only on the stand-in.
    stand_in.fund(ALICE, 0, locked=250 * GNK)

    data = ok_json(gonka("wallet", "balance", "alice", "--json"))
    text = gonka("wallet", "balance", "alice").stdout

    assert (data["spendable_ngonka"], data["spendable_gnk"]) == ("750000000000", "750.000000000")
    assert (data["total_ngonka"], data["total_gnk"]) == ("1000000000000", "1000.000000000")
    assert text == (
        f"{ALICE}: 750 GNK spendable\n{' ' * len(ALICE)}  1,000 GNK in total (some is locked)\n"
    )


def test_balance_of_an_address_the_chain_never_saw_is_zero(idle: Node) -> None:
    assert ledger(idle).account(CAROL) is None

    data = ok_json(gonka("wallet", "balance", CAROL, "--json"))

    assert (data["spendable_ngonka"], data["total_ngonka"]) == ("0", "0")
    assert data["spendable_gnk"] == "0.000000000"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (BAD_CHECKSUM, "bad checksum (check for a mistyped character)"),
        (MIXED_CASE, "mixes upper and lower case"),
        (NINETEEN_BYTES, "wrong length (43 characters; a gonka account address has 44)"),
    ],
    ids=["bad-checksum", "mixed-case", "wrong-length"],
)
def test_balance_of_a_bad_address_is_a_usage_error(idle: Node, address: str, reason: str) -> None:
    line = error_line(gonka("wallet", "balance", address), 2)

    assert line == f"Error: invalid address {address!r}: {reason}"


def test_balance_of_an_unknown_key_fails(idle: Node) -> None:
    line = error_line(gonka("wallet", "balance", "carol"), 1)

    assert line == "Error: no key named 'carol'; `gonka wallet list` shows your keys"


# --- send: the happy path ---------------------------------------------------------------


def test_send_json_moves_amount_and_fee_on_chain(
    alice: str,
    alice_pubkey: str,
    bob: str,
    start_node: StartNode,
    gonka_home: Path,
    broadcasts: list[str],
) -> None:
    # The node insists on the profile's gas price: the default fee must meet it.
    node = start_node(accounts=[(ALICE, 1000 * GNK)], min_gas_price="0.5")
    (gonka_home / "config.toml").write_text(
        f'default_network = "devnet"\n[networks.devnet]\nrest = ["{url(node)}"]\n'
        'gas_price = "0.5"\n'
    )
    supply = ledger(node).total_supply()
    gas = simulated_gas(node, ALICE, alice_pubkey, bob, 1_500_000_000, "thanks", 0)
    gas_limit = -(-gas * 13 // 10)
    fee = -(-gas_limit // 2)

    result = send("alice", bob, "1.5gnk", "--memo", "thanks")

    data = ok_json(result)
    assert result.stderr == ""
    assert broadcasts == [data["txhash"]]
    assert landed_from(node) == [data["txhash"]]
    landed = ledger(node).tx(data["txhash"])
    assert landed is not None
    data.pop("timestamp")
    assert data == {
        "network": "devnet",
        "chain_id": "gonka-devnet",
        "node": url(node),
        "from": ALICE,
        "from_name": "alice",
        "to": bob,
        "amount_ngonka": "1500000000",
        "fee_ngonka": str(fee),
        "gas_limit": str(gas_limit),
        "memo": "thanks",
        "account_number": str(account_of(node, ALICE).number),
        "sequence": "0",
        "txhash": data["txhash"],
        "height": str(landed.height),
        "status": "success",
        "code": 0,
        "codespace": "",
        "raw_log": "",
        "error": None,
        "gas_wanted": str(gas_limit),
        "gas_used": str(landed.gas_used),
        "messages": [
            {
                "type": "send",
                "from": ALICE,
                "to": bob,
                "amount_ngonka": "1500000000",
                "amount": "1500000000ngonka",
            }
        ],
    }
    assert fee > 0
    assert balance_of(node, ALICE) == 1000 * GNK - 1_500_000_000 - fee
    assert balance_of(node, bob) == 1_500_000_000
    assert account_of(node, ALICE).sequence == 1
    # The fee goes to the fee collector: no ngonka is made or lost.
    assert balance_of(node, FEE_COLLECTOR_ADDRESS) == fee
    assert ledger(node).total_supply() == supply


def test_send_uses_given_gas_and_fee(alice: str, bob: str, node: Node) -> None:
    data = ok_json(send("alice", bob, "2gnk", "--gas", "150000", "--fee", "0.000002gnk"))

    assert (data["gas_limit"], data["gas_wanted"], data["fee_ngonka"]) == (
        "150000",
        "150000",
        "2000",
    )
    assert balance_of(node, ALICE) == 1000 * GNK - 2 * GNK - 2000
    assert balance_of(node, bob) == 2 * GNK


def test_send_human_mode_keeps_the_summary_on_stderr(alice: str, bob: str, node: Node) -> None:
    result = gonka("wallet", "send", "alice", bob, "1gnk", "--yes")

    assert result.exit_code == 0, result.stderr
    [txhash] = landed_from(node)
    assert result.stdout == (
        f"Sent 1 GNK to {bob}.\nTransaction {txhash} is in block {height_of(node, txhash)}.\n"
    )
    assert (
        f"Transfer\namount   1 GNK\nfrom     alice ({ALICE})\nto       {bob}\n"
    ) in result.stderr
    assert f"Transaction {txhash} accepted by the node." in result.stderr


@pytest.mark.parametrize("sender", [ALICE, ALICE.upper()], ids=["address", "upper-case-address"])
def test_send_from_the_address_of_a_stored_key(
    alice: str, bob: str, node: Node, sender: str
) -> None:
    data = ok_json(send(sender, bob, "1gnk"))

    assert (data["from"], data["from_name"], data["status"]) == (ALICE, "alice", "success")
    assert balance_of(node, bob) == GNK


def test_send_from_an_address_without_a_key_is_refused(
    alice: str, idle: Node, broadcasts: list[str]
) -> None:
    before = chain_state(idle)

    line = error_line(send(CAROL, ALICE, "1gnk"), 2)

    assert line == (
        f"Error: no key in the keystore holds {CAROL}; `gonka wallet list` shows your keys"
    )
    assert broadcasts == []
    assert chain_state(idle) == before


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_send_without_yes_and_no_terminal_changes_nothing(
    alice: str, bob: str, idle: Node, broadcasts: list[str], json_mode: bool
) -> None:
    before = chain_state(idle)

    result = gonka("wallet", "send", "alice", bob, "1gnk", *(["--json"] if json_mode else []))

    assert result.exit_code == 2
    assert result.stdout == ""
    line = result.stderr.splitlines()[-1]
    assert line.startswith("Error: ")
    assert "no terminal" in line
    assert "--yes" in line
    assert broadcasts == []
    assert chain_state(idle) == before


@pytest.mark.parametrize(
    "memo",
    ["x" * 257, "é" * 129],
    ids=["257-ascii-characters", "129-characters-of-258-utf8-bytes"],
)
def test_send_refuses_a_memo_over_256_bytes_before_broadcast(
    alice: str, bob: str, idle: Node, broadcasts: list[str], memo: str
) -> None:
    # The SDK's ValidateMemoDecorator compares len(memo) in Go, i.e. UTF-8 bytes, with 256.
    before = chain_state(idle)

    line = error_line(send("alice", bob, "1gnk", "--memo", memo), 2)

    assert line == (
        f"Error: memo is {len(memo.encode())} bytes (UTF-8); the chain allows at most 256"
    )
    assert broadcasts == []
    assert chain_state(idle) == before


def test_send_accepts_a_memo_of_256_characters(alice: str, bob: str, node: Node) -> None:
    data = ok_json(send("alice", bob, "1gnk", "--memo", "m" * 256))

    assert data["memo"] == "m" * 256
    landed = ledger(node).tx(data["txhash"])
    assert landed is not None and landed.code == 0
    assert txlib.decode_tx(landed.tx_bytes).memo == "m" * 256


# --- send: bad values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipient", "reason"),
    [
        (BAD_CHECKSUM, "bad checksum (check for a mistyped character)"),
        (COSMOS_PREFIX, "prefix is 'cosmos', expected 'gonka'"),
        (MIXED_CASE, "mixes upper and lower case"),
        (NINETEEN_BYTES, "wrong length (43 characters; a gonka account address has 44)"),
    ],
    ids=["bad-checksum", "wrong-prefix", "mixed-case", "wrong-length"],
)
def test_send_to_a_bad_address_sends_nothing(
    alice: str, idle: Node, broadcasts: list[str], recipient: str, reason: str
) -> None:
    before = chain_state(idle)

    line = error_line(send("alice", recipient, "1gnk"), 2)

    assert line == f"Error: invalid address {recipient!r}: {reason}"
    assert broadcasts == []
    assert chain_state(idle) == before


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("-1gnk", "must not be negative"),
        ("0gnk", "must be more than zero"),
        ("1.0000000001gnk", "gnk has at most 9 decimals"),
        ("1.5ngonka", "ngonka is the smallest unit (no decimals)"),
        ("1atom", "unknown unit 'atom'; use gnk or ngonka"),
        ("5", "add a unit, e.g. 5gnk or 5ngonka"),
    ],
    ids=["negative", "zero", "ten-decimals", "fraction-of-ngonka", "unknown-denom", "no-unit"],
)
def test_send_of_a_bad_amount_sends_nothing(
    alice: str, idle: Node, broadcasts: list[str], amount: str, reason: str
) -> None:
    before = chain_state(idle)

    # Options first and `--` before the arguments, so that "-1gnk" is not taken for an option.
    line = error_line(gonka("wallet", "send", "--yes", "--json", "--", "alice", CAROL, amount), 2)

    assert line == f"Error: invalid amount {amount!r}: {reason}"
    assert broadcasts == []
    assert chain_state(idle) == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--gas", "abc"], "Error: invalid --gas 'abc': use auto or a positive whole number"),
        (["--gas", "0"], "Error: invalid --gas '0': use auto or a positive whole number"),
        (
            ["--fee", "0.1"],
            "Error: invalid fee '0.1': add a unit, e.g. 0.1gnk or 0.1ngonka",
        ),
        (
            ["--chain-id", "gonka-devnet"],
            "Error: --chain-id, --account-number and --sequence go with --offline",
        ),
    ],
    ids=["gas-not-a-number", "gas-zero", "fee-without-unit", "chain-id-without-offline"],
)
def test_send_with_bad_options_sends_nothing(
    alice: str, idle: Node, broadcasts: list[str], options: list[str], message: str
) -> None:
    before = chain_state(idle)

    line = error_line(send("alice", CAROL, "1gnk", *options), 2)

    assert line == message
    assert broadcasts == []
    assert chain_state(idle) == before


@pytest.mark.parametrize(
    ("amount", "options", "needs"),
    [
        ("1001gnk", [], "1,001 GNK"),
        (
            "1000gnk",
            ["--fee", "1ngonka"],
            "1,000.000000001 GNK including a fee of 0.000000001 GNK",
        ),
    ],
    ids=["more-than-the-balance", "amount-plus-fee"],
)
def test_send_beyond_spendable_funds_fails_before_unlocking(
    alice: str, idle: Node, broadcasts: list[str], amount: str, options: list[str], needs: str
) -> None:
    before = chain_state(idle)

    # No password source at all: the check must come before the key is unlocked.
    line = error_line(send("alice", CAROL, amount, *options, password=None), 1)

    assert line == (
        f"Error: insufficient funds: {ALICE} can spend 1,000 GNK, the transfer needs {needs}"
    )
    assert broadcasts == []
    assert chain_state(idle) == before


def test_send_beyond_unlocked_funds_fails_before_unlocking(
    alice: str, stand_in: Chain, broadcasts: list[str]
) -> None:
    # The local node has no vesting: locked funds exist only on the stand-in.
    stand_in.fund(ALICE, 0, locked=1)
    before = stand_in_state(stand_in)

    line = error_line(send("alice", CAROL, "1000gnk", password=None), 1)

    assert line == (
        f"Error: insufficient funds: {ALICE} can spend 999.999999999 GNK, "
        "the transfer needs 1,000 GNK"
    )
    assert broadcasts == []
    assert stand_in_state(stand_in) == before


def test_send_from_an_unknown_key_fails(alice: str, idle: Node, broadcasts: list[str]) -> None:
    line = error_line(send("carol", ALICE, "1gnk"), 1)

    assert line == "Error: no key named 'carol'; `gonka wallet list` shows your keys"
    assert broadcasts == []


def test_send_from_an_account_never_funded(
    alice: str, bob: str, idle: Node, broadcasts: list[str]
) -> None:
    assert ledger(idle).account(bob) is None

    line = error_line(send("bob", ALICE, "1gnk"), 1)

    assert line == (
        f"Error: account {bob} does not exist on chain yet: it has never received funds; "
        "send it some GNK first"
    )
    assert broadcasts == []


# --- send: passwords --------------------------------------------------------------------


def test_send_with_a_wrong_password_sends_nothing(
    alice: str, idle: Node, broadcasts: list[str]
) -> None:
    before = chain_state(idle)

    line = error_line(send("alice", CAROL, "1gnk", password="not the password"), 1)

    assert line.startswith("Error: wrong password for key 'alice'")
    assert "not the password" not in line
    assert broadcasts == []
    assert chain_state(idle) == before


def test_send_without_any_password_source_names_both_ways_to_give_one(
    alice: str, idle: Node, broadcasts: list[str]
) -> None:
    line = error_line(send("alice", CAROL, "1gnk", password=None), 1)

    assert line == (
        "Error: a password is needed for key 'alice' and there is no terminal to ask on; "
        "set GONKA_KEYRING_PASSWORD or pass --password-file FILE"
    )
    assert broadcasts == []


def test_send_with_a_password_file(alice: str, node: Node, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)

    data = ok_json(
        send("alice", CAROL, "1gnk", "--password-file", str(password_file), password=None)
    )

    assert data["status"] == "success"
    assert balance_of(node, CAROL) == GNK


@pytest.mark.parametrize(
    ("content", "exit_code", "message"),
    [
        (None, 2, "Error: password file {file} does not exist"),
        ("", 2, "Error: password file {file} is empty (the password is its first line)"),
        (
            "\nsecond line\n",
            2,
            "Error: password file {file} is empty (the password is its first line)",
        ),
        ("not the password\n", 1, "Error: wrong password for key 'alice' "),
    ],
    ids=["missing", "empty", "empty-first-line", "wrong-password"],
)
def test_send_with_an_unusable_password_file_sends_nothing(
    alice: str,
    idle: Node,
    broadcasts: list[str],
    tmp_path: Path,
    content: str | None,
    exit_code: int,
    message: str,
) -> None:
    password_file = tmp_path / "password"
    if content is not None:
        password_file.write_text(content)
        password_file.chmod(0o600)
    before = chain_state(idle)

    line = error_line(
        send("alice", CAROL, "1gnk", "--password-file", str(password_file), password=None),
        exit_code,
    )

    assert line.startswith(message.format(file=password_file))
    assert broadcasts == []
    assert chain_state(idle) == before


# --- send: nodes ------------------------------------------------------------------------


def test_send_refuses_to_sign_for_a_node_on_another_chain(
    alice: str, start_node: StartNode, gonka_home: Path, tmp_path: Path, broadcasts: list[str]
) -> None:
    other = start_chain(start_node, tmp_path / "other-chain", "other-chain")
    use_devnet(gonka_home, url(other))
    before = chain_state(other)

    line = error_line(send("alice", CAROL, "1gnk"), 1)

    assert line == (
        f"Error: node {url(other)} is on chain 'other-chain', but network 'devnet' is "
        "'gonka-devnet'; refusing to sign (check --network and --node)"
    )
    assert broadcasts == []
    assert chain_state(other) == before


def test_send_checks_the_chain_id_of_the_network_picked(
    alice: str, idle: Node, broadcasts: list[str]
) -> None:
    line = error_line(send("alice", CAROL, "1gnk", "--network", "mainnet", "--node", url(idle)), 1)

    assert line == (
        f"Error: node {url(idle)} is on chain 'gonka-devnet', but network 'mainnet' is "
        "'gonka-mainnet'; refusing to sign (check --network and --node)"
    )
    assert broadcasts == []


@pytest.mark.parametrize(
    "command",
    [
        ["wallet", "send", "alice", CAROL, "1gnk", "--yes", "--json"],
        ["wallet", "balance", "alice", "--json"],
        ["wallet", "tx", "A" * 64, "--json"],
        ["wallet", "history", "alice", "--json"],
    ],
    ids=["send", "balance", "tx", "history"],
)
def test_an_unreachable_node_is_named(
    alice: str, idle: Node, broadcasts: list[str], command: list[str]
) -> None:
    dead = dead_url()

    line = error_line(gonka(*command, "--node", dead), 1)

    assert line == (
        f"Error: no node answered: tried {dead} (connection refused); check the connection or "
        "pass --node URL"
    )
    assert broadcasts == []


def test_send_fails_over_to_the_next_node_of_the_profile(
    alice: str, node: Node, gonka_home: Path
) -> None:
    use_devnet(gonka_home, dead_url(), url(node))

    data = ok_json(send("alice", CAROL, "1gnk"))

    assert (data["status"], data["node"]) == ("success", url(node))
    assert balance_of(node, CAROL) == GNK


def test_node_option_replaces_the_profile_nodes(alice: str, node: Node, gonka_home: Path) -> None:
    use_devnet(gonka_home, dead_url())

    data = ok_json(send("alice", CAROL, "1gnk", "--node", url(node) + "/"))

    assert (data["status"], data["node"]) == ("success", url(node))
    assert balance_of(node, CAROL) == GNK


# --- send: what the node answers --------------------------------------------------------

#: Each refusal's key words; a message must hold its own and none of the others'.
REFUSAL_WORDS = {
    ("sdk", 2): "could not decode the transaction",
    ("sdk", 4): "signature verification failed",
    ("sdk", 5): "insufficient funds",
    ("sdk", 11): "out of gas",
    ("sdk", 13): "insufficient fee",
    ("sdk", 32): "account sequence mismatch",
    ("restrictions", 1108): "transfers between accounts are still restricted",
}


@pytest.mark.parametrize(
    ("answers", "broadcast_count"),
    [
        ([("sdk", 2)], 1),
        ([("sdk", 4)], 1),
        ([("sdk", 5)], 1),
        ([("sdk", 11)], 1),
        ([("sdk", 13)], 1),
        ([("sdk", 32), ("sdk", 32)], 2),
        ([("restrictions", 1108)], 1),
    ],
    ids=[
        "sdk-2-tx-parse-error",
        "sdk-4-unauthorized",
        "sdk-5-insufficient-funds",
        "sdk-11-out-of-gas",
        "sdk-13-insufficient-fee",
        "sdk-32-wrong-sequence-after-one-retry",
        "restrictions-1108-transfer-restricted",
    ],
)
def test_each_broadcast_refusal_is_one_distinct_sentence(
    alice: str,
    stand_in: Chain,
    broadcasts: list[str],
    answers: list[tuple[str, int]],
    broadcast_count: int,
) -> None:
    # Forced answers (stand-in): a raw log without the SDK's words, so the sentence must come
    # from the code itself.
    stand_in.forced_broadcast = [
        (space, code, "refused by the test node") for space, code in answers
    ]
    before = stand_in_state(stand_in)

    line = error_line(send("alice", CAROL, "1gnk"), 1)

    words = REFUSAL_WORDS[answers[0]]
    assert line.startswith(REFUSED)
    assert words in line
    assert not [w for w in REFUSAL_WORDS.values() if w != words and w in line]
    assert len(broadcasts) == broadcast_count
    assert stand_in.forced_broadcast == []
    assert stand_in_state(stand_in) == before


def test_already_in_mempool_counts_as_accepted_then_waits(
    alice: str, stand_in: Chain, broadcasts: list[str]
) -> None:
    # Forced (stand-in): "already in the mempool" for a transaction that then never lands.
    stand_in.forced_broadcast = [("sdk", 19, "tx already exists in cache")]
    before = stand_in_state(stand_in)

    line = error_line(send("alice", CAROL, "1gnk", "--timeout", "1"), 1)

    [txhash] = broadcasts
    assert line == (
        f"Error: transaction {txhash} is not in a block after 1 s; it may still land: check "
        f"with `gonka wallet tx {txhash}`"
    )
    assert stand_in_state(stand_in) == before


def test_a_node_minimum_gas_price_refuses_a_zero_fee(
    alice: str, start_node: StartNode, gonka_home: Path, broadcasts: list[str]
) -> None:
    node = start_node(accounts=[(ALICE, 1000 * GNK)], min_gas_price="0.01")
    use_devnet(gonka_home, url(node))
    before = chain_state(node)

    line = error_line(send("alice", CAROL, "1gnk", "--fee", "0ngonka"), 1)

    assert line == (
        f"{REFUSED}insufficient fee: this node's minimum gas price needs a higher fee; retry "
        "with a larger --fee"
    )
    assert len(broadcasts) == 1
    assert chain_state(node) == before


@pytest.mark.parametrize(
    ("options", "prefix", "broadcast_count"),
    [([], "Error: ", 0), (["--gas", "100000"], REFUSED, 1)],
    ids=["refused-at-simulation", "refused-at-broadcast"],
)
def test_restricted_transfers_are_one_clear_sentence(
    alice: str,
    start_node: StartNode,
    gonka_home: Path,
    broadcasts: list[str],
    options: list[str],
    prefix: str,
    broadcast_count: int,
) -> None:
    node = start_node(accounts=[(ALICE, 1000 * GNK)], transfer_restriction_end_height=10**9)
    use_devnet(gonka_home, url(node))
    before = chain_state(node)

    line = error_line(send("alice", CAROL, "1gnk", *options), 1)

    assert line == (
        f"{prefix}transfers between accounts are still restricted on this network (bootstrap "
        "period); try again after the restriction ends"
    )
    assert len(broadcasts) == broadcast_count
    assert chain_state(node) == before


def test_out_of_gas_in_the_block_charges_the_fee(
    alice: str, node: Node, broadcasts: list[str]
) -> None:
    # 20000 gas pays for the transaction's size and signature (CheckTx), not for its message.
    line = error_line(send("alice", CAROL, "1gnk", "--gas", "20000", "--fee", "7ngonka"), 1)

    [txhash] = broadcasts
    assert line == (
        f"Error: transaction {txhash} is in block {height_of(node, txhash)} but failed: out of "
        "gas: the gas limit was too low; retry with --gas auto or a higher --gas"
    )
    assert balance_of(node, ALICE) == 1000 * GNK - 7
    assert balance_of(node, CAROL) == 0
    assert account_of(node, ALICE).sequence == 1

    shown = ok_json(gonka("wallet", "tx", txhash, "--json"))
    assert (shown["status"], shown["code"], shown["codespace"]) == ("failed", 11, "sdk")
    assert (shown["fee_ngonka"], shown["gas_wanted"]) == ("7", "20000")
    assert int(shown["gas_used"]) > 20000
    assert shown["error"].startswith("out of gas")


def test_a_wrong_sequence_is_signed_again_once(
    alice: str, stand_in: Chain, broadcasts: list[str]
) -> None:
    # Forced (stand-in): another sender's transaction took the sequence between plan and send.
    stand_in.forced_broadcast = [
        ("sdk", 32, "account sequence mismatch, expected 0, got 0: incorrect account sequence")
    ]

    result = gonka("wallet", "send", "alice", CAROL, "1gnk", "--yes")

    assert result.exit_code == 0, result.stderr
    assert "signed again with sequence 0" in result.stderr
    assert result.stdout.startswith(f"Sent 1 GNK to {CAROL}.\n")
    assert len(broadcasts) == 2
    assert len(stand_in.txs) == 1
    assert stand_in.accounts[CAROL].balance == GNK
    assert stand_in.accounts[ALICE].balance == 999 * GNK
    assert stand_in.accounts[ALICE].sequence == 1


def test_a_sequence_taken_meanwhile_is_signed_again_on_the_node(
    alice: str, node: Node, gonka_home: Path, broadcasts: list[str]
) -> None:
    """The race for real: another transfer from alice enters the mempool between plan and send."""
    with _client_for(url(node)) as client:
        store = Keystore(gonka_home / "keys")
        key, private_key = store.get("alice"), store.unlock("alice", PASSWORD).private_key
        plan = transfer.plan_send(client, client.profile, key, CAROL, 2 * GNK)
        other = transfer.plan_send(client, client.profile, key, CAROL, 3 * GNK)
        first = transfer.submit(client, other, private_key)

        sent = transfer.submit(client, plan, private_key)
        result = transfer.wait_for_block(client, sent.txhash, timeout_s=30, poll_s=0.05)

    assert (first.retried, sent.retried, sent.plan.sequence) == (False, True, 1)
    assert len(broadcasts) == 3
    assert result.ok
    assert landed_from(node) == [first.txhash, sent.txhash]
    assert balance_of(node, CAROL) == 5 * GNK
    assert account_of(node, ALICE).sequence == 2


# --- offline signing and broadcast ------------------------------------------------------


def test_offline_signing_prints_the_signed_transaction(
    alice: str, idle: Node, broadcasts: list[str]
) -> None:
    data = sign_offline(
        CAROL,
        "2gnk",
        account_number=7,
        sequence=3,
        extra=("--memo", "cold", "--fee", "300ngonka", "--gas", "90000"),
    )

    tx_bytes = base64.b64decode(data.pop("tx_bytes"), validate=True)
    assert data == {
        "txhash": hashlib.sha256(tx_bytes).hexdigest().upper(),
        "chain_id": "gonka-devnet",
        "from": ALICE,
        "to": CAROL,
        "amount_ngonka": "2000000000",
        "fee_ngonka": "300",
        "gas_limit": "90000",
        "memo": "cold",
        "account_number": "7",
        "sequence": "3",
    }
    assert broadcasts == []


def test_offline_signing_default_gas(alice: str) -> None:
    data = sign_offline(CAROL, "2gnk", account_number=7, sequence=0)

    assert (data["gas_limit"], data["fee_ngonka"]) == ("200000", "0")


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ([], "--chain-id, --account-number, --sequence"),
        (["--chain-id", "gonka-devnet"], "--account-number, --sequence"),
        (["--account-number", "7", "--sequence", "0"], "--chain-id"),
        (["--chain-id", "gonka-devnet", "--account-number", "7"], "--sequence"),
    ],
    ids=["all", "account-number-and-sequence", "chain-id", "sequence"],
)
def test_offline_signing_names_the_missing_flags(
    alice: str, given: list[str], missing: str
) -> None:
    line = error_line(send("alice", CAROL, "1gnk", "--offline", *given, "--node", dead_url()), 2)

    assert line == f"Error: --offline needs {missing} (the node cannot be asked)"


def test_offline_signing_without_yes_is_refused(alice: str) -> None:
    result = gonka(
        "wallet",
        "send",
        "alice",
        CAROL,
        "1gnk",
        "--offline",
        "--chain-id",
        "gonka-devnet",
        "--account-number",
        "7",
        "--sequence",
        "0",
        "--node",
        dead_url(),
    )

    assert result.exit_code == 2
    assert result.stdout == ""
    line = result.stderr.splitlines()[-1]
    assert line.startswith("Error: ")
    assert "no terminal" in line
    assert "--yes" in line


@pytest.mark.parametrize("via", ["argument", "stdin"])
def test_broadcast_lands_an_offline_transaction(
    alice: str, node: Node, broadcasts: list[str], via: str
) -> None:
    number = account_of(node, ALICE).number
    signed = sign_offline(
        CAROL, "2gnk", account_number=number, sequence=0, extra=("--fee", "250ngonka")
    )

    if via == "stdin":
        result = gonka("wallet", "broadcast", "-", "--json", input=signed["tx_bytes"] + "\n")
    else:
        result = gonka("wallet", "broadcast", signed["tx_bytes"], "--json")

    data = ok_json(result)
    assert broadcasts == [signed["txhash"]]
    assert (data["txhash"], data["status"], data["height"]) == (
        signed["txhash"],
        "success",
        str(height_of(node, signed["txhash"])),
    )
    assert data["fee_ngonka"] == "250"
    assert balance_of(node, ALICE) == 1000 * GNK - 2 * GNK - 250
    assert balance_of(node, CAROL) == 2 * GNK
    assert account_of(node, ALICE).sequence == 1


def test_broadcast_of_a_landed_transaction_does_not_send_it_again(
    alice: str, node: Node, broadcasts: list[str]
) -> None:
    signed = sign_offline(CAROL, "2gnk", account_number=account_of(node, ALICE).number, sequence=0)
    ok_json(gonka("wallet", "broadcast", signed["tx_bytes"], "--json"))

    again = ok_json(gonka("wallet", "broadcast", signed["tx_bytes"], "--json"))

    assert (again["txhash"], again["height"]) == (
        signed["txhash"],
        str(height_of(node, signed["txhash"])),
    )
    assert broadcasts == [signed["txhash"]]
    assert balance_of(node, CAROL) == 2 * GNK


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "!!!not base64",
            "TX_BYTES is not valid base64 (pass the tx_bytes that `send --offline` printed)",
        ),
        (base64.b64encode(b"hello world").decode(), "not a valid transaction"),
        ("", "TX_BYTES is empty"),
    ],
    ids=["not-base64", "not-a-transaction", "empty"],
)
def test_broadcast_of_garbage_is_a_usage_error(
    alice: str, idle: Node, broadcasts: list[str], text: str, message: str
) -> None:
    line = error_line(gonka("wallet", "broadcast", text, "--json"), 2)

    assert line.startswith(f"Error: {message}")
    assert broadcasts == []


@pytest.mark.parametrize(
    ("chain_id", "account_number"),
    [("gonka-mainnet", None), ("gonka-devnet", 99)],
    ids=["other-chain-id", "other-account-number"],
)
def test_broadcast_refuses_a_transaction_signed_for_another_chain_or_account(
    alice: str, idle: Node, broadcasts: list[str], chain_id: str, account_number: int | None
) -> None:
    number = account_of(idle, ALICE).number
    signed = sign_offline(
        CAROL, "2gnk", chain_id=chain_id, account_number=account_number or number, sequence=0
    )
    before = chain_state(idle)

    line = error_line(gonka("wallet", "broadcast", signed["tx_bytes"], "--json"), 1)

    assert line == (
        f"Error: the signature does not verify for chain 'gonka-devnet' and account number "
        f"{number} of {ALICE}: it was signed for another chain or account; nothing was sent"
    )
    assert broadcasts == []
    assert chain_state(idle) == before


def test_broadcast_of_a_stale_sequence_is_refused(
    alice: str, node: Node, broadcasts: list[str]
) -> None:
    stale = sign_offline(CAROL, "2gnk", account_number=account_of(node, ALICE).number, sequence=0)
    first = ok_json(send("alice", CAROL, "1gnk"))
    before = chain_state(node)

    line = error_line(gonka("wallet", "broadcast", stale["tx_bytes"], "--json"), 1)

    assert line == (
        "Error: the transaction uses sequence 0 but the account is at 1: it is stale; sign it "
        "again with --sequence 1"
    )
    assert broadcasts == [first["txhash"]]
    assert chain_state(node) == before


def test_broadcast_of_a_sequence_ahead_of_the_chain_is_refused(
    alice: str, idle: Node, broadcasts: list[str]
) -> None:
    ahead = sign_offline(CAROL, "2gnk", account_number=account_of(idle, ALICE).number, sequence=5)
    before = chain_state(idle)

    line = error_line(gonka("wallet", "broadcast", ahead["tx_bytes"], "--json"), 1)

    assert line == (
        f"{REFUSED}account sequence mismatch (expected 0, got 5): another transaction from this "
        "account was signed meanwhile; run the command again (offline: use the sequence the node "
        "expects)"
    )
    assert broadcasts == [ahead["txhash"]]
    assert chain_state(idle) == before


# --- tx ---------------------------------------------------------------------------------


def test_tx_shows_a_landed_transfer(alice: str, node: Node) -> None:
    txhash = ok_json(send("alice", CAROL, "1gnk", "--fee", "1000ngonka", "--memo", "rent"))[
        "txhash"
    ]
    landed = ledger(node).tx(txhash)
    assert landed is not None

    data = ok_json(gonka("wallet", "tx", txhash.lower(), "--json"))

    assert data.pop("timestamp") == landed.time[:19] + "Z"
    assert data == {
        "txhash": txhash,
        "height": str(landed.height),
        "status": "success",
        "code": 0,
        "codespace": "",
        "raw_log": "",
        "error": None,
        "gas_wanted": str(landed.gas_wanted),
        "gas_used": str(landed.gas_used),
        "memo": "rent",
        "fee_ngonka": "1000",
        "messages": [
            {
                "type": "send",
                "from": ALICE,
                "to": CAROL,
                "amount_ngonka": "1000000000",
                "amount": "1000000000ngonka",
            }
        ],
    }


def test_tx_human_text(alice: str, node: Node) -> None:
    txhash = ok_json(send("alice", CAROL, "1gnk", "--fee", "1000ngonka"))["txhash"]
    landed = ledger(node).tx(txhash)
    assert landed is not None

    result = gonka("wallet", "tx", txhash)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [f"hash      {txhash}", "status    success", f"height    {landed.height}"]
    assert lines[4:] == [
        "fee       0.000001 GNK",
        f"gas       {landed.gas_used} used of {landed.gas_wanted}",
        f"transfer  {ALICE} -> {CAROL}: 1 GNK",
    ]


def test_tx_of_an_unknown_hash_is_not_found(idle: Node) -> None:
    line = error_line(gonka("wallet", "tx", "ab" * 32, "--json"), 1)

    assert line == (
        f"Error: transaction {'AB' * 32} was not found on {url(idle)}: it is not in a block "
        "(yet), or this node does not index transactions"
    )


@pytest.mark.parametrize(
    "txhash", ["xyz", "A" * 63, "A" * 65, "G" * 64], ids=["short", "63", "65", "not-hex"]
)
def test_tx_of_a_malformed_hash_is_a_usage_error(idle: Node, txhash: str) -> None:
    line = error_line(gonka("wallet", "tx", txhash, "--json"), 2)

    assert line == f"Error: invalid transaction hash {txhash!r}: expected 64 hex characters"


# --- history ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TwoWay:
    node: Node
    bob: str
    out: str
    back: str


@pytest.fixture(scope="module")
def two_way_node(start_module_node: StartNode) -> TwoWay:
    """A node where alice sent bob 3 GNK (memo "rent"), then, a block later, bob sent 1 GNK back.

    Only read by the history tests; the transfers are signed here, without the CLI.
    """
    alice_key, bob_key = (derive_private_key(MNEMONIC, HDPath.bip44(index=i)) for i in (0, 1))
    bob = address_from_pubkey(bob_key.public_key.to_bytes())
    node = start_module_node(name="two-way-node", accounts=[(ALICE, 1000 * GNK)])
    hashes = []
    with _client_for(url(node)) as client:
        for key, sender, recipient, amount, memo in (
            (alice_key, ALICE, bob, 3 * GNK, "rent"),
            (bob_key, bob, ALICE, GNK, ""),
        ):
            account = client.account(sender)
            signed = txlib.sign_send(
                key,
                chain_id="gonka-devnet",
                account_number=account.account_number,
                sequence=account.sequence,
                from_address=sender,
                to_address=recipient,
                amount=amount,
                fee=txlib.Fee(txlib.coins(0), txlib.DEFAULT_GAS_LIMIT),
                memo=memo,
            )
            assert client.broadcast(signed.tx_bytes).ok
            assert client.wait_for_tx(signed.txhash, timeout_s=10, poll_s=0.02).ok
            hashes.append(signed.txhash)
    out, back = hashes
    assert height_of(node, back) > height_of(node, out)
    return TwoWay(node, bob, out, back)


@pytest.fixture
def two_way(two_way_node: TwoWay, alice: str, gonka_home: Path) -> TwoWay:
    """The devnet profile points at the two-way node; key 'alice' is in the keystore."""
    use_devnet(gonka_home, url(two_way_node.node))
    return two_way_node


def test_history_lists_both_directions_newest_first(two_way: TwoWay) -> None:
    out, back, bob, node = two_way.out, two_way.back, two_way.bob, two_way.node

    data = ok_json(gonka("wallet", "history", "alice", "--json"))

    assert (data["address"], data["network"]) == (ALICE, "devnet")
    assert [
        (
            e["txhash"],
            e["height"],
            e["direction"],
            e["counterparty"],
            e["amount_ngonka"],
            e["fee_ngonka"],
            e["memo"],
            e["status"],
        )
        for e in data["transfers"]
    ] == [
        (back, str(height_of(node, back)), "in", bob, "1000000000", "0", "", "success"),
        (out, str(height_of(node, out)), "out", bob, "3000000000", "0", "rent", "success"),
    ]


def test_history_of_the_other_side(two_way: TwoWay) -> None:
    data = ok_json(gonka("wallet", "history", two_way.bob, "--json"))

    assert [(e["txhash"], e["direction"], e["counterparty"]) for e in data["transfers"]] == [
        (two_way.back, "out", ALICE),
        (two_way.out, "in", ALICE),
    ]


def test_history_limit(two_way: TwoWay) -> None:
    data = ok_json(gonka("wallet", "history", "alice", "--limit", "1", "--json"))

    assert [e["txhash"] for e in data["transfers"]] == [two_way.back]


def test_history_human_text(two_way: TwoWay) -> None:
    out, back, bob, node = two_way.out, two_way.back, two_way.bob, two_way.node
    result = gonka("wallet", "history", "alice")

    assert result.exit_code == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == [
        "height",
        "time",
        "amount",
        "direction",
        "counterparty",
        "transaction",
    ]
    rows = [line.split() for line in lines]
    assert [(r[0], r[2], r[3], r[4], r[5], r[6]) for r in rows] == [
        (str(height_of(node, back)), "+1", "GNK", "from", bob, back),
        (str(height_of(node, out)), "-3", "GNK", "to", bob, out),
    ]
    # The columns line up under their headers.
    for line in lines:
        assert line.index(bob) == header.index("counterparty")
        assert line.index(" GNK") + len(" GNK") == header.index("amount") + len("amount")
    assert "FAILED" not in result.stdout


def test_history_of_an_address_without_transfers(idle: Node) -> None:
    text = gonka("wallet", "history", CAROL)
    data = ok_json(gonka("wallet", "history", CAROL, "--json"))

    assert text.exit_code == 0
    assert text.stdout == f"No transfers found for {CAROL}.\n"
    assert data == {"address": CAROL, "network": "devnet", "transfers": []}


@pytest.mark.parametrize("limit", ["0", "101"])
def test_history_limit_out_of_range(idle: Node, limit: str) -> None:
    result = gonka("wallet", "history", CAROL, "--limit", limit, "--json")

    assert error_line(result, 2) == "Error: --limit must be between 1 and 100"


# --- a node that goes away mid-transfer -------------------------------------------------


def _client_for(*urls: str) -> ChainClient:
    profile = dataclasses.replace(settings.BUILTIN_NETWORKS["devnet"], rest_urls=urls)
    return ChainClient(profile)


def _send_to_carol(client: ChainClient, home: Path) -> transfer.Submitted:
    """Plan and broadcast 2 GNK from alice to CAROL; the block is not waited for."""
    store = Keystore(home / "keys")
    key, private_key = store.get("alice"), store.unlock("alice", PASSWORD).private_key
    plan = transfer.plan_send(client, client.profile, key, CAROL, 2 * GNK)
    return transfer.submit(client, plan, private_key)


def test_waiting_moves_to_the_next_node_when_the_first_goes_away(
    alice: str,
    start_node: StartNode,
    restart: Callable[[Node, int], Node],
    gonka_home: Path,
    broadcasts: list[str],
) -> None:
    # No block comes on its own: the transfer waits in the first node's mempool.
    first = start_node(accounts=[(ALICE, 1000 * GNK)], block_time_s=3600)
    second_url = dead_url()

    with _client_for(url(first), second_url) as client:
        sent = _send_to_carol(client, gonka_home)
        assert ledger(first).status().mempool_txs == 1
        assert ledger(first).tx(sent.txhash) is None
        first.stop()  # a last block applies the mempool
        # The same chain comes back behind the profile's second address.
        second = restart(first, int(second_url.rsplit(":", 1)[1]))
        result = transfer.wait_for_block(client, sent.txhash, timeout_s=30, poll_s=0.01)
        assert client.url == second_url

    assert (result.txhash, result.ok, result.height) == (
        sent.txhash,
        True,
        height_of(second, sent.txhash),
    )
    assert balance_of(second, CAROL) == 2 * GNK
    assert broadcasts == [sent.txhash]


def test_waiting_while_every_node_is_gone_times_out_naming_the_hash(
    alice: str, start_node: StartNode, gonka_home: Path
) -> None:
    first = start_node(accounts=[(ALICE, 1000 * GNK)])

    with _client_for(url(first), dead_url()) as client:
        sent = _send_to_carol(client, gonka_home)
        first.stop()
        with pytest.raises(TxTimeout) as caught:
            transfer.wait_for_block(client, sent.txhash, timeout_s=0.2, poll_s=0.05)

    assert f"gonka wallet tx {sent.txhash}" in str(caught.value)
    # As the message says, it may still land: the node had accepted it, and has applied it.
    again = start_node(home=first.home_path)
    landed = ledger(again).tx(sent.txhash)
    assert landed is not None and landed.code == 0
    assert balance_of(again, CAROL) == 2 * GNK


def test_balance_of_another_chains_address_names_the_prefix(idle: Node) -> None:
    result = gonka("wallet", "balance", "cosmos1pkptre7fdkl6gfrzlesjjvhxhlc3r4gmmk8rs6")

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: invalid address 'cosmos1pkptre7fdkl6gfrzlesjjvhxhlc3r4gmmk8rs6': prefix is "
        "'cosmos', expected 'gonka'"
    ]


def test_send_takes_a_negative_amount_as_a_bad_amount_not_an_option(
    alice: str, bob: str, idle: Node, broadcasts: list[str]
) -> None:
    result = gonka("wallet", "send", "alice", bob, "-1gnk", "--yes")

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: invalid amount '-1gnk': must not be negative"
    ]
    assert broadcasts == []


# --- networks: --node alone follows the node's chain; what an unreachable network says -------


@pytest.mark.parametrize("how", ["--node", "GONKA_NODE"])
def test_node_alone_follows_the_chain_of_the_node_for_balance(
    alice: str, shared_node: Node, how: str
) -> None:
    # No config file: the default network is mainnet, but the node given is a devnet node.
    if how == "--node":
        result = gonka("wallet", "balance", "alice", "--node", url(shared_node), "--json")
    else:
        result = runner.invoke(
            app,
            ["wallet", "balance", "alice", "--json"],
            env={settings.ENV_NODE: url(shared_node)},
        )
    data = ok_json(result)

    assert (data["network"], data["spendable_ngonka"]) == ("devnet", str(1000 * GNK))


def test_node_alone_lets_send_sign_for_the_chain_of_the_node(
    alice: str, start_node: StartNode
) -> None:
    devnet_node = start_node(accounts=[(ALICE, 1000 * GNK)])

    data = ok_json(send("alice", CAROL, "1gnk", "--node", url(devnet_node)))

    assert (data["status"], data["network"], data["chain_id"]) == (
        "success",
        "devnet",
        "gonka-devnet",
    )
    assert balance_of(devnet_node, CAROL) == GNK


def test_node_alone_lets_broadcast_check_the_chain_of_the_node(
    alice: str, start_node: StartNode
) -> None:
    devnet_node = start_node(accounts=[(ALICE, 1000 * GNK)])
    signed = ok_json(
        send(
            "alice", CAROL, "1gnk", "--offline", "--chain-id", "gonka-devnet",
            "--account-number", str(account_of(devnet_node, ALICE).number), "--sequence", "0",
        )
    )  # fmt: skip

    data = ok_json(
        gonka("wallet", "broadcast", signed["tx_bytes"], "--node", url(devnet_node), "--json")
    )

    assert (data["txhash"], data["status"]) == (signed["txhash"], "success")
    assert balance_of(devnet_node, CAROL) == GNK


def test_node_alone_on_an_unknown_chain_is_named_after_its_chain_id(
    alice: str, start_node: StartNode, tmp_path: Path
) -> None:
    other = start_chain(start_node, tmp_path / "other-chain", "other-chain")

    data = ok_json(gonka("wallet", "balance", "alice", "--node", url(other), "--json"))

    assert data["network"] == "other-chain"


def test_the_default_network_unreachable_says_how_to_choose_another(
    alice: str, gonka_home: Path
) -> None:
    dead = dead_url()
    gonka_home.mkdir(parents=True, exist_ok=True)
    (gonka_home / "config.toml").write_text(f'[networks.mainnet]\nrest = ["{dead}"]\n')

    line = error_line(gonka("wallet", "balance", "alice", "--json"), 1)

    assert line == (
        f"Error: no node answered: tried {dead} (connection refused); network 'mainnet' is the "
        "default: check the connection, or choose another network with --network devnet (or "
        "GONKA_NETWORK=devnet) or a node with --node URL"
    )


@pytest.mark.parametrize(
    "how", [["--network", "devnet"], "GONKA_NETWORK", "config"], ids=["option", "env", "config"]
)
def test_a_devnet_node_that_is_down_says_how_to_start_it(
    alice: str, gonka_home: Path, how: Any
) -> None:
    dead = dead_url()
    use_devnet(gonka_home, dead)  # the devnet profile's node is down; devnet is the default
    if how != "config":  # mainnet stays the default: devnet is named
        (gonka_home / "config.toml").write_text(f'[networks.devnet]\nrest = ["{dead}"]\n')
    args = how if isinstance(how, list) else []
    env = {settings.ENV_KEYRING_PASSWORD: PASSWORD}
    if how == "GONKA_NETWORK":
        env[settings.ENV_NETWORK] = "devnet"

    result = runner.invoke(app, ["wallet", "history", "alice", "--json", *args], env=env)

    assert error_line(result, 1) == (
        f"Error: no node answered: tried {dead} (connection refused); is the devnet node "
        "running? start it with `gonka node start`"
    )


def test_another_named_network_unreachable_keeps_the_plain_advice(
    alice: str, gonka_home: Path
) -> None:
    dead = dead_url()
    gonka_home.mkdir(parents=True, exist_ok=True)
    (gonka_home / "config.toml").write_text(
        f'[networks.testnet]\nchain_id = "gonka-testnet-1"\nrest = ["{dead}"]\n'
    )

    line = error_line(gonka("wallet", "balance", "alice", "--network", "testnet", "--json"), 1)

    assert line == (
        f"Error: no node answered: tried {dead} (connection refused); check the connection or "
        "pass --node URL"
    )


def test_every_network_option_states_its_default() -> None:
    import typer.main

    def commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, f"{path} {name}")

    found = {
        path: param.help or ""
        for path, command in commands(typer.main.get_command(app), "gonka")
        for param in command.params
        if "--network" in getattr(param, "opts", [])
    }

    assert {"gonka mine", "gonka wallet balance", "gonka wallet faucet"} <= set(found)
    for path, text in found.items():
        default = "devnet" if path == "gonka wallet faucet" else "mainnet"
        assert f"Default: {default}" in text, path


# --- send: TO may be a key name ----------------------------------------------------------------


def test_send_to_a_key_name_sends_to_its_address(alice: str, bob: str, node: Node) -> None:
    data = ok_json(send("alice", "bob", "1gnk"))

    assert (data["status"], data["to"]) == ("success", bob)
    assert balance_of(node, bob) == GNK


def test_send_to_a_name_that_is_no_key_nor_address_is_refused(
    alice: str, idle: Node, broadcasts: list[str]
) -> None:
    line = error_line(send("alice", "nobody", "1gnk"), 2)

    assert line == (
        "Error: invalid recipient 'nobody': neither an address (gonka1...) nor the name of a key "
        "in the keystore (`gonka wallet list` shows them)"
    )
    assert broadcasts == []
