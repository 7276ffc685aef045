"""Counters (`|c`): the sum of `value / rate` over an interval; a flush computes its rate per
second (Etsy sends both)."""

from __future__ import annotations

from typing import Any

from . import register
from .base import Kind, Value, drop_non_finite, number_value


@register
class Counters(Kind):
    table = "counters"
    codes = ("c",)
    order = 0
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
