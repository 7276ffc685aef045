"""What one /render may cost: the budget refuses before allocating, the deadline stops the work,
the quadratic functions are linear and still answer what they answered, JSON carries no
Infinity, and a broken request line or header is a 4xx."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import pytest

from webops.statsd.http import Request, body_length, parse_head
from webops.statsd.store.db import Store
from webops.statsd.store.functions import AGG, Budget, Expired, Refused, Series, evaluate
from webops.statsd.store.graphite_api import fetch, render
from webops.statsd.store.retention import Point, schemas

NOW = 1_795_467_600
NOW_MS = NOW * 1000  # series, intervals and the API's fetch are in milliseconds


def summarize_reference(s: Series, size: int, func: str, align: bool) -> tuple[int, list]:
    """The summarize webops had before (every bucket looked through every point), which the
    graphite-web differential test checked: the linear one must answer the same."""
    start = s.start if align else s.start - s.start % size
    end = s.end if align else s.end - s.end % size + size
    values, t = [], start
    while t < end:
        bucket = [v for i, v in enumerate(s.values) if t <= s.start + i * s.step < t + size]
        values.append(AGG[func](bucket))
        t += size
    return start, values


def moving_reference(values: list, points: int) -> list:
    """graphite-web's movingAverage: sum(window) / len(window) of the known values, window by window."""
    return [AGG["average"](values[i - points : i]) for i in range(points, len(values))]


def random_series(rng: random.Random, n: int) -> Series:
    """Steps from 100 ms to a minute, starting anywhere (in ms, on no second)."""
    values = [rng.choice([None, rng.randint(-50, 50), rng.uniform(-1e6, 1e6)]) for _ in range(n)]
    step = rng.choice([100, 250, 1000, 10_000, 60_000])
    return Series("s", rng.randint(1_700_000_000_000, 1_800_000_000_000), step, values)


def test_summarize_is_linear_and_answers_what_it_answered() -> None:
    rng = random.Random(7)
    for _ in range(300):
        s = random_series(rng, rng.randint(0, 80))
        size, func, align = rng.choice([1, 7, 20, 60, 3600]), rng.choice(list(AGG)), rng.random() < 0.5
        target = f'summarize(s,"{size}s","{func}"{",true" if align else ""})'
        (got,) = evaluate(target, lambda path, earlier, s=s: [s])
        start, values = summarize_reference(s, size * 1000, func, align)
        assert (got.start, got.step, got.values) == (start, size * 1000, values)


def test_moving_average_is_linear_exact_and_answers_what_graphite_web_does() -> None:
    rng = random.Random(11)
    for _ in range(300):
        values = random_series(rng, rng.randint(0, 60)).values
        points = rng.randint(1, 12)
        want = moving_reference(values, points)
        got = evaluate(
            f"movingAverage(s,{points})", lambda path, earlier, v=values: [Series("s", 0, 10_000, v)]
        )
        assert got[0].values == pytest.approx(want)
    # a running float sum would keep the 1e20 it took out as 0: the window's 1 + 1 averaged 0.5
    got = evaluate(
        "movingAverage(s,2)", lambda path, earlier: [Series("s", 0, 10_000, [1e20, 1.0, 1.0, 1.0])]
    )
    assert got[0].values == [5e19, 1.0]
    inf = evaluate("movingAverage(s,1)", lambda path, earlier: [Series("s", 0, 10_000, [math.inf, 1.0, 2.0])])
    assert inf[0].values == [math.inf, 1.0]


def test_a_one_second_summarize_of_a_year_is_refused_before_it_is_allocated() -> None:
    year = Series("s", 0, 3_600_000, [1.0] * 8760)  # a year of the hourly archive
    budget = Budget(max_points=5_000_000)
    started = time.monotonic()
    with pytest.raises(Refused, match=r"more than 5000000 points \(http.renderMaxPoints\)"):
        evaluate('summarize(s,"1s")', lambda path, earlier: [year], budget)
    assert time.monotonic() - started < 1  # 31.5 million buckets were never made


def test_a_stopped_or_late_render_stops_at_its_next_check() -> None:
    calls = []

    def fetch(path: str, earlier: int) -> list[Series]:
        calls.append(path)
        return [Series(path, 0, 10_000, [1.0])]

    late = Budget(deadline=time.monotonic() - 1)
    with pytest.raises(Expired):
        evaluate("sumSeries(a,b,c)", fetch, late)
    assert calls == []
    stopped = Budget()
    stopped.stop()
    with pytest.raises(Expired):
        evaluate("scale(a,2)", fetch, stopped)


def test_the_deadline_reaches_into_a_long_query(tmp_path: Path) -> None:
    wide = Store(tmp_path / "w.sqlite", schemas([]))
    wide.write(NOW * 1000, 10_000, [Point(f"host{n}.cpu", 1.0, "average") for n in range(5000)])
    stopped = Budget()
    stopped.stop()
    with pytest.raises(Expired):  # SQLite interrupted listing the 5,000 names, said as the deadline
        fetch(wide, ["host1.cpu"], NOW_MS - 60_000, NOW_MS, NOW_MS, stopped)
    got = fetch(wide, ["host1.cpu"], NOW_MS - 60_000, NOW_MS, NOW_MS, Budget())
    assert [s.name for s in got] == ["host1.cpu"]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "s.sqlite", schemas([[".", "10s:1h"]]))
    for i in range(30):
        s.write((NOW - i * 10) * 1000, 10_000, [Point(f"web.h{n}", 5.0 + i, "average") for n in range(20)])
    return s


def ask(store: Store, budget: Budget | None = None, **params: str) -> tuple[int, str]:
    status, _, body = render(
        store, Request("GET", "/render", {k: [v] for k, v in params.items()}), NOW, budget
    )
    return status, body


def test_the_budget_refuses_a_render_with_a_422_naming_the_key(store: Store) -> None:
    status, body = ask(store, Budget(max_series=10), target="web.*", **{"from": "-5min"})
    assert status == 422 and "(http.renderMaxSeries)" in body and body.count("\n") == 1
    status, body = ask(store, Budget(max_points=100), target="web.*", **{"from": "-5min"})
    assert status == 422 and "(http.renderMaxPoints)" in body  # 20 series x 30 points
    assert ask(store, Budget(max_points=600, max_series=20), target="web.*", **{"from": "-5min"})[0] == 200


def test_json_and_csv_carry_no_infinity(store: Store) -> None:
    status, body = ask(store, target="scale(web.h1,1e308)", **{"from": "-1min"})
    assert status == 200

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    points = json.loads(body, parse_constant=strict)[0]["datapoints"]
    assert points and all(v is None for v, _ in points)
    status, body = ask(store, target="scale(web.h1,1e308)", format="csv", **{"from": "-1min"})
    assert status == 200 and "inf" not in body.lower() and body.splitlines()[0].endswith(",")


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health\r\n\r\n", 400),
        (b"GET /health HTTP/2.0\r\n\r\n", 400),
        (b"G(T /health HTTP/1.1\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\n folded: header\r\n\r\n", 400),
        (b"DELETE /health HTTP/1.1\r\n\r\n", 405),
        (b"POST /render HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n", 400),
        (b"POST /render HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"POST /render HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    ],
)
def test_request_heads_are_read_strictly(head: bytes, status: int | None) -> None:
    got = parse_head(head)
    if status is None:
        assert isinstance(got, Request) and got.path == "/health" and got.headers == {"host": "x"}
    else:
        assert not isinstance(got, Request) and got[0] == status


def test_a_string_without_its_closing_quote_is_a_400(store: Store) -> None:
    status, body = ask(store, target='alias(web.h1,"abc)', **{"from": "-1min"})
    assert status == 400 and "closing quote" in body


@pytest.mark.parametrize(
    ("length", "want"), [("12", 12), ("-5", 400), ("1e3", 400), ("²", 400), ("9" * 40, 400)]
)
def test_content_length_is_a_plain_number(length: str, want: int) -> None:
    got = body_length(Request("POST", "/render", headers={"content-length": length}))
    assert (got if isinstance(got, int) else got[0]) == want


def test_names_nested_aggregates_build_are_charged_before_they_exist() -> None:
    """asPercent of asPercent over 2,000 series: each outer series would carry every inner name
    (2,000 x 120 KB, a 466 MB reply): a 422, not gigabytes."""
    wide = [Series(f"stats.gauges.wide.n{i}", NOW_MS, 10_000, [1.0, 2.0]) for i in range(2000)]

    def by_path(path: str, earlier: int) -> list[Series]:
        return [Series(s.name, s.start, s.step, s.values, path) for s in wide]

    budget = Budget()
    with pytest.raises(Refused, match="MiB of series names"):
        evaluate("asPercent(asPercent(wide.*,wide.*))", by_path, budget)
    assert len(evaluate("asPercent(wide.*,wide.*)", by_path, Budget())) == 2000  # one level: fine


def reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names the store is asked to read (a spy on the real store's fetch_many)."""
    asked: list[str] = []
    real = store.fetch_many

    def spy(names: list[str], *args: object, **kwargs: object) -> object:
        asked.extend(names)
        return real(names, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "fetch_many", spy)
    return asked


def test_a_path_repeated_is_read_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """sumSeries( + 41,000 copies of one path (a 250 kB form): read once, not 41,000 times, and not
    refused as 41,000 series; the copies still count as points, so it is a 422 before the sum."""
    asked = reads(store, monkeypatch)
    copies = "sumSeries(" + ",".join(["web.h1"] * 41_000) + ")"
    budget = Budget(max_series=10_000, max_points=1_000_000)
    status, body = ask(store, budget, target=copies, **{"from": "-5min"})
    assert asked == ["web.h1"] and budget.series == 1
    assert status == 422 and "(http.renderMaxPoints)" in body
    asked.clear()
    status, body = ask(
        store, Budget(max_series=10_000), target="sumSeries(" + ",".join(["web.h1"] * 1000) + ")"
    )
    assert status == 200 and asked == ["web.h1"]
    assert json.loads(body)[0]["datapoints"][-1][0] == 5.0 * 1000


def test_the_series_limit_trips_before_anything_is_read(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = reads(store, monkeypatch)
    status, body = ask(store, Budget(max_series=20), target="sumSeries(web.h1,web.*)", **{"from": "-5min"})
    assert status == 422 and "(http.renderMaxSeries)" in body
    assert asked == []  # 21 series counted before reading the first
    status, _ = ask(store, Budget(max_series=20), target="web.*", **{"from": "-5min"})
    assert status == 200 and len(asked) == 20


def test_no_null_points_leaves_out_the_nulls_and_the_empty_series(store: Store) -> None:
    window = f"from={NOW - 600}&until={NOW}"  # the store holds the last 300 s: nulls before
    targets = "target=web.h{1,2}&target=removeBelowValue(web.h3,1000)"  # the last one all null
    status, _, body = render(
        store, parse_head(f"GET /render?{targets}&{window} HTTP/1.1\r\n\r\n".encode()), NOW
    )  # type: ignore[arg-type]
    assert status == 200 and any(v is None for s in json.loads(body) for v, _ in s["datapoints"])
    for flag in ("noNullPoints=1", "noNullPoints=true", "noNullPoints", "noNullPoints="):  # there at all
        request = parse_head(f"GET /render?{targets}&{window}&{flag} HTTP/1.1\r\n\r\n".encode())
        assert isinstance(request, Request)
        status, _, body = render(store, request, NOW)
        series = json.loads(body)
        assert [s["target"] for s in series] == ["web.h1", "web.h2"], flag
        assert (
            all(v is not None for s in series for v, _ in s["datapoints"])
            and len(series[0]["datapoints"]) == 30
        )
    status, body = ask(
        store, target="web.h1", format="csv", noNullPoints="1", **{"from": str(NOW - 600), "until": str(NOW)}
    )
    assert status == 200 and body.count("\r\n") == 60  # json only, as in graphite-web
