"""The pure parts: views, filters, sorting, the slow set, the filter prompt's language."""

from __future__ import annotations

import pytest

from webops.pgtop.data import Backend, Filters, Server, Snapshot, parse_filter, select, slow


def backend(
    pid: int,
    state: str = "active",
    seconds: float = 1.0,
    blocked_by=(),
    user="app",
    db="shop",
    query="SELECT 1",
    kind="client backend",
) -> Backend:
    return Backend(
        pid,
        db,
        user,
        "10.0.0.1",
        5000,
        "web",
        kind,
        state,
        None,
        None,
        seconds,
        seconds,
        None,
        query,
        list(blocked_by),
    )


SNAP = Snapshot(
    Server(),
    [
        backend(1, seconds=30, query="UPDATE orders SET x = 1"),
        backend(2, blocked_by=[1], seconds=5, user="report", db="dw"),
        backend(3, state="idle", seconds=100),
        backend(4, state="idle in transaction", seconds=50),
        backend(5, state=None, seconds=None, user=None, db=None, query="", kind="checkpointer"),
    ],
)


def pids(rows) -> list[int]:
    return [b.pid for b in rows]


def test_views() -> None:
    f = Filters()
    assert pids(select(SNAP, "all", f, "pid")) == [1, 2, 4, 5]  # idle hidden, idle in transaction shown
    assert pids(select(SNAP, "running", f, "pid")) == [1, 2]
    assert pids(select(SNAP, "waiting", f, "pid")) == [2]
    assert pids(select(SNAP, "blocking", f, "pid")) == [1]
    assert pids(select(SNAP, "all", Filters(show_idle=True), "pid")) == [1, 2, 3, 4, 5]


def test_sorts() -> None:
    f = Filters(show_idle=True)
    assert pids(select(SNAP, "all", f, "duration")) == [3, 4, 1, 2, 5]
    assert pids(select(SNAP, "all", f, "user"))[:2] == [5, 1]
    assert pids(select(SNAP, "all", f, "database"))[0] == 5


def test_filters_and_their_prompt_language() -> None:
    f = parse_filter("db=dw user=report", Filters())
    assert pids(select(SNAP, "all", f, "pid")) == [2]
    assert pids(select(SNAP, "all", parse_filter("min=10", Filters()), "pid")) == [1, 4]
    assert pids(select(SNAP, "all", parse_filter("re=orders", Filters()), "pid")) == [1]
    assert pids(select(SNAP, "all", parse_filter("state=active", Filters()), "pid")) == [1, 2]
    assert parse_filter("", Filters(show_idle=True)).show_idle
    for bad in ("db", "color=red", "min=soon", "re=("):
        with pytest.raises(ValueError):
            parse_filter(bad, Filters())


def test_slow_is_active_client_queries_past_the_threshold() -> None:
    assert pids(slow(SNAP.backends, 5)) == [1, 2]
    assert pids(slow(SNAP.backends, 10)) == [1]


def test_rates_and_cache_ratio() -> None:
    assert Server(blks_hit=99, blks_read=1).cache_hit_ratio == 0.99
    assert Server().cache_hit_ratio is None
    assert SNAP.states() == {"active": 2, "idle": 1, "idle in transaction": 1}
