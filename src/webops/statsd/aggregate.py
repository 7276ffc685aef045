"""The daemon's state between flushes, and how each sample changes it (Etsy's stats.js semantics).

`Aggregator.ingest` is the hot path: it caches what it learns about repeated names and repeated
`value|type` texts (real statsd traffic is very repetitive), and does everything heavy (sorting
timers, percentiles) later, on the `Interval` handed out by `take()`.

Reader processes aggregate into a `Batch` (the same code, with gauge writes recorded as
operations so their order survives) and the main process `merge`s batches into its aggregator.

Counters, timers and sets do not care in which order their samples come; gauges do (`g:100|g`
then `g:+1|g` is 101, the other way round 100). Readers take turns at the socket and number each
read (`seal(seq)`), so the main process applies gauge operations in the order the kernel queued
the datagrams, whichever reader handed them over first: the same result as a single reader.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .protocol import (
    BAD,
    EVENT_PREFIXES,
    BadLine,
    Value,
    line_key,
    parse_values,
    sanitize_key,
    split_packet,
)

GAP_SECONDS = 2.0  # a numbered read not handed over by then is taken as lost (its reader died)
CACHE_MAX = 50_000  # entries per parse cache; a full cache is emptied and fills again
CACHE_TEXT_MAX = 200  # longer names / value texts are parsed every time, so a cache holds at most
# CACHE_MAX * CACHE_TEXT_MAX characters (~10 MiB) whatever the traffic
BATCH_BAD_LINES = 10  # bad lines a batch carries for the log (all of them are counted)


@dataclass
class AggregationSettings:
    """The config keys that decide how samples accumulate and what a flush resets."""

    prefix_stats: str = "statsd"
    sanitize: bool = True
    delete_counters: bool = False
    delete_timers: bool = False
    delete_gauges: bool = False
    delete_sets: bool = False
    gauges_max_ttl: int = 1
    key_flush: bool = False  # count keys for Etsy's keyFlush log
    max_series: int = 500_000  # distinct series kept; past it, new series are refused and counted


@dataclass
class Interval:
    """Everything accepted during one flush interval, detached from the live aggregator."""

    timestamp: int
    counters: dict[str, float]
    timers: dict[str, list[float]]
    timer_counters: dict[str, float]
    gauges: dict[str, float]
    sets: dict[str, set[str]]


def merge_intervals(first: Interval, second: Interval) -> Interval:
    """Both intervals as one, stamped with the first's time (new containers: both stay as they are).
    Gauges take the later value; sets the union."""
    counters = dict(first.counters)
    for k, v in second.counters.items():
        counters[k] = counters.get(k, 0) + v
    timers = {k: list(v) for k, v in first.timers.items()}
    timer_counters = dict(first.timer_counters)
    for k, values in second.timers.items():
        timers.setdefault(k, []).extend(values)
        timer_counters[k] = timer_counters.get(k, 0) + second.timer_counters.get(k, 0)
    sets = {k: set(v) for k, v in first.sets.items()}
    for k, members in second.sets.items():
        sets.setdefault(k, set()).update(members)
    return Interval(
        first.timestamp, counters, timers, timer_counters, {**first.gauges, **second.gauges}, sets
    )


@dataclass
class Totals:
    """Cumulative counts since start (the console's `stats` and benchmarks read these)."""

    packets_received: int = 0
    metrics_received: int = 0
    bad_lines_seen: int = 0
    metrics_refused: int = 0  # updates of new series refused because maxSeries was reached
    events_seen: int = 0  # DogStatsD events (_e{...}) and service checks (_sc|...): not metrics
    last_msg_seen: float = 0.0

    def add(self, other: Totals) -> None:
        self.packets_received += other.packets_received
        self.metrics_received += other.metrics_received
        self.bad_lines_seen += other.bad_lines_seen
        self.metrics_refused += other.metrics_refused
        self.events_seen += other.events_seen
        self.last_msg_seen = max(self.last_msg_seen, other.last_msg_seen)


GaugeOps = dict[str, tuple[float | None, float]]


@dataclass
class Batch:
    """What a reader process accumulated since its last hand-over (picklable).

    Gauges are kept as operations, `(absolute value or None, sum of deltas after it)`, grouped by
    the number of the read they came from (None: not numbered, applied at once), so that merging
    them in the main process gives what applying them one by one would have given.
    """

    counters: dict[str, float]
    timers: dict[str, list[float]]
    timer_counters: dict[str, float]
    gauge_reads: list[tuple[int | None, GaugeOps]]
    sets: dict[str, set[str]]
    totals: Totals
    key_counts: Counter[str]
    seqs: list[int] = field(default_factory=list)  # every numbered read in this batch
    bad_lines: list[BadLine] = field(default_factory=list)  # the first few, for the log
    packets: list[bytes] = field(default_factory=list)  # raw datagrams, for a repeater
    packets_dropped: int = 0  # datagrams not forwarded: the batch held FORWARD_MAX already


BadLineHook = Callable[[BadLine], None]


class Aggregator:
    """The main process's state: intake (`ingest`), readers' batches (`merge`), flushes (`take`)."""

    def __init__(
        self, settings: AggregationSettings | None = None, on_bad_line: BadLineHook | None = None
    ) -> None:
        self.on_bad_line = on_bad_line
        self.counters: dict[str, float] = {}
        self.timers: dict[str, list[float]] = {}
        self.timer_counters: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        self.next_seq = 0  # main: the next numbered read whose gauge operations may be applied
        self.seq_done: set[int] = set()
        self.seq_gauges: dict[int, GaugeOps] = {}
        self.gap_since: float | None = None
        self.gauge_ttl: dict[str, int] = {}
        self.sets: dict[str, set[str]] = {}
        self.totals = Totals()
        self.key_counts: Counter[str] = Counter()
        self.configure(settings or AggregationSettings())

    def configure(self, settings: AggregationSettings) -> None:
        """Apply (re)loaded settings; Etsy resets its own three counters to 0 when it does this."""
        self.settings = settings
        prefix = settings.prefix_stats
        self.k_packets = f"{prefix}.packets_received"
        self.k_metrics = f"{prefix}.metrics_received"
        self.k_bad = f"{prefix}.bad_lines_seen"
        self.k_lag = f"{prefix}.timestamp_lag"
        self.k_refused = f"{prefix}.metrics_refused"
        for k in (self.k_packets, self.k_metrics, self.k_bad):
            self.counters.setdefault(k, 0)
        self._keys: dict[str, str] = {}
        self._values: dict[str, tuple[Value, ...]] = {}

    # --- intake -------------------------------------------------------------------------

    def ingest(self, data: bytes, now: float = 0.0, packets: int = 1) -> None:
        """One packet, one chunk of complete TCP lines, or `packets` datagrams joined with newlines
        (readers do that: one decode and one split for a whole read loop)."""
        lines = split_packet(data)
        counters = self.counters
        # .get: the console may have deleted the daemon's own counters (`delcounters statsd.*`)
        counters[self.k_packets] = counters.get(self.k_packets, 0) + packets
        counters[self.k_metrics] = counters.get(self.k_metrics, 0) + len(lines)
        totals = self.totals
        totals.packets_received += packets
        totals.metrics_received += len(lines)
        if now:
            totals.last_msg_seen = now
        sanitize = self.settings.sanitize
        keys, values = self._keys, self._values
        timers, timer_counters, sets, gauge = self.timers, self.timer_counters, self.sets, self.gauge
        count_keys = self.settings.key_flush
        for line in lines:
            try:
                name, _, rest = line.partition(":")
                if "|#" in rest:  # tags: the key depends on the rest of the line
                    key, rest = line_key(name, rest, sanitize)
                else:
                    key = keys.get(name)  # type: ignore[assignment]
                    if key is None:
                        key = sanitize_key(name) if sanitize else name
                        if len(name) <= CACHE_TEXT_MAX:
                            if len(keys) >= CACHE_MAX:
                                keys.clear()  # the traffic changed: start over, the hot names come back
                            keys[name] = key
                parsed = values.get(rest)
                if parsed is None:
                    parsed = parse_values(rest)
                    if len(rest) <= CACHE_TEXT_MAX:
                        if len(values) >= CACHE_MAX:
                            values.clear()
                        values[rest] = parsed
                if count_keys:
                    self.key_counts[key] += 1
                for kind, value, rate, delta in parsed:
                    if kind == "c":
                        current = counters.get(key)
                        if current is not None:
                            counters[key] = current + value / rate  # type: ignore[operator]
                        elif self.admit():
                            counters[key] = value / rate  # type: ignore[operator]
                    elif kind == "ms":
                        samples = timers.get(key)
                        if samples is None:
                            if not self.admit():
                                continue
                            samples = timers[key] = []
                            timer_counters[key] = 0
                        samples.append(value)  # type: ignore[arg-type]
                        timer_counters[key] += 1 / rate
                    elif kind == "g":
                        gauge(key, value, delta)  # type: ignore[arg-type]
                    elif kind == "s":
                        members = sets.get(key)
                        if members is None:
                            if not self.admit():
                                continue
                            members = sets[key] = set()
                        members.add(value)  # type: ignore[arg-type]
                    elif line.startswith(EVENT_PREFIXES):
                        totals.events_seen += 1  # recognized, counted, not a metric
                        break
                    else:
                        assert kind == BAD
                        self.bad(BadLine(line, value))  # type: ignore[arg-type]
            except Exception as e:  # a parser bug must cost one line, never the rest of the packet
                self.bad(BadLine(line, f"internal error: {type(e).__name__}: {e}"))

    def series_count(self) -> int:
        """Client series held (the daemon's own stats do not count against maxSeries)."""
        gauges = self.gauge_count()
        own = sum(k in self.counters for k in (self.k_packets, self.k_metrics, self.k_bad, self.k_refused))
        own += self.k_lag in self.gauges
        return len(self.counters) - own + len(self.timers) + gauges + len(self.sets)

    def gauge_count(self) -> int:
        return len(self.gauges)

    def admit(self) -> bool:
        """May a new series be created? Past `max_series`, no: the update is counted and dropped."""
        if self.series_count() < self.settings.max_series:
            return True
        self.counters[self.k_refused] = self.counters.get(self.k_refused, 0) + 1
        self.totals.metrics_refused += 1
        return False

    def gauge(self, key: str, value: float, delta: bool) -> None:
        current = self.gauges.get(key)
        if current is None and not self.admit():
            return
        if delta and current is not None:
            value += current
            if value - value != 0:  # +1e308 twice: keep the last finite value, count the line as bad
                self.bad(BadLine(f"{key}:{value}|g", "gauge would overflow to infinity"))
                return
        if self.settings.delete_gauges:
            self.gauge_ttl[key] = self.settings.gauges_max_ttl
        self.gauges[key] = value

    def bad(self, item: BadLine) -> None:
        self.counters[self.k_bad] = self.counters.get(self.k_bad, 0) + 1
        self.totals.bad_lines_seen += 1
        self.report_bad(item)

    def report_bad(self, item: BadLine) -> None:
        """Where a bad line goes once counted: the log hook here, the batch in a reader."""
        if self.on_bad_line is not None:
            self.on_bad_line(item)

    # --- batches from reader processes --------------------------------------------------

    def merge(self, batch: Batch) -> None:
        """Fold a reader's batch into this (main) aggregator, as if its lines had come here."""
        counters = self.counters
        own = (self.k_packets, self.k_metrics, self.k_bad, self.k_refused)
        for key, value in batch.counters.items():
            current = counters.get(key)
            if current is not None:
                counters[key] = current + value
            elif key in own or self.admit():
                counters[key] = value
        for key, values in batch.timers.items():
            mine = self.timers.get(key)
            if mine is None:
                if not self.admit():
                    continue
                self.timers[key] = values
                self.timer_counters[key] = batch.timer_counters[key]
            else:
                mine.extend(values)
                self.timer_counters[key] += batch.timer_counters[key]
        for seq, ops in batch.gauge_reads:
            if seq is None:
                self.apply_gauge_ops(ops)
            else:
                self.seq_gauges[seq] = ops
        self.seq_done.update(batch.seqs)
        self.advance()
        for key, members in batch.sets.items():
            mine_set = self.sets.get(key)
            if mine_set is None:
                if self.admit():
                    self.sets[key] = members
            else:
                mine_set |= members
        self.totals.add(batch.totals)
        if batch.key_counts:
            self.key_counts.update(batch.key_counts)

    def apply_gauge_ops(self, ops: GaugeOps) -> None:
        for key, (absolute, deltas) in ops.items():
            if absolute is not None:
                self.gauge(key, absolute, False)
            if deltas or absolute is None:
                self.gauge(key, deltas, True)

    def advance(self, now: float | None = None, force: bool = False) -> None:
        """Apply the gauge operations of every numbered read up to the first one not handed over
        yet. A gap older than GAP_SECONDS (a reader died holding it), or `force` (shutdown, once
        every reader has handed over), is skipped."""
        now = time.monotonic() if now is None else now
        while self.seq_done:
            if self.next_seq in self.seq_done:
                self.seq_done.discard(self.next_seq)
                if (ops := self.seq_gauges.pop(self.next_seq, None)) is not None:
                    self.apply_gauge_ops(ops)
                self.next_seq += 1
                self.gap_since = None
                continue
            if self.gap_since is None:
                self.gap_since = now
            if not force and now - self.gap_since < GAP_SECONDS:
                return
            self.next_seq = min(self.seq_done)
        self.gap_since = None

    # --- flush --------------------------------------------------------------------------

    def take(self, timestamp: int, lag: float | None = None) -> Interval:
        """Detach this interval's data and reset for the next one, as Etsy's clear_metrics does.

        Counters/timers/sets are swapped out (cheap); idle ones are re-created empty unless the
        matching delete* option says to forget them. Gauges persist and are copied.
        """
        s = self.settings
        if lag is not None:
            self.gauges[self.k_lag] = lag
        interval = Interval(
            timestamp, self.counters, self.timers, self.timer_counters, dict(self.gauges), self.sets
        )
        own = (self.k_packets, self.k_metrics, self.k_bad)
        if s.delete_counters:
            self.counters = dict.fromkeys(own, 0)
        else:
            self.counters = dict.fromkeys(interval.counters, 0)
        if s.delete_timers:
            self.timers, self.timer_counters = {}, {}
        else:
            self.timers = {k: [] for k in interval.timers}
            self.timer_counters = dict.fromkeys(interval.timers, 0)
        self.sets = {} if s.delete_sets else {k: set() for k in interval.sets}
        if s.delete_gauges:
            for key in list(self.gauge_ttl):
                self.gauge_ttl[key] -= 1
                if self.gauge_ttl[key] < 1:
                    del self.gauge_ttl[key]
                    self.gauges.pop(key, None)
        return interval

    def take_key_counts(self) -> Counter[str]:
        counts, self.key_counts = self.key_counts, Counter()
        return counts

    # --- management console -------------------------------------------------------------

    def table(self, kind: str) -> dict:
        tables: dict[str, dict] = {
            "counters": self.counters,
            "timers": self.timers,
            "gauges": self.gauges,
            "sets": self.sets,
        }
        return tables[kind]

    def delete(self, kind: str, patterns: Iterable[str]) -> list[tuple[str, list[str]]]:
        """Etsy's delete_stats: exact names, or `folder.*` for everything under a prefix."""
        table = self.table(kind)
        result = []
        for pattern in patterns:
            matches = [pattern] if pattern in table else []
            if pattern.endswith(".*"):
                folder = pattern[:-1]
                matches += [k for k in table if k.startswith(folder) and k != pattern]
            for key in matches:
                table.pop(key, None)
                if kind == "timers":
                    self.timer_counters.pop(key, None)
                if kind == "gauges":
                    self.gauge_ttl.pop(key, None)
            result.append((pattern, matches))
        return result


class BatchAggregator(Aggregator):
    """A reader process's state: the same intake, with gauge writes kept as operations grouped by
    read number (`seal`), bad lines carried for the main process to log, and everything handed
    over by `take_batch` (the main process `merge`s it)."""

    def __init__(self, settings: AggregationSettings | None = None) -> None:
        self.gauge_ops: GaugeOps = {}  # the current read's
        self.gauge_reads: list[tuple[int | None, GaugeOps]] = []  # sealed reads
        self.seqs: list[int] = []
        self.bad_lines: list[BadLine] = []
        super().__init__(settings)

    def gauge_count(self) -> int:
        return len(self.gauge_ops) + sum(len(ops) for _, ops in self.gauge_reads)

    def gauge(self, key: str, value: float, delta: bool) -> None:
        op = self.gauge_ops.get(key)
        if op is None:
            if not self.admit():
                return
            op = (None, 0.0)
        absolute, deltas = op
        self.gauge_ops[key] = (absolute, deltas + value) if delta else (value, 0.0)

    def report_bad(self, item: BadLine) -> None:
        if len(self.bad_lines) < BATCH_BAD_LINES:
            self.bad_lines.append(item)

    def seal(self, seq: int) -> None:
        """What was ingested since the last seal came from read number `seq`."""
        self.seqs.append(seq)
        if self.gauge_ops:
            self.gauge_reads.append((seq, self.gauge_ops))
            self.gauge_ops = {}

    def take_batch(self) -> Batch:
        """Hand over everything since the last call."""
        if self.gauge_ops:  # ingested without a read number: no order to keep
            self.gauge_reads.append((None, self.gauge_ops))
        batch = Batch(
            self.counters,
            self.timers,
            self.timer_counters,
            self.gauge_reads,
            self.sets,
            self.totals,
            self.key_counts,
            self.seqs,
            self.bad_lines,
        )
        self.bad_lines = []
        self.counters = dict.fromkeys((self.k_packets, self.k_metrics, self.k_bad), 0)
        self.timers, self.timer_counters, self.gauge_ops, self.sets = {}, {}, {}, {}
        self.gauge_reads, self.seqs = [], []
        self.totals, self.key_counts = Totals(), Counter()
        return batch
