"""Functions that compute new series from each one's history: graphite-web's Calculate group
(moving windows, percentiles, linear regression, Holt-Winters). Those that look back before the
request fetch their first argument again, further back, as graphite-web does; that fetch is
charged to the render's budget like any other."""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import replace

from ....common.holtwinters import analysis as holt_winters
from .combine import constant_line, percentile
from .core import (
    AGG,
    MS,
    Context,
    Series,
    SeriesList,
    TargetError,
    Value,
    _interval_ms,
    agg_func,
    register,
)

_UNIT = 1074  # every finite float is a whole number of 2**-1074, the smallest step between floats


class _WindowSum:
    """The known values of a sliding window, their sum kept exactly: one integer count of
    2**-1074, so a value can leave the window without a trace (a running float sum forgets the 1
    beside 1e20 and never gets it back). Infinities and NaN are counted aside."""

    def __init__(self) -> None:
        self.exact = 0
        self.known = 0
        self.odd: Counter[str] = Counter()

    def add(self, v: Value, sign: int = 1) -> None:
        if v is None:
            return
        self.known += sign
        if math.isfinite(v):
            n, d = float(v).as_integer_ratio()  # d is a power of two, at most 2**1074
            self.exact += sign * (n << (_UNIT + 1 - d.bit_length()))
        else:
            self.odd[repr(float(v))] += sign

    def mean(self) -> Value:
        """What graphite-web's sum(known) / len(known) gives, the sum rounded once."""
        if not self.known:
            return None
        odd = [float(k) for k, n in self.odd.items() if n]
        if odd:  # inf + -inf is nan, as summing them in order would give
            return sum(odd) / self.known
        try:
            total = self.exact / (1 << _UNIT)  # int / int: correctly rounded
        except OverflowError:
            total = math.copysign(math.inf, self.exact)
        return total / self.known


Window = Callable[[list[Value], int, float], Iterator[Value]]


def _known_enough(known: int, points: int, xff: float) -> bool:
    return known > 0 and known / points >= xff


def _sums(values: list[Value], points: int, xff: float) -> Iterator[Value]:
    window = _WindowSum()
    for i, v in enumerate(values):
        if i >= points:
            mean = window.mean()
            yield (
                None if mean is None or not _known_enough(window.known, points, xff) else mean * window.known
            )
            window.add(values[i - points], -1)
        window.add(v)


def _extreme(pick: Callable[[float, float], bool]) -> Window:
    """The min or max of each window, kept in a monotonic deque: one pass, whatever the window."""

    def run(values: list[Value], points: int, xff: float) -> Iterator[Value]:
        best: deque[int] = deque()  # indices of known values, their values in `pick` order
        known = 0
        for i, v in enumerate(values):
            if i >= points:
                while best and best[0] < i - points:
                    best.popleft()
                yield values[best[0]] if best and _known_enough(known, points, xff) else None
                if values[i - points] is not None:
                    known -= 1
            if v is not None:
                while best and not pick(values[best[-1]], v):  # type: ignore[arg-type]
                    best.pop()
                best.append(i)
                known += 1

    return run


def _medians(values: list[Value], points: int, xff: float) -> Iterator[Value]:
    window: list[float] = []  # the known values of the window, sorted
    for i, v in enumerate(values):
        if i >= points:
            yield AGG["median"](window) if _known_enough(len(window), points, xff) else None
            old = values[i - points]
            if old is not None:
                del window[bisect.bisect_left(window, old)]
        if v is not None:
            bisect.insort(window, v)


def _means(values: list[Value], points: int, xff: float) -> Iterator[Value]:
    window = _WindowSum()
    for i, v in enumerate(values):
        if i >= points:
            yield window.mean() if _known_enough(window.known, points, xff) else None
            window.add(values[i - points], -1)
        window.add(v)


WINDOWS: dict[str, Window] = {
    "sum": _sums,
    "min": _extreme(lambda a, b: a <= b),
    "max": _extreme(lambda a, b: a >= b),
    "median": _medians,
    "average": _means,
}


def _moving(
    ctx: Context, series: list[Series], window: int | str, func: str, xff: float, function: str
) -> list[Series]:
    """graphite-web's movingWindow: for each point, `func` of the `window` points before it,
    the first ones filled from data fetched further back."""
    if not series:
        return []
    if isinstance(window, str):
        span = _interval_ms(window)
    elif window >= 1:
        span = max(s.step for s in series) * window
    else:
        raise TargetError(f"{function}: the argument windowSize is at least one point, not {window!r}")
    label = "moving" + func.capitalize()
    out = []
    for s in ctx.budget.each(ctx.refetch(span)):
        points = span // s.step if isinstance(window, str) else window
        if points < 1:
            raise TargetError(f"{function}: a window of {window!r} is shorter than a step")
        shown = f'"{window}"' if isinstance(window, str) else str(window)
        name = f"{label}({s.name},{shown})"
        values = list(WINDOWS[func](s.values, points, xff))
        out.append(replace(s, name=name, path_expression=name, start=s.start + span, values=values))
    return out


def _moving_function(func: str) -> Callable[..., list[Series]]:
    def run(
        ctx: Context, series: SeriesList, windowSize: int | str, xFilesFactor: float = 0.0
    ) -> list[Series]:
        return _moving(ctx, series, windowSize, func, xFilesFactor, "moving" + func.capitalize())

    run.__doc__ = f'The {func} of the windowSize points (or the interval, "5min") before each point.'
    return run


for _func in ("average", "sum", "min", "max", "median"):
    register("Calculate", "moving" + _func.capitalize())(_moving_function(_func))


@register("Calculate", "movingWindow")
def moving_window(
    ctx: Context, series: SeriesList, windowSize: int | str, func: str = "average", xFilesFactor: float = 0.0
) -> list[Series]:
    """An aggregate (average, sum, min, max, median) of the windowSize points before each point."""
    if func not in WINDOWS:
        raise TargetError(f"movingWindow: the argument func is one of {', '.join(WINDOWS)}, not {func!r}")
    return _moving(ctx, series, windowSize, func, xFilesFactor, "movingWindow")


@register("Calculate", "nPercentile")
def n_percentile(ctx: Context, series: SeriesList, n: float) -> list[Series]:
    """A line at the n-th percentile of each series' values."""
    if not n:
        raise TargetError("nPercentile: the argument n is a percent greater than 0")
    out = []
    for s in ctx.budget.each(series):
        value = percentile(s.values, n)
        if value is not None:
            name = f"nPercentile({s.name}, {n:g})"
            out.append(replace(s, name=name, path_expression=name, values=[value] * len(s.values)))
    return out


@register("Calculate", "aggregateLine")
def aggregate_line(
    ctx: Context, series: SeriesList, func: str = "average", keepStep: bool = False
) -> list[Series]:
    """A line at an aggregate (func) of each series' values."""
    agg = agg_func("aggregateLine", func)
    out = []
    for s in ctx.budget.each(series):
        value = agg(s.values)
        name = f"aggregateLine({s.name}, {'None' if value is None else format(value, 'g')})"
        if keepStep:
            out.append(replace(s, name=name, path_expression=name, values=[value] * len(s.values)))
        else:
            line = constant_line(ctx, value)[0]  # type: ignore[arg-type]
            out.append(replace(line, name=name, path_expression=name))
    return out


@register("Calculate", "linearRegression")
def linear_regression(
    ctx: Context, series: SeriesList, startSourceAt: str = "", endSourceAt: str = ""
) -> list[Series]:
    """The least-squares line through each series' known values, drawn over its range."""
    if startSourceAt or endSourceAt:  # graphite-web fits another window: not here (yet)
        raise TargetError("linearRegression: startSourceAt and endSourceAt are not supported")
    start, end = ctx.span("linearRegression")
    out = []
    for s in ctx.budget.each(series):
        known = [(i, v) for i, v in enumerate(s.values) if v is not None]
        n = len(known)
        sum_i = sum(i for i, _ in known)
        sum_v = sum(v for _, v in known)
        sum_ii = sum(i * i for i, _ in known)
        sum_iv = sum(i * v for i, v in known)
        denominator = float(n * sum_ii - sum_i * sum_i)
        if denominator == 0:
            continue
        step, first = s.step / MS, s.start / MS
        factor = (n * sum_iv - sum_i * sum_v) / denominator / step
        offset = (sum_ii * sum_v - sum_iv * sum_i) / denominator - factor * first
        name = f"linearRegression({s.name}, {start // MS}, {end // MS})"
        values: list[Value] = [offset + (first + i * step) * factor for i in range(len(s.values))]
        out.append(replace(s, name=name, path_expression=name, values=values))
    return out


# ------------------------------------------------------------------ Holt-Winters


def _analysed(
    ctx: Context, bootstrapInterval: str, seasonality: str
) -> Iterator[tuple[Series, int, list[Value], list[Value]]]:
    """Each series fetched `bootstrapInterval` further back, with how many points that added and
    its predictions and deviations."""
    span = _interval_ms(bootstrapInterval)
    season_ms = _interval_ms(seasonality)
    for s in ctx.budget.each(ctx.refetch(span)):
        predictions, deviations = holt_winters(s.values, season_ms // s.step)
        yield s, span // s.step, predictions, deviations


@register("Calculate", "holtWintersForecast")
def holt_winters_forecast(
    ctx: Context, series: SeriesList, bootstrapInterval: str = "7d", seasonality: str = "1d"
) -> list[Series]:
    """Holt-Winters' forecast of each series, trained on bootstrapInterval before the window."""
    out = []
    for s, skip, predictions, _ in _analysed(ctx, bootstrapInterval, seasonality):
        name = f"holtWintersForecast({s.name})"
        out.append(replace(s, name=name, start=s.start + skip * s.step, values=predictions[skip:]))
    return out


def _bands(
    ctx: Context, delta: float, bootstrap: str, seasonality: str
) -> Iterator[tuple[Series, Series, Series]]:
    """Each series (from the window's start) with its lower and upper confidence bands."""
    for s, skip, predictions, deviations in _analysed(ctx, bootstrap, seasonality):
        lower: list[Value] = []
        upper: list[Value] = []
        for f, d in zip(predictions[skip:], deviations[skip:], strict=True):
            lower.append(None if f is None or d is None else f - delta * d)
            upper.append(None if f is None or d is None else f + delta * d)
        start = s.start + skip * s.step
        shown = replace(s, start=start, values=s.values[skip:])
        yield (
            shown,
            Series(f"holtWintersConfidenceLower({s.name})", start, s.step, lower, s.path_expression),
            Series(f"holtWintersConfidenceUpper({s.name})", start, s.step, upper, s.path_expression),
        )


@register("Calculate", "holtWintersConfidenceBands")
def holt_winters_confidence_bands(
    ctx: Context, series: SeriesList, delta: float = 3, bootstrapInterval: str = "7d", seasonality: str = "1d"
) -> list[Series]:
    """The lower and upper bands delta deviations around Holt-Winters' forecast."""
    return [
        band
        for _, lower, upper in _bands(ctx, delta, bootstrapInterval, seasonality)
        for band in (lower, upper)
    ]


@register("Calculate", "holtWintersAberration")
def holt_winters_aberration(
    ctx: Context, series: SeriesList, delta: float = 3, bootstrapInterval: str = "7d", seasonality: str = "1d"
) -> list[Series]:
    """How far each value is outside the confidence bands (0 inside)."""
    out = []
    for s, lower, upper in _bands(ctx, delta, bootstrapInterval, seasonality):
        values: list[Value] = []
        for v, lo, hi in zip(s.values, lower.values, upper.values, strict=True):
            if v is None:
                values.append(0)
            elif hi is not None and v > hi:
                values.append(v - hi)
            elif lo is not None and v < lo:
                values.append(v - lo)
            else:
                values.append(0)
        out.append(replace(s, name=f"holtWintersAberration({s.name})", values=values))
    return out
