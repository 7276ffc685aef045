"""Functions that combine several series into fewer: graphite-web's Combine group (aggregate and
its named forms, the wildcard and node groupings, divideSeries, countSeries, ...)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .core import (
    AGG,
    FUNCTIONS,
    Context,
    Series,
    SeriesList,
    TargetError,
    Value,
    _columns,
    _evaluate,
    _first_path,
    _fmt,
    _paths,
    agg_func,
    check_arguments,
    normalize,
    parse,
    register,
)


def aggregate(func: str) -> Callable[..., list[Series]]:
    def run(ctx: Context, *lists: list[Series]) -> list[Series]:
        """Combines the series point by point (graphite-web's aggregate)."""
        if not all(isinstance(group, list) for group in lists):
            raise TargetError(f"{func}Series: every argument is a path or a call, not a value")
        series = [s for group in lists for s in group]
        if not series:
            return []
        rows, start, end, step = normalize(series)
        values = [AGG[func](col) for col in _columns(rows)]
        name = f"{func}Series({_paths(ctx, series)})"
        return [Series(name, start, step, values[: (end - start) // step or len(values)], name)]

    run.__doc__ = f"The {func} of the series at each point, as one series."
    return run


def as_percent(ctx: Context, series: list[Series], total: Any = None) -> list[Series]:
    """Each series as a percent of a total (their sum, a series, or a number)."""
    if not series:
        return []
    if total is None or isinstance(total, list):
        others = total if isinstance(total, list) else []
        if others and len(others) not in (1, len(series)):
            raise TargetError("asPercent: the total must be one series or as many as the first argument")
        rows, start, _end, step = normalize(series + others)
        if not others:
            totals = [AGG["sum"](col) for col in _columns(rows)]
            total_name = f"sumSeries({_paths(ctx, series)})"
            pairs = [(s, row, totals, total_name) for s, row in zip(series, rows, strict=False)]
        elif len(others) == 1:
            pairs = [(s, row, rows[-1], others[0].name) for s, row in zip(series, rows, strict=False)]
        else:
            mine, theirs = rows[: len(series)], rows[len(series) :]
            ordered = sorted(range(len(series)), key=lambda i: series[i].name)
            by_name = sorted(range(len(others)), key=lambda i: others[i].name)
            pairs = [
                (series[i], mine[i], theirs[j], others[j].name) for i, j in zip(ordered, by_name, strict=True)
            ]
        # every series carries the total's name: N copies of what may be N names already
        ctx.budget.charge(names=sum(len(s.name) + len(tname) for s, _, _, tname in pairs))
        return [
            Series(f"asPercent({s.name},{tname})", start, step, _percent(row, trow))
            for s, row, trow, tname in pairs
        ]
    value = float(total)
    return [
        replace(s, name=f"asPercent({s.name},{_fmt(value)})",
                values=[None if v is None or value == 0 else v / value * 100.0 for v in s.values])
        for s in ctx.budget.each(series)
    ]  # fmt: skip


def _percent(values: Sequence[Value], totals: Sequence[Value]) -> list[Value]:
    return [
        None if v is None or t in (None, 0) else v / t * 100.0 for v, t in zip(values, totals, strict=False)
    ]


for _name, _func in {
    "sumSeries": "sum",
    "sum": "sum",
    "averageSeries": "average",
    "avg": "average",
    "maxSeries": "max",
    "minSeries": "min",
}.items():
    register("Combine", _name)(aggregate(_func))
register("Combine", "asPercent")(as_percent)


for _name, _func in {
    "diffSeries": "diff",
    "multiplySeries": "multiply",
    "stddevSeries": "stddev",
    "rangeOfSeries": "rangeOf",
}.items():
    register("Combine", _name)(aggregate(_func))


@register("Combine", "aggregate")
def aggregate_with(ctx: Context, series: SeriesList, func: str, xFilesFactor: float = 0.0) -> list[Series]:
    """Combines the series point by point with an aggregation function (sum, average, max, ...)."""
    name = func[:-6] if func.endswith("Series") else func
    agg_func("aggregate", func)
    return aggregate(name)(ctx, series)


@register("Combine", "multiplySeries")
def multiply_series(ctx: Context, *lists: SeriesList) -> list[Series]:
    """Multiplies the series point by point (a single series is returned unchanged)."""
    if len(lists) == 1 and len(lists[0]) == 1:
        return lists[0]
    return aggregate("multiply")(ctx, *lists)


@register("Combine", "countSeries")
def count_series(ctx: Context, *lists: SeriesList) -> list[Series]:
    """How many series there are, at every point (a constant line of 0 for none)."""
    series = [s for group in lists for s in group]
    if not series:
        return [replace_name(constant_line(ctx, 0)[0], "countSeries()")]
    _rows, start, _end, step = normalize(series)
    name = f"countSeries({_paths(ctx, series)})"
    count = max(-(-len(s.values) // (step // s.step)) for s in series)  # izip_longest's rows
    ctx.budget.charge(points=count)
    return [Series(name, start, step, [float(len(series))] * count, name)]


def replace_name(s: Series, path_expression: str) -> Series:
    s.path_expression = path_expression
    return s


@register("Combine", "group")
def group(ctx: Context, *lists: SeriesList) -> list[Series]:
    """The series of every argument, as one list."""
    return [s for part in lists for s in part]


@register("Combine", "percentileOfSeries")
def percentile_of_series(
    ctx: Context, series: SeriesList, n: float, interpolate: bool = False
) -> list[Series]:
    """The n-th percentile across the series at each point."""
    if n <= 0:
        raise TargetError("percentileOfSeries: the percent n must be greater than 0")
    if not series:
        return []
    rows, start, _end, step = normalize(series)
    name = f"percentileOfSeries({series[0].path_expression},{n:g})"
    values = [percentile(col, n, interpolate) for col in ctx.budget.each(_columns(rows))]
    return [Series(name, start, step, values, name)]


def percentile(points: list[Value], n: float, interpolate: bool = False) -> Value:
    """graphite-web's _getPercentile: the value at the rank n% of the way through the known ones
    (counted from 1, of len + 1), or between it and the next when interpolating."""
    known = sorted(p for p in points if p is not None)
    if not known:
        return None
    fractional = (n / 100.0) * (len(known) + 1)
    rank = int(fractional)
    fraction = fractional - rank
    if not interpolate:
        rank += 1 if fraction > 0 else 0
    if rank == 0:
        value = known[0]
    elif rank - 1 >= len(known):
        value = known[-1]
    else:
        value = known[rank - 1]
    if interpolate and rank < len(known):
        value = value + fraction * (known[rank] - value)
    return value


def _grouped(
    ctx: Context, series: list[Series], key: Callable[[Series], str], func: str, function: str
) -> list[Series]:
    """The series grouped by `key`, in the order each key is first seen, each group combined by
    `func` (an AGG name, or a function's name such as sumSeries) and named by its key."""
    groups: dict[str, list[Series]] = {}
    for s in ctx.budget.each(series):
        groups.setdefault(key(s), []).append(s)
    callback = None
    if _bare(func) not in AGG:  # another function of one series list (graphite-web allows it)
        callback = FUNCTIONS.get(func)
        if callback is None:
            agg_func(function, func)
    out = []
    for name, members in groups.items():
        if callback:
            check_arguments(func, callback, [members])  # a callback that needs more is a 400
            combined = callback(ctx, members)
        else:
            combined = aggregate(_bare(func))(ctx, members)
        if combined:
            out.append(
                Series(
                    name, combined[0].start, combined[0].step, combined[0].values, combined[0].path_expression
                )
            )
    return out


def _bare(func: str) -> str:
    return func[:-6] if func.endswith("Series") and func[:-6] in AGG else func


def _node(s: Series, n: int | str, function: str) -> str:
    name = _first_path(s.name) if s.name.endswith(")") else s.name
    nodes = name.split(";")[0].split(".")
    if isinstance(n, str):
        return s.tags.get(n, "")
    try:
        return nodes[n]
    except IndexError:
        return s.tags.get(str(n), "")


@register("Combine", "groupByNode")
def group_by_node(ctx: Context, series: SeriesList, nodeNum: int, callback: str = "average") -> list[Series]:
    """Groups the series by one node of their names and combines each group with `callback`."""
    return _grouped(ctx, series, lambda s: _node(s, nodeNum, "groupByNode"), callback, "groupByNode")


@register("Combine", "groupByNodes")
def group_by_nodes(ctx: Context, series: SeriesList, callback: str, *nodes: int) -> list[Series]:
    """Groups the series by several nodes of their names (joined with dots) and combines each."""
    return _grouped(
        ctx, series, lambda s: ".".join(_node(s, n, "groupByNodes") for n in nodes), callback, "groupByNodes"
    )


def _with_wildcards(func: str) -> Callable[..., list[Series]]:
    def run(ctx: Context, series: SeriesList, *position: int) -> list[Series]:
        def key(s: Series) -> str:
            return ".".join(part for i, part in enumerate(s.name.split(".")) if i not in position)

        return _grouped(ctx, series, key, func, f"{func}SeriesWithWildcards")

    run.__doc__ = f"{func} of the series whose names agree once the nodes at `position` are removed."
    return run


register("Combine", "sumSeriesWithWildcards")(_with_wildcards("sum"))
register("Combine", "averageSeriesWithWildcards")(_with_wildcards("average"))
register("Combine", "multiplySeriesWithWildcards")(_with_wildcards("multiply"))


@register("Combine", "divideSeries")
def divide_series(ctx: Context, dividendSeriesList: SeriesList, divisorSeries: SeriesList) -> list[Series]:
    """Each series divided point by point by one divisor series (None where it is 0 or None)."""
    if not divisorSeries:
        out = []
        for s in dividendSeriesList:
            name = f"divideSeries({s.name},MISSING)"
            out.append(Series(name, s.start, s.step, [None] * len(s.values), name))
        return out
    if len(divisorSeries) > 1:
        raise TargetError(f"divideSeries: the divisor must be exactly one series, not {len(divisorSeries)}")
    return [_quotients(ctx, s, divisorSeries[0]) for s in ctx.budget.each(dividendSeriesList)]


def _quotients(ctx: Context, dividend: Series, divisor: Series) -> Series:
    rows, start, _end, step = normalize([dividend, divisor])
    values = [None if a is None or b in (None, 0) else a / b for a, b in _columns(rows)]  # type: ignore[operator]
    return Series(f"divideSeries({dividend.name},{divisor.name})", start, step, values)


@register("Combine", "divideSeriesLists")
def divide_series_lists(
    ctx: Context, dividendSeriesList: SeriesList, divisorSeriesList: SeriesList
) -> list[Series]:
    """Each series of the first list divided by the one at the same place in the second."""
    if len(dividendSeriesList) != len(divisorSeriesList):
        raise TargetError("divideSeriesLists: the two lists must have as many series")
    return [
        _quotients(ctx, a, b)
        for a, b in ctx.budget.each(zip(dividendSeriesList, divisorSeriesList, strict=True))
    ]


@register("Combine", "aggregateSeriesLists")
def aggregate_series_lists(
    ctx: Context,
    seriesListFirstPos: SeriesList,
    seriesListSecondPos: SeriesList,
    func: str,
    xFilesFactor: float = 0.0,
) -> list[Series]:
    """Each series of the first list combined (func) with the one at the same place in the second."""
    agg_func("aggregateSeriesLists", func)
    if len(seriesListFirstPos) != len(seriesListSecondPos):
        raise TargetError("aggregateSeriesLists: the two lists must have as many series")
    name = _bare(func)
    out = []
    for a, b in ctx.budget.each(zip(seriesListFirstPos, seriesListSecondPos, strict=True)):
        (combined,) = aggregate(name)(ctx, [a, b])
        label = f"{name}Series({a.name},{b.name})"
        out.append(Series(label, combined.start, combined.step, combined.values, combined.path_expression))
    return out


def _lists(func: str) -> Callable[..., list[Series]]:
    def run(ctx: Context, seriesListFirstPos: SeriesList, seriesListSecondPos: SeriesList) -> list[Series]:
        return aggregate_series_lists(ctx, seriesListFirstPos, seriesListSecondPos, func)

    run.__doc__ = f"The {func} of each series of the first list and the one at the same place in the second."
    return run


for _func in ("sum", "diff", "multiply"):
    register("Combine", f"{_func}SeriesLists")(_lists(_func))


@register("Special", "constantLine")
def constant_line(ctx: Context, value: float) -> list[Series]:
    """A line at `value` across the request's window (three points: start, middle, end)."""
    start, end = ctx.span("constantLine")
    step = max((end // 1000 - start // 1000) // 2 * 1000, 1000)
    ctx.budget.charge(points=3)
    value = float(value)  # graphite-web's parser makes every number a float: its name is 100.0
    return [Series(str(value), start // 1000 * 1000, step, [value] * 3, f"constantLine({value})")]


@register("Combine", "applyByNode")
def apply_by_node(
    ctx: Context, series: SeriesList, nodeNum: int, templateFunction: str, newName: str = ""
) -> list[Series]:
    """Each prefix of the names up to nodeNum put for % in templateFunction, evaluated."""
    prefixes = sorted({".".join(s.name.split(".")[: nodeNum + 1]) for s in series})
    ctx.budget.charge(names=sum(len(templateFunction) + len(p) for p in prefixes))
    out = []
    for prefix in ctx.budget.each(prefixes):
        node = parse(templateFunction.replace("%", prefix))
        for s in _evaluate(node, ctx.fetch, 0, ctx.budget, ctx.window(), 0):
            name = newName.replace("%", prefix) if newName else s.name
            out.append(Series(name, s.start, s.step, s.values, prefix))
    return out
