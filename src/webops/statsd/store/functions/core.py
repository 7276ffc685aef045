"""Graphite's render functions, the ones dashboards use most, with graphite-web 1.1's names and
maths (so a dashboard's legend and values read the same). Pure: series in, series out.

A target is parsed into calls, paths and constants; `evaluate` walks it, fetching paths through
the function it is given. Each function is one entry of FUNCTIONS, a plain callable whose Python
signature (after the context) is its parameters, typed: evaluate checks the arguments against
the annotations before the call (a 400 naming the function and the parameter, not a 500 from
deep inside), and graphite-web's /functions catalogue is built from the same signatures. GROUPS
holds graphite-web's group of each (Combine, Transform, ...), which a signature cannot say. The
families live in the modules beside this one (combine, transform, calculate, filter); this one
holds the parser, the evaluator and the helpers they share.

Every evaluation runs on a Budget: the points it may read and make, the series it may read, and a
deadline. It is looked at on each fetch, each call and each series a function walks, so a render
that is too big is refused before the work is allocated, and one that is too slow stops (a
render runs in a thread nobody can kill: it has to notice).

Time is integer milliseconds throughout (a series' start and step, intervals, how much earlier
to fetch): the store keeps sub-second steps (a 100 ms flushInterval). Graphite's intervals are
still written in its units (10s, 1min), read as milliseconds.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

Value = float | None

# Graphite's units for relative times (-1h, -10min, -2d), in seconds: a bare `m` is minutes, as in
# graphite-web (which has no unit below the second; neither has this)
UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "min": 60, "mins": 60, "minute": 60, "minutes": 60, "m": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "mon": 2592000, "month": 2592000, "months": 2592000,
    "y": 31536000, "year": 31536000, "years": 31536000,
}  # fmt: skip
MS = 1000  # milliseconds in a second


class TargetError(ValueError):
    """A target that cannot be evaluated: a 400 with this one line."""


class Refused(TargetError):
    """A render past the budget's points or series: a 422 naming the limit and its key."""


class Expired(TimeoutError):
    """The deadline passed, or whoever waited for the render gave up (shutdown): stop working."""


T = TypeVar("T")


@dataclass
class Budget:
    """What one render may cost; the defaults are no limit (the daemon passes its http.render*
    keys). `stop()` is called from another thread: the render notices at its next check."""

    max_points: float = math.inf
    max_series: float = math.inf
    deadline: float = math.inf  # time.monotonic() after which the work is abandoned
    # Series names an aggregate builds from every name below it (asPercent of asPercent of a
    # wide wildcard multiplies them at each level): counted like points, before they are built.
    max_name_bytes: float = 16 << 20
    points: int = 0
    series: int = 0
    name_bytes: int = 0
    reads: int = 0  # series read from the store (graphite_api.fetch counts them; a repeat is none)
    stopped: bool = False

    def expired(self) -> bool:
        return self.stopped or time.monotonic() > self.deadline

    def check(self) -> None:
        if self.expired():
            raise Expired("the render was abandoned")

    def charge(self, points: int = 0, series: int = 0, names: int = 0) -> None:
        """Count work about to be done; refuse it, before it is allocated, past a limit."""
        self.check()
        self.points += points
        self.series += series
        self.name_bytes += names
        if self.name_bytes > self.max_name_bytes:
            raise Refused(
                f"this render builds more than {self.max_name_bytes / (1 << 20):.0f} MiB of series names "
                "(aggregates nested over wide wildcards): alias the inner ones or narrow the wildcards"
            )
        if self.points > self.max_points:
            raise Refused(
                f"this render needs more than {self.max_points:.0f} points (http.renderMaxPoints): "
                "ask for fewer series, a shorter range or wider summarize buckets"
            )
        if self.series > self.max_series:
            raise Refused(
                f"this render reads more than {self.max_series:.0f} series (http.renderMaxSeries): "
                "narrow the wildcards"
            )

    def each(self, items: Iterable[T]) -> Iterator[T]:
        """`items`, checking the deadline before each: a function's per-series loop."""
        for item in items:
            self.check()
            yield item

    def stop(self) -> None:
        self.stopped = True


@dataclass
class Series:
    """Values from `start` every `step`, both in epoch milliseconds."""

    name: str
    start: int
    step: int
    values: list[Value]
    path_expression: str = ""  # the path the series was fetched by (names aggregates)
    tags: dict[str, str] = field(default_factory=dict)
    consolidate_func: str = "average"  # how maxDataPoints and normalize merge points (consolidateBy)

    def __post_init__(self) -> None:
        self.path_expression = self.path_expression or self.name

    @property
    def end(self) -> int:
        return self.start + len(self.values) * self.step


# ------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...] = ()  # name=value arguments, after the positional ones


@dataclass(frozen=True)
class Path:
    expression: str


_TOKEN = re.compile(
    r"""\s*(?:(?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?![\w.*\[{])"""
    r"""|(?P<string>"[^"]*"|'[^']*')|(?P<bool>true|false)(?![\w.])|(?P<punct>[(),]))"""
)


# graphite-web's argname: a keyword argument is `name=value` (a path may hold `=`, but not before
# a dot: `a.b=c` is a path)
_KEYWORD = re.compile(r"\s*([A-Za-z_]\w*)\s*=")


def parse(text: str) -> Any:
    node, pos = _parse(text, 0)
    if text[pos:].strip():
        raise TargetError(f"{text!r}: unexpected {text[pos:].strip()[:20]!r}")
    return node


def _path_end(text: str, pos: int) -> int:
    """A path runs to a comma or parenthesis outside braces."""
    depth = 0
    while pos < len(text):
        c = text[pos]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif depth == 0 and c in ",()":
            break
        pos += 1
    return pos


def _parse(text: str, pos: int) -> tuple[Any, int]:
    m = _TOKEN.match(text, pos)
    if m and m["number"] is not None:
        n = float(m["number"])  # a whole number stays one where a float holds it exactly
        whole = n.is_integer() and abs(n) < 2**53 and not re.search("[.eE]", m["number"])
        return (int(n) if whole else n), m.end()
    if m and m["string"] is not None:
        return m["string"][1:-1], m.end()
    if m and m["bool"] is not None:
        return m["bool"] == "true", m.end()
    while pos < len(text) and text[pos].isspace():
        pos += 1
    end = _path_end(text, pos)
    word = text[pos:end].strip()
    if not word:
        raise TargetError(f"{text[:200]!r}: expected a path, a call or a value at {pos}")
    if word[0] in "\"'":  # a string that never closes is not a path named `"abc`
        raise TargetError(f"{word[:50]!r}: a string without its closing quote")
    if end < len(text) and text[end] == "(":
        args: list[Any] = []
        kwargs: list[tuple[str, Any]] = []
        pos = end + 1
        while True:
            if (m := _TOKEN.match(text, pos)) and m["punct"] == ")":
                pos = m.end()
                break
            if keyword := _KEYWORD.match(text, pos):
                arg, pos = _parse(text, keyword.end())
                kwargs.append((keyword[1], arg))
            elif kwargs:  # graphite-web's grammar: positional arguments first
                raise TargetError(f"{word}: a positional argument after a keyword one, at {pos}")
            else:
                arg, pos = _parse(text, pos)
                args.append(arg)
            m = _TOKEN.match(text, pos)
            if not m or m["punct"] not in (",", ")"):
                raise TargetError(f"{text!r}: expected , or ) at {pos}")
            pos = m.end()
            if m["punct"] == ")":
                break
        return Call(word, tuple(args), tuple(kwargs)), pos
    return Path(word), end


# ------------------------------------------------------------------ helpers


def _safe(fn: Callable[[list[float]], float]) -> Callable[[Sequence[Value]], Value]:
    def apply(values: Sequence[Value]) -> Value:
        known = [v for v in values if v is not None]
        return fn(known) if known else None

    return apply


def _median(v: list[float]) -> float:
    v = sorted(v)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def _stddev(v: list[float]) -> float:
    mean = sum(v) / len(v)
    return math.sqrt(sum((x - mean) * (x - mean) for x in v) / len(v))


def _multiply(values: Sequence[Value]) -> Value:
    """None if any value is (graphite-web's safeMul), unlike the others, which skip them."""
    known = [v for v in values if v is not None]
    if not known or len(known) < len(values):
        return None
    return float(reduce(lambda a, b: a * b, known))


def _avg_zero(values: Sequence[Value]) -> Value:
    """Unknown values counted as 0, when at least one is known."""
    if all(v is None for v in values):
        return None
    return sum(0.0 if v is None else v for v in values) / len(values)


# graphite-web's aggregation functions (aggregate, groupByNode, summarize, highest, ...), by name
AGG: dict[str, Callable[[Sequence[Value]], Value]] = {
    "sum": _safe(lambda v: float(sum(v))),
    "total": _safe(lambda v: float(sum(v))),
    "average": _safe(lambda v: sum(v) / len(v)),
    "avg": _safe(lambda v: sum(v) / len(v)),
    "avg_zero": _avg_zero,
    "median": _safe(_median),
    "max": _safe(max),
    "min": _safe(min),
    "diff": _safe(lambda v: v[0] - sum(v[1:])),
    "stddev": _safe(_stddev),
    "count": _safe(lambda v: float(len(v))),
    "range": _safe(lambda v: float(max(v)) - float(min(v))),
    "rangeOf": _safe(lambda v: float(max(v)) - float(min(v))),
    "multiply": _multiply,
    "last": _safe(lambda v: v[-1]),
    "current": _safe(lambda v: v[-1]),
}


def agg_func(function: str, name: str) -> Callable[[Sequence[Value]], Value]:
    """AGG[name] (a trailing Series is dropped: groupByNode's "sumSeries"), or a 400 naming
    `function` and the choices."""
    key = name[:-6] if name.endswith("Series") else name
    if key not in AGG:
        raise TargetError(f"{function}: unknown aggregation {name!r} ({', '.join(AGG)})")
    return AGG[key]


# graphite-web's TimeSeries consolidation functions (consolidateBy's choices), on known values
CONSOLIDATE: dict[str, Callable[[Sequence[Value]], Value]] = {
    "sum": AGG["sum"],
    "average": AGG["average"],
    "avg": AGG["average"],
    "avg_zero": AGG["average"],
    "max": AGG["max"],
    "min": AGG["min"],
    "first": _safe(lambda v: v[0]),
    "last": AGG["last"],
}


def _consolidate(s: Series, factor: int) -> list[Value]:
    if factor <= 1:
        return list(s.values)
    merge = CONSOLIDATE[s.consolidate_func]
    return [merge(s.values[i : i + factor]) for i in range(0, len(s.values), factor)]


def normalize(series: list[Series]) -> tuple[list[list[Value]], int, int, int]:
    """graphite-web's normalize: the least common multiple of the steps, each series
    consolidated (averaged) to it, over the union of their ranges."""
    step = reduce(math.lcm, (s.step for s in series))
    start = min(s.start for s in series)
    end = max(s.end for s in series)
    end -= (end - start) % step
    rows = [_consolidate(s, step // s.step) for s in series]
    return rows, start, end, step


def _columns(rows: list[list[Value]]) -> list[list[Value]]:
    width = max((len(r) for r in rows), default=0)
    return [[r[i] if i < len(r) else None for r in rows] for i in range(width)]


def _paths(ctx: Context, series: list[Series]) -> str:
    """The distinct path expressions of `series`, for an aggregate's name: charged to the budget
    before the text exists."""
    paths = dict.fromkeys(s.path_expression for s in series)
    ctx.budget.charge(names=sum(len(p) + 1 for p in paths))
    return ",".join(paths)


def _interval_ms(text: Any) -> int:
    """An interval as graphite-web reads it (a sign is ignored: movingAverage's and
    integralByInterval's windows are their length there too), in milliseconds; at least a
    second, since a bucket or window of none is endless work, and at most 15 digits."""
    m = re.fullmatch(r"([-+]?)(\d{1,15})\s*([a-z]+)", str(text).strip().lower())
    if not m or m[3] not in UNITS or not int(m[2]):
        raise TargetError(f"{str(text)[:40]!r}: expected an interval such as 1min, 10s, 1h, 1d")
    return int(m[2]) * UNITS[m[3]] * MS


def _bucket_ms(text: Any) -> int:
    """A bucket's size (summarize, hitcount, smartSummarize): a negative one is refused, where
    graphite-web loops forever or answers nothing (a window's sign is dropped, as there)."""
    if str(text).strip().startswith("-"):
        raise TargetError(f"the argument intervalString is a positive interval, not {str(text)[:40]!r}")
    return _interval_ms(text)


def _fmt(value: Any) -> str:
    return f"{float(value):g}"


# ------------------------------------------------------------------ the functions


def _first_path(name: str) -> str:
    """The first path inside a series name that may wrap it in functions."""
    m = re.search(r"(?:^|[(,\s])([^(),\s\"']+\.[^(),\s\"']*)", name)
    return m[1] if m else name


FUNCTIONS: dict[str, Callable[..., list[Series]]] = {}  # filled by the family modules
GROUPS: dict[str, str] = {}  # graphite-web's group of each (its /functions catalogue files them so)


def register(group: str, *names: str) -> Callable[[Callable[..., list[Series]]], Callable[..., list[Series]]]:
    """Adds a function to FUNCTIONS under `names` and to GROUPS; the function is returned as it
    is (a plain callable, its signature its parameters)."""

    def add(fn: Callable[..., list[Series]]) -> Callable[..., list[Series]]:
        for name in names:
            FUNCTIONS[name] = fn
            GROUPS[name] = group
        return fn

    return add


SeriesList = list[Series]  # a parameter that takes a path or a call: the series it stands for


# ------------------------------------------------------------------ evaluation


@dataclass
class Context:
    """What a function may need beyond its arguments: the request's window (constantLine,
    integralByInterval), its first argument again, further back or shifted (movingAverage,
    timeShift, holtWinters), the budget its per-series loops look at. Times in milliseconds."""

    fetch: Callable[[str, int, int], list[Series]]  # (path, ms earlier, ms shifted back) -> series
    budget: Budget
    first_arg: Any = None
    start: int | None = None  # the request's from and until, where the caller says them
    end: int | None = None
    shift: int = 0  # how far back timeShift moved this part of the target

    def refetch(self, earlier_ms: int, shift_ms: int = 0) -> list[Series]:
        """The first argument again, from `earlier_ms` before the start, all moved `shift_ms`
        back."""
        return _evaluate(self.first_arg, self.fetch, earlier_ms, self.budget, self.window(), shift_ms)

    def window(self) -> tuple[int, int] | None:
        return None if self.start is None or self.end is None else (self.start, self.end)

    def span(self, function: str) -> tuple[int, int]:
        if self.start is None or self.end is None:
            raise TargetError(f"{function}: needs the request's from and until")
        return self.start - self.shift, self.end - self.shift


Fetch = Callable[..., list[Series]]


def evaluate(
    target: str | Call | Path,
    fetch: Fetch,
    budget: Budget | None = None,
    window: tuple[int, int] | None = None,
) -> list[Series]:
    """`fetch(path, earlier_ms, shift_ms=0)`: the series of a path, from `earlier_ms` before the
    window's start, the whole window moved `shift_ms` back (timeShift); `window`, the request's
    (from, until) in milliseconds, for the functions that draw over it. `target` is its text or
    what parse() made of it."""
    node = parse(target) if isinstance(target, str) else target
    return _evaluate(node, fetch, 0, budget or Budget(), window, 0)


def paths(node: Any) -> Iterator[str]:
    """Every path expression in a parsed target, in order, repeats included: what it will read
    (before it reads any, so the whole target's series can be counted first)."""
    stack = [node]
    while stack:  # not recursive: a target nested thousands deep is refused later, not here
        item = stack.pop()
        if isinstance(item, Path):
            yield item.expression
        elif isinstance(item, Call):
            stack.extend(reversed([*item.args, *(value for _, value in item.kwargs)]))


def _evaluate(
    node: Any, fetch: Fetch, earlier: int, budget: Budget, window: tuple[int, int] | None, shift: int
) -> list[Series]:
    budget.check()
    if isinstance(node, Path):
        return fetch(node.expression, earlier, shift) if shift else fetch(node.expression, earlier)
    if not isinstance(node, Call):
        raise TargetError(f"{node!r} is a value, not a series")
    fn = FUNCTIONS.get(node.name)
    if fn is None:
        raise TargetError(f"{node.name}: not a supported render function ({', '.join(sorted(FUNCTIONS))})")
    nodes = bind(node.name, fn, node.args, node.kwargs)
    args = [
        _evaluate(a, fetch, earlier, budget, window, shift) if isinstance(a, Path | Call) else a
        for a in nodes
    ]
    args = check_arguments(node.name, fn, args)

    def again(path: str, more: int, moved: int = 0) -> list[Series]:
        return fetch(path, earlier + more, shift + moved) if shift + moved else fetch(path, earlier + more)

    start, end = window if window else (None, None)
    first = nodes[0] if nodes else None  # given by position or by keyword (seriesList=...)
    ctx = Context(again, budget, first, start, end, shift)
    try:
        return fn(ctx, *args)
    except Refused:
        raise
    except TargetError as e:  # a helper's message (an interval, a pattern): say whose argument
        if str(e).startswith(f"{node.name}:"):
            raise
        raise TargetError(f"{node.name}: {e}") from None
    except (TypeError, ValueError, ArithmeticError, IndexError, re.error) as e:  # limit(x, 1e400)
        raise TargetError(f"{node.name}: {e}") from None


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a constant or a series list fits a parameter's annotation."""
    if hint is Any:
        return True
    origin = get_origin(hint)
    if origin is list:
        return isinstance(value, list)
    if get_args(hint) and origin is not None and origin is not list:  # X | Y, Optional[X]
        return any(_accepts(h, value) for h in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    if get_origin(hint) is list:
        return "a path or a call"
    if get_args(hint):
        return " or ".join(_describe(h) for h in get_args(hint) if h is not type(None))
    return {int: "a whole number", float: "a number", str: "a quoted string", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


_SIGNATURES: dict[Callable[..., Any], tuple[list[inspect.Parameter], dict[str, Any]]] = {}


def _signature(fn: Callable[..., Any]) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """The parameters after the context, and their annotations (looked up once per function)."""
    if fn not in _SIGNATURES:
        params = list(inspect.signature(fn).parameters.values())[1:]  # after the context
        _SIGNATURES[fn] = (params, get_type_hints(fn))
    return _SIGNATURES[fn]


def _is_series(hint: Any) -> bool:
    return hint == SeriesList or SeriesList in get_args(hint) or Series in get_args(hint)


def graphite_name(p: inspect.Parameter, hint: Any) -> str:
    """A parameter's name as graphite-web spells it (and /functions lists it): camelCase, the
    series list `seriesList` (or `seriesLists`, for many); what a keyword argument is matched to."""
    if _is_series(hint) and p.kind is p.VAR_POSITIONAL:
        return "seriesLists"
    if _is_series(hint) and p.name == "series":
        return "seriesList"
    head, *rest = p.name.split("_")
    return head + "".join(part.title() for part in rest)


class _Default:
    """A parameter left to its default, between keyword arguments (summarize(x,"1h",alignToFrom=true))."""

    def __repr__(self) -> str:
        return "default"


DEFAULT = _Default()


def bind(
    name: str, fn: Callable[..., Any], args: Sequence[Any], kwargs: Sequence[tuple[str, Any]]
) -> list[Any]:
    """The positional arguments with the keyword ones put in their parameters' places (graphite-web's
    names), DEFAULT in the places neither fills; a TargetError for a keyword the function does not
    have, or a parameter given twice."""
    if not kwargs:
        return list(args)
    params, hints = _signature(fn)
    places = {
        graphite_name(p, hints.get(p.name)): i for i, p in enumerate(params) if p.kind is not p.VAR_POSITIONAL
    }
    out = list(args)
    given: set[str] = set()
    for keyword, value in kwargs:
        if keyword not in places:
            names = ", ".join(places) or "none"
            raise TargetError(f"{name}: no argument named {keyword!r} (its arguments: {names})")
        if keyword in given or places[keyword] < len(args):
            raise TargetError(f"{name}: the argument {keyword} is given twice")
        given.add(keyword)
        out += [DEFAULT] * (places[keyword] + 1 - len(out))
        out[places[keyword]] = value
    return out


def _text(hint: Any, value: Any) -> Any:
    """A number where only text is expected, as text: graphite-web (its input validation off by
    default) takes alias(x, 5)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if hint is not None and number and not _accepts(hint, value) and _accepts(hint, "text"):
        return _fmt(value) if isinstance(value, float) else str(value)
    return value


def check_arguments(name: str, fn: Callable[..., Any], args: list[Any]) -> list[Any]:
    """The arguments against the function's signature: their number, and each against its
    annotation (a series list where a path or call is expected, a number where a number is...);
    a TargetError naming the function and the parameter, before any work. Returns them, numbers
    given for text made text."""
    params, hints = _signature(fn)
    positional = [p for p in params if p.kind is not p.VAR_POSITIONAL]
    rest = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
    if rest is None and len(args) > len(positional):
        raise TargetError(f"{name}: takes at most {len(positional)} arguments, not {len(args)}")
    args = [
        _text(hints.get(positional[i].name if i < len(positional) else getattr(rest, "name", "")), v)
        for i, v in enumerate(args)
    ]
    for i, p in enumerate(positional):
        if i >= len(args) or args[i] is DEFAULT:
            if p.default is p.empty:
                raise TargetError(f"{name}: the argument {graphite_name(p, hints.get(p.name))} is missing")
            if i < len(args):
                args[i] = p.default
            continue
        if p.name in hints and not _accepts(hints[p.name], args[i]):
            raise TargetError(
                f"{name}: the argument {graphite_name(p, hints[p.name])} is {_describe(hints[p.name])}, "
                f"not {_shown(args[i])}"
            )
    if rest is not None and rest.name in hints:
        for value in args[len(positional) :]:
            if not _accepts(hints[rest.name], value):
                raise TargetError(
                    f"{name}: the arguments {rest.name} are {_describe(hints[rest.name])}, "
                    f"not {_shown(value)}"
                )
    return args


def _shown(value: Any) -> str:
    return "a series list" if isinstance(value, list) else repr(value)[:40]
