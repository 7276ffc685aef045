"""The daemon's state between flushes, and how each sample changes it (Etsy's stats.js semantics).

`Aggregator.ingest` is the hot path: it caches what it learns about repeated names and repeated
`value|type` texts (real statsd traffic is very repetitive), and does everything heavy (sorting
timers, percentiles) later, on the `Interval` handed out by `take()`.

What each metric type means (parsing a value, accumulating, merging, resetting) is its module
in kinds/; this module is the frame around them: the caches, maxSeries, the daemon's own stats.

Reader processes aggregate into a `Batch` (the same code, with the writes of ordered kinds,
gauges, recorded as operations so their order survives) and the main process `merge`s batches
into its aggregator.

Counters, timers and sets do not care in which order their samples come; gauges do (`g:100|g`
then `g:+1|g` is 101, the other way round 100). Readers take turns at the socket and number each
read (`seal(seq)`), so the main process applies gauge operations in the order the kernel queued
the datagrams, whichever reader handed them over first: the same result as a single reader.
"""

from __future__ import annotations

import functools
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .kinds import BY_CODE, KINDS, default_options
from .kinds.base import Kind
from .protocol import EVENT_PREFIXES, BadLine, line_key, parse_values, sanitize_key, split_packet

GAP_SECONDS = 2.0  # a numbered read not handed over by then is taken as lost (its reader died)
CACHE_MAX = 50_000  # entries per parse cache; a full cache is emptied and fills again
CACHE_TEXT_MAX = 200  # longer names / value texts are parsed every time, so a cache holds at most
# CACHE_MAX * CACHE_TEXT_MAX characters (~10 MiB) whatever the traffic
BATCH_BAD_LINES = 10  # bad lines a batch carries for the log (all of them are counted)
# The lines the native fast path leaves to the reference parser (bad lines, several values,
# DogStatsD extras, unusual numbers) wait in the slow lane, parsed a slice at a time so the event
# loop serves the console, /health and the flush timer between slices.
SLOW_SLICE_BYTES = 4096  # a slice ends at the first newline past this many bytes
SLOW_MAX_BYTES = 8 << 20  # lines waiting past this are shed and counted (statsd.lines_shed)


@dataclass
class AggregationSettings:
    """The config keys that decide how samples accumulate and what a flush resets."""

    prefix_stats: str = "statsd"
    sanitize: bool = True
    deletes: frozenset[str] = frozenset()  # kinds (tables) whose idle series a flush forgets
    options: Mapping[str, Any] = field(default_factory=default_options)  # the kinds' own keys
    key_flush: bool = False  # count keys for Etsy's keyFlush log
    max_series: int = 500_000  # distinct series kept; past it, new series are refused and counted
    # Members a set keeps an interval; past it, new members are refused and counted. 100,000: one
    # full set of 16-character members is ~10 MiB (a parse cache's size), and 10,000 distinct
    # values a second at the default 10 s flush (unique users, clients, IPs) is generous.
    max_set_members: int = 100_000


@dataclass
class Interval:
    """Everything accepted during one flush interval, detached from the live aggregator: one
    table per metric kind (`counters`, `timers`, ...), series key -> the kind's state."""

    timestamp: int
    tables: dict[str, dict[str, Any]]
    time_ms: int = 0  # the exact time it ends (ms): sub-second flushes share a `timestamp`

    def __post_init__(self) -> None:
        self.time_ms = self.time_ms or self.timestamp * 1000


def merge_intervals(first: Interval, second: Interval) -> Interval:
    """Both intervals as one, stamped with the first's time (new containers: both stay as they are)."""
    return Interval(
        first.timestamp, {k.table: k.combine(first.tables[k.table], second.tables[k.table]) for k in KINDS}
    )


@dataclass
class Totals:
    """Cumulative counts since start (the console's `stats` and benchmarks read these)."""

    packets_received: int = 0
    metrics_received: int = 0
    bad_lines_seen: int = 0
    metrics_refused: int = 0  # updates of new series refused because maxSeries was reached
    set_members_refused: int = 0  # new members of sets that held maxSetMembers already
    events_seen: int = 0  # DogStatsD events (_e{...}) and service checks (_sc|...): not metrics
    lines_shed: int = 0  # dropped unparsed: past the slow lane's SLOW_MAX_BYTES, or by a reader behind
    last_msg_seen: float = 0.0

    def add(self, other: Totals) -> None:
        self.packets_received += other.packets_received
        self.metrics_received += other.metrics_received
        self.bad_lines_seen += other.bad_lines_seen
        self.metrics_refused += other.metrics_refused
        self.set_members_refused += other.set_members_refused
        self.events_seen += other.events_seen
        self.lines_shed += other.lines_shed
        self.last_msg_seen = max(self.last_msg_seen, other.last_msg_seen)


Ops = dict[str, dict[str, Any]]  # ordered kind's table -> its recorded operations
# One read's ordered part: its number (None: not numbered, applied at once), the ordered kinds'
# operations, then the lines the main process parses itself (the native fast path leaves the
# lines it does not take to the reference parser; Python readers leave none).
Read = tuple["int | None", Ops, bytes]


@dataclass
class Batch:
    """What a reader process accumulated since its last hand-over (picklable).

    The ordered kinds (gauges) travel as operations grouped by the number of the read they came
    from (None: not numbered, applied at once), so that replaying them in the main process gives
    what applying them one by one would have given.
    """

    tables: dict[str, dict[str, Any]]  # the other kinds' tables
    reads: list[Read]
    totals: Totals
    key_counts: Counter[str]
    seqs: list[int] = field(default_factory=list)  # every numbered read in this batch
    bad_lines: list[BadLine] = field(default_factory=list)  # the first few, for the log
    packets: list[bytes] = field(default_factory=list)  # raw datagrams, for a repeater
    packets_dropped: int = 0  # datagrams not forwarded: the batch held FORWARD_MAX already


BadLineHook = Callable[[BadLine], None]
Adder = Callable[[str, Any, float, bool], None]
Parsed = tuple["Adder | None", Any, float, bool]  # a Value with its code resolved to the kind's add


class Aggregator:
    """The main process's state: intake (`ingest`), readers' batches (`merge`), flushes (`take`)."""

    def __init__(
        self, settings: AggregationSettings | None = None, on_bad_line: BadLineHook | None = None
    ) -> None:
        self.on_bad_line = on_bad_line
        self.kinds: dict[str, Kind] = {k.table: k(self) for k in KINDS}
        # the hot path's dispatch: wire code -> the kind's add
        self.adders: dict[str, Adder] = {code: self.kinds[k.table].add for code, k in BY_CODE.items()}
        self.next_seq = 0  # main: the next numbered read whose ordered operations may be applied
        self.seq_done: set[int] = set()
        self.seq_ops: dict[int, tuple[Ops, bytes]] = {}
        self.gap_since: float | None = None
        self.slow: deque[tuple[Ops, bytes]] = deque()  # ready reads behind slow lines, in read order
        self.slow_bytes = 0  # lines waiting in self.slow
        self.slow_offset = 0  # how far the first waiting read's lines are parsed (its ops applied)
        self.totals = Totals()
        self.key_counts: Counter[str] = Counter()
        self.configure(settings or AggregationSettings())

    @property
    def counters(self) -> dict[str, float]:
        """The live counters (the daemon's own stats are counters)."""
        return self.kinds["counters"].series

    @property
    def gauges(self) -> dict[str, float]:
        """The live gauges (timestamp_lag, and persistGauges, write here)."""
        return self.kinds["gauges"].series

    def configure(self, settings: AggregationSettings) -> None:
        """Apply (re)loaded settings; Etsy resets its own three counters to 0 when it does this."""
        self.settings = settings
        prefix = settings.prefix_stats
        self.k_packets = f"{prefix}.packets_received"
        self.k_metrics = f"{prefix}.metrics_received"
        self.k_bad = f"{prefix}.bad_lines_seen"
        self.k_lag = f"{prefix}.timestamp_lag"
        self.k_refused = f"{prefix}.metrics_refused"
        self.k_members_refused = f"{prefix}.set_members_refused"
        self.k_shed = f"{prefix}.lines_shed"
        self.own_counters = (self.k_packets, self.k_metrics, self.k_bad)  # sent at every flush
        refusals = (self.k_refused, self.k_members_refused)
        self.own_keys = frozenset((*self.own_counters, *refusals, self.k_shed))  # not client series
        for k in self.own_counters:
            self.counters.setdefault(k, 0)
        self._keys: dict[str, str] = {}
        self._values: dict[str, tuple[Parsed, ...]] = {}

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
        keys, values, adders = self._keys, self._values, self.adders
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
                if parsed is None:  # resolved to the kind's add (None: a bad value, with the reason)
                    parsed = tuple((adders.get(v[0]), *v[1:]) for v in parse_values(rest))
                    if len(rest) <= CACHE_TEXT_MAX:
                        if len(values) >= CACHE_MAX:
                            values.clear()
                        values[rest] = parsed
                if count_keys:
                    self.key_counts[key] += 1
                for add, value, rate, delta in parsed:
                    if add is not None:
                        add(key, value, rate, delta)
                    elif line.startswith(EVENT_PREFIXES):
                        totals.events_seen += 1  # recognized, counted, not a metric
                        break
                    else:
                        self.bad(BadLine(line, value))  # type: ignore[arg-type]
            except Exception as e:  # a parser bug must cost one line, never the rest of the packet
                self.bad(BadLine(line, f"internal error: {type(e).__name__}: {e}"))

    def series_count(self) -> int:
        """Client series held (the daemon's own stats do not count against maxSeries)."""
        own = sum(k in self.counters for k in self.own_keys) + (self.k_lag in self.gauges)
        return sum(kind.size() for kind in self.kinds.values()) - own

    def admit(self) -> bool:
        """May a new series be created? Past `max_series`, no: the update is counted and dropped."""
        if self.series_count() < self.settings.max_series:
            return True
        self.counters[self.k_refused] = self.counters.get(self.k_refused, 0) + 1
        self.totals.metrics_refused += 1
        return False

    def refuse_members(self, count: int) -> None:
        """A set holding maxSetMembers refused `count` new members: counted, as admit counts."""
        self.counters[self.k_members_refused] = self.counters.get(self.k_members_refused, 0) + count
        self.totals.set_members_refused += count

    def reject(self, line: str, reason: str) -> None:
        """A kind refuses a sample it parsed (a gauge that would overflow): a bad line."""
        self.bad(BadLine(line, reason))

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
        for table, series in batch.tables.items():
            self.kinds[table].merge(series)
        for seq, ops, lines in batch.reads:
            if seq is None:
                self.enqueue(ops, lines)
            else:
                self.seq_ops[seq] = (ops, lines)
        self.seq_done.update(batch.seqs)
        self.advance()
        self.totals.add(batch.totals)
        if batch.key_counts:
            self.key_counts.update(batch.key_counts)

    def replay(self, ops: Ops) -> None:
        for table, table_ops in ops.items():
            self.kinds[table].replay(table_ops)

    def enqueue(self, ops: Ops, lines: bytes) -> None:
        """A read whose turn has come: applied now, unless slow-lane lines wait before it (its
        gauge writes must come after theirs) or it brings some itself. Lines that would take the
        lane past SLOW_MAX_BYTES are shed and counted; the read's gauge writes still apply."""
        if lines and self.slow_bytes + len(lines) > SLOW_MAX_BYTES:
            self.shed(lines.count(b"\n"))
            lines = b""
        if not lines and not self.slow:
            self.replay(ops)
            return
        self.slow.append((ops, lines))
        self.slow_bytes += len(lines)

    def shed(self, lines: int) -> None:
        """`lines` lines dropped unparsed (a slow lane past its limit, a reader behind): counted."""
        self.counters[self.k_shed] = self.counters.get(self.k_shed, 0) + lines
        self.totals.lines_shed += lines

    def work_slow(self, seconds: float | None) -> bool:
        """Parse waiting slow-lane lines for about `seconds` (None: all of them, at shutdown);
        returns whether any still wait. A slice is SLOW_SLICE_BYTES of whole lines, so one call
        overruns `seconds` by at most one slice."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while self.slow:
            ops, lines = self.slow[0]
            if self.slow_offset == 0:
                self.replay(ops)
            cut = lines.find(b"\n", self.slow_offset + SLOW_SLICE_BYTES) + 1 or len(lines)
            if cut > self.slow_offset:  # counted as metrics here, their datagrams where read
                self.ingest(lines[self.slow_offset : cut], packets=0)
            self.slow_bytes -= cut - self.slow_offset
            if cut >= len(lines):
                self.slow.popleft()
                self.slow_offset = 0
            else:
                self.slow_offset = cut
            if deadline is not None and time.monotonic() >= deadline:
                break
        return bool(self.slow)

    def advance(self, now: float | None = None, force: bool = False) -> None:
        """Apply the ordered operations of every numbered read up to the first one not handed over
        yet. A gap older than GAP_SECONDS (a reader died holding it), or `force` (shutdown, once
        every reader has handed over), is skipped, and then the slow lane is parsed to the end."""
        now = time.monotonic() if now is None else now
        while self.seq_done:
            if self.next_seq in self.seq_done:
                self.seq_done.discard(self.next_seq)
                if (read := self.seq_ops.pop(self.next_seq, None)) is not None:
                    self.enqueue(*read)
                self.next_seq += 1
                self.gap_since = None
                continue
            if self.gap_since is None:
                self.gap_since = now
            if not force and now - self.gap_since < GAP_SECONDS:
                return
            self.next_seq = min(self.seq_done)
        self.gap_since = None
        if force:
            self.work_slow(None)

    # --- flush --------------------------------------------------------------------------

    def take(self, timestamp: int, lag: float | None = None) -> Interval:
        """Detach this interval's data and reset for the next one, as Etsy's clear_metrics does:
        idle series start again empty unless their kind's delete* option says to forget them."""
        if lag is not None:
            self.gauges[self.k_lag] = lag
        deletes = self.settings.deletes
        return Interval(timestamp, {t: kind.take(t in deletes) for t, kind in self.kinds.items()})

    def take_key_counts(self) -> Counter[str]:
        counts, self.key_counts = self.key_counts, Counter()
        return counts

    # --- management console -------------------------------------------------------------

    def table(self, kind: str) -> dict:
        return self.kinds[kind].series

    def delete(self, kind: str, patterns: Iterable[str]) -> list[tuple[str, list[str]]]:
        """Etsy's delete_stats: exact names, or `folder.*` for everything under a prefix."""
        live = self.kinds[kind]
        result = []
        for pattern in patterns:
            matches = [pattern] if pattern in live.series else []
            if pattern.endswith(".*"):
                folder = pattern[:-1]
                matches += [k for k in live.series if k.startswith(folder) and k != pattern]
            for key in matches:
                live.forget(key)
            result.append((pattern, matches))
        return result


class BatchAggregator(Aggregator):
    """A reader process's state: the same intake, with the ordered kinds' writes kept as
    operations grouped by read number (`seal`), bad lines carried for the main process to log,
    and everything handed over by `take_batch` (the main process `merge`s it).

    maxSeries is not decided here: a reader cannot tell a new series from one the main process
    holds, so it keeps every series (`admit`) and the main process admits or refuses each one as
    it merges. What a batch holds is bounded by `full` instead: its reader then hands it over
    before it reads on."""

    def __init__(self, settings: AggregationSettings | None = None) -> None:
        self.reads: list[Read] = []  # sealed reads
        self.recorded = 0  # ordered-kind series written in the sealed reads (once per read)
        self.seqs: list[int] = []
        self.bad_lines: list[BadLine] = []
        super().__init__(settings)
        self.ops: Ops = {t: {} for t, kind in self.kinds.items() if kind.ordered}  # the current read's
        for code, cls in BY_CODE.items():
            if cls.ordered:
                self.adders[code] = functools.partial(self.kinds[cls.table].record, self.ops[cls.table])

    def series_count(self) -> int:
        """Series this batch holds, a gauge once per read that wrote it (an upper bound)."""
        return super().series_count() + self.recorded + sum(len(ops) for ops in self.ops.values())

    def admit(self) -> bool:
        """Always: the main process decides maxSeries against what it holds, when it merges."""
        return True

    def full(self) -> bool:
        """Does this batch hold maxSeries series? Then its reader hands it over before reading
        on: a batch holds at most what the main process may hold (plus one read), and nothing
        that may update a series the main process holds is refused."""
        return self.series_count() >= self.settings.max_series

    def report_bad(self, item: BadLine) -> None:
        if len(self.bad_lines) < BATCH_BAD_LINES:
            self.bad_lines.append(item)

    def _drain_ops(self) -> Ops | None:
        ops = {t: dict(o) for t, o in self.ops.items() if o}
        for o in self.ops.values():
            o.clear()
        self.recorded += sum(len(o) for o in ops.values())
        return ops or None

    def seal(self, seq: int) -> None:
        """What was ingested since the last seal came from read number `seq`."""
        self.seqs.append(seq)
        if (ops := self._drain_ops()) is not None:
            self.reads.append((seq, ops, b""))

    def take_batch(self) -> Batch:
        """Hand over everything since the last call."""
        if (ops := self._drain_ops()) is not None:  # ingested without a read number: no order
            self.reads.append((None, ops, b""))
        tables = {t: kind.take(True) for t, kind in self.kinds.items() if not kind.ordered}
        batch = Batch(tables, self.reads, self.totals, self.key_counts, self.seqs, self.bad_lines)
        self.bad_lines, self.reads, self.seqs, self.recorded = [], [], [], 0
        self.totals, self.key_counts = Totals(), Counter()
        return batch
