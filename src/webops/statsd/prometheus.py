"""The flushes, as Prometheus' text exposition format (served on GET /metrics).

statsd counters are per-interval amounts; Prometheus wants counters that only go up. So counters
are exposed as `<name>_total`, the sum of every flush since the daemon started (negative amounts,
which statsd allows, are left out of it). Timers become summaries: quantiles from the last flush's
`percentThreshold` values and median, `_sum` and `_count` accumulated since start. Gauges and set
sizes are the last flush's values. DogStatsD tags become labels.

How names and families are written is exposition.py; what each kind exposes, its entry in
PROMETHEUS below. A series that leaves the flushes (the `delete*` options, the
console's `del*`) leaves /metrics too. The text is rendered at most once per flush, when a scrape
asks for it, in a worker thread (never on the event loop, never for nobody); a request then only
adds the daemon's own few lines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from . import jsfmt
from .exposition import Exposition, Labels, Sample, format_labels, format_value, metric_name, split_key
from .kinds import outputs
from .snapshot import Snapshot
from .timerstats import pct_suffix


class PrometheusView:
    """Accumulates flushes (flusher thread, cheap); renders the last one on demand (`refresh`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kept: dict[str, dict[str, Any]] = {}  # per metric kind: what it keeps across flushes
        self.last: Snapshot | None = None
        self.rendered: Snapshot | None = None
        self.text = ""

    @property
    def stale(self) -> bool:
        return self.last is not self.rendered

    def refresh(self) -> None:
        """Render the last flush if not done yet (call it off the event loop)."""
        with self.lock:
            snap, kept = self.last, self.kept
            if snap is None or snap is self.rendered:
                return
            text = self._render(snap, kept)
            self.text, self.rendered = text, snap

    def update(self, snap: Snapshot) -> None:
        kept = {
            kind.table: prom.accumulate(kind.table, self.kept.get(kind.table, {}), snap)
            for kind, prom in outputs("/metrics", PROMETHEUS)
        }
        with self.lock:
            self.kept, self.last = kept, snap

    @staticmethod
    def _render(snap: Snapshot, kept: dict[str, dict[str, Any]]) -> str:
        out = Exposition()
        for kind, prom in outputs("/metrics", PROMETHEUS):
            prom.expose(out, kind.table, snap, kept.get(kind.table, {}))
        own = {f"statsd_{metric_name(k)}": v for k, v in snap.statsd_metrics.items()}
        own["statsd_num_stats"] = snap.num_stats
        own["statsd_last_flush_timestamp_seconds"] = snap.timestamp
        for name, value in own.items():
            family = out.family(name, "gauge", "own")
            out.add(family, [(family, (), value)], name)
        return out.text()

    def render(self, own: Iterable[tuple[str, str, Labels, float]] = ()) -> str:
        """The last flush's text, then `own`: (name, type, labels, value) samples of the daemon."""
        families: dict[str, tuple[str, list[str]]] = {}
        for name, kind, labels, value in own:
            families.setdefault(name, (kind, []))[1].append(
                f"{name}{format_labels(labels)} {format_value(value)}"
            )
        extra = "".join(
            f"# TYPE {name} {kind}\n" + "".join(line + "\n" for line in lines)
            for name, (kind, lines) in families.items()
        )
        with self.lock:
            return self.text + extra


# --- what each metric kind exposes ---------------------------------------------------------


def keep_nothing(table: str, previous: Mapping[str, Any], snap: Snapshot) -> dict[str, Any]:
    return {}


def summary_gauges(out: Exposition, table: str, snap: Snapshot, kept: Mapping[str, Any]) -> None:
    """Each summary value of the last flush as a gauge (a family that meets another kind's name
    gets `_<kind>` appended: `x_set`)."""
    for key, value in snap.summaries[table].items():
        statsd_name, name, labels = split_key(key)
        family = out.family(name, "gauge", table[:-1])
        out.add(family, [(family, labels, value)], statsd_name)


def counter_totals(table: str, previous: Mapping[str, float], snap: Snapshot) -> dict[str, float]:
    """The sum since start; negative amounts left out, as a Prometheus counter only goes up."""
    return {k: previous.get(k, 0) + max(v, 0) for k, v in snap.tables[table].items()}


def expose_counters(out: Exposition, table: str, snap: Snapshot, kept: Mapping[str, float]) -> None:
    for key, total in kept.items():
        statsd_name, name, labels = split_key(key)
        family = out.family(name + "_total", "counter", "counter")
        out.add(family, [(family, labels, total)], statsd_name)


def timer_totals(
    table: str, previous: Mapping[str, tuple[float, float]], snap: Snapshot
) -> dict[str, tuple[float, float]]:
    """Each timer's `_sum` and `_count` since start."""
    kept = {}
    for key, data in snap.summaries[table].items():
        total, count = previous.get(key, (0, 0))
        add_sum, add_count = data.get("sum", 0), data.get("count", 0)
        kept[key] = (
            total + (add_sum if isinstance(add_sum, int | float) else 0),
            count + (add_count if isinstance(add_count, int | float) else 0),
        )
    return kept


def expose_timers(
    out: Exposition, table: str, snap: Snapshot, kept: Mapping[str, tuple[float, float]]
) -> None:
    """A summary: quantiles from the last flush (its median and `percentThreshold` uppers)."""
    for key, data in snap.summaries[table].items():
        statsd_name, name, labels = split_key(key)
        family = out.family(name, "summary", "timer")
        samples: list[Sample] = []
        median = data.get("median")
        if isinstance(median, int | float):
            samples.append((family, (*labels, ("quantile", "0.5")), median))
        for pct in snap.pct_threshold:
            upper = data.get("upper_" + pct_suffix(pct))
            if pct > 0 and isinstance(upper, int | float):
                samples.append(
                    (family, (*labels, ("quantile", str(Decimal(jsfmt.number(pct)) / 100))), upper)
                )
        total, count = kept.get(key, (0, 0))
        samples.append((family + "_sum", labels, total))
        samples.append((family + "_count", labels, count))
        out.add(family, samples, statsd_name)


class Exposed(NamedTuple):
    # (exposition, the kind's table name, the flush, what it keeps) -> its families written
    expose: Callable[[Exposition, str, Snapshot, Mapping[str, Any]], None] = summary_gauges
    # (the kind's table name, what it kept, the flush) -> what it keeps across flushes
    accumulate: Callable[[str, Mapping[str, Any], Snapshot], dict[str, Any]] = keep_nothing


# By the kind's table name; a kind without an entry is not on /metrics (kinds.outputs logs it).
PROMETHEUS: dict[str, Exposed] = {
    "counters": Exposed(expose_counters, counter_totals),
    "timers": Exposed(expose_timers, timer_totals),
    "gauges": Exposed(),
    "sets": Exposed(),
}
