"""Counters (`|c`): the sum of `value / rate` over an interval; Etsy sends the sum and its rate
per second. Prometheus gets `<name>_total`, the sum since start (negative amounts left out, as a
Prometheus counter only goes up)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..exposition import Exposition, split_key
from . import register
from .base import Kind, Point, Value, number_value


def drop_non_finite(table: dict[str, float]) -> list[str]:
    """Remove (and name) the series whose value is no longer a finite number (a sum that
    overflowed): one such value must not break a flush."""
    bad = [k for k, v in table.items() if v - v != 0]
    for k in bad:
        del table[k]
    return bad


@register
class Counters(Kind):
    table = "counters"
    codes = ("c",)
    order = 0
    graphite_name = "Counter"
    legacy_namespace = ""
    delete_doc = "drop idle counters instead of sending 0"

    @staticmethod
    def parse(raw: str, code: str, rate: float) -> Value:
        value = number_value(raw, code, rate)
        return value if isinstance(value, tuple) else ("c", value, rate, False)

    def add(self, key: str, value: float, rate: float, delta: bool) -> None:
        series = self.series
        current = series.get(key)
        if current is not None:
            series[key] = current + value / rate
        elif self.agg.admit():
            series[key] = value / rate

    def merge(self, table: dict[str, float]) -> None:
        series, own = self.series, self.agg.own_keys
        for key, value in table.items():
            current = series.get(key)
            if current is not None:
                series[key] = current + value
            elif key in own or self.agg.admit():
                series[key] = value

    def take(self, delete: bool) -> dict[str, float]:
        # the daemon's own counters are always sent, as Etsy resets them to 0 rather than deleting
        table = self.series
        self.series = dict.fromkeys(self.agg.own_counters if delete else table, 0)
        return table

    def empty(self) -> float:
        return 0

    @classmethod
    def combine(cls, first: dict[str, float], second: dict[str, float]) -> dict[str, float]:
        out = dict(first)
        for k, v in second.items():
            out[k] = out.get(k, 0) + v
        return out

    @classmethod
    def summarize(cls, table: dict[str, float], settings: Any) -> tuple[dict[str, float], list[str]]:
        left_out = drop_non_finite(table)
        per_second = settings.flush_interval_ms / 1000
        return {k: v / per_second for k, v in table.items()}, left_out

    @classmethod
    def fields(cls, table: dict[str, float], summary: dict[str, float], full: bool) -> dict[str, Any]:
        return {"counters": table, "counter_rates": summary}

    @classmethod
    def graphite(cls, naming: Any, key: str, raw: float, summary: float) -> Iterator[Point]:
        """A rate averages over time (weighted by each flush's length), a count adds up."""
        ns = naming.namespace(cls)
        if naming.legacy:
            yield Point(naming.path(ns, key), summary, "average")
            if naming.flush_counts:
                yield Point(naming.path(["stats_counts"], key), raw, "sum")
        else:
            yield Point(naming.path(ns, key, "rate"), summary, "average")
            if naming.flush_counts:
                yield Point(naming.path(ns, key, "count"), raw, "sum")

    @classmethod
    def accumulate(cls, previous: Mapping[str, float], snap: Any) -> dict[str, float]:
        return {k: previous.get(k, 0) + max(v, 0) for k, v in snap.tables[cls.table].items()}

    @classmethod
    def expose(cls, out: Exposition, snap: Any, kept: Mapping[str, float]) -> None:
        for key, total in kept.items():
            statsd_name, name, labels = split_key(key)
            family = out.family(name + "_total", "counter", "counter")
            out.add(family, [(family, labels, total)], statsd_name)
