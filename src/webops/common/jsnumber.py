"""JavaScript's `Number#toString`, which Etsy's statsd writes numbers with: in Graphite paths (a
timer's `upper_99_9`), lines and files. Here because two tools need it: `webops statsd` writes with
it (through its `jsfmt`) and `webops check` names the percentile series statsd wrote.
"""

from __future__ import annotations

import math
from decimal import Decimal


def number(x: float | int) -> str:
    """JavaScript's Number#toString for a float (shortest round-trip digits, JS exponent rules)."""
    if x.__class__ is float:  # first: a flush formats ~14 floats a timer
        text = repr(x)
        # Python's repr has JS's shortest round-trip digits; without an exponent (1e-4 <= |x| <
        # 1e16) it is JS's text too, but for the `.0` of a whole number and the sign of -0.0.
        if "e" in text or "n" in text:  # an exponent, inf, nan: JS spells them its own way
            return _general(x)
        if text.endswith(".0"):
            return "0" if text == "-0.0" else text[:-2]
        return text
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    return _general(x)


def _general(x: float) -> str:
    """number() for any float, from its digits (the reference the repr shortcut is held to)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 2**53:  # exact; larger ones get JS's shortest digits below
        return str(int(x))
    return _shortest(x)


def _shortest(x: float) -> str:
    """JS's formatting of any finite, non-zero float from its shortest round-trip digits."""
    sign = "-" if x < 0 else ""
    digits_tuple = Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, digits_tuple.digits))
    k = len(digits)
    n = k + int(digits_tuple.exponent)  # value = 0.DIGITS * 10**n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body
