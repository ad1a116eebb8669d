"""The REST client against a real local node served over HTTP on 127.0.0.1.

Tests that change nothing on chain share one node per module (a node takes 0.2 s to stop);
tests that move funds get a node of their own. The stand-in REST server
(`tests/chain_server.py`) serves only what the real node cannot produce on demand: forced
simulate answers, an HTML gateway page and locked (vesting) funds.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest

from gonka_cli import __version__
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
from gonka_cli.node.genesis import ChainParams, init_home
from gonka_cli.node.runner import Node
from gonka_cli.settings import NetworkProfile
from tests.chain_server import Chain, ChainServer
from tests.conftest import MNEMONIC, TEST_BLOCK_TIME_S, StartNode, dead_url
from tests.conftest import node_ledger as ledger
from tests.conftest import node_url as url

FUNDS = 10 * 10**9
FEE = 5_000
UNKNOWN_HASH = "AB" * 32
#: A balance above 2^64 ngonka (a cosmos Int is 256 bits).
HUGE = 2**70 + 3


@cache
def _key(index: int) -> PrivateKey:
    return derive_private_key(MNEMONIC, HDPath.bip44(index=index))


def _address(index: int) -> str:
    return address_from_pubkey(_key(index).public_key.to_bytes())


SENDER = _address(0)
RECIPIENT = _address(1)
OTHER_RECIPIENT = _address(2)
STRANGER = _address(3)
RICH = _address(4)


def _profile(*urls: str, chain_id: str = "gonka-devnet") -> NetworkProfile:
    return NetworkProfile(name="test", chain_id=chain_id, rest_urls=urls)


def _state(node: Node) -> tuple[object, ...]:
    """What any accepted transaction changes: transactions, mempool, accounts, the sender."""
    status = ledger(node).status()
    return status.txs, status.mempool_txs, status.accounts, ledger(node).account(SENDER)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_node(start_module_node: StartNode) -> Node:
    """One node for the tests that change nothing on chain: SENDER and RICH are funded."""
    return start_module_node([(SENDER, FUNDS), (RICH, HUGE)], name="shared-node")


@pytest.fixture
def node(shared_node: Node) -> Iterator[Node]:
    """The shared node; the test must leave its state as it was."""
    before = _state(shared_node)
    yield shared_node
    assert _state(shared_node) == before, "a test on the shared node changed its state"


@pytest.fixture
def client(node: Node) -> Iterator[ChainClient]:
    with ChainClient(_profile(url(node)), timeout_s=5) as chain_client:
        yield chain_client


@pytest.fixture
def stand_in_client(server: ChainServer) -> Iterator[ChainClient]:
    """A client of the stand-in REST server (`chain` fixture), for answers forced there."""
    with ChainClient(_profile(server.url), timeout_s=5) as chain_client:
        yield chain_client


@pytest.fixture
def funded(start_node: StartNode) -> Callable[..., Node]:
    """A node of the test's own, SENDER holding FUNDS; keywords are chain parameters."""

    def start(**params: object) -> Node:
        return start_node(accounts=[(SENDER, FUNDS)], **params)

    return start


@pytest.fixture
def start_server() -> Iterator[Callable[[Chain], ChainServer]]:
    """Start extra stand-in servers, all stopped at the end (stopping one twice is harmless)."""
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


def test_node_info(client: ChainClient, node: Node) -> None:
    info = client.node_info()

    assert info.chain_id == "gonka-devnet"
    assert info.url == url(node)
    assert info.moniker == "gonka-devnet-node"
    assert info.version == __version__


def test_node_info_reports_the_nodes_chain_id(start_node: StartNode, tmp_path: Path) -> None:
    root = tmp_path / "testnet"
    init_home(root, chain_id="gonka-testnet", params=ChainParams(block_time_s=TEST_BLOCK_TIME_S))
    other = start_node(home=root)

    with ChainClient(_profile(url(other))) as chain_client:
        assert chain_client.node_info().chain_id == "gonka-testnet"


def test_account_of_a_funded_address(client: ChainClient, node: Node) -> None:
    on_node = ledger(node).account(SENDER)
    assert on_node is not None

    account = client.account(SENDER)

    assert account.address == SENDER
    assert account.account_number == on_node.number
    assert account.sequence == 0
    assert account.pubkey_b64 is None
    assert account.to_dict() == {
        "address": SENDER,
        "account_number": str(on_node.number),
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
    ("address", "amount"),
    [pytest.param(SENDER, FUNDS, id="all-spendable"), pytest.param(RICH, HUGE, id="above-2^64")],
)
def test_balance_spendable_and_total(client: ChainClient, address: str, amount: int) -> None:
    balance = client.balance(address)

    assert balance == Balance(address, "ngonka", spendable=amount, total=amount)


@pytest.mark.parametrize(
    ("funded", "locked", "expected"),
    [
        pytest.param(1_000, 300, (700, 1_000), id="partly-locked"),
        pytest.param(1_000, 1_000, (0, 1_000), id="all-locked"),
        pytest.param(HUGE, 2**65, (HUGE - 2**65, HUGE), id="above-2^64"),
    ],
)
def test_balance_of_locked_funds(
    stand_in_client: ChainClient,
    chain: Chain,
    funded: int,
    locked: int,
    expected: tuple[int, int],
) -> None:
    # The local node has no vesting: locked funds exist only on the stand-in.
    chain.fund(SENDER, funded, locked=locked)

    balance = stand_in_client.balance(SENDER)

    assert balance == Balance(SENDER, "ngonka", spendable=expected[0], total=expected[1])


def test_balance_of_an_unknown_address_is_zero(client: ChainClient) -> None:
    assert client.balance(STRANGER) == Balance(STRANGER, "ngonka", 0, 0)


def test_balance_of_another_denom_is_zero(client: ChainClient) -> None:
    assert client.balance(SENDER, denom="uatom") == Balance(SENDER, "uatom", 0, 0)


def test_simulate_returns_gas(client: ChainClient, node: Node) -> None:
    tx_bytes = _simulation()

    gas = client.simulate(tx_bytes)

    # The size once signed: the simulation's empty signature becomes 64 bytes.
    assert gas == ledger(node).gas_for(len(tx_bytes) + 64, 1, 1)


# --- sending ----------------------------------------------------------------------------


def test_send_lands_in_a_block(funded: Callable[..., Node]) -> None:
    # No block comes on its own: the test makes it, once the client is polling.
    node = funded(block_time_s=3600)
    with ChainClient(_profile(url(node)), timeout_s=5) as client:
        gas_limit = txlib.gas_with_adjustment(client.simulate(_simulation()))
        signed = _sign(client, RECIPIENT, 1_500_000_000, gas_limit=gas_limit, memo="rent")

        broadcast = client.broadcast(signed.tx_bytes)
        assert broadcast.ok
        assert broadcast.txhash == signed.txhash
        assert (broadcast.code, broadcast.codespace, broadcast.raw_log) == (0, "", "")

        assert client.get_tx(signed.txhash) is None
        with pytest.raises(TxNotFound, match=signed.txhash):
            client.require_tx(signed.txhash)

        block = threading.Timer(0.05, ledger(node).make_block)
        block.start()
        result = client.wait_for_tx(signed.txhash, timeout_s=10, poll_s=0.01)
        block.join()

        assert result.ok
        assert result.txhash == signed.txhash
        assert result.height == ledger(node).height == 1
        assert (result.code, result.codespace, result.raw_log) == (0, "", "")
        assert result.gas_wanted == gas_limit
        assert result.gas_used == ledger(node).gas_for(len(signed.tx_bytes), 1, 1)
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


def test_failed_tx_is_reported_with_its_code(funded: Callable[..., Node]) -> None:
    node = funded()
    with ChainClient(_profile(url(node)), timeout_s=5) as client:
        # Enough gas for the size and signature (CheckTx passes), not for the message.
        signed = _sign(client, RECIPIENT, 1_000, gas_limit=20_000)

        assert client.broadcast(signed.tx_bytes).ok
        result = client.wait_for_tx(signed.txhash, timeout_s=10, poll_s=0.01)

        assert not result.ok
        assert (result.codespace, result.code) == ("sdk", 11)
        assert result.raw_log == (
            f"out of gas in location: WriteFlat; gasWanted: 20000, gasUsed: {result.gas_used}: "
            "out of gas"
        )
        assert result.gas_used > result.gas_wanted == 20_000
        assert result.to_dict()["status"] == "failed"
        assert result.to_dict()["error"] == codes.OUT_OF_GAS.advice
        assert client.balance(RECIPIENT).total == 0
        assert client.balance(SENDER).total == FUNDS - FEE


def test_refused_broadcast_carries_the_sdk_code(client: ChainClient, node: Node) -> None:
    signed = _sign(client, RECIPIENT, 1_000, chain_id="gonka-mainnet")
    number = client.account(SENDER).account_number

    result = client.broadcast(signed.tx_bytes)

    assert not result.ok
    assert (result.codespace, result.code) == ("sdk", 4)
    assert result.raw_log == (
        f"signature verification failed; please verify account number ({number}) and chain-id "
        "(gonka-devnet): unauthorized"
    )
    assert result.txhash == signed.txhash


@pytest.mark.parametrize(
    "memo",
    ["x" * 257, "é" * 129],
    ids=["257-ascii-characters", "129-characters-of-258-utf8-bytes"],
)
def test_a_memo_over_256_bytes_is_refused(funded: Callable[..., Node], memo: str) -> None:
    # The wallet never signs such a memo; this is the node's own check.
    node = funded()
    with ChainClient(_profile(url(node)), timeout_s=5) as client:
        signed = _sign(client, RECIPIENT, 1_000, memo=memo)

        result = client.broadcast(signed.tx_bytes)

    assert (result.codespace, result.code) == ("sdk", 12)
    assert result.raw_log == (
        f"maximum number of characters is 256 but received {len(memo.encode())} characters: "
        "memo too large"
    )
    assert ledger(node).status().mempool_txs == 0


def test_broadcast_below_min_gas_price_is_insufficient_fee(funded: Callable[..., Node]) -> None:
    node = funded(min_gas_price="0.0025")
    with ChainClient(_profile(url(node)), timeout_s=5) as client:
        cheap = _sign(client, RECIPIENT, 1_000, fee=499, gas_limit=200_000)
        enough = _sign(client, RECIPIENT, 1_000, fee=500, gas_limit=200_000)

        refused = client.broadcast(cheap.tx_bytes)
        accepted = client.broadcast(enough.tx_bytes)

    assert (refused.codespace, refused.code) == ("sdk", 13)
    assert refused.raw_log == (
        "insufficient fees; got: 499ngonka required: 500ngonka: insufficient fee"
    )
    assert accepted.ok


def test_search_txs(funded: Callable[..., Node]) -> None:
    node = funded()
    with ChainClient(_profile(url(node)), timeout_s=5) as client:
        first = _sign(client, RECIPIENT, 1_000)
        assert client.broadcast(first.tx_bytes).ok
        client.wait_for_tx(first.txhash, timeout_s=10, poll_s=0.01)
        second = _sign(client, OTHER_RECIPIENT, 2_000)
        assert client.broadcast(second.tx_bytes).ok
        client.wait_for_tx(second.txhash, timeout_s=10, poll_s=0.01)

        sent = client.search_txs(f"message.sender='{SENDER}'")
        received = client.search_txs(f"transfer.recipient='{OTHER_RECIPIENT}'")
        newest = client.search_txs(f"message.sender='{SENDER}'", limit=1)
        nothing = client.search_txs(f"transfer.recipient='{STRANGER}'")

    heights = [ledger(node).tx(s.txhash) for s in (second, first)]
    assert [t.txhash for t in sent] == [second.txhash, first.txhash]
    assert [t.height for t in sent] == [r.height for r in heights if r is not None]
    assert sent[0].height > sent[1].height
    assert [t.transfers for t in sent] == [
        (Transfer(SENDER, OTHER_RECIPIENT, 2_000, "ngonka"),),
        (Transfer(SENDER, RECIPIENT, 1_000, "ngonka"),),
    ]
    assert [t.txhash for t in received] == [second.txhash]
    assert [t.txhash for t in newest] == [second.txhash]
    assert nothing == []


# --- failover ---------------------------------------------------------------------------


def test_failover_past_a_dead_node(node: Node) -> None:
    dead = dead_url()
    with ChainClient(_profile(dead, url(node)), timeout_s=5) as chain_client:
        assert chain_client.url == dead

        info = chain_client.node_info()

        assert info.chain_id == "gonka-devnet"
        assert info.url == url(node)
        assert chain_client.url == url(node)


def test_client_keeps_the_node_that_answered(
    node: Node, start_server: Callable[[Chain], ChainServer]
) -> None:
    """Once it failed over, the client stays on the live node even when the first one recovers."""
    # The stand-in: a gateway page first, then a node of another chain.
    flaky = start_server(Chain(chain_id="gonka-recovered"))
    flaky.mode = "html"
    with ChainClient(_profile(flaky.url, url(node)), timeout_s=5) as chain_client:
        assert chain_client.node_info().chain_id == "gonka-devnet"
        flaky.mode = "json"

        assert chain_client.node_info().chain_id == "gonka-devnet"
        assert chain_client.url == url(node)


def test_all_nodes_dead_names_every_url() -> None:
    urls = (dead_url(), dead_url())
    with ChainClient(_profile(*urls), timeout_s=5) as chain_client:
        with pytest.raises(NodeUnreachable) as info:
            chain_client.node_info()

    message = str(info.value)
    for dead in urls:
        assert f"{dead} (connection refused)" in message
    assert "\n" not in message


def test_html_node_is_skipped(node: Node, server: ChainServer) -> None:
    server.mode = "html"  # the stand-in as a gateway page
    with ChainClient(_profile(server.url, url(node)), timeout_s=5) as chain_client:
        assert chain_client.node_info().url == url(node)
        assert chain_client.url == url(node)


def test_html_only_is_reported_not_json(server: ChainServer) -> None:
    server.mode = "html"  # the stand-in as a gateway page
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
    funded: Callable[..., Node],
    server: ChainServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first node goes away mid-wait; a gateway page answers at the second address until
    the same chain is back there."""
    # No block comes on its own: the transaction waits in the first node's mempool.
    first = funded(block_time_s=3600)
    server.mode = "html"  # the stand-in as a gateway page
    second_url, port = server.url, server.server_address[1]
    events: list[str] = []
    restarted: list[Node] = []

    def between_polls(seconds: float) -> None:
        if not events:
            first.stop()  # a last block applies the mempool
            events.append("first node stopped")
        elif len(events) == 1:
            server.stop()
            restarted.append(Node(first.home_path, port=port))
            restarted[0].start()
            events.append("second node serves JSON")
        time.sleep(seconds)

    try:
        with ChainClient(_profile(url(first), second_url), timeout_s=5) as chain_client:
            signed = _sign(chain_client, RECIPIENT, 1_000)
            assert chain_client.broadcast(signed.tx_bytes).ok

            with caplog.at_level(logging.WARNING, logger="gonka_cli.chain.client"):
                result = chain_client.wait_for_tx(
                    signed.txhash, timeout_s=30, poll_s=0.01, sleep=between_polls
                )

            assert result.ok
            assert result.txhash == signed.txhash
            assert chain_client.url == second_url
    finally:
        for again in restarted:
            again.stop()
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
    stand_in_client: ChainClient,
    chain: Chain,
    message: str,
    codespace: str,
    code: int,
    shown: str,
) -> None:
    # Forced (stand-in): mainnet's wording, with a source location the local node never adds.
    chain.forced_simulate.append((400, message))

    with pytest.raises(TxError) as info:
        stand_in_client.simulate(_simulation())

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
    stand_in_client: ChainClient, chain: Chain, status: int, message: str
) -> None:
    # Forced (stand-in): a node failing in ways the local node does not.
    chain.forced_simulate.append((status, message))

    with pytest.raises(ChainError) as info:
        stand_in_client.simulate(_simulation())

    assert not isinstance(info.value, TxError)
    assert message.splitlines()[0] in str(info.value)
    assert "\n" not in str(info.value)


def test_simulate_of_an_unfunded_signer(client: ChainClient) -> None:
    with pytest.raises(TxError) as info:
        client.simulate(_simulation(key_index=3))

    # The SDK's answer: code 9 (unknown address), with the wallet's sentence for it.
    assert (info.value.codespace, info.value.code) == ("sdk", 9)
    assert str(info.value).startswith(
        "the chain has no account for the sender: it has never received funds"
    )


def test_simulate_with_a_stale_sequence(client: ChainClient) -> None:
    with pytest.raises(TxError) as info:
        client.simulate(_simulation(sequence=3))

    assert (info.value.codespace, info.value.code) == ("sdk", 32)
    assert "expected 0, got 3" in str(info.value)


def test_simulate_during_transfer_restrictions(funded: Callable[..., Node]) -> None:
    node = funded(transfer_restriction_end_height=10**9)
    with ChainClient(_profile(url(node)), timeout_s=5) as client:
        with pytest.raises(TxError) as info:
            client.simulate(_simulation())

    assert (info.value.codespace, info.value.code) == ("restrictions", 1108)
    assert str(info.value) == codes.TRANSFER_RESTRICTED.advice


def test_broadcast_http_400_is_a_chain_error(client: ChainClient, node: Node) -> None:
    signed = _sign(client, RECIPIENT, 1_000)

    with pytest.raises(ChainError) as info:
        client.broadcast(signed.tx_bytes, mode="BROADCAST_MODE_BLOCK")

    assert not isinstance(info.value, TxError)
    assert str(info.value) == (
        f"node {url(node)} refused the broadcast (HTTP 400): BROADCAST_MODE_BLOCK was removed "
        "in SDK v0.47: use SYNC and poll"
    )
    assert ledger(node).status().mempool_txs == 0
