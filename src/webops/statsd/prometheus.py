"""The flushes, as Prometheus' text exposition format (served on GET /metrics).

statsd counters are per-interval amounts; Prometheus wants counters that only go up. So counters
are exposed as `<name>_total`, the sum of every flush since the daemon started (negative amounts,
which statsd allows, are left out of it). Timers become summaries: quantiles from the last flush's
`percentThreshold` values and median, `_sum` and `_count` accumulated since start. Gauges and set
sizes are the last flush's values. DogStatsD tags become labels.

Each family's `# TYPE` line names exactly the samples it covers (`# TYPE x_total counter`), as
Prometheus' own parser requires. Two statsd series can meet under one Prometheus name: when the
kinds differ the later kind's name gets a suffix (`x_gauge`), when they are of one kind the later
series gets a `statsd_name` label with its own statsd name; either way no sample is written twice
and no family is typed twice. A series that leaves the flushes (the `delete*` options, the
console's `del*`) leaves /metrics too. The text is rendered at most once per flush, when a scrape
asks for it, in a worker thread (never on the event loop, never for nobody); a request then only
adds the daemon's own few lines.
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
Sample = tuple[str, Labels, float]  # (sample name, labels, value)


def metric_name(name: str) -> str:
    """A statsd name made Prometheus-safe: `api.get-user` -> `api_get_user`."""
    safe = _INVALID_NAME.sub("_", name) or "_"
    return "_" + safe if safe[0].isdigit() else safe


def split_key(key: str) -> tuple[str, str, Labels]:
    """`name;k=v;flag` -> (statsd name, prometheus name, labels); a bare tag gets "true"."""
    name, *tags = key.split(";")
    labels = []
    for tag in tags:
        k, sep, v = tag.partition("=")
        label = _INVALID_LABEL.sub("_", k) or "_"
        if label[0].isdigit():
            label = "_" + label
        labels.append((label, v if sep else "true"))
    return name, metric_name(name), tuple(sorted(labels))


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    esc = [(k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")) for k, v in labels]
    return "{" + ",".join(f'{k}="{v}"' for k, v in esc) + "}"


def _value(v: float) -> str:
    return "NaN" if v != v else number(v).replace("Infinity", "Inf")


class Exposition:
    """Families being written: claims names so no two kinds share one, no series appears twice."""

    SUFFIXES = {"summary": ("", "_sum", "_count")}

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, list[str]]] = {}  # name -> (type, statsd kind, lines)
        self.owner: dict[str, str] = {}  # every sample name -> the family that writes it
        self.seen: set[tuple[str, Labels]] = set()

    def family(self, base: str, kind: str, tag: str) -> str:
        """The family name for a series of Prometheus type `kind` and statsd kind `tag` wanting
        `base`: `base` if it (and the names of its samples) is free or already used by the same
        kinds; otherwise `base_<tag>`."""
        for name in (base, f"{base}_{tag}", f"{base}_{tag}_"):
            samples = [name + s for s in self.SUFFIXES.get(kind, ("",))]
            if all(self.owner.get(s, name) == name for s in samples) and (
                name not in self.families or self.families[name][:2] == (kind, tag)
            ):
                for s in samples:
                    self.owner[s] = name
                self.families.setdefault(name, (kind, tag, []))
                return name
        raise AssertionError("unreachable: the last candidate is always free")

    def add(self, family: str, samples: Iterable[Sample], statsd_name: str) -> None:
        """One series' samples; relabelled with its statsd name if one of them is already taken."""
        samples = list(samples)
        if any((name, labels) in self.seen for name, labels, _ in samples):
            extra = (("statsd_name", statsd_name),)
            samples = [(name, tuple(sorted(labels + extra)), v) for name, labels, v in samples]
            if any((name, labels) in self.seen for name, labels, _ in samples):
                return  # the very same series twice: keep the first
        lines = self.families[family][2]
        for name, labels, value in samples:
            self.seen.add((name, labels))
            lines.append(f"{name}{_labels(labels)} {_value(value)}")

    def text(self) -> str:
        out = []
        for name, (kind, _, lines) in self.families.items():
            if lines:
                out.append(f"# TYPE {name} {kind}")
                out.extend(lines)
        return "\n".join(out) + "\n" if out else ""


class PrometheusView:
    """Accumulates flushes (flusher thread, cheap); renders the last one on demand (`refresh`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counter_totals: dict[str, float] = {}
        self.timer_sums: dict[str, float] = {}
        self.timer_counts: dict[str, float] = {}
        self.last: Snapshot | None = None
        self.rendered: Snapshot | None = None
        self.text = ""

    @property
    def stale(self) -> bool:
        return self.last is not self.rendered

    def refresh(self) -> None:
        """Render the last flush if not done yet (call it off the event loop)."""
        with self.lock:
            snap, totals = self.last, (self.counter_totals, self.timer_sums, self.timer_counts)
            if snap is None or snap is self.rendered:
                return
            text = self._render(snap, *totals)
            self.text, self.rendered = text, snap

    def update(self, snap: Snapshot) -> None:
        totals = {k: self.counter_totals.get(k, 0) + max(v, 0) for k, v in snap.counters.items()}
        sums, counts = {}, {}
        for key, data in snap.timer_data.items():
            add_sum, add_count = data.get("sum", 0), data.get("count", 0)
            sums[key] = self.timer_sums.get(key, 0) + (add_sum if isinstance(add_sum, int | float) else 0)
            counts[key] = self.timer_counts.get(key, 0) + (
                add_count if isinstance(add_count, int | float) else 0
            )
        with self.lock:
            self.counter_totals, self.timer_sums, self.timer_counts = totals, sums, counts
            self.last = snap

    @staticmethod
    def _render(
        snap: Snapshot, counter_totals: dict[str, float], timer_sums: dict[str, float], timer_counts: dict
    ) -> str:
        out = Exposition()
        for key, total in counter_totals.items():
            statsd_name, name, labels = split_key(key)
            family = out.family(name + "_total", "counter", "counter")
            out.add(family, [(family, labels, total)], statsd_name)
        for key, data in snap.timer_data.items():
            statsd_name, name, labels = split_key(key)
            family = out.family(name, "summary", "timer")
            samples: list[Sample] = []
            median = data.get("median")
            if isinstance(median, int | float):
                samples.append((family, (*labels, ("quantile", "0.5")), median))
            for pct in snap.pct_threshold:
                upper = data.get("upper_" + pct_suffix(pct))
                if pct > 0 and isinstance(upper, int | float):
                    samples.append((family, (*labels, ("quantile", str(Decimal(number(pct)) / 100))), upper))
            samples.append((family + "_sum", labels, timer_sums.get(key, 0)))
            samples.append((family + "_count", labels, timer_counts.get(key, 0)))
            out.add(family, samples, statsd_name)
        for table, tag in ((snap.gauges, "gauge"), ({k: len(v) for k, v in snap.sets.items()}, "set")):
            for key, value in table.items():
                statsd_name, name, labels = split_key(key)
                family = out.family(name, "gauge", tag)
                out.add(family, [(family, labels, value)], statsd_name)
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
            families.setdefault(name, (kind, []))[1].append(f"{name}{_labels(labels)} {_value(value)}")
        extra = "".join(
            f"# TYPE {name} {kind}\n" + "".join(line + "\n" for line in lines)
            for name, (kind, lines) in families.items()
        )
        with self.lock:
            return self.text + extra
