"""pgtop's columns as data (pg_activity's keys-as-data): what each shows, how important it is,
and how narrow it may get; `layout` fits them to a width. Pure functions.

At any width the pid is shown whole and the query gets what remains. When the other columns do
not fit, the least useful one (a column with nothing to show this refresh, else the lowest
priority) is shortened to its minimum, or dropped if that is not enough, then the next one.
Profiles choose the columns (`C` cycles them, `--columns` names them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .data import Backend
from .procstats import Usage

QUERY_MIN = 20  # the query column never gets less than this (or a third of the width, if more)


def seconds(s: float | None) -> str:
    if s is None:
        return ""
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def size(n: float | None) -> str:
    """Bytes as `512B`, `3.2K`, `41M`, `1.5G`."""
    if n is None:
        return ""
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" or n >= 10 else f"{n:.1f}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


DEPTH_SHOWN = 4  # tree levels shown as indentation; deeper ones as a number, `└[12]`


def indent(depth: int) -> str:
    """A tree row's indentation: two spaces a level, and past DEPTH_SHOWN levels the depth as a
    number, so a deep lock queue leaves the query its width."""
    return "  " * depth if depth <= DEPTH_SHOWN else f"  └[{depth}] "


def _wait(b: Backend, u: Usage | None) -> str:
    return f"{b.wait_event_type}:{b.wait_event}" if b.wait_event else ""


def _usage(field: str, fmt: Callable[[float | None], str]) -> Callable[[Backend, Usage | None], str]:
    return lambda b, u: fmt(getattr(u, field)) if u is not None else ""


@dataclass(frozen=True)
class Column:
    key: str  # the name in --columns and the config
    title: str
    cell: Callable[[Backend, Usage | None], str]
    priority: int  # higher: kept longer when the width runs out
    min: int  # narrowest it is shown (shortened with …); pid: never shortened
    max: int  # widest it grows, however long a value (background processes' TYPE and WAIT)
    right: bool = False
    local: bool = False  # needs /proc of the server's host


COLUMNS: dict[str, Column] = {
    c.key: c
    for c in (
        Column("pid", "PID", lambda b, u: str(b.pid), 100, 7, 7, right=True),
        Column("db", "DB", lambda b, u: b.datname or "", 60, 6, 16),
        Column("user", "USER", lambda b, u: b.usename or "", 70, 6, 16),
        Column("client", "CLIENT", lambda b, u: b.client, 30, 9, 39),
        Column("app", "APP", lambda b, u: b.application_name or "", 10, 5, 16),
        Column("type", "TYPE", lambda b, u: (b.backend_type or "").replace(" backend", ""), 15, 6, 14),
        Column("cpu", "CPU%", _usage("cpu", lambda v: "" if v is None else f"{v:.1f}"), 45, 5, 6, True, True),
        Column("mem", "MEM", _usage("rss", size), 35, 5, 6, right=True, local=True),
        Column("read", "READ/s", _usage("read_per_s", size), 25, 6, 7, right=True, local=True),
        Column("write", "WRITE/s", _usage("write_per_s", size), 25, 7, 7, right=True, local=True),
        Column("state", "STATE", lambda b, u: b.state or "", 80, 6, 19),
        Column(
            "wait",
            "WAIT",
            lambda b, u: f"{b.wait_event_type}:{b.wait_event}" if b.wait_event else "",
            40,
            6,
            24,
        ),
        Column("lock", "LOCK", lambda b, u: b.lock, 50, 10, 36),
        Column("duration", "DURATION", lambda b, u: seconds(b.query_seconds), 90, 8, 8, right=True),
        Column("xact", "XACT", lambda b, u: seconds(b.xact_seconds), 20, 7, 8, right=True),
        Column("blocked", "BLOCKED BY", lambda b, u: ",".join(map(str, b.blocked_by)), 85, 10, 24),
        Column("query", "QUERY", lambda b, u: indent(b.depth) + " ".join((b.query or "").split()), 95, 0, 0),
    )
}

PROFILES: dict[str, tuple[str, ...]] = {
    "standard": (
        "pid",
        "db",
        "user",
        "client",
        "cpu",
        "mem",
        "state",
        "wait",
        "lock",
        "duration",
        "xact",
        "blocked",
        "query",
    ),
    "full": tuple(COLUMNS),
    "minimal": ("pid", "db", "user", "state", "duration", "query"),
}


def parse_columns(text: str) -> tuple[str, ...]:
    """`pid,db,query` -> the keys, checked (pid and query are always shown)."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})")
    return tuple(k for k in COLUMNS if k in keys or k in ("pid", "query"))


Layout = list[tuple[Column, int]]


def layout(keys: tuple[str, ...], cells: list[list[str]], width: int, local: bool) -> Layout:
    """The columns shown and their widths for `width` characters (one space between columns).

    `cells[i]` are the rows' texts for `keys[i]`. Columns that need the server's /proc are left
    out when the server is not local."""
    columns = [(COLUMNS[k], col) for k, col in zip(keys, cells, strict=True) if local or not COLUMNS[k].local]
    widths = {
        c.key: min(c.max, max([len(c.title), *map(len, col)])) for c, col in columns if c.key != "query"
    }
    query_min = max(QUERY_MIN, width // 3)

    def used() -> int:
        return sum(widths.values()) + len(widths)  # each column and the space after it

    # least useful first: columns with nothing to show this refresh, then by priority
    empty = {c.key for c, col in columns if not any(col)}
    order = sorted(
        (c for c, _ in columns if c.key != "query"), key=lambda c: (c.key not in empty, c.priority)
    )
    for c in order:
        if used() + query_min <= width:
            break
        if c.key == "pid":
            continue
        widths[c.key] = max(c.min, widths[c.key] - (used() + query_min - width))  # shorten it,
        if used() + query_min > width:
            del widths[c.key]  # or, if that is not enough, drop it
    out = [(c, widths[c.key]) for c, _ in columns if c.key in widths]
    return [*out, (COLUMNS["query"], max(1, width - used()))]


def fit(text: str, width: int, right: bool = False) -> str:
    """`text` in exactly `width` characters: padded, or shortened with an ellipsis."""
    if len(text) > width:
        return text[: width - 1] + "…" if width > 1 else text[:width]
    return text.rjust(width) if right else text.ljust(width)


def line(columns: Layout, texts: list[str]) -> str:
    return " ".join(fit(t, w, c.right) for (c, w), t in zip(columns, texts, strict=True))
