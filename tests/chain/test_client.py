"""The REST client against a real test chain served over HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import cache

import pytest

from gonka_cli.chain import codes
from gonka_cli.chain import tx as txlib
from gonka_cli.chain.client import Balance, ChainClient, Transfer
from gonka_cli.crypto.address import address_from_pubkey
from gonka_cli.crypto.hd import HDPath, derive_private_key
from gonka_cli.crypto.secp256k1 import PrivateKey
from gonka_cli.errors import (
    AccountNotFound,
    ChainError,
    NodeUnreachable,
    TxError,
    TxNotFound,
    TxTimeout,
)
from gonka_cli.settings import NetworkProfile
from tests.chain_server import GAS_BASE, GAS_PER_BYTE, Chain, ChainServer
from tests.conftest import MNEMONIC, dead_url

FUNDS = 10 * 10**9
FEE = 5_000
UNKNOWN_HASH = "AB" * 32


@cache
def _key(index: int) -> PrivateKey:
    return derive_private_key(MNEMONIC, HDPath.bip44(index=index))


def _address(index: int) -> str:
    return address_from_pubkey(_key(index).public_key.to_bytes())


SENDER = _address(0)
RECIPIENT = _address(1)
OTHER_RECIPIENT = _address(2)
STRANGER = _address(3)


def _profile(*urls: str, chain_id: str = "gonka-devnet") -> NetworkProfile:
    return NetworkProfile(name="test", chain_id=chain_id, rest_urls=urls)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ChainServer]:
    srv = ChainServer(Chain()).start()
    yield srv
    srv.stop()


@pytest.fixture
def server(shared_server: ChainServer, chain: Chain) -> ChainServer:
    """One node for the module (stopping a node takes half a second), serving a fresh chain."""
    shared_server.chain = chain
    shared_server.mode = "json"
    return shared_server


@pytest.fixture
def client(server: ChainServer) -> Iterator[ChainClient]:
    with ChainClient(_profile(server.url), timeout_s=5) as chain_client:
        yield chain_client


@pytest.fixture
def start_server() -> Iterator[Callable[[Chain], ChainServer]]:
    """Start extra nodes, all stopped at the end (stopping one twice is harmless)."""
    started: list[ChainServer] = []

    def start(chain: Chain) -> ChainServer:
        srv = ChainServer(chain).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def _sign(
    client: ChainClient,
    to_address: str,
    amount: int,
    *,
    fee: int = FEE,
    gas_limit: int = txlib.DEFAULT_GAS_LIMIT,
    chain_id: str = "gonka-devnet",
    sequence: int | None = None,
    memo: str = "",
) -> txlib.SignedTx:
    account = client.account(SENDER)
    return txlib.sign_send(
        _key(0),
        chain_id=chain_id,
        account_number=account.account_number,
        sequence=account.sequence if sequence is None else sequence,
        from_address=SENDER,
        to_address=to_address,
        amount=amount,
        fee=txlib.Fee(txlib.coins(fee), gas_limit),
        memo=memo,
    )


def _simulation(sequence: int = 0, key_index: int = 0) -> bytes:
    key = _key(key_index)
    sender = address_from_pubkey(key.public_key.to_bytes())
    message = txlib.MsgSend(sender, RECIPIENT, txlib.coins(1_000))
    return txlib.simulation_tx(key.public_key, sequence=sequence, message=message)


# --- queries ----------------------------------------------------------------------------


def test_node_info(client: ChainClient, server: ChainServer) -> None:
    info = client.node_info()

    assert info.chain_id == "gonka-devnet"
    assert info.url == server.url
    assert info.moniker == "test-node"
    assert info.version == "test"


def test_node_info_reports_the_nodes_chain_id(start_server: Callable[[Chain], ChainServer]) -> None:
    other = start_server(Chain(chain_id="gonka-testnet"))
    with ChainClient(_profile(other.url)) as chain_client:
        assert chain_client.node_info().chain_id == "gonka-testnet"


def test_account_of_a_funded_address(client: ChainClient, chain: Chain) -> None:
    chain.fund(STRANGER, 1)
    number = chain.fund(SENDER, FUNDS).number

    account = client.account(SENDER)

    assert account.address == SENDER
    assert account.account_number == number
    assert account.sequence == 0
    assert account.pubkey_b64 is None
    assert account.to_dict() == {
        "address": SENDER,
        "account_number": str(number),
        "sequence": "0",
        "pubkey": None,
    }


def test_unknown_account_is_account_not_found(client: ChainClient) -> None:
    with pytest.raises(AccountNotFound) as info:
        client.account(STRANGER)

    assert isinstance(info.value, ChainError)
    assert STRANGER in str(info.value)
    assert "never received funds" in str(info.value)


@pytest.mark.parametrize(
    ("funded", "locked", "expected"),
    [
        pytest.param(1_000, 0, (1_000, 1_000), id="all-spendable"),
        pytest.param(1_000, 300, (700, 1_000), id="partly-locked"),
        pytest.param(1_000, 1_000, (0, 1_000), id="all-locked"),
        pytest.param(2**70 + 3, 2**65, (2**70 + 3 - 2**65, 2**70 + 3), id="above-2^64"),
    ],
)
def test_balance_spendable_and_total(
    client: ChainClient, chain: Chain, funded: int, locked: int, expected: tuple[int, int]
) -> None:
    chain.fund(SENDER, funded, locked=locked)

    balance = client.balance(SENDER)

    assert balance == Balance(SENDER, "ngonka", spendable=expected[0], total=expected[1])


def test_balance_of_an_unknown_address_is_zero(client: ChainClient) -> None:
    assert client.balance(STRANGER) == Balance(STRANGER, "ngonka", 0, 0)


def test_balance_of_another_denom_is_zero(client: ChainClient, chain: Chain) -> None:
    chain.fund(SENDER, 1_000)
    assert client.balance(SENDER, denom="uatom") == Balance(SENDER, "uatom", 0, 0)


def test_simulate_returns_gas(client: ChainClient, chain: Chain) -> None:
    chain.fund(SENDER, FUNDS)
    tx_bytes = _simulation()

    gas = client.simulate(tx_bytes)

    assert gas == GAS_BASE + GAS_PER_BYTE * (len(tx_bytes) + 64)


# --- sending ----------------------------------------------------------------------------


def test_send_lands_in_a_block(client: ChainClient, chain: Chain) -> None:
    chain.fund(SENDER, FUNDS)
    gas_limit = txlib.gas_with_adjustment(client.simulate(_simulation()))
    signed = _sign(client, RECIPIENT, 1_500_000_000, gas_limit=gas_limit, memo="rent")
    chain.block_after_polls = 3

    broadcast = client.broadcast(signed.tx_bytes)
    assert broadcast.ok
    assert broadcast.txhash == signed.txhash
    assert (broadcast.code, broadcast.codespace, broadcast.raw_log) == (0, "", "")

    assert client.get_tx(signed.txhash) is None
    with pytest.raises(TxNotFound, match=signed.txhash):
        client.require_tx(signed.txhash)

    result = client.wait_for_tx(signed.txhash, timeout_s=10, poll_s=0.01)

    assert result.ok
    assert result.txhash == signed.txhash
    assert result.height == 101
    assert (result.code, result.codespace, result.raw_log) == (0, "", "")
    assert result.gas_wanted == gas_limit
    assert result.gas_used == GAS_BASE + GAS_PER_BYTE * len(signed.tx_bytes)
    assert result.memo == "rent"
    assert result.fee_ngonka == FEE
    assert result.transfers == (Transfer(SENDER, RECIPIENT, 1_500_000_000, "ngonka"),)
    assert result.other_messages == ()
    assert result.to_dict()["status"] == "success"
    assert result.to_dict()["error"] is None
    assert client.get_tx(signed.txhash) == result
    assert client.get_tx(signed.txhash.lower()) == result

    assert client.balance(SENDER).total == FUNDS - 1_500_000_000 - FEE
    assert client.balance(RECIPIENT).total == 1_500_000_000
    account = client.account(SENDER)
    assert account.sequence == 1
    assert account.pubkey_b64 == base64.b64encode(_key(0).public_key.to_bytes()).decode()


def test_failed_tx_is_reported_with_its_code(client: ChainClient, chain: Chain) -> None:
    chain.fund(SENDER, FUNDS)
    signed = _sign(client, RECIPIENT, 1_000, gas_limit=1_000)

    assert client.broadcast(signed.tx_bytes).ok
    result = client.wait_for_tx(signed.txhash, timeout_s=10, poll_s=0.01)

    assert not result.ok
    assert (result.codespace, result.code) == ("sdk", 11)
    assert "out of gas" in result.raw_log
    assert result.to_dict()["status"] == "failed"
    assert result.to_dict()["error"] == codes.OUT_OF_GAS.advice
    assert client.balance(RECIPIENT).total == 0
    assert client.balance(SENDER).total == FUNDS - FEE


def test_refused_broadcast_carries_the_sdk_code(client: ChainClient, chain: Chain) -> None:
    chain.fund(SENDER, FUNDS)
    signed = _sign(client, RECIPIENT, 1_000, chain_id="gonka-mainnet")

    result = client.broadcast(signed.tx_bytes)

    assert not result.ok
    assert (result.codespace, result.code) == ("sdk", 4)
    assert "signature verification failed" in result.raw_log
    assert result.txhash == signed.txhash


def test_broadcast_below_min_gas_price_is_insufficient_fee(
    client: ChainClient, chain: Chain
) -> None:
    chain.fund(SENDER, FUNDS)
    chain.min_gas_price = Decimal("0.0025")
    cheap = _sign(client, RECIPIENT, 1_000, fee=499, gas_limit=200_000)
    enough = _sign(client, RECIPIENT, 1_000, fee=500, gas_limit=200_000)

    refused = client.broadcast(cheap.tx_bytes)
    accepted = client.broadcast(enough.tx_bytes)

    assert (refused.codespace, refused.code) == ("sdk", 13)
    assert accepted.ok


def test_search_txs(client: ChainClient, chain: Chain) -> None:
    chain.fund(SENDER, FUNDS)
    first = _sign(client, RECIPIENT, 1_000)
    assert client.broadcast(first.tx_bytes).ok
    client.wait_for_tx(first.txhash, timeout_s=10, poll_s=0.01)
    second = _sign(client, OTHER_RECIPIENT, 2_000)
    assert client.broadcast(second.tx_bytes).ok
    client.wait_for_tx(second.txhash, timeout_s=10, poll_s=0.01)

    sent = client.search_txs(f"message.sender='{SENDER}'")
    received = client.search_txs(f"transfer.recipient='{OTHER_RECIPIENT}'")
    newest = client.search_txs(f"message.sender='{SENDER}'", limit=1)

    assert [t.txhash for t in sent] == [second.txhash, first.txhash]
    assert [t.height for t in sent] == [102, 101]
    assert [t.transfers for t in sent] == [
        (Transfer(SENDER, OTHER_RECIPIENT, 2_000, "ngonka"),),
        (Transfer(SENDER, RECIPIENT, 1_000, "ngonka"),),
    ]
    assert [t.txhash for t in received] == [second.txhash]
    assert [t.txhash for t in newest] == [second.txhash]
    assert client.search_txs(f"transfer.recipient='{STRANGER}'") == []


# --- failover ---------------------------------------------------------------------------


def test_failover_past_a_dead_node(server: ChainServer) -> None:
    dead = dead_url()
    with ChainClient(_profile(dead, server.url), timeout_s=5) as chain_client:
        assert chain_client.url == dead

        info = chain_client.node_info()

        assert info.chain_id == "gonka-devnet"
        assert info.url == server.url
        assert chain_client.url == server.url


def test_client_keeps_the_node_that_answered(
    server: ChainServer, start_server: Callable[[Chain], ChainServer]
) -> None:
    """Once it failed over, the client stays on the live node even when the first one recovers."""
    flaky = start_server(Chain(chain_id="gonka-recovered"))
    flaky.mode = "html"
    with ChainClient(_profile(flaky.url, server.url), timeout_s=5) as chain_client:
        assert chain_client.node_info().chain_id == "gonka-devnet"
        flaky.mode = "json"

        assert chain_client.node_info().chain_id == "gonka-devnet"
        assert chain_client.url == server.url


def test_all_nodes_dead_names_every_url() -> None:
    urls = (dead_url(), dead_url())
    with ChainClient(_profile(*urls), timeout_s=5) as chain_client:
        with pytest.raises(NodeUnreachable) as info:
            chain_client.node_info()

    message = str(info.value)
    for url in urls:
        assert f"{url} (connection refused)" in message
    assert "\n" not in message


def test_html_node_is_skipped(
    server: ChainServer, start_server: Callable[[Chain], ChainServer]
) -> None:
    html = start_server(Chain())
    html.mode = "html"
    with ChainClient(_profile(html.url, server.url), timeout_s=5) as chain_client:
        assert chain_client.node_info().url == server.url
        assert chain_client.url == server.url


def test_html_only_is_reported_not_json(server: ChainServer) -> None:
    server.mode = "html"
    dead = dead_url()
    with ChainClient(_profile(server.url, dead), timeout_s=5) as chain_client:
        with pytest.raises(NodeUnreachable) as info:
            chain_client.balance(SENDER)

    message = str(info.value)
    assert f"{server.url} (HTTP 200, not JSON" in message
    assert f"{dead} (connection refused)" in message
    assert "\n" not in message


# --- waiting ----------------------------------------------------------------------------


def test_wait_for_tx_times_out_naming_the_hash(client: ChainClient) -> None:
    with pytest.raises(TxTimeout) as info:
        client.wait_for_tx(UNKNOWN_HASH, timeout_s=0.2, poll_s=0.05)

    assert UNKNOWN_HASH in str(info.value)
    assert "\n" not in str(info.value)


def test_wait_for_tx_times_out_while_every_node_is_down() -> None:
    with ChainClient(_profile(dead_url()), timeout_s=5) as chain_client:
        with pytest.raises(TxTimeout, match=UNKNOWN_HASH):
            chain_client.wait_for_tx(UNKNOWN_HASH, timeout_s=0.2, poll_s=0.05)


def test_wait_for_tx_survives_a_node_outage(
    chain: Chain,
    start_server: Callable[[Chain], ChainServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first node goes away mid-wait; a second node of the same chain then answers."""
    first = start_server(chain)
    second = start_server(chain)
    second.mode = "html"
    chain.fund(SENDER, FUNDS)
    events: list[str] = []

    def between_polls(seconds: float) -> None:
        if not events:
            first.stop()
            events.append("first node stopped")
        elif len(events) == 1:
            second.mode = "json"
            events.append("second node serves JSON")
        time.sleep(seconds)

    with ChainClient(_profile(first.url, second.url), timeout_s=5) as chain_client:
        signed = _sign(chain_client, RECIPIENT, 1_000)
        assert chain_client.broadcast(signed.tx_bytes).ok
        chain.block_after_polls = 2

        with caplog.at_level(logging.WARNING, logger="gonka_cli.chain.client"):
            result = chain_client.wait_for_tx(
                signed.txhash, timeout_s=30, poll_s=0.01, sleep=between_polls
            )

        assert result.ok
        assert result.txhash == signed.txhash
        assert chain_client.url == second.url
    assert events == ["first node stopped", "second node serves JSON"]
    assert any(
        r.levelno == logging.WARNING and signed.txhash in r.getMessage() for r in caplog.records
    )


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "codespace", "code", "shown"),
    [
        pytest.param(
            "rpc error: code = Unknown desc = 10ngonka is smaller than 20ngonka: insufficient "
            "funds [cosmos/cosmos-sdk@v0.50.11/x/bank/keeper/send.go:278]",
            "sdk",
            5,
            "insufficient funds",
            id="insufficient-funds",
        ),
        pytest.param(
            "rpc error: code = Unknown desc = account sequence mismatch, expected 5, got 4: "
            "incorrect account sequence",
            "sdk",
            32,
            "expected 5, got 4",
            id="wrong-sequence",
        ),
        pytest.param(
            "rpc error: code = Unknown desc = transfer restricted during bootstrap period",
            "restrictions",
            1108,
            "restricted",
            id="transfer-restricted",
        ),
    ],
)
def test_simulate_error_with_a_known_code(
    client: ChainClient, chain: Chain, message: str, codespace: str, code: int, shown: str
) -> None:
    chain.forced_simulate.append((400, message))

    with pytest.raises(TxError) as info:
        client.simulate(_simulation())

    assert (info.value.codespace, info.value.code) == (codespace, code)
    assert shown in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        pytest.param(400, "rpc error: code = Unknown desc = panic in module", id="http-400"),
        pytest.param(500, "internal error: the node is on fire\nstack trace", id="http-500"),
    ],
)
def test_simulate_error_without_a_code(
    client: ChainClient, chain: Chain, status: int, message: str
) -> None:
    chain.forced_simulate.append((status, message))

    with pytest.raises(ChainError) as info:
        client.simulate(_simulation())

    assert not isinstance(info.value, TxError)
    assert message.splitlines()[0] in str(info.value)
    assert "\n" not in str(info.value)


def test_simulate_of_an_unfunded_signer(client: ChainClient) -> None:
    with pytest.raises(TxError) as info:
        client.simulate(_simulation(key_index=3))

    assert (info.value.codespace, info.value.code) == ("sdk", 5)


def test_simulate_with_a_stale_sequence(client: ChainClient, chain: Chain) -> None:
    chain.fund(SENDER, FUNDS)

    with pytest.raises(TxError) as info:
        client.simulate(_simulation(sequence=3))

    assert (info.value.codespace, info.value.code) == ("sdk", 32)
    assert "expected 0, got 3" in str(info.value)


def test_simulate_during_transfer_restrictions(client: ChainClient, chain: Chain) -> None:
    chain.fund(SENDER, FUNDS)
    chain.restrict_transfers = True

    with pytest.raises(TxError) as info:
        client.simulate(_simulation())

    assert (info.value.codespace, info.value.code) == ("restrictions", 1108)


def test_broadcast_http_400_is_a_chain_error(
    client: ChainClient, chain: Chain, server: ChainServer
) -> None:
    chain.fund(SENDER, FUNDS)
    signed = _sign(client, RECIPIENT, 1_000)

    with pytest.raises(ChainError) as info:
        client.broadcast(signed.tx_bytes, mode="BROADCAST_MODE_BLOCK")

    message = str(info.value)
    assert not isinstance(info.value, TxError)
    assert "HTTP 400" in message
    assert "unsupported broadcast mode" in message
    assert server.url in message
    assert chain.mempool == []
