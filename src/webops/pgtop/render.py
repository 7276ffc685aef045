"""pgtop's output: the table as plain text or JSON (--once), and the live screen's lines."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field

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
    """The title: which server (`label`), then the view, sort, filter... (`parts`), on one line
    whenever it can be: first the label is shortened, then the refresh and the idle state go, then
    the label, then the spaces between parts. The view, sort, filter and tags are never cut: when
    even that does not fit (a long filter), they go on more lines, at part boundaries."""
    sets = [
        parts,
        [p for p in parts if not p.startswith("refresh ")],
        [p for p in parts if not p.startswith(("refresh ", "idle "))],
    ]
    for shown in sets:
        state = "  ".join(shown)
        if len(label) + 3 + len(state) <= width:
            return [f"{label}   {state}"]
        room = width - 3 - len(state)
        if room >= 16:
            return [f"{label[: room - 1]}…   {state}"]
    for sep in ("  ", " "):
        state = sep.join(sets[-1])
        if len(state) <= width:
            return [state]
    return pack(sets[-1], width)


@dataclass
class Listing:
    """An overlay listing items (a confirmation's targets) between a head and a tail: when it
    does not fit, as many items as fit (at least one) and a line saying how many are not listed.
    On a small screen the blank lines go first, then the head and the tail are replaced by their
    short forms (`short_head`, `short_tail`: the keys, compact), so the keys always show."""

    head: list[str]
    items: list[str]
    tail: list[str]
    total: str = ""  # the "more" line's end: what happens to all of them
    short_head: list[str] = field(default_factory=list)
    short_tail: list[str] = field(default_factory=list)

    def lines(self, room: int, width: int) -> list[str]:
        def wrap(texts: list[str]) -> list[str]:
            return [line for text in texts for line in (textwrap.wrap(text, width) or [""])]

        head, tail = wrap(self.head), wrap(self.tail)
        if len(head) + len(self.items) + len(tail) <= room:
            return [*head, *self.items, *tail]
        solid_head, solid_tail = [t for t in head if t], [t for t in tail if t]
        attempts = [
            (head, tail),
            (solid_head, solid_tail),
            (wrap(self.short_head) or solid_head, solid_tail),
            (wrap(self.short_head) or solid_head, wrap(self.short_tail) or solid_tail),
        ]
        enough = min(3, len(self.items))  # items listed before the head and tail go compact
        for head, tail in attempts:
            if len(head) + len(tail) + 1 + enough <= room:  # and the "more" line
                break
        shown = max(1, room - len(head) - len(tail) - 1)
        left = len(self.items) - shown
        more = f"  … and {left} more, not listed here" + (f" ({self.total})" if self.total else "")
        if len(more) > width:
            more = f"  … and {left} more, not listed here"
        if len(more) > width:
            more = f"… and {left} more not listed"
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


MIN_SIZE = (40, 8)  # below this, the screen only says it is too small
MIN_BODY = 6  # table lines (rows and the "N more" line) kept before any header line


def too_small(size: tuple[int, int]) -> list[str] | None:
    """The lines shown instead of the screen when the terminal is smaller than MIN_SIZE."""
    width, height = size
    if width >= MIN_SIZE[0] and height >= MIN_SIZE[1]:
        return None
    text = f"terminal too small ({width}x{height}): need {MIN_SIZE[0]}x{MIN_SIZE[1]}; q quits"
    return (textwrap.wrap(text, max(1, width)) or [""])[: max(1, height)]


def key_hint(width: int) -> str:
    return next((k for k in (KEYS, KEYS_NARROW, KEYS_SHORT) if len(k) <= width), KEYS_SHORT)


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
    keys. Returns it with the first row shown (the scroll offset) and the table's height.

    On a small terminal the rows come first: the header's lines go (from its last) before the
    table gets fewer than MIN_BODY lines, and a confirmation drops the header when it would list
    fewer targets with it; below MIN_SIZE, one line says so."""
    width, height = size
    if (small := too_small(size)) is not None:
        return Group(*(Text(t) for t in small)), view["offset"], 1
    top = [Text(t[:width], style="bold") for t in title_lines(*title, width)][: height - 6]
    head = header_lines(snap, width)
    free = height - len(top) - 3  # the table's heading, the status line, the keys: 3 lines at least
    keep = max(0, min(len(head), free - MIN_BODY))
    keys = key_hint(width)
    if overlay is not None:
        room = free + 1  # the overlay has the heading's line too
        if isinstance(overlay, Listing):
            if len(overlay.lines(len(overlay.items) + 1000, width)) > room - keep:
                keep = 0  # not all listed: the targets before the header
            shown_overlay = overlay.lines(room - keep, width)[: room - keep]
        else:
            room -= keep
            if len(overlay) > room:
                shown_overlay = [*overlay[: room - 1], f"… and {len(overlay) - room + 1} more lines"]
            else:
                shown_overlay = overlay
        lines = [*top, *(Text(t[:width], style="bold") for t in head[:keep])]
        lines += [Text(t[:width]) for t in shown_overlay]
        lines += [Text("")] * (height - 2 - len(lines))
        lines += [Text(status_line[:width], style="reverse"), Text(keys[:width], style="dim")]
        return Group(*lines), view["offset"], free - keep
    lines = [*top, *(Text(t[:width], style="bold") for t in head[:keep])]
    body_height = free - keep
    start = len(lines)
    first, count = visible(len(rows), view["selected"], view["offset"], body_height)
    if snap is not None:
        table_head, body = table(snap, rows[first : first + count], view["columns"], width - 2, view["local"])
    else:
        table_head, body = "", []
    lines.append(Text(("  " + table_head).ljust(width)[:width], style="bold reverse"))
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
        hint = f"  ({more}: PgUp/PgDn, Home/End)"
        lines.append(Text((hint if len(hint) <= width else f"  ({more})")[:width], style="dim"))
    lines += [Text("")] * (body_height + 1 - (len(lines) - start))
    lines += [Text(status_line[:width], style="reverse"), Text(keys[:width], style="dim")]
    return Group(*lines), first, body_height


KEYS = "q quit  k/K kill  space tag  / filter  s sort  v view  C columns  i idle  p pause  ? help"
KEYS_NARROW = "q:quit k/K:kill space:tag /:filter s:sort v:view C:columns i:idle p:pause ?:help"
KEYS_SHORT = "q quit  k/K kill  / filter  ? help"
