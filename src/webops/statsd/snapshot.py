"""What every backend receives at a flush: the interval's raw data and Etsy's derived values."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .aggregate import Interval
from .timerstats import TimerData, filter_stats, histogram_bins, timer_stats


@dataclass(frozen=True)
class SummarySettings:
    flush_interval_ms: int = 10000
    pct_threshold: tuple[float, ...] = (90,)
    histogram: tuple[dict, ...] = ()
    calculated_timer_metrics: tuple[str, ...] = ()


@dataclass
class Snapshot:
    """One flush. Backends must treat it as read-only: several of them share it."""

    timestamp: int
    flush_interval_ms: int
    counters: dict[str, float]
    counter_rates: dict[str, float]
    timers: dict[str, list[float]]
    timer_data: dict[str, TimerData]
    gauges: dict[str, float]
    sets: dict[str, set[str]]
    pct_threshold: Sequence[float]
    statsd_metrics: dict[str, float] = field(default_factory=dict)
    non_finite: list[str] = field(default_factory=list)  # series left out: a sum overflowed

    @property
    def num_stats(self) -> int:
        """Etsy's numStats: how many series this flush carries."""
        return len(self.counters) + len(self.timer_data) + len(self.gauges) + len(self.sets)


def summarize(interval: Interval, settings: SummarySettings) -> Snapshot:
    """Etsy's process_metrics: counter rates and timer statistics (the CPU-heavy part of a flush)."""
    started = time.perf_counter()
    per_second = settings.flush_interval_ms / 1000
    non_finite = _drop_non_finite(interval.counters) + _drop_non_finite(interval.gauges)
    rates = {k: v / per_second for k, v in interval.counters.items()}
    timer_data: dict[str, TimerData] = {}
    for key, values in interval.timers.items():
        bins = histogram_bins(key, settings.histogram) if settings.histogram else []
        try:
            data = timer_stats(
                values,
                interval.timer_counters.get(key, 0),
                settings.pct_threshold,
                settings.flush_interval_ms,
                bins,
            )
        except (OverflowError, ValueError):  # JS rounding of an infinite mean
            data = {"sum": math.inf}
        if not all(math.isfinite(v) for v in data.values() if isinstance(v, float)):
            non_finite.append(key)  # values near 1e308 whose sum overflowed: no backend can use it
            continue
        timer_data[key] = filter_stats(data, settings.calculated_timer_metrics)
    return Snapshot(
        timestamp=interval.timestamp,
        flush_interval_ms=settings.flush_interval_ms,
        counters=interval.counters,
        counter_rates=rates,
        timers=interval.timers,
        timer_data=timer_data,
        gauges=interval.gauges,
        sets=interval.sets,
        pct_threshold=settings.pct_threshold,
        statsd_metrics={"processing_time": round((time.perf_counter() - started) * 1000)},
        non_finite=non_finite,
    )


def _drop_non_finite(table: dict[str, float]) -> list[str]:
    """Remove the series whose value is no longer a finite number (a sum that overflowed):
    carbon, JSON and Prometheus cannot carry Infinity, and one such value must not break a flush."""
    bad = [k for k, v in table.items() if v - v != 0]
    for k in bad:
        del table[k]
    return bad
