"""Cosmos SDK error codes: what the chain answers, and what to tell the user.

A node refuses or fails a transaction with a (codespace, code) pair and a `raw_log` such as
"account sequence mismatch, expected 5, got 4: incorrect account sequence". The SDK's own text
for each code (`name`) ends that log; `advice` is our one sentence for the user. The local
network node uses the same table to answer with the SDK's wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    codespace: str
    code: int
    #: The SDK's registered description (cosmos-sdk types/errors/errors.go).
    name: str
    #: What happened and what to do, for the user.
    advice: str


_CODES = [
    ErrorCode(
        "sdk",
        2,
        "tx parse error",
        "the node could not decode the transaction; nothing was sent — sign it again "
        "with this version of gonka",
    ),
    ErrorCode(
        "sdk", 3, "invalid sequence", "the transaction's sequence is invalid; run the command again"
    ),
    ErrorCode(
        "sdk",
        4,
        "unauthorized",
        "signature verification failed: the transaction was signed for another chain id "
        "or account number, or with another key; check --chain-id and --account-number",
    ),
    ErrorCode(
        "sdk",
        5,
        "insufficient funds",
        "insufficient funds: the balance does not cover the amount plus the fee; check "
        "`gonka wallet balance`",
    ),
    ErrorCode(
        "sdk",
        7,
        "invalid address",
        "the node rejected an address in the transaction; check the recipient",
    ),
    ErrorCode("sdk", 8, "invalid pubkey", "the node rejected the signer's public key"),
    ErrorCode(
        "sdk",
        9,
        "unknown address",
        "the chain has no account for the sender: it has never received funds; send it some "
        "GNK first",
    ),
    ErrorCode(
        "sdk",
        10,
        "invalid coins",
        "the node rejected the amount or fee coins; only ngonka amounts above zero are valid",
    ),
    ErrorCode(
        "sdk",
        11,
        "out of gas",
        "out of gas: the gas limit was too low; retry with --gas auto or a higher --gas",
    ),
    ErrorCode("sdk", 12, "memo too large", "the memo is too long for this chain; shorten --memo"),
    ErrorCode(
        "sdk",
        13,
        "insufficient fee",
        "insufficient fee: this node's minimum gas price needs a higher fee; retry with a "
        "larger --fee",
    ),
    ErrorCode("sdk", 18, "invalid request", "the node rejected the request as invalid"),
    ErrorCode(
        "sdk",
        19,
        "tx already in mempool",
        "this transaction is already in the node's mempool; follow it with `gonka wallet tx HASH`",
    ),
    ErrorCode(
        "sdk",
        20,
        "mempool is full",
        "the node's mempool is full; try again in a minute or use another --node",
    ),
    ErrorCode("sdk", 21, "tx too large", "the transaction is too large; shorten the memo"),
    ErrorCode(
        "sdk", 30, "tx timeout height", "the transaction's timeout height has passed; sign it again"
    ),
    ErrorCode(
        "sdk",
        32,
        "incorrect account sequence",
        "account sequence mismatch: another transaction from this account was signed "
        "meanwhile; run the command again (offline: use the sequence the node expects)",
    ),
    ErrorCode(
        "restrictions",
        1108,
        "transfer restricted during bootstrap period",
        "transfers between accounts are still restricted on this network (bootstrap "
        "period); try again after the restriction ends",
    ),
]

CODES: dict[tuple[str, int], ErrorCode] = {(c.codespace, c.code): c for c in _CODES}

TX_PARSE_ERROR = CODES[("sdk", 2)]
UNAUTHORIZED = CODES[("sdk", 4)]
INSUFFICIENT_FUNDS = CODES[("sdk", 5)]
INVALID_ADDRESS = CODES[("sdk", 7)]
OUT_OF_GAS = CODES[("sdk", 11)]
INSUFFICIENT_FEE = CODES[("sdk", 13)]
TX_IN_MEMPOOL = CODES[("sdk", 19)]
TX_TOO_LARGE = CODES[("sdk", 21)]
WRONG_SEQUENCE = CODES[("sdk", 32)]
TRANSFER_RESTRICTED = CODES[("restrictions", 1108)]

_EXPECTED_SEQUENCE = re.compile(r"expected (\d+), got (\d+)")
_SEARCH_ORDER = sorted(_CODES, key=lambda c: -len(c.name))


def lookup(codespace: str, code: int) -> ErrorCode | None:
    return CODES.get((codespace or "sdk", code))


def describe(codespace: str, code: int, raw_log: str = "") -> str:
    """One sentence for a refused or failed transaction."""
    known = lookup(codespace, code)
    if known is None:
        detail = first_line(raw_log) or "no details given"
        return f"the chain refused the transaction ({codespace or 'sdk'} code {code}): {detail}"
    if known is WRONG_SEQUENCE:
        expected = expected_sequence(raw_log)
        if expected is not None:
            return known.advice.replace(
                "account sequence mismatch",
                f"account sequence mismatch (expected {expected[0]}, got {expected[1]})",
            )
    return known.advice


def expected_sequence(raw_log: str) -> tuple[int, int] | None:
    """(expected, got) from a wrong-sequence log, if it says so."""
    match = _EXPECTED_SEQUENCE.search(raw_log or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def classify(message: str) -> ErrorCode | None:
    """Recognise an SDK error from free text (simulate errors carry only a message)."""
    lowered = (message or "").lower()
    if "account sequence mismatch" in lowered:
        return WRONG_SEQUENCE
    if "signature verification failed" in lowered:
        return UNAUTHORIZED
    for candidate in _SEARCH_ORDER:
        if candidate.name in lowered:
            return candidate
    return None


def first_line(text: str, limit: int = 300) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."
