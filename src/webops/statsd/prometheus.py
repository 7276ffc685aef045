"""The flushes, as Prometheus' text exposition format (served on GET /metrics).

statsd counters are per-interval amounts; Prometheus wants counters that only go up. So counters
are exposed as `<name>_total`, the sum of every flush since the daemon started (negative amounts,
which statsd allows, are left out of it). Timers become summaries: quantiles from the last flush's
`percentThreshold` values and median, `_sum` and `_count` accumulated since start. Gauges and set
sizes are the last flush's values. DogStatsD tags become labels.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from decimal import Decimal

from .jsfmt import number
from .snapshot import Snapshot
from .timerstats import pct_suffix

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")

Labels = tuple[tuple[str, str], ...]


def metric_name(name: str) -> str:
    """A statsd name made Prometheus-safe: `api.get-user` -> `api_get_user`."""
    safe = _INVALID_NAME.sub("_", name) or "_"
    return "_" + safe if safe[0].isdigit() else safe


def split_key(key: str) -> tuple[str, Labels]:
    """`name;k=v;flag` -> (prometheus name, labels); a tag without a value gets "true"."""
    name, *tags = key.split(";")
    labels = []
    for tag in tags:
        k, sep, v = tag.partition("=")
        label = _INVALID_LABEL.sub("_", k) or "_"
        if label[0].isdigit():
            label = "_" + label
        labels.append((label, v if sep else "true"))
    return metric_name(name), tuple(sorted(labels))


def _labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    esc = [(k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")) for k, v in pairs]
    return "{" + ",".join(f'{k}="{v}"' for k, v in esc) + "}"


def _value(v: float) -> str:
    return "NaN" if v != v else number(v).replace("Infinity", "Inf")


class PrometheusView:
    """Accumulates flushes (flusher thread) and renders them (event loop); a lock keeps them apart."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counter_totals: dict[str, float] = {}
        self.timer_sums: dict[str, float] = {}
        self.timer_counts: dict[str, float] = {}
        self.last: Snapshot | None = None

    def update(self, snap: Snapshot) -> None:
        with self.lock:
            for key, value in snap.counters.items():
                self.counter_totals[key] = self.counter_totals.get(key, 0) + max(value, 0)
            for key, data in snap.timer_data.items():
                self.timer_sums[key] = self.timer_sums.get(key, 0) + data.get("sum", 0)  # type: ignore[operator]
                self.timer_counts[key] = self.timer_counts.get(key, 0) + data.get("count", 0)  # type: ignore[operator]
            self.last = snap

    def render(self, own: Iterable[tuple[str, str, Labels, float]] = ()) -> str:
        """The exposition text; `own` adds (name, type, labels, value) samples about the daemon."""
        families: dict[str, tuple[str, list[str]]] = {}

        def add(name: str, kind: str, line: str) -> None:
            family = families.setdefault(name, (kind, []))
            if family[0] == kind:
                family[1].append(line)

        with self.lock:
            snap = self.last
            for key, total in self.counter_totals.items():
                name, labels = split_key(key)
                add(name + "_total", "counter", f"{name}_total{_labels(labels)} {_value(total)}")
            if snap is not None:
                for key, data in snap.timer_data.items():
                    name, labels = split_key(key)
                    median = data.get("median")
                    if isinstance(median, int | float):
                        half = _labels(labels, (("quantile", "0.5"),))
                        add(name, "summary", f"{name}{half} {_value(median)}")
                    for pct in snap.pct_threshold:
                        upper = data.get("upper_" + pct_suffix(pct))
                        if pct > 0 and isinstance(upper, int | float):
                            q = (("quantile", str(Decimal(number(pct)) / 100)),)
                            add(name, "summary", f"{name}{_labels(labels, q)} {_value(upper)}")
                    add(name, "summary", f"{name}_sum{_labels(labels)} {_value(self.timer_sums.get(key, 0))}")
                    add(
                        name,
                        "summary",
                        f"{name}_count{_labels(labels)} {_value(self.timer_counts.get(key, 0))}",
                    )
                for key, value in snap.gauges.items():
                    name, labels = split_key(key)
                    add(name, "gauge", f"{name}{_labels(labels)} {_value(value)}")
                for key, members in snap.sets.items():
                    name, labels = split_key(key)
                    add(name, "gauge", f"{name}{_labels(labels)} {len(members)}")
                for key, value in snap.statsd_metrics.items():
                    add(f"statsd_{metric_name(key)}", "gauge", f"statsd_{metric_name(key)} {_value(value)}")
                add("statsd_num_stats", "gauge", f"statsd_num_stats {snap.num_stats}")
                add(
                    "statsd_last_flush_timestamp_seconds",
                    "gauge",
                    f"statsd_last_flush_timestamp_seconds {snap.timestamp}",
                )
        for name, kind, labels, value in own:
            add(name, kind, f"{name}{_labels(labels)} {_value(value)}")
        out = []
        for name, (kind, lines) in families.items():
            family = name.removesuffix("_total") if kind == "counter" else name
            out.append(f"# TYPE {family} {kind}")
            out.extend(lines)
        return "\n".join(out) + "\n"
