"""Differential: the same flushes into carbon + Debian's graphite-web (1.1.8) and into the store;
the same targets asked of both, with the same absolute window; the answers must agree, names,
timestamps and values."""

from __future__ import annotations

import json
import pickle
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import wait_until
from tests.graphite_web import get

FORMAT_TARGETS = ["stats.gauges.diff.*", "sumSeries(stats.gauges.diff.{x,y})", "stats_counts.diff.hits"]


def fetch(port: int, path: str, **params: str) -> tuple[int, str, bytes]:
    """Status, content type and the body's bytes, whatever the status."""
    url = f"http://127.0.0.1:{port}{path}?{urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


G = "stats.gauges.diff"  # x, y, total every flush; gap every other one; late from the 5th on
W = f"{G}.grp.*.*"  # grp.web.a, grp.web.b, grp.db.a: for the groupings by node
TARGETS = [
    f"{G}.*",
    f"sumSeries({G}.*)",
    f"averageSeries({G}.*)",
    f"maxSeries({G}.x,{G}.y)",
    f"minSeries({G}.*)",
    f"scale({G}.x,2.5)",
    f"alias({G}.x,'X')",
    f"aliasByNode({G}.*,3)",
    f"movingAverage({G}.x,3)",
    f'summarize({G}.x,"5s","max")',
    f'summarize({G}.gap,"4s","median")',
    f"perSecond({G}.total)",
    f"nonNegativeDerivative({G}.x)",
    f"asPercent({G}.{{x,y}})",
    f"highestCurrent({G}.*,1)",
    f"highestAverage({G}.*,2)",
    f"highestMax({G}.*,2)",
    f"sortByMaxima({G}.*)",
    f"limit({G}.*,1)",
    f"keepLastValue({G}.x)",
    f"keepLastValue({G}.gap)",
    f"transformNull({G}.x,-1)",
    f"transformNull({G}.late)",
    "stats_counts.diff.hits",
    "stats.timers.diff.lat.{mean,upper*}",
    # combine
    f"diffSeries({G}.x,{G}.y)",
    f"multiplySeries({G}.x,{G}.gap)",
    f"stddevSeries({G}.*)",
    f"rangeOfSeries({G}.x,{G}.y)",
    f'aggregate({G}.*,"median")',
    f'aggregate({G}.{{x,gap}},"avg_zero")',
    f"countSeries({G}.*)",
    f"group({G}.x,{G}.y)",
    f"percentileOfSeries({G}.*,50)",
    f"percentileOfSeries({G}.*,75,true)",
    f'groupByNode({W},4,"sum")',
    f"groupByNode({W},4)",
    f'groupByNode({W},5,"sumSeries")',
    f'groupByNodes({W},"max",4,5)',
    f"sumSeriesWithWildcards({W},4)",
    f"averageSeriesWithWildcards({W},5)",
    f"multiplySeriesWithWildcards({G}.grp.web.*,5)",
    f"divideSeries({G}.x,{G}.y)",
    f"divideSeries({G}.*,{G}.gap)",
    f"divideSeriesLists({G}.{{x,y}},{G}.{{gap,late}})",
    f"sumSeriesLists({G}.{{x,y}},{G}.{{gap,late}})",
    f"diffSeriesLists({G}.{{x,y}},{G}.{{total,late}})",
    f"multiplySeriesLists({G}.{{x,y}},{G}.{{gap,late}})",
    f'aggregateSeriesLists({G}.{{x,y}},{G}.{{gap,late}},"max")',
    "constantLine(100)",
    f'applyByNode({W},4,"sumSeries(%.*)")',
    f'applyByNode({W},4,"maxSeries(%.*)","%.max")',
    # transform
    f"absolute(scale({G}.x,-1))",
    f"squareRoot({G}.x)",
    f"invert({G}.x)",
    f"isNonNull({G}.gap)",
    f"offset({G}.x,-3)",
    f"pow({G}.x,2)",
    f"log({G}.x)",
    f"log({G}.x,2)",
    f"scaleToSeconds({G}.x,60)",
    f"offsetToZero({G}.x)",
    f"derivative({G}.x)",
    f"derivative({G}.late)",
    f"integral({G}.gap)",
    f'integralByInterval({G}.x,"5s")',
    f"delay({G}.x,2)",
    f"delay({G}.x,-2)",
    f"changed({G}.x)",
    f"removeAboveValue({G}.x,5)",
    f"removeBelowValue({G}.x,5)",
    f"removeAbovePercentile({G}.x,50)",
    f"removeBelowPercentile({G}.x,50)",
    f'consolidateBy({G}.x,"max")',
    f'timeShift({G}.x,"3s")',
    f'timeShift({G}.y,"-2s",false)',
    f'hitcount({G}.x,"5s")',
    f'smartSummarize({G}.x,"5s","max")',
    f'smartSummarize({G}.gap,"3s")',
    # filter and sort
    f'exclude({G}.*,"x")',
    f'grep({G}.*,"diff\\.[xy]$")',
    f"currentAbove({G}.*,10)",
    f"currentBelow({G}.*,10)",
    f"averageAbove({G}.*,5)",
    f"averageBelow({G}.*,8)",
    f"maximumAbove({G}.*,9)",
    f"maximumBelow({G}.*,9)",
    f"minimumAbove({G}.*,1)",
    f"minimumBelow({G}.*,1)",
    f'filterSeries({G}.*,"max",">",9)',
    f"lowestAverage({G}.*,2)",
    f"lowestCurrent({G}.*,2)",
    f'highest({G}.*,2,"max")',
    f'lowest({G}.*,1,"sum")',
    f"mostDeviant({G}.*,2)",
    f"removeEmptySeries({G}.*)",
    f"unique({G}.x,{G}.x,{G}.y)",
    f"sortByName({G}.*)",
    f"sortByName({G}.*,true,true)",
    f'sortBy({G}.*,"max",true)',
    f"sortByTotal({G}.*)",
    f"sortByMinima({G}.*)",
    # names and graph-only options
    f"aliasByMetric({G}.*)",
    f"aliasByMetric(scale({G}.x,2))",
    f"substr({G}.x,2)",
    f'aliasSub({G}.*,"^stats\\.gauges\\.","g.")',
    f'legendValue({G}.x,"avg","max")',
    f'color({G}.x,"red")',
    f"lineWidth({G}.x,2)",
    f"alpha({G}.x,0.5)",
    f"dashed({G}.x)",
    f"secondYAxis({G}.x)",
    f"stacked({G}.{{x,y}})",
    f"cactiStyle({G}.{{x,y}})",
    f'cactiStyle({G}.{{x,total}},"si","B")',
    f'cactiStyle({G}.{{total,y}},"binary")',
    f'legendValue(scale({G}.total,1000),"avg","last","si")',
    # calculate
    f"movingSum({G}.x,3)",
    f"movingMin({G}.gap,3)",
    f'movingMax({G}.x,"3s")',
    f"movingMedian({G}.x,4)",
    f'movingWindow({G}.x,3,"median")',
    f"nPercentile({G}.x,50)",
    f'aggregateLine({G}.x,"max")',
    f"linearRegression({G}.x)",
    f'holtWintersForecast({G}.x,"10s","3s")',
    f'holtWintersConfidenceBands({G}.x,3,"10s","3s")',
    f'holtWintersAberration({G}.x,1,"10s","3s")',
    # keyword arguments (graphite-web's names, after the positional ones)
    f'summarize({G}.x,"5s","max",alignToFrom=true)',
    f'summarize({G}.x,func="max",intervalString="5s")',
    f"movingAverage({G}.x,windowSize=3)",
    f'holtWintersConfidenceBands({G}.x,delta=2,bootstrapInterval="10s",seasonality="3s")',
    f'alias({G}.x,newName="X")',
    f"transformNull({G}.late,default=-1)",
    # a negative window: graphite-web takes its length (summarize's, hitcount's and smartSummarize's
    # negative buckets loop forever or answer nothing there, and are a 400 here)
    f'movingMax({G}.x,"-3s")',
    f'integralByInterval({G}.x,"-5s")',
]


N = "stats.gauges.wild"  # a0.b1 .. a9.b1, a-.b1, ab.b1, a_x.b1: the names fnmatch's classes tell apart
WILDCARDS = [  # graphite-web's meaning (fnmatch a node, braces expanded first), not a regex's
    f"{N}.a[!1].b1",
    f"{N}.a[^1].b1",  # the set of ^ and 1
    f"{N}.a[!0-4].b1",
    f"{N}.a[^a].b1",
    f"{N}.a{{1,{{2,3}}}}.b1",  # nested braces: found (not rendered, see compare_wildcards)
    f"{N}.{{a1,{{ab,{{a2,a-}}}}}}.b1",
    f"{N}.a[].b1",  # a [ with no ] after it: a plain character
    f"{N}.a[.b1",
    f"{N}.a].b1",
    f"{N}.a[!].b1",
    f"{N}.a[a-].b1",
    f"{N}.*[!x]*.b1",
    f"{N}.*[!x]*",
    f"{N}.a[!_]*",
    f"{N}.a?x.*",
]


def test_the_store_answers_what_graphite_web_answers(start_daemon, graphite, tmp_path: Path) -> None:
    carbon, web_port = graphite
    d = start_daemon(
        backends=["graphite", "store"],
        graphiteHost="127.0.0.1",
        graphitePort=carbon.port,
        store={"dir": str(tmp_path / "data"), "retentions": [[".", "1s:10m"]]},
        flushInterval=1000,
        deleteGauges=True,
    )

    def last_y() -> float | None:
        got = get(d.http_port, "/render", target="stats.gauges.diff.y", format="json", **{"from": "-1min"})
        known = [p[0] for s in got for p in s["datapoints"] if p[0] is not None]  # type: ignore[index]
        return known[-1] if known else None

    xs = [5, 7, 3, 9, 9, 2, 8, 4, 6, 1, 7, 5]  # up and down: x dips like a counter reset
    for i, x in enumerate(xs):  # one value a flush
        d.send(
            (
                f"diff.x:{x}|g\ndiff.y:{i * 2 + 1}|g\ndiff.total:{i * 10}|g\n"
                f"diff.hits:{i}|c\ndiff.lat:{10 + i}|ms\ndiff.lat:{30 - i}|ms\n"
                f"diff.grp.web.a:{x}|g\ndiff.grp.web.b:{i % 4 + 1}|g\ndiff.grp.db.a:{12 - x}|g\n"
                + ("" if i % 2 else f"diff.gap:{x * 3}|g\n")  # deleteGauges: a null at every other flush
                + (f"diff.late:{x + i}|g\n" if i >= 4 else "")  # nulls before it first came
                + "".join(
                    f"wild.{node}.b1:{x}|g\n" for node in [*(f"a{k}" for k in range(10)), "a-", "ab", "a_x"]
                )
            )
            .strip()
            .encode()
        )
        wait_until(lambda want=i * 2 + 1: last_y() == want, what=f"flush {i} in the store")
    # the window ends at the store's last flush; carbon (its cache, through carbonlink, or its
    # files) must answer for that same flush before the two are compared
    ours_y = get(d.http_port, "/render", target="stats.gauges.diff.y", format="json", **{"from": "-1min"})
    until = max(p[1] for s in ours_y for p in s["datapoints"] if p[0] is not None)  # type: ignore[index]
    since = until - 15

    def carbon_has_it() -> bool:
        theirs = get(
            web_port,
            "/render",
            target="stats.gauges.diff.y",
            format="json",
            **{"from": str(since), "until": str(until)},
        )
        return bool(theirs) and theirs[0]["datapoints"][-1] == [23.0, until]  # type: ignore[index]

    wait_until(
        carbon_has_it,
        what="carbon's data up to the store's last flush",
        detail=lambda: f"{sorted(str(p) for p in carbon.whisper_dir.rglob('*.wsp'))[:5]} {carbon.log_tail()}",
    )
    asks = [{"target": t} for t in TARGETS]
    asks += [
        {"target": t, "maxDataPoints": "4"}
        for t in ("stats.gauges.diff.*", "sumSeries(stats.gauges.diff.*)", f'consolidateBy({G}.x,"max")')
    ]
    asks += [  # points without a value left out, and the series left with none (gap's early nulls)
        {"target": t, "noNullPoints": "1"}
        for t in (f"{G}.*", f"transformNull({G}.gap)", f"removeAboveValue({G}.x,1)", f"{G}.late")
    ]
    differences = [e for ask in asks if (e := _difference(ask, d.http_port, web_port, since, until))]
    assert not differences, "\n".join(differences)
    for query in ("stats.gauges.diff.*", "stats.*", "stats.timers.diff.lat.*"):
        ours_found = {(n["id"], n["leaf"]) for n in get(d.http_port, "/metrics/find", query=query)}
        theirs_found = {(n["id"], n["leaf"]) for n in get(web_port, "/metrics/find", query=query)}
        assert ours_found == theirs_found, query
    compare_wildcards(d.http_port, web_port, since, until)
    compare_formats(d.http_port, web_port, since, until)


def compare_wildcards(ours: int, theirs: int, since: int, until: int) -> None:
    """Each of WILDCARDS names the same series in /render and the same nodes in /metrics/find
    and /metrics/expand (none at all for some: a 200 with nothing, as graphite-web answers)."""
    window = {"from": str(since), "until": str(until), "format": "json"}
    for pattern in WILDCARDS:
        a, b = (
            fetch(ours, "/render", target=pattern, **window),
            fetch(theirs, "/render", target=pattern, **window),
        )
        assert a[0] == b[0] == 200, (pattern, a, b)
        # graphite-web's target grammar stops a path at a brace inside braces and drops the rest
        # unread: it renders `...wild.a` (nothing), where its finder and ours find a1, a2, a3
        if "{" not in pattern.split("{", 1)[-1].split("}", 1)[0]:
            assert [s["target"] for s in json.loads(a[2])] == [s["target"] for s in json.loads(b[2])], pattern
        for path in ("/metrics/find", "/metrics/expand"):
            a, b = fetch(ours, path, query=pattern), fetch(theirs, path, query=pattern)
            assert a[0] == b[0] == 200 and json.loads(a[2]) == json.loads(b[2]), (path, pattern, a, b)


def _plain(series: list[dict]) -> list[tuple]:
    """Names and points (the tags graphite-web adds to aggregates are the functions' business)."""
    return [(s["target"], [tuple(p) for p in s["datapoints"]]) for s in series]


def compare_formats(ours: int, theirs: int, since: int, until: int) -> None:
    """The same window in every format both write, and the other endpoints Grafana and a
    federating graphite-web call: the same bytes where graphite-web's are deterministic."""
    window = {"from": str(since), "until": str(until)}
    for target in FORMAT_TARGETS:
        for fmt, tz in (("csv", "UTC"), ("csv", "Europe/Paris"), ("raw", "UTC")):
            a = fetch(ours, "/render", target=target, format=fmt, tz=tz, **window)
            b = fetch(theirs, "/render", target=target, format=fmt, tz=tz, **window)
            assert a[0] == b[0] == 200 and a[1] == b[1], (target, fmt, a, b)
            assert a[2] == b[2], (target, fmt, a[2].decode()[:400], b[2].decode()[:400])
        a_status, a_type, a_body = fetch(ours, "/render", target=target, format="pickle", **window)
        b_status, b_type, b_body = fetch(theirs, "/render", target=target, format="pickle", **window)
        assert a_status == b_status == 200 and a_type == b_type == "application/pickle"
        assert pickle.loads(a_body) == pickle.loads(b_body), target  # plain dicts, ints, floats
        # jsonp: the same callback around the same JSON
        a = fetch(ours, "/render", target=target, format="json", jsonp="cb", **window)
        b = fetch(theirs, "/render", target=target, format="json", jsonp="cb", **window)
        assert a[1] == b[1] == "text/javascript" and a[2].startswith(b"cb(") and a[2].endswith(b")")
        assert _plain(json.loads(a[2][3:-1])) == _plain(json.loads(b[2][3:-1])), target
        # until before from: graphite-web swaps them and answers
        swapped = {"from": str(until), "until": str(since), "format": "json"}
        a, b = (
            fetch(ours, "/render", target=target, **swapped),
            fetch(theirs, "/render", target=target, **swapped),
        )
        assert a[0] == b[0] == 200 and _plain(json.loads(a[2])) == _plain(json.loads(b[2])), target
    same = fetch(ours, "/render", target="stats.gauges.diff.x", **{"from": str(since), "until": str(since)})
    assert (
        same[0] == 400 == fetch(theirs, "/render", target="x", **{"from": str(since), "until": str(since)})[0]
    )
    # relative and named times, against graphite-web's own now (`now` pins both to the same one)
    for since_text, until_text in (
        ("-10s", "now"),
        ("now-15s", "now-5s"),
        (f"{since}", "now"),
        ("-1h", "-5s"),
    ):
        params = {"target": "stats.gauges.diff.y", "format": "json", "now": str(until)}
        params.update({"from": since_text, "until": until_text})
        a, b = fetch(ours, "/render", **params), fetch(theirs, "/render", **params)
        assert a[0] == b[0] == 200, (params, a, b)
        a_points = [p for s in json.loads(a[2]) for p in s["datapoints"]]
        b_points = [p for s in json.loads(b[2]) for p in s["datapoints"]]
        assert [t for _, t in a_points] == [t for _, t in b_points], params
    # /metrics/find: a wildcard in an earlier node lists each name once, as graphite-web does
    for query in ("stats.*.diff", "stats.*.diff.*", "*.*", "stats.gauges.diff.*"):
        assert get(ours, "/metrics/find", query=query) == get(theirs, "/metrics/find", query=query), query
        ours_json = get(ours, "/metrics/find", query=query, format="json")
        theirs_json = get(theirs, "/metrics/find", query=query, format="json")
        strip = lambda nodes: [(n["path"], n["is_leaf"]) for n in nodes]  # noqa: E731 - intervals differ
        assert strip(ours_json) == strip(theirs_json), query  # type: ignore[arg-type]
    for params in ({"query": "stats.gauges.diff.*"}, {"query": "stats.*.diff.*", "leavesOnly": "1"}):
        assert get(ours, "/metrics/expand", **params) == get(theirs, "/metrics/expand", **params), params
    ours_index = [n for n in get(ours, "/metrics/index.json") if n.startswith("stats.gauges.diff.")]  # type: ignore[union-attr]
    theirs_index = [n for n in get(theirs, "/metrics/index.json") if n.startswith("stats.gauges.diff.")]  # type: ignore[union-attr]
    assert ours_index == theirs_index and ours_index
    for path in ("/tags", "/tags/autoComplete/tags", "/events/get_data"):
        assert get(ours, path) == get(theirs, path) == [], path
    assert get(ours, "/tags/autoComplete/values", tag="name") == get(
        theirs, "/tags/autoComplete/values", tag="name"
    )
    for path in ("/tags/autoComplete/values", "/tags/findSeries"):
        a, b = fetch(ours, path), fetch(theirs, path)
        assert a[0] == b[0] == 400 and json.loads(a[2]) == json.loads(b[2]), path
    assert fetch(ours, "/version")[2].strip() == fetch(theirs, "/version")[2].strip()


def _difference(ask: dict[str, str], ours_port: int, web_port: int, since: int, until: int) -> str:
    """How the store's answer to `ask` differs from graphite-web's ("" when it does not): names,
    timestamps, values (nulls where the other has nulls, numbers equal to float precision)."""
    target, window = ask["target"], {"from": str(since), "until": str(until), "format": "json"}
    ours = get(ours_port, "/render", **ask, **window)
    try:
        theirs = get(web_port, "/render", **ask, **window)
    except urllib.error.HTTPError as e:
        return f"{target}: graphite-web answered {e.code}"
    assert isinstance(ours, list) and isinstance(theirs, list)
    if [s["target"] for s in ours] != [s["target"] for s in theirs]:
        return f"{target}: names {[s['target'] for s in ours]} != {[s['target'] for s in theirs]}"
    if not any(p[0] is not None for s in ours for p in s["datapoints"]):
        return f"{target}: no value to compare"  # every target must be a real comparison
    for a, b in zip(ours, theirs, strict=True):
        if [p[1] for p in a["datapoints"]] != [p[1] for p in b["datapoints"]]:
            return f"{target}: timestamps {a['datapoints']} != {b['datapoints']}"
        for (va, _), (vb, _) in zip(a["datapoints"], b["datapoints"], strict=True):
            if (va is None) != (vb is None) or (va is not None and va != pytest.approx(vb)):
                return (
                    f"{target}: values {[p[0] for p in a['datapoints']]} != {[p[0] for p in b['datapoints']]}"
                )
    return ""
