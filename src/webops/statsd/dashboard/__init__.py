"""The live dashboard served at `/`: one page, plain JavaScript and uPlot (1.6.32, MIT, from npm,
kept here as built so users need no build step). It reads Graphite's API and /dashboard/status.

What /dashboard/status adds for the page's first view is made here, pure: the daemon's own health
at each of the last flushes (`Health`, a ring of HEALTH_FLUSHES samples, so the page has charts the
moment it opens, even without the store) and the busiest series of the last flush (`busiest`, the
top BUSIEST by events, whatever the number of series)."""

from __future__ import annotations

import heapq
import itertools
import socket
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ..backends.naming import GRAPHITE, GraphiteNaming
from ..http import Reply, Request
from ..snapshot import Snapshot

FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/uPlot.iife.min.js": ("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "/dashboard/uPlot.min.css": ("uPlot.min.css", "text/css; charset=utf-8"),
}
HEALTH_FLUSHES = 360  # an hour at the default 10 s flush: what the health charts show
BUSIEST = 10  # series in the busiest list, however many there are


def _file(name: str, ctype: str) -> Callable[[Request], Reply]:
    """A route answering with one of the files, read at its first request, not at start."""

    @cache
    def text() -> str:
        return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")

    def route(request: Request) -> Reply:
        return 200, ctype, text()

    return route


ROUTES = {path: _file(name, ctype) for path, (name, ctype) in FILES.items()}


def url(address: str, port: int) -> str:
    """The dashboard's address as a browser opens it, for the start log: a wildcard address is
    this host's name (0.0.0.0 is no place to browse to), an IPv6 address goes in brackets."""
    if address in ("", "0.0.0.0", "::"):
        address = socket.gethostname()
    elif ":" in address:
        address = f"[{address}]"
    return f"http://{address}:{port}/"


# --- the daemon's own health, flush by flush ----------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """The daemon's cumulative counts at one flush (a restart of the daemon starts them over)."""

    time: float  # epoch seconds
    metrics_received: int
    bad_lines: int
    kernel_drops: int
    refused: int  # updates of new series past maxSeries, set members past maxSetMembers
    shed: int  # lines dropped unparsed because intake was behind
    flush_ms: float  # the flush's processing time
    lag_seconds: float  # how far the slowest backend's history is behind (the store's lag)


# The health charts: key -> (what the page titles it, its unit, {series label: its value from two
# neighbouring samples}). Counts are per second, so flush intervals of any length read the same.
def _rate(field: str) -> Callable[[Sample, Sample], float]:
    def per_second(before: Sample, now: Sample) -> float:
        seconds = max(now.time - before.time, 1e-3)
        return round(max(getattr(now, field) - getattr(before, field), 0) / seconds, 3)

    return per_second


HealthChart = tuple[str, str, dict[str, Callable[[Sample, Sample], float]]]
HEALTH_CHARTS: dict[str, HealthChart] = {
    "intake": ("intake", "/s", {"metrics received": _rate("metrics_received")}),
    "bad_lines": ("bad lines", "/s", {"bad lines": _rate("bad_lines")}),
    "drops": (
        "drops",
        "/s",
        {
            "kernel (intake behind)": _rate("kernel_drops"),
            "refused (maxSeries)": _rate("refused"),
            "shed unparsed": _rate("shed"),
        },
    ),
    "flush": ("flush time", "ms", {"processing time": lambda _, now: now.flush_ms}),
    "lag": ("store lag", "s", {"behind the newest flush": lambda _, now: now.lag_seconds}),
}


class Health:
    """The last HEALTH_FLUSHES samples (the flusher appends, a request reads a copy)."""

    def __init__(self, size: int = HEALTH_FLUSHES) -> None:
        self.samples: deque[Sample] = deque(maxlen=size + 1)  # one more: the first has no rate

    def record(self, sample: Sample) -> None:
        self.samples.append(sample)

    def columns(self) -> dict[str, Any]:
        return health_columns(list(self.samples))


def health_columns(samples: list[Sample]) -> dict[str, Any]:
    """uPlot's columns: the flush times, and each health chart's values between neighbours (a
    count that went down, the daemon's restart, counts as 0)."""
    pairs = list(itertools.pairwise(samples))
    return {
        "time": [round(now.time, 3) for _, now in pairs],
        "charts": {
            key: {
                "title": title,
                "unit": unit,
                "series": {label: [value(b, n) for b, n in pairs] for label, value in series.items()},
            }
            for key, (title, unit, series) in HEALTH_CHARTS.items()
        },
    }


# --- the busiest series of the last flush ---------------------------------------------------------

# Per metric kind: how many events a series took in the interval (a gauge is a level, not
# events: not ranked), and the target that charts it (the points its Graphite naming writes).
EVENTS: dict[str, Callable[[Any], float]] = {
    "counters": lambda raw: abs(raw),
    "timers": lambda raw: raw.count,
    "sets": lambda raw: len(raw),
}


def _chart_target(naming: GraphiteNaming, table: str, key: str) -> str:
    """A counter's rate, a timer's mean, median and upper, a set's count."""
    ns = naming.namespace(table)
    if table == "timers":
        return naming.path(ns, key, "{mean,median,upper}")
    if table == "counters" and not naming.legacy:
        return naming.path(ns, key, "rate")
    return next(GRAPHITE[table].points(naming, ns, key, 0, 0)).path


def busiest(snap: Snapshot, naming: GraphiteNaming, own: frozenset[str], n: int = BUSIEST) -> list[dict]:
    """The `n` series with the most events in the flush (one pass, n kept: bounded whatever the
    number of series), the daemon's own counters left out."""

    def ranked() -> Iterator[tuple[float, str, str]]:
        for table, events in EVENTS.items():
            for key, raw in snap.tables.get(table, {}).items():
                if key not in own:
                    yield events(raw), table, key

    seconds = max(snap.flush_interval_ms / 1000, 1e-3)
    return [
        {
            "key": key,
            "kind": table,
            "events": count,
            "per_second": round(count / seconds, 3),
            "target": _chart_target(naming, table, key),
        }
        for count, table, key in heapq.nlargest(n, ranked(), key=lambda t: t[0])
        if count > 0
    ]
