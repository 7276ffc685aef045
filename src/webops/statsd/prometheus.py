"""The flushes, as Prometheus' text exposition format (served on GET /metrics).

statsd counters are per-interval amounts; Prometheus wants counters that only go up. So counters
are exposed as `<name>_total`, the sum of every flush since the daemon started (negative amounts,
which statsd allows, are left out of it). Timers become summaries (`prometheus.timers`, the
default): quantiles from the last flush's `percentThreshold` values and median, `_sum` and
`_count` accumulated since start; or histograms, whose cumulative bucket counts, `_sum` and
`_count` accumulate since start from each flush's raw samples, so that Prometheus can add them up
across a fleet (`histogram_quantile` over `sum by (le)`), which no summary allows; or both, the
histogram then named `<name>_histogram`. Gauges and set sizes are the last flush's values.
DogStatsD tags become labels; a statsd_exporter mapping file (prometheus_mapping.py) renames
series, adds labels, drops series, and picks summary or histogram per timer.

How names and families are written is exposition.py; what each kind exposes, its entry in
PROMETHEUS below. A series that leaves the flushes (the `delete*` options, the
console's `del*`) leaves /metrics too. The text is rendered at most once per flush, when a scrape
asks for it, in a worker thread (never on the event loop, never for nobody); a request then only
adds the daemon's own few lines.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from . import jsfmt, prometheus_mapping
from .config import PROMETHEUS_KEYS
from .exposition import Exposition, Labels, Sample, format_labels, format_value, metric_name, split_key
from .kinds import outputs
from .prometheus_mapping import Mapped, Mapper
from .snapshot import Snapshot
from .timerstats import pct_suffix


class Named(NamedTuple):
    """A series' names: statsd's, and Prometheus' (a mapping rule's, or made safe from statsd's)."""

    statsd_name: str
    name: str
    labels: Labels
    mapped: Mapped | None  # the rule that named it, if one did


@dataclass(frozen=True)
class PrometheusSettings:
    """The `prometheus` config key, its mapping file read and compiled (settings.Config.prometheus)."""

    timers: str = "summary"  # summary, histogram or both
    buckets: tuple[float, ...] = tuple(PROMETHEUS_KEYS["buckets"].default)
    mapper: Mapper | None = None

    def named(self, key: str, metric_type: str) -> Named | None:
        """How series `key` (`name;tag=v`) of `metric_type` (counter, gauge, observer) is named on
        /metrics; None: a drop rule takes it off. A rule's labels win over DogStatsD tags of the
        same name, unless it says honor_labels (statsd_exporter's precedence)."""
        statsd_name, name, tags = split_key(key)
        mapped = self.mapper.map(statsd_name, metric_type) if self.mapper else None
        if mapped is None:
            return Named(statsd_name, name, tags, None)
        if mapped.drop:
            return None
        rule = dict(mapped.labels)
        labels = {**rule, **dict(tags)} if mapped.honor_labels else {**dict(tags), **rule}
        return Named(statsd_name, mapped.name, tuple(sorted(labels.items())), mapped)

    def observers(self, named: Named) -> tuple[str, ...]:
        """What a timer is exposed as: its rule's observer_type, else `timers`."""
        if named.mapped and named.mapped.observer:
            return (named.mapped.observer,)
        return ("summary", "histogram") if self.timers == "both" else (self.timers,)

    def bounds(self, named: Named) -> tuple[float, ...]:
        return (named.mapped and named.mapped.buckets) or self.buckets


def configured(section: Mapping[str, Any], cache_size: int) -> PrometheusSettings:
    """The checked `prometheus` section as settings; a bad mapping file is a ConfigError."""
    path = section["mapping"]
    mapper = prometheus_mapping.load(path, cache_size) if path else None
    return PrometheusSettings(section["timers"], tuple(section["buckets"]), mapper)


class PrometheusView:
    """Accumulates flushes (flusher thread, cheap); renders the last one on demand (`refresh`)."""

    def __init__(
        self, settings: PrometheusSettings | None = None, reserved: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings or PrometheusSettings()
        self.reserved = dict(reserved or {})  # families a scrape adds (render's `own`): name -> type
        self.lock = threading.Lock()
        self.kept: dict[str, dict[str, Any]] = {}  # per metric kind: what it keeps across flushes
        # per metric kind: what a previous process kept (prometheus.stateFile) of series not in a
        # flush of this one yet; a series takes its totals back when it comes back
        self.restored: dict[str, dict[str, Any]] = {}
        self.last: Snapshot | None = None
        self.rendered: Snapshot | None = None
        self.text = ""

    @property
    def stale(self) -> bool:
        return self.last is not self.rendered

    def refresh(self) -> None:
        """Render the last flush if not done yet (call it off the event loop)."""
        with self.lock:
            snap, kept, settings = self.last, self.kept, self.settings
            if snap is None or snap is self.rendered:
                return
            text = self._render(snap, kept, settings, self.reserved)
            self.text, self.rendered = text, snap

    def configure(self, settings: PrometheusSettings) -> None:
        """New settings (start, a reload): the next scrape renders the last flush with them; a
        timer whose buckets changed starts its histogram again (a counter reset to Prometheus)."""
        with self.lock:
            if settings != self.settings:
                self.settings, self.rendered = settings, None

    def update(self, snap: Snapshot) -> None:
        settings = self.settings
        kept = {}
        for kind, prom in outputs("/metrics", PROMETHEUS):
            previous = self.kept.get(kind.table, {})
            if back := self.restored.get(kind.table):  # until every restored series came back
                previous = {**back, **previous}
            kept[kind.table] = now = prom.accumulate(kind.table, previous, snap, settings)
            if back:
                self.restored[kind.table] = {k: v for k, v in back.items() if k not in now}
        with self.lock:
            self.kept, self.last = kept, snap

    def restore(self, kept: dict[str, dict[str, Any]]) -> None:
        """A previous process's totals (at start, before the first flush): each series goes on
        from them when it is next flushed, so Prometheus sees no counter reset."""
        self.restored = {table: dict(series) for table, series in kept.items()}

    def saved(self) -> dict[str, dict[str, Any]]:
        """What a state file keeps (in the flusher's thread, after `update`): the totals, and the
        restored ones of series not flushed since the start (a second restart keeps them too)."""
        tables = self.kept.keys() | self.restored.keys()
        return {t: {**self.restored.get(t, {}), **self.kept.get(t, {})} for t in tables}

    @staticmethod
    def _render(
        snap: Snapshot,
        kept: dict[str, dict[str, Any]],
        settings: PrometheusSettings,
        reserved: Mapping[str, str],
    ) -> str:
        """The daemon's own names are claimed first: a statsd series named like one gets a suffix."""
        out = Exposition()
        for name, prometheus_type in reserved.items():
            out.family(name, prometheus_type, "own")
        own = {f"statsd_{metric_name(k)}": v for k, v in snap.statsd_metrics.items()}
        own["statsd_num_stats"] = snap.num_stats
        own["statsd_last_flush_timestamp_seconds"] = snap.timestamp
        families = {name: out.family(name, "gauge", "own") for name in own}
        for kind, prom in outputs("/metrics", PROMETHEUS):
            prom.expose(out, kind.table, snap, kept.get(kind.table, {}), settings)
        for name, value in own.items():
            out.add(families[name], (), [(families[name], (), value)], name)
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


def keep_nothing(
    table: str, previous: Mapping[str, Any], snap: Snapshot, settings: PrometheusSettings
) -> dict[str, Any]:
    return {}


def summary_gauges(
    out: Exposition, table: str, snap: Snapshot, kept: Mapping[str, Any], settings: PrometheusSettings
) -> None:
    """Each summary value of the last flush as a gauge (a family that meets another kind's name
    gets `_<kind>` appended: `x_set`)."""
    for key, value in snap.summaries[table].items():
        named = settings.named(key, "gauge")
        if named is not None:
            family = out.family(named.name, "gauge", table[:-1])
            out.add(family, named.labels, [(family, (), value)], named.statsd_name)


def counter_totals(
    table: str, previous: Mapping[str, float], snap: Snapshot, settings: PrometheusSettings
) -> dict[str, float]:
    """The sum since start; negative amounts left out, as a Prometheus counter only goes up."""
    return {k: previous.get(k, 0) + max(v, 0) for k, v in snap.tables[table].items()}


def expose_counters(
    out: Exposition, table: str, snap: Snapshot, kept: Mapping[str, float], settings: PrometheusSettings
) -> None:
    """`<name>_total`; a mapping rule's name already ending in `_total` (statsd_exporter's files
    name counters so) is kept as it is."""
    for key, total in kept.items():
        named = settings.named(key, "counter")
        if named is None:
            continue
        name = named.name if named.mapped and named.name.endswith("_total") else named.name + "_total"
        family = out.family(name, "counter", "counter")
        out.add(family, named.labels, [(family, (), total)], named.statsd_name)


@dataclass(frozen=True, slots=True)
class Histogram:
    """A timer's histogram since start (or since its buckets last changed)."""

    bounds: tuple[float, ...]  # upper bounds, ascending; +Inf is implied
    cumulative: tuple[float, ...]  # observations at or under each bound
    total: float  # `_sum`
    count: float  # `_count`, the +Inf bucket


def observe(
    before: Histogram | None, bounds: tuple[float, ...], samples: Sequence[float], count: float
) -> Histogram:
    """`before` with one flush's samples added. `samples` must be sorted (a flush's are: the timer
    statistics sort them in place), so each bucket is one bisection. A sampled timer's samples
    each stand for `count / len(samples)` observations (their `1/rate`): exact when one rate was
    used in the interval, an average over the interval's samples when several were. Different
    bounds than `before`'s start the histogram again."""
    if before is None or before.bounds != bounds:
        before = Histogram(bounds, (0.0,) * len(bounds), 0.0, 0.0)
    n = len(samples)
    if n == 0 or count <= 0:
        return before
    weight = count / n  # 1.0 exactly without sampling: whole counts stay whole
    cumulative = tuple(
        c + min(count, bisect_right(samples, b) * weight)
        for c, b in zip(before.cumulative, bounds, strict=True)
    )
    return Histogram(bounds, cumulative, before.total + sum(samples) * weight, before.count + count)


@dataclass(frozen=True, slots=True)
class TimerKept:
    total: float  # the summary's `_sum` since start (Etsy's sum of the samples)
    count: float  # the summary's `_count` since start
    histogram: Histogram | None  # while the timer is exposed as a histogram


NO_TIMER = TimerKept(0, 0, None)


def timer_totals(
    table: str, previous: Mapping[str, TimerKept], snap: Snapshot, settings: PrometheusSettings
) -> dict[str, TimerKept]:
    """Each timer's summary `_sum` and `_count` since start, and its histogram if it has one."""
    kept = {}
    raw = snap.tables[table]
    # without a mapping file or histograms in `timers`, no timer is a histogram: no names to
    # work out (a flush's 10k timers share the GIL with the backends writing the same flush)
    histograms = settings.mapper is not None or settings.timers != "summary"
    for key, data in snap.summaries[table].items():
        before = previous.get(key, NO_TIMER)
        add_sum, add_count = data.get("sum", 0), data.get("count", 0)
        histogram = None
        named = settings.named(key, "observer") if histograms else None
        if named is not None and "histogram" in settings.observers(named):
            series = raw.get(key)
            samples, count = (series.samples, series.count) if series is not None else ((), 0)
            histogram = observe(before.histogram, settings.bounds(named), samples, count)
        kept[key] = TimerKept(
            before.total + (add_sum if isinstance(add_sum, int | float) else 0),
            before.count + (add_count if isinstance(add_count, int | float) else 0),
            histogram,
        )
    return kept


def expose_timers(
    out: Exposition, table: str, snap: Snapshot, kept: Mapping[str, TimerKept], settings: PrometheusSettings
) -> None:
    """A summary (quantiles from the last flush: its median and `percentThreshold` uppers), a
    histogram (`_bucket{le}` since start), or both: the histogram then `<name>_histogram`."""
    for key, data in snap.summaries[table].items():
        named = settings.named(key, "observer")
        if named is None:
            continue
        state = kept.get(key, NO_TIMER)
        observers = settings.observers(named)
        if "summary" in observers:
            expose_summary(out, named, data, state, snap.pct_threshold)
        if "histogram" in observers and state.histogram is not None:
            base = named.name + "_histogram" if len(observers) > 1 else named.name
            expose_histogram(out, base, named, state.histogram)


MEDIAN: Labels = (("quantile", "0.5"),)


@lru_cache(maxsize=256)
def quantiles(pcts: tuple[float, ...]) -> tuple[tuple[str, Labels], ...]:
    """(the summary's key, its quantile label) for each positive `percentThreshold`, once per
    setting rather than per timer: `90` -> ("upper_90", quantile="0.9")."""
    return tuple(
        ("upper_" + pct_suffix(pct), (("quantile", str(Decimal(jsfmt.number(pct)) / 100)),))
        for pct in pcts
        if pct > 0
    )


@lru_cache(maxsize=256)
def les(bounds: tuple[float, ...]) -> tuple[Labels, ...]:
    """The `le` label of each bucket, +Inf's last, once per bucket layout rather than per timer."""
    return (*((("le", format_value(b)),) for b in bounds), (("le", "+Inf"),))


def expose_summary(
    out: Exposition, named: Named, data: Mapping[str, Any], state: TimerKept, pcts: Sequence[float]
) -> None:
    family = out.family(named.name, "summary", "timer")
    samples: list[Sample] = []
    median = data.get("median")
    if isinstance(median, int | float):
        samples.append((family, MEDIAN, median))
    for key, quantile in quantiles(tuple(pcts)):
        upper = data.get(key)
        if isinstance(upper, int | float):
            samples.append((family, quantile, upper))
    samples.append((family + "_sum", (), state.total))
    samples.append((family + "_count", (), state.count))
    out.add(family, named.labels, samples, named.statsd_name)


def expose_histogram(out: Exposition, base: str, named: Named, histogram: Histogram) -> None:
    family = out.family(base, "histogram", "timer")
    bucket = family + "_bucket"
    samples: list[Sample] = [
        (bucket, le, c)
        for le, c in zip(les(histogram.bounds), (*histogram.cumulative, histogram.count), strict=True)
    ]
    samples.append((family + "_sum", (), histogram.total))
    samples.append((family + "_count", (), histogram.count))
    out.add(family, named.labels, samples, named.statsd_name)


Expose = Callable[[Exposition, str, Snapshot, Mapping[str, Any], PrometheusSettings], None]
Accumulate = Callable[[str, Mapping[str, Any], Snapshot, PrometheusSettings], dict[str, Any]]


class Exposed(NamedTuple):
    # (exposition, the kind's table name, the flush, what it keeps, the settings) -> its families
    expose: Expose = summary_gauges
    # (the kind's table name, what it kept, the flush, the settings) -> what it keeps across flushes
    accumulate: Accumulate = keep_nothing


# By the kind's table name; a kind without an entry is not on /metrics (kinds.outputs logs it).
PROMETHEUS: dict[str, Exposed] = {
    "counters": Exposed(expose_counters, counter_totals),
    "timers": Exposed(expose_timers, timer_totals),
    "gauges": Exposed(),
    "sets": Exposed(),
}
