"""argparse types for numeric flags: a bad value (not a number, NaN, infinite, negative, zero
where it means nothing, a port out of range) is argparse's usage error, exit 2, never a
traceback, a loop that never ends, or a value taken for something else."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return value


def int_at_least(low: int) -> Callable[[str], int]:
    """A type for integers from `low` on."""

    def check(text: str) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r}: must be at least {low}")
        return value

    check.__name__ = f"int_at_least_{low}"
    return check


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def port(text: str) -> int:
    """A TCP/UDP port, 1-65535."""
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is 1-65535")
    return value


NUMERIC = (positive_float, non_negative_float, positive_int, non_negative_int, port)
"""The types above that read numbers (a config file may give them as JSON numbers)."""


def as_check(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    """One of these types as a settings check (common/settings.py): a file's number is read as
    the flag's text would be, and the refusal is the check's ValueError, with the same words."""

    def check(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise ValueError(f"expected a number, got {v!r}")
        try:
            return parse(str(v))
        except argparse.ArgumentTypeError as e:
            raise ValueError(str(e)) from None

    return check
