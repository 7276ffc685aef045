"""Timer statistics exactly as Etsy's lib/process_metrics.js computes them.

Kept free of I/O and state so the percentile maths can be checked against Etsy's documented
semantics value by value.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from itertools import accumulate
from operator import mul
from typing import TYPE_CHECKING, Protocol

from ..common.graphite_layout import pct_suffix
from .jsfmt import number

if TYPE_CHECKING:
    from . import _native

try:  # the same maths in Rust, a whole flush in one call (native/src/stats.rs)
    from ._native import TimerPlan
except ImportError:  # not built here: the reference computes every flush
    TimerPlan = None  # type: ignore[assignment,misc]  # checked before use

TimerData = dict[str, "float | dict[str, int]"]


class Series(Protocol):
    """A timer's interval (kinds.timers.TimerSeries)."""

    samples: list[float]
    count: float


def js_round(x: float) -> int:
    """Math.round: halves go up (Python's round() goes to even)."""
    return math.floor(x + 0.5)


@functools.cache
def _pct_names(pct: float) -> tuple[str, str, str, str, str]:
    suffix = pct_suffix(pct)
    bound = ("upper_" if pct > 0 else "lower_") + suffix
    return "count_" + suffix, "mean_" + suffix, bound, "sum_" + suffix, "sum_squares_" + suffix


def histogram_bins(key: str, histogram: Sequence[dict]) -> list:
    """The bins of the first histogram entry whose `metric` is a substring of key (Etsy: first wins)."""
    for entry in histogram:
        if str(entry.get("metric", "")) in key:
            return list(entry.get("bins", []))
    return []


def timer_stats(
    values: list[float],
    count: float,
    pcts: Sequence[float],
    flush_interval_ms: float,
    bins: Sequence[float | str] = (),
) -> TimerData:
    """Stats of one timer's values for one interval; `count` is the sample-rate-weighted count.

    `values` is sorted in place (Etsy sorts too, and the console shows them sorted afterwards).
    """
    per_second = flush_interval_ms / 1000
    if not values:
        return {"count": 0, "count_ps": 0}
    values.sort()
    n = len(values)
    lo, hi = values[0], values[-1]
    cumul = list(accumulate(values))
    cumul_sq = list(accumulate(map(mul, values, values)))
    data: TimerData = {}
    for pct in pcts:
        k_count, k_mean, k_bound, k_sum, k_sum_sq = _pct_names(pct)
        if n > 1:
            in_threshold = js_round(abs(pct) / 100 * n)
            if in_threshold == 0:
                continue
            if pct > 0:
                boundary = values[in_threshold - 1]
                total = cumul[in_threshold - 1]
                total_sq = cumul_sq[in_threshold - 1]
            else:
                boundary = values[n - in_threshold]
                before = n - in_threshold - 1
                total = cumul[-1] - (cumul[before] if before >= 0 else 0)
                total_sq = cumul_sq[-1] - (cumul_sq[before] if before >= 0 else 0)
            data[k_count] = in_threshold
            data[k_mean] = total / in_threshold
        else:
            boundary, total, total_sq = hi, lo, lo * lo
            data[k_count] = n
            data[k_mean] = lo
        data[k_bound] = boundary
        data[k_sum] = total
        data[k_sum_sq] = total_sq
    total = cumul[-1]
    mean = total / n
    mid = n // 2
    deviations = [v - mean for v in values]
    data["std"] = math.sqrt(sum(map(mul, deviations, deviations)) / n)
    data["upper"] = hi
    data["lower"] = lo
    data["count"] = count
    data["count_ps"] = count / per_second
    data["sum"] = total
    data["sum_squares"] = cumul_sq[-1]
    data["mean"] = mean
    data["median"] = values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2
    if bins:
        data["histogram"] = _histogram(values, bins)
    return data


def _histogram(values: list[float], bins: Sequence[float | str]) -> dict[str, int]:
    """Counts per bin `[previous bound, bound)`; values past the last bound are left out, by design."""
    out: dict[str, int] = {}
    i, n = 0, len(values)
    for bound in bins:
        start = i
        if bound == "inf":
            i = n
        else:
            while i < n and values[i] < float(bound):
                i += 1
        out[_bin_label(bound)] = i - start
    return out


def _bin_label(bound: float | str) -> str:
    """Etsy's name of a histogram bin: `bin_7_5`, `bin_inf`."""
    label = bound if isinstance(bound, str) else number(bound)
    return "bin_" + label.replace(".", "_", 1)


# Etsy's filter_timer_metrics, to the letter: a trailing `_<digits>` or `_top<digits>` becomes
# `_percent`, so `mean_top10` is selected by `mean_percent` and `upper_99_9` by `upper_99_percent`.
_PCT_STAT = re.compile(r"_(top)?\d+$")


def filter_stats(data: TimerData, wanted: Sequence[str]) -> TimerData:
    """Etsy's calculatedTimerMetrics: keep only the listed stats (`upper_percent`, `mean_top_percent`...)."""
    if not wanted:
        return data
    keep = set(wanted)
    return {k: v for k, v in data.items() if _PCT_STAT.sub("_percent", k, count=1) in keep}


def summarize_timers(
    table: Mapping[str, Series],
    pcts: Sequence[float],
    flush_interval_ms: float,
    histogram: Sequence[dict],
    wanted: Sequence[str],
    native: bool,
) -> tuple[dict[str, TimerData], list[str]]:
    """Every timer's stats for one flush, and the timers left out because a value overflowed.
    `native`: in one call to the extension where it is built; the results are the reference's
    float for float (tests/statsd/test_timerstats.py holds them equal)."""
    if native and TimerPlan is not None and (plan := native_plan(pcts, flush_interval_ms, histogram, wanted)):
        got = plan.summarize(table)
        if got is not None:  # None: a sample that is not a float, which only the reference takes
            return got["summaries"], got["non_finite"]
    return summarize_reference(table, pcts, flush_interval_ms, histogram, wanted)


def summarize_reference(
    table: Mapping[str, Series],
    pcts: Sequence[float],
    flush_interval_ms: float,
    histogram: Sequence[dict],
    wanted: Sequence[str],
) -> tuple[dict[str, TimerData], list[str]]:
    out: dict[str, TimerData] = {}
    left_out = []
    for key, timer in table.items():
        bins = histogram_bins(key, histogram) if histogram else []
        try:
            data = timer_stats(timer.samples, timer.count, pcts, flush_interval_ms, bins)
        except (OverflowError, ValueError):  # JS rounding of an infinite mean
            data = {"sum": math.inf}
        if not all(math.isfinite(v) for v in data.values() if isinstance(v, float)):
            left_out.append(key)  # values near 1e308 whose sum overflowed
            continue
        out[key] = filter_stats(data, wanted)
    return out, left_out


_FIXED_STATS = (
    "std",
    "upper",
    "lower",
    "count",
    "count_ps",
    "sum",
    "sum_squares",
    "mean",
    "median",
    "histogram",
)


def native_plan(
    pcts: Sequence[float], flush_interval_ms: float, histogram: Sequence[dict], wanted: Sequence[str]
) -> TimerPlan | None:
    """The extension's TimerPlan for this config: every name spelled here, once per flush, and
    filtered by calculatedTimerMetrics; None when a bin is no number (the reference leaves the
    timers it applies to out)."""
    assert TimerPlan is not None
    names = [_pct_names(p) for p in pcts]
    keep = [*filter_stats(dict.fromkeys([*(n for five in names for n in five), *_FIXED_STATS], 0.0), wanted)]
    histograms: list[_native._Histogram] = []
    for entry in histogram:
        bins = list(entry.get("bins", []))
        try:
            bounds = [None if b == "inf" else float(b) for b in bins]
        except (TypeError, ValueError):
            return None
        labels = [_bin_label(b) for b in bins]
        histograms.append({"metric": str(entry.get("metric", "")), "bounds": bounds, "labels": labels})
    percentiles: list[_native._Percentile] = [
        {"pct": p, "count": count, "mean": mean, "bound": bound, "sum": sum_, "sum_squares": sum_sq}
        for p, (count, mean, bound, sum_, sum_sq) in zip(pcts, names, strict=True)
    ]
    return TimerPlan(flush_interval_ms / 1000, percentiles, keep if wanted else None, histograms)
