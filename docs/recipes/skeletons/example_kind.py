"""A metric kind: maxima (`name:7|mx`), the largest value sent in an interval.

Copy this file to src/webops/statsd/kinds/maxima.py: kinds/__init__.py imports every module of
the package and @register adds the class to KINDS, BY_CODE (the parser's wire codes) and the
config schema (`deleteMaxima` from `delete_doc`, plus CONFIG_KEYS). Then give it an entry in each
output that should show it: example_kind_outputs.py holds those entries. See
docs/recipes/kind.md.

A kind knows nothing of the aggregator, the snapshot or any output (tests/statsd/test_kinds.py
checks its imports): it may import kinds, jsfmt, validate and timerstats only. Inside the package
write the imports relative (`from . import register`, `from .base import Kind`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from webops.statsd.kinds import register
from webops.statsd.kinds.base import FlushSettings, Kind, Value, number_value
from webops.statsd.validate import Key, number


@register
class Maxima(Kind):
    """A series' state is its largest value so far this interval, or None: idle (no sample yet).
    Floats cannot be changed in place, so merge and combine are this kind's own (Kind's defaults
    absorb into mutable states, as timers and sets do)."""

    table = "maxima"  # Snapshot.tables["maxima"], the console's `maxima`/`delmaxima`, deleteMaxima
    codes = ("mx",)  # the `|mx` of the wire; parse returns the first code
    order = 4  # after Etsy's counters (0), timers (1), gauges (2) and sets (3) in every output
    delete_doc = "drop idle maxima instead of sending maximaIdle"
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {
        "maximaIdle": Key(0, number(), "with deleteMaxima false: the value sent for an idle maximum"),
    }

    @staticmethod
    def parse(raw: str, code: str, rate: float) -> Value:
        """Never raises: a value that is not a number comes back as a bad Value, which the
        aggregator counts in statsd.bad_lines_seen (and logs at a bounded rate). A sample rate
        does not change a maximum, so it is checked by the protocol but not applied here."""
        value = number_value(raw, code, 1.0)
        return value if isinstance(value, tuple) else ("mx", value, rate, False)

    def add(self, key: str, value: float, rate: float, delta: bool) -> None:
        """The hot path: called for every sample, on the event loop (or in a reader process).
        A new series asks `admit()` first, which refuses it past maxSeries (counted)."""
        series = self.series
        if key in series:
            current = series[key]
            if current is None or value > current:
                series[key] = value
        elif self.agg.admit():
            series[key] = value

    def merge(self, table: dict[str, float | None]) -> None:
        """A reader process's table for this interval (readers always `take(delete=True)`)."""
        series = self.series
        for key, theirs in table.items():
            if key in series:
                series[key] = _larger(series[key], theirs)
            elif self.agg.admit():
                series[key] = theirs

    def empty(self) -> None:
        """An idle series after a flush (kept unless deleteMaxima): no sample yet."""
        return None

    @classmethod
    def combine(cls, first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
        """Two intervals as one (the shutdown flush merged with the last one, a store catching
        up): new dicts, both inputs left as they are."""
        out = dict(first)
        for key, value in second.items():
            out[key] = _larger(out.get(key), value)
        return out

    @classmethod
    def summarize(
        cls, table: dict[str, float | None], settings: FlushSettings
    ) -> tuple[dict[str, float], list[str]]:
        """What every backend gets per series. Runs in the flusher thread, off the event loop.
        The second value names series left out because a value is not finite: a maximum of
        finite numbers stays finite, so none here (counters' sums can overflow: see
        kinds.base.drop_non_finite)."""
        idle = settings.options["maximaIdle"]
        return {key: idle if value is None else value for key, value in table.items()}, []


def _larger(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
