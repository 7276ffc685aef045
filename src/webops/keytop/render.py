"""The key table as text, JSON, CSV (for scripts) or a rich renderable (for the live screen)."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Group
from rich.table import Table
from rich.text import Text

COLUMNS = [
    ("key", "KEY"),
    ("calls", "CALLS"),
    ("hits", "HITS"),
    ("misses", "MISSES"),
    ("sets", "SETS"),
    ("bytes_read", "READ"),
    ("bytes_written", "WRITTEN"),
    ("calls_per_s", "CALLS/S"),
    ("share", "SHARE"),
]


def _cell(name: str, row: dict) -> str:
    v = row[name]
    if name == "key":
        return v + (" ~" if row.get("approximate") else "")
    if name == "calls_per_s":
        return f"{v:.1f}"
    if name == "share":
        return f"{100 * v:.1f}%"
    return str(v)


def summary(totals: dict) -> str:
    ratio = "-" if totals["hit_ratio"] is None else f"{100 * totals['hit_ratio']:.1f}%"
    distinct = ("" if totals["distinct_exact"] else "~") + str(totals["distinct_keys"])
    line = (
        f"calls/s {totals['calls_per_s']:.1f}  calls {totals['calls']}  hit ratio {ratio}  "
        f"distinct keys {distinct}"
    )
    if totals["forgotten_keys"]:
        line += (
            f"  (tracking {totals['tracked_keys']}; {totals['forgotten_keys']} rarely called keys forgotten,"
            f" ~ counts may be short by <= {totals['max_error']})"
        )
    return line


def as_text(rows: list[dict], totals: dict) -> str:
    header = [title for _, title in COLUMNS]
    body = [[_cell(name, r) for name, _ in COLUMNS] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=False)]

    def fmt(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]).rstrip()

    return "\n".join([summary(totals), fmt(header), *map(fmt, body)]) + "\n"


def as_json(rows: list[dict], totals: dict) -> str:
    return json.dumps({"totals": totals, "keys": rows}, indent=2) + "\n"


def as_csv(rows: list[dict], totals: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=[name for name, _ in COLUMNS] + ["approximate"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


FORMATS = {"text": as_text, "json": as_json, "csv": as_csv}


def screen(rows: list[dict], totals: dict, title: str, sort: str, paused: bool, limit: int) -> Group:
    """The live screen: a header line, the table (always `limit` rows tall: a steady layout)."""
    table = Table(expand=True, box=None, header_style="bold reverse", pad_edge=False)
    for name, col_title in COLUMNS:
        marker = "*" if name == {"rate": "calls_per_s", "bytes": "bytes_read"}.get(sort, sort) else ""
        table.add_column(
            col_title + marker,
            justify="left" if name == "key" else "right",
            no_wrap=True,
            overflow="ellipsis",
            ratio=3 if name == "key" else 1,
        )
    for r in rows:
        table.add_row(*[_cell(name, r) for name, _ in COLUMNS])
    for _ in range(limit - len(rows)):
        table.add_row(*[""] * len(COLUMNS))
    state = " [PAUSED]" if paused else ""
    head = Text(f"{title}{state}\n{summary(totals)}", style="bold")
    help_line = Text("sort: c calls  h hits  m misses  b bytes  r calls/s   p pause   q quit", style="dim")
    return Group(head, table, help_line)
