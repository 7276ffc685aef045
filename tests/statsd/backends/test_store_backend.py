"""The store backend as an operator meets it: restarts, a 1 s flush, a store that falls behind or
cannot write, kill -9 while it waits; and the rollups each kind declares, whatever the name."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import tmpfs, wait_until
from tests.statsd.conftest import finest
from webops.statsd.aggregate import Interval
from webops.statsd.backends.naming import GraphiteNaming
from webops.statsd.kinds.timers import TimerSeries
from webops.statsd.settings import build
from webops.statsd.snapshot import SummarySettings, summarize


def history(data: Path, name: str) -> float:
    """The total of a series in its finest archive (0 before the store has it)."""
    try:
        return finest(data / "store.sqlite", name, "coalesce(sum(p.value), 0)")
    except sqlite3.Error:
        return 0.0


def store_stat(d, key: str) -> float:
    for line in d.console("stats").splitlines():
        if line.startswith(f"store.{key}: "):
            return float(line.split(": ")[1])
    raise AssertionError(f"no store.{key} in stats")


# --- rollups: declared by each kind, whatever the name ---------------------------------------


def rollups(**config: object) -> dict[str, str]:
    cfg = build({"percentThreshold": [90], "histogram": [{"metric": "", "bins": [10, "inf"]}], **config})
    settings = SummarySettings(10_000, cfg.kind_options())
    tables = {"counters": {"hits;env=prod": 4.0}, "timers": {"lat;env=prod": TimerSeries([5.0, 20.0], 2)}}
    tables |= {"gauges": {"q;env=prod": 1.0}, "sets": {"u;env=prod": {"a"}}}
    snap = summarize(Interval(1_795_467_600, tables), settings)
    return {p.path: p.rollup for p in GraphiteNaming(cfg).points(snap)}


def test_tagged_timers_bins_and_sums_of_squares_roll_up_as_their_kind_says() -> None:
    got = rollups()
    assert {k: v for k, v in got.items() if k.startswith("stats.timers.")} == {
        "stats.timers.lat.count;env=prod": "sum",
        "stats.timers.lat.count_90;env=prod": "sum",
        "stats.timers.lat.count_ps;env=prod": "average",
        "stats.timers.lat.histogram.bin_10;env=prod": "sum",
        "stats.timers.lat.histogram.bin_inf;env=prod": "sum",
        "stats.timers.lat.lower;env=prod": "min",
        "stats.timers.lat.mean;env=prod": "average",
        "stats.timers.lat.mean_90;env=prod": "average",
        "stats.timers.lat.median;env=prod": "average",
        "stats.timers.lat.std;env=prod": "average",
        "stats.timers.lat.sum;env=prod": "sum",
        "stats.timers.lat.sum_90;env=prod": "sum",
        "stats.timers.lat.sum_squares;env=prod": "sum",
        "stats.timers.lat.sum_squares_90;env=prod": "sum",
        "stats.timers.lat.upper;env=prod": "max",
        "stats.timers.lat.upper_90;env=prod": "max",
    }
    assert got["stats_counts.hits;env=prod"] == "sum" and got["stats.hits;env=prod"] == "average"
    assert got["stats.gauges.q;env=prod"] == "last"
    assert got["stats.sets.u.count;env=prod"] == "max"


def test_custom_prefixes_change_names_not_rollups() -> None:
    prefixes = {"prefixGauge": "levels", "prefixCounter": "c", "prefixTimer": "t", "globalPrefix": "app"}
    got = rollups(graphite={"legacyNamespace": False, **prefixes})
    assert got["app.levels.q;env=prod"] == "last"
    assert got["app.c.hits.count;env=prod"] == "sum"
    assert got["app.t.lat.upper;env=prod"] == "max" and got["app.t.lat.lower;env=prod"] == "min"
    assert got["app.c.hits.rate;env=prod"] == "average"


# --- a daemon's history ---------------------------------------------------------------------


def test_graceful_restarts_under_load_lose_no_count(start_daemon, tmp_path: Path) -> None:
    """Each stop's partial flush lands in the slot of the last full flush: it must add to it."""
    data = tmp_path / "data"
    sent = 0
    for round_ in range(3):
        d = start_daemon(backends=["store"], store={"dir": str(data)}, flushInterval=2000)
        d.send(*[b"restart.hits:1|c"] * 50)
        sent += 50
        wait_until(
            lambda s=sent: history(data, "stats_counts.restart.hits") >= s - 0,
            timeout=30,
            what=f"round {round_}'s full flush in history",
        )
        d.send(*[b"restart.hits:1|c"] * 30)  # then stopped at once: these go in the partial flush
        sent += 30
        wait_until(lambda d=d, s=sent: d.total("metrics_received") >= 80, what="the last packets read")
        assert d.stop() == 0
    assert history(data, "stats_counts.restart.hits") == sent


def test_a_one_second_flush_keeps_every_flush_by_default(start_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    d = start_daemon(backends=["./backends/file", "store"], store={"dir": str(data)}, flushInterval=1000)
    for i in range(1, 6):
        before = len(d.flushes())
        d.send(b"fast.hits:1|c")
        wait_until(
            lambda b=before, i=i: len(d.flushes()) > b and d.summed("counters", "fast.hits") >= i,
            what=f"flush {i}",
        )
    wait_until(lambda: history(data, "stats_counts.fast.hits") == 5, what="five flushes in history")
    with sqlite3.connect(data / "store.sqlite") as db:
        archives = db.execute("SELECT archives FROM series WHERE name = 'stats_counts.fast.hits'").fetchone()
    db.close()
    assert archives[0].startswith("[[1000, 3600]")  # 1s:1h, then 10s:6h,1m:7d,10m:1y
    assert "1s:1h,10s:6h,1m:7d,10m:1y" in d.logs()


@contextlib.contextmanager
def locked(data: Path) -> Iterator[None]:
    """Another process holds the store's file locked (a backup, sqlite3 in a shell)."""
    wait_until(lambda: (data / "store.sqlite").exists(), what="the store's file")
    blocker = sqlite3.connect(data / "store.sqlite", isolation_level=None, timeout=30)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_a_store_locked_for_many_flushes_merges_them_and_loses_none(start_daemon, tmp_path: Path) -> None:
    """More flushes than the old queue held (10) wait behind a lock: merged, all land."""
    data = tmp_path / "data"
    d = start_daemon(backends=["./backends/file", "store"], store={"dir": str(data)}, flushInterval=1000)
    with locked(data):
        for i in range(1, 14):
            before = len(d.flushes())
            d.send(b"locked.hits:1|c")
            wait_until(lambda b=before: len(d.flushes()) > b, what=f"flush {i} while the store is locked")
        assert store_stat(d, "flushes_merged") >= 10 and store_stat(d, "flushes_waiting") >= 11
        header = json.loads(d.http("/dashboard/status")[1])["backends"]["store"]  # the dashboard's header
        assert header["flushes_waiting"] >= 11 and header["lag_seconds"] >= 0
    wait_until(lambda: history(data, "stats_counts.locked.hits") == 13, timeout=60, what="every count")
    assert store_stat(d, "flushes_lost") == 0


def test_kill_9_while_the_store_waits_loses_at_most_the_flush_in_flight(start_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    d = start_daemon(backends=["./backends/file", "store"], store={"dir": str(data)}, flushInterval=1000)
    with locked(data):
        for i in range(1, 9):  # one count a flush; the first is the one being written, blocked
            before = len(d.flushes())
            d.send(b"killed.hits:1|c")
            wait_until(
                lambda b=before, i=i: d.summed("counters", "killed.hits") >= i and len(d.flushes()) > b,
                what=f"flush {i}",
            )
        wait_until(lambda: store_stat(d, "flushes_waiting") >= 7, what="the flushes waiting")
        d.signal(signal.SIGKILL)
        d.proc.wait(30)
    start_daemon(backends=["store"], store={"dir": str(data)}, flushInterval=1000)  # writes what was spooled
    wait_until(lambda: history(data, "stats_counts.killed.hits") >= 7, timeout=60, what="the spooled flushes")
    assert history(data, "stats_counts.killed.hits") in (7, 8)
    assert not list((data / "spool").glob("*.flush"))


def test_sigterm_while_the_store_is_locked_exits_in_time_and_keeps_the_flushes(
    start_daemon, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    d = start_daemon(backends=["store"], store={"dir": str(data)}, flushInterval=1000)
    with locked(data):
        d.send(*[b"term.hits:1|c"] * 20)
        wait_until(lambda: store_stat(d, "flushes_waiting") >= 1, what="a flush waiting")
        d.send(*[b"term.hits:1|c"] * 20)
        wait_until(lambda: d.total("metrics_received") >= 40, what="every packet read")
        d.signal(signal.SIGTERM)
        assert d.proc.wait(75) == 0  # well inside systemd's 90 s, however long the lock lasts
        assert "stay spooled for the next start" in d.logs()
    start_daemon(backends=["store"], store={"dir": str(data)}, flushInterval=1000)
    wait_until(lambda: history(data, "stats_counts.term.hits") >= 20, timeout=60, what="the spooled flushes")
    # the flush blocked in SQLite when SIGTERM came is the only one that may be missing
    assert history(data, "stats_counts.term.hits") in (20, 40)


# --- a store that cannot open or write ------------------------------------------------------


def test_a_damaged_file_is_set_aside_and_intake_goes_on(start_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "store.sqlite").write_bytes(b"this is not a database" * 100)
    d = start_daemon(backends=["./backends/file", "store"], store={"dir": str(data)}, flushInterval=1000)
    assert d.http("/health")[0] == 200
    d.send(b"after.damage:1|c")
    wait_until(lambda: history(data, "stats_counts.after.damage") == 1, what="history in a new file")
    aside = [p.name for p in data.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and (data / aside[0]).read_bytes().startswith(b"this is not a database")
    assert sum("is damaged" in line for line in d.logs().splitlines()) == 1


def test_a_store_file_removed_while_running_is_made_anew(start_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    d = start_daemon(backends=["store"], store={"dir": str(data)}, flushInterval=1000)
    d.send(b"gone.hits:1|c")
    wait_until(lambda: history(data, "stats_counts.gone.hits") == 1, what="history before")
    for f in data.glob("store.sqlite*"):
        f.unlink()
    d.send(b"gone.hits:2|c")
    wait_until(lambda: history(data, "stats_counts.gone.hits") == 2, what="history in a new file")
    assert "was removed or replaced while in use" in d.logs()
    status, body = d.http("/render?target=stats_counts.gone.hits&from=-1min&format=json")
    assert status == 200 and 2 in [p[0] for s in json.loads(body) for p in s["datapoints"]]


def test_a_second_daemon_on_one_directory_keeps_intake_and_says_why(start_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_daemon(backends=["store"], store={"dir": str(data)}, flushInterval=1000)
    second = start_daemon(backends=["./backends/file", "store"], store={"dir": str(data)}, flushInterval=1000)
    second.send(b"second.hits:1|c")
    wait_until(lambda: second.summed("counters", "second.hits") == 1, what="the second daemon's intake")
    assert f"in use by another webops statsd (pid {first.proc.pid})" in second.logs()
    status, body = second.http("/render?target=stats_counts.second.hits&format=json")
    assert status == 503 and "history is off" in body
    assert store_stat(second, "history") == 0
    first.stop()  # the directory is free: the second takes it over, with what it kept meanwhile
    wait_until(lambda: history(data, "stats_counts.second.hits") == 1, timeout=30, what="its history")


def test_a_full_disk_is_said_once_and_history_resumes_with_nothing_lost(start_daemon, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "2m") as disk:
        data = disk / "data"
        d = start_daemon(backends=["./backends/file", "store"], store={"dir": str(data)}, flushInterval=1000)
        d.send(b"disk.hits:1|c")
        wait_until(lambda: history(data, "stats_counts.disk.hits") == 1, what="history before")
        filler = disk / "filler"
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        d.send(*[f"disk.new{i}:1|c".encode() for i in range(300)], b"disk.hits:5|c")  # new series need pages
        wait_until(lambda: store_stat(d, "write_errors") >= 3, timeout=30, what="failed writes, counted")
        assert store_stat(d, "history") == 0
        said = [line for line in d.logs().splitlines() if "cannot write" in line]
        assert len(said) == 1 and "full" in said[0] and "no transaction is active" not in d.logs()
        filler.unlink()  # space is back: no restart needed
        wait_until(lambda: history(data, "stats_counts.disk.hits") == 6, timeout=30, what="history again")
        wait_until(lambda: store_stat(d, "history") == 1, what="history said to be on")
        assert store_stat(d, "flushes_lost") == 0
        assert "history written again" in d.logs()
        d.stop()


def test_a_read_only_directory_keeps_intake_and_history_resumes_when_writable(
    start_daemon, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "ro", "4m") as disk:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        data = disk / "data"
        d = start_daemon(backends=["./backends/file", "store"], store={"dir": str(data)}, flushInterval=1000)
        assert d.http("/health")[0] == 200
        d.send(b"ro.hits:2|c")
        wait_until(lambda: d.summed("counters", "ro.hits") == 2, what="intake and the file backend")
        said = [line for line in d.logs().splitlines() if "history is off" in line]
        assert len(said) == 1 and "Read-only file system" in said[0] and str(data) in said[0]
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        wait_until(lambda: history(data, "stats_counts.ro.hits") == 2, timeout=30, what="history")
        d.stop()


def test_store_errors_and_losses_are_in_metrics(start_daemon, tmp_path: Path) -> None:
    d = start_daemon(backends=["store"], store={"dir": str(tmp_path / "data")})
    status, body = d.http("/metrics")
    assert status == 200
    for key in (
        "flushes_lost",
        "write_errors",
        "flushes_waiting",
        "flushes_merged",
        "lag_seconds",
        "history",
    ):
        assert f'statsd_backend{{backend="store",stat="{key}"}} ' in body
