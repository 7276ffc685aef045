"""Etsy's console backend: each flush printed to stdout as node would print it."""

from __future__ import annotations

import sys
import time
from typing import Any, ClassVar

from ..jsfmt import inspect
from ..kinds import KINDS
from ..snapshot import Snapshot
from ..validate import Key, boolean, section
from .base import Backend, register


def js_date(ts: float) -> str:
    """JavaScript's Date#toString, e.g. `Mon Nov 23 2026 02:15:00 GMT+0000 (UTC)`."""
    t = time.localtime(ts)
    return time.strftime("%a %b %d %Y %H:%M:%S GMT%z (%Z)", t)


CONSOLE_KEYS: dict[str, Key] = {
    "prettyprint": (True, boolean, "multi-line output"),
}


@register
class ConsoleBackend(Backend):
    name = "console"
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {
        "console": ({}, section(CONSOLE_KEYS), "console backend"),
    }
    SECTIONS: ClassVar[dict[str, dict[str, Key]]] = {"console": CONSOLE_KEYS}

    def __init__(self, config, startup_time: float, stream=None) -> None:
        super().__init__(config, startup_time)
        self.stream = stream or sys.stdout

    def flush(self, snapshot: Snapshot) -> None:
        out: dict[str, Any] = {}
        for kind in KINDS:
            out.update(kind.fields(snapshot.tables[kind.table], snapshot.summaries[kind.table], True))
        out["pctThreshold"] = list(snapshot.pct_threshold)
        self.stream.write(f"Flushing stats at {js_date(snapshot.timestamp)}\n{inspect(out)}\n")
        self.stream.flush()

    def status(self) -> dict[str, float]:
        # Etsy's console backend names these in camelCase, so the console shows raw timestamps.
        return {"lastFlush": self.last_flush, "lastException": self.last_exception}
