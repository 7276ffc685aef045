"""pgtop's table: as plain text or JSON (--once), and as the rich live screen."""

from __future__ import annotations

import json

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .data import Backend, Snapshot

COLUMNS = [
    "PID",
    "DB",
    "USER",
    "CLIENT",
    "APP",
    "TYPE",
    "STATE",
    "WAIT",
    "DURATION",
    "XACT",
    "BLOCKED BY",
    "QUERY",
]


def seconds(s: float | None) -> str:
    if s is None:
        return ""
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def uptime(s: float) -> str:
    days, rest = divmod(int(s), 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    return f"{days}d {h:02d}:{m:02d}:{sec:02d}" if days else f"{h:02d}:{m:02d}:{sec:02d}"


def cells(b: Backend) -> list[str]:
    wait = f"{b.wait_event_type}:{b.wait_event}" if b.wait_event else ""
    query = " ".join((b.query or "").split())
    return [
        str(b.pid),
        b.datname or "",
        b.usename or "",
        b.client,
        b.application_name or "",
        (b.backend_type or "").replace(" backend", ""),
        b.state or "",
        wait,
        seconds(b.query_seconds),
        seconds(b.xact_seconds),
        ",".join(map(str, b.blocked_by)),
        query,
    ]


def header(snap: Snapshot) -> list[str]:
    s = snap.server
    states = ", ".join(f"{k} {v}" for k, v in sorted(snap.states().items())) or "none"
    rate = lambda v: "-" if v is None else f"{v:,.1f}"  # noqa: E731
    hit = "-" if s.cache_hit_ratio is None else f"{100 * s.cache_hit_ratio:.2f}%"
    return [
        f"PostgreSQL {s.version}  up {uptime(s.uptime)}  connections: {states}",
        f"transactions/s {rate(snap.xacts_per_s)}  tuples/s {rate(snap.tuples_per_s)}  cache hit ratio {hit}",
    ]


def as_text(snap: Snapshot, rows: list[Backend], width: int = 200) -> str:
    body = [cells(b) for b in rows]
    widths = [max([len(COLUMNS[i])] + [len(r[i]) for r in body]) for i in range(len(COLUMNS) - 1)]
    used = sum(widths) + 2 * len(widths)

    def line(r: list[str]) -> str:
        return ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])[
            : max(width, used + 20)
        ]

    return "\n".join([*header(snap), line(COLUMNS), *map(line, body)]) + "\n"


def as_json(snap: Snapshot, rows: list[Backend]) -> str:
    s = snap.server
    return (
        json.dumps(
            {
                "server": {
                    "version": s.version,
                    "version_num": s.version_num,
                    "uptime_seconds": s.uptime,
                    "cache_hit_ratio": s.cache_hit_ratio,
                },
                "connections": snap.states(),
                "transactions_per_s": snap.xacts_per_s,
                "tuples_per_s": snap.tuples_per_s,
                "backends": [b.as_dict() for b in rows],
            },
            indent=2,
            default=str,
        )
        + "\n"
    )


def screen(
    snap: Snapshot | None,
    rows: list[Backend],
    selected: int,
    slow_threshold: float | None,
    status_line: str,
    body_height: int,
    title: str,
    overlay: list[str] | None = None,
) -> Group:
    """The whole screen, always the same height: header, table (padded), overlay or status, keys."""
    head = Text("\n".join([title, *(header(snap) if snap else ["", ""])]), style="bold")
    if overlay is not None:
        lines = overlay[: body_height + 1]
        body = Text("\n".join(lines + [""] * (body_height + 1 - len(lines))))
        return Group(head, body, Text(status_line, style="reverse"), Text(KEYS, style="dim"))
    table = Table(expand=True, box=None, header_style="bold reverse", pad_edge=False)
    for name in COLUMNS:
        table.add_column(
            name,
            no_wrap=True,
            overflow="ellipsis",
            ratio=8 if name == "QUERY" else None,
            justify="right" if name in ("PID", "DURATION", "XACT") else "left",
        )
    for i, b in enumerate(rows[:body_height]):
        style = ""
        if slow_threshold is not None and b.state == "active" and (b.query_seconds or 0) >= slow_threshold:
            style = "bold yellow"
        if i == selected:
            style = (style + " reverse").strip()
        table.add_row(*cells(b), style=style)
    for _ in range(body_height - min(len(rows), body_height)):
        table.add_row(*[""] * len(COLUMNS))
    return Group(head, table, Text(status_line, style="reverse"), Text(KEYS, style="dim"))


KEYS = (
    "q quit  k kill  K kill slow  / filter  s sort  v view  i idle  +/- refresh  "
    "up/down select  enter query  ? help"
)

HELP = """pgtop keys

  q          quit
  up / down  select a backend;  enter  show its full query (any key returns)
  k          cancel or terminate the selected backend (you confirm first)
  K          cancel or terminate ALL queries running longer than the slow threshold
  /          filter: db=NAME user=NAME state=STATE min=SECONDS re=REGEX (empty: none)
  s          sort by duration, pid, user, database (cycles)
  v          view all, running, waiting (blocked), blocking (cycles)
  i          show / hide idle sessions
  + / -      refresh slower / faster
  ?          this help (any key returns)"""
