"""The Monitoring Plugins range syntax for thresholds, exactly as the development guidelines define
it (https://www.monitoring-plugins.org/doc/guidelines.html#THRESHOLDFORMAT):

    10       alert if < 0 or > 10      (outside 0..10)
    10:      alert if < 10             (outside 10..inf)
    ~:10     alert if > 10             (outside -inf..10)
    10:20    alert if < 10 or > 20     (outside 10..20)
    @10:20   alert if >= 10 and <= 20  (inside 10..20)

The ends are inclusive: a value equal to an end is inside. Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    start: float
    end: float
    inside: bool = False  # `@`: alert when inside the range instead of outside
    text: str = ""  # as given, for perfdata and messages

    def alerts(self, value: float) -> bool:
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def __str__(self) -> str:
        return self.text


def parse(text: str) -> Range:
    """A range, or ValueError with the sentence the user reads."""
    given = text.strip()
    body = given
    inside = body.startswith("@")
    if inside:
        body = body[1:]
    if not body:
        raise ValueError(f"empty range {text!r}")
    if ":" in body:
        low, _, high = body.partition(":")
        start = -math.inf if low == "~" else _number(low or "0", text)
        end = math.inf if high == "" else _number(high, text)
    else:
        start, end = 0.0, _number(body, text)
    if start > end:  # `-5` is 0..-5: the guidelines' lone number is an upper end above 0
        raise ValueError(
            f"range {text!r}: start {start:g} is above end {end:g} (a lone N means 0..N; "
            f"for values below 0 give both ends, -10:-1, or ~:N)"
        )
    return Range(start, end, inside, given)


def _number(part: str, text: str) -> float:
    try:
        n = float(part)
    except ValueError:
        raise ValueError(
            f"range {text!r}: {part!r} is not a number (forms: 10, 10:, ~:10, 10:20, @10:20)"
        ) from None
    if not math.isfinite(n):
        raise ValueError(f"range {text!r}: {part!r} is not a finite number")
    return n


def parse_change(text: str) -> tuple[Range, bool]:
    """A change threshold: a range, with a trailing `%` for a relative change (percent of the
    earlier value). A lone number N means a change of more than N either way (-N:N): a trend
    threshold is about size; any other form is the range on the signed change (`~:20%` only a
    rise past 20 %, `-10:` only a fall past 10)."""
    given = text.strip()
    relative = given.endswith("%")
    body = given[:-1] if relative else given
    if body and ":" not in body and not body.startswith("@"):
        n = abs(_number(body, text))
        return Range(-n, n, False, f"-{body.lstrip('-')}:{body.lstrip('-')}"), relative
    r = parse(body)
    return Range(r.start, r.end, r.inside, body), relative
