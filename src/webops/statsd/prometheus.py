"""The flushes, as Prometheus' text exposition format (served on GET /metrics).

statsd counters are per-interval amounts; Prometheus wants counters that only go up. So counters
are exposed as `<name>_total`, the sum of every flush since the daemon started (negative amounts,
which statsd allows, are left out of it). Timers become summaries: quantiles from the last flush's
`percentThreshold` values and median, `_sum` and `_count` accumulated since start. Gauges and set
sizes are the last flush's values. DogStatsD tags become labels.

How names and families are written is exposition.py; what each kind exposes, its module in
kinds/. A series that leaves the flushes (the `delete*` options, the
console's `del*`) leaves /metrics too. The text is rendered at most once per flush, when a scrape
asks for it, in a worker thread (never on the event loop, never for nobody); a request then only
adds the daemon's own few lines.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from .exposition import Exposition, Labels, format_labels, format_value, metric_name
from .kinds import KINDS
from .snapshot import Snapshot


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
        kept = {kind.table: kind.accumulate(self.kept.get(kind.table, {}), snap) for kind in KINDS}
        with self.lock:
            self.kept, self.last = kept, snap

    @staticmethod
    def _render(snap: Snapshot, kept: dict[str, dict[str, Any]]) -> str:
        out = Exposition()
        for kind in KINDS:
            kind.expose(out, snap, kept.get(kind.table, {}))
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
