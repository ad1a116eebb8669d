"""GNK amounts: exact parsing of what users type, exact formatting of what the chain holds."""

from __future__ import annotations

import pytest

from gonka_cli.chain import amount
from gonka_cli.errors import InputError, InvalidAmount

GNK = 10**9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("1.5gnk", 1_500_000_000, id="gnk"),
        pytest.param("1.5GNK", 1_500_000_000, id="gnk-upper-case"),
        pytest.param("1.5 gnk", 1_500_000_000, id="space-before-unit"),
        pytest.param("  1.5gnk  ", 1_500_000_000, id="surrounding-spaces"),
        pytest.param("1500000000ngonka", 1_500_000_000, id="ngonka"),
        pytest.param("1500000000NGONKA", 1_500_000_000, id="ngonka-upper-case"),
        pytest.param("2gonka", 2 * GNK, id="gonka"),
        pytest.param("1.5mgonka", 1_500_000, id="mgonka"),
        pytest.param("1.5ugonka", 1_500, id="ugonka"),
        pytest.param("0.001ugonka", 1, id="ugonka-3-decimals"),
        pytest.param("0.000001mgonka", 1, id="mgonka-6-decimals"),
        pytest.param("0.000000001gnk", 1, id="one-ngonka-in-gnk"),
        pytest.param("1.123456789gnk", 1_123_456_789, id="9-decimals"),
        pytest.param("1.1234567890gnk", 1_123_456_789, id="trailing-zero-beyond-9"),
        pytest.param(".5gnk", GNK // 2, id="no-whole-part"),
        pytest.param("1.gnk", GNK, id="no-fraction-digits"),
        pytest.param("007gnk", 7 * GNK, id="leading-zeros"),
        pytest.param("1ngonka", 1, id="smallest"),
    ],
)
def test_parse_amount(text: str, expected: int) -> None:
    assert amount.parse_amount(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"{2**64 + 1}ngonka", 2**64 + 1, id="ngonka-above-2^64"),
        pytest.param("18446744073.709551617gnk", 2**64 + 1, id="gnk-above-2^64"),
        pytest.param(f"{2**256 - 1}ngonka", 2**256 - 1, id="largest-cosmos-int"),
    ],
)
def test_parse_amount_is_exact_beyond_64_bits(text: str, expected: int) -> None:
    assert amount.parse_amount(text) == expected


@pytest.mark.parametrize("text", ["0gnk", "0ngonka", "0.000gnk", ".0ngonka"])
def test_zero_is_refused_unless_allowed(text: str) -> None:
    with pytest.raises(InvalidAmount, match="more than zero"):
        amount.parse_amount(text)
    assert amount.parse_amount(text, allow_zero=True) == 0


def _quotes(message: str, text: str) -> bool:
    """The message quotes the input (a very long input may be shortened)."""
    return repr(text) in message or (len(text) > 80 and repr(text)[:40] in message)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("1.1234567891gnk", "at most 9 decimals", id="10-decimals"),
        pytest.param("1.0001ugonka", "at most 3 decimals", id="ugonka-4-decimals"),
        pytest.param("1.0000001mgonka", "at most 6 decimals", id="mgonka-7-decimals"),
        pytest.param("1.5ngonka", "smallest unit", id="ngonka-with-decimals"),
        pytest.param("-1gnk", "negative", id="negative"),
        pytest.param("-0.5ngonka", "negative", id="negative-fraction"),
        pytest.param("1.5", "add a unit", id="no-unit"),
        pytest.param("1500000000", "add a unit", id="integer-without-unit"),
        pytest.param("1.5atom", "unknown unit", id="unknown-unit"),
        pytest.param("1.5uatom", "unknown unit", id="unknown-micro-unit"),
        pytest.param("1e9ngonka", "write a number and a unit", id="exponent"),
        pytest.param("1E3gnk", "write a number and a unit", id="exponent-upper-case"),
        pytest.param("1.5e2gnk", "write a number and a unit", id="exponent-with-fraction"),
        pytest.param("\u0661\u0662gnk", "write a number and a unit", id="arabic-indic-digits"),
        pytest.param("\uff11gnk", "write a number and a unit", id="fullwidth-digit"),
        pytest.param("\u00b2gnk", "write a number and a unit", id="superscript-digit"),
        pytest.param("1,5gnk", "write a number and a unit", id="decimal-comma"),
        pytest.param("1_000gnk", "write a number and a unit", id="underscore"),
        pytest.param("gnk", "write a number and a unit", id="unit-only"),
        pytest.param("", "write a number and a unit", id="empty"),
        pytest.param(".gnk", "write a number and a unit", id="dot-only"),
        pytest.param("1gnk\n2gnk", "write a number and a unit", id="two-lines"),
        pytest.param("nan gnk", "write a number and a unit", id="nan"),
        pytest.param("inf ngonka", "write a number and a unit", id="inf"),
        pytest.param(f"{2**256}ngonka", "too large", id="2^256-ngonka"),
        pytest.param(f"{2**256}gnk", "too large", id="2^256-gnk"),
        pytest.param("9" * 100 + "gnk", "too large", id="100-digits"),
        pytest.param("9" * 5000 + "ngonka", "too large", id="5000-digits"),
    ],
)
def test_parse_amount_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidAmount) as info:
        amount.parse_amount(text)
    message = str(info.value)
    assert isinstance(info.value, InputError)
    assert reason in message
    assert _quotes(message, text)
    assert "\n" not in message


def test_parse_amount_names_what_was_parsed() -> None:
    with pytest.raises(InvalidAmount, match=r"^invalid fee '1\.5': add a unit"):
        amount.parse_amount("1.5", what="fee")


@pytest.mark.parametrize(
    ("ngonka", "gnk", "described"),
    [
        pytest.param(0, "0.000000000", "0 GNK", id="zero"),
        pytest.param(1, "0.000000001", "0.000000001 GNK", id="one-ngonka"),
        pytest.param(1_500_000_000, "1.500000000", "1.5 GNK", id="1.5-gnk"),
        pytest.param(10**9, "1.000000000", "1 GNK", id="one-gnk"),
        pytest.param(1_000_500_000_000, "1000.500000000", "1,000.5 GNK", id="thousands"),
        pytest.param(
            2**64 + 1, "18446744073.709551617", "18,446,744,073.709551617 GNK", id="above-2^64"
        ),
        pytest.param(-1_500_000_001, "-1.500000001", "-1.500000001 GNK", id="negative"),
        pytest.param(-1, "-0.000000001", "-0.000000001 GNK", id="negative-small"),
    ],
)
def test_format_and_describe(ngonka: int, gnk: str, described: str) -> None:
    assert amount.format_gnk(ngonka) == gnk
    assert amount.describe(ngonka) == described


@pytest.mark.parametrize("ngonka", [1, 999_999_999, 1_500_000_000, 2**64 + 1, 2**200 + 7])
def test_format_then_parse_round_trips(ngonka: int) -> None:
    assert amount.parse_amount(amount.format_gnk(ngonka) + "gnk") == ngonka


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("0", 0, id="zero"),
        pytest.param("1234567", 1_234_567, id="small"),
        pytest.param(str(2**64 + 1), 2**64 + 1, id="above-2^64"),
        pytest.param(str(2**256 - 1), 2**256 - 1, id="cosmos-int-max"),
    ],
)
def test_parse_chain_amount(value: str, expected: int) -> None:
    assert amount.parse_chain_amount(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(1.5, id="float"),
        pytest.param(1.0, id="integral-float"),
        pytest.param("1.5", id="decimal-string"),
        pytest.param("-1", id="negative-string"),
        pytest.param("+1", id="plus-sign"),
        pytest.param("", id="empty"),
        pytest.param(" 1", id="leading-space"),
        pytest.param("1e3", id="exponent"),
        pytest.param("0x10", id="hex"),
        pytest.param("\u0661\u0662", id="arabic-indic-digits"),
        pytest.param("\u00b2", id="superscript-two"),
        pytest.param(None, id="none"),
        pytest.param(b"12", id="bytes"),
    ],
)
def test_parse_chain_amount_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="not an integer amount"):
        amount.parse_chain_amount(value)
