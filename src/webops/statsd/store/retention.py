"""Retentions and rollups as Graphite writes them (storage-schemas.conf, storage-aggregation.conf),
as data. Pure: strings in, archives and SQL out.

A retention is `STEP:DURATION[,STEP:DURATION...]`, finest first (`10s:6h,1m:7d,10m:1y`), each
unit one of ms, s, m (minutes), h, d, w, y, or a bare number of seconds for the step and of
points for the duration, as in whisper. Times are kept in milliseconds, so a daemon flushing
every 100 ms keeps points 100 ms apart.

How a series rolls up is not guessed from its name (Graphite's storage-aggregation.conf does,
and a prefix or a `;tag=value` suffix defeats it): the Graphite naming declares it for each value
a metric kind flushes (backends/naming.py's GRAPHITE table: a timer's `count` is summed, its
`upper` the maximum, ...), and the store gets it with the value, as a `Point`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

UNITS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
UNITS |= {"w": 7 * UNITS["d"], "y": 365 * UNITS["d"]}
# The default past the first archive; the first is the flush interval's own (default_archives).
DEFAULT_TAIL = "10s:6h,1m:7d,10m:1y"
SUB_TEN_SECONDS = 3_600_000  # the first archive of a flush faster than 10 s keeps an hour of it


class RetentionError(ValueError):
    """A retention that cannot work, said in one line."""


@dataclass(frozen=True)
class Archive:
    step: int  # milliseconds per point
    points: int  # how many it keeps

    @property
    def span(self) -> int:
        """Milliseconds it reaches back."""
        return self.step * self.points


def _amount(text: str, what: str, step: int | None) -> int:
    m = re.fullmatch(r"(\d{1,12})([a-z]*)", text.strip())
    if not m or (m[2] and m[2] not in UNITS):
        raise RetentionError(f"{text!r}: expected a number with a unit (ms, s, m, h, d, w, y) for the {what}")
    n = int(m[1])
    if not m[2]:
        return n * 1000 if step is None else n * step  # whisper: a bare step is seconds, a duration points
    return n * UNITS[m[2]]


def parse(text: str) -> list[Archive]:
    """`10s:6h,1m:7d` -> archives, checked the way whisper checks them."""
    archives = []
    for part in text.split(","):
        if ":" not in part:
            raise RetentionError(f"{part.strip()!r}: expected STEP:DURATION (10s:6h)")
        step_text, duration_text = part.split(":", 1)
        step = _amount(step_text, "step", None)
        duration = _amount(duration_text, "duration", step)
        if step < 1 or duration < step:
            raise RetentionError(f"{part.strip()!r}: the duration must hold at least one step")
        archives.append(Archive(step, duration // step))
    check(archives, text)
    return archives


def check(archives: Sequence[Archive], text: str) -> None:
    """whisper's rules between neighbours: a coarser step is a multiple of the finer one, reaches
    further back, and the finer archive holds at least one of its steps (its rollup source)."""
    for finer, coarser in itertools.pairwise(archives):
        if coarser.step <= finer.step or coarser.step % finer.step:
            raise RetentionError(
                f"{text!r}: each step must be a multiple of the one before ({describe([finer])})"
            )
        if coarser.span <= finer.span:
            raise RetentionError(f"{text!r}: each archive must reach further back than the one before")
        if finer.span < coarser.step:
            raise RetentionError(
                f"{text!r}: {describe([finer])} must hold at least one {_text(coarser.step)} step"
            )


def default_archives(flush_ms: int) -> list[Archive]:
    """The default retentions for a flush interval: the first archive's step is the interval
    itself, so every flush has a slot of its own (a 1 s flush into a 10 s slot would keep only
    one flush in ten), sub-second included; it reaches back as far as the default archives it
    replaces (6 h at 10 s, 7 d at 1 min), or an hour when it is finer than 10 s. The coarser
    default archives follow, each step rounded up to a multiple of the one before."""
    tail = parse(DEFAULT_TAIL)
    covered = [a.span for a in tail if a.step <= flush_ms]
    out = [Archive(flush_ms, max(max(covered, default=SUB_TEN_SECONDS), flush_ms) // flush_ms)]
    for a in tail:
        if a.step > flush_ms and a.span > out[-1].span:
            step = -(-a.step // out[-1].step) * out[-1].step
            out.append(Archive(step, max(a.span // step, 1)))
    check(out, describe(out))
    return out


def _text(ms: int) -> str:
    for unit in ("y", "d", "h", "m", "s"):
        if ms % UNITS[unit] == 0:
            return f"{ms // UNITS[unit]}{unit}"
    return f"{ms}ms"


def describe(archives: Sequence[Archive]) -> str:
    """Archives back as retention text (`10s:6h,1m:7d`), for logs and errors."""
    return ",".join(f"{_text(a.step)}:{_text(a.span)}" for a in archives)


# How the values of one time slot combine: two flushes into the same slot (a flush interval finer
# than the step, a shutdown's partial flush, merged flushes of a store catching up) and every
# coarser archive's slot, point by point. SQL for SQLite's upsert: the slot's current `value` and
# `weight` (milliseconds of flushes it holds), the new point's as `excluded.*`. An average is
# weighted by time, so a rate averaged over 10 s and 3 s flushes is the rate over the 13 s.
ROLLUPS: dict[str, str] = {
    "sum": "value + excluded.value",
    "max": "max(value, excluded.value)",
    "min": "min(value, excluded.value)",
    "last": "excluded.value",
    "average": "(value * weight + excluded.value * excluded.weight) / (weight + excluded.weight)",
}


class Point(NamedTuple):
    """One value of a flush as Graphite names it, and how it rolls up over time (a key of
    ROLLUPS): declared by the Graphite naming for each value of a kind, not guessed from the
    name, so a prefix or a `;tag=value` suffix never changes it."""

    path: str
    value: float
    rollup: str


@dataclass(frozen=True)
class Schema:
    """Retentions for the series whose names match `pattern` (first schema that matches wins)."""

    pattern: re.Pattern[str]
    archives: tuple[Archive, ...]


def schemas(rules: Sequence[tuple[str, str]], flush_ms: int = 10_000) -> list[Schema]:
    """[(regex, retentions)] -> schemas, with the flush interval's default catching the rest."""
    out = []
    for pattern, text in rules:
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise RetentionError(f"{pattern!r}: {e}") from None
        out.append(Schema(compiled, tuple(parse(text))))
    out.append(Schema(re.compile(""), tuple(default_archives(flush_ms))))
    return out


def schema_of(name: str, rules: Sequence[Schema]) -> Schema:
    return next(s for s in rules if s.pattern.search(name))
