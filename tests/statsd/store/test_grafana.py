"""Grafana's Graphite data source, at its default graphiteVersion 1.1, against a real daemon: the
requests it sends, in the shapes its datasource.ts builds them (method, path, parameters, a
form-encoded POST for /render), and what it does with the answers.

From grafana/grafana public/app/plugins/datasource/graphite/datasource.ts:
- "Save & test" (testDatasource): query() of constantLine(100) over now-1h..now with
  maxDataPoints 300, i.e. POST /render, Content-Type application/x-www-form-urlencoded, body
  target=constantLine(100)&from=-1h&until=now&format=json&maxDataPoints=300 (targets first, then
  from, until, format, maxDataPoints; translateTime turns now-1h into -1h and a dashboard's
  absolute times into epoch seconds); older versions test with metricFindQuery('*');
- the query editor: GET /functions (parseFuncDefs: {name: {name, description, group, params:
  [{name, type, required, default, multiple, options}]}}), GET /tags/autoComplete/tags
  (expr[], tagPrefix, limit), GET /tags/autoComplete/values (expr, tag, valuePrefix, limit),
  GET /metrics/find?query=... for each node, GET /version;
- template variables: GET /metrics/find?query=..&from=..&until=.. and GET /metrics/expand;
- annotations: GET /events/get_data?from=..&until=..&tags=..
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from tests.conftest import wait_until
from webops.statsd.store.catalog import catalog


def send(port: int, method: str, path: str, body: str | None = None) -> tuple[int, str, str]:
    """One request as Grafana's backend sends it: the body form-encoded as a string."""
    data = body.encode() if body is not None else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def render_body(targets: list[str], **options: str) -> str:
    """buildGraphiteParams: target=..& for each, then from, until, format, maxDataPoints, each
    through encodeURIComponent (which leaves ( ) * ' ! alone)."""
    enc = lambda v: quote(v, safe="()*'!-_.~")  # noqa: E731 - encodeURIComponent
    parts = [f"target={enc(t)}" for t in targets]
    parts += [f"{k}={enc(v)}" for k, v in options.items()]
    return "&".join(parts)


@pytest.fixture
def daemon(start_daemon, tmp_path: Path):
    d = start_daemon(backends=["store"], store={"dir": str(tmp_path / "data")}, flushInterval=1000)
    hosts = ("web1", "web2", "web3")
    d.send(*(f"{h}.cpu:{i + 1}|g\n{h}.mem:{10 * (i + 1)}|g".encode() for i, h in enumerate(hosts)))

    def stored() -> bool:
        # every host's two gauges: the datagrams may land in different flushes
        status, _, body = send(d.http_port, "GET", "/render?target=stats.gauges.web*.*&from=-5min")
        series = json.loads(body) if status == 200 else []
        return sum(any(p[0] is not None for p in s["datapoints"]) for s in series) == 2 * len(hosts)

    wait_until(stored, what="the six gauges in the store")
    return d


def test_save_and_test_posts_constant_line(daemon) -> None:
    """Grafana 7 and later: a render of constantLine(100), POSTed; a 200 with a series is
    "Data source is working"."""
    body = render_body(
        ["constantLine(100)"], **{"from": "-1h", "until": "now", "format": "json"}, maxDataPoints="300"
    )
    assert body == "target=constantLine(100)&from=-1h&until=now&format=json&maxDataPoints=300"
    status, ctype, answer = send(daemon.http_port, "POST", "/render", body)
    assert status == 200, answer
    assert ctype == "application/json"
    series = json.loads(answer)
    # graphite-web 1.1.8's answer: named str(float(value)), three points from `from` to `until`
    assert [s["target"] for s in series] == ["100.0"]
    points = series[0]["datapoints"]
    assert [v for v, _ in points] == [100.0, 100.0, 100.0]
    assert points[2][1] - points[0][1] in (3599, 3600, 3601)  # from -1h to now, in whole seconds


def test_save_and_test_of_older_grafana_finds_star(daemon) -> None:
    status, _, answer = send(daemon.http_port, "GET", "/metrics/find?query=*")
    assert status == 200 and {n["text"] for n in json.loads(answer)} >= {"stats"}


def test_the_query_editor_gets_the_functions_webops_has(daemon) -> None:
    status, ctype, answer = send(daemon.http_port, "GET", "/functions")
    assert status == 200 and ctype == "application/json"
    listed = json.loads(answer)
    # exactly the registry, as Grafana's parseFuncDefs reads it
    assert listed == json.loads(json.dumps(catalog()))
    assert "sumSeries" in listed and "timeStack" not in listed
    for name, entry in listed.items():
        assert entry["name"] == name and isinstance(entry["description"], str) and entry["group"]
        if name not in ("constantLine", "seriesByTag"):  # a line of its own; tag expressions
            assert entry["params"][0]["type"] in ("seriesList", "seriesLists"), name
        assert all({"name", "type"} <= set(p) for p in entry["params"]), name
    grouped = json.loads(send(daemon.http_port, "GET", "/functions?grouped=1")[2])
    assert sorted(n for group in grouped.values() for n in group) == sorted(listed)


def example_argument(param: dict) -> str | None:
    """A value of the parameter's type for a target Grafana's editor would build; None for an
    optional one (left out, as the editor leaves it)."""
    if not param.get("required"):
        return None
    if param.get("options"):
        return json.dumps(param["options"][0])
    kind, name = param["type"], param["name"].lower()
    if name == "tagexpressions":  # seriesByTag: an expression that needs a value
        return '"name=stats.gauges.web1.cpu"'
    if kind in ("seriesList", "seriesLists", "series") and name == "divisorseries":
        return "stats.gauges.web1.cpu"  # divideSeries: exactly one series, as graphite-web wants
    if kind in ("seriesList", "seriesLists", "series"):
        return "stats.gauges.*.cpu"
    if kind in ("integer", "node", "intOrInf"):
        return "1"
    if kind == "float":
        return "2"
    if kind in ("interval", "intOrInterval") or "interval" in name or "window" in name:
        return '"1min"'
    return '"x"'


def test_every_function_listed_renders(daemon) -> None:
    """What /functions lists, the editor offers and the user picks: each renders, with its
    required parameters, through the same POST the panels use."""
    listed = json.loads(send(daemon.http_port, "GET", "/functions")[2])
    failures = {}
    for name, entry in listed.items():
        args = [a for a in map(example_argument, entry["params"]) if a is not None]
        target = f"{name}({','.join(args)})"
        body = render_body(
            [target], **{"from": "-5min", "until": "now", "format": "json"}, maxDataPoints="300"
        )
        status, _, answer = send(daemon.http_port, "POST", "/render", body)
        if status != 200 or not isinstance(json.loads(answer), list):
            failures[target] = (status, answer[:200])
    assert not failures


def test_tags_endpoints_answer_as_graphite_web_does_for_an_untagged_store(daemon) -> None:
    port = daemon.http_port
    # getTagsAutoComplete on every query editor view: expr omitted when empty, a prefix, a limit
    assert send(port, "GET", "/tags/autoComplete/tags?tagPrefix=na&limit=100")[:3:2] == (200, "[]")
    assert send(port, "GET", "/tags/autoComplete/tags?expr=name%3Dstats.gauges.web1.cpu")[:3:2] == (200, "[]")
    assert send(port, "GET", "/tags/autoComplete/values?tag=name&valuePrefix=s&limit=100")[:3:2] == (
        200,
        "[]",
    )
    assert send(port, "GET", "/tags")[:3:2] == (200, "[]")
    assert send(port, "GET", "/tags/findSeries?expr=name%3Dx")[:3:2] == (200, "[]")
    # graphite-web's 400s, with its {"error": ...} body
    status, _, body = send(port, "GET", "/tags/autoComplete/values")
    assert status == 400 and json.loads(body) == {"error": "no tag specified"}
    status, _, body = send(port, "GET", "/tags/findSeries")
    assert status == 400 and json.loads(body) == {"error": "no tag expressions specified"}
    # the query editor's version check
    assert send(port, "GET", "/version")[::2] == (200, "1.1.8")


def test_template_variables_find_each_name_once(daemon) -> None:
    """A variable query with a wildcard in an earlier node: one entry per name (graphite-web's
    tree_json), its id the query's parent and the name; times as translateTime sends them."""
    port = daemon.http_port
    query = urlencode({"query": "stats.gauges.*.*", "from": "-6h", "until": "now"})
    status, _, body = send(port, "GET", f"/metrics/find?{query}")
    assert status == 200
    assert [(n["text"], n["id"], n["leaf"], n["expandable"]) for n in json.loads(body)] == [
        ("cpu", "stats.gauges.*.cpu", 1, 0),
        ("mem", "stats.gauges.*.mem", 1, 0),
    ]
    status, _, body = send(port, "GET", f"/metrics/find?{urlencode({'query': 'stats.*'})}")
    assert [n["text"] for n in json.loads(body)].count("gauges") == 1
    status, _, body = send(port, "GET", "/metrics/expand?query=stats.gauges.*.cpu&query=stats.gauges.web1.*")
    assert status == 200 and json.loads(body) == {
        "results": [
            "stats.gauges.web1.cpu",
            "stats.gauges.web1.mem",
            "stats.gauges.web2.cpu",
            "stats.gauges.web3.cpu",
        ]
    }
    status, _, body = send(port, "GET", "/metrics/index.json")
    assert status == 200 and {f"stats.gauges.{h}.cpu" for h in ("web1", "web2", "web3")} <= set(
        json.loads(body)
    )


def test_annotations_ask_for_events(daemon) -> None:
    status, ctype, body = send(daemon.http_port, "GET", "/events/get_data?from=-6h&until=now&tags=deploy")
    assert (status, ctype, body) == (200, "application/json", "[]")


def test_a_panel_query_with_absolute_times_and_a_grafana_interval(daemon) -> None:
    """A dashboard's absolute range arrives as epoch seconds; Grafana's own `now-1h` as -1h."""
    status, _, all_ = send(daemon.http_port, "GET", "/render?target=stats.gauges.web1.cpu&from=-5min")
    last = max(t for s in json.loads(all_) for v, t in s["datapoints"] if v is not None)
    body = render_body(
        ["aliasByNode(stats.gauges.*.cpu,2)"],
        **{"from": str(last - 300), "until": str(last + 60), "format": "json"},
        maxDataPoints="100",
    )
    status, _, answer = send(daemon.http_port, "POST", "/render", body)
    assert status == 200, answer
    assert [s["target"] for s in json.loads(answer)] == ["web1", "web2", "web3"]


HOSTILE = [
    {"from": "-99999999999999y"},
    {"until": "+99999999999999y"},
    {"from": "999999999999999", "until": "-1h"},
    {"from": "-" + "9" * 5000 + "h"},
    {"from": "-1" + "h" * 100_000},
    {"now": "noon" * 10_000},
    {"tz": "../../etc/passwd"},
    {"jsonp": "</script><script>alert(1)//"},
    {"format": "png"},
    {"maxDataPoints": "9" * 5000},
]


def test_hostile_parameters_get_an_answer_and_the_daemon_lives(daemon) -> None:
    for extra in HOSTILE:
        params = {"target": "stats.gauges.*.cpu", "from": "-5min", **extra}
        status, ctype, body = send(daemon.http_port, "POST", "/render", urlencode(params))
        assert status in (200, 400), (extra, status, body[:200])
        assert status == 200 or (ctype == "text/plain" and body.count("\n") == 1), (extra, body[:200])
        status, _, body = send(daemon.http_port, "GET", f"/metrics/find?{urlencode({'query': '*', **extra})}")
        assert status in (200, 400, 431), (extra, status, body[:200])  # 431: past 64 KiB of head
    assert send(daemon.http_port, "GET", "/render?target=stats.gauges.web1.cpu&from=-5min")[0] == 200
