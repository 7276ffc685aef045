"""The embedded history: retentions, rollups per kind, the ring's bound, a restart in the middle
of a bucket, wildcards, and a real daemon killed with SIGKILL mid-run."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import wait_until
from webops.statsd.store.db import GlobError, Store, find, glob_regex, matching
from webops.statsd.store.retention import Archive, RetentionError, parse, rollup_of, schemas

T0 = 1_795_467_600  # a round hour: every archive's bucket starts here


def test_retentions_parse_as_whisper_and_bad_ones_say_why() -> None:
    assert parse("10s:6h,1m:7d,10m:1y") == [Archive(10, 2160), Archive(60, 10080), Archive(600, 52560)]
    assert parse("1s:60,60:1d") == [Archive(1, 60), Archive(60, 1440)]  # bare numbers: seconds, points
    for bad, why in [
        ("10s", "STEP:DURATION"),
        ("10q:1h", "unit"),
        ("1m:1h,90s:1d", "multiple"),
        ("10s:1d,1m:1h", "further back"),
        ("10s:5s", "at least one step"),
    ]:
        with pytest.raises(RetentionError, match=why):
            parse(bad)


@pytest.mark.parametrize(
    ("name", "rollup"),
    [
        ("stats.counters.api.hits.count", "sum"),
        ("stats_counts.api.hits", "sum"),
        ("stats.counters.api.hits.rate", "average"),
        ("stats.api.hits", "average"),
        ("stats.timers.api.latency.upper_90", "max"),
        ("stats.timers.api.latency.lower", "min"),
        ("stats.timers.api.latency.mean_90", "average"),
        ("stats.timers.api.latency.sum", "sum"),
        ("stats.gauges.queue.depth", "last"),
        ("stats.sets.users.count", "max"),
    ],
)
def test_each_kind_rolls_up_with_its_own_function(name: str, rollup: str) -> None:
    assert rollup_of(name) == rollup


def store(tmp_path: Path, retentions: str = "10s:1h,1m:1d") -> Store:
    return Store(tmp_path / "store.sqlite", schemas([(".", retentions)]))


def test_points_and_rollups_come_back(tmp_path: Path) -> None:
    s = store(tmp_path)
    names = {"count": "stats.counters.a.count", "upper": "stats.timers.t.upper", "gauge": "stats.gauges.g"}
    for i in range(6):  # one minute of 10 s flushes: 1..6
        s.write(T0 + 10 * i, [(n, float(i + 1)) for n in names.values()])
    now = T0 + 60
    fine = s.fetch(names["count"], T0 - 10, now, now)  # as whisper: stamps in (from, until]
    assert (
        fine is not None and (fine.start, fine.step) == (T0, 10) and fine.values == [1, 2, 3, 4, 5, 6, None]
    )
    coarse = {k: s.fetch(n, T0 - 7200, now, now) for k, n in names.items()}  # past the 1 h archive
    assert {k: (f.step, [v for v in f.values if v is not None]) for k, f in coarse.items() if f} == {
        "count": (60, [21.0]),
        "upper": (60, [6.0]),
        "gauge": (60, [6.0]),
    }
    assert s.fetch("no.such.series", T0, now, now) is None


def test_the_ring_bounds_the_disk_and_old_slots_are_not_answered(tmp_path: Path) -> None:
    s = store(tmp_path, "10s:1m")  # 6 slots
    for i in range(50):
        s.write(T0 + 10 * i, [("a.b", float(i))])
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        assert db.execute("SELECT count(*) FROM points").fetchone()[0] == 6
    db.close()
    now = T0 + 500  # as whisper: the archive answers for (now - 1 min, now]
    got = s.fetch("a.b", now - 60, now, now)
    assert got is not None and (got.start, got.values) == (T0 + 450, [45.0, 46.0, 47.0, 48.0, 49.0, None])
    old = s.fetch("a.b", T0, T0 + 60, now)  # further back than the retention: nothing
    assert old is not None and all(v is None for v in old.values)


def test_series_not_written_for_a_whole_retention_are_dropped(tmp_path: Path) -> None:
    s = store(tmp_path, "1s:10s,10s:1m")  # everything a series holds is at most a minute old
    s.write(T0, [("once.only", 1.0), ("steady", 1.0)])
    for t in range(T0 + 3600, T0 + 3603):  # an hour on: the next look for expired series
        s.write(t, [("steady", 2.0)])
    assert set(s.series) == {"steady"} and s.expired == 1
    assert s.names() == ["steady"] and s.fetch("once.only", T0, T0 + 10, T0 + 10) is None
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        assert db.execute("SELECT count(DISTINCT series) FROM points").fetchone()[0] == 1
    db.close()


def test_a_restart_in_the_middle_of_a_bucket_keeps_its_rollup(tmp_path: Path) -> None:
    s = store(tmp_path)
    for i in range(3):
        s.write(T0 + 10 * i, [("stats.counters.a.count", 1.0)])
    s.close()
    s = store(tmp_path)  # a new process: the minute's bucket is rebuilt from the 10 s points
    for i in range(3, 6):
        s.write(T0 + 10 * i, [("stats.counters.a.count", 1.0)])
    got = s.fetch("stats.counters.a.count", T0 - 7200, T0 + 60, T0 + 60)
    assert got is not None and [v for v in got.values if v is not None] == [6.0]


def test_graphite_wildcards() -> None:
    names = ["stats.a.x", "stats.a.y", "stats.b.x", "stats.b1.z.deep", "stats_counts.a"]
    assert matching(names, "stats.*.x") == ["stats.a.x", "stats.b.x"]
    assert matching(names, "stats.{a,b}.?") == ["stats.a.x", "stats.a.y", "stats.b.x"]
    assert matching(names, "stats.b[0-9].z.*") == ["stats.b1.z.deep"]
    assert matching(names, "stats.*") == []  # a * never crosses a dot
    assert list(find(names, "stats.*")) == [("stats.a", False), ("stats.b", False), ("stats.b1", False)]
    assert list(find(names, "stats.a.*")) == [("stats.a.x", True), ("stats.a.y", True)]


def _glob_reference(pattern: str, name: str) -> bool:
    """The plain meaning of a Graphite wildcard, by recursion over both strings (short ones)."""
    if not pattern:
        return not name
    c = pattern[0]
    if c == "{" and (close := pattern.find("}")) > 0:
        rest = pattern[close + 1 :]
        return any(_glob_reference(alt + rest, name) for alt in pattern[1:close].split(","))
    if c == "*":
        return any(
            _glob_reference(pattern[1:], name[i:]) for i in range(len(name) + 1) if "." not in name[:i]
        )
    if not name:
        return False
    if c == "[" and (close := pattern.find("]")) > 0:
        return (
            name[0] != "." and name[0] in pattern[1:close] and _glob_reference(pattern[close + 1 :], name[1:])
        )
    if c == "?":
        return name[0] != "." and _glob_reference(pattern[1:], name[1:])
    return c == name[0] and _glob_reference(pattern[1:], name[1:])


@given(
    st.lists(
        st.sampled_from(["a", "b", ".", "*", "?", "[ab]", "{a,b*}", "{ab,a}", "*a", "{,b}"]), max_size=6
    ),
    st.text("ab.", max_size=9),
)
def test_wildcards_mean_what_graphite_says(pieces: list[str], name: str) -> None:
    pattern = "".join(pieces)
    assert bool(glob_regex(pattern).match(name)) == _glob_reference(pattern, name), pattern


def test_a_wildcard_built_to_backtrack_matches_in_linear_time() -> None:
    """`*a*a*...*b` against a long name of `a`s: a naive translation to a regex backtracks for
    longer than the universe has existed (holding the GIL, so no deadline can stop it)."""
    names = ["a" * 300, "stats." + "a" * 250 + ".b", "a" * 299 + "b"]
    assert matching(names, "*a" * 14 + "*b") == ["a" * 299 + "b"]
    assert matching(names, "stats." + "*a" * 14 + "*.b") == ["stats." + "a" * 250 + ".b"]


def test_braces_that_stand_for_too_many_paths_are_refused() -> None:
    with pytest.raises(GlobError, match="more than 1000 paths"):
        matching(["a"], "{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}")


def finest(path: Path, name: str, aggregate: str) -> float:
    """`aggregate` over a series' points in its finest archive, read as another process would."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute(
            f"SELECT {aggregate} FROM points p JOIN series s ON s.id = p.series "
            "WHERE s.name = ? AND p.archive = 0",
            (name,),
        ).fetchone()
    db.close()
    return float(row[0])


def test_sigkill_at_any_moment_loses_at_most_the_last_flush(start_daemon, tmp_path: Path) -> None:
    data = tmp_path / "data"
    d = start_daemon(backends=["store"], store={"dir": str(data)}, flushInterval=200)
    path = data / "store.sqlite"

    def flushes() -> int:
        try:
            return int(finest(path, "stats.gauges.kill.me", "count(*)"))
        except sqlite3.Error:
            return 0

    for i in range(1, 6):  # a value a flush, five flushes, then SIGKILL whatever is being written
        seen = flushes()
        d.send(f"kill.me:{i}|g".encode())
        wait_until(lambda s=seen: flushes() > s, timeout=30, what="a flush in the store")
    seen = flushes()
    d.signal(signal.SIGKILL)
    d.proc.wait(30)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    kept = finest(path, "stats.gauges.kill.me", "count(*)")
    assert kept >= seen  # everything committed before the kill is there


def test_a_locked_store_slows_nothing_and_loses_nothing(start_daemon, tmp_path: Path) -> None:
    """Another process holds the file locked: intake and the other backends go on, the store's
    flushes wait in its queue and all land when the lock goes."""
    data = tmp_path / "data"
    d = start_daemon(
        backends=["./backends/file", "store"],
        store={"dir": str(data), "retentions": [[".", "1s:1h"]]},  # one slot a flush
        flushInterval=1000,
    )
    wait_until(lambda: (data / "store.sqlite").exists(), what="the store's file")
    blocker = sqlite3.connect(data / "store.sqlite", isolation_level=None, timeout=30)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(1, 8):  # longer than sqlite's default 5 s wait: the store must not give up
            before = len(d.flushes())
            d.send(b"locked.hits:1|c")
            wait_until(lambda b=before: len(d.flushes()) > b, what=f"flush {i} while the store is locked")
        assert d.summed("counters", "locked.hits") == 7  # intake and the file backend went on
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    def stored() -> float:
        return finest(data / "store.sqlite", "stats_counts.locked.hits", "coalesce(sum(p.value), 0)")

    wait_until(lambda: stored() == 7.0, timeout=60, what="the queued flushes in the store")
