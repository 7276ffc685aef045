"""Differential: the same flushes into carbon + Debian's graphite-web (1.1.8) and into the store;
the same targets asked of both, with the same absolute window; the answers must agree, names,
timestamps and values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.statsd.store.conftest import get

TARGETS = [
    "stats.gauges.diff.*",
    "sumSeries(stats.gauges.diff.*)",
    "averageSeries(stats.gauges.diff.*)",
    "maxSeries(stats.gauges.diff.x,stats.gauges.diff.y)",
    "minSeries(stats.gauges.diff.*)",
    "scale(stats.gauges.diff.x,2.5)",
    "alias(stats.gauges.diff.x,'X')",
    "aliasByNode(stats.gauges.diff.*,3)",
    "movingAverage(stats.gauges.diff.x,3)",
    'summarize(stats.gauges.diff.x,"5s","max")',
    "perSecond(stats.gauges.diff.total)",
    "nonNegativeDerivative(stats.gauges.diff.x)",
    "asPercent(stats.gauges.diff.{x,y})",
    "highestCurrent(stats.gauges.diff.*,1)",
    "highestAverage(stats.gauges.diff.*,2)",
    "sortByMaxima(stats.gauges.diff.*)",
    "limit(stats.gauges.diff.*,1)",
    "keepLastValue(stats.gauges.diff.x)",
    "transformNull(stats.gauges.diff.x,-1)",
    "stats_counts.diff.hits",
    "stats.timers.diff.lat.{mean,upper*}",
]


def test_the_store_answers_what_graphite_web_answers(start_daemon, graphite, tmp_path: Path) -> None:
    carbon, web_port = graphite
    d = start_daemon(
        backends=["graphite", "store"],
        graphiteHost="127.0.0.1",
        graphitePort=carbon.port,
        store={"dir": str(tmp_path / "data"), "retentions": [[".", "1s:10m"]]},
        flushInterval=1000,
    )

    def last_y() -> float | None:
        got = get(d.http_port, "/render", target="stats.gauges.diff.y", format="json", **{"from": "-1min"})
        known = [p[0] for s in got for p in s["datapoints"] if p[0] is not None]  # type: ignore[index]
        return known[-1] if known else None

    xs = [5, 7, 3, 9, 9, 2, 8, 4, 6, 1, 7, 5]  # up and down: x dips like a counter reset
    for i, x in enumerate(xs):  # one value a flush
        d.send(
            f"diff.x:{x}|g\ndiff.y:{i * 2 + 1}|g\ndiff.total:{i * 10}|g\n"
            f"diff.hits:{i}|c\ndiff.lat:{10 + i}|ms\ndiff.lat:{30 - i}|ms".encode()
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
        {"target": t, "maxDataPoints": "4"} for t in ("stats.gauges.diff.*", "sumSeries(stats.gauges.diff.*)")
    ]
    for ask in asks:
        target, window = ask["target"], {"from": str(since), "until": str(until), "format": "json"}
        ours = get(d.http_port, "/render", **ask, **window)
        theirs = get(web_port, "/render", **ask, **window)
        assert isinstance(ours, list) and isinstance(theirs, list)
        assert [s["target"] for s in ours] == [s["target"] for s in theirs], target
        assert any(p[0] is not None for s in ours for p in s["datapoints"]), target  # a real comparison
        for a, b in zip(ours, theirs, strict=True):
            assert [p[1] for p in a["datapoints"]] == [p[1] for p in b["datapoints"]], (target, a, b)
            for (va, _), (vb, _) in zip(a["datapoints"], b["datapoints"], strict=True):
                assert (va is None) == (vb is None) and (va is None or va == pytest.approx(vb)), (
                    target,
                    a,
                    b,
                )
    for query in ("stats.gauges.diff.*", "stats.*", "stats.timers.diff.lat.*"):
        ours_found = {(n["id"], n["leaf"]) for n in get(d.http_port, "/metrics/find", query=query)}
        theirs_found = {(n["id"], n["leaf"]) for n in get(web_port, "/metrics/find", query=query)}
        assert ours_found == theirs_found, query
