"""Functions that change each series' values one by one, or move it in time: graphite-web's
Transform group (derivative, integral, offset, timeShift, hitcount, ...)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import groupby
from operator import itemgetter

from .core import (
    AGG,
    CONSOLIDATE,
    MS,
    Context,
    Series,
    SeriesList,
    TargetError,
    Value,
    _bucket_ms,
    _fmt,
    _interval_ms,
    agg_func,
    register,
)


def scale(ctx: Context, series: list[Series], factor: float) -> list[Series]:
    """Multiplies every value by a constant."""
    return [
        replace(s, name=(n := f"scale({s.name},{_fmt(factor)})"), path_expression=n,
                values=[None if v is None else v * factor for v in s.values])
        for s in ctx.budget.each(series)
    ]  # fmt: skip


def summarize(
    ctx: Context, series: list[Series], intervalString: str, func: str = "sum", alignToFrom: bool = False
) -> list[Series]:
    """Each series in buckets of `intervalString`, each bucket the aggregate (func) of its points."""
    if func not in AGG:
        raise TargetError(f"summarize: unknown function {func!r} ({', '.join(AGG)})")
    size = _bucket_ms(intervalString)
    out = []
    for s in ctx.budget.each(series):
        start = s.start if alignToFrom else s.start - s.start % size
        end = s.end if alignToFrom else s.end - s.end % size + size
        count = -(-(end - start) // size)
        ctx.budget.charge(points=count)  # before the buckets exist: a 1 s summarize of a year
        values = _buckets(s, start, size, count, AGG[func])
        name = f'summarize({s.name}, "{intervalString}", "{func}"{", true" if alignToFrom else ""})'
        out.append(replace(s, name=name, start=start, step=size, values=values, path_expression=name))
    return out


def _buckets(
    s: Series, start: int, size: int, count: int, agg: Callable[[Sequence[Value]], Value]
) -> list[Value]:
    """`agg` of the points of each bucket (start + k * size <= stamp < start + (k + 1) * size), in
    one pass over the points, which are in time order; a bucket with no known point is None."""
    out: list[Value] = [None] * count
    stamps = ((s.start + i * s.step - start) // size for i in range(len(s.values)))
    for k, group in groupby(zip(stamps, s.values, strict=True), key=itemgetter(0)):
        if 0 <= k < count:
            out[k] = agg([v for _, v in group])
    return out


def _deltas(values: list[Value], max_value: float | None) -> list[Value]:
    out: list[Value] = []
    prev: Value = None
    for v in values:
        if v is not None and max_value is not None and v > max_value:
            out.append(None)
            prev = None
            continue
        if v is None or prev is None:
            out.append(None)
        elif v >= prev:
            out.append(v - prev)
        else:  # a counter that wrapped (at max_value) or was reset
            out.append(None if max_value is None else max_value + 1 + v - prev)
        prev = v
    return out


def non_negative_derivative(
    ctx: Context, series: list[Series], maxValue: float | None = None
) -> list[Series]:
    """The increase from each value to the next, None where a counter wrapped or was reset."""
    return [
        replace(s, name=f"nonNegativeDerivative({s.name})", values=_deltas(s.values, maxValue))
        for s in ctx.budget.each(series)
    ]


def per_second(ctx: Context, series: list[Series], maxValue: float | None = None) -> list[Series]:
    """The deltas over the step in seconds: step / MS is exact for whole seconds, so whole-second
    data is divided by what graphite-web divides it by."""
    out = []
    for s in ctx.budget.each(series):
        seconds = s.step / MS
        values = [None if d is None else round(d / seconds, 6) for d in _deltas(s.values, maxValue)]
        out.append(replace(s, name=f"perSecond({s.name})", values=values))
    return out


def keep_last_value(ctx: Context, series: list[Series], limit: float = math.inf) -> list[Series]:
    """Gaps of at most `limit` points filled with the value before them."""
    out = []
    for s in ctx.budget.each(series):
        values = list(s.values)
        nones, last = 0, None
        for i, v in enumerate(values):
            if v is None:
                nones += 1
                continue
            if 0 < nones <= limit and last is not None:
                values[i - nones : i] = [last] * nones
            nones, last = 0, v
        if 0 < nones <= limit and last is not None:
            values[len(values) - nones :] = [last] * nones
        name = f"keepLastValue({s.name})"
        out.append(replace(s, name=name, path_expression=name, values=values))
    return out


def transform_null(ctx: Context, series: list[Series], default: float = 0) -> list[Series]:
    """Every None replaced by `default`."""
    return [
        replace(s, name=(n := f"transformNull({s.name},{_fmt(default)})"), path_expression=n,
                values=[default if v is None else v for v in s.values])
        for s in ctx.budget.each(series)
    ]  # fmt: skip


register("Transform", "scale")(scale)
register("Transform", "summarize")(summarize)
register("Transform", "perSecond")(per_second)
register("Transform", "nonNegativeDerivative")(non_negative_derivative)
register("Transform", "keepLastValue")(keep_last_value)
register("Transform", "transformNull")(transform_null)


def _each(
    label: str, op: Callable[[Value], Value], named: Callable[[str], str] | None = None
) -> Callable[..., list[Series]]:
    """A function of every value alone (None stays None unless `op` says otherwise)."""

    def run(ctx: Context, series: SeriesList) -> list[Series]:
        """A function of every value alone."""
        out = []
        for s in ctx.budget.each(series):
            name = named(s.name) if named else f"{label}({s.name})"
            out.append(replace(s, name=name, path_expression=name, values=[op(v) for v in s.values]))
        return out

    return run


def _pow(v: Value, p: float) -> Value:
    """graphite-web's safePow: None where the power is not a real number or overflows."""
    if v is None:
        return None
    try:
        result = math.pow(v, p)
    except (ValueError, OverflowError, ZeroDivisionError):
        return None
    return result


def _described(fn: Callable[..., list[Series]], doc: str) -> Callable[..., list[Series]]:
    fn.__doc__ = doc
    return fn


register("Transform", "absolute")(
    _described(
        _each("absolute", lambda v: None if v is None else abs(v)), "The absolute value of each value."
    )
)
register("Transform", "squareRoot")(
    _described(_each("squareRoot", lambda v: _pow(v, 0.5)), "The square root of each value.")
)
register("Transform", "invert")(_described(_each("invert", lambda v: _pow(v, -1)), "1 / each value."))
register("Transform", "isNonNull")(
    _described(_each("isNonNull", lambda v: 0 if v is None else 1), "1 where there is a value, 0 where None.")
)


@register("Transform", "offset")
def offset(ctx: Context, series: SeriesList, factor: float) -> list[Series]:
    """Adds a constant to every known value."""
    return _each("", lambda v: None if v is None else v + factor, lambda n: f"offset({n},{float(factor):g})")(
        ctx, series
    )


@register("Transform", "pow")
def pow_(ctx: Context, series: SeriesList, factor: float) -> list[Series]:
    """Raises every value to a power."""
    return _each("", lambda v: _pow(v, factor), lambda n: f"pow({n},{float(factor):g})")(ctx, series)


@register("Transform", "log")  # graphite-web's name for the logarithm
def logarithm(ctx: Context, series: SeriesList, base: float = 10) -> list[Series]:
    """The logarithm of every value (None at or below 0)."""
    if base <= 0 or base == 1:
        raise TargetError(f"log: the argument base is a positive number other than 1, not {base!r}")
    return _each(
        "", lambda v: None if v is None or v <= 0 else math.log(v, base), lambda n: f"log({n}, {base})"
    )(ctx, series)


@register("Transform", "scaleToSeconds")
def scale_to_seconds(ctx: Context, series: SeriesList, seconds: float) -> list[Series]:
    """Values per step rescaled to values per `seconds`."""
    out = []
    for s in ctx.budget.each(series):
        factor = seconds * MS / s.step
        name = f"scaleToSeconds({s.name},{int(seconds)})"
        values = [None if v is None else round(v * factor, 6) for v in s.values]
        out.append(replace(s, name=name, path_expression=name, values=values))
    return out


@register("Transform", "offsetToZero")
def offset_to_zero(ctx: Context, series: SeriesList) -> list[Series]:
    """Subtracts each series' minimum, so its lowest point is 0."""
    out = []
    for s in ctx.budget.each(series):
        known = [v for v in s.values if v is not None]
        low = min(known) if known else 0.0
        name = f"offsetToZero({s.name})"
        out.append(
            replace(
                s, name=name, path_expression=name, values=[None if v is None else v - low for v in s.values]
            )
        )
    return out


@register("Transform", "derivative")
def derivative(ctx: Context, series: SeriesList) -> list[Series]:
    """The difference from each value to the one before (None next to a None)."""
    out = []
    for s in ctx.budget.each(series):
        values: list[Value] = [None]
        pairs = zip(s.values, s.values[1:], strict=False)
        values += [None if a is None or b is None else b - a for a, b in pairs]
        out.append(replace(s, name=f"derivative({s.name})", values=values[: len(s.values)]))
    return out


@register("Transform", "integral")
def integral(ctx: Context, series: SeriesList) -> list[Series]:
    """The running sum of the known values (None stays None)."""
    out = []
    for s in ctx.budget.each(series):
        total, values = 0.0, []
        for v in s.values:
            if v is not None:
                total += v
            values.append(None if v is None else total)
        out.append(replace(s, name=f"integral({s.name})", values=values))
    return out


@register("Transform", "integralByInterval")
def integral_by_interval(ctx: Context, series: SeriesList, intervalUnit: str) -> list[Series]:
    """The running sum, back to 0 at each interval from the request's start."""
    size = _interval_ms(intervalUnit)
    start, _end = ctx.span("integralByInterval")
    start = start // MS * MS
    out = []
    for s in ctx.budget.each(series):
        total, values = 0.0, list[Value]()
        for i, v in enumerate(s.values):
            t = s.start + i * s.step
            if (t - start) // size != (t - start - s.step) // size:
                total = 0.0
            if v is not None:
                total += v
            values.append(total)
        out.append(replace(s, name=f"integralByInterval({s.name},'{intervalUnit}')", values=values))
    return out


@register("Transform", "delay")
def delay(ctx: Context, series: SeriesList, steps: int) -> list[Series]:
    """The values moved `steps` points later (earlier if negative), None where they leave."""
    out = []
    for s in ctx.budget.each(series):
        n = len(s.values)
        values: list[Value]
        if steps < 0:
            values = s.values[-steps:] + [None] * min(-steps, n)
        else:
            gap: list[Value] = [None] * min(steps, n)
            values = gap + (s.values[:-steps] if steps else list(s.values))
        out.append(replace(s, name=f"delay({s.name},{steps})", values=values[:n] if steps >= 0 else values))
    return out


@register("Special", "changed")
def changed(ctx: Context, series: SeriesList) -> list[Series]:
    """1 where the value differs from the last known one, else 0."""
    out = []
    for s in ctx.budget.each(series):
        previous: Value = None
        values: list[Value] = []
        for v in s.values:
            if previous is None:
                previous = v
                values.append(0)
            elif v is not None and v != previous:
                values.append(1)
                previous = v
            else:
                values.append(0)
        name = f"changed({s.name})"
        out.append(replace(s, name=name, path_expression=name, values=values))
    return out


def _above(label: str, keep: Callable[[float, float], bool]) -> Callable[..., list[Series]]:
    def run(ctx: Context, series: SeriesList, n: float) -> list[Series]:
        out = []
        for s in ctx.budget.each(series):
            name = f"{label}({s.name}, {n:g})"
            values = [v if v is None or keep(v, n) else None for v in s.values]
            out.append(replace(s, name=name, path_expression=name, values=values))
        return out

    run.__doc__ = f"{label}: values past the threshold n become None."
    return run


register("Filter Data", "removeAboveValue")(_above("removeAboveValue", lambda v, n: v <= n))
register("Filter Data", "removeBelowValue")(_above("removeBelowValue", lambda v, n: v >= n))


def _percentile_filter(label: str, keep: Callable[[float, float], bool]) -> Callable[..., list[Series]]:
    from .combine import percentile

    def run(ctx: Context, series: SeriesList, n: float) -> list[Series]:
        out = []
        for s in ctx.budget.each(series):
            name = f"{label}({s.name}, {n:g})"
            cut = percentile(s.values, n)
            values = s.values if cut is None else [v if v is None or keep(v, cut) else None for v in s.values]
            out.append(replace(s, name=name, path_expression=name, values=list(values)))
        return out

    run.__doc__ = f"{label}: values past the n-th percentile of the series become None."
    return run


register("Filter Data", "removeAbovePercentile")(
    _percentile_filter("removeAbovePercentile", lambda v, c: v <= c)
)
register("Filter Data", "removeBelowPercentile")(
    _percentile_filter("removeBelowPercentile", lambda v, c: v >= c)
)


@register("Special", "consolidateBy")
def consolidate_by(ctx: Context, series: SeriesList, consolidationFunc: str) -> list[Series]:
    """How maxDataPoints merges points of these series: sum, average, min, max, first or last."""
    if consolidationFunc not in CONSOLIDATE:
        raise TargetError(
            f"consolidateBy: the argument consolidationFunc is one of {', '.join(CONSOLIDATE)}, "
            f"not {consolidationFunc[:20]!r}"
        )
    return [
        replace(s, name=(n := f'consolidateBy({s.name},"{consolidationFunc}")'), path_expression=n,
                consolidate_func=consolidationFunc)
        for s in ctx.budget.each(series)
    ]  # fmt: skip


@register("Transform", "timeShift")
def time_shift(
    ctx: Context, series: SeriesList, timeShift: str, resetEnd: bool = True, alignDST: bool = False
) -> list[Series]:
    """The series as they were `timeShift` ago (1d, "-1w"), drawn over the request's window."""
    text = str(timeShift).strip()
    if text[:1].isdigit():
        text = "-" + text
    moved = _interval_ms(text)
    if text.startswith("+"):
        moved = -moved
    if not series:
        return []
    first = series[0]
    out = []
    for s in ctx.budget.each(ctx.refetch(0, moved)):
        count = len(first.values) if resetEnd else len(s.values)
        name = f'timeShift({s.name}, "{text}")'
        out.append(replace(s, name=name, start=first.start, values=s.values[:count]))
    return out


@register("Transform", "hitcount")
def hitcount(
    ctx: Context, series: SeriesList, intervalString: str, alignToInterval: bool = False
) -> list[Series]:
    """Rates (per second) turned into hits per interval: each value times the seconds of its
    step that fall in each bucket, the buckets ending at the series' end."""
    size = _bucket_ms(intervalString)
    if alignToInterval:
        start, _ = ctx.span("hitcount")
        unit = next((u for u in (86400, 3600, 60) if size >= u * MS), 0) * MS
        aligned = start - start % unit if unit else start
        series = ctx.refetch(start - aligned)
        series = [
            replace(s, values=s.values + [None] * max(0, _aligned_len(s, size) - len(s.values)))
            for s in series
        ]
    out = []
    for s in ctx.budget.each(series):
        count = -(-(s.end - s.start) // size)
        ctx.budget.charge(points=count)
        buckets: list[float | None] = [None] * count
        new_start = s.end - count * size
        for i, v in enumerate(s.values):
            if v is None:
                continue
            t = s.start + i * s.step
            first, first_mod = divmod(t - new_start, size)
            last, last_mod = divmod(t + s.step - new_start, size)
            if last >= count:
                last, last_mod = count - 1, size
            spans = [(first, last_mod - first_mod)] if first == last else [(first, size - first_mod)]
            if first != last:
                spans += [(k, size) for k in range(first + 1, last)]
                if last_mod > 0:
                    spans.append((last, last_mod))
            for k, ms in spans:
                if k >= 0:
                    buckets[k] = (buckets[k] or 0.0) + v * (ms / MS)
        name = f'hitcount({s.name}, "{intervalString}"{", true" if alignToInterval else ""})'
        out.append(replace(s, name=name, start=new_start, step=size, values=buckets))
    return out


def _aligned_len(s: Series, size: int) -> int:
    """graphite-web stretches an aligned hitcount's series to whole intervals from its start."""
    end = s.start + ((s.end - s.start) // size) * size + size
    return (end - s.start) // s.step


@register("Transform", "smartSummarize")
def smart_summarize(
    ctx: Context, series: SeriesList, intervalString: str, func: str = "sum", alignTo: str = ""
) -> list[Series]:
    """summarize with buckets from the request's start (or aligned to a unit: alignTo "1h")."""
    agg = agg_func("smartSummarize", func)
    size = _bucket_ms(intervalString)
    if alignTo:
        start, _ = ctx.span("smartSummarize")
        unit = _interval_ms(alignTo if alignTo[:1].isdigit() else "1" + alignTo)
        series = ctx.refetch(start - (start - start % unit))
    out = []
    for s in ctx.budget.each(series):
        count = -(-(s.end - s.start) // size)
        ctx.budget.charge(points=count)
        values: list[Value] = []
        for k in range(count):
            lo = s.start + k * size
            first = -(-(lo - s.start) // s.step)
            last = -(-(lo + size - s.start) // s.step)
            chunk = s.values[first:last]
            values.append(agg(chunk) if any(v is not None for v in chunk) else None)
        name = f'smartSummarize({s.name}, "{intervalString}", "{func}")'
        out.append(replace(s, name=name, step=size, values=values))
    return out
