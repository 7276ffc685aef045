"""Graphite's HTTP API on the store: /metrics/find and /render, answered as graphite-web answers
them, for dashboards that speak Graphite (Grafana's Graphite datasource among them).

Targets are path expressions with Graphite's wildcards, inside the render functions of
functions/; a function that is not there is refused with a 400 that names it. A render runs on
a Budget (functions/core.py): past its points or series it is a 422 naming the key to raise.

Times are integer epoch milliseconds from the request's from/until on (the store keeps sub-second
steps); the answer says them in epoch seconds as graphite-web does, to the millisecond where a
stamp is not a whole second."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from ..http import Reply, Request
from .db import GlobError, Store, find, matching
from .functions import CONSOLIDATE, MS, UNITS, Budget, Refused, Series, TargetError, Value, evaluate


class ApiError(ValueError):
    """A request that cannot be answered: a 400 with this one line."""


def parse_time(text: str, now_ms: int) -> int:
    """now, -1h / -10min / -2d (relative), epoch seconds, HH:MM_YYYYMMDD or YYYYMMDD, as epoch
    milliseconds (as `now_ms` is)."""
    t = text.strip().lower()
    if t in ("", "now"):
        return now_ms
    if m := re.fullmatch(r"([-+])(\d{1,15})([a-z]+)", t):
        if m[3] not in UNITS:
            raise ApiError(f"{text!r}: unknown unit {m[3]!r}")
        delta = int(m[2]) * UNITS[m[3]] * MS
        return now_ms - delta if m[1] == "-" else now_ms + delta
    if re.fullmatch(r"\d{1,15}", t):  # 5,000 digits would be a ValueError (Python's int limit)
        return int(t) * MS
    for fmt in ("%H:%M_%Y%m%d", "%Y%m%d"):
        try:
            return int(datetime.strptime(t, fmt).timestamp()) * MS
        except ValueError:
            continue
    raise ApiError(f"{text[:40]!r}: expected now, -1h, epoch seconds, HH:MM_YYYYMMDD or YYYYMMDD")


def consolidate(series: Series, max_points: int, time_range: int) -> Series:
    """graphite-web's maxDataPoints, exactly: groups of ceil(points / max) averaged, the start
    nudged onto the group grid (so refreshes do not jitter) and one value fewer than the nudge
    dropped from the front, as its render view does. `time_range` in milliseconds, as the
    series' start and step are: for whole seconds, graphite-web's arithmetic times 1000."""
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
        span = per * step
        nudge = span + start % step - start % span
        start += nudge
        del values[: max(nudge // step - 1, 0)]
    merge = CONSOLIDATE[series.consolidate_func]  # average unless consolidateBy said otherwise
    out = [merge(values[i : i + per]) for i in range(0, len(values), per)]
    stamps = len(range(start, series.end + 1, step * per))
    return replace(series, start=start, step=step * per, values=out[:stamps])


def fetch(
    store: Store, targets: Sequence[str], start_ms: int, end_ms: int, now_ms: int, budget: Budget
) -> list[Series]:
    """The targets' series, each path's charged to `budget` before it is read; every time in epoch
    milliseconds, as the store's fetch takes and answers them."""

    def by_path(path: str, earlier: int, shift: int = 0) -> list[Series]:
        """`earlier` ms more before the start, the whole window `shift` ms back (timeShift)."""
        names = matching(all_names, path.strip())
        budget.charge(series=len(names))  # before reading any: stats.* may name 500,000
        out = []
        for name in names:
            charge = lambda n: budget.charge(points=n)  # noqa: E731
            got = store.fetch(name, start_ms - earlier - shift, end_ms - shift, now_ms, charge)
            if got is not None:
                out.append(Series(name, got.start, got.step, got.values, path.strip()))
        return out

    try:
        with store.interruptible(budget.expired):
            all_names = store.names()
            window = (start_ms, end_ms)
            return [s for target in targets for s in evaluate(target, by_path, budget, window)]
    except RecursionError:  # scale(scale(scale(... thousands deep: an answer, not a crash
        raise ApiError("a target nested too deeply") from None
    except (re.error, GlobError) as e:  # [z-a], or braces that stand for too many paths
        raise ApiError(f"a path's wildcard: {e}") from None
    except sqlite3.OperationalError:  # interrupted at the deadline: say that, not the query
        budget.check()
        raise


def render(store: Store, request: Request, now: float | None = None, budget: Budget | None = None) -> Reply:
    """`now` in epoch seconds (a float to the millisecond), the clock's by default."""
    now_ms = time.time_ns() // 1_000_000 if now is None else round(now * MS)
    budget = budget or Budget()
    try:
        start = parse_time(request.get("from", "-24h"), now_ms)
        end = parse_time(request.get("until", "now"), now_ms)
        if end <= start:
            raise ApiError("until must be after from")
        fmt = request.get("format", "json")
        if fmt not in ("json", "csv"):
            raise ApiError(f"format {fmt[:20]!r}: json or csv")
        try:
            max_points = int(request.get("maxDataPoints", "0"))
        except ValueError:
            raise ApiError("maxDataPoints: expected a whole number") from None
        targets = request.params.get("target", [])
        fetched = fetch(store, targets, start, end, now_ms, budget)
        # the range in whole seconds, as graphite-web counts it (its now has no milliseconds)
        time_range = (end // MS - start // MS) * MS
        series = [consolidate(s, max_points, time_range) for s in budget.each(fetched)]
    except Refused as e:
        return 422, "text/plain", f"{e}\n"
    except (ApiError, TargetError) as e:
        return 400, "text/plain", f"{e}\n"
    if fmt == "csv":
        return 200, "text/csv", _csv(series, budget)
    return 200, "application/json", _json(series, budget)


def _finite(v: Value) -> Value:
    """None for what JSON cannot carry (Infinity, NaN: scale() by 1e308, a sum past 1.8e308)."""
    return v if v is None or math.isfinite(v) else None


def _seconds(ms: int) -> int | float:
    """Epoch seconds as graphite-web writes them: an int for a whole second, else a float to the
    millisecond (ms / 1000 is the float nearest the decimal, so it prints as 1795467600.25)."""
    return ms // MS if ms % MS == 0 else ms / MS


def _json(series: list[Series], budget: Budget) -> str:
    """graphite-web's JSON, a series at a time (the deadline is looked at between them), with
    null where it would write NaN or Infinity, which are not JSON."""
    out = []
    for s in budget.each(series):
        if s.start % MS == 0 and s.step % MS == 0:  # whole seconds: no division per point
            start, step = s.start // MS, s.step // MS
            points = [[_finite(v), start + i * step] for i, v in enumerate(s.values)]
        else:
            points = [[_finite(v), _seconds(s.start + i * s.step)] for i, v in enumerate(s.values)]
        out.append(json.dumps({"target": s.name, "tags": {"name": s.name}, "datapoints": points}))
    return f"[{', '.join(out)}]"


def _local(ms: int) -> str:
    """Local time as graphite-web's CSV writes it, with the milliseconds where they are not 0."""
    text = datetime.fromtimestamp(ms // MS).strftime("%Y-%m-%d %H:%M:%S")
    return text if ms % MS == 0 else f"{text}.{ms % MS:03d}"


def _csv(series: list[Series], budget: Budget) -> str:
    """graphite-web's CSV: name, local time, value; empty where JSON has null."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for s in budget.each(series):
        for i, v in enumerate(s.values):
            writer.writerow([s.name, _local(s.start + i * s.step), "" if _finite(v) is None else v])
    return buf.getvalue()


def find_nodes(store: Store, request: Request) -> Reply:
    """graphite-web's treejson: what Grafana's query editor lists, a node at a time."""
    query = request.get("query")
    if not query:
        return 400, "text/plain", "query is required (a path with wildcards: stats.*)\n"
    try:
        found = list(find(store.names(), query))
    except (re.error, GlobError) as e:
        return 400, "text/plain", f"query: {e}\n"
    nodes = [
        {
            "text": path.rsplit(".", 1)[-1],
            "id": path,
            "leaf": int(leaf),
            "expandable": int(not leaf),
            "allowChildren": int(not leaf),
        }
        for path, leaf in found
    ]
    return 200, "application/json", json.dumps(nodes)
