"""What a metric kind is: the interface every module of this package implements.

A `Kind` has two sides. Its class attributes and static/class methods are the kind's meaning:
wire codes, how a value parses, how two intervals combine and what a flush computes. An instance
is the live table of one aggregator (`series`), with the hot-path `add` and the `merge`/`take`
the daemon calls between flushes.

How an output shows a kind is the output's business, not the kind's: each keeps its own table
keyed by the kind's `table` name (backends/naming.py GRAPHITE: paths and rollups; prometheus.py
PROMETHEUS; backends/console.py LIVE and CONSOLE; backends/file.py JSON_FIELDS). So this module
imports nothing of the aggregator, the snapshot or any output, not even for type checking: what
a kind needs of them is said by the two protocols below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from ..jsfmt import to_number
from ..validate import Key, boolean


class Intake(Protocol):
    """What a kind needs of the aggregator that owns it (aggregate.Aggregator, BatchAggregator)."""

    settings: Any  # aggregate.AggregationSettings: deletes, options, max_set_members

    @property
    def own_keys(self) -> frozenset[str]: ...  # the daemon's own series, always admitted

    @property
    def own_counters(self) -> tuple[str, ...]: ...  # sent at every flush, even with deleteCounters

    def admit(self) -> bool: ...

    def reject(self, line: str, reason: str) -> None: ...

    def refuse_members(self, count: int) -> None: ...


class FlushSettings(Protocol):
    """What a flush's maths needs (snapshot.SummarySettings)."""

    @property
    def flush_interval_ms(self) -> int: ...

    @property
    def options(self) -> Mapping[str, Any]: ...


BAD = "!"
Value = tuple[str, "float | str", float, bool]  # (code, value, rate, delta); code BAD: value is the reason


def bad(reason: str) -> Value:
    return (BAD, reason, 1.0, False)


def number_value(raw: str, code: str, rate: float) -> Value | float:
    """The float of a numeric value, or the bad-line Value saying why not."""
    value = to_number(raw)
    if value is None:
        return bad(f"bad value {raw!r}")
    if rate != 1.0 and (value / rate) - (value / rate) != 0:
        return bad(f"value {raw!r} at rate {rate:g} is too large")
    return value


def drop_non_finite(table: dict[str, float]) -> list[str]:
    """Remove (and name) the series whose value is no longer a finite number (a sum that
    overflowed): one such value must not break a flush."""
    bad = [k for k, v in table.items() if v - v != 0]
    for k in bad:
        del table[k]
    return bad


class Kind:
    """Subclass, fill in the attributes, decorate with @register (from the package): that is a
    metric type's wire, state and flush summary. The outputs that show it each want an entry
    in their own table (docs/development.md: Adding a metric kind)."""

    table: ClassVar[str]  # plural: Interval/Snapshot table, console command, `delete<Table>` key
    codes: ClassVar[tuple[str, ...]]  # wire types; the first is what `parse` returns
    order: ClassVar[int]  # place in Etsy's outputs (counters, timers, gauges, sets)
    delete_doc: ClassVar[str]  # what `delete<Table>: true` does
    # True when the order of samples matters (gauges: `100|g` then `+1|g`): reader processes then
    # record writes as operations the main process replays in the order they were read.
    ordered: ClassVar[bool] = False
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {}

    def __init__(self, agg: Intake) -> None:
        self.agg = agg
        self.series: dict[str, Any] = {}

    @classmethod
    def delete_key(cls) -> str:
        return "delete" + cls.table[:1].upper() + cls.table[1:]

    @classmethod
    def config_keys(cls) -> dict[str, Key]:
        return {cls.delete_key(): Key(None, boolean, cls.delete_doc), **cls.CONFIG_KEYS}

    # --- the wire -----------------------------------------------------------------------

    @staticmethod
    def parse(raw: str, code: str, rate: float) -> Value:
        """`raw|code|@rate` as this kind's Value (rate already checked), or a bad one."""
        raise NotImplementedError

    # --- between flushes (one instance per aggregator) -----------------------------------

    def add(self, key: str, value: Any, rate: float, delta: bool) -> None:
        """One parsed sample (the hot path); a new series asks `self.agg.admit()` first."""
        raise NotImplementedError

    def merge(self, table: dict[str, Any]) -> None:
        """A reader process's table for this interval: each series absorbed into ours, or
        adopted as a new one if maxSeries admits it (kinds with immutable states override)."""
        for key, theirs in table.items():
            mine = self.series.get(key)
            if mine is None:
                if self.agg.admit():
                    self.series[key] = theirs
            else:
                self.absorb(mine, theirs)

    def created(self, key: str) -> Any:
        """A new series' empty state, stored; None when maxSeries refuses it (counted)."""
        if not self.agg.admit():
            return None
        state = self.series[key] = self.empty()
        return state

    def take(self, delete: bool) -> dict[str, Any]:
        """Detach this interval's table and start the next (idle series kept unless `delete`)."""
        table = self.series
        self.series = {} if delete else {k: self.empty() for k in table}
        return table

    def empty(self) -> Any:
        """The state of a series with no sample yet this interval."""
        raise NotImplementedError

    def size(self) -> int:
        return len(self.series)

    def forget(self, key: str) -> None:
        self.series.pop(key, None)

    # ordered kinds only: a reader's record of writes, and their replay in the main process
    def record(self, ops: dict[str, Any], key: str, value: Any, rate: float, delta: bool) -> None:
        raise NotImplementedError

    def replay(self, ops: dict[str, Any]) -> None:
        raise NotImplementedError

    # --- a flush ------------------------------------------------------------------------

    @classmethod
    def combine(cls, first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
        """Two intervals' tables as one (new containers; both inputs stay as they are)."""
        out = {k: cls.copy(v) for k, v in first.items()}
        for k, v in second.items():
            if k in out:
                cls.absorb(out[k], v)
            else:
                out[k] = cls.copy(v)
        return out

    @staticmethod
    def copy(state: Any) -> Any:
        """An independent copy of a (mutable) series state."""
        raise NotImplementedError

    @staticmethod
    def absorb(mine: Any, theirs: Any) -> None:
        """Add `theirs` (the same series, elsewhere) into the mutable state `mine`."""
        raise NotImplementedError

    @classmethod
    def summarize(cls, table: dict[str, Any], settings: FlushSettings) -> tuple[dict[str, Any], list[str]]:
        """What backends get per series (Etsy's process_metrics), and the keys left out because a
        value is no longer a finite number (carbon, JSON and Prometheus cannot carry Infinity)."""
        raise NotImplementedError
