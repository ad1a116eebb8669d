"""GNK amounts: parsing what users type and formatting what the chain returns.

Only `ngonka` exists on chain; 1 GNK = 10^9 ngonka. Amounts are exact integers of ngonka,
never floats. Accepted input units (case-insensitive): `gnk` and `gonka` (10^9 ngonka),
`mgonka` (10^6), `ugonka` (10^3) and `ngonka`, e.g. `1.5gnk`, `1.5 GNK`, `1500000000ngonka`.
"""

from __future__ import annotations

import re

from gonka_cli.errors import InvalidAmount

DENOM = "ngonka"
GNK_DECIMALS = 9
NGONKA_PER_GNK = 10**GNK_DECIMALS
#: Decimal places of each accepted unit (the units of gonka's genesis denom metadata).
UNITS = {"gnk": 9, "gonka": 9, "mgonka": 6, "ugonka": 3, "ngonka": 0}
#: cosmos Int is 256 bits.
MAX_AMOUNT = 2**256 - 1

_PATTERN = re.compile(r"^\s*([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$", re.ASCII)


def parse_amount(text: str, *, what: str = "amount", allow_zero: bool = False) -> int:
    """Parse `1.5gnk` / `1500000000ngonka` into ngonka, exactly."""
    match = _PATTERN.match(text)
    if not match:
        raise InvalidAmount(
            f"invalid {what} {_shown(text)}: write a number and a unit, "
            "e.g. 1.5gnk or 1500000000ngonka"
        )
    sign, number, unit = match.groups()
    if not unit:
        raise InvalidAmount(
            f"invalid {what} {_shown(text)}: add a unit, e.g. {number}gnk or {number}ngonka"
        )
    decimals = UNITS.get(unit.lower())
    if decimals is None:
        raise InvalidAmount(
            f"invalid {what} {_shown(text)}: unknown unit {unit!r}; use gnk or ngonka"
        )
    if sign == "-":
        raise InvalidAmount(f"invalid {what} {_shown(text)}: must not be negative")
    whole, _, fraction = number.partition(".")
    fraction = fraction.rstrip("0")
    if len(fraction) > decimals:
        if decimals == 0:
            raise InvalidAmount(
                f"invalid {what} {_shown(text)}: ngonka is the smallest unit (no decimals)"
            )
        raise InvalidAmount(
            f"invalid {what} {_shown(text)}: {unit} has at most {decimals} decimals"
        )
    if len(whole.lstrip("0")) + decimals > len(str(MAX_AMOUNT)):
        raise InvalidAmount(f"invalid {what} {_shown(text)}: too large")
    value = int(whole or "0") * int(10**decimals) + int(fraction.ljust(decimals, "0") or "0")
    if value == 0 and not allow_zero:
        raise InvalidAmount(f"invalid {what} {_shown(text)}: must be more than zero")
    if value > MAX_AMOUNT:
        raise InvalidAmount(f"invalid {what} {_shown(text)}: too large")
    return value


def _shown(text: str) -> str:
    return repr(text if len(text) <= 100 else text[:97] + "...")


def format_gnk(ngonka: int) -> str:
    """`1500000000` -> `1.500000000`: GNK with all 9 decimals, exact (for JSON and scripts)."""
    whole, fraction = divmod(abs(ngonka), NGONKA_PER_GNK)
    return f"{'-' if ngonka < 0 else ''}{whole}.{fraction:0{GNK_DECIMALS}d}"


def describe(ngonka: int) -> str:
    """`1000500000000` -> `1,000.5 GNK`: how every command shows an amount to people.

    Exact (no rounding: `0.000000001 GNK` is 1 ngonka), thousands grouped, no trailing zeros.
    """
    whole, fraction = divmod(abs(ngonka), NGONKA_PER_GNK)
    decimals = f"{fraction:0{GNK_DECIMALS}d}".rstrip("0")
    return f"{'-' if ngonka < 0 else ''}{whole:,}{'.' + decimals if decimals else ''} GNK"


def parse_chain_amount(value: object) -> int:
    """Parse a Coin.amount from the chain: a decimal string that may exceed 2^64."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"not an integer amount: {value!r}")
