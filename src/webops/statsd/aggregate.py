"""The daemon's state between flushes, and how each sample changes it (Etsy's stats.js semantics).

`Aggregator.ingest` is the hot path: it must stay cheap per line. Everything heavy (sorting
timers, percentiles) happens on the `Interval` handed out by `take()`, off the receive path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .protocol import BadLine, Sample, parse_line, split_packet


@dataclass
class AggregationSettings:
    """The config keys that decide how samples accumulate and what a flush resets."""

    prefix_stats: str = "statsd"
    sanitize: bool = True
    delete_counters: bool = False
    delete_timers: bool = False
    delete_gauges: bool = False
    delete_sets: bool = False
    gauges_max_ttl: int = 1
    key_flush: bool = False  # count keys for Etsy's keyFlush log


@dataclass
class Interval:
    """Everything accepted during one flush interval, detached from the live aggregator."""

    timestamp: int
    counters: dict[str, float]
    timers: dict[str, list[float]]
    timer_counters: dict[str, float]
    gauges: dict[str, float]
    sets: dict[str, set[str]]


@dataclass
class Totals:
    """Cumulative counts since start (the console's `stats` and benchmarks read these)."""

    packets_received: int = 0
    metrics_received: int = 0
    bad_lines_seen: int = 0
    last_msg_seen: float = 0.0


BadLineHook = Callable[[BadLine], None]


@dataclass
class Aggregator:
    settings: AggregationSettings = field(default_factory=AggregationSettings)
    on_bad_line: BadLineHook | None = None
    counters: dict[str, float] = field(default_factory=dict)
    timers: dict[str, list[float]] = field(default_factory=dict)
    timer_counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    gauge_ttl: dict[str, int] = field(default_factory=dict)
    sets: dict[str, set[str]] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)
    key_counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.configure(self.settings)

    def configure(self, settings: AggregationSettings) -> None:
        """Apply (re)loaded settings; Etsy resets its own three counters to 0 when it does this."""
        self.settings = settings
        prefix = settings.prefix_stats
        self.k_packets = f"{prefix}.packets_received"
        self.k_metrics = f"{prefix}.metrics_received"
        self.k_bad = f"{prefix}.bad_lines_seen"
        self.k_lag = f"{prefix}.timestamp_lag"
        for k in (self.k_packets, self.k_metrics, self.k_bad):
            self.counters.setdefault(k, 0)

    # --- intake -------------------------------------------------------------------------

    def ingest(self, data: bytes, now: float = 0.0) -> None:
        """One packet (or one chunk of complete TCP lines)."""
        lines = split_packet(data)
        counters = self.counters
        counters[self.k_packets] += 1
        counters[self.k_metrics] += len(lines)
        totals = self.totals
        totals.packets_received += 1
        totals.metrics_received += len(lines)
        if now:
            totals.last_msg_seen = now
        sanitize = self.settings.sanitize
        for line in lines:
            for item in parse_line(line, sanitize):
                if type(item) is Sample:
                    self.add(item)
                else:
                    self.bad(item)  # type: ignore[arg-type]

    def bad(self, item: BadLine) -> None:
        self.counters[self.k_bad] += 1
        self.totals.bad_lines_seen += 1
        if self.on_bad_line is not None:
            self.on_bad_line(item)

    def add(self, s: Sample) -> None:
        key, kind = s.key, s.kind
        if self.settings.key_flush:
            self.key_counts[key] += 1
        if kind == "c":
            self.counters[key] = self.counters.get(key, 0) + s.value / s.rate  # type: ignore[operator]
        elif kind == "ms":
            values = self.timers.get(key)
            if values is None:
                values = self.timers[key] = []
                self.timer_counters[key] = 0
            values.append(s.value)  # type: ignore[arg-type]
            self.timer_counters[key] += 1 / s.rate
        elif kind == "g":
            if self.settings.delete_gauges:
                self.gauge_ttl[key] = self.settings.gauges_max_ttl
            if s.delta and key in self.gauges:
                self.gauges[key] += s.value  # type: ignore[operator]
            else:
                self.gauges[key] = s.value  # type: ignore[assignment]
        else:
            values_set = self.sets.get(key)
            if values_set is None:
                values_set = self.sets[key] = set()
            values_set.add(s.value)  # type: ignore[arg-type]

    # --- flush --------------------------------------------------------------------------

    def take(self, timestamp: int, lag: float | None = None) -> Interval:
        """Detach this interval's data and reset for the next one, as Etsy's clear_metrics does.

        Counters/timers/sets are swapped out (cheap); idle ones are re-created empty unless the
        matching delete* option says to forget them. Gauges persist and are copied.
        """
        s = self.settings
        if lag is not None:
            self.gauges[self.k_lag] = lag
        interval = Interval(
            timestamp, self.counters, self.timers, self.timer_counters, dict(self.gauges), self.sets
        )
        own = (self.k_packets, self.k_metrics, self.k_bad)
        if s.delete_counters:
            self.counters = dict.fromkeys(own, 0)
        else:
            self.counters = dict.fromkeys(interval.counters, 0)
        if s.delete_timers:
            self.timers, self.timer_counters = {}, {}
        else:
            self.timers = {k: [] for k in interval.timers}
            self.timer_counters = dict.fromkeys(interval.timers, 0)
        self.sets = {} if s.delete_sets else {k: set() for k in interval.sets}
        if s.delete_gauges:
            for key in list(self.gauge_ttl):
                self.gauge_ttl[key] -= 1
                if self.gauge_ttl[key] < 1:
                    del self.gauge_ttl[key]
                    self.gauges.pop(key, None)
        return interval

    def take_key_counts(self) -> Counter[str]:
        counts, self.key_counts = self.key_counts, Counter()
        return counts

    # --- management console -------------------------------------------------------------

    def table(self, kind: str) -> dict:
        return {"counters": self.counters, "timers": self.timers, "gauges": self.gauges, "sets": self.sets}[
            kind
        ]

    def delete(self, kind: str, patterns: Iterable[str]) -> list[tuple[str, list[str]]]:
        """Etsy's delete_stats: exact names, or `folder.*` for everything under a prefix."""
        table = self.table(kind)
        result = []
        for pattern in patterns:
            matches = [pattern] if pattern in table else []
            if pattern.endswith(".*"):
                folder = pattern[:-1]
                matches += [k for k in table if k.startswith(folder) and k != pattern]
            for key in matches:
                table.pop(key, None)
                if kind == "timers":
                    self.timer_counters.pop(key, None)
                if kind == "gauges":
                    self.gauge_ttl.pop(key, None)
            result.append((pattern, matches))
        return result
