"""Tagged series (DogStatsD `|#env:prod` written as Graphite's `name;env=prod`): the tag endpoints
and seriesByTag answer over the store's names as graphite-web's tag database does; checked on a
real daemon, and differentially against Debian's graphite-web with its LocalDatabaseTagDB."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import wait_until
from webops.statsd.store import tags

NAMES = [
    "stats.counters.req.rate;env=prod;route=home",
    "stats.counters.req.rate;env=dev;route=home",
    "stats.counters.req.rate;env=prod;route=api",
    "stats.counters.err.rate;env=prod",
    "stats.gauges.untagged",
    "bad;=x",  # not a tagged series graphite-web would hold
]


def test_find_series_follows_graphite_web_semantics() -> None:
    assert tags.find_series(NAMES, ["env=prod"]) == [
        "stats.counters.err.rate;env=prod",
        "stats.counters.req.rate;env=prod;route=api",
        "stats.counters.req.rate;env=prod;route=home",
    ]
    # != matches series without the tag; =~ is anchored at the start
    assert tags.find_series(NAMES, ["env=prod", "route!=home"]) == [
        "stats.counters.err.rate;env=prod",
        "stats.counters.req.rate;env=prod;route=api",
    ]
    assert tags.find_series(NAMES, ["route=~om"]) == []
    assert tags.find_series(NAMES, ["route=~h", "env!=~p"]) == ["stats.counters.req.rate;env=dev;route=home"]
    assert tags.find_series(NAMES, ["name=stats.counters.err.rate"]) == ["stats.counters.err.rate;env=prod"]
    with pytest.raises(tags.TagError, match="At least one tagspec must not match the empty string"):
        tags.find_series(NAMES, ["route!=home", "env=~.*"])
    with pytest.raises(tags.TagError, match="Invalid tagspec"):
        tags.find_series(NAMES, ["env"])
    with pytest.raises(tags.TagError, match="not a regular expression"):
        tags.find_series(NAMES, ["env=~[z-a]"])


def test_a_catastrophic_pattern_is_a_refusal_not_a_stall() -> None:
    slow = "(.*){1,32000}[bc]"  # backtracks for seconds on 40 letters, even in the regex module
    with pytest.raises(tags.TagError, match="takes too long"):
        tags.find_series(["m;k=" + "a" * 40], [f"k=~{slow}"])
    with pytest.raises(tags.TagError, match="takes too long"):
        tags.list_tags(["m;" + "a" * 40 + "=v"], tag_filter=slow)


def test_the_heaviest_queries_get_an_answer() -> None:
    with pytest.raises(tags.TagError, match="nested too deeply"):
        tags.find_series(NAMES, ["env=~" + "(" * 5000 + ")" * 5000])
    many = [f"m.{i};k=v{i % 7}" for i in range(20000)]
    # thousands of expressions, each needing every series: stopped at the deadline, with a message
    exprs = ["k=~v", *(f"name!=x{i}" for i in range(5000))]
    with pytest.raises(tags.TagError, match="past the request's deadline"):
        tags.find_series(many, exprs, deadline=time.monotonic())
    assert len(tags.find_series(many, ["k=~v1"] * 5000)) == len([i for i in range(20000) if i % 7 == 1])


def test_lists_and_auto_complete() -> None:
    assert tags.list_tags(NAMES) == [{"tag": "env"}, {"tag": "name"}, {"tag": "route"}]
    assert tags.list_tags(NAMES, "r", "1") == [{"tag": "route"}]
    assert tags.auto_complete_tags(NAMES, [], "n") == ["name"]
    assert tags.auto_complete_tags(NAMES, ["name=stats.counters.err.rate"]) == ["env"]
    assert tags.auto_complete_values(NAMES, [], "env") == ["dev", "prod"]
    assert tags.auto_complete_values(NAMES, ["route=home"], "env", "p") == ["prod"]
    assert tags.auto_complete_values(NAMES, [], "name", limit="1") == ["stats.counters.err.rate"]
    with pytest.raises(tags.TagError, match="limit"):
        tags.auto_complete_tags(NAMES, [], limit="lots")


def _tagged_daemon(start_daemon, tmp_path: Path, lines: bytes, want: int):
    """A daemon with `lines` flushed into its store: its `want` tagged names, once all are there
    (a flush is written in batches: fewer is a store still writing)."""
    store = {"dir": str(tmp_path / "data"), "retentions": [[".", "1s:1h"]]}
    d = start_daemon(backends=["store"], store=store, flushInterval=1000)
    d.send(lines)

    def names() -> list[str]:
        status, body = d.http("/metrics/index.json")
        assert status == 200, body
        got = [n for n in json.loads(body) if ";" in n]
        return got if len(got) >= want else []

    return d, wait_until(names, what="the tagged series in the store")


def test_tags_on_a_real_daemon(start_daemon, tmp_path: Path) -> None:
    d, _ = _tagged_daemon(
        start_daemon,
        tmp_path,
        b"req:1|c|#env:prod,route:home\nreq:2|c|#env:dev,route:home\nreq:5|c|#env:prod,route:api\n"
        b"depth:7|g|#env:prod\nplain:1|c",
        want=7,  # stats.req and stats_counts.req for each of 3 tag sets, the gauge
    )

    def get(path: str, **params: str | list[str]) -> object:
        status, body = d.http(f"{path}?{urlencode(params, doseq=True)}")
        assert status == 200, body
        return json.loads(body)

    assert get("/tags") == [{"tag": "env"}, {"tag": "name"}, {"tag": "route"}]
    assert get("/tags/") == get("/tags")
    assert get("/tags", filter="e") == [{"tag": "env"}]
    assert get("/tags/autoComplete/tags", tagPrefix="r") == ["route"]
    assert get("/tags/autoComplete/tags", expr="name=stats.gauges.depth") == ["env"]
    assert get("/tags/autoComplete/values", tag="env") == ["dev", "prod"]
    assert get("/tags/autoComplete/values", tag="route", expr="env=prod") == ["api", "home"]
    assert get("/tags/findSeries", expr=["env=prod", "route=~h"]) == [
        "stats.req;env=prod;route=home",
        "stats_counts.req;env=prod;route=home",
    ]
    # Grafana's query editor: expr[]=...
    assert get("/tags/findSeries", **{"expr[]": ["name=stats.gauges.depth"]}) == [
        "stats.gauges.depth;env=prod"
    ]

    def rendered() -> list:
        got = get(
            "/render",
            target="sumSeries(seriesByTag('name=stats_counts.req','env=prod'))",
            **{"from": "-5min"},
        )
        assert isinstance(got, list)
        values = [p[0] for s in got for p in s["datapoints"] if p[0] is not None]
        return got if 6.0 in values else []

    got = wait_until(rendered, what="seriesByTag summed in /render")
    assert [s["target"] for s in got] == ["sumSeries(seriesByTag('name=stats_counts.req','env=prod'))"]
    got = get("/render", target="seriesByTag('route=home')", **{"from": "-5min"})
    assert isinstance(got, list)
    assert sorted(s["target"] for s in got) == [
        "stats.req;env=dev;route=home",
        "stats.req;env=prod;route=home",
        "stats_counts.req;env=dev;route=home",
        "stats_counts.req;env=prod;route=home",
    ]

    # what graphite-web refuses is a 400 with its message, never a 500
    for path, error in [
        ("/tags/findSeries?expr=env!%3Dprod", "At least one tagspec"),
        ("/tags/findSeries?expr=env", "Invalid tagspec"),
        ("/tags/findSeries", "no tag expressions specified"),
        ("/tags/autoComplete/values", "no tag specified"),
        ("/tags?filter=%5Bz-a%5D", "not a regular expression"),
        ("/tags/autoComplete/tags?limit=x", "limit"),
    ]:
        status, body = d.http(path)
        assert status == 400 and error in json.loads(body)["error"], (path, body)
    status, body = d.http("/render?target=seriesByTag('env!%3Dprod')")
    assert status == 400 and "At least one tagspec" in body
    status, body = d.http("/render?target=seriesByTag()")
    assert status == 400 and "seriesByTag" in body
    status, body = d.http("/functions?group=Special")
    assert status == 200 and "seriesByTag" in json.loads(body)


def _post(port: int, path: str, form: dict) -> object:
    data = urlencode(form, doseq=True).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _ask(port: int, path: str, params: dict) -> tuple[int, object]:
    url = f"http://127.0.0.1:{port}{path}?{urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


QUERIES: list[tuple[str, dict]] = [
    ("/tags", {}),
    ("/tags", {"filter": "r"}),
    ("/tags", {"filter": "^(e|n)", "limit": "1"}),
    ("/tags/autoComplete/tags", {}),
    ("/tags/autoComplete/tags", {"tagPrefix": "r"}),
    ("/tags/autoComplete/tags", {"expr": ["env=prod"]}),
    ("/tags/autoComplete/tags", {"expr": ["name=stats.gauges.depth"], "limit": "5"}),
    ("/tags/autoComplete/values", {"tag": "env"}),
    ("/tags/autoComplete/values", {"tag": "name", "valuePrefix": "stats_"}),
    ("/tags/autoComplete/values", {"tag": "route", "expr": ["env=prod"]}),
    ("/tags/autoComplete/values", {"tag": "env", "expr": ["route!=home", "name=~stats\\."], "limit": "1"}),
    ("/tags/findSeries", {"expr": ["env=prod"]}),
    ("/tags/findSeries", {"expr": ["env=prod", "route!=home"]}),
    ("/tags/findSeries", {"expr": ["route=~h", "env!=~p"]}),
    ("/tags/findSeries", {"expr": ["route=~om"]}),
    ("/tags/findSeries", {"expr": ["name=~^stats\\.g"]}),
    ("/tags/findSeries", {"expr": ["route="]}),
    ("/tags/findSeries", {"expr": ["route!=", "name!=stats.req"]}),
    ("/tags/findSeries", {"expr[]": ["env=dev"]}),
    ("/tags/findSeries", {"expr": ["env!=prod"]}),  # graphite-web's 400: nothing needs a value
    ("/tags/findSeries", {"expr": ["env"]}),
]


def test_the_tag_endpoints_answer_what_graphite_web_answers(
    start_daemon, start_graphite_web, tmp_path: Path
) -> None:
    # tags sent in sorted order: graphite-web's database names a series with its tags sorted
    d, names = _tagged_daemon(
        start_daemon,
        tmp_path,
        b"req:1|c|#env:prod,route:home\nreq:2|c|#env:dev,route:home\nreq:5|c|#env:prod,route:api\n"
        b"depth:7|g|#env:prod\nlat:3|ms|#env:dev,host:a1\nplain:1|c",
        want=21,  # 6 for the counter, 1 for the gauge, the timer's 14
    )
    web = start_graphite_web(
        tmp_path / "whisper", 'TAGDB = "graphite.tags.localdatabase.LocalDatabaseTagDB"\n'
    )
    assert sorted(_post(web, "/tags/tagMultiSeries", {"path": names})) == sorted(names)  # type: ignore[arg-type]
    for path, params in QUERIES:
        theirs = _ask(web, path, params)
        ours = _ask(d.http_port, path, params)
        if path == "/tags" and theirs[1] is not None:  # graphite-web adds its row ids
            theirs = (theirs[0], [{"tag": t["tag"]} for t in theirs[1]])  # type: ignore[union-attr]
        assert ours == theirs, (path, params)
