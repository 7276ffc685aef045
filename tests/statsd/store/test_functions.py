"""The render functions, against hand-computed answers in graphite-web 1.1's names and maths.
Series are in milliseconds (start and step), as the store keeps them."""

from __future__ import annotations

import pytest

from webops.statsd.store.functions import Call, Path, Series, TargetError, evaluate, parse

DATA = {
    "web.a.hits": [1.0, 2.0, None, 4.0],
    "web.b.hits": [3.0, None, None, 8.0],
    "web.c.hits": [0.0, 0.0, 1.0, 0.0],
}


def fetch(path: str, earlier: int) -> list[Series]:
    """Three series, 10 s apart from t=100 s (earlier, in ms: as many more points of 1.0 before)."""
    from webops.statsd.store.glob import matching

    extra = earlier // 10_000
    return [
        Series(n, 100_000 - 10_000 * extra, 10_000, [1.0] * extra + list(DATA[n]), path)
        for n in matching(list(DATA), path)
    ]


def run(target: str) -> list[tuple[str, list]]:
    return [(s.name, s.values) for s in evaluate(target, fetch)]


def test_parsing() -> None:
    assert parse("sumSeries(web.{a,b}.hits, web.c.*)") == Call(
        "sumSeries", (Path("web.{a,b}.hits"), Path("web.c.*"))
    )
    node = parse("summarize(scale(web.a.hits, -1.5), \"1min\", 'max', true)")
    assert isinstance(node, Call) and node.args[1:] == ("1min", "max", True)
    assert node.args[0] == Call("scale", (Path("web.a.hits"), -1.5))
    assert parse("web.1.hits") == Path("web.1.hits")  # a node that is a number is still a path
    for bad in ("sumSeries(web.a.hits", "scale(web.a.hits,) x", ""):
        with pytest.raises(TargetError):
            parse(bad)


def test_combining() -> None:
    assert run("sumSeries(web.*.hits)") == [("sumSeries(web.*.hits)", [4.0, 2.0, 1.0, 12.0])]
    assert run("averageSeries(web.{a,b}.hits)") == [("averageSeries(web.{a,b}.hits)", [2.0, 2.0, None, 6.0])]
    assert run("maxSeries(web.a.hits,web.b.hits)")[0] == (
        "maxSeries(web.a.hits,web.b.hits)",
        [3.0, 2.0, None, 8.0],
    )
    assert run("minSeries(web.*.hits)")[0][1] == [0.0, 0.0, 1.0, 0.0]


def test_transforming() -> None:
    assert run("scale(web.a.hits,10)") == [("scale(web.a.hits,10)", [10.0, 20.0, None, 40.0])]
    assert run("alias(web.a.hits,'A')") == [("A", DATA["web.a.hits"])]
    assert [n for n, _ in run("aliasByNode(web.*.hits,1)")] == ["a", "b", "c"]
    assert [n for n, _ in run("aliasByNode(scale(web.a.hits,2),-2)")] == ["a"]
    assert run("nonNegativeDerivative(web.c.hits)") == [
        ("nonNegativeDerivative(web.c.hits)", [None, 0.0, 1.0, None])
    ]
    assert run("perSecond(web.b.hits)") == [("perSecond(web.b.hits)", [None, None, None, None])]
    assert run("perSecond(web.a.hits)")[0][1] == [None, 0.1, None, None]
    assert run("keepLastValue(web.b.hits)") == [("keepLastValue(web.b.hits)", [3.0, 3.0, 3.0, 8.0])]
    assert run("keepLastValue(web.b.hits,1)")[0][1] == [3.0, None, None, 8.0]
    assert run("transformNull(web.a.hits)") == [("transformNull(web.a.hits,0)", [1.0, 2.0, 0, 4.0])]
    assert run("transformNull(web.a.hits,-1)")[0][1] == [1.0, 2.0, -1, 4.0]


def test_windows_and_buckets() -> None:
    # the window is filled from 2 points fetched further back (1.0 each), as graphite-web does
    assert run("movingAverage(web.a.hits,2)") == [("movingAverage(web.a.hits,2)", [1.0, 1.0, 1.5, 2.0])]
    assert run('movingAverage(web.a.hits,"20s")')[0][0] == 'movingAverage(web.a.hits,"20s")'
    got = evaluate('summarize(web.a.hits,"20s","sum")', fetch)
    assert [(s.name, s.start, s.step, s.values) for s in got] == [
        (
            'summarize(web.a.hits, "20s", "sum")',
            100_000,
            20_000,
            [3.0, 4.0, None],
        )  # to the bucket after the end
    ]
    assert run('summarize(web.b.hits,"20s","max")')[0][1] == [3.0, 8.0, None]


def test_percent_and_selection() -> None:
    assert run("asPercent(web.{a,b}.hits)") == [
        ("asPercent(web.a.hits,sumSeries(web.{a,b}.hits))", [25.0, 100.0, None, 4 / 12 * 100]),
        ("asPercent(web.b.hits,sumSeries(web.{a,b}.hits))", [75.0, None, None, 8 / 12 * 100]),
    ]
    assert run("asPercent(web.a.hits,200)")[0] == ("asPercent(web.a.hits,200)", [0.5, 1.0, None, 2.0])
    assert run("asPercent(web.a.hits,web.b.hits)")[0][1][0] == pytest.approx(100 / 3)
    assert [n for n, _ in run("highestCurrent(web.*.hits,2)")] == ["web.b.hits", "web.a.hits"]
    assert [n for n, _ in run("highestAverage(web.*.hits)")] == ["web.b.hits"]
    assert [n for n, _ in run("sortByMaxima(web.*.hits)")] == ["web.b.hits", "web.a.hits", "web.c.hits"]
    assert [n for n, _ in run("limit(web.*.hits,1)")] == ["web.a.hits"]


def test_refusals_name_the_problem() -> None:
    with pytest.raises(TargetError, match="timeStack: not a supported"):
        run("timeStack(web.a.hits)")
    with pytest.raises(TargetError, match="summarize: unknown function 'bogus'"):
        run('summarize(web.a.hits,"1min","bogus")')
    with pytest.raises(TargetError, match="expected an interval"):
        run('summarize(web.a.hits,"soon")')
    with pytest.raises(TargetError, match="scale"):
        run("scale(web.a.hits)")


T = 1_795_467_600_000  # a whole second, in ms


def test_sub_second_steps_count_time_in_milliseconds() -> None:
    """A 100 ms flushInterval's points: a rate is per second, intervals are Graphite's units."""
    counter = Series("c", T, 100, [0.0, 1.0, 3.0, 6.0, 2.0])  # reset before the last

    def one(path: str, earlier: int) -> list[Series]:
        return [counter]

    (rate,) = evaluate("perSecond(c)", one)
    assert (rate.start, rate.step, rate.values) == (T, 100, [None, 10.0, 20.0, 30.0, None])
    assert evaluate("nonNegativeDerivative(c)", one)[0].values == [None, 1.0, 2.0, 3.0, None]
    quarter = Series("q", T + 250, 250, [float(i) for i in range(1, 9)])  # T+0.25 s to T+2 s
    (got,) = evaluate('summarize(q,"1s")', lambda path, earlier: [quarter])
    # buckets T, T+1 s, T+2 s (the one after the end, as graphite-web has it)
    assert (got.start, got.step, got.values) == (T, 1000, [6.0, 22.0, 8.0])
    (got,) = evaluate('summarize(q,"1s","max",true)', lambda path, earlier: [quarter])
    assert (got.start, got.step, got.values) == (T + 250, 1000, [4.0, 8.0])
    # both series on their least common step, 500 ms
    (total,) = evaluate("sumSeries(c,q)", lambda path, earlier: [counter, quarter])
    assert (total.start, total.step) == (T, 500)


def test_a_moving_average_window_in_graphite_units_over_100_ms_points() -> None:
    asked = []

    def tenths(path: str, earlier: int) -> list[Series]:
        asked.append(earlier)
        extra = earlier // 100
        return [Series("g", T - 100 * extra, 100, [1.0] * extra + [3.0] * 5)]

    (got,) = evaluate('movingAverage(g,"1s")', tenths)
    assert asked == [0, 1000]  # the window fetched a second further back: 10 points
    assert (got.start, got.step) == (T, 100)
    assert got.values == pytest.approx([1.0, 1.2, 1.4, 1.6, 1.8])


def test_keyword_arguments_by_graphite_web_names() -> None:
    """graphite-web's grammar takes name=value after the positional arguments; the names are the
    ones /functions lists (seriesList, windowSize, alignToFrom...)."""
    assert run('summarize(web.a.hits,"20s","sum",alignToFrom=true)') == run(
        'summarize(web.a.hits,"20s","sum",true)'
    )
    assert run('summarize(web.a.hits, func = "max", intervalString="20s")') == run(
        'summarize(web.a.hits,"20s","max")'
    )
    assert run("movingAverage(web.a.hits,windowSize=2)") == run("movingAverage(web.a.hits,2)")
    assert run('alias(seriesList=web.a.hits,newName="k")') == [("k", DATA["web.a.hits"])]
    assert run("transformNull(web.a.hits,default=-1)") == run("transformNull(web.a.hits,-1)")
    assert parse("alias(x,newName='k')") == Call("alias", (Path("x"),), (("newName", "k"),))
    assert parse("a.b=c") == Path("a.b=c")  # not a name: a path, as in graphite-web


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            'alias(web.a.hits,name="k")',
            "alias: no argument named 'name' (its arguments: seriesList, newName)",
        ),
        ('alias(web.a.hits,"k",newName="j")', "alias: the argument newName is given twice"),
        ('alias(web.a.hits,newName="k",newName="j")', "alias: the argument newName is given twice"),
        ('alias(newName="k")', "alias: the argument seriesList is missing"),
        ('alias(web.a.hits,newName="k","j")', "alias: a positional argument after a keyword one"),
        ("movingAverage(web.a.hits,windowSize=web.b.hits)", "movingAverage: the argument windowSize is"),
        ("sumSeries(web.a.hits,seriesLists=web.b.hits)", "sumSeries: no argument named 'seriesLists'"),
    ],
)
def test_keyword_argument_refusals_name_the_problem(target: str, message: str) -> None:
    with pytest.raises(TargetError) as e:
        run(target)
    assert str(e.value).startswith(message)


def test_every_parameter_in_the_catalogue_is_a_keyword() -> None:
    """A name /functions lists is a name the evaluator takes (the editor may write any of them)."""
    from webops.statsd.store.catalog import catalog
    from webops.statsd.store.functions import FUNCTIONS
    from webops.statsd.store.functions.core import bind

    for name, entry in catalog().items():
        for i, param in enumerate(entry["params"]):
            if not param.get("multiple"):
                args = [Path("x")] * i
                assert bind(name, FUNCTIONS[name], args, [(param["name"], 1)])[i] == 1, (name, param)


@pytest.mark.parametrize(
    "target",
    ['summarize(web.a.hits,"-20s")', 'hitcount(web.a.hits,"-20s")', 'smartSummarize(web.a.hits,"-20s")'],
)
def test_a_negative_bucket_is_a_400_naming_function_and_argument(target: str) -> None:
    function = target.split("(")[0]
    with pytest.raises(
        TargetError, match=rf"^{function}: the argument intervalString is a positive interval"
    ):
        evaluate(target, fetch, window=(100_000, 140_000))
