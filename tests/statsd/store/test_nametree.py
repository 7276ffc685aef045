"""The name tree (store/nametree.py) answers every wildcard as the reference matcher (store/glob.py)
does over the whole name list, in the same order: for the series a file holds after creations,
after expiries, and for a file written before there was a tree."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from webops.statsd.store import glob
from webops.statsd.store.db import Store
from webops.statsd.store.retention import Point, schemas

S = 1000
T0 = 1_795_467_600 * S

NODES = st.sampled_from(["a", "b", "ab", "ba", "", "a;t=1", "b-c", "A", "a^", "!", "["])
NAMES = st.lists(st.lists(NODES, min_size=1, max_size=4).map(".".join), min_size=1, max_size=25, unique=True)
PIECES = [
    "a",
    "b",
    ".",
    "*",
    "?",
    "[ab]",
    "[a-b]",
    "[^a]",
    "[--/]",
    "[]",
    "[^]",
    "[!a]",
    "[!]",
    "[!.]",
    "{a,{b,c*}}",
    "{a,b*}",
    "{a.b,b}",
    "{,b}",
    "*a",
    "[",
    "]",
]
PATTERNS = st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("".join)


def stored(directory: Path, names: list[str]) -> Store:
    store = Store(directory / "store.sqlite", schemas([("", "1s:10s,10s:1m")]))  # every name, "" too
    store.write(T0, 10 * S, [Point(name, 1.0, "sum") for name in names])
    return store


def same_answers(store: Store, names: list[str], patterns: list[str]) -> None:
    for pattern in patterns:
        try:
            expected = (glob.matching(names, pattern), list(glob.find(names, pattern)))
        except glob.GlobError as e:
            expected_error = type(e)
        else:
            assert (store.match(pattern), store.find(pattern)) == expected, pattern
            continue
        try:
            store.match(pattern)
        except expected_error:
            pass
        else:
            raise AssertionError(f"{pattern}: no {expected_error.__name__}")


@settings(max_examples=150, deadline=None)
@given(NAMES, st.lists(PATTERNS, min_size=1, max_size=8))
def test_the_tree_answers_as_the_reference_matcher(names: list[str], patterns: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = stored(Path(tmp), names)
        try:
            same_answers(store, names, patterns)
        finally:
            store.close()


@settings(max_examples=60, deadline=None)
@given(NAMES, st.data())
def test_expired_series_leave_no_branch_behind(names: list[str], data: st.DataObject) -> None:
    """Series not written for a whole retention are dropped with the nodes only they held up: a
    find answers for the names left, never a branch with nothing under it."""
    kept = data.draw(st.lists(st.sampled_from(names), unique=True))
    with tempfile.TemporaryDirectory() as tmp:
        store = stored(Path(tmp), names)
        try:
            for t in range(2):  # two hours on, the next write looks for expired series
                store.write(T0 + 7200 * S + t * S, 10 * S, [Point(name, 1.0, "sum") for name in kept])
            assert sorted(store.names()) == sorted(kept)
            same_answers(store, store.names(), ["*", "*.*", "*.*.*", "*.*.*.*", "a*.*", "{a,b}.*.*"])
        finally:
            store.close()


@settings(max_examples=80, deadline=None)
@given(st.lists(NAMES, min_size=2, max_size=4), st.data())
def test_names_created_over_several_flushes(batches: list[list[str]], data: st.DataObject) -> None:
    """Names added under nodes an earlier flush made (looked up, not made again: the file's
    UNIQUE (parent, name) refuses a copy), a branch that becomes a series' end and an end that
    becomes a branch, and names sent again after their nodes were pruned."""
    with tempfile.TemporaryDirectory() as tmp:
        store = stored(Path(tmp), [])
        try:
            t = T0
            for batch in batches:
                if data.draw(st.booleans(), label="expire the names before"):
                    t += 7200 * S  # past the retention: the next write drops what it does not name
                    store.next_purge = 0
                t += 10 * S
                store.write(t, 10 * S, [Point(name, 1.0, "sum") for name in batch])
                names = store.names()
                same_answers(store, names, ["*", "*.*", "*.*.*", "*.*.*.*", "a*.*", "{a,b}.*.*", "a.*"])
        finally:
            store.close()


def test_a_file_without_a_tree_gets_one_at_open(tmp_path: Path) -> None:
    """A file written by the webops before the tree (user_version 2) is found by its names."""
    names = ["stats.a.x", "stats.a.y", "stats.b", "stats.b.z", "other"]
    stored(tmp_path, names).close()
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        db.execute("DROP TABLE nodes")
        db.execute("PRAGMA user_version = 2")
    db.close()
    store = stored(tmp_path, [])
    try:
        same_answers(store, names, ["*", "stats.*", "stats.b", "stats.*.*", "{stats,other}"])
        assert store.find("stats.*") == [("stats.a", False), ("stats.b", False), ("stats.b", True)]
    finally:
        store.close()
