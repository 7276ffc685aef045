"""Functions that choose, order or rename series without changing their values: graphite-web's
Filter Series, Sorting and Alias groups, and the graph-only ones (color, lineWidth, ...) that
graphite-web's JSON returns unchanged."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import regex

from .core import AGG, Context, Series, SeriesList, TargetError, Value, _first_path, agg_func, register


def alias(ctx: Context, series: list[Series], newName: str) -> list[Series]:
    """Names every series `newName`."""
    return [replace(s, name=str(newName)) for s in series]


def alias_by_node(ctx: Context, series: list[Series], *nodes: int) -> list[Series]:
    """Names each series by some nodes of its path (0 the first, -1 the last)."""
    out = []
    for s in ctx.budget.each(series):
        parts = (_first_path(s.name) if s.name.endswith(")") else s.name).split(";")[0].split(".")
        try:
            out.append(replace(s, name=".".join(parts[int(n)] for n in nodes)))
        except (IndexError, ValueError):
            raise TargetError(f"aliasByNode: {s.name!r} has no node {nodes}") from None
    return out


def highest(func: str) -> Callable[..., list[Series]]:
    def run(ctx: Context, series: list[Series], n: int = 1) -> list[Series]:
        """The n series of the highest aggregate."""
        return sorted(ctx.budget.each(series), key=_sorted_by(func), reverse=True)[: int(n)]

    return run


def sort_by_maxima(ctx: Context, series: list[Series]) -> list[Series]:
    """The series by their maximum, highest first."""
    return sorted(ctx.budget.each(series), key=_sorted_by("max"), reverse=True)


def limit(ctx: Context, series: list[Series], n: int) -> list[Series]:
    """The first n series."""
    return series[: int(n)]


def _sorted_by(func: str) -> Callable[[Series], float]:
    return lambda s: v if (v := AGG[func](s.values)) is not None else -math.inf


register("Alias", "alias")(alias)
register("Alias", "aliasByNode")(alias_by_node)
for _name, _func in {"highestCurrent": "current", "highestAverage": "average", "highestMax": "max"}.items():
    register("Filter Series", _name)(highest(_func))
register("Sorting", "sortByMaxima")(sort_by_maxima)
register("Filter Series", "limit")(limit)


# a pattern's longest run on one name: (a+)+$ takes forever on a long name in Python's re, in a
# thread nobody can stop; the regex module (re's syntax) stops it at a timeout instead
PATTERN_SECONDS = 0.5


def _regex(function: str, pattern: str) -> Any:
    try:
        return regex.compile(pattern)
    except (regex.error, re.error) as e:
        raise TargetError(f"{function}: the argument pattern is not a regular expression ({e})") from None


def _bounded(ctx: Context, function: str, run: Callable[[float], Any]) -> Any:
    """`run(timeout)` within PATTERN_SECONDS and the render's deadline: a 400 past them."""
    timeout = max(min(PATTERN_SECONDS, ctx.budget.deadline - time.monotonic()), 0.001)
    try:
        return run(timeout)
    except TimeoutError:
        ctx.budget.check()
        raise TargetError(f"{function}: the pattern takes too long on a series name") from None


def _matching(ctx: Context, function: str, series: list[Series], pattern: str, keep: bool) -> list[Series]:
    compiled = _regex(function, pattern)
    out = []
    for s in ctx.budget.each(series):
        name = s.name
        if bool(_bounded(ctx, function, lambda t: compiled.search(name, timeout=t))) is keep:  # noqa: B023
            out.append(s)
    return out


@register("Filter Series", "exclude")
def exclude(ctx: Context, series: SeriesList, pattern: str) -> list[Series]:
    """The series whose names do not match the regular expression."""
    return _matching(ctx, "exclude", series, pattern, False)


@register("Filter Series", "grep")
def grep(ctx: Context, series: SeriesList, pattern: str) -> list[Series]:
    """The series whose names match the regular expression."""
    return _matching(ctx, "grep", series, pattern, True)


# graphite-web's filterSeries operators: a series with no known value passes < and <=
OPERATORS: dict[str, Callable[[Value, float], bool]] = {
    "=": lambda v, t: v is not None and v == t,
    "!=": lambda v, t: v is None or v != t,
    ">": lambda v, t: v is not None and v > t,
    ">=": lambda v, t: v is not None and v >= t,
    "<": lambda v, t: v is None or v < t,
    "<=": lambda v, t: v is None or v <= t,
}


@register("Filter Series", "filterSeries")
def filter_series(
    ctx: Context, series: SeriesList, func: str, operator: str, threshold: float
) -> list[Series]:
    """The series whose aggregate (func) compares to the threshold as `operator` says."""
    agg = agg_func("filterSeries", func)
    if operator not in OPERATORS:
        raise TargetError(
            f"filterSeries: the argument operator is one of {' '.join(OPERATORS)}, not {operator!r}"
        )
    test = OPERATORS[operator]
    return [s for s in ctx.budget.each(series) if test(agg(s.values), threshold)]


def _filtered(func: str, operator: str) -> Callable[..., list[Series]]:
    def run(ctx: Context, series: SeriesList, n: float) -> list[Series]:
        return filter_series(ctx, series, func, operator, n)

    run.__doc__ = f"The series whose {func} is {operator} n."
    return run


for _name, (_func, _op) in {
    "currentAbove": ("last", ">"),
    "currentBelow": ("last", "<="),
    "averageAbove": ("average", ">"),
    "averageBelow": ("average", "<="),
    "maximumAbove": ("max", ">"),
    "maximumBelow": ("max", "<="),
    "minimumAbove": ("min", ">"),
    "minimumBelow": ("min", "<="),
}.items():
    register("Filter Series", _name)(_filtered(_func, _op))


def _key(func: str) -> Callable[[Series], float]:
    agg = AGG[func]
    return lambda s: v if (v := agg(s.values)) is not None else -math.inf


def _lowest(func: str) -> Callable[..., list[Series]]:
    def run(ctx: Context, series: SeriesList, n: int = 1) -> list[Series]:
        return sorted(ctx.budget.each(series), key=_key(func))[:n]

    run.__doc__ = f"The n series of the lowest {func}."
    return run


register("Filter Series", "lowestAverage")(_lowest("average"))
register("Filter Series", "lowestCurrent")(_lowest("current"))


@register("Filter Series", "highest")
def highest_by(ctx: Context, series: SeriesList, n: int = 1, func: str = "average") -> list[Series]:
    """The n series of the highest aggregate (func)."""
    agg_func("highest", func)
    return highest(func[:-6] if func.endswith("Series") else func)(ctx, series, n)


@register("Filter Series", "lowest")
def lowest_by(ctx: Context, series: SeriesList, n: int = 1, func: str = "average") -> list[Series]:
    """The n series of the lowest aggregate (func)."""
    agg_func("lowest", func)
    return _lowest(func[:-6] if func.endswith("Series") else func)(ctx, series, n)


@register("Filter Series", "mostDeviant")
def most_deviant(ctx: Context, series: SeriesList, n: int) -> list[Series]:
    """The n series of the largest standard deviation."""
    scored = []
    for s in ctx.budget.each(series):
        known = [v for v in s.values if v is not None]
        if not known:
            continue
        mean = sum(known) / len(known)
        scored.append((sum((v - mean) ** 2 for v in known) / len(known), s))
    scored.sort(key=lambda pair: pair[0], reverse=True)
    return [s for _, s in scored][:n]


@register("Filter Series", "removeEmptySeries")
def remove_empty_series(ctx: Context, series: SeriesList, xFilesFactor: float = 0.0) -> list[Series]:
    """The series with at least one known value (at least xFilesFactor of them known)."""
    out = []
    for s in ctx.budget.each(series):
        known = sum(v is not None for v in s.values)
        if known and s.values and known / len(s.values) >= xFilesFactor:
            out.append(s)
    return out


@register("Filter Series", "unique")
def unique(ctx: Context, *lists: SeriesList) -> list[Series]:
    """The series of every argument, each name once."""
    seen: dict[str, Series] = {}
    for part in lists:
        for s in part:
            seen.setdefault(s.name, s)
    return list(seen.values())


@register("Sorting", "sortByName")
def sort_by_name(
    ctx: Context, series: SeriesList, natural: bool = False, reverse: bool = False
) -> list[Series]:
    """The series by name (numbers in names by value when natural)."""

    def natural_key(s: Series) -> str:
        return re.sub(r"(\d+)", lambda m: f"{int(m[0]):010}", s.name)

    return sorted(series, key=natural_key if natural else lambda s: s.name, reverse=reverse)


@register("Sorting", "sortBy")
def sort_by(ctx: Context, series: SeriesList, func: str = "average", reverse: bool = False) -> list[Series]:
    """The series by an aggregate of their values (func), lowest first unless reverse."""
    agg_func("sortBy", func)
    return sorted(
        ctx.budget.each(series), key=_key(func[:-6] if func.endswith("Series") else func), reverse=reverse
    )


@register("Sorting", "sortByTotal")
def sort_by_total(ctx: Context, series: SeriesList) -> list[Series]:
    """The series by the sum of their values, highest first."""
    return sort_by(ctx, series, "sum", True)


@register("Sorting", "sortByMinima")
def sort_by_minima(ctx: Context, series: SeriesList) -> list[Series]:
    """The series with a value above 0, by their minimum, lowest first."""
    kept = [s for s in ctx.budget.each(series) if (AGG["max"](s.values) or 0) > 0]
    return sorted(kept, key=_key("min"))


# ------------------------------------------------------------------ names


def _clean(name: str) -> str:
    """The path inside a name wrapped in functions, as graphite-web's substr finds it."""
    left = name.rfind("(") + 1
    right = name.find(")")
    return name[left : right if right >= 0 else len(name) + 1]


@register("Alias", "aliasByMetric")
def alias_by_metric(ctx: Context, series: SeriesList) -> list[Series]:
    """Each series named by the last node of its path."""
    return substr(ctx, series, -1, 0)


@register("Special", "substr")
def substr(ctx: Context, series: SeriesList, start: int = 0, stop: int = 0) -> list[Series]:
    """Each series named by the nodes start to stop of its path."""
    out = []
    for s in ctx.budget.each(series):
        nodes = _clean(s.name).split(".")
        name = ".".join(nodes[start:] if stop == 0 else nodes[start:stop])
        out.append(replace(s, name=re.sub(",.*$", "", name)))
    return out


@register("Special", "seriesByTag")
def series_by_tag(ctx: Context, *tagExpressions: str) -> list[Series]:
    """The series whose tags match every expression (tag=value, tag!=value, tag=~regex,
    tag!=~regex; a regex anchored at the start of the value)."""
    # As graphite-web does, the whole call goes to the fetch as one path expression: the fetch
    # (graphite_api.fetch) resolves it over the store's tagged names, and the series carry it
    # as their pathExpression (what aggregates are named by).
    if not tagExpressions:
        raise TargetError("seriesByTag: needs at least one tag expression (tag=value)")
    # each in the quote it does not hold (the target's strings have no escapes, so not both)
    quoted = ",".join(f'"{e}"' if "'" in str(e) else f"'{e}'" for e in tagExpressions)
    return ctx.fetch(f"seriesByTag({quoted})", 0, 0)


@register("Alias", "aliasSub")
def alias_sub(ctx: Context, series: SeriesList, search: str, replace_: str) -> list[Series]:
    r"""Each series renamed by a regular expression's search and replace (\1 for groups)."""
    compiled = _regex("aliasSub", search)
    try:
        out = []
        for s in ctx.budget.each(series):
            old = s.name
            name = _bounded(ctx, "aliasSub", lambda t: compiled.sub(replace_, old, timeout=t))  # noqa: B023
            out.append(replace(s, name=name))
        return out
    except (regex.error, re.error, IndexError) as e:
        raise TargetError(f"aliasSub: the argument replace does not fit the pattern ({e})") from None


@register("Alias", "legendValue")
def legend_value(ctx: Context, series: SeriesList, *valueTypes: str) -> list[Series]:
    """Each name followed by aggregates of its values (avg, max, last, ...)."""
    types = list(valueTypes)
    system = types.pop() if types and types[-1] in ("si", "binary") else None
    ctx.budget.charge(names=len(series) * sum(len(t) + 30 for t in types))  # each name grows so
    out = []
    for s in ctx.budget.each(series):
        name = s.name
        for kind in types:
            key = kind[:-6] if kind.endswith("Series") else kind
            value: Any = AGG[key](s.values) if key in AGG else "(?)"
            if system is None:
                name += f" ({kind}: {value})"
            else:
                shown = value if isinstance(value, str) else None if value is None else _units(value, system)
                name = f"{name:<20}{kind:<5}{shown!s:<10}"
        out.append(replace(s, name=name))
    return out


# graphite-web's unit systems for legends (glyph.UnitSystems), largest first
UNIT_SYSTEMS: dict[str, list[tuple[str, float]]] = {
    "binary": [("Pi", 1024.0**5), ("Ti", 1024.0**4), ("Gi", 1024.0**3), ("Mi", 1024.0**2), ("Ki", 1024.0)],
    "si": [("P", 1000.0**5), ("T", 1000.0**4), ("G", 1000.0**3), ("M", 1000.0**2), ("k", 1000.0)],
    "sec": [("Y", 31536000), ("M", 2592000), ("D", 86400), ("H", 3600), ("m", 60)],
    "msec": [
        ("Y", 31536000000),
        ("M", 2592000000),
        ("D", 86400000),
        ("H", 3600000),
        ("m", 60000),
        ("s", 1000),
    ],
}


def format_units(value: float, system: str, units: str = "") -> tuple[float, str]:
    """graphite-web's format_units: the value in the largest prefix it reaches (a value a hair
    over a whole number above 1 floored, as it does), and the prefix with the units."""
    for prefix, size in UNIT_SYSTEMS.get(system, []):
        if abs(value) >= size:
            scaled = value / size
            if scaled - math.floor(scaled) < 1e-11 and value > 1:
                scaled = float(math.floor(scaled))
            return scaled, prefix + units
    if value - math.floor(value) < 1e-11 and value > 1:
        value = float(math.floor(value))
    return value, units


def _units(value: float, system: str) -> str:
    scaled, prefix = format_units(value, system)
    return f"{scaled:.2f}{prefix}"


def _unchanged(doc: str) -> Callable[..., list[Series]]:
    def run(ctx: Context, series: SeriesList, value: Any = None) -> list[Series]:
        return series

    run.__doc__ = doc
    return run


# graph styling: graphite-web's JSON carries none of it, the data comes back as it went in
register("Graph", "color")(_unchanged("Draws the series in a color (the data is unchanged)."))
register("Graph", "lineWidth")(_unchanged("Draws the series with a line width (the data is unchanged)."))
register("Graph", "alpha")(_unchanged("Draws the series with an opacity (the data is unchanged)."))


@register("Graph", "dashed")
def dashed(ctx: Context, series: SeriesList, dashLength: float = 5) -> list[Series]:
    """Draws the series dashed: graphite-web renames it, the data is unchanged."""
    return [replace(s, name=f"dashed({s.name}, {dashLength:g})") for s in ctx.budget.each(series)]


@register("Graph", "secondYAxis")
def second_y_axis(ctx: Context, series: SeriesList) -> list[Series]:
    """Draws the series on the right axis: graphite-web renames it, the data is unchanged."""
    return [replace(s, name=f"secondYAxis({s.name})") for s in ctx.budget.each(series)]


@register("Graph", "stacked")
def stacked(ctx: Context, series: SeriesList, stackName: str = "__DEFAULT__") -> list[Series]:
    """Each series plus those before it (a stack), point by point."""
    total: list[float] = []
    out = []
    for s in ctx.budget.each(series):
        values: list[Value] = []
        for i, v in enumerate(s.values):
            if len(total) <= i:
                total.append(0)
            if v is None:
                values.append(None)
            else:
                total[i] += v
                values.append(total[i])
        name = f"stacked({s.name})" if stackName == "__DEFAULT__" else s.name
        out.append(replace(s, name=name, values=values))
    return out


@register("Special", "cactiStyle")
def cacti_style(ctx: Context, series: SeriesList, system: str = "", units: str = "") -> list[Series]:
    """Each name padded and followed by its current, max and min, as Cacti's legends."""
    if not series:
        return series

    def fmt(x: float) -> str:
        if system and units:
            scaled, prefix = format_units(x, system, units)
            return f"{scaled:.2f} {prefix}"
        if system:
            return _units(x, system)
        return f"{x:.2f} {units}" if units else f"{x:.2f}"

    stats = [(AGG["last"](s.values), AGG["max"](s.values), AGG["min"](s.values)) for s in series]
    widths = [max(len(s.name) for s in series)] + [
        max(len(fmt(int(row[k] or 3))) for row in stats) + 3 for k in range(3)
    ]
    out = []
    for s, row in zip(series, stats, strict=True):
        shown = ["nan" if v is None else fmt(float(v)) for v in row]
        name = (
            f"{s.name:<{widths[0]}} Current:{shown[0]:<{widths[1]}} Max:{shown[1]:<{widths[2]}} "
            f"Min:{shown[2]:<{widths[3]}} "
        )
        out.append(replace(s, name=name))
    return out
