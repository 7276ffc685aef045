"""What every backend receives at a flush: the interval's raw tables and what each metric kind
derives from them (Etsy's process_metrics: counter rates, timer statistics, set sizes)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import hotpath
from .aggregate import Interval, merge_intervals
from .kinds import KINDS, default_options


@dataclass(frozen=True)
class SummarySettings:
    flush_interval_ms: int = 10000
    options: Mapping[str, Any] = field(default_factory=default_options)  # the kinds' own keys
    # timer statistics in the extension (timerstats.summarize_timers) where the hot path is native
    native_timers: bool = field(default_factory=lambda: hotpath.default() == "native")


@dataclass
class Snapshot:
    """One flush. Backends must treat it as read-only: several of them share it.

    `tables[kind]` holds the interval's raw data, `summaries[kind]` what a flush sends per series;
    the properties give them Etsy's names (its backends' `metrics` object)."""

    timestamp: int
    flush_interval_ms: int
    tables: dict[str, dict[str, Any]]
    summaries: dict[str, dict[str, Any]]
    options: Mapping[str, Any]
    statsd_metrics: dict[str, float] = field(default_factory=dict)
    non_finite: list[str] = field(default_factory=list)  # series left out: a value overflowed
    time_ms: int = 0  # the exact time the flush covers up to (ms; `timestamp` is whole seconds)

    def __post_init__(self) -> None:
        self.time_ms = self.time_ms or self.timestamp * 1000

    counters = property(lambda self: self.tables["counters"])
    counter_rates = property(lambda self: self.summaries["counters"])
    timers = property(lambda self: self.tables["timers"])
    timer_data = property(lambda self: self.summaries["timers"])
    gauges = property(lambda self: self.summaries["gauges"])
    sets = property(lambda self: self.tables["sets"])
    pct_threshold = property(lambda self: self.options["percentThreshold"])

    @property
    def num_stats(self) -> int:
        """Etsy's numStats: how many series this flush carries."""
        return sum(len(summary) for summary in self.summaries.values())


def summarize(interval: Interval, settings: SummarySettings) -> Snapshot:
    """Every kind's flush maths (timer statistics are the CPU-heavy part)."""
    started = time.perf_counter()
    summaries: dict[str, dict[str, Any]] = {}
    non_finite: list[str] = []
    for kind in KINDS:
        summaries[kind.table], left_out = kind.summarize(interval.tables[kind.table], settings)
        non_finite += left_out
    return Snapshot(
        timestamp=interval.timestamp,
        flush_interval_ms=settings.flush_interval_ms,
        tables=interval.tables,
        summaries=summaries,
        options=settings.options,
        statsd_metrics={"processing_time": round((time.perf_counter() - started) * 1000)},
        non_finite=non_finite,
        time_ms=interval.time_ms,
    )


def merge(older: Snapshot, newer: Snapshot) -> Snapshot:
    """Two flushes as one, for a backend that fell behind (the store catching up): the raw data
    of both intervals combined and summarized again over their joint length, stamped with the
    newer's time. Counts add up, rates cover both intervals, timer percentiles are those of
    every sample, gauges keep the newer value: what one flush of that length would have sent."""
    tables = merge_intervals(
        Interval(older.timestamp, older.tables), Interval(newer.timestamp, newer.tables)
    ).tables
    interval = Interval(newer.timestamp, tables, newer.time_ms)
    merged = summarize(
        interval, SummarySettings(older.flush_interval_ms + newer.flush_interval_ms, newer.options)
    )
    merged.statsd_metrics = {**newer.statsd_metrics, **merged.statsd_metrics}
    return merged
