"""Graphite's HTTP API on the store: /metrics/find and /render, answered as graphite-web answers
them, for dashboards that speak Graphite (Grafana's Graphite datasource among them).

Targets are path expressions with Graphite's wildcards, inside the render functions of
functions.py; a function that is not there is refused with a 400 that names it."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from collections.abc import Sequence
from datetime import datetime

from ..http import Reply, Request
from .db import Store, find, matching
from .functions import UNITS, Series, TargetError, evaluate


class ApiError(ValueError):
    """A request that cannot be answered: a 400 with this one line."""


def parse_time(text: str, now: int) -> int:
    """now, -1h / -10min / -2d (relative), epoch seconds, HH:MM_YYYYMMDD or YYYYMMDD."""
    t = text.strip().lower()
    if t in ("", "now"):
        return now
    if m := re.fullmatch(r"([-+])(\d+)([a-z]+)", t):
        if m[3] not in UNITS:
            raise ApiError(f"{text!r}: unknown unit {m[3]!r}")
        delta = int(m[2]) * UNITS[m[3]]
        return now - delta if m[1] == "-" else now + delta
    if t.isdigit():
        return int(t)
    for fmt in ("%H:%M_%Y%m%d", "%Y%m%d"):
        try:
            return int(datetime.strptime(t, fmt).timestamp())
        except ValueError:
            continue
    raise ApiError(f"{text!r}: expected now, -1h, epoch seconds, HH:MM_YYYYMMDD or YYYYMMDD")


def consolidate(series: Series, max_points: int, time_range: int) -> Series:
    """graphite-web's maxDataPoints, exactly: groups of ceil(points / max) averaged, the start
    nudged onto the group grid (so refreshes do not jitter) and one value fewer than the nudge
    dropped from the front, as its render view does."""
    if max_points < 1:
        return series
    values, start, step = list(series.values), series.start, series.step
    if max_points == 1:
        per = max(len(values), 1)
    else:
        points = time_range / step
        if max_points >= points:
            return series
        per = math.ceil(points / max_points)
        seconds = per * step
        nudge = seconds + start % step - start % seconds
        start += nudge
        del values[: max(nudge // step - 1, 0)]
    out: list[float | None] = []
    for i in range(0, len(values), per):
        known = [v for v in values[i : i + per] if v is not None]
        out.append(sum(known) / len(known) if known else None)
    stamps = len(range(start, series.end + 1, step * per))
    return Series(series.name, start, step * per, out[:stamps], series.path_expression)


def fetch(store: Store, targets: Sequence[str], start: int, end: int, now: int) -> list[Series]:
    names = store.names()

    def by_path(path: str, earlier: int) -> list[Series]:
        out = []
        for name in matching(names, path.strip()):
            got = store.fetch(name, start - earlier, end, now)
            if got is not None:
                out.append(Series(name, got.start, got.step, got.values, path.strip()))
        return out

    try:
        return [s for target in targets for s in evaluate(target, by_path)]
    except TargetError as e:
        raise ApiError(str(e)) from None
    except RecursionError:  # scale(scale(scale(... thousands deep: an answer, not a crash
        raise ApiError("a target nested too deeply") from None


def render(store: Store, request: Request, now: int | None = None) -> Reply:
    now = int(time.time()) if now is None else now
    try:
        start = parse_time(request.get("from", "-24h"), now)
        end = parse_time(request.get("until", "now"), now)
        if end <= start:
            raise ApiError("until must be after from")
        fmt = request.get("format", "json")
        if fmt not in ("json", "csv"):
            raise ApiError(f"format {fmt!r}: json or csv")
        try:
            max_points = int(request.get("maxDataPoints", "0"))
        except ValueError:
            raise ApiError("maxDataPoints: expected a whole number") from None
        targets = request.params.get("target", [])
        series = [consolidate(s, max_points, end - start) for s in fetch(store, targets, start, end, now)]
    except ApiError as e:
        return 400, "text/plain", f"{e}\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for s in series:
            for i, v in enumerate(s.values):
                stamp = datetime.fromtimestamp(s.start + i * s.step).strftime("%Y-%m-%d %H:%M:%S")
                writer.writerow([s.name, stamp, "" if v is None else v])
        return 200, "text/csv", buf.getvalue()
    body = [
        {
            "target": s.name,
            "tags": {"name": s.name},
            "datapoints": [[v, s.start + i * s.step] for i, v in enumerate(s.values)],
        }
        for s in series
    ]
    return 200, "application/json", json.dumps(body)


def find_nodes(store: Store, request: Request) -> Reply:
    """graphite-web's treejson: what Grafana's query editor lists, a node at a time."""
    query = request.get("query")
    if not query:
        return 400, "text/plain", "query is required (a path with wildcards: stats.*)\n"
    nodes = [
        {
            "text": path.rsplit(".", 1)[-1],
            "id": path,
            "leaf": int(leaf),
            "expandable": int(not leaf),
            "allowChildren": int(not leaf),
        }
        for path, leaf in find(store.names(), query)
    ]
    return 200, "application/json", json.dumps(nodes)
