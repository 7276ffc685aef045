"""Etsy's Graphite naming: which metric paths a flush becomes, in both namespace layouts.

Shared by the Graphite backend, the file backend's plaintext format (so a file written by webops
holds exactly the lines carbon would have received) and the store (which rolls each value up as
its Point says). `GRAPHITE` holds what each metric kind becomes: its `prefix<Name>` key, its
legacyNamespace part and its points, each with the rollup of its value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from ...common.graphite_layout import COUNT, KINDS, LEGACY_COUNTS, RATE, namespace
from ..hotpath import _native  # the timers' plaintext in Rust (native/src/lines.rs), or None
from ..jsfmt import number
from ..kinds import outputs
from ..kinds.timers import TimerSeries
from ..protocol import sanitize_key
from ..snapshot import Snapshot
from ..store.retention import Point
from ..timerstats import TimerData


class GraphiteNaming:
    def __init__(self, config) -> None:
        g = config.section("graphite")
        self.legacy = g["legacyNamespace"]
        self.prefix_stats = config["prefixStats"]
        self.flush_counts = config["flush_counts"]
        # With keyNameSanitize off, names reach the backends raw; carbon's plaintext protocol
        # cannot carry spaces, so (as Etsy's graphite backend does) the name is cleaned here.
        self.clean = not config["keyNameSanitize"]
        self.native = _native is not None and config.hot_path == "native"
        suffix = g["globalSuffix"]
        self.suffix = "." + suffix if suffix else ""
        prefix = g["globalPrefix"]
        self.global_ns = namespace(self.legacy, prefix, "")
        self.namespaces: dict[str, list[str]] = {}
        # per table, each key's split() as of the last plaintext(): a flush's keys are mostly
        # the last one's, and this holds at most one flush's worth of them
        self.splits: dict[str, dict[str, tuple[str, str]]] = {}
        for kind, graphite in outputs("graphite naming", GRAPHITE):
            part = graphite.legacy_namespace if self.legacy else g[f"prefix{graphite.name}"]
            self.namespaces[kind.table] = namespace(self.legacy, prefix, part)

    def namespace(self, table: str) -> list[str]:
        """The path parts before a key of the kind whose table is `table` (`stats.timers`)."""
        return self.namespaces[table]

    def path(self, namespace: list[str], key: str, *extra: str) -> str:
        """namespace.key.extra + globalSuffix, with the key's `;tag=value` part kept at the end."""
        head, tail = self.split(namespace, key)
        return head + ".".join(extra) + tail if extra else head[:-1] + tail

    def split(self, namespace: list[str], key: str) -> tuple[str, str]:
        """What goes before and after a statistic's name in the key's paths:
        `path(namespace, key, stat) == head + stat + tail`."""
        name, sep, tags = key.partition(";")
        if self.clean:
            name = sanitize_key(name)
        return ".".join([*namespace, name, ""]), self.suffix + sep + tags

    def splits_of(self, table: str, keys: Iterable[str]) -> dict[str, tuple[str, str]]:
        """split() of every key of this flush, taken from the last flush's where it was there."""
        ns, before = self.namespaces[table], self.splits.get(table, {})
        self.splits[table] = now = {key: before.get(key) or self.split(ns, key) for key in keys}
        return now

    def stats_path(self, *parts: str) -> str:
        """A path for the daemon's own stats: <globalPrefix>.<prefixStats>.<parts>."""
        return ".".join([*self.global_ns, self.prefix_stats, *parts]) + self.suffix

    def points(self, snap: Snapshot) -> Iterator[Point]:
        """Every value of a flush with its rollup, in Etsy's order."""
        for kind, graphite in outputs("graphite naming", GRAPHITE):
            yield from self._kind_points(kind.table, graphite, snap)
        yield from self._own_points(snap)

    def _kind_points(self, table: str, graphite: GraphiteKind, snap: Snapshot) -> Iterator[Point]:
        raw, ns = snap.tables[table], self.namespaces[table]
        for key, summary in snap.summaries[table].items():
            yield from graphite.points(self, ns, key, raw[key], summary)

    def _own_points(self, snap: Snapshot) -> Iterator[Point]:
        if self.legacy:
            yield Point(self.prefix_stats + ".numStats" + self.suffix, snap.num_stats, "last")
        else:
            yield Point(self.stats_path("numStats"), snap.num_stats, "last")
        for key, value in snap.statsd_metrics.items():
            yield Point(self.stats_path(key), value, "average")

    def metrics(self, snap: Snapshot) -> Iterator[tuple[str, float]]:
        """Every (path, value) of a flush, in Etsy's order: what carbon receives."""
        for point in self.points(snap):
            yield point.path, point.value

    def plaintext(self, snap: Snapshot) -> str:
        """Carbon's plaintext protocol: `path value timestamp` lines, those of metrics()
        (a kind with its own `lines` writes them without a Point per value)."""
        ts = f" {snap.timestamp}\n"
        out: list[str] = []
        for kind, graphite in outputs("graphite naming", GRAPHITE):
            if graphite.lines is not None:
                out += graphite.lines(self, kind.table, snap.summaries[kind.table], ts)
            else:
                out += [
                    f"{p.path} {number(p.value)}{ts}" for p in self._kind_points(kind.table, graphite, snap)
                ]
        out += [f"{p.path} {number(p.value)}{ts}" for p in self._own_points(snap)]
        return "".join(out)


# --- what each metric kind becomes ---------------------------------------------------------

# (naming, the kind's namespace, series key, its raw state, its summary) -> its points
Points = Callable[[GraphiteNaming, list[str], str, Any, Any], Iterator[Point]]
# (naming, the kind's table name, its summaries, " <timestamp>\n") -> plaintext lines, each
# `f"{path} {number(value)}{ts}"` of its points, in their order
Lines = Callable[[GraphiteNaming, str, dict[str, Any], str], list[str]]


class GraphiteKind(NamedTuple):
    name: str  # Graphite's `prefix<Name>` key (graphite.prefixCounter, ...)
    legacy_namespace: str  # legacyNamespace paths: stats.<ns>.<key> ("": stats.<key>)
    points: Points
    lines: Lines | None = None  # where a flush has many values per series: faster than points


def counter_points(
    naming: GraphiteNaming, ns: list[str], key: str, raw: float, summary: float
) -> Iterator[Point]:
    """A rate averages over time (weighted by each flush's length), a count adds up."""
    if naming.legacy:
        yield Point(naming.path(ns, key), summary, "average")
        if naming.flush_counts:
            yield Point(naming.path([LEGACY_COUNTS], key), raw, "sum")
    else:
        yield Point(naming.path(ns, key, RATE), summary, "average")
        if naming.flush_counts:
            yield Point(naming.path(ns, key, COUNT), raw, "sum")


# How each timer statistic rolls up over time, by the start of its name (percentile variants
# `count_90`, `sum_squares_90`, `upper_99_9` follow their base; first match wins): counts and
# sums add up, bounds keep the extreme, the rest (mean, median, std, count_ps) average.
TIMER_ROLLUPS = (
    ("count_ps", "average"),
    ("count", "sum"),
    ("sum", "sum"),
    ("upper", "max"),
    ("lower", "min"),
)


@functools.cache  # a handful of names, asked for by every timer of every flush
def stat_rollup(stat: str) -> str:
    return next((rollup for start, rollup in TIMER_ROLLUPS if stat.startswith(start)), "average")


def timer_points(
    naming: GraphiteNaming, ns: list[str], key: str, raw: TimerSeries, summary: TimerData
) -> Iterator[Point]:
    head, tail = naming.split(ns, key)
    for stat, value in summary.items():
        if isinstance(value, dict):
            for bin_name, freq in value.items():
                yield Point(f"{head}{stat}.{bin_name}{tail}", freq, "sum")
        else:
            yield Point(head + stat + tail, value, stat_rollup(stat))


def timer_lines(naming: GraphiteNaming, table: str, summaries: dict[str, TimerData], ts: str) -> list[str]:
    """timer_points' plaintext: a flush of 10k timers is 140k lines, so no Point, path() or
    generator per line, and each key's head and tail from the last flush's; with the native hot
    path, the extension writes them (native/src/lines.rs: ~10x faster, the same bytes)."""
    splits = naming.splits_of(table, summaries)
    if naming.native and (text := _native.timer_lines(summaries, splits, ts)) is not None:
        return [text]
    out: list[str] = []
    for key, summary in summaries.items():
        head, tail = splits[key]
        for stat, value in summary.items():
            if value.__class__ is dict:
                out += [f"{head}{stat}.{b}{tail} {number(n)}{ts}" for b, n in value.items()]  # type: ignore[union-attr]
            else:
                out.append(f"{head}{stat}{tail} {number(value)}{ts}")  # type: ignore[arg-type]
    return out


def gauge_points(
    naming: GraphiteNaming, ns: list[str], key: str, raw: float, summary: float
) -> Iterator[Point]:
    yield Point(naming.path(ns, key), summary, "last")


def set_points(
    naming: GraphiteNaming, ns: list[str], key: str, raw: set[str], summary: int
) -> Iterator[Point]:
    # distinct values of several intervals cannot be added: the largest is a lower bound
    yield Point(naming.path(ns, key, COUNT), summary, "max")


# By the kind's table name. A kind without an entry is not sent to carbon, the file's plaintext
# or the store (kinds.outputs logs it once). The names and legacy parts are common's layout, the
# one `webops check` resolves names with.
GRAPHITE: dict[str, GraphiteKind] = {
    "counters": GraphiteKind(*KINDS["counters"], counter_points),
    "timers": GraphiteKind(*KINDS["timers"], timer_points, timer_lines),
    "gauges": GraphiteKind(*KINDS["gauges"], gauge_points),
    "sets": GraphiteKind(*KINDS["sets"], set_points),
}
