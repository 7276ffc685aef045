"""The embedded history: retentions, rollups by the kinds' declarations, flushes merged into their
slot, the ring's bound, a restart in the middle of a bucket, an older file brought up to date,
wildcards, and a real daemon killed with SIGKILL mid-run."""

from __future__ import annotations

import fnmatch
import json
import re
import signal
import sqlite3
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.conftest import wait_until
from tests.statsd.conftest import finest
from webops.statsd.store.db import Busy, Store
from webops.statsd.store.glob import GlobError, find, matching
from webops.statsd.store.retention import (
    Archive,
    Point,
    RetentionError,
    default_archives,
    describe,
    parse,
    schemas,
)

T0 = 1_795_467_600_000  # a round hour (ms): every archive's bucket starts here
S = 1000


def test_retentions_parse_as_whisper_and_bad_ones_say_why() -> None:
    assert parse("10s:6h,1m:7d,10m:1y") == [
        Archive(10 * S, 2160),
        Archive(60 * S, 10080),
        Archive(600 * S, 52560),
    ]
    assert parse("1s:60,60:1d") == [Archive(S, 60), Archive(60 * S, 1440)]  # bare numbers: seconds, points
    assert parse("100ms:1h,1s:1d") == [Archive(100, 36000), Archive(S, 86400)]
    for bad, why in [
        ("10s", "STEP:DURATION"),
        ("10q:1h", "unit"),
        ("1m:1h,90s:1d", "multiple"),
        ("10s:1d,1m:1h", "further back"),
        ("10s:5s", "at least one step"),
        ("1s:5s,10s:1h", "hold at least one 10s step"),  # whisper: nothing to roll up from
    ]:
        with pytest.raises(RetentionError, match=why):
            parse(bad)


@pytest.mark.parametrize(
    ("flush_ms", "retentions"),
    [
        (10_000, "10s:6h,1m:7d,10m:1y"),
        (1_000, "1s:1h,10s:6h,1m:7d,10m:1y"),
        (100, "100ms:1h,10s:6h,1m:7d,10m:1y"),
        (250, "250ms:1h,10s:6h,1m:7d,10m:1y"),
        (15_000, "15s:6h,1m:7d,10m:1y"),
        (60_000, "1m:7d,10m:1y"),
        (300, "300ms:1h,10200ms:21593400ms,61200ms:604778400ms,612s:31535748s"),
    ],
)
def test_default_retentions_start_at_the_flush_interval(flush_ms: int, retentions: str) -> None:
    archives = default_archives(flush_ms)
    assert archives[0].step == flush_ms and describe(archives) == retentions
    assert schemas([], flush_ms)[-1].archives == tuple(archives)


def store(tmp_path: Path, retentions: str = "10s:1h,1m:1d") -> Store:
    return Store(tmp_path / "store.sqlite", schemas([(".", retentions)]))


def flush(s: Store, t: int, points: list[tuple[str, float, str]], weight: int = 10 * S) -> None:
    s.write(t, weight, [Point(*p) for p in points])


def test_points_and_rollups_come_back(tmp_path: Path) -> None:
    s = store(tmp_path)
    kinds = {"count": ("stats.counters.a.count", "sum"), "upper": ("stats.timers.t.upper", "max")}
    kinds |= {"gauge": ("stats.gauges.g", "last"), "rate": ("stats.counters.a.rate", "average")}
    for i in range(6):  # one minute of 10 s flushes: 1..6
        flush(s, T0 + 10 * S * i, [(n, float(i + 1), r) for n, r in kinds.values()])
    now = T0 + 60 * S
    fine = s.fetch(kinds["count"][0], T0 - 10 * S, now, now)  # as whisper: stamps in (from, until]
    assert fine is not None and (fine.start, fine.step) == (T0, 10 * S)
    assert fine.values == [1, 2, 3, 4, 5, 6, None]
    coarse = {k: s.fetch(n, T0 - 7200 * S, now, now) for k, (n, _) in kinds.items()}  # past the 1 h archive
    assert {k: (f.step, [v for v in f.values if v is not None]) for k, f in coarse.items() if f} == {
        "count": (60 * S, [21.0]),
        "upper": (60 * S, [6.0]),
        "gauge": (60 * S, [6.0]),
        "rate": (60 * S, [3.5]),
    }
    assert s.fetch("no.such.series", T0, now, now) is None


def test_a_second_flush_into_a_slot_merges_by_the_rollup(tmp_path: Path) -> None:
    """A shutdown's partial flush (3 s) lands in the slot of the last full one (10 s): counts add
    up, a rate is averaged over the 13 s, bounds keep the extreme, a gauge its last value."""
    s = store(tmp_path)
    names = {"sum": "c.count", "average": "c.rate", "max": "t.upper", "min": "t.lower", "last": "g"}
    flush(s, T0, [(n, 10.0, r) for r, n in names.items()])
    flush(s, T0 + 3 * S, [(n, 36.0, r) for r, n in names.items()], weight=3 * S)
    now = T0 + 4 * S
    got = {r: s.fetch(n, T0 - 10 * S, now, now) for r, n in names.items()}
    assert {r: f.values[0] for r, f in got.items() if f} == {
        "sum": 46.0,
        "average": (10 * 10 + 36 * 3) / 13,
        "max": 36.0,
        "min": 10.0,
        "last": 36.0,
    }


def test_a_late_flush_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    s = store(tmp_path, "10s:1m")  # 6 slots: T0 and T0 + 60 s share one
    flush(s, T0 + 60 * S, [("a", 2.0, "sum")])
    flush(s, T0, [("a", 1.0, "sum")])  # replayed from a spool, say
    got = s.fetch("a", T0 + 50 * S, T0 + 60 * S, T0 + 60 * S)
    assert got is not None and got.values == [2.0]


def test_the_ring_bounds_the_disk_and_old_slots_are_not_answered(tmp_path: Path) -> None:
    s = store(tmp_path, "10s:1m")  # 6 slots
    for i in range(50):
        flush(s, T0 + 10 * S * i, [("a.b", float(i), "average")])
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        assert db.execute("SELECT count(*) FROM points").fetchone()[0] == 6
    db.close()
    now = T0 + 500 * S  # as whisper: the archive answers for (now - 1 min, now]
    got = s.fetch("a.b", now - 60 * S, now, now)
    assert got is not None and (got.start, got.values) == (T0 + 450 * S, [45.0, 46.0, 47.0, 48.0, 49.0, None])
    old = s.fetch("a.b", T0, T0 + 60 * S, now)  # further back than the retention: nothing
    assert old is not None and all(v is None for v in old.values)


def test_sub_second_flushes_keep_their_own_slots(tmp_path: Path) -> None:
    s = store(tmp_path, "100ms:1m,1s:1h")
    for i in range(20):  # two seconds of 100 ms flushes
        flush(s, T0 + 100 * i, [("c.count", 1.0, "sum")], weight=100)
    now = T0 + 2 * S
    fine = s.fetch("c.count", T0 - 100, now, now)
    assert fine is not None and fine.step == 100 and fine.values[:20] == [1.0] * 20
    coarse = s.fetch("c.count", T0 - 600 * S, now, now)
    assert coarse is not None and coarse.step == S and [v for v in coarse.values if v] == [10.0, 10.0]


def test_series_not_written_for_a_whole_retention_are_dropped(tmp_path: Path) -> None:
    s = store(tmp_path, "1s:10s,10s:1m")  # everything a series holds is at most a minute old
    flush(s, T0, [("once.only", 1.0, "sum"), ("steady", 1.0, "sum")])
    for t in range(3):  # two hours on: the next looks for expired series
        flush(s, T0 + 7200 * S + t * S, [("steady", 2.0, "sum")])
    assert set(s.ids) == {"steady"} and s.expired == 1
    assert s.names() == ["steady"] and s.fetch("once.only", T0, T0 + 10 * S, T0 + 10 * S) is None
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        assert db.execute("SELECT count(DISTINCT series) FROM points").fetchone()[0] == 1
    db.close()


def test_a_restart_in_the_middle_of_a_bucket_keeps_its_rollup(tmp_path: Path) -> None:
    s = store(tmp_path)
    for i in range(3):
        flush(s, T0 + 10 * S * i, [("stats.counters.a.count", 1.0, "sum")])
    s.close()
    s = store(tmp_path)  # a new process: the minute's slot goes on from what it holds
    for i in range(3, 6):
        flush(s, T0 + 10 * S * i, [("stats.counters.a.count", 1.0, "sum")])
    got = s.fetch("stats.counters.a.count", T0 - 7200 * S, T0 + 60 * S, T0 + 60 * S)
    assert got is not None and [v for v in got.values if v is not None] == [6.0]


def test_a_file_written_by_the_previous_version_is_brought_up_to_date(tmp_path: Path) -> None:
    """Seconds, no weights, rollups by name: the history it holds reads back the same."""
    path = tmp_path / "store.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, archives TEXT NOT NULL, "
        "rollup TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE points (series INTEGER NOT NULL, archive INTEGER NOT NULL, slot INTEGER NOT NULL, "
        "ts INTEGER NOT NULL, value REAL NOT NULL, PRIMARY KEY (series, archive, slot)) WITHOUT ROWID"
    )
    db.execute("INSERT INTO series VALUES (1, 'old.count', ?, 'sum')", (json.dumps([[10, 360], [60, 1440]]),))
    t = T0 // S
    db.executemany(
        "INSERT INTO points VALUES (1, ?, ?, ?, ?)", [(0, t // 10 % 360, t, 4.0), (1, t // 60 % 1440, t, 4.0)]
    )
    db.commit()
    db.close()
    s = store(tmp_path)
    flush(s, T0 + 3 * S, [("old.count", 1.0, "sum")], weight=3 * S)  # merges into the old slot
    got = s.fetch("old.count", T0 - 10 * S, T0 + 5 * S, T0 + 5 * S)
    assert got is not None and (got.start, got.step, got.values) == (T0, 10 * S, [5.0])


def test_a_second_daemon_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    with pytest.raises(Busy, match="in use by another webops statsd"):
        store(tmp_path)
    s.close()
    store(tmp_path).close()  # free again once the first has gone


def test_graphite_wildcards() -> None:
    names = ["stats.a.x", "stats.a.y", "stats.b.x", "stats.b1.z.deep", "stats_counts.a"]
    assert matching(names, "stats.*.x") == ["stats.a.x", "stats.b.x"]
    assert matching(names, "stats.{a,b}.?") == ["stats.a.x", "stats.a.y", "stats.b.x"]
    assert matching(names, "stats.b[0-9].z.*") == ["stats.b1.z.deep"]
    assert matching(names, "stats.*") == []  # a * never crosses a dot
    assert list(find(names, "stats.*")) == [("stats.a", False), ("stats.b", False), ("stats.b1", False)]
    assert list(find(names, "stats.a.*")) == [("stats.a.x", True), ("stats.a.y", True)]


def _graphite_web_expand(node: str) -> list[str]:
    """graphite-web 1.1's expand_braces (finders/__init__.py), recursively as it is written there."""
    m = re.search(r"(\{([^\{\}]*)\})", node)
    if m is None:
        return [node]
    start, end = m.span(1)
    return list({e for alt in m[2].split(",") for e in _graphite_web_expand(node[:start] + alt + node[end:])})


def _graphite_web_matches(pattern: str, name: str) -> bool:
    """graphite-web's StandardFinder: the pattern split on its dots, each node's braces expanded,
    each node of the name matched by fnmatch against them."""
    nodes, parts = pattern.split("."), name.split(".")
    return len(nodes) == len(parts) and all(
        any(fnmatch.fnmatchcase(part, alt) for alt in _graphite_web_expand(node))
        for node, part in zip(nodes, parts, strict=True)
    )


WILDCARD_PIECES = ["a", "b", "1", ".", "*", "?", "[ab]", "[!a]", "[^a]", "[!0-4]", "[a-]", "[]", "[!]"]
WILDCARD_PIECES += ["[", "]", "^", "!", "-", "{a,b*}", "{ab,a}", "*a", "{,b}", "{a,{b,{c,1}}}", "{", "}", ","]


@given(st.lists(st.sampled_from(WILDCARD_PIECES), max_size=7), st.text("ab1^!-[].", max_size=9))
def test_wildcards_mean_what_graphite_web_says(pieces: list[str], name: str) -> None:
    pattern = "".join(pieces)
    assume(pattern.count("{") <= 9)  # at most 128 paths: within webops's bound (graphite-web has none)
    assert bool(matching([name], pattern)) == _graphite_web_matches(pattern, name), pattern


def test_the_wildcards_graphite_web_reads_its_own_way() -> None:
    """fnmatch's classes, not a regex's: [!x] negates and [^x] is a set; braces nest; a [ with
    no ] is a character; a class never crosses a dot."""
    names = [f"a{i}.b" for i in range(10)] + ["a^.b", "a[].b", "a.c", "x.y"]
    assert matching(names, "a[!1].b") == [f"a{i}.b" for i in range(10) if i != 1] + ["a^.b"]
    assert matching(names, "a[^1].b") == ["a1.b", "a^.b"]
    assert matching(names, "a{1,{2,3}}.b") == ["a1.b", "a2.b", "a3.b"]
    assert matching(names, "a[].b") == ["a[].b"] and matching(names, "a[.b") == []
    assert matching(names, "a[!b]c") == [] and matching(names, "a[!x]*") == []
    assert matching(names, "{a.c,x.y}") == []  # braces within a node: `{a` and `c,x`, then `y}`


def test_a_wildcard_built_to_backtrack_matches_in_linear_time() -> None:
    """`*a*a*...*b` against a long name of `a`s: a naive translation to a regex backtracks for
    longer than the universe has existed (holding the GIL, so no deadline can stop it)."""
    names = ["a" * 300, "stats." + "a" * 250 + ".b", "a" * 299 + "b"]
    assert matching(names, "*a" * 14 + "*b") == ["a" * 299 + "b"]
    assert matching(names, "stats." + "*a" * 14 + "*.b") == ["stats." + "a" * 250 + ".b"]


def test_braces_that_stand_for_too_many_paths_are_refused() -> None:
    with pytest.raises(GlobError, match="more than 1000 paths"):
        matching(["a"], "{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}{a,b,c,d}")


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
