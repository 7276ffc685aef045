"""pgtop's output: the table as plain text or JSON (--once), and the live screen's lines."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass

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


def header_lines(snap: Snapshot | None, width: int) -> list[str]:
    """`header` for the screen at `width`: every figure stays visible. The version's build
    details (`(Debian 15.10-1)`) go first, then what does not fit goes on another line."""
    if snap is None:
        return ["", ""]
    first, second = header(snap)
    if len(first) > width:
        s = snap.server
        first = first.replace(f"PostgreSQL {s.version}", f"PostgreSQL {s.version.split(' ')[0]}", 1)
    return [*pack(first.split("  "), width), *pack(second.split("  "), width)]


def pack(segments: list[str], width: int) -> list[str]:
    """`segments` joined by two spaces on as few lines of `width` as they fit: a new line when the
    next one does not fit, and one longer than the width is wrapped, never cut."""
    width = max(1, width)
    lines: list[str] = []
    for seg in segments:
        if lines and len(lines[-1]) + 2 + len(seg) <= width:
            lines[-1] += "  " + seg
            continue
        while len(seg) > width:
            lines.append(seg[:width])
            seg = seg[width:]
        lines.append(seg)
    return lines or [""]


def title_lines(label: str, parts: list[str], width: int) -> list[str]:
    """The title: which server (`label`), then the view, sort, filter... (`parts`), which are never
    cut: the label is shortened to make room for them, and when even that is not enough they go
    on more lines."""
    state = "  ".join(parts)
    if len(label) + 3 + len(state) <= width:
        return [f"{label}   {state}"]
    room = width - 3 - len(state)
    if room >= 16:
        return [f"{label[: room - 1]}…   {state}"]
    return pack([label, *parts], width)


@dataclass
class Listing:
    """An overlay listing items (a confirmation's targets) between a head and a tail: when it
    does not fit, as many items as fit and a line saying how many are not listed."""

    head: list[str]
    items: list[str]
    tail: list[str]
    total: str = ""  # the "more" line's end: what happens to all of them

    def lines(self, room: int, width: int) -> list[str]:
        head = [line for text in self.head for line in (textwrap.wrap(text, width) or [""])]
        tail = [line for text in self.tail for line in (textwrap.wrap(text, width) or [""])]
        if len(head) + len(self.items) + len(tail) <= room:
            return [*head, *self.items, *tail]
        shown = max(0, room - len(head) - len(tail) - 1)
        more = f"  … and {len(self.items) - shown} more, not listed here" + (
            f" ({self.total})" if self.total else ""
        )
        return [*head, *self.items[:shown], more, *tail]


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
    title: tuple[str, list[str]],
    snap: Snapshot | None,
    rows: list[Backend],
    view: dict,
    status_line: str,
    size: tuple[int, int],
    overlay: list[str] | Listing | None = None,
) -> tuple[Group, int, int]:
    """The whole screen, always `size` (width, height): title (the server `title[0]` and the
    state `title[1]`, never cut), header, table (padded) with an "N more" line, overlay or status,
    keys. Returns it with the first row shown (the scroll offset) and the table's height."""
    width, height = size
    top = title_lines(*title, width)
    lines = [Text(t[:width], style="bold") for t in top]
    lines += [Text(t[:width], style="bold") for t in header_lines(snap, width)]
    body_height = max(3, height - len(lines) - 3)
    start = len(lines)
    keys = KEYS if len(KEYS) <= width else KEYS_NARROW
    if overlay is not None:
        room = body_height + 1
        if isinstance(overlay, Listing):
            shown_overlay = overlay.lines(room, width)[:room]
        elif len(overlay) > room:
            shown_overlay = [*overlay[: room - 1], f"… and {len(overlay) - room + 1} more lines"]
        else:
            shown_overlay = overlay
        lines += [Text(t[:width]) for t in shown_overlay]
        lines += [Text("")] * (room - len(shown_overlay))
        lines += [Text(status_line[:width], style="reverse"), Text(keys[:width], style="dim")]
        return Group(*lines), view["offset"], body_height
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
    lines += [Text("")] * (body_height + 1 - (len(lines) - start))
    lines += [Text(status_line[:width], style="reverse"), Text(keys[:width], style="dim")]
    return Group(*lines), first, body_height


KEYS = "q quit  k/K kill  space tag  / filter  s sort  v view  C columns  i idle  p pause  ? help"
KEYS_NARROW = "q:quit k/K:kill space:tag /:filter s:sort v:view C:columns i:idle p:pause ?:help"
