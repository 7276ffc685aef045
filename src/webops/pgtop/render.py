"""pgtop's output: the table as plain text or JSON (--once), and the live screen's lines."""

from __future__ import annotations

import json

from rich.console import Group
from rich.text import Text

from . import columns
from .data import Backend, Snapshot


def uptime(s: float) -> str:
    days, rest = divmod(int(s), 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    return f"{days}d {h:02d}:{m:02d}:{sec:02d}" if days else f"{h:02d}:{m:02d}:{sec:02d}"


def header(snap: Snapshot) -> list[str]:
    s = snap.server
    states = ", ".join(f"{k} {v}" for k, v in sorted(snap.states().items())) or "none"
    rate = lambda v: "-" if v is None else f"{v:,.1f}"  # noqa: E731
    hit = "-" if s.cache_hit_ratio is None else f"{100 * s.cache_hit_ratio:.2f}%"
    return [
        f"PostgreSQL {s.version}  up {uptime(s.uptime)}  connections: {states}",
        f"transactions/s {rate(snap.xacts_per_s)}  tuples/s {rate(snap.tuples_per_s)}  cache hit ratio {hit}",
    ]


def table(
    snap: Snapshot, rows: list[Backend], keys: tuple[str, ...], width: int, local: bool
) -> tuple[str, list[str]]:
    """The header line and one line per row, fitted to `width`."""
    texts = [[columns.COLUMNS[k].cell(b, snap.procs.get(b.pid)) for b in rows] for k in keys]
    layout = columns.layout(keys, texts, width, local)
    index = {k: i for i, k in enumerate(keys)}
    head = columns.line(layout, [c.title for c, _ in layout])
    body = [columns.line(layout, [texts[index[c.key]][r] for c, _ in layout]) for r in range(len(rows))]
    return head, body


def as_text(snap: Snapshot, rows: list[Backend], keys: tuple[str, ...], width: int = 200) -> str:
    head, body = table(snap, rows, keys, width, local=False)
    return "\n".join([*header(snap), head.rstrip(), *(line.rstrip() for line in body)]) + "\n"


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


def visible(count: int, selected: int, offset: int, height: int) -> tuple[int, int]:
    """(first row shown, how many) for `height` lines: the selection always inside, and one line
    kept for "N more" when the rows do not all fit."""
    if count <= height:
        return 0, count
    shown = height - 1
    offset = min(max(offset, selected - shown + 1), selected, count - shown)
    return max(0, offset), shown


def screen(
    title: str,
    snap: Snapshot | None,
    rows: list[Backend],
    view: dict,
    status_line: str,
    size: tuple[int, int],
    overlay: list[str] | None = None,
) -> tuple[Group, int]:
    """The whole screen, always `size` (width, height): title, header, table (padded) with an "N
    more" line, overlay or status, keys. Returns it with the first row shown (the scroll offset)."""
    width, height = size
    body_height = max(3, height - 6)
    lines = [Text(title[:width], style="bold")]
    lines += [Text(t[:width], style="bold") for t in (header(snap) if snap else ["", ""])]
    if overlay is not None:
        shown_overlay = overlay[: body_height + 1]
        lines += [Text(t[:width]) for t in shown_overlay]
        lines += [Text("")] * (body_height + 1 - len(shown_overlay))
        lines += [Text(status_line[:width], style="reverse"), Text(KEYS[:width], style="dim")]
        return Group(*lines), view["offset"]
    first, count = visible(len(rows), view["selected"], view["offset"], body_height)
    if snap is not None:
        head, body = table(snap, rows[first : first + count], view["columns"], width - 2, view["local"])
    else:
        head, body = "", []
    lines.append(Text(("  " + head).ljust(width)[:width], style="bold reverse"))
    threshold = view["slow"]
    for i, text in enumerate(body):
        b = rows[first + i]
        style = ""
        if b.state == "active" and b.backend_type == "client backend" and (b.query_seconds or 0) >= threshold:
            style = "bold yellow"
        if first + i == view["selected"]:
            style = (style + " reverse").strip()
        mark = "*" if b.pid in view["tagged"] else " "
        lines.append(Text(f"{mark} {text}"[:width], style=style))
    if count < len(rows):
        above, below = first, len(rows) - first - count
        more = "  ".join(
            t for t in (f"{above} more above" if above else "", f"{below} more below" if below else "") if t
        )
        lines.append(Text(f"  ({more}: PgUp/PgDn, Home/End)"[:width], style="dim"))
    lines += [Text("")] * (body_height + 1 - (len(lines) - 3))
    lines += [Text(status_line[:width], style="reverse"), Text(KEYS[:width], style="dim")]
    return Group(*lines), first


KEYS = "q quit  k/K kill  space tag  / filter  s sort  v view  C columns  i idle  p pause  ? help"

HELP = """pgtop keys

  q            quit
  up / down    select a backend (PgUp / PgDn, Home / End: a page, the first, the last)
  enter        show the selected backend's full query (any key returns)
  space        tag / untag the selected backend;  u  untag all
  k            cancel or terminate the tagged backends, or the selected one (you confirm first)
  K            cancel or terminate the queries running longer than the slow threshold, among
               the rows of the current view and filter (you confirm first)
  /            filter: db=NAME user=NAME state=STATE min=SECONDS re=REGEX (empty: none)
  s            sort by duration, pid, user, database (cycles)
  v            view all, running, waiting (blocked), blocking, tree (who blocks whom)
  C            columns: standard, full, minimal (cycles)
  i            show / hide idle sessions
  p            pause / resume the refresh
  + / -        refresh slower / faster
  ?            this help (any key returns)"""
