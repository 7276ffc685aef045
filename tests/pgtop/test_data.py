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


def test_the_idle_filter_never_hides_a_blocker_nor_its_waiters() -> None:
    snap = Snapshot(
        Server(),
        [
            backend(10, state="idle", seconds=300),  # holds an advisory lock, idle
            backend(11, blocked_by=[10], seconds=38),  # waits for it...
            backend(12, blocked_by=[11], seconds=20),  # ...and is waited for
            backend(20, state="idle in transaction (aborted)", seconds=60),  # still holds its locks
            backend(21, blocked_by=[20], seconds=10),
            backend(30, blocked_by=[0], seconds=5),  # behind a prepared transaction (pid 0)
            backend(40, state="idle", seconds=500),  # idle and blocking nobody: hidden
            backend(41, state="idle in transaction (aborted)", seconds=500),  # the same
        ],
    )
    f = Filters()
    assert pids(select(snap, "all", f, "pid")) == [10, 11, 12, 20, 21, 30]
    assert pids(select(snap, "blocking", f, "pid")) == [10, 11, 20]
    tree = select(snap, "tree", f, "duration")
    assert [(b.pid, b.depth) for b in tree] == [(10, 0), (11, 1), (12, 2), (20, 0), (21, 1), (30, 0)]
    # a filter that matches only the last waiter still shows the chain it waits on
    chain = select(snap, "tree", parse_filter("min=15 state=active", f), "duration")
    assert [(b.pid, b.depth) for b in chain] == [(10, 0), (11, 1), (12, 2)]


def test_listings_say_how_many_they_do_not_show_and_the_title_never_loses_its_state() -> None:
    from webops.pgtop.render import Listing, title_lines

    listing = Listing(
        ["About to signal 30 backend(s):", ""], [f"  {i}" for i in range(30)], ["", "esc"], "all"
    )
    shown = listing.lines(19, 80)
    assert len(shown) == 19 and shown[-3] == "  … and 16 more, not listed here (all)"
    assert listing.lines(40, 80)[2:32] == listing.items  # all fit: no "more" line
    parts = ["view all", "sort duration", "refresh 0.5s", "idle hidden", "filter re=" + "x" * 100]
    for width in (40, 80, 200):
        lines = title_lines("pgtop 127.0.0.1:54321/postgres", parts, width)
        assert all(len(line) <= width for line in lines)
        assert "".join(lines).replace(" ", "").count("x") == 100  # wrapped, never cut
        assert "sort duration" in "\n".join(lines)
    assert title_lines("pgtop db1:5432/app", parts[:4], 80) == [
        "pgtop db1:5432/app   view all  sort duration  refresh 0.5s  idle hidden"
    ]
