"""Gauges (`|g`): the last value written, `+N`/`-N` changing it; gauges persist across flushes
(Etsy repeats them) unless deleteGauges, where gaugesMaxTTL idle flushes remove one.

Order matters (`100|g` then `+1|g` is 101, the other way round 100), so a reader process does
not apply writes: it records them per read (`record`, an absolute value and the deltas after it)
and the main process replays them in the order the kernel queued the datagrams (`replay`)."""

from __future__ import annotations

from typing import Any, ClassVar

from ..jsfmt import to_number
from ..validate import Key, number
from . import register
from .base import Intake, Kind, Value, bad, drop_non_finite

# [absolute value written, or None; the deltas written after it, in order]: replayed one by one, so
# floating point gives exactly what applying the writes as they came gives
GaugeOp = tuple["float | None", list[float]]


@register
class Gauges(Kind):
    table = "gauges"
    codes = ("g",)
    order = 2
    delete_doc = "drop idle gauges instead of repeating them"
    ordered = True
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {
        "gaugesMaxTTL": Key(1, number(1, integer=True), "with deleteGauges: flushes a gauge survives idle"),
    }

    def __init__(self, agg: Intake) -> None:
        super().__init__(agg)
        self.ttl: dict[str, int] = {}  # with deleteGauges: flushes left for an idle gauge

    @staticmethod
    def parse(raw: str, code: str, rate: float) -> Value:
        value = to_number(raw)  # the rate does not apply to gauges
        if value is None:
            return bad(f"bad value {raw!r}")
        return ("g", value, rate, raw[:1] in ("+", "-"))

    def add(self, key: str, value: float, rate: float, delta: bool) -> None:
        current = self.series.get(key)
        if current is None and not self.agg.admit():
            return
        if delta and current is not None:
            value += current
            if value - value != 0:  # +1e308 twice: keep the last finite value, count the line as bad
                self.agg.reject(f"{key}:{value}|g", "gauge would overflow to infinity")
                return
        settings = self.agg.settings
        if self.table in settings.deletes:
            self.ttl[key] = settings.options["gaugesMaxTTL"]
        self.series[key] = value

    def record(self, ops: dict[str, GaugeOp], key: str, value: float, rate: float, delta: bool) -> None:
        op = ops.get(key)
        if op is None:
            if not self.agg.admit():
                return
            op = ops[key] = (None, [])
        if delta:
            op[1].append(value)
        else:
            ops[key] = (value, [])

    def replay(self, ops: dict[str, GaugeOp]) -> None:
        for key, (absolute, deltas) in ops.items():
            if absolute is not None:
                self.add(key, absolute, 1.0, False)
            for change in deltas:
                self.add(key, change, 1.0, True)

    def merge(self, table: dict[str, float]) -> None:
        raise AssertionError("gauges travel as recorded operations (see replay)")

    def take(self, delete: bool) -> dict[str, float]:
        table = dict(self.series)  # gauges persist: the interval gets a copy
        if delete:
            for key in list(self.ttl):
                self.ttl[key] -= 1
                if self.ttl[key] < 1:
                    del self.ttl[key]
                    self.series.pop(key, None)
        return table

    def forget(self, key: str) -> None:
        self.series.pop(key, None)
        self.ttl.pop(key, None)

    @classmethod
    def combine(cls, first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
        return {**first, **second}

    @classmethod
    def summarize(cls, table: dict[str, float], settings: Any) -> tuple[dict[str, float], list[str]]:
        left_out = drop_non_finite(table)
        return table, left_out
