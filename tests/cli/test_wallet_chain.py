"""`gonka wallet balance|send|broadcast|tx|history` against the real test chain over HTTP."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gonka_cli import settings
from gonka_cli.chain import tx as txlib
from gonka_cli.chain.client import ChainClient
from gonka_cli.cli.main import app
from gonka_cli.crypto.secp256k1 import PublicKey
from gonka_cli.errors import TxTimeout
from gonka_cli.wallet import transfer
from gonka_cli.wallet.keystore import Keystore
from tests.chain_server import GAS_BASE, GAS_PER_BYTE, Chain, ChainServer
from tests.conftest import MNEMONIC, PASSWORD, dead_url

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


def ledger(chain: Chain) -> dict[str, tuple[int, int]]:
    """Every account's (balance, sequence)."""
    return {a.address: (a.balance, a.sequence) for a in chain.accounts.values()}


def balance_of(chain: Chain, address: str) -> int:
    account = chain.accounts.get(address)
    return 0 if account is None else account.balance


def use_nodes(home: Path, *urls: str, gas_price: str | None = None) -> None:
    """Point the devnet profile (the default network) at `urls`."""
    home.mkdir(parents=True, exist_ok=True)
    rest = ", ".join(f'"{u}"' for u in urls)
    text = f'default_network = "devnet"\n[networks.devnet]\nrest = [{rest}]\n'
    if gas_price is not None:
        text += f'gas_price = "{gas_price}"\n'
    (home / "config.toml").write_text(text)


def simulated_gas(
    from_address: str, pubkey_hex: str, to_address: str, amount: int, memo: str, sequence: int
) -> int:
    """What the test chain answers to the simulation of this transfer."""
    sim = txlib.simulation_tx(
        PublicKey.from_hex(pubkey_hex),
        sequence=sequence,
        message=txlib.MsgSend(from_address, to_address, txlib.coins(amount)),
        memo=memo,
    )
    return GAS_BASE + GAS_PER_BYTE * (len(sim) + 64)


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


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def alice(devnet: ChainServer, chain: Chain) -> str:
    """Key 'alice' (MNEMONIC), holding 1000 GNK on the devnet chain."""
    info = ok_json(gonka("wallet", "import", "alice", "--json", input=MNEMONIC))
    assert info["address"] == ALICE
    chain.fund(ALICE, 1000 * GNK)
    return ALICE


@pytest.fixture
def bob(devnet: ChainServer) -> str:
    """Key 'bob': a new mnemonic, never funded."""
    return str(ok_json(gonka("wallet", "create", "bob", "--yes", "--json"))["address"])


@pytest.fixture
def alice_pubkey(alice: str) -> str:
    return str(ok_json(gonka("wallet", "show", "alice", "--json"))["pubkey_hex"])


# --- balance ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["alice", ALICE, ALICE.upper()], ids=["key-name", "address", "upper-case-address"]
)
def test_balance_json_fields(alice: str, chain: Chain, target: str) -> None:
    chain.fund(ALICE, 234_500_000_001)

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


def test_balance_human_text(alice: str) -> None:
    result = gonka("wallet", "balance", "alice")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{ALICE}: 1000.000000000 GNK (1000000000000 ngonka) spendable\n"


def test_balance_shows_locked_funds_apart(alice: str, chain: Chain) -> None:
    chain.fund(ALICE, 0, locked=250 * GNK)

    data = ok_json(gonka("wallet", "balance", "alice", "--json"))
    text = gonka("wallet", "balance", "alice").stdout

    assert (data["spendable_ngonka"], data["spendable_gnk"]) == ("750000000000", "750.000000000")
    assert (data["total_ngonka"], data["total_gnk"]) == ("1000000000000", "1000.000000000")
    assert text == (
        f"{ALICE}: 750.000000000 GNK (750000000000 ngonka) spendable\n"
        f"{' ' * len(ALICE)}  1000.000000000 GNK (1000000000000 ngonka) in total (some is locked)\n"
    )


def test_balance_of_an_address_the_chain_never_saw_is_zero(devnet: ChainServer) -> None:
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
def test_balance_of_a_bad_address_is_a_usage_error(
    devnet: ChainServer, address: str, reason: str
) -> None:
    line = error_line(gonka("wallet", "balance", address), 2)

    assert line == f"Error: invalid address {address!r}: {reason}"


def test_balance_of_an_unknown_key_fails(devnet: ChainServer) -> None:
    line = error_line(gonka("wallet", "balance", "carol"), 1)

    assert line == "Error: no key named 'carol'; `gonka wallet list` shows your keys"


# --- send: the happy path ---------------------------------------------------------------


def test_send_json_moves_amount_and_fee_on_chain(
    alice: str, alice_pubkey: str, bob: str, chain: Chain, server: ChainServer, gonka_home: Path
) -> None:
    use_nodes(gonka_home, server.url, gas_price="0.5")
    # The node insists on the same price: the default fee must meet it.
    chain.min_gas_price = Decimal("0.5")
    supply = chain.total_supply()
    gas_limit = -(-simulated_gas(ALICE, alice_pubkey, bob, 1_500_000_000, "thanks", 0) * 13 // 10)
    fee = -(-gas_limit // 2)

    result = send("alice", bob, "1.5gnk", "--memo", "thanks")

    data = ok_json(result)
    assert result.stderr == ""
    assert chain.broadcasts == [data["txhash"]]
    landed = chain.txs[data["txhash"]]
    data.pop("timestamp")
    assert data == {
        "network": "devnet",
        "chain_id": "gonka-devnet",
        "node": server.url,
        "from": ALICE,
        "from_name": "alice",
        "to": bob,
        "amount_ngonka": "1500000000",
        "fee_ngonka": str(fee),
        "gas_limit": str(gas_limit),
        "memo": "thanks",
        "account_number": str(chain.accounts[ALICE].number),
        "sequence": "0",
        "txhash": data["txhash"],
        "height": "101",
        "status": "success",
        "code": 0,
        "codespace": "",
        "raw_log": "",
        "error": None,
        "gas_wanted": str(gas_limit),
        "gas_used": str(landed["gas_used"]),
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
    assert balance_of(chain, ALICE) == 1000 * GNK - 1_500_000_000 - fee
    assert balance_of(chain, bob) == 1_500_000_000
    assert chain.accounts[ALICE].sequence == 1
    assert chain.total_supply() == supply - fee  # the fee leaves the ledger, nothing else


def test_send_uses_given_gas_and_fee(alice: str, bob: str, chain: Chain) -> None:
    data = ok_json(send("alice", bob, "2gnk", "--gas", "150000", "--fee", "0.000002gnk"))

    assert (data["gas_limit"], data["gas_wanted"], data["fee_ngonka"]) == (
        "150000",
        "150000",
        "2000",
    )
    assert balance_of(chain, ALICE) == 1000 * GNK - 2 * GNK - 2000
    assert balance_of(chain, bob) == 2 * GNK


def test_send_human_mode_keeps_the_summary_on_stderr(alice: str, bob: str, chain: Chain) -> None:
    result = gonka("wallet", "send", "alice", bob, "1gnk", "--yes")

    assert result.exit_code == 0, result.stderr
    txhash = chain.broadcasts[0]
    assert result.stdout == (
        f"Sent 1.000000000 GNK (1000000000 ngonka) to {bob}.\n"
        f"Transaction {txhash} is in block 101.\n"
    )
    assert (
        "Transfer\n"
        "amount   1.000000000 GNK (1000000000 ngonka)\n"
        f"from     alice ({ALICE})\n"
        f"to       {bob}\n"
    ) in result.stderr
    assert f"Transaction {txhash} accepted by the node." in result.stderr


@pytest.mark.parametrize("sender", [ALICE, ALICE.upper()], ids=["address", "upper-case-address"])
def test_send_from_the_address_of_a_stored_key(
    alice: str, bob: str, chain: Chain, sender: str
) -> None:
    data = ok_json(send(sender, bob, "1gnk"))

    assert (data["from"], data["from_name"], data["status"]) == (ALICE, "alice", "success")
    assert balance_of(chain, bob) == GNK


def test_send_from_an_address_without_a_key_is_refused(alice: str, chain: Chain) -> None:
    before = ledger(chain)

    line = error_line(send(CAROL, ALICE, "1gnk"), 2)

    assert line == (
        f"Error: no key in the keystore holds {CAROL}; `gonka wallet list` shows your keys"
    )
    assert chain.broadcasts == []
    assert ledger(chain) == before


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_send_without_yes_and_no_terminal_changes_nothing(
    alice: str, bob: str, chain: Chain, json_mode: bool
) -> None:
    before = ledger(chain)

    result = gonka("wallet", "send", "alice", bob, "1gnk", *(["--json"] if json_mode else []))

    assert result.exit_code == 2
    assert result.stdout == ""
    line = result.stderr.splitlines()[-1]
    assert line.startswith("Error: ")
    assert "no terminal" in line
    assert "--yes" in line
    assert chain.broadcasts == []
    assert ledger(chain) == before


@pytest.mark.parametrize(
    "memo",
    ["x" * 257, "é" * 129],
    ids=["257-ascii-characters", "129-characters-of-258-utf8-bytes"],
)
def test_send_refuses_a_memo_over_256_bytes_before_broadcast(
    alice: str, bob: str, chain: Chain, memo: str
) -> None:
    # The SDK's ValidateMemoDecorator compares len(memo) in Go, i.e. UTF-8 bytes, with 256.
    before = ledger(chain)

    line = error_line(send("alice", bob, "1gnk", "--memo", memo), 2)

    assert "the chain allows at most 256" in line
    assert chain.broadcasts == []
    assert ledger(chain) == before


def test_send_accepts_a_memo_of_256_characters(alice: str, bob: str, chain: Chain) -> None:
    data = ok_json(send("alice", bob, "1gnk", "--memo", "m" * 256))

    assert data["memo"] == "m" * 256
    assert chain.txs[data["txhash"]]["decoded"].memo == "m" * 256


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
    alice: str, chain: Chain, recipient: str, reason: str
) -> None:
    before = ledger(chain)

    line = error_line(send("alice", recipient, "1gnk"), 2)

    assert line == f"Error: invalid address {recipient!r}: {reason}"
    assert chain.broadcasts == []
    assert ledger(chain) == before


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
    alice: str, chain: Chain, amount: str, reason: str
) -> None:
    before = ledger(chain)

    # Options first and `--` before the arguments, so that "-1gnk" is not taken for an option.
    line = error_line(gonka("wallet", "send", "--yes", "--json", "--", "alice", CAROL, amount), 2)

    assert line == f"Error: invalid amount {amount!r}: {reason}"
    assert chain.broadcasts == []
    assert ledger(chain) == before


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
    alice: str, chain: Chain, options: list[str], message: str
) -> None:
    before = ledger(chain)

    line = error_line(send("alice", CAROL, "1gnk", *options), 2)

    assert line == message
    assert chain.broadcasts == []
    assert ledger(chain) == before


@pytest.mark.parametrize(
    ("amount", "options", "locked", "needs"),
    [
        ("1001gnk", [], 0, "1001.000000000 GNK (1001000000000 ngonka)"),
        (
            "1000gnk",
            ["--fee", "1ngonka"],
            0,
            "1000.000000001 GNK (1000000000001 ngonka) including a fee of "
            "0.000000001 GNK (1 ngonka)",
        ),
        ("1000gnk", [], 1, "1000.000000000 GNK (1000000000000 ngonka)"),
    ],
    ids=["more-than-the-balance", "amount-plus-fee", "locked-funds"],
)
def test_send_beyond_spendable_funds_fails_before_unlocking(
    alice: str, chain: Chain, amount: str, options: list[str], locked: int, needs: str
) -> None:
    chain.fund(ALICE, 0, locked=locked)
    before = ledger(chain)
    spendable = 1000 * GNK - locked

    # No password source at all: the check must come before the key is unlocked.
    line = error_line(send("alice", CAROL, amount, *options, password=None), 1)

    assert line == (
        f"Error: insufficient funds: {ALICE} can spend {spendable // GNK}."
        f"{spendable % GNK:09d} GNK ({spendable} ngonka), the transfer needs {needs}"
    )
    assert chain.broadcasts == []
    assert ledger(chain) == before


def test_send_from_an_unknown_key_fails(alice: str, chain: Chain) -> None:
    line = error_line(send("carol", ALICE, "1gnk"), 1)

    assert line == "Error: no key named 'carol'; `gonka wallet list` shows your keys"
    assert chain.broadcasts == []


def test_send_from_an_account_never_funded(alice: str, bob: str, chain: Chain) -> None:
    line = error_line(send("bob", ALICE, "1gnk"), 1)

    assert line == (
        f"Error: account {bob} does not exist on chain yet: it has never received funds; "
        "send it some GNK first"
    )
    assert chain.broadcasts == []


# --- send: passwords --------------------------------------------------------------------


def test_send_with_a_wrong_password_sends_nothing(alice: str, chain: Chain) -> None:
    before = ledger(chain)

    line = error_line(send("alice", CAROL, "1gnk", password="not the password"), 1)

    assert line.startswith("Error: wrong password for key 'alice'")
    assert "not the password" not in line
    assert chain.broadcasts == []
    assert ledger(chain) == before


def test_send_without_any_password_source_names_both_ways_to_give_one(
    alice: str, chain: Chain
) -> None:
    line = error_line(send("alice", CAROL, "1gnk", password=None), 1)

    assert line == (
        "Error: a password is needed for key 'alice' and there is no terminal to ask on; "
        "set GONKA_KEYRING_PASSWORD or pass --password-file FILE"
    )
    assert chain.broadcasts == []


def test_send_with_a_password_file(alice: str, chain: Chain, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)

    data = ok_json(
        send("alice", CAROL, "1gnk", "--password-file", str(password_file), password=None)
    )

    assert data["status"] == "success"
    assert balance_of(chain, CAROL) == GNK


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
    alice: str, chain: Chain, tmp_path: Path, content: str | None, exit_code: int, message: str
) -> None:
    password_file = tmp_path / "password"
    if content is not None:
        password_file.write_text(content)
        password_file.chmod(0o600)
    before = ledger(chain)

    line = error_line(
        send("alice", CAROL, "1gnk", "--password-file", str(password_file), password=None),
        exit_code,
    )

    assert line.startswith(message.format(file=password_file))
    assert chain.broadcasts == []
    assert ledger(chain) == before


# --- send: nodes ------------------------------------------------------------------------


def test_send_refuses_to_sign_for_a_node_on_another_chain(alice: str, chain: Chain) -> None:
    chain.chain_id = "other-chain"
    before = ledger(chain)

    line = error_line(send("alice", CAROL, "1gnk"), 1)

    assert "'other-chain'" in line
    assert "'gonka-devnet'" in line
    assert "refusing to sign" in line
    assert chain.broadcasts == []
    assert ledger(chain) == before


def test_send_checks_the_chain_id_of_the_network_picked(
    alice: str, chain: Chain, server: ChainServer
) -> None:
    line = error_line(send("alice", CAROL, "1gnk", "--network", "mainnet", "--node", server.url), 1)

    assert line == (
        f"Error: node {server.url} is on chain 'gonka-devnet', but network 'mainnet' is "
        "'gonka-mainnet'; refusing to sign (check --network and --node)"
    )
    assert chain.broadcasts == []


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
def test_an_unreachable_node_is_named(alice: str, chain: Chain, command: list[str]) -> None:
    url = dead_url()

    line = error_line(gonka(*command, "--node", url), 1)

    assert line == (
        f"Error: no node answered: tried {url} (connection refused); check the connection or "
        "pass --node URL"
    )
    assert chain.broadcasts == []


def test_send_fails_over_to_the_next_node_of_the_profile(
    alice: str, chain: Chain, server: ChainServer, gonka_home: Path
) -> None:
    use_nodes(gonka_home, dead_url(), server.url)

    data = ok_json(send("alice", CAROL, "1gnk"))

    assert (data["status"], data["node"]) == ("success", server.url)
    assert balance_of(chain, CAROL) == GNK


def test_node_option_replaces_the_profile_nodes(
    alice: str, chain: Chain, server: ChainServer, gonka_home: Path
) -> None:
    use_nodes(gonka_home, dead_url())

    data = ok_json(send("alice", CAROL, "1gnk", "--node", server.url + "/"))

    assert (data["status"], data["node"]) == ("success", server.url)
    assert balance_of(chain, CAROL) == GNK


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
    ("answers", "broadcasts"),
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
    alice: str, chain: Chain, answers: list[tuple[str, int]], broadcasts: int
) -> None:
    # A raw log without the SDK's words: the sentence must come from the code itself.
    chain.forced_broadcast = [(space, code, "refused by the test node") for space, code in answers]
    before = ledger(chain)

    line = error_line(send("alice", CAROL, "1gnk"), 1)

    words = REFUSAL_WORDS[answers[0]]
    assert line.startswith(REFUSED)
    assert words in line
    assert not [w for w in REFUSAL_WORDS.values() if w != words and w in line]
    assert len(chain.broadcasts) == broadcasts
    assert chain.forced_broadcast == []
    assert ledger(chain) == before


def test_already_in_mempool_counts_as_accepted_then_waits(alice: str, chain: Chain) -> None:
    chain.forced_broadcast = [("sdk", 19, "tx already exists in cache")]
    before = ledger(chain)

    line = error_line(send("alice", CAROL, "1gnk", "--timeout", "1"), 1)

    [txhash] = chain.broadcasts
    assert line == (
        f"Error: transaction {txhash} is not in a block after 1 s; it may still land: check "
        f"with `gonka wallet tx {txhash}`"
    )
    assert ledger(chain) == before


def test_a_node_minimum_gas_price_refuses_a_zero_fee(alice: str, chain: Chain) -> None:
    chain.min_gas_price = Decimal("0.01")
    before = ledger(chain)

    line = error_line(send("alice", CAROL, "1gnk", "--fee", "0ngonka"), 1)

    assert line == (
        f"{REFUSED}insufficient fee: this node's minimum gas price needs a higher fee; retry "
        "with a larger --fee"
    )
    assert len(chain.broadcasts) == 1
    assert ledger(chain) == before


@pytest.mark.parametrize(
    ("options", "broadcasts"),
    [([], 0), (["--gas", "100000"], 1)],
    ids=["refused-at-simulation", "refused-at-broadcast"],
)
def test_restricted_transfers_are_one_clear_sentence(
    alice: str, chain: Chain, options: list[str], broadcasts: int
) -> None:
    chain.restrict_transfers = True
    before = ledger(chain)

    line = error_line(send("alice", CAROL, "1gnk", *options), 1)

    assert (
        "transfers between accounts are still restricted on this network (bootstrap period); "
        "try again after the restriction ends"
    ) in line
    assert len(chain.broadcasts) == broadcasts
    assert ledger(chain) == before


def test_out_of_gas_in_the_block_charges_the_fee(alice: str, chain: Chain) -> None:
    line = error_line(send("alice", CAROL, "1gnk", "--gas", "1000", "--fee", "7ngonka"), 1)

    [txhash] = chain.broadcasts
    assert line == (
        f"Error: transaction {txhash} is in block 101 but failed: out of gas: the gas limit was "
        "too low; retry with --gas auto or a higher --gas"
    )
    assert balance_of(chain, ALICE) == 1000 * GNK - 7
    assert balance_of(chain, CAROL) == 0
    assert chain.accounts[ALICE].sequence == 1

    shown = ok_json(gonka("wallet", "tx", txhash, "--json"))
    assert (shown["status"], shown["code"], shown["codespace"]) == ("failed", 11, "sdk")
    assert shown["fee_ngonka"] == "7"
    assert shown["error"].startswith("out of gas")


def test_a_wrong_sequence_is_signed_again_once(alice: str, chain: Chain) -> None:
    chain.forced_broadcast = [
        ("sdk", 32, "account sequence mismatch, expected 0, got 0: incorrect account sequence")
    ]

    result = gonka("wallet", "send", "alice", CAROL, "1gnk", "--yes")

    assert result.exit_code == 0, result.stderr
    assert "signed again with sequence 0" in result.stderr
    assert result.stdout.startswith(f"Sent 1.000000000 GNK (1000000000 ngonka) to {CAROL}.\n")
    assert len(chain.broadcasts) == 2
    assert len(chain.txs) == 1
    assert balance_of(chain, CAROL) == GNK
    assert balance_of(chain, ALICE) == 999 * GNK
    assert chain.accounts[ALICE].sequence == 1


# --- offline signing and broadcast ------------------------------------------------------


def test_offline_signing_prints_the_signed_transaction(alice: str, chain: Chain) -> None:
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
    assert chain.broadcasts == []


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
def test_broadcast_lands_an_offline_transaction(alice: str, chain: Chain, via: str) -> None:
    number = chain.accounts[ALICE].number
    signed = sign_offline(
        CAROL, "2gnk", account_number=number, sequence=0, extra=("--fee", "250ngonka")
    )

    if via == "stdin":
        result = gonka("wallet", "broadcast", "-", "--json", input=signed["tx_bytes"] + "\n")
    else:
        result = gonka("wallet", "broadcast", signed["tx_bytes"], "--json")

    data = ok_json(result)
    assert chain.broadcasts == [signed["txhash"]]
    assert (data["txhash"], data["status"], data["height"]) == (signed["txhash"], "success", "101")
    assert data["fee_ngonka"] == "250"
    assert balance_of(chain, ALICE) == 1000 * GNK - 2 * GNK - 250
    assert balance_of(chain, CAROL) == 2 * GNK
    assert chain.accounts[ALICE].sequence == 1


def test_broadcast_of_a_landed_transaction_does_not_send_it_again(alice: str, chain: Chain) -> None:
    signed = sign_offline(CAROL, "2gnk", account_number=chain.accounts[ALICE].number, sequence=0)
    ok_json(gonka("wallet", "broadcast", signed["tx_bytes"], "--json"))

    again = ok_json(gonka("wallet", "broadcast", signed["tx_bytes"], "--json"))

    assert (again["txhash"], again["height"]) == (signed["txhash"], "101")
    assert chain.broadcasts == [signed["txhash"]]
    assert balance_of(chain, CAROL) == 2 * GNK


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
    alice: str, chain: Chain, text: str, message: str
) -> None:
    line = error_line(gonka("wallet", "broadcast", text, "--json"), 2)

    assert line.startswith(f"Error: {message}")
    assert chain.broadcasts == []


@pytest.mark.parametrize(
    ("chain_id", "account_number"),
    [("gonka-mainnet", None), ("gonka-devnet", 99)],
    ids=["other-chain-id", "other-account-number"],
)
def test_broadcast_refuses_a_transaction_signed_for_another_chain_or_account(
    alice: str, chain: Chain, chain_id: str, account_number: int | None
) -> None:
    number = chain.accounts[ALICE].number
    signed = sign_offline(
        CAROL, "2gnk", chain_id=chain_id, account_number=account_number or number, sequence=0
    )
    before = ledger(chain)

    line = error_line(gonka("wallet", "broadcast", signed["tx_bytes"], "--json"), 1)

    assert line == (
        f"Error: the signature does not verify for chain 'gonka-devnet' and account number "
        f"{number} of {ALICE}: it was signed for another chain or account; nothing was sent"
    )
    assert chain.broadcasts == []
    assert ledger(chain) == before


def test_broadcast_of_a_stale_sequence_is_refused(alice: str, chain: Chain) -> None:
    stale = sign_offline(CAROL, "2gnk", account_number=chain.accounts[ALICE].number, sequence=0)
    first = ok_json(send("alice", CAROL, "1gnk"))
    before = ledger(chain)

    line = error_line(gonka("wallet", "broadcast", stale["tx_bytes"], "--json"), 1)

    assert line == (
        "Error: the transaction uses sequence 0 but the account is at 1: it is stale; sign it "
        "again with --sequence 1"
    )
    assert chain.broadcasts == [first["txhash"]]
    assert ledger(chain) == before


def test_broadcast_of_a_sequence_ahead_of_the_chain_is_refused(alice: str, chain: Chain) -> None:
    ahead = sign_offline(CAROL, "2gnk", account_number=chain.accounts[ALICE].number, sequence=5)
    before = ledger(chain)

    line = error_line(gonka("wallet", "broadcast", ahead["tx_bytes"], "--json"), 1)

    assert line.startswith(f"{REFUSED}account sequence mismatch (expected 0, got 5)")
    assert ledger(chain) == before


# --- tx ---------------------------------------------------------------------------------


def test_tx_shows_a_landed_transfer(alice: str, chain: Chain) -> None:
    txhash = ok_json(send("alice", CAROL, "1gnk", "--fee", "1000ngonka", "--memo", "rent"))[
        "txhash"
    ]
    landed = chain.txs[txhash]

    data = ok_json(gonka("wallet", "tx", txhash.lower(), "--json"))

    assert data.pop("timestamp")
    assert data == {
        "txhash": txhash,
        "height": "101",
        "status": "success",
        "code": 0,
        "codespace": "",
        "raw_log": "",
        "error": None,
        "gas_wanted": str(landed["gas_wanted"]),
        "gas_used": str(landed["gas_used"]),
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


def test_tx_human_text(alice: str, chain: Chain) -> None:
    txhash = ok_json(send("alice", CAROL, "1gnk", "--fee", "1000ngonka"))["txhash"]
    landed = chain.txs[txhash]

    result = gonka("wallet", "tx", txhash)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [f"hash      {txhash}", "status    success", "height    101"]
    assert lines[4:] == [
        "fee       0.000001000 GNK (1000 ngonka)",
        f"gas       {landed['gas_used']} used of {landed['gas_wanted']}",
        f"transfer  {ALICE} -> {CAROL}: 1.000000000 GNK (1000000000 ngonka)",
    ]


def test_tx_of_an_unknown_hash_is_not_found(devnet: ChainServer) -> None:
    line = error_line(gonka("wallet", "tx", "ab" * 32, "--json"), 1)

    assert line.startswith(f"Error: transaction {'AB' * 32} was not found on {devnet.url}")


@pytest.mark.parametrize(
    "txhash", ["xyz", "A" * 63, "A" * 65, "G" * 64], ids=["short", "63", "65", "not-hex"]
)
def test_tx_of_a_malformed_hash_is_a_usage_error(devnet: ChainServer, txhash: str) -> None:
    line = error_line(gonka("wallet", "tx", txhash, "--json"), 2)

    assert line == f"Error: invalid transaction hash {txhash!r}: expected 64 hex characters"


# --- history ----------------------------------------------------------------------------


@pytest.fixture
def two_way(alice: str, bob: str, chain: Chain) -> tuple[str, str]:
    """alice sends bob 3 GNK (block 101), then bob sends alice 1 GNK (block 102)."""
    out = ok_json(send("alice", bob, "3gnk", "--memo", "rent"))["txhash"]
    back = ok_json(send("bob", ALICE, "1gnk"))["txhash"]
    return out, back


def test_history_lists_both_directions_newest_first(two_way: tuple[str, str], bob: str) -> None:
    out, back = two_way

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
        (back, "102", "in", bob, "1000000000", "0", "", "success"),
        (out, "101", "out", bob, "3000000000", "0", "rent", "success"),
    ]


def test_history_of_the_other_side(two_way: tuple[str, str], bob: str) -> None:
    out, back = two_way

    data = ok_json(gonka("wallet", "history", bob, "--json"))

    assert [(e["txhash"], e["direction"], e["counterparty"]) for e in data["transfers"]] == [
        (back, "out", ALICE),
        (out, "in", ALICE),
    ]


def test_history_limit(two_way: tuple[str, str]) -> None:
    _, back = two_way

    data = ok_json(gonka("wallet", "history", "alice", "--limit", "1", "--json"))

    assert [e["txhash"] for e in data["transfers"]] == [back]


def test_history_human_text(two_way: tuple[str, str], bob: str) -> None:
    out, back = two_way
    result = gonka("wallet", "history", "alice")

    assert result.exit_code == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [(r[0], r[2], r[3], r[4], r[5], r[6]) for r in rows] == [
        ("102", "+1.000000000", "GNK", "from", bob, back),
        ("101", "-3.000000000", "GNK", "to", bob, out),
    ]
    assert "FAILED" not in result.stdout


def test_history_of_an_address_without_transfers(devnet: ChainServer) -> None:
    text = gonka("wallet", "history", CAROL)
    data = ok_json(gonka("wallet", "history", CAROL, "--json"))

    assert text.exit_code == 0
    assert text.stdout == f"No transfers found for {CAROL}.\n"
    assert data == {"address": CAROL, "network": "devnet", "transfers": []}


@pytest.mark.parametrize("limit", ["0", "101"])
def test_history_limit_out_of_range(devnet: ChainServer, limit: str) -> None:
    result = gonka("wallet", "history", CAROL, "--limit", limit, "--json")

    assert error_line(result, 2) == "Error: --limit must be between 1 and 100"


# --- a node that goes away mid-transfer -------------------------------------------------


@pytest.fixture
def two_nodes(chain: Chain) -> Any:
    """Two servers in front of one chain."""
    first, second = ChainServer(chain).start(), ChainServer(chain).start()
    running = [first, second]
    yield first, second, running
    for srv in running:
        srv.stop()


def _client_for(*nodes: ChainServer) -> ChainClient:
    profile = dataclasses.replace(
        settings.BUILTIN_NETWORKS["devnet"], rest_urls=tuple(n.url for n in nodes)
    )
    return ChainClient(profile)


def _send_to_carol(client: ChainClient, home: Path) -> transfer.Submitted:
    """Plan and broadcast 2 GNK from alice to CAROL; the block is not waited for."""
    store = Keystore(home / "keys")
    key, private_key = store.get("alice"), store.unlock("alice", PASSWORD).private_key
    plan = transfer.plan_send(client, client.profile, key, CAROL, 2 * GNK)
    return transfer.submit(client, plan, private_key)


def test_waiting_moves_to_the_next_node_when_the_first_goes_away(
    alice: str, chain: Chain, gonka_home: Path, two_nodes: Any
) -> None:
    first, second, running = two_nodes

    with _client_for(first, second) as client:
        sent = _send_to_carol(client, gonka_home)
        assert [m.txhash for m in chain.mempool] == [sent.txhash]
        first.stop()
        running.remove(first)
        result = transfer.wait_for_block(client, sent.txhash, timeout_s=30, poll_s=0.01)
        assert client.url == second.url

    assert (result.txhash, result.ok, result.height) == (sent.txhash, True, 101)
    assert balance_of(chain, CAROL) == 2 * GNK
    assert chain.broadcasts == [sent.txhash]


def test_waiting_while_every_node_is_gone_times_out_naming_the_hash(
    alice: str, chain: Chain, gonka_home: Path, two_nodes: Any
) -> None:
    first, second, running = two_nodes

    with _client_for(first, second) as client:
        sent = _send_to_carol(client, gonka_home)
        for srv in (first, second):
            srv.stop()
            running.remove(srv)
        with pytest.raises(TxTimeout) as caught:
            transfer.wait_for_block(client, sent.txhash, timeout_s=0.2, poll_s=0.05)

    assert f"gonka wallet tx {sent.txhash}" in str(caught.value)
    assert balance_of(chain, CAROL) == 0


def test_balance_of_another_chains_address_names_the_prefix(devnet: ChainServer) -> None:
    result = gonka("wallet", "balance", "cosmos1pkptre7fdkl6gfrzlesjjvhxhlc3r4gmmk8rs6")

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: invalid address 'cosmos1pkptre7fdkl6gfrzlesjjvhxhlc3r4gmmk8rs6': prefix is "
        "'cosmos', expected 'gonka'"
    ]


def test_send_takes_a_negative_amount_as_a_bad_amount_not_an_option(
    alice: str, bob: str, chain: Chain
) -> None:
    result = gonka("wallet", "send", "alice", bob, "-1gnk", "--yes")

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: invalid amount '-1gnk': must not be negative"
    ]
    assert chain.broadcasts == []
