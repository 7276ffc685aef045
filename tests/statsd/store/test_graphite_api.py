"""Graphite's /metrics/find and /render on a real daemon's store, GET and POST (as Grafana
sends them); times, consolidation and refusals."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlencode

import pytest

from tests.conftest import wait_until
from webops.statsd.store.graphite_api import ApiError, Series, consolidate, parse_time

NOW = 1_795_467_600


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("now", NOW),
        ("-1h", NOW - 3600),
        ("-10min", NOW - 600),
        ("-10m", NOW - 600),  # graphite-web: m is minutes
        ("-2d", NOW - 172800),
        ("-1w", NOW - 604800),
        ("1795400000", 1795400000),
    ],
)
def test_graphite_times(text: str, want: int) -> None:
    assert parse_time(text, NOW) == want


def test_bad_times_say_why() -> None:
    for bad in ("yesterday", "-1fortnight", "12:00_2026"):
        with pytest.raises(ApiError):
            parse_time(bad, NOW)


def test_max_data_points_consolidates_as_graphite_web_does() -> None:
    s = consolidate(Series("a", 100, 10, [1.0, 3.0, None, None, 5.0, 7.0, 9.0]), 3, 70)
    # groups of 3, the start nudged onto the 30 s grid (120), one value fewer than the nudge dropped
    assert (s.start, s.step, s.values) == (120, 30, [3.0, 7.0])
    one = consolidate(Series("a", 100, 10, [1.0, 3.0, None]), 1, 30)
    assert (one.start, one.step, one.values) == (100, 30, [2.0])
    same = Series("a", 100, 10, [1.0, 2.0])
    assert consolidate(same, 5, 20) is same


def post(port: int, path: str, form: dict) -> tuple[int, str]:
    data = urlencode(form, doseq=True).encode()
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=form_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_find_and_render_on_a_real_daemon(start_daemon, tmp_path) -> None:
    # one slot a flush (a finer flush than the finest step would overwrite its slot, as in carbon)
    store = {"dir": str(tmp_path / "data"), "retentions": [[".", "1s:1h"]]}
    d = start_daemon(backends=["store"], store=store, flushInterval=1000)
    d.send(b"web.hits:3|c\nweb.latency:12|ms\nqueue.depth:7|g\nqueue.size:9|g")

    def rendered() -> list:
        status, body = d.http("/render?target=stats.gauges.queue.depth&from=-5min&format=json")
        assert status == 200, body
        return [p for s in json.loads(body) for p in s["datapoints"] if p[0] is not None]

    points = wait_until(rendered, what="the gauge in /render")
    stats = d.console("stats")  # the store says what it holds and what that costs on disk
    assert "store.series:" in stats and "store.disk_bytes:" in stats
    assert points[-1][0] == 7.0 and isinstance(points[-1][1], int)

    status, body = d.http("/metrics/find?query=stats.gauges.queue.*")
    assert status == 200
    assert [(n["id"], n["text"], n["leaf"]) for n in json.loads(body)] == [
        ("stats.gauges.queue.depth", "depth", 1),
        ("stats.gauges.queue.size", "size", 1),
    ]
    status, body = d.http("/metrics/find?query=stats.*")
    # Etsy's default (legacy) namespace: counter rates under stats.<name>, counts in stats_counts
    assert {(n["text"], n["leaf"]) for n in json.loads(body)} >= {("gauges", 0), ("timers", 0), ("web", 0)}

    form = {"target": ["stats.gauges.queue.{depth,size}"], "from": "-5min"}
    status, body = post(d.http_port, "/render", form)
    assert status == 200 and [s["target"] for s in json.loads(body)] == [
        "stats.gauges.queue.depth",
        "stats.gauges.queue.size",
    ]
    status, body = d.http("/render?target=stats_counts.web.hits&from=-5min&format=csv")
    assert status == 200 and body.startswith("stats_counts.web.hits,20") and ",3.0\n" in body

    status, body = d.http("/render?target=sumSeries(stats.gauges.queue.*)&from=-5min")
    got = json.loads(body)
    assert status == 200 and [s["target"] for s in got] == ["sumSeries(stats.gauges.queue.*)"]
    assert [p[0] for p in got[0]["datapoints"] if p[0] is not None][-1] == 16.0
    status, body = d.http("/render?target=holtWintersForecast(stats.gauges.queue.depth)")
    assert status == 400 and "holtWintersForecast: not a supported render function" in body
    status, body = d.http("/render?target=stats.gauges.queue.depth&from=yesterday")
    assert status == 400 and "yesterday" in body
    status, body = d.http("/render?target=stats.x&format=png")
    assert status == 400 and body.count("\n") == 1


def test_a_hostile_target_gets_a_400(tmp_path) -> None:
    from webops.statsd.http import Request
    from webops.statsd.store.db import Store
    from webops.statsd.store.graphite_api import render
    from webops.statsd.store.retention import schemas

    store = Store(tmp_path / "s.sqlite", schemas([]))
    deep = "scale(" * 5000 + "a.b" + ",2)" * 5000
    status, _, body = render(store, Request("GET", "/render", {"target": [deep]}), NOW)
    assert status == 400 and body == "a target nested too deeply\n"


def test_without_the_store_the_api_says_how_to_get_it(start_daemon) -> None:
    d = start_daemon()
    status, body = d.http("/render?target=a")
    assert status == 404 and '"store"' in body
