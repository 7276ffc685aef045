"""Timer statistics exactly as Etsy's lib/process_metrics.js computes them.

Kept free of I/O and state so the percentile maths can be checked against Etsy's documented
semantics value by value.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from itertools import accumulate
from operator import mul

from ..common.graphite_layout import pct_suffix
from .jsfmt import number

TimerData = dict[str, "float | dict[str, int]"]


def js_round(x: float) -> int:
    """Math.round: halves go up (Python's round() goes to even)."""
    return math.floor(x + 0.5)


@functools.cache
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
        label = bound if isinstance(bound, str) else number(bound)
        out["bin_" + label.replace(".", "_", 1)] = i - start
    return out


# Etsy's filter_timer_metrics, to the letter: a trailing `_<digits>` or `_top<digits>` becomes
# `_percent`, so `mean_top10` is selected by `mean_percent` and `upper_99_9` by `upper_99_percent`.
_PCT_STAT = re.compile(r"_(top)?\d+$")


def filter_stats(data: TimerData, wanted: Sequence[str]) -> TimerData:
    """Etsy's calculatedTimerMetrics: keep only the listed stats (`upper_percent`, `mean_top_percent`...)."""
    if not wanted:
        return data
    keep = set(wanted)
    return {k: v for k, v in data.items() if _PCT_STAT.sub("_percent", k, count=1) in keep}
