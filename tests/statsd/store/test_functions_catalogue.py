"""The whole table of render functions: each a typed plain callable with its group and a line of
description (what graphite-web's /functions catalogue is built from), each answering any
arguments with series or a 400 that names it, and the edge cases (empty lists, nulls, a missing
divisor) hand-computed in graphite-web's maths. The values are checked against graphite-web
itself in test_graphite_diff.py."""

from __future__ import annotations

import inspect
import random
import re
import time
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from tests.conftest import need
from webops.statsd.http import Request
from webops.statsd.store.db import Store
from webops.statsd.store.functions import FUNCTIONS, GROUPS, Budget, Series, TargetError, evaluate
from webops.statsd.store.glob import matching
from webops.statsd.store.graphite_api import render
from webops.statsd.store.retention import Point, schemas

DATA = {
    "web.a.hits": [1.0, 2.0, None, 4.0],
    "web.b.hits": [3.0, None, None, 8.0],
    "web.c.hits": [0.0, 0.0, 1.0, 0.0],
}
START = 100_000  # ms; a point every 10 s
WINDOW = (START, START + 40_000)


def fetcher(budget: Budget | None = None, asked: list | None = None) -> Any:
    def fetch(path: str, earlier: int, shift: int = 0) -> list[Series]:
        """The three series (earlier: as many more points of 1.0 before), charged as the store
        charges them, before they are made."""
        if asked is not None:
            asked.append((path, earlier, shift))
        extra = earlier // 10_000
        names = matching(list(DATA), path)
        if budget:
            budget.charge(series=len(names), points=len(names) * (extra + 4))
        return [Series(n, START - 10_000 * extra, 10_000, [1.0] * extra + list(DATA[n]), path) for n in names]

    return fetch


def run(target: str) -> list[tuple[str, list]]:
    return [(s.name, s.values) for s in evaluate(target, fetcher(), Budget(), WINDOW)]


# the functions the issue names, and those public dashboards use most (docs/statsd.md, Functions)
EXPECTED = """constantLine groupByNode groupByNodes aliasByMetric aliasSub timeShift derivative integral
exclude grep percentileOfSeries hitcount removeBelowValue removeAboveValue consolidateBy
sumSeriesWithWildcards averageSeriesWithWildcards countSeries nPercentile offset absolute
invert pow sortByName sortByTotal highestAverage highestMax lowestAverage lowestCurrent
mostDeviant currentAbove currentBelow averageAbove averageBelow maximumAbove maximumBelow
minimumAbove minimumBelow stacked color lineWidth dashed secondYAxis divideSeries diffSeries
multiplySeries rangeOfSeries stddevSeries delay integralByInterval changed isNonNull
transformNull keepLastValue smartSummarize holtWintersForecast holtWintersConfidenceBands
linearRegression applyByNode movingMedian movingSum movingMin movingMax squareRoot log
scaleToSeconds perSecond asPercent legendValue cactiStyle alias aliasByNode sumSeries
averageSeries maxSeries minSeries scale summarize nonNegativeDerivative movingAverage
highestCurrent sortByMaxima limit group""".split()  # noqa: SIM905 - a list of words

KINDS = {int, float, str, bool, type(None), Any}


def test_the_functions_dashboards_use_most_are_there() -> None:
    missing = [name for name in EXPECTED if name not in FUNCTIONS]
    assert not missing and len(FUNCTIONS) >= 60


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_is_a_typed_callable_with_a_group_and_a_description(name: str) -> None:
    fn = FUNCTIONS[name]
    params = list(inspect.signature(fn).parameters.values())
    assert params and params[0].name == "ctx", name
    hints = get_type_hints(fn)
    for p in params[1:]:
        hint = hints.get(p.name)
        assert hint is not None, f"{name}: {p.name} has no annotation"
        parts = getattr(hint, "__args__", None) if getattr(hint, "__origin__", None) is not list else None
        kinds = set(parts) if parts else {hint}
        assert all(k in KINDS or getattr(k, "__origin__", None) is list for k in kinds), (name, p.name, hint)
    assert GROUPS.get(name), f"{name} has no group"
    assert (fn.__doc__ or "").strip().splitlines()[0], f"{name} has no description"


DOCS = Path(__file__).parents[3] / "docs" / "statsd.md"


def test_the_manual_lists_exactly_the_functions() -> None:
    """docs/statsd.md's Functions table names what FUNCTIONS has, no more, no less."""
    text = DOCS.read_text()
    section = text[text.index("### Functions") : text.index("## The dashboard")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    listed = [name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[2])]
    assert sorted(listed) == sorted(FUNCTIONS)
    assert {row.split("|")[1].strip() for row in rows} == set(GROUPS.values())


GRAPHITE_FUNCTIONS = Path("/usr/lib/python3/dist-packages/graphite/render/functions.py")


def test_names_and_groups_are_graphite_webs() -> None:
    """Every name is one graphite-web 1.1 has (what Grafana's editor offers), in its group."""
    need(GRAPHITE_FUNCTIONS.exists(), "graphite-web (apt-get install graphite-web)")
    src = GRAPHITE_FUNCTIONS.read_text()
    groups = dict(re.findall(r"^(\w+)\.group = '([^']+)'", src, re.M))
    table = dict(re.findall(r"'(\w+)'\s*:\s*(\w+)", src[src.index("SeriesFunctions = {") :]))
    theirs = {name: groups.get(fn) for name, fn in table.items()}
    assert {name: GROUPS[name] for name in FUNCTIONS} == {name: theirs.get(name) for name in FUNCTIONS}


POOL: list[str] = [
    "web.*.hits", "web.a.hits", "nothing.*", "0", "-1", "1", "3", "2.5", "-7.5", "1e300",
    "1000000000000", '"1s"', '"10s"', '"-1min"', '"sum"', '"max"', '"x"', '"("', '"%"', "true", "false",
    "sumSeries(web.*.hits)",
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_any_arguments_get_series_or_a_400_naming_the_function(name: str) -> None:
    """Random argument lists from a pool of series, nothing, numbers from -1 to 10**12, intervals,
    aggregation names, bad patterns and booleans: series back, or a TargetError (a 400, or a 422
    past the budget) that names the function; never another exception. A stall would pass the
    budget's deadline: Expired, which is no TargetError, fails the test."""
    rng = random.Random(name)
    for _ in range(60):
        args = [rng.choice(POOL) for _ in range(rng.randint(0, 5))]
        if rng.random() < 0.7:
            args[:1] = [rng.choice(POOL[:3])]
        target = f"{name}({','.join(args)})"
        budget = Budget(max_points=100_000, max_series=1000, deadline=time.monotonic() + 10)
        try:
            got = evaluate(target, fetcher(budget), budget, WINDOW)
        except TargetError as e:
            assert name in str(e) or "points" in str(e) or "series" in str(e), (target, str(e))
        else:
            assert all(isinstance(s, Series) and isinstance(s.values, list) for s in got), target


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ('groupByNode(web.*.hits,"a")', "groupByNode: the argument nodeNum is a whole number, not 'a'"),
        ('scale(web.a.hits,"x")', "scale: the argument factor is a number, not 'x'"),
        ("sumSeries(1)", "sumSeries: the arguments lists are a path or a call, not 1"),
        ("offset(web.a.hits)", "offset: the argument factor is missing"),
        ("absolute(web.a.hits,1)", "absolute: takes at most 1 arguments, not 2"),
        ("percentileOfSeries(web.*.hits,0)", "percentileOfSeries: the percent n must be greater than 0"),
        ('consolidateBy(web.a.hits,"median")', "consolidateBy: the argument consolidationFunc is one of"),
        ("log(web.a.hits,1)", "log: the argument base is a positive number other than 1"),
        ('exclude(web.*.hits,"(")', "exclude: the argument pattern is not a regular expression"),
        ('timeShift(web.a.hits,"soon")', "expected an interval"),
        ("movingSum(web.a.hits,0)", "movingSum: the argument windowSize is at least one point"),
        ("divideSeries(web.a.hits,web.*.hits)", "divideSeries: the divisor must be exactly one series"),
        ('groupByNode(web.*.hits,1,"bogus")', "groupByNode: unknown aggregation 'bogus'"),
        ('aggregate(web.*.hits,"bogus")', "aggregate: unknown aggregation 'bogus'"),
        ('filterSeries(web.*.hits,"max","~",1)', "filterSeries: the argument operator is one of"),
        ('aliasSub(web.a.hits,"web","\\9")', "aliasSub: the argument replace does not fit the pattern"),
        ("constantLine(web.a.hits)", "constantLine: the argument value is a number, not a series list"),
        ("holtWintersForecast(web.a.hits,1)", "holtWintersForecast: '1': expected an interval"),
    ],
)
def test_bad_arguments_are_a_400_naming_the_function_and_the_argument(target: str, message: str) -> None:
    with pytest.raises(TargetError) as e:
        evaluate(target, fetcher(), Budget(), WINDOW)
    assert message in str(e.value)


def test_combining_with_nulls_and_empty_lists() -> None:
    assert run("diffSeries(web.a.hits,web.b.hits)")[0][1] == [-2.0, 2.0, None, -4.0]
    assert run("multiplySeries(web.a.hits,web.b.hits)")[0][1] == [3.0, None, None, 32.0]
    assert run("multiplySeries(web.a.hits)") == [("web.a.hits", DATA["web.a.hits"])]  # one: unchanged
    assert run("rangeOfSeries(web.*.hits)")[0][1] == [3.0, 2.0, 0.0, 8.0]
    assert run("countSeries(web.*.hits)") == [("countSeries(web.*.hits)", [3.0] * 4)]
    assert run("countSeries(nothing.*)") == [("0.0", [0.0] * 3)]  # graphite-web's constantLine(0)
    assert run("sumSeries(nothing.*)") == [] and run("groupByNode(nothing.*,1)") == []
    assert run("percentileOfSeries(web.*.hits,50)")[0][1] == [1.0, 2.0, 1.0, 4.0]  # 50% of 3: the 2nd
    assert run('groupByNode(web.*.hits,1,"sum")') == [(n, DATA[f"web.{n}.hits"]) for n in "abc"]
    assert run("sumSeriesWithWildcards(web.*.hits,1)") == [("web.hits", [4.0, 2.0, 1.0, 12.0])]
    assert run('groupByNodes(web.*.hits,"sumSeries",2)') == [("hits", [4.0, 2.0, 1.0, 12.0])]
    assert run("divideSeries(web.a.hits,web.c.hits)")[0][1] == [None] * 4  # 0 or None: None
    assert run("divideSeries(web.a.hits,nothing.*)") == [("divideSeries(web.a.hits,MISSING)", [None] * 4)]
    assert run("constantLine(7)") == [("7.0", [7.0] * 3)]


def test_transforming_with_nulls() -> None:
    assert run("derivative(web.a.hits)") == [("derivative(web.a.hits)", [None, 1.0, None, None])]
    assert run("integral(web.b.hits)")[0][1] == [3.0, None, None, 11.0]
    assert run("isNonNull(web.b.hits)")[0][1] == [1, 0, 0, 1]
    assert run("changed(web.c.hits)")[0][1] == [0, 0, 1, 1]
    want = [("removeBelowValue(web.a.hits, 2)", [None, 2.0, None, 4.0])]
    assert run("removeBelowValue(web.a.hits,2)") == want
    assert run("offset(web.b.hits,-1)")[0][1] == [2.0, None, None, 7.0]
    assert run("delay(web.a.hits,1)")[0][1] == [None, 1.0, 2.0, None]
    assert run("delay(web.a.hits,-1)")[0][1] == [2.0, None, 4.0, None]
    assert run("invert(web.c.hits)")[0][1] == [None, None, 1.0, None]  # 1/0 is None, not a 500
    assert run("squareRoot(scale(web.a.hits,-1))")[0][1] == [None] * 4
    assert run("nPercentile(web.a.hits,50)") == [("nPercentile(web.a.hits, 50)", [2.0] * 4)]
    assert run("nPercentile(web.b.hits,50)")[0][1] == [8.0] * 4  # 50% of 2 known: the 2nd
    assert run("movingSum(web.a.hits,2)")[0][1] == [2.0, 2.0, 3.0, 2.0]  # 2 points of 1.0 before
    assert run("movingMax(web.b.hits,2)")[0][1] == [1.0, 3.0, 3.0, None]


def test_names_and_graph_options() -> None:
    assert run("aliasByMetric(scale(web.a.hits,2))")[0][0] == "hits"
    assert run('aliasSub(web.a.hits,"web\\.(\\w)\\..*","\\1")')[0][0] == "a"
    assert run('color(web.a.hits,"red")') == run("web.a.hits") == run("lineWidth(web.a.hits,3)")
    assert run("secondYAxis(web.a.hits)")[0] == ("secondYAxis(web.a.hits)", DATA["web.a.hits"])
    assert [n for n, _ in run('exclude(web.*.hits,"^web.b")')] == ["web.a.hits", "web.c.hits"]
    names = [n for n, _ in run("sortByName(web.*.hits,false,true)")]
    assert names == ["web.c.hits", "web.b.hits", "web.a.hits"]
    assert run('legendValue(web.a.hits,"max")')[0][0] == "web.a.hits (max: 4.0)"


def test_time_shift_fetches_the_window_moved_back() -> None:
    asked: list = []
    (got,) = evaluate('timeShift(web.a.hits,"1min")', fetcher(asked=asked), Budget(), WINDOW)
    assert asked == [("web.a.hits", 0, 0), ("web.a.hits", 0, 60_000)]
    assert (got.name, got.start) == ('timeShift(web.a.hits, "-1min")', START)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "s.sqlite", schemas([[".", "10s:1d"]]))
    now = 1_795_467_600
    for i in range(30):
        s.write((now - i * 10) * 1000, 10_000, [Point(f"web.h{n}", 5.0 + i, "average") for n in range(20)])
    return s


def ask(store: Store, budget: Budget, target: str) -> tuple[int, str]:
    params = {"target": [target], "from": ["-1h"]}
    status, _, body = render(store, Request("GET", "/render", params), 1_795_467_600, budget)
    return status, body


@pytest.mark.parametrize(
    "target",
    [
        "holtWintersForecast(web.*)",  # seven days fetched before the hour: 20 x 60,840 points
        'movingMedian(web.*,"1d")',
        'timeShift(movingSum(web.*,"1d"),"1d")',
        'applyByNode(web.*,1,"holtWintersConfidenceBands(%)")',
    ],
)
def test_functions_that_fetch_further_back_are_charged_to_the_budget(store: Store, target: str) -> None:
    status, body = ask(store, Budget(max_points=100_000), target)
    assert status == 422 and "http.renderMaxPoints" in body, (target, status, body[:200])


def test_the_heaviest_expressions_get_an_answer(store: Store) -> None:
    """Each a 200, 400 or 422 within the budget's deadline, or, past it, Expired (the 504 the
    daemon answers): never a crash, never a render that does not look at its deadline."""
    nodes = ",".join(["0"] * 20_000)
    heavy = [
        f'groupByNodes(web.*,"sum",{nodes})',  # a huge argument list
        "sumSeries(" * 400 + "web.*" + ")" * 400,  # deep nesting
        "absolute(" * 5000 + "web.h1" + ")" * 5000,  # deeper than Python's stack
        "legendValue(web.*," + ",".join(["'avg'"] * 20_000) + ")",  # names that grow
        "group(" + ",".join(["web.*"] * 2000) + ")",  # many wildcards
        'grep(web.*,"(a|aa)+$")',
    ]
    for target in heavy:
        budget = Budget(max_points=200_000, max_series=2000, deadline=time.monotonic() + 5)
        try:
            status, body = ask(store, budget, target)
        except TimeoutError:  # functions.Expired: the deadline seen, HTTP's 504 (a loaded machine)
            continue
        assert status in (200, 400, 422), (target[:60], status, body[:200])
