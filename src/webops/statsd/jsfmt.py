"""Numbers the way node.js reads and writes them, so statsd lines and output match Etsy's.

Etsy's daemon writes numbers with JavaScript's `Number#toString` (to Graphite, files and the
console) and dumps its tables with `util.inspect`. Python's `repr` differs (`1.0`, `1e-07`), and a
Graphite path or a console scraper written for Etsy would see those differences.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ..common.jsnumber import number

_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_BREAK_LENGTH = 80
_MAX_ARRAY_LENGTH = 100
_RADIX = re.compile(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+")


def to_number(text: str) -> float | None:
    """JavaScript's Number() for the strings statsd accepts; None where Etsy's isNumber says no.

    Python's float() is more lenient (nan, inf, `1_0`, non-ASCII digits), so those are refused,
    and JS's radix literals (0x1f, 0o7, 0b1) are accepted.
    """
    try:
        value = float(text)
    except ValueError:
        stripped = text.strip()
        if not _RADIX.fullmatch(stripped):
            return None
        try:
            return float(int(stripped, 0))
        except (OverflowError, ValueError):  # more digits than a float holds: JS says Infinity
            return None
    if value - value != 0 or "_" in text or not text.isascii():
        return None
    return value


def _key(k: str) -> str:
    return k if _IDENTIFIER.match(k) else _string(k)


# node's util.inspect escapes C0 controls and DEL this way; C1 controls (\x9b is a terminal's CSI)
# are escaped too, so a metric name can never drive the terminal that shows it.
_ESCAPES = {i: f"\\x{i:02X}" for i in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r", 39: "\\'", 92: "\\\\"})


def _string(s: str) -> str:
    return "'" + s.translate(_ESCAPES) + "'"


def _scalar(v: object) -> str:
    if isinstance(v, str):
        return _string(v)
    if v is None:
        return "null"
    if isinstance(v, bool | int | float):
        return number(v)
    return str(v)


def _reduce(entries: list[str], braces: tuple[str, str], indent: int) -> str:
    """node's reduceToSingleString: one line when it fits in 80 columns, else one entry a line."""
    if not entries:
        return braces[0] + braces[1]
    start = len(entries) + indent + len(braces[0]) + 10
    total = len(entries) + start + sum(len(e) for e in entries)
    joined = ", ".join(entries)
    if total <= _BREAK_LENGTH and "\n" not in joined:
        return f"{braces[0]} {joined} {braces[1]}"
    pad = "\n" + " " * indent
    return f"{braces[0]}{pad}  " + f",{pad}  ".join(entries) + f"{pad}{braces[1]}"


def inspect(value: object, indent: int = 0) -> str:
    """util.inspect for the plain data a statsd keeps: mappings, sequences/sets, numbers, strings."""
    if isinstance(value, Mapping):
        entries = [f"{_key(str(k))}: {inspect(v, indent + 2)}" for k, v in value.items()]
        return _reduce(entries, ("{", "}"), indent)
    if isinstance(value, Iterable) and not isinstance(value, str):
        items = list(value)
        entries = [inspect(v, indent + 2) for v in items[:_MAX_ARRAY_LENGTH]]
        if len(items) > _MAX_ARRAY_LENGTH:
            more = len(items) - _MAX_ARRAY_LENGTH
            entries.append(f"... {more} more item{'s' if more > 1 else ''}")
        return _reduce(entries, ("[", "]"), indent)
    return _scalar(value)
