"""GET /health and GET /metrics on a real daemon; /metrics parsed the way Prometheus parses it."""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_until


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_health_follows_the_console(start_daemon) -> None:
    d = start_daemon()
    assert get(d.http_port, "/health") == (200, "health: up\n")
    d.console("health down", until=b"\n")
    assert get(d.http_port, "/health") == (503, "health: down\n")
    d.console("health up", until=b"\n")
    assert get(d.http_port, "/health")[0] == 200
    assert get(d.http_port, "/nope")[0] == 404


def test_metrics_is_valid_prometheus_text_of_the_flushes(start_daemon) -> None:
    d = start_daemon(flushInterval=300, percentThreshold=[90, 99.9])
    d.send(
        b"api.get-user:3|c|#env:prod,az:b\napi.get-user:2|c|#env:prod,az:b\nlat:10|ms\nlat:20|ms\nq:4|g\nu:a|s\nu:b|s"
    )
    d.send(b"2xx:1|c")
    wait_until(lambda: d.summed("counters", "api.get-user;env=prod;az=b") == 5, what="the flush")
    wait_until(lambda: d.summed("counters", "2xx") == 1, what="the second packet's flush")
    status, text = get(d.http_port, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("api_get_user_total", (("az", "b"), ("env", "prod")))] == 5
    assert samples[("_2xx_total", ())] == 1
    assert samples[("lat", (("quantile", "0.5"),))] == 15
    assert samples[("lat", (("quantile", "0.9"),))] == 20
    assert samples[("lat", (("quantile", "0.999"),))] == 20
    assert samples[("lat_sum", ())] == 30
    assert samples[("lat_count", ())] == 2
    assert samples[("q", ())] == 4
    assert samples[("statsd_packets_received_total", ())] == 2
    assert samples[("statsd_health_up", ())] == 1
    assert ("statsd_backend", (("backend", "file"), ("stat", "last_flush"))) in samples


def test_counter_totals_accumulate_across_flushes(start_daemon) -> None:
    d = start_daemon(flushInterval=200)
    d.send(b"acc:1|c")
    wait_until(lambda: d.summed("counters", "acc") == 1, what="first flush")
    d.send(b"acc:2|c")
    wait_until(lambda: d.summed("counters", "acc") == 3, what="second flush")

    def total() -> float | None:
        for family in text_string_to_metric_families(get(d.http_port, "/metrics")[1]):
            for s in family.samples:
                if s.name == "acc_total":
                    return s.value
        return None

    assert wait_until(lambda: total() == 3, what="acc_total == 3")


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on, from /proc (no fixed port is probed)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for row in list(f)[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_http_can_be_turned_off(start_daemon) -> None:
    d = start_daemon(http=False)
    assert listening_tcp_ports(d.proc.pid) == {d.mgmt_port}  # the console only
    assert "http (/health" not in d.logs()
    on = start_daemon()
    assert listening_tcp_ports(on.proc.pid) == {on.mgmt_port, on.http_port}


def strict_families(text: str) -> dict[str, str]:
    """Check the exposition as Prometheus' own (Go) parser reads it: every sample belongs to the
    family typed right before it (a summary's also as _sum/_count, a histogram's as _bucket,
    _sum and _count only), no family is typed twice and no series appears twice. Returns
    {family: type}."""
    import re

    types: dict[str, str] = {}
    current = None
    seen = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"family {name} typed twice"
            types[name], current = kind, name
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        assert m, f"not a sample line: {line!r}"
        name, labels = m.group(1), m.group(2) or ""
        suffixes = {"summary": ("", "_sum", "_count"), "histogram": ("_bucket", "_sum", "_count")}
        allowed = {current + suffix for suffix in suffixes.get(types[current], ("",))}
        assert name in allowed, f"{name} is not a sample of family {current} ({types[current]})"
        assert (name, labels) not in seen, f"{name}{labels} twice"
        seen.add((name, labels))
    return types


def test_metrics_families_are_typed_as_prometheus_reads_them(start_daemon) -> None:
    d = start_daemon(flushInterval=300, deleteIdleStats=True)
    d.send(b"x:1|c\nx_total:5|g\ny:3|ms\ny:4|g\napi.get-user:1|g\napi_get_user:2|g\nu:a|s\nu:1|g\ngone:1|c")
    wait_until(lambda: d.summed("counters", "gone") == 1, what="the flush")
    text = get(d.http_port, "/metrics")[1]
    types = strict_families(text)
    assert types["x_total"] == "counter" and types["x_total_gauge"] == "gauge"
    assert types["y"] == "summary" and types["y_gauge"] == "gauge"
    assert types["u"] == "gauge" and types["u_set"] == "gauge"
    assert 'api_get_user{statsd_name="api_get_user"} 2' in text and "api_get_user 1" in text
    assert "gone_total 1" in text
    # idle with deleteIdleStats: the series leaves the flushes, and /metrics with them
    wait_until(lambda: "gone_total" not in get(d.http_port, "/metrics")[1], what="the idle series to leave")
    strict_families(get(d.http_port, "/metrics")[1])


def test_metrics_are_rendered_on_demand_off_the_loop() -> None:
    from webops.statsd.aggregate import Aggregator
    from webops.statsd.prometheus import PrometheusView
    from webops.statsd.snapshot import SummarySettings, summarize

    agg = Aggregator()
    agg.ingest(b"a:1|c")
    view = PrometheusView()
    view.update(summarize(agg.take(1), SummarySettings()))
    assert view.stale and view.render() == ""  # nothing rendered until a scrape asks
    view.refresh()
    assert not view.stale and "a_total 1" in view.render()
