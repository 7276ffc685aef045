"""JavaScript's `Number#toString`, which Etsy's statsd writes numbers with: in Graphite paths (a
timer's `upper_99_9`), lines and files. Here because two tools need it: `webops statsd` writes with
it (through its `jsfmt`) and `webops check` names the percentile series statsd wrote.
"""

from __future__ import annotations

import math
from decimal import Decimal


def number(x: float | int) -> str:
    """JavaScript's Number#toString for a float (shortest round-trip digits, JS exponent rules)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 2**53:  # exact; larger ones get JS's shortest digits below
        return str(int(x))
    if 1e-4 <= abs(x) < 1e16:
        # Python's repr has the same shortest round-trip digits, and writes this range without
        # an exponent as JS does: a flush formats ~14 values a timer, so this path matters
        return repr(x)
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
