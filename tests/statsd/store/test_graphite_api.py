"""Graphite's /metrics/find and /render on a real daemon's store, GET and POST (as Grafana
sends them); times, consolidation and refusals."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from urllib.parse import urlencode

import pytest

from tests.conftest import wait_until
from webops.statsd.http import Request
from webops.statsd.store.glob import matching
from webops.statsd.store.graphite_api import ApiError, Series, consolidate, parse_time, render

NOW = 1_795_467_600
NOW_MS = NOW * 1000


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("now", NOW_MS),
        ("-1h", NOW_MS - 3_600_000),
        ("-10min", NOW_MS - 600_000),
        ("-10m", NOW_MS - 600_000),  # graphite-web: m is minutes
        ("-2d", NOW_MS - 172_800_000),
        ("-1w", NOW_MS - 604_800_000),
        ("-30s", NOW_MS + 250 - 30_000),  # relative to a now that is not a whole second
        ("1795400000", 1_795_400_000_000),  # epoch seconds, as graphite-web takes them
    ],
)
def test_graphite_times_are_milliseconds(text: str, want: int) -> None:
    assert parse_time(text, NOW_MS + 250 if text == "-30s" else NOW_MS) == want


def test_bad_times_say_why() -> None:
    for bad in ("someday", "-1fortnight", "12:00_2026", "-100ms"):  # no unit below the second
        with pytest.raises(ApiError):
            parse_time(bad, NOW_MS)


def test_max_data_points_consolidates_as_graphite_web_does() -> None:
    s = consolidate(Series("a", 100_000, 10_000, [1.0, 3.0, None, None, 5.0, 7.0, 9.0]), 3, 70_000)
    # groups of 3, the start nudged onto the 30 s grid (120), one value fewer than the nudge dropped
    assert (s.start, s.step, s.values) == (120_000, 30_000, [3.0, 7.0])
    one = consolidate(Series("a", 100_000, 10_000, [1.0, 3.0, None]), 1, 30_000)
    assert (one.start, one.step, one.values) == (100_000, 30_000, [2.0])
    same = Series("a", 100_000, 10_000, [1.0, 2.0])
    assert consolidate(same, 5, 20_000) is same


class Fetched:
    def __init__(self, start: int, step: int, values: list) -> None:
        self.start, self.step, self.values = start, step, values


class MemoryStore:
    """The store's read contract in memory: each series one archive, `step` ms; fetch answers the
    points stamped in (start, end] (end no later than now), every time in milliseconds."""

    def __init__(self, series: dict[str, tuple[int, dict[int, float]]]) -> None:
        self.series = series
        self.asked: list[tuple[int, int, int]] = []

    def names(self) -> list[str]:
        return sorted(self.series)

    @contextmanager
    def interruptible(self, expired: Callable[[], bool]) -> Iterator[None]:
        yield

    def fetch(
        self, name: str, start: int, end: int, now: int, charge: Callable[[int], object] | None = None
    ) -> Fetched | None:
        self.asked.append((start, end, now))
        step, points = self.series[name]
        end = min(end, now)
        first, stop = start - start % step + step, end - end % step + step
        if charge is not None:
            charge(max(stop - first, 0) // step)
        return Fetched(first, step, [points.get(t) for t in range(first, stop, step)])

    def fetch_many(
        self, names: list[str], start: int, end: int, now: int, charge: Callable[[int], object] | None = None
    ) -> dict[str, Fetched]:
        return {name: got for name in names if (got := self.fetch(name, start, end, now, charge))}

    def match(self, pattern: str) -> list[str]:
        return matching(self.names(), pattern)


def ask(store: MemoryStore, now: float = NOW, **params: str) -> tuple[int, str]:
    request = Request("GET", "/render", {k: [v] for k, v in params.items()})
    status, _, body = render(store, request, now)  # type: ignore[arg-type]
    return status, body


def test_sub_second_points_are_stamped_to_the_millisecond() -> None:
    """A 100 ms flushInterval's points: JSON stamps in epoch seconds, floats where they are not
    whole; CSV's local time with .fff where it is not a whole second."""
    tenths = {NOW_MS - 1000 + 100 * i: float(i) for i in range(11)}  # NOW - 1 s .. NOW
    store = MemoryStore({"g": (100, tenths)})
    status, body = ask(store, **{"target": "g", "from": "-1s"})
    assert status == 200 and store.asked == [(NOW_MS - 1000, NOW_MS, NOW_MS)]
    points = json.loads(body)[0]["datapoints"]
    assert points[0] == [1.0, 1795467599.1] and points[4] == [5.0, 1795467599.5]
    assert points[-1] == [10.0, NOW] and isinstance(points[-1][1], int)
    assert "[9.0, 1795467599.9], [10.0, 1795467600]" in body  # as graphite-web would print them

    status, body = ask(store, **{"target": "g", "from": "-1s", "format": "csv"})
    lines = body.splitlines()
    second = datetime.fromtimestamp(NOW - 1).strftime("%Y-%m-%d %H:%M:%S")
    assert status == 200 and lines[0] == f"g,{second}.100,1.0" and lines[8] == f"g,{second}.900,9.0"
    assert lines[-1] == f"g,{datetime.fromtimestamp(NOW).strftime('%Y-%m-%d %H:%M:%S')},10.0"

    # a now between two points: the render ends at it, to the millisecond
    status, body = ask(store, now=NOW - 0.25, **{"target": "g", "from": "-1s"})
    assert json.loads(body)[0]["datapoints"][-1] == [7.0, 1795467599.7]


def test_max_data_points_over_100_ms_points() -> None:
    tenths = {NOW_MS - 2000 + 100 * i: float(i) for i in range(1, 21)}  # 20 points, 2 s
    store = MemoryStore({"g": (100, tenths)})
    status, body = ask(store, **{"target": "g", "from": "-2s", "maxDataPoints": "4"})
    # groups of 5 (half a second), the start nudged 400 ms onto the 500 ms grid and one value
    # fewer than the nudge (3 points) dropped from the front, as graphite-web does with seconds
    assert status == 200
    assert json.loads(body)[0]["datapoints"] == [
        [6.0, 1795467598.5],
        [11.0, 1795467599],
        [16.0, 1795467599.5],
        [19.5, 1795467600],
    ]


def test_whole_second_data_is_stamped_as_before() -> None:
    tens = {NOW_MS - 30_000 + 10_000 * i: float(i) for i in range(4)}
    store = MemoryStore({"g": (10_000, tens)})
    status, body = ask(store, now=NOW + 0.5, **{"target": "perSecond(g)", "from": "-1min"})
    assert status == 200 and store.asked == [(NOW_MS + 500 - 60_000, NOW_MS + 500, NOW_MS + 500)]
    assert body.endswith("[null, 1795467570], [0.1, 1795467580], [0.1, 1795467590], [0.1, 1795467600]]}]")


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
    assert status == 200 and body.startswith("stats_counts.web.hits,20") and ",3.0\r\n" in body

    status, body = d.http("/render?target=sumSeries(stats.gauges.queue.*)&from=-5min")
    got = json.loads(body)
    assert status == 200 and [s["target"] for s in got] == ["sumSeries(stats.gauges.queue.*)"]
    assert [p[0] for p in got[0]["datapoints"] if p[0] is not None][-1] == 16.0
    status, body = d.http("/render?target=timeStack(stats.gauges.queue.depth)")
    assert status == 400 and "timeStack: not a supported render function" in body
    status, body = d.http("/render?target=stats.gauges.queue.depth&from=someday")
    assert status == 400 and "someday" in body
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


def test_a_100_ms_flush_renders_in_fractional_seconds(start_daemon, tmp_path) -> None:
    store = {"dir": str(tmp_path / "data"), "retentions": [[".", "100ms:10m"]]}
    d = start_daemon(backends=["store"], store=store, flushInterval=100)
    d.send(b"queue.depth:7|g")

    def stamps() -> list:
        status, body = d.http("/render?target=stats.gauges.queue.depth&from=-10s&format=json")
        assert status == 200, body
        known = [p for s in json.loads(body) for p in s["datapoints"] if p[0] is not None]
        return known if len(known) >= 5 and any(isinstance(t, float) for _, t in known) else []

    points = wait_until(stamps, what="points between two seconds in /render")
    # stamped on the 100 ms grid, in epoch seconds to the millisecond
    assert {v for v, _ in points} == {7.0} and all(round(t * 1000) % 100 == 0 for _, t in points)
    assert all(isinstance(t, int) == (round(t * 1000) % 1000 == 0) for _, t in points)


def test_max_data_points_counts_the_range_in_whole_seconds_as_graphite_web_does() -> None:
    """An absolute from and a now with milliseconds: 8,000 s of 10 s points is 800, not 800.05,
    so maxDataPoints=800 leaves them alone."""
    store = MemoryStore({"g": (10_000, {})})
    since = str(NOW - 8000)
    status, body = ask(store, now=NOW + 0.5, **{"target": "g", "from": since, "maxDataPoints": "800"})
    points = json.loads(body)[0]["datapoints"]
    assert status == 200 and len(points) == 800 and points[1][1] - points[0][1] == 10
