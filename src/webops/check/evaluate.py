"""The maths of a check, pure: a window's points to one value, a change against an earlier
window, and graphite-web's Holt-Winters confidence bands.

Nulls: a null point (Graphite's "no value in this slot") is ignored by every aggregation; a window
whose points are all null, or that has none, has no value (None), which the check calls stale.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ..common.holtwinters import analysis

Points = Sequence[float | None]

AGGREGATIONS = ("avg", "max", "min", "sum", "last", "pNN")
_PERCENTILE = re.compile(r"p(\d+(?:\.\d+)?)")


def check_agg(name: str) -> str:
    """`avg`, `max`, `min`, `sum`, `last`, or `pNN` (any percentile, 0 <= NN <= 100: p95, p99.9;
    p0 is the lowest value, as graphite-web's nearest rank gives it)."""
    if name in ("avg", "max", "min", "sum", "last"):
        return name
    m = _PERCENTILE.fullmatch(name)
    if m and 0 <= float(m[1]) <= 100:
        return name
    raise ValueError(f"expected avg, max, min, sum, last or pNN (p95, p99.9), got {name!r}")


def aggregate(points: Points, agg: str) -> float | None:
    known = [p for p in points if p is not None and not math.isnan(p)]
    if not known:
        return None
    if agg == "avg":
        return math.fsum(known) / len(known)
    if agg == "max":
        return max(known)
    if agg == "min":
        return min(known)
    if agg == "sum":
        return math.fsum(known)
    if agg == "last":
        return known[-1]
    m = _PERCENTILE.fullmatch(agg)
    if not m:
        raise ValueError(f"unknown aggregation {agg!r}")
    return percentile(known, float(m[1]))


def percentile(points: Sequence[float], n: float) -> float:
    """graphite-web's `_getPercentile(points, n)` (nearest rank, no interpolation), as
    percentileOfSeries and nPercentile compute it."""
    ordered = sorted(points)
    fractional = (n / 100.0) * (len(ordered) + 1)
    rank = int(fractional)
    rank += math.ceil(fractional - rank)
    if rank == 0:
        return ordered[0]
    if rank - 1 >= len(ordered):
        return ordered[-1]
    return ordered[rank - 1]


def change(now: float, before: float, relative: bool) -> float:
    """now - before, or (`relative`) that in percent of |before|; from 0 to anything else the
    relative change is infinite (signed), 0 to 0 is no change."""
    diff = now - before
    if not relative:
        return diff
    if before == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / abs(before) * 100.0


# --- Holt-Winters, ported from graphite-web 1.1 (render/functions.py) ----------------------------


def holt_winters(values: Points, step: int, seasonality: int = 86400) -> tuple[list, list]:
    """graphite-web's holtWintersAnalysis (common/holtwinters.py): (predictions, deviations), one
    per input point, with its handling of nulls (prediction carried, deviation 0)."""
    return analysis(values, seasonality // step)


def confidence_bands(
    values: Points, step: int, bootstrap: int, delta: float = 3, seasonality: int = 86400
) -> tuple[list, list]:
    """graphite-web's holtWintersConfidenceBands on a series fetched `bootstrap` seconds before the
    window: (lower, upper) for the window's points only (the first bootstrap // step dropped)."""
    predictions, deviations = holt_winters(values, step, seasonality)
    skip = bootstrap // step
    lower: list[float | None] = []
    upper: list[float | None] = []
    for forecast, deviation in zip(predictions[skip:], deviations[skip:], strict=True):
        if forecast is None or deviation is None:
            lower.append(None)
            upper.append(None)
        else:
            lower.append(forecast - delta * deviation)
            upper.append(forecast + delta * deviation)
    return lower, upper
