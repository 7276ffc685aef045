"""Etsy's console backend: each flush printed to stdout as node would print it.

`LIVE` is how Etsy shows a kind's raw table (timers as their samples, sets as their members,
sorted): the console backend's dump and the management console's `<table>` commands both use it.
`CONSOLE` is what the dump holds of each kind."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ..jsfmt import inspect
from ..kinds import outputs
from ..kinds.timers import TimerSeries
from ..snapshot import Snapshot
from ..validate import Key, boolean, section
from .base import Backend, register


def js_date(ts: float) -> str:
    """JavaScript's Date#toString, e.g. `Mon Nov 23 2026 02:15:00 GMT+0000 (UTC)`."""
    t = time.localtime(ts)
    return time.strftime("%a %b %d %Y %H:%M:%S GMT%z (%Z)", t)


def as_held(table: dict[str, Any]) -> dict[str, Any]:
    return table


def timer_samples(table: dict[str, TimerSeries]) -> dict[str, list[float]]:
    return {k: t.samples for k, t in table.items()}


def set_members(table: dict[str, set[str]]) -> dict[str, list[str]]:
    return {k: sorted(v) for k, v in table.items()}


# A kind's live table as Etsy shows it, by the kind's table name.
LIVE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "counters": as_held,
    "timers": timer_samples,
    "gauges": as_held,
    "sets": set_members,
}

# (raw table, summary) -> the kind's entries in the dump, by the kind's table name
CONSOLE: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "counters": lambda table, summary: {"counters": table, "counter_rates": summary},
    "timers": lambda table, summary: {"timers": timer_samples(table), "timer_data": summary},
    "gauges": lambda table, summary: {"gauges": table},
    "sets": lambda table, summary: {"sets": set_members(table)},
}


CONSOLE_KEYS: dict[str, Key] = {
    "prettyprint": Key(True, boolean, "multi-line output"),
}


@register
class ConsoleBackend(Backend):
    name = "console"
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {
        "console": Key({}, section(CONSOLE_KEYS), "console backend"),
    }
    SECTIONS: ClassVar[dict[str, dict[str, Key]]] = {"console": CONSOLE_KEYS}

    def __init__(self, config, startup_time: float, stream=None) -> None:
        super().__init__(config, startup_time)
        self.stream = stream or sys.stdout

    def flush(self, snapshot: Snapshot) -> None:
        out: dict[str, Any] = {}
        for kind, fields in outputs("the console backend", CONSOLE):
            out.update(fields(snapshot.tables[kind.table], snapshot.summaries[kind.table]))
        out["pctThreshold"] = list(snapshot.pct_threshold)
        self.stream.write(f"Flushing stats at {js_date(snapshot.timestamp)}\n{inspect(out)}\n")
        self.stream.flush()

    def status(self) -> dict[str, float]:
        # Etsy's console backend names these in camelCase, so the console shows raw timestamps.
        return {"lastFlush": self.last_flush, "lastException": self.last_exception}
