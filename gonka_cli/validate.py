"""Type guards for values parsed from JSON: one copy for every module that checks input.

JSON gives `bool` for `true`, and Python's `bool` is an `int`: every integer check here
refuses booleans, which is the mistake the hand-written copies kept guarding against.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from typing import Any, TypeGuard

__all__ = ["is_bytes", "is_hex", "is_int", "is_list", "is_number", "is_uint", "is_uint_text"]

_HEX = frozenset(string.hexdigits)


def is_int(value: object) -> TypeGuard[int]:
    """An `int` that is not a `bool`."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite `int` or `float`, not a `bool`."""
    if is_int(value):
        return True
    return isinstance(value, float) and math.isfinite(value)


def is_uint(value: object, high: int | None = None) -> TypeGuard[int]:
    """An `int` ≥ 0 (and ≤ `high` when given), not a `bool`."""
    return is_int(value) and value >= 0 and (high is None or value <= high)


def is_uint_text(text: str, high: int) -> bool:
    """Decimal digits only (no sign, no spaces, no underscores) for a value ≤ `high`."""
    if not text or not text.isascii() or not text.isdigit():
        return False
    return len(text) <= len(str(high)) and int(text) <= high


def is_hex(text: object) -> TypeGuard[str]:
    """A non-empty string of hexadecimal digits of even length (either case)."""
    return isinstance(text, str) and bool(text) and len(text) % 2 == 0 and set(text) <= _HEX


def is_bytes(value: object, length: int) -> bool:
    """`bytes` or `bytearray` of exactly `length` bytes."""
    return isinstance(value, (bytes, bytearray)) and len(value) == length


def is_list(value: object) -> TypeGuard[Sequence[Any]]:
    """A JSON array (a Python `list` or `tuple`, never a string)."""
    return isinstance(value, (list, tuple))
