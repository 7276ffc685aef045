"""Retentions and rollups as Graphite writes them (storage-schemas.conf, storage-aggregation.conf),
as data. Pure: strings in, archives and functions out.

A retention is `STEP:DURATION[,STEP:DURATION...]`, finest first (`10s:6h,1m:7d,10m:1y`), each
unit one of s, m (minutes), h, d, w, y, or a bare number of seconds for the step and of points
for the duration, as in whisper. A rollup function is chosen per series name: counts and sums
are summed, upper bounds take the maximum, lower bounds the minimum, gauges the last value, and
everything else (rates, means, percentiles of a mean) the average.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
DEFAULT_RETENTIONS = "10s:6h,1m:7d,10m:1y"


class RetentionError(ValueError):
    """A retention that cannot work, said in one line."""


@dataclass(frozen=True)
class Archive:
    step: int  # seconds per point
    points: int  # how many it keeps

    @property
    def seconds(self) -> int:
        return self.step * self.points


def _amount(text: str, what: str, step: int | None) -> int:
    m = re.fullmatch(r"(\d+)([a-z]*)", text.strip())
    if not m or (m[2] and m[2] not in UNITS):
        raise RetentionError(f"{text!r}: expected a number with a unit (s, m, h, d, w, y) for the {what}")
    n = int(m[1])
    if not m[2]:
        return n if step is None else n * step  # whisper: a bare duration counts points
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
    for finer, coarser in itertools.pairwise(archives):
        if coarser.step <= finer.step or coarser.step % finer.step:
            raise RetentionError(f"{text!r}: each step must be a multiple of the one before ({finer.step}s)")
        if coarser.seconds <= finer.seconds:
            raise RetentionError(f"{text!r}: each archive must reach further back than the one before")
    return archives


@dataclass
class Bucket:
    """A coarser archive's point being built, one flush at a time: constant memory per series."""

    start: int
    count: int = 0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")
    last: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        self.last = value


ROLLUPS: dict[str, Callable[[Bucket], float]] = {
    "sum": lambda b: b.total,
    "max": lambda b: b.high,
    "min": lambda b: b.low,
    "last": lambda b: b.last,
    "average": lambda b: b.total / b.count,
}


# first match wins: Graphite's storage-aggregation.conf defaults, plus the statsd kinds' own
# (gauges keep their last value; a set's count of distinct values cannot be summed over
# intervals, so a rollup keeps the largest, a lower bound of the true count)
RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(^|\.)gauges\."), "last"),
    (re.compile(r"(^|\.)sets\."), "max"),
    (re.compile(r"^stats_counts\.|\.(count|sum)(_\d+)?$"), "sum"),
    (re.compile(r"\.upper(_\d+)?$"), "max"),
    (re.compile(r"\.lower(_\d+)?$"), "min"),
]


def rollup_of(name: str) -> str:
    """The rollup function's name for a series."""
    return next((fn for pattern, fn in RULES if pattern.search(name)), "average")


@dataclass(frozen=True)
class Schema:
    """Retentions for the series whose names match `pattern` (first schema that matches wins)."""

    pattern: re.Pattern[str]
    archives: tuple[Archive, ...]


def schemas(rules: Sequence[tuple[str, str]]) -> list[Schema]:
    """[(regex, retentions)] -> schemas, with the default catching everything else."""
    out = []
    for pattern, text in [*rules, (".", DEFAULT_RETENTIONS)]:
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise RetentionError(f"{pattern!r}: {e}") from None
        out.append(Schema(compiled, tuple(parse(text))))
    return out


def schema_of(name: str, rules: Sequence[Schema]) -> Schema:
    return next(s for s in rules if s.pattern.search(name))
