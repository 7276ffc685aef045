"""`webops check` against a real daemon's store through its HTTP API: statsd names, each threshold
form, stale data, an API error, a trend against an earlier window and Holt-Winters bands computed
here; and against endpoints that are dead or hung."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.check.helpers import run_check, run_plugin
from tests.conftest import free_port, wait_until
from tests.statsd.conftest import start_daemon  # noqa: F401 - the daemon fixture, shared
from webops.check import output
from webops.check.run import Check


def latest(port: int, target: str) -> tuple[float | None, int]:
    """The last known value of `target` in the store and its timestamp."""
    q = urlencode({"target": target, "from": "-5min", "format": "json"})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/render?{q}", timeout=10) as r:
        got = json.loads(r.read())
    known = [p for s in got for p in s["datapoints"] if p[0] is not None]
    return (known[-1][0], known[-1][1]) if known else (None, 0)


@pytest.fixture
def daemon(start_daemon, tmp_path: Path):  # noqa: F811
    d = start_daemon(
        backends=["store"],
        store={"dir": str(tmp_path / "data"), "retentions": [[".", "1s:10m"]]},
        flushInterval=1000,
        percentThreshold=[90, 99],
    )
    d.send(b"chk.g:25|g\nchk.hits:10|c\nchk.lat:100|ms\nchk.lat:300|ms\nchk.users:a|s\nchk.users:b|s")
    wait_until(lambda: latest(d.http_port, "stats.gauges.chk.g")[0] == 25, what="the gauge in the store")
    wait_until(lambda: latest(d.http_port, "stats.timers.chk.lat.upper_99")[0], what="the timer in the store")
    return d


def test_each_threshold_form_on_a_gauge(daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    forms = [
        (["-w", "30", "-c", "40"], 0),  # 25 within 0..30
        (["-w", "10", "-c", "40"], 1),  # above 10
        (["-w", "10", "-c", "20"], 2),  # above 20
        (["-c", "30:"], 2),  # below 30
        (["-c", "~:25"], 0),  # 25 is not above 25: ends are inclusive
        (["-c", "~:24"], 2),
        (["-c", "20:30"], 0),
        (["-c", "26:30"], 2),
        (["-w", "@20:30"], 1),  # inside
        (["-w", "@26:30"], 0),
    ]
    for args, want in forms:
        rc, line = run_check("-u", url, "-t", "stats.gauges.chk.g", "--agg", "max", "--from", "-10min", *args)
        assert rc == want, (args, line)
        assert line.startswith(f"WEBOPS CHECK {['OK', 'WARNING', 'CRITICAL'][want]} - "), line
        assert "'stats.gauges.chk.g'=25;" in line, line


def test_statsd_names_resolve_as_the_daemon_writes_them(daemon) -> None:
    # no --url: the daemon's own config names its HTTP port and its naming (legacy, p99)
    cfg = ["--statsd-config", str(daemon.config_path)]
    rc, line = run_check(*cfg, "--counter", "chk.hits", "--stat", "count", "--agg", "sum", "-c", "~:9")
    assert rc == 2 and "'stats_counts.chk.hits'=10;" in line, line
    rc, line = run_check(
        *cfg, "--timer", "chk.lat", "--stat", "p99", "--agg", "max", "-w", "299", "-c", "400"
    )
    assert rc == 1 and "'stats.timers.chk.lat.upper_99'=300;299;400" in line, line
    rc, line = run_check(*cfg, "--set", "chk.users", "--agg", "max", "-c", "2:")
    assert rc == 0 and "'stats.sets.chk.users.count'=2;" in line, line
    rc, line = run_check(*cfg, "--timer", "chk.lat", "--stat", "p95", "-c", "1")
    assert rc == 3 and "percentThreshold" in line, line


def test_the_non_legacy_layout(start_daemon, tmp_path: Path) -> None:  # noqa: F811
    d = start_daemon(
        backends=["store"],
        store={"dir": str(tmp_path / "data"), "retentions": [[".", "1s:10m"]]},
        flushInterval=1000,
        graphite={
            "legacyNamespace": False,
            "globalPrefix": "svc",
            "prefixCounter": "c",
            "globalSuffix": "h1",
        },
    )
    d.send(b"nl.hits:5|c\nnl.g:3|g")
    wait_until(lambda: latest(d.http_port, "svc.gauges.nl.g.h1")[0] == 3, what="the gauge in the store")
    cfg = ["--statsd-config", str(d.config_path)]
    rc, line = run_check(*cfg, "--counter", "nl.hits", "--stat", "count", "--agg", "sum", "-c", "~:4")
    assert rc == 2 and "'svc.c.nl.hits.count.h1'=5;" in line, line
    rc, line = run_check(*cfg, "--gauge", "nl.g", "--agg", "last", "-c", "3")
    assert rc == 0 and "'svc.gauges.nl.g.h1'=3;" in line, line


def test_wildcards_the_worst_series_decides_and_each_is_named(daemon) -> None:
    daemon.send(b"chk.w.a:1|g\nchk.w.b:15|g\nchk.w.c:50|g")
    wait_until(lambda: latest(daemon.http_port, "stats.gauges.chk.w.c")[0] == 50, what="the gauges")
    url = f"http://127.0.0.1:{daemon.http_port}"
    rc, line = run_check("-u", url, "-t", "stats.gauges.chk.w.*", "--agg", "last", "-w", "10", "-c", "20")
    assert rc == 2, line
    assert line.index("stats.gauges.chk.w.c last 50") < line.index("stats.gauges.chk.w.b last 15"), line
    assert "1 of 3 series OK" in line, line
    for name, value in (("a", 1), ("b", 15), ("c", 50)):
        assert f"'stats.gauges.chk.w.{name}'={value};10;20" in line, line


def test_no_data_in_the_window_is_never_ok(daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    _, first = latest(daemon.http_port, "stats.gauges.chk.g")
    before = ["--from", str(first - 120), "--until", str(first - 60)]  # the series, all nulls there
    rc, line = run_check("-u", url, "-t", "stats.gauges.chk.g", "-w", "1000", *before)
    assert rc == 2 and "stale" in line, line
    assert "60s window ending" in line and "in the last" not in line, line  # the window it was
    assert "'stats.gauges.chk.g'=U;1000" in line, line  # perfdata for it, without a value
    rc, line = run_check("-u", url, "-t", "stats.gauges.chk.g", "-w", "1000", "--stale", "unknown", *before)
    assert rc == 3 and "stale" in line, line
    rc, line = run_check("-u", url, "-t", "stats.gauges.never.sent", "-w", "1000")
    assert rc == 2 and "no series" in line, line


def test_a_bad_expression_is_unknown_with_the_apis_message(daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    rc, line = run_check("-u", url, "-t", "noSuchFunction(stats.gauges.chk.g)", "-w", "1")
    assert rc == 3 and "400" in line and "noSuchFunction" in line, line


def test_a_change_against_an_earlier_window(daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    daemon.send(b"chk.t:10|g")
    wait_until(lambda: latest(daemon.http_port, "stats.gauges.chk.t")[0] == 10, what="10")
    _, then = latest(daemon.http_port, "stats.gauges.chk.t")
    daemon.send(b"chk.t:20|g")
    wait_until(lambda: latest(daemon.http_port, "stats.gauges.chk.t")[0] == 20, what="20")
    _, now = latest(daemon.http_port, "stats.gauges.chk.t")
    window = ["-u", url, "-t", "stats.gauges.chk.t", "--from", str(now - 1), "--until", str(now)]
    shift = ["--compare", f"-{now - then}s"]
    rc, line = run_check(*window, *shift, "--change-warning", "50%", "--change-critical", "150%")
    assert rc == 1 and "was 10" in line and "change 100%" in line, line
    assert "'stats.gauges.chk.t change'=100%;-50:50;-150:150" in line, line
    rc, line = run_check(*window, *shift, "--change-critical", "~:5")  # absolute: +10
    assert rc == 2 and "change 10" in line, line
    rc, line = run_check(*window, *shift, "--change-critical", "200%")
    assert rc == 0, line


def test_holt_winters_bands_computed_here_for_the_store(daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    sent = 0
    for i in range(12):  # a steady series: the band closes on it
        daemon.send(b"chk.hw:7|g")
        wait_until(lambda s=sent: latest(daemon.http_port, "stats.gauges.chk.hw")[1] > s, what=f"flush {i}")
        sent = latest(daemon.http_port, "stats.gauges.chk.hw")[1]
    hw = ["-u", url, "-t", "stats.gauges.chk.hw", "--agg", "last", "--holt-winters", "--hw-source", "client"]
    hw += ["--bootstrap", "8s", "--seasonality", "4s", "--from", str(sent - 2), "--until", str(sent)]
    rc, line = run_check(*hw)
    assert rc == 0 and "within the Holt-Winters band" in line, line
    daemon.send(b"chk.hw:70|g")
    wait_until(lambda: latest(daemon.http_port, "stats.gauges.chk.hw")[0] == 70, what="the spike")
    _, spike = latest(daemon.http_port, "stats.gauges.chk.hw")
    hw[-3:] = [str(spike - 2), "--until", str(spike)]
    rc, line = run_check(*hw)
    assert rc == 2 and "outside the Holt-Winters band" in line, line


def test_a_dead_endpoint_is_unknown() -> None:
    rc, line = run_check("-u", f"http://127.0.0.1:{free_port()}", "-t", "x", "-w", "1")
    assert rc == 3 and "unreachable" in line and "refused" in line, line


def test_a_hung_endpoint_is_unknown_within_the_timeout() -> None:
    with socket.socket() as s:  # accepts connections (the kernel's backlog) and never answers
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        rc, line = run_check("-u", url, "-t", "x", "-w", "1", "--timeout", "1")
    assert rc == 3 and "no answer within" in line, line


def test_usage_errors_are_unknown_not_webops_usage_status() -> None:
    for args in (
        ["-t", "x", "-w", "abc"],
        ["-t", "x", "--no-such-flag", "-w", "1"],
        ["-w", "1"],
        ["-t", "x"],
    ):
        rc, line = run_check(*args)
        assert rc == 3 and line.startswith("WEBOPS CHECK UNKNOWN - webops check: "), (args, line)


def test_a_problem_outranks_a_series_that_cannot_be_judged(daemon) -> None:
    """UNKNOWN (a stale series, no earlier window) must not hide a CRITICAL: Monitoring Plugins'
    max_state_alt, CRITICAL > WARNING > UNKNOWN > OK."""
    port, url = daemon.http_port, f"http://127.0.0.1:{daemon.http_port}"
    daemon.send(b"chk.s.early:50|g")
    wait_until(lambda: latest(port, "stats.gauges.chk.s.early")[0] == 50, what="the early gauge")
    _, t0 = latest(port, "stats.gauges.chk.s.early")
    wait_until(lambda: latest(port, "stats.gauges.chk.s.early")[1] > t0, what="a later flush")
    daemon.send(b"chk.s.late:1|g")
    wait_until(lambda: latest(port, "stats.gauges.chk.s.late")[0] == 1, what="the late gauge")
    window = ["--from", str(t0 - 1), "--until", str(t0)]  # early has data, late none yet
    rc, line = run_check(
        "-u", url, "-t", "stats.gauges.chk.s.*", "--agg", "max", "-c", "10", "--stale", "unknown", *window
    )
    assert rc == 2, line
    assert "'stats.gauges.chk.s.late'=U;;10" in line and "0 of 2 series OK" in line, line
    # no data an hour earlier (UNKNOWN) beside a threshold's CRITICAL: 25 > 10
    rc, line = run_check(
        "-u", url, "-t", "stats.gauges.chk.g", "-c", "10", "--compare", "-1h", "--change-warning", "10%"
    )
    assert rc == 2 and "no data 3600s earlier" in line, line


def test_a_statsd_name_is_sanitized_as_the_daemon_sanitized_it(daemon) -> None:
    daemon.send("chk.my metric/é:7|g".encode())
    wait_until(lambda: latest(daemon.http_port, "stats.gauges.chk.my_metric-")[0] == 7, what="the gauge")
    cfg = ["--statsd-config", str(daemon.config_path)]
    rc, line = run_check(*cfg, "--gauge", "chk.my metric/é", "--agg", "last", "-c", "10")
    assert rc == 0 and "'stats.gauges.chk.my_metric-'=7;" in line, line


def test_negative_ranges_reach_the_check(daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    base = ["-u", url, "-t", "stats.gauges.chk.g", "--agg", "max", "--from", "-10min"]
    assert run_check(*base, "-w", "-10:-1")[0] == 1  # 25 is outside -10..-1
    assert run_check(*base, "-c", "-.5:30")[0] == 0


def test_many_series_keep_the_verdict_on_a_short_first_line(daemon) -> None:
    """120 gauges, 60 of them over: the first line says CRITICAL and the tally within NRPE's
    1 KiB; the long output names the first 50 problems and counts the rest."""
    daemon.send("".join(f"chk.m.s{i:03}:{i}|g\n" for i in range(120)).encode())
    wait_until(lambda: latest(daemon.http_port, "stats.gauges.chk.m.s119")[0] == 119, what="the gauges")
    url = f"http://127.0.0.1:{daemon.http_port}"
    rc, out = run_plugin("-u", url, "-t", "stats.gauges.chk.m.*", "--agg", "last", "-c", "59")
    first, *rest = out.rstrip("\n").split("\n")
    assert rc == 2 and len(first.encode()) <= 1000, first
    assert first.startswith("WEBOPS CHECK CRITICAL - ") and "60 of 120 series OK" in first, first
    assert "stats.gauges.chk.m.s109 last 109 (critical 59)" in rest, rest  # the first 50 problems
    assert "and 10 more series not OK" in rest[50], rest


def test_a_bug_in_the_check_ends_unknown_not_in_a_dead_thread(daemon) -> None:
    """Whatever raises while judging (here an aggregation the plan would have refused) is one
    UNKNOWN line naming it, not "no answer within --timeout" and a traceback."""
    now = latest(daemon.http_port, "stats.gauges.chk.g")[1]
    check = Check(
        url=f"http://127.0.0.1:{daemon.http_port}",
        target="stats.gauges.chk.g",
        start=now - 60,
        end=now,
        agg="median",
        stale=output.CRITICAL,
        critical=None,
    )
    state, line = check.run(time.monotonic() + 30)
    assert state == 3 and "ValueError" in line and "median" in line, line
