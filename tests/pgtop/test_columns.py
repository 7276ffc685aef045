"""The column layout (pure): pid whole, query gets what remains, the least useful go first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webops.pgtop.columns import COLUMNS, PROFILES, QUERY_MIN, layout, line, parse_columns
from webops.pgtop.render import visible

ROW = {
    "pid": "4194304",
    "db": "orders_production",
    "user": "reporting_readonly",
    "client": "2001:db8:85a3::8a2e:370:7334",
    "app": "pgbench",
    "type": "autovacuum worker",
    "cpu": "12.5",
    "mem": "14M",
    "read": "1.2M",
    "write": "512K",
    "state": "idle in transaction (aborted)",
    "wait": "LWLock:BufferMapping",
    "lock": "AccessExclusiveLock on orders",
    "duration": "1:02:03",
    "xact": "1:02:03",
    "blocked": "12345,12346",
    "query": "SELECT * FROM orders WHERE id = 1 " * 5,
}


def cells(keys):
    return [[ROW[k]] for k in keys]


@pytest.mark.parametrize("width", [80, 120, 200])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_pid_whole_and_query_gets_the_rest(width: int, profile: str) -> None:
    keys = PROFILES[profile]
    shown = layout(keys, cells(keys), width, local=True)
    names = [c.key for c, _ in shown]
    assert names[0] == "pid" and names[-1] == "query"
    text = line(shown, [ROW[c.key] for c, _ in shown])
    assert len(text) == width
    assert text.lstrip().startswith("4194304 ")  # never shortened
    assert dict((c.key, w) for c, w in shown)["query"] >= max(QUERY_MIN, width // 3)
    for c, w in shown:
        assert w <= max(c.max, len(c.title)) or c.key == "query"  # long values never take the width


def test_the_least_useful_columns_go_first_and_empty_ones_before_them() -> None:
    keys = PROFILES["standard"]
    at_120 = [c.key for c, _ in layout(keys, cells(keys), 120, local=True)]
    assert {"db", "user", "state", "duration"} <= set(at_120)
    empty = [[""] if k in ("blocked", "lock") else [ROW[k]] for k in keys]
    with_empty = [c.key for c, _ in layout(keys, empty, 120, local=True)]
    assert "blocked" not in with_empty and "lock" not in with_empty
    assert len(with_empty) >= len(at_120)


def test_local_only_columns_need_a_local_server() -> None:
    keys = PROFILES["full"]
    assert "cpu" not in [c.key for c, _ in layout(keys, cells(keys), 400, local=False)]
    assert "cpu" in [c.key for c, _ in layout(keys, cells(keys), 400, local=True)]


def test_columns_option() -> None:
    assert parse_columns("db, duration") == ("pid", "db", "duration", "query")
    with pytest.raises(ValueError, match="unknown column 'nope'"):
        parse_columns("pid,nope")
    assert set(PROFILES["full"]) == set(COLUMNS)


@given(st.integers(0, 300), st.integers(0, 299), st.integers(0, 300), st.integers(3, 60))
def test_the_selection_is_always_on_screen(count: int, selected: int, offset: int, height: int) -> None:
    selected = min(selected, max(0, count - 1))
    first, shown = visible(count, selected, offset, height)
    assert shown <= height and (shown == count or shown == height - 1)  # one line for "N more"
    assert first >= 0 and first + shown <= count
    if count:
        assert first <= selected < first + shown


def test_at_80_columns_a_lock_pileup_keeps_who_waits_on_whom() -> None:
    """A waiter and its idle-in-transaction holder, every column full: BLOCKED BY stays."""
    keys = PROFILES["standard"]
    waiter = {**ROW, "state": "active", "wait": "Lock:relation", "blocked": "12344"}
    holder = {**ROW, "state": "idle in transaction", "blocked": ""}
    shown = [c.key for c, _ in layout(keys, [[waiter[k], holder[k]] for k in keys], 78, local=True)]
    assert {"pid", "blocked", "duration", "query"} <= set(shown)
