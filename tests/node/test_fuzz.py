"""Fuzzing the node's transaction endpoints over HTTP with hypothesis.

Two streams of input reach `POST /cosmos/tx/v1beta1/txs` and `/simulate`:

- random bytes, random TxRaw framing, random HTTP bodies, and mutations (bit flips,
  truncation, insertion, replacement, deletion) of a valid signed transfer;
- transactions correctly signed over random field values (addresses, coins, memo, fee, gas,
  sequence, account number, chain id), which reach the checks behind the signature.

Every answer must be HTTP 200 with a `tx_response` (or gas info) or a 4xx JSON error, never a
5xx. After each example the test makes a block and checks the money: balances move only for a
transaction the node accepted (code 0), and then exactly as its decoded content says; the
total supply never changes.

One node serves all examples of a test function. The strategies include the inputs that
once broke the node and now have their own tests in test_api.py (amounts of thousands of
digits, non-canonical forms of valid addresses), so that this stays a regression guard.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from google.protobuf import any_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gonka_cli.chain import tx as txlib
from gonka_cli.chain.amount import DENOM
from gonka_cli.crypto import address as addr
from gonka_cli.errors import InputError
from gonka_cli.node.ledger import FEE_COLLECTOR_ADDRESS, Ledger
from gonka_cli.node.runner import Node
from tests.conftest import StartNode
from tests.node.helpers import (
    SIMULATE,
    TXS,
    Account,
    Api,
    account,
    assert_error,
    b64,
    send_any,
    sign_messages,
    transfer,
)

ALICE = account("fuzz-alice")
BOB = account("fuzz-bob")
CAROL = account("fuzz-carol")  # never funded: sends to it create its account
GENESIS = [(ALICE.address, 10**15), (BOB.address, 10**12)]
MIN_GAS_PRICE = "0.1"
GAS_LIMIT = 100_000
FEE = 10_000  # GAS_LIMIT x MIN_GAS_PRICE
CHAIN_ID = "gonka-devnet"

FUZZ_SETTINGS = settings(
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def fuzz_api(start_node: StartNode) -> Api:
    """One node for every example; blocks only when the test makes them."""
    return Api(start_node(accounts=GENESIS, min_gas_price=MIN_GAS_PRICE, block_time_s=3600))


def _ledger(node: Node) -> Ledger:
    assert node.ledger is not None
    return node.ledger


def _balances(node: Node) -> dict[str, int]:
    return {a.address: a.balance for a in _ledger(node).accounts.values() if a.balance}


def _check_answer(resp: requests.Response, tx_bytes: bytes | None, *, simulate: bool) -> int:
    """The answer is 200 with a result or a 4xx JSON error; the tx code (-1 for an error)."""
    assert resp.status_code < 500, (resp.status_code, resp.text)
    if resp.status_code != 200:
        assert 400 <= resp.status_code < 500
        assert_error(resp, resp.status_code)
        return -1
    data = resp.json()
    if simulate:
        assert int(data["gas_info"]["gas_used"]) > 0, data
        return 0
    result = data["tx_response"]
    assert isinstance(result["code"], int), result
    if tx_bytes is not None:
        assert result["txhash"] == txlib.tx_hash(tx_bytes)
    assert (result["code"] == 0) == (result["codespace"] == ""), result
    code: int = result["code"]
    return code


def _expected_balances(
    before: dict[str, int], tx_bytes: bytes, delivered_code: int
) -> dict[str, int]:
    """Balances after an accepted transaction, from what it says (every coin is ngonka)."""
    decoded = txlib.decode_tx(tx_bytes)
    (signer_info,) = decoded.signers
    assert signer_info.pubkey is not None
    signer = addr.address_from_pubkey(signer_info.pubkey.to_bytes())
    fee = sum(c.amount for c in decoded.fee.amount if c.denom == DENOM)
    expected = dict(before)
    expected[signer] = expected.get(signer, 0) - fee
    expected[FEE_COLLECTOR_ADDRESS] = expected.get(FEE_COLLECTOR_ADDRESS, 0) + fee
    if delivered_code == 0:
        for msg in decoded.messages:
            assert isinstance(msg, txlib.MsgSend)
            # A non-canonical form of an address is credited to the account it names.
            recipient = addr.normalize(msg.to_address, "gonka")
            for coin in msg.amount:
                assert coin.denom == DENOM
                expected[signer] -= coin.amount
                expected[recipient] = expected.get(recipient, 0) + coin.amount
    return {k: v for k, v in expected.items() if v}


def _exchange(api: Api, tx_bytes: bytes, genesis_supply: int) -> int:
    """Simulate and broadcast `tx_bytes`, make a block, check the money; the CheckTx code."""
    node = api.node
    before = _balances(node)
    body = {"tx_bytes": b64(tx_bytes)}
    _check_answer(api.post(SIMULATE, body), tx_bytes, simulate=True)
    code = _check_answer(api.post(TXS, body), tx_bytes, simulate=False)
    _ledger(node).make_block()
    after = _balances(node)
    assert all(v > 0 for v in after.values()), after
    if code == 0:
        delivered = api.wait_tx(txlib.tx_hash(tx_bytes))["tx_response"]
        # Enough gas for the ante handler but not the message: fee charged, nothing sent.
        assert delivered["code"] in (0, 11), delivered
        assert after == _expected_balances(before, tx_bytes, delivered["code"])
    else:
        assert after == before
        if tx_bytes and code != 19:  # 19: these very bytes were accepted earlier
            assert api.get(f"{TXS}/{txlib.tx_hash(tx_bytes)}").status_code == 404
    assert sum(after.values()) == genesis_supply
    assert _ledger(node).total_supply() == genesis_supply
    assert api.supply() == genesis_supply
    return code


def _genesis_supply(api: Api) -> int:
    return int(_ledger(api.node).genesis.total_supply)


# --- random bytes and mutations of a valid transaction ----------------------------------

MUTATION = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "replace", "delete"]),
    st.integers(min_value=0, max_value=1 << 16),
    st.binary(min_size=1, max_size=8),
)

INPUTS = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=400)),
    st.tuples(
        st.just("txraw"),
        st.builds(
            txlib.encode_tx_raw,
            st.binary(max_size=120),
            st.binary(max_size=120),
            st.lists(st.binary(max_size=70), max_size=3),
        ),
    ),
    st.tuples(st.just("body"), st.binary(max_size=200)),
    st.tuples(st.just("mutant"), st.lists(MUTATION, min_size=1, max_size=4)),
    st.tuples(st.just("valid"), st.none()),
)


def mutate(data: bytes, mutations: list[tuple[str, int, bytes]]) -> bytes:
    for op, position, payload in mutations:
        i = position % (len(data) + 1)
        if op == "flip" and data:
            j = position % len(data)
            data = data[:j] + bytes([data[j] ^ (1 << (payload[0] % 8))]) + data[j + 1 :]
        elif op == "truncate":
            data = data[:i]
        elif op == "insert":
            data = data[:i] + payload + data[i:]
        elif op == "replace":
            data = data[:i] + payload + data[i + len(payload) :]
        elif op == "delete":
            data = data[:i] + data[i + len(payload) :]
    return data


@FUZZ_SETTINGS
@given(case=INPUTS, amount=st.integers(min_value=1, max_value=10**6))
def test_fuzz_random_and_mutated_transactions(
    fuzz_api: Api, case: tuple[str, Any], amount: int
) -> None:
    kind, value = case
    supply = _genesis_supply(fuzz_api)
    if kind == "body":  # not even JSON, most of the time
        for path in (TXS, SIMULATE):
            _check_answer(fuzz_api.post(path, data=value), None, simulate=path == SIMULATE)
        assert fuzz_api.supply() == supply
        return
    if kind in ("bytes", "txraw"):
        tx_bytes = value
    else:
        signed = transfer(
            fuzz_api.node, ALICE, BOB.address, amount, gas_limit=GAS_LIMIT, fee_ngonka=FEE
        )
        tx_bytes = signed.tx_bytes if kind == "valid" else mutate(signed.tx_bytes, value)
    code = _exchange(fuzz_api, tx_bytes, supply)
    if kind == "valid":
        assert code == 0


# --- correctly signed transactions with random fields -----------------------------------

SIGNERS = st.sampled_from([ALICE, BOB, account("fuzz-unfunded")])
KNOWN_ADDRESSES = [ALICE.address, BOB.address, CAROL.address, FEE_COLLECTOR_ADDRESS]
ADDRESSES = st.one_of(
    st.sampled_from(KNOWN_ADDRESSES),
    # Non-canonical forms of valid addresses: upper case, surrounding white space.
    st.builds(
        lambda a, form: form(a),
        st.sampled_from(KNOWN_ADDRESSES),
        st.sampled_from([str.upper, lambda a: f" {a}", lambda a: f"{a}\n"]),
    ),
    st.just(addr.encode("cosmos", b"\x07" * 20)),
    st.just(addr.encode("gonka", b"\x07" * 12)),
    st.text(max_size=50),
)
AMOUNTS = st.one_of(
    st.integers(min_value=0, max_value=10**16).map(str),
    st.integers(min_value=10**16, max_value=10**80).map(str),
    st.from_regex(r"\A[-+]?[0-9]{0,30}\Z"),
    st.text(max_size=20),
    st.integers(min_value=1000, max_value=5000).map(lambda n: "9" * n),  # thousands of digits
)
DENOMS = st.one_of(st.sampled_from([DENOM, DENOM, "uatom", "x", "ngonka/x"]), st.text(max_size=12))
COINS = st.lists(st.tuples(DENOMS, AMOUNTS), max_size=3)


#: The fields a signed transaction may get wrong; each example breaks a few of them (often
#: none), so that most transactions get past the first check.
FIELDS = (
    "messages",
    "from",
    "to",
    "coins",
    "chain_id",
    "account_number",
    "sequence",
    "gas",
    "fee",
    "fee_denom",
    "memo",
    "timeout_height",
)


@st.composite
def messages(draw: st.DrawFn, sender: Account, broken: set[str]) -> list[any_pb2.Any]:
    count = draw(st.integers(min_value=0, max_value=3)) if "messages" in broken else 1
    result = []
    for _ in range(count):
        if "messages" in broken and draw(st.booleans()):
            type_url = draw(st.sampled_from(["/cosmos.staking.v1beta1.MsgDelegate", ""]))
            result.append(any_pb2.Any(type_url=type_url, value=draw(st.binary(max_size=40))))
            continue
        from_address = draw(ADDRESSES) if "from" in broken else sender.address
        to_address = draw(ADDRESSES if "to" in broken else st.sampled_from(KNOWN_ADDRESSES))
        amount = str(draw(st.integers(min_value=1, max_value=10**6)))
        coins = draw(COINS) if "coins" in broken else [(DENOM, amount)]
        result.append(send_any(from_address, to_address, coins))
    return result


@st.composite
def signed_txs(draw: st.DrawFn, api: Api) -> bytes:
    broken = draw(st.sets(st.sampled_from(FIELDS), max_size=3))
    sender: Account = draw(SIGNERS)
    state = _ledger(api.node).account(sender.address)
    sequence = state.sequence if state else 0
    number = state.number if state else 0
    if "sequence" in broken:
        sequence = max(0, sequence + draw(st.sampled_from([1, -1, 2**32])))
    if "account_number" in broken:
        number += draw(st.integers(min_value=1, max_value=2**32))
    gas_limit = GAS_LIMIT
    if "gas" in broken:
        gas_limit = draw(st.sampled_from([0, 15_000, 40_000, 2**64 - 1]))
    fee = txlib.fee_for_gas(gas_limit, MIN_GAS_PRICE)
    if "fee" in broken:
        fee = max(0, fee + draw(st.sampled_from([-1, 7, 10**20, -fee])))
    signed = sign_messages(
        sender,
        draw(messages(sender, broken)),
        chain_id=draw(st.text(max_size=20)) if "chain_id" in broken else CHAIN_ID,
        account_number=number,
        sequence=sequence,
        fee_ngonka=fee,
        fee_denom=draw(DENOMS) if "fee_denom" in broken else DENOM,
        gas_limit=gas_limit,
        memo=draw(st.text(max_size=300)) if "memo" in broken else "",
        timeout_height=draw(st.sampled_from([1, 10**6])) if "timeout_height" in broken else 0,
    )
    return signed.tx_bytes


@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzz_signed_transactions_with_random_fields(fuzz_api: Api, data: st.DataObject) -> None:
    tx_bytes = data.draw(signed_txs(fuzz_api))
    try:
        decoded = txlib.decode_tx(tx_bytes)
    except (InputError, ValueError):
        decoded = None
    code = _exchange(fuzz_api, tx_bytes, _genesis_supply(fuzz_api))
    if code == 0:  # accepted: it must have been a well-formed transfer
        assert decoded is not None and decoded.messages
