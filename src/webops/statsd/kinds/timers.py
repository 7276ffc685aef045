"""Timers (`|ms`, and DogStatsD's `|h` histograms and `|d` distributions, which Etsy treats the
same): every sample of the interval is kept, and a flush computes Etsy's statistics (count,
percentiles, histogram bins...; the maths is in timerstats.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..timerstats import TimerData, summarize_timers
from ..validate import Key, number, str_list
from . import register
from .base import Kind, Value, bad, number_value


def _pcts(v: Any) -> list[float]:
    items = v if isinstance(v, list) else [v]
    out = []
    for item in items:
        n = number()(item)
        if n == 0 or not -100 <= n <= 100:
            raise ValueError(f"percentiles must be between -100 and 100 and not 0, got {item!r}")
        out.append(n)
    return out


def _histogram(v: Any) -> list[dict]:
    if not isinstance(v, list):
        raise ValueError(f"expected a list of {{metric, bins}}, got {v!r}")
    for entry in v:
        if not isinstance(entry, dict) or not isinstance(entry.get("bins", []), list):
            raise ValueError(f"each entry needs metric and a bins list, got {entry!r}")
        for b in entry.get("bins", []):
            if b != "inf":
                number()(b)
    return v


@dataclass(slots=True)
class TimerSeries:
    """One timer's interval: its samples, and how many it stands for (`1 / rate` each)."""

    samples: list[float] = field(default_factory=list)
    count: float = 0


@register
class Timers(Kind):
    table = "timers"
    codes = ("ms", "h", "d")
    order = 1
    delete_doc = "drop idle timers instead of sending count 0"
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {
        "percentThreshold": Key([90], _pcts, "timer percentile(s); negative = top percentiles"),
        "histogram": Key([], _histogram, "timer histograms: [{metric, bins: [..., 'inf']}]"),
        "calculatedTimerMetrics": Key([], str_list, "timer stats to send (empty: all)"),
    }

    @staticmethod
    def parse(raw: str, code: str, rate: float) -> Value:
        value = number_value(raw, code, rate)
        if isinstance(value, tuple):
            return value
        if code == "ms" and value < 0:
            return bad(f"negative timer value {raw!r}")
        return ("ms", value, rate, False)

    def add(self, key: str, value: float, rate: float, delta: bool) -> None:
        timer = self.series.get(key)
        if timer is None and (timer := self.created(key)) is None:
            return
        timer.samples.append(value)
        timer.count += 1 / rate

    def empty(self) -> TimerSeries:
        return TimerSeries()

    @staticmethod
    def copy(state: TimerSeries) -> TimerSeries:
        return TimerSeries(list(state.samples), state.count)

    @staticmethod
    def absorb(mine: TimerSeries, theirs: TimerSeries) -> None:
        mine.samples.extend(theirs.samples)
        mine.count += theirs.count

    @classmethod
    def summarize(
        cls, table: dict[str, TimerSeries], settings: Any
    ) -> tuple[dict[str, TimerData], list[str]]:
        """Etsy's process_metrics for timers: the CPU-heavy part of a flush."""
        options = settings.options
        return summarize_timers(
            table,
            options["percentThreshold"],
            settings.flush_interval_ms,
            options["histogram"],
            options["calculatedTimerMetrics"],
            settings.native_timers,
        )
