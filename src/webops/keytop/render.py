"""The key table as text, JSON, CSV (for scripts) or the live screen's lines (fitted to its size)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from rich.console import Group
from rich.text import Text

from ..common.text import printable

# (field, title, screen minimum width); the key column takes what is left
COLUMNS = [
    ("key", "KEY", 12),
    ("calls", "CALLS", 6),
    ("hits", "HITS", 6),
    ("misses", "MISSES", 6),
    ("sets", "SETS", 5),
    ("bytes_read", "READ", 6),
    ("bytes_written", "WRITTEN", 7),
    ("value_size", "SIZE", 5),
    ("calls_per_s", "CALLS/S", 7),
    ("bytes_per_s", "BYTES/S", 7),
    ("share", "SHARE", 6),
    ("servers", "SERVER", 8),
]
SORTED_BY = {"rate": "calls_per_s", "bytes": "bytes_read", "bandwidth": "bytes_per_s", "size": "value_size"}
SCREEN_DROP_ORDER = ["servers", "bytes_written", "bytes_read", "sets", "value_size", "bytes_per_s", "share"]
HEADER_LINES = 3  # title, summary, status
FOOTER_LINES = 2  # column header is counted with the rows; help line


@dataclass
class View:
    """What the user chose on the live screen."""

    sort: str
    reverse: bool = False
    paused: bool = False


HELP_WIDE = (
    "sort: c calls h hits m misses s sets b bytes r rate w bytes/s z size k key  o order  p pause  ? help"
    "  q quit"
)
HELP_NARROW = "c h m s b r w z k: sort  o: order  p: pause  ?: help  q: quit"


def rows_fitting(lines: int) -> int:
    """How many key rows a screen of `lines` lines has room for (the help line always shows)."""
    return max(1, lines - HEADER_LINES - FOOTER_LINES)


def compact(n: float) -> str:
    """A count in at most 6 characters: 999999, 1.23M, 45.6G."""
    if abs(n) < 1_000_000:
        return f"{n:.0f}" if float(n).is_integer() or abs(n) >= 100 else f"{n:.1f}"
    for unit, scale in (("M", 1e6), ("G", 1e9), ("T", 1e12)):
        if abs(n) < scale * 1000 or unit == "T":
            return f"{n / scale:.3g}{unit}"
    raise AssertionError("unreachable")


def _cell(name: str, row: dict, screen: bool = False) -> str:
    v = row[name]
    if name == "key":
        return printable(v) + (" ~" if row.get("approximate") else "")
    if name == "servers":
        return ",".join(v)
    if name == "share":
        return f"{100 * v:.1f}%"
    if name in ("calls_per_s", "bytes_per_s", "value_size"):
        return compact(v) if screen else f"{v:.1f}"
    return compact(v) if screen else str(v)


def summary(totals: dict) -> str:
    ratio = "-" if totals["hit_ratio"] is None else f"{100 * totals['hit_ratio']:.1f}%"
    distinct = ("" if totals["distinct_exact"] else "~") + str(totals["distinct_keys"])
    line = (
        f"calls/s {totals['calls_per_s']:.1f}  bytes/s {compact(totals['bytes_per_s'])}"
        f"  calls {totals['calls']}  hit ratio {ratio}  distinct keys {distinct}"
    )
    if totals["forgotten_keys"]:
        line += (
            f"  (tracking {totals['tracked_keys']}; {totals['forgotten_keys']} rarely called keys forgotten,"
            f" ~ counts short by <= {totals['max_error']})"
        )
    return line


def loss_lines(totals: dict) -> list[str]:
    """What was not seen, a line each: `lost_entries`, `gaps`, `down` and `notes` of the totals."""
    parts = []
    if totals.get("lost_entries"):
        parts.append(f"memcached dropped {totals['lost_entries']} log entries (keytop read too slowly)")
    if totals.get("gaps"):
        seconds = sum(g["seconds"] for g in totals["gaps"])
        servers = ", ".join(sorted({g["server"] for g in totals["gaps"]}))
        parts.append(f"{len(totals['gaps'])} gap(s) without data, {seconds:.1f}s ({servers})")
    parts += [f"{k}: {v}" for k, v in totals.get("down", {}).items()]
    parts += totals.get("notes", [])
    return parts


def losses(totals: dict) -> str:
    """What was not seen, in one line ("" when nothing was lost)."""
    parts = loss_lines(totals)
    return ("APPROXIMATE COUNTS: " + "; ".join(parts)) if parts else ""


def _multi(rows: list[dict]) -> bool:
    return any(len(r["servers"]) > 1 for r in rows) or len({s for r in rows for s in r["servers"]}) > 1


def as_text(rows: list[dict], totals: dict) -> str:
    names = [c for c in COLUMNS if c[0] != "servers" or _multi(rows)]
    header = [title for _, title, _ in names]
    body = [[_cell(name, r) for name, _, _ in names] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=False)]

    def fmt(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]).rstrip()

    lost = losses(totals)
    return "\n".join([summary(totals), fmt(header), *map(fmt, body), *([lost] if lost else [])]) + "\n"


def as_json(rows: list[dict], totals: dict) -> str:
    return json.dumps({"totals": totals, "keys": rows}, indent=2) + "\n"


def as_csv(rows: list[dict], totals: dict) -> str:
    out = io.StringIO()
    fields = [name for name, _, _ in COLUMNS] + ["approximate", "max_error"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({**r, "servers": " ".join(r["servers"])} for r in rows)
    return out.getvalue()


FORMATS = {"text": as_text, "json": as_json, "csv": as_csv}


def screen(
    rows: list[dict],
    totals: dict,
    health,
    title: str,
    view: View,
    width: int,
    overlay: list[str] | None = None,
) -> Group:
    """The live screen: title, summary, losses, the table fitted to `width` (or the `overlay`'s
    lines in its place: the help), the help line."""
    shown = [c for c in COLUMNS if c[0] != "servers" or len(health.servers) > 1]
    for name in SCREEN_DROP_ORDER:  # narrow screens: the least looked-at columns go first
        if sum(w + 1 for _, _, w in shown) <= width:
            break
        shown = [c for c in shown if c[0] != name]
    sorted_field = SORTED_BY.get(view.sort, view.sort)
    arrow = "^" if view.reverse else "*"
    titles = [t + (arrow if name == sorted_field else "") for name, t, _ in shown]
    cells = [[_cell(name, r, screen=True) for name, _, _ in shown] for r in rows]
    widths = [max([w, len(titles[i]), *(len(c[i]) for c in cells)]) for i, (_, _, w) in enumerate(shown)]
    widths[0] = max(8, width - sum(w + 1 for w in widths[1:]))  # the key gets the rest

    def fit(values: list[str]) -> str:
        out = []
        for i, (v, w) in enumerate(zip(values, widths, strict=True)):
            v = v if len(v) <= w else v[: w - 1] + "…"
            out.append(v.ljust(w) if i == 0 else v.rjust(w))
        return " ".join(out)[:width]

    state = " [PAUSED]" if view.paused else ""
    lost = losses({**totals, **health.as_dict()})
    lines = [
        Text(f"{title}{state}"[:width], style="bold"),
        Text(summary(totals)[:width], style="bold"),
        Text((lost or health.last)[:width], style="bold red" if lost else "dim"),
    ]
    if overlay is not None:
        lines += [Text(line[:width]) for line in overlay]
    else:
        lines += [Text(fit(titles).ljust(width), style="bold reverse"), *(Text(fit(c)) for c in cells)]
    help_line = HELP_WIDE if len(HELP_WIDE) <= width else HELP_NARROW
    return Group(*lines, Text(help_line[:width], style="dim"))
