"""What a metric kind is: the interface every module of this package implements.

A `Kind` has two sides. Its class attributes and static/class methods are the kind's meaning:
wire codes, how a value parses, how two intervals combine, what a flush computes and how each
output shows it. An instance is the live table of one aggregator (`series`), with the hot-path
`add` and the `merge`/`take` the daemon calls between flushes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from ..exposition import split_key
from ..jsfmt import to_number
from ..validate import Key, boolean

if TYPE_CHECKING:
    from ..aggregate import Aggregator
    from ..backends.naming import GraphiteNaming
    from ..exposition import Exposition
    from ..snapshot import Snapshot, SummarySettings

BAD = "!"
Value = tuple[str, "float | str", float, bool]  # (code, value, rate, delta); code BAD: value is the reason


class Point(NamedTuple):
    """One value of a flush as Graphite names it, and how its kind says it rolls up over time
    (a key of store.retention.ROLLUPS): declared here, not guessed from the name, so a prefix
    or a `;tag=value` suffix never changes it."""

    path: str
    value: float
    rollup: str


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


class Kind:
    """Subclass, fill in the attributes, decorate with @register (from the package): that is a
    whole metric type, from the wire to Graphite, Prometheus, the console and files."""

    table: ClassVar[str]  # plural: Interval/Snapshot table, console command, `delete<Table>` key
    codes: ClassVar[tuple[str, ...]]  # wire types; the first is what `parse` returns
    order: ClassVar[int]  # place in Etsy's outputs (counters, timers, gauges, sets)
    graphite_name: ClassVar[str]  # Graphite's `prefix<Name>` key
    legacy_namespace: ClassVar[str]  # legacyNamespace paths: stats.<ns>.<key> ("": stats.<key>)
    delete_doc: ClassVar[str]  # what `delete<Table>: true` does
    # True when the order of samples matters (gauges: `100|g` then `+1|g`): reader processes then
    # record writes as operations the main process replays in the order they were read.
    ordered: ClassVar[bool] = False
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {}

    def __init__(self, agg: Aggregator) -> None:
        self.agg = agg
        self.series: dict[str, Any] = {}

    @classmethod
    def delete_key(cls) -> str:
        return "delete" + cls.table[:1].upper() + cls.table[1:]

    @classmethod
    def config_keys(cls) -> dict[str, Key]:
        return {cls.delete_key(): (None, boolean, cls.delete_doc), **cls.CONFIG_KEYS}

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
    def summarize(cls, table: dict[str, Any], settings: SummarySettings) -> tuple[dict[str, Any], list[str]]:
        """What backends get per series (Etsy's process_metrics), and the keys left out because a
        value is no longer a finite number (carbon, JSON and Prometheus cannot carry Infinity)."""
        raise NotImplementedError

    @classmethod
    def fields(cls, table: dict[str, Any], summary: dict[str, Any], full: bool) -> dict[str, Any]:
        """This kind's entries of the console backend's dump (`full`) or the file backend's JSON."""
        raise NotImplementedError

    @classmethod
    def graphite(cls, naming: GraphiteNaming, key: str, raw: Any, summary: Any) -> Iterator[Point]:
        """The values of one series, as Etsy's graphite backend names them, each with its rollup."""
        raise NotImplementedError

    @classmethod
    def accumulate(cls, previous: Mapping[str, Any], snap: Snapshot) -> dict[str, Any]:
        """What /metrics keeps across flushes for this kind (Prometheus counters only go up)."""
        return {}

    @classmethod
    def expose(cls, out: Exposition, snap: Snapshot, kept: Mapping[str, Any]) -> None:
        """This kind's series in Prometheus' text format; by default each summary value as a
        gauge (a family that meets another kind's name gets `_<kind>` appended: `x_set`)."""
        for key, value in snap.summaries[cls.table].items():
            statsd_name, name, labels = split_key(key)
            family = out.family(name, "gauge", cls.table[:-1])
            out.add(family, [(family, labels, value)], statsd_name)

    @classmethod
    def console(cls, table: dict[str, Any]) -> dict[str, Any]:
        """The live table as the management console's `<table>` command shows it."""
        return table
