"""prometheus.stateFile: /metrics' totals (counters, timers' _sum/_count, histogram buckets) go on
across a restart, the final flush's counts included; a bad file or a read-only directory never
stops the daemon."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from tests.conftest import tmpfs, wait_until
from webops.statsd import prometheus_state
from webops.statsd.persist import write_private

HISTOGRAM = {"timers": "both", "buckets": [10, 100]}


def scrape(d) -> dict[str, float]:
    """/metrics' samples, `name{labels}` -> value."""
    status, text = d.http("/metrics")
    assert status == 200
    return {
        m[1]: float(m[2])
        for line in text.splitlines()
        if (m := re.match(r"(\S+) (\S+)$", line)) and not line.startswith("#")
    }


def stopped(d) -> None:
    d.signal(signal.SIGTERM)
    assert d.proc.wait(60) == 0


def test_totals_survive_restarts_with_the_final_flushs_counts(start_daemon, tmp_path: Path) -> None:
    state = tmp_path / "prometheus.json"
    config = {"prometheus": {**HISTOGRAM, "stateFile": str(state)}}
    # two processes that never flush but the final flush, at SIGTERM, when /metrics is closed
    for packet in (b"jobs:5|c\nlatency:5|ms\nlatency:50|ms\nidle:3|c", b"jobs:7|c\nlatency:500|ms"):
        d = start_daemon(**config)
        d.send(packet)
        wait_until(lambda d=d: d.total() == 1, what="the packet")
        stopped(d)
    assert state.stat().st_mode & 0o777 == 0o600

    again = start_daemon(flushInterval=200, **config)
    again.send(b"jobs:1|c\nlatency:7|ms")
    wait_until(lambda: "jobs_total" in scrape(again), what="the new process's first flush")
    first = scrape(again)
    assert first["jobs_total"] == 5 + 7 + 1  # no reset: both final flushes, then the new counts
    assert first['latency_histogram_bucket{le="10"}'] == 2
    assert first['latency_histogram_bucket{le="100"}'] == 3
    assert first['latency_histogram_bucket{le="+Inf"}'] == first["latency_histogram_count"] == 4
    assert first["latency_histogram_sum"] == 5 + 50 + 500 + 7
    assert (first["latency_sum"], first["latency_count"]) == (562, 4)
    # a series not sent since the first process is off /metrics, its total kept for its return
    assert "idle_total" not in first
    assert json.loads(state.read_text())["counters"]["idle"] == 3
    again.send(b"idle:1|c")
    wait_until(lambda: scrape(again).get("idle_total") == 4, what="idle's total to go on")


def test_changed_buckets_start_the_histogram_again(start_daemon, tmp_path: Path) -> None:
    state = tmp_path / "prometheus.json"
    d = start_daemon(prometheus={**HISTOGRAM, "stateFile": str(state)})
    d.send(b"latency:5|ms\nlatency:50|ms")
    wait_until(lambda: d.total() == 1, what="the packet")
    stopped(d)
    again = start_daemon(
        flushInterval=200, prometheus={**HISTOGRAM, "buckets": [20], "stateFile": str(state)}
    )
    again.send(b"latency:7|ms")
    wait_until(lambda: "latency_count" in scrape(again), what="the first flush")
    metrics = scrape(again)
    assert metrics['latency_histogram_bucket{le="20"}'] == metrics["latency_histogram_count"] == 1
    assert metrics["latency_count"] == 3  # the summary's totals do not depend on bounds


@pytest.mark.parametrize(
    "text",
    ["{half a fi", '{"version": 2, "counters": {"jobs": 1}}', '["jobs", 1]'],
    ids=["cut", "v2", "list"],
)
def test_an_unusable_file_is_set_aside_and_said_once(start_daemon, tmp_path: Path, text: str) -> None:
    state = tmp_path / "prometheus.json"
    state.write_text(text)
    d = start_daemon(flushInterval=200, prometheus={"stateFile": str(state)})
    d.send(b"jobs:2|c")
    wait_until(lambda: scrape(d).get("jobs_total") == 2, what="a flush from zero")
    assert d.logs().count("prometheus.stateFile") == 1, d.logs()
    assert (tmp_path / "prometheus.json.bad").read_text() == text
    wait_until(
        lambda: state.exists() and json.loads(state.read_text())["counters"].get("jobs") == 2,
        what="a new file",
    )


def test_entries_that_are_not_totals_are_skipped(start_daemon, tmp_path: Path) -> None:
    state = tmp_path / "prometheus.json"
    counters = {"good": 4, "text": "x", "huge": 10**400, "negative": -1}
    state.write_text(json.dumps({"version": 1, "counters": counters, "timers": {"t": {"sum": 1}}}))
    d = start_daemon(flushInterval=200, prometheus={"stateFile": str(state)})
    assert "4 entries of" in d.logs()
    d.send(b"good:1|c\nhuge:1|c")
    wait_until(lambda: scrape(d).get("good_total") == 5 and scrape(d).get("huge_total") == 1, what="flush")


def test_a_read_only_directory_is_logged_and_the_daemon_goes_on(start_daemon, tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    # root writes anywhere: run it without the capability that lets it
    popen = (
        {"prefix": ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]} if os.geteuid() == 0 else {}
    )
    d = start_daemon(popen, flushInterval=200, prometheus={"stateFile": str(locked / "prometheus.json")})
    d.send(b"jobs:2|c")
    wait_until(lambda: scrape(d).get("jobs_total") == 2, what="/metrics")
    wait_until(lambda: "cannot write" in d.logs(), what="the failed save, said")
    wait_until(lambda: len(d.flushes()) >= 5, what="more flushes")
    assert d.logs().count("cannot write") <= 5  # rate-limited
    assert d.proc.poll() is None
    assert list(locked.iterdir()) == []


def test_two_daemons_cannot_share_a_state_file(start_daemon, tmp_path: Path) -> None:
    state = str(tmp_path / "prometheus.json")
    first = start_daemon(prometheus={"stateFile": state})
    with pytest.raises(pytest.fail.Exception, match="in use by another webops statsd"):
        start_daemon(prometheus={"stateFile": state})
    assert first.proc.poll() is None


# --- found by attacking the surface ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_a_state_file_that_is_no_file_is_said_and_the_daemon_starts(
    start_daemon, tmp_path: Path, kind: str
) -> None:
    """A FIFO at the path hung the start for ever (open waited for a writer), a symlink to
    /dev/zero grew the daemon to 2 GB in 1.5 s: now one line, and /metrics starts from zero."""
    state = tmp_path / "prometheus.json"
    if kind == "fifo":
        os.mkfifo(state)
    else:
        state.symlink_to("/dev/zero")
    d = start_daemon(flushInterval=200, prometheus={"stateFile": str(state)})
    d.send(b"jobs:2|c")
    wait_until(lambda: scrape(d).get("jobs_total") == 2, what="a flush from zero")
    assert "(not a regular file: " in d.logs() and "/metrics starts from zero" in d.logs()


def test_restored_entries_must_be_what_a_daemon_could_have_saved() -> None:
    """Buckets going down or past their count were restored as they were (histogram_quantile
    then reads nonsense); `"version": true` passed for version 1."""
    bounds = [5, 10]
    timers = {
        "down": {
            "sum": 1,
            "count": 1,
            "histogram": {"bounds": bounds, "cumulative": [9, 1], "sum": 1, "count": 1},
        },
        "past": {
            "sum": 1,
            "count": 1,
            "histogram": {"bounds": bounds, "cumulative": [1, 2], "sum": 1, "count": 1},
        },
        "good": {
            "sum": 1,
            "count": 2,
            "histogram": {"bounds": bounds, "cumulative": [1, 2], "sum": 1, "count": 2},
        },
    }
    kept, skipped = prometheus_state.parse(json.dumps({"version": 1, "counters": {}, "timers": timers}))
    assert list(kept["timers"]) == ["good"] and skipped == 2
    with pytest.raises(ValueError, match="not a version 1 state file"):
        prometheus_state.parse(json.dumps({"version": True, "counters": {}, "timers": {}}))


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    """On a full disk the partial `.tmp` stayed, holding the space the next write needed."""
    with tmpfs(tmp_path / "small", "64k") as disk:
        target = disk / "state.json"
        with pytest.raises(OSError):
            write_private(str(target), b"x" * 200_000)
        assert list(disk.iterdir()) == []
        write_private(str(target), b"{}")  # the space is there again for a write that fits
        assert target.read_bytes() == b"{}"
