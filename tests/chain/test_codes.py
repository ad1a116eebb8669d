"""SDK error codes: one sentence for the user, and recognising errors from free text."""

from __future__ import annotations

import pytest

from gonka_cli.chain import codes

SEQUENCE_LOG = "account sequence mismatch, expected 5, got 4: incorrect account sequence"
GENERIC_PREFIX = "the chain refused the transaction"


@pytest.mark.parametrize(
    ("codespace", "code", "words"),
    [
        pytest.param("sdk", 2, "could not decode the transaction", id="sdk-2-tx-parse"),
        pytest.param("sdk", 4, "signature verification failed", id="sdk-4-unauthorized"),
        pytest.param("sdk", 5, "insufficient funds", id="sdk-5-insufficient-funds"),
        pytest.param("sdk", 11, "out of gas", id="sdk-11-out-of-gas"),
        pytest.param("sdk", 13, "insufficient fee", id="sdk-13-insufficient-fee"),
        pytest.param("sdk", 19, "already in the node's mempool", id="sdk-19-in-mempool"),
        pytest.param("sdk", 32, "account sequence mismatch", id="sdk-32-wrong-sequence"),
        pytest.param("restrictions", 1108, "restricted", id="restrictions-1108"),
    ],
)
def test_describe_known_codes(codespace: str, code: int, words: str) -> None:
    known = codes.lookup(codespace, code)
    assert known is not None

    sentence = codes.describe(codespace, code, "some raw log")

    assert sentence == known.advice
    assert words in sentence
    assert "\n" not in sentence
    assert not sentence.startswith(GENERIC_PREFIX)


def test_empty_codespace_means_sdk() -> None:
    assert codes.describe("", 5) == codes.INSUFFICIENT_FUNDS.advice
    assert codes.lookup("", 32) is codes.WRONG_SEQUENCE


def test_codespace_matters() -> None:
    """Code 5 of another module is not the SDK's insufficient funds."""
    assert codes.lookup("wasm", 5) is None
    assert codes.lookup("sdk", 1108) is None


def test_wrong_sequence_names_expected_and_got() -> None:
    sentence = codes.describe("sdk", 32, SEQUENCE_LOG)

    assert sentence.startswith("account sequence mismatch (expected 5, got 4):")
    assert "run the command again" in sentence


def test_wrong_sequence_without_numbers() -> None:
    sentence = codes.describe("sdk", 32, "incorrect account sequence")

    assert sentence == codes.WRONG_SEQUENCE.advice
    assert "expected" not in sentence


@pytest.mark.parametrize(
    ("raw_log", "expected"),
    [
        pytest.param(SEQUENCE_LOG, (5, 4), id="sdk-log"),
        pytest.param("expected 120, got 7", (120, 7), id="bare"),
        pytest.param("incorrect account sequence", None, id="no-numbers"),
        pytest.param("", None, id="empty"),
    ],
)
def test_expected_sequence(raw_log: str, expected: tuple[int, int] | None) -> None:
    assert codes.expected_sequence(raw_log) == expected


@pytest.mark.parametrize(
    ("codespace", "code", "raw_log", "shown"),
    [
        pytest.param(
            "wasm",
            5,
            "execute wasm contract failed\nstack: ...",
            "execute wasm contract failed",
            id="other-codespace",
        ),
        pytest.param(
            "inference",
            1101,
            "  participant not found\nmore",
            "participant not found",
            id="gonka-module",
        ),
        pytest.param("sdk", 99, "strange failure", "strange failure", id="unknown-sdk-code"),
        pytest.param("", 99, "odd", "odd", id="empty-codespace"),
        pytest.param("sdk", 98, "", "no details given", id="no-log"),
    ],
)
def test_describe_unknown_codes(codespace: str, code: int, raw_log: str, shown: str) -> None:
    sentence = codes.describe(codespace, code, raw_log)

    assert sentence == f"{GENERIC_PREFIX} ({codespace or 'sdk'} code {code}): {shown}"
    assert "\n" not in sentence


def test_describe_unknown_code_shortens_a_long_log() -> None:
    sentence = codes.describe("wasm", 5, "x" * 1000)

    assert sentence.endswith("x...")
    assert len(sentence) < 400


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            "rpc error: code = Unknown desc = 10ngonka is smaller than 20ngonka: insufficient "
            "funds [cosmos/cosmos-sdk@v0.50.11/x/bank/keeper/send.go:278] With gas wanted: "
            "'18446744073709551615' and gas used: '51234' : unknown request",
            codes.INSUFFICIENT_FUNDS,
            id="simulate-insufficient-funds",
        ),
        pytest.param(
            "rpc error: code = Unknown desc = account sequence mismatch, expected 5, got 4: "
            "incorrect account sequence [cosmos/cosmos-sdk@v0.50.11/x/auth/ante/sigverify.go:290]",
            codes.WRONG_SEQUENCE,
            id="simulate-wrong-sequence",
        ),
        pytest.param(
            "signature verification failed; please verify account number (7) and chain-id "
            "(gonka-devnet): unauthorized",
            codes.UNAUTHORIZED,
            id="unauthorized",
        ),
        pytest.param(
            "out of gas in location: ReadFlat; gasWanted: 100, gasUsed: 1000: out of gas",
            codes.OUT_OF_GAS,
            id="out-of-gas",
        ),
        pytest.param(
            "insufficient fees; got: 0ngonka required: 500ngonka: insufficient fee",
            codes.INSUFFICIENT_FEE,
            id="insufficient-fee",
        ),
        pytest.param(
            "rpc error: code = Unknown desc = transfer restricted during bootstrap period",
            codes.TRANSFER_RESTRICTED,
            id="transfer-restricted",
        ),
        pytest.param("expected 1 signer: tx parse error", codes.TX_PARSE_ERROR, id="parse"),
        pytest.param("decoding bech32 failed: invalid address", codes.INVALID_ADDRESS, id="addr"),
        pytest.param("Insufficient Funds", codes.INSUFFICIENT_FUNDS, id="case-insensitive"),
        pytest.param("the node is on fire", None, id="unrecognised"),
        pytest.param("", None, id="empty"),
    ],
)
def test_classify(message: str, expected: codes.ErrorCode | None) -> None:
    assert codes.classify(message) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("one\ntwo", "one", id="two-lines"),
        pytest.param("\n\n  padded\nnext", "padded", id="leading-blank-lines"),
        pytest.param("   ", "", id="blank"),
        pytest.param("", "", id="empty"),
    ],
)
def test_first_line(text: str, expected: str) -> None:
    assert codes.first_line(text) == expected


def test_first_line_limit() -> None:
    assert codes.first_line("abcdefghij", limit=8) == "abcde..."
    assert codes.first_line("abcdefgh", limit=8) == "abcdefgh"
