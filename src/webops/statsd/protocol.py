"""The statsd line protocol, as Etsy's statsd 0.10 reads it (plus DogStatsD's tags, extra fields
and packed values, and `h`/`d`).

Pure functions: bytes in, samples out. Nothing here raises on any input; a line that cannot be
understood comes back as a `BadLine` so the daemon can count it in `bad_lines_seen`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

from ..common.graphite_layout import sanitize_key
from .jsfmt import to_number
from .kinds import BY_CODE
from .kinds.base import BAD, Kind, Value, bad

# DogStatsD fields after the type that carry no value webops uses: container id (`|c:...`, which
# the datadog client adds in containers), client timestamp (`|T1700000000`), cardinality, external
# data. Ignored, so the metric is kept.
_DOGSTATSD_EXTRA = re.compile(r"(?:c:|card:|e:|T\d)")
EVENT_PREFIXES = ("_e{", "_sc|")  # DogStatsD events and service checks: not metrics

# A line with more `:value|type` parts than this is one bad line: each part costs a parse, so a
# 64 KiB line of colons must not cost 30,000 of them (real clients send a handful at most).
MAX_VALUES_PER_LINE = 100


class Sample(NamedTuple):
    """One value for one series. `kind` is the wire code a metric kind parses to: c, ms, g or s
    (h and d are folded into ms)."""

    key: str
    kind: str
    value: float | str
    rate: float = 1.0
    delta: bool = False  # gauge written as +N / -N


class BadLine(NamedTuple):
    line: str
    reason: str


def tag_suffix(tags: str) -> str:
    """DogStatsD `k:v,flag` as Etsy 0.9+ appends it to a key for Graphite: `;k=v;flag`, in the
    order sent (JavaScript's replace() changes the first `;` and the first `:` only)."""
    return "".join(";" + t.replace(";", "_", 1).replace(":", "=", 1) for t in tags.split(",") if t)


def split_packet(data: bytes) -> list[str]:
    """The non-empty lines of a packet; `\\r\\n` endings and trailing newlines are tolerated."""
    text = data.decode("utf-8", "replace")
    if "\r" in text:
        text = text.replace("\r", "")
    return [line for line in text.split("\n") if line]


def parse_line(line: str, sanitize: bool = True) -> list[Sample | BadLine]:
    """Parse one line: `name:value|type[|@rate][|#tags]`, with several `:value|type` per name
    (Etsy) or several `:value` before one `|type` (DogStatsD's packed values)."""
    name, _, rest = line.partition(":")
    key, rest = line_key(name, rest, sanitize)
    return [
        BadLine(line, v[1]) if v[0] == BAD else Sample(key, *v)  # type: ignore[arg-type]
        for v in parse_values(rest)
    ]


def line_key(name: str, rest: str, sanitize: bool) -> tuple[str, str]:
    """The series key of a line (name plus sorted tags, sanitized) and the rest without the tags."""
    tags = ""
    if "|#" in rest:
        rest, _, tail = rest.partition("|#")
        tags, _, extra = tail.partition("|")
        if extra:
            rest += "|" + extra
    key = name + tag_suffix(tags) if tags else name
    return (sanitize_key(key) if sanitize else key), rest


def parse_values(rest: str) -> tuple[Value, ...]:
    """The `value|type[|@rate]` parts after a name's colon (tags already removed).

    Etsy's reading (every `:` starts a part with its own type) wins. Only when it has a bad part
    are the other readings tried, and the first that reads whole is taken: DogStatsD's packed
    values (`1:2:3|ms`, see _parse_packed), then both readings without DogStatsD's extra fields
    (`1|c|c:abc` is a container id, `1|c:2|c` Etsy's two values). So a line Etsy reads without a
    bad part keeps Etsy's meaning.

    Returns plain tuples so the daemon can cache them by text: statsd traffic repeats itself.
    """
    if not rest:
        return (bad("no value"),)
    if rest.count(":") >= MAX_VALUES_PER_LINE:  # before any reading: none is a way round it
        return (bad(f"more than {MAX_VALUES_PER_LINE} values on one line"),)
    parsed = _parse_values(rest)
    if any(v[0] == BAD for v in parsed):
        for alternative in _other_readings(rest):
            if not any(v[0] == BAD for v in alternative):
                return alternative
    return parsed


def _other_readings(rest: str) -> Iterator[tuple[Value, ...]]:
    """The readings of a line Etsy's has a bad part in, in the order they are tried."""
    packed = _parse_packed(rest)
    if packed is not None:
        yield packed
    if "|c:" in rest or "|card:" in rest or "|e:" in rest or "|T" in rest:
        fields = rest.split("|")
        plain = "|".join(fields[:2] + [f for f in fields[2:] if not _DOGSTATSD_EXTRA.match(f)])
        yield _parse_values(plain)
        packed = _parse_packed(plain)
        if packed is not None:
            yield packed


def _parse_values(rest: str) -> tuple[Value, ...]:
    if ":" not in rest:  # the usual case: one value
        return (_parse_value(rest),)
    return tuple(_parse_value(bit) for bit in rest.split(":"))


def _parse_packed(rest: str) -> tuple[Value, ...] | None:
    """DogStatsD's packed values (protocol v1.1, what datadog's clients send when they aggregate):
    `1:2:3|ms|@0.5` is three timer samples, each at rate 0.5. Every `:`-separated bit but the
    last is a bare value; the last bit's type, rate and fields apply to each, read once (a long
    rate must not be read a hundred times). Etsy reads such a line as bad lines (each bit
    without a type) and the last value, which no client means. None: `rest` is not of this form
    (one bit only, a type before the last bit, none in it)."""
    *values, last = rest.split(":")
    if not values or "|" not in last or any("|" in v for v in values):
        return None
    fields = last.split("|")
    typed = _typed(fields)
    if isinstance(typed, str):
        return (bad(typed),)
    kind, code, rate = typed
    return tuple(kind.parse(raw, code, rate) for raw in (*values, fields[0]))


def _parse_value(bit: str) -> Value:
    fields = bit.split("|")
    typed = _typed(fields)
    if isinstance(typed, str):
        return bad(typed)
    kind, code, rate = typed
    return kind.parse(fields[0], code, rate)


def _typed(fields: list[str]) -> tuple[type[Kind], str, float] | str:
    """The kind, type code and rate of a value's `|` fields (the value first), or why it has none."""
    if len(fields) < 2:
        return "no metric type"
    code = fields[1]
    kind = BY_CODE.get(code)
    if kind is None:
        code = code.strip()
        kind = BY_CODE.get(code)
        if kind is None:
            return f"unknown metric type {code!r}"
    rate = 1.0
    if len(fields) > 2:
        rate_text = fields[2]
        parsed_rate = to_number(rate_text[1:]) if rate_text[:1] == "@" and rate_text[1:2] != "-" else None
        if parsed_rate is None or parsed_rate <= 0:
            return f"bad sample rate {rate_text!r}"
        rate = parsed_rate
    return kind, code, rate
