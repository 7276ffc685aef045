"""The embedded history (`store`): every flush of every series into an SQLite file under a data
directory, with Graphite-style retentions and rollups (see store/db.py for the layout and why).

Series are named as the graphite backend names them, so the same targets work on this store and
on a carbon/graphite-web that receives the same flushes.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar

from ..snapshot import Snapshot
from ..store.db import Store
from ..store.retention import RetentionError, schemas
from ..validate import Key, section, string
from .base import Backend, log, register
from .naming import GraphiteNaming


def default_dir() -> str:
    """Per user, where data belongs (XDG): ~/.local/share/webops/statsd."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "webops", "statsd")


def retention_rules(v: Any) -> list[list[str]]:
    """[[name regex, "10s:6h,1m:7d"], ...], first match wins; checked now, not at the first flush."""
    if not isinstance(v, list) or not all(
        isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r) for r in v
    ):
        raise ValueError(f'expected a list of ["name regex", "10s:6h,1m:7d"] pairs, got {v!r}')
    try:
        schemas([(p, r) for p, r in v])
    except RetentionError as e:
        raise ValueError(str(e)) from None
    return v


STORE_KEYS: dict[str, Key] = {
    "dir": (default_dir(), string, "the data directory (store.sqlite in it)"),
    "retentions": (
        [],
        retention_rules,
        'per name regex, first match wins, e.g. [["^stats\\\\.timers\\\\.", "10s:1d,1m:30d"]]; '
        "everything else: 10s:6h,1m:7d,10m:1y",
    ),
}


@register
class StoreBackend(Backend):
    name = "store"
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {
        "store": ({}, section(STORE_KEYS), "the embedded history (webops)"),
    }
    SECTIONS: ClassVar[dict[str, dict[str, Key]]] = {"store": STORE_KEYS}

    def __init__(self, config, startup_time: float) -> None:
        super().__init__(config, startup_time)
        s = config.section("store")
        self.store = Store(Path(s["dir"]) / "store.sqlite", schemas([(p, r) for p, r in s["retentions"]]))
        self.naming = GraphiteNaming(config)
        flush = config["flushInterval"] / 1000
        for rule in self.store.schemas:
            if rule.archives[0].step != flush:
                log.warning(
                    "store: retentions for /%s/ start at %ss but flushes come every %gs: %s",
                    rule.pattern.pattern,
                    rule.archives[0].step,
                    flush,
                    "each point overwrites the one before in its slot (as in carbon)"
                    if rule.archives[0].step > flush
                    else "every other slot stays empty",
                )
        self.points = 0
        self.write_ms = 0.0

    def flush(self, snapshot: Snapshot) -> None:
        start = time.perf_counter()
        values = ((p, float(v)) for p, v in self.naming.metrics(snapshot) if math.isfinite(v))
        self.points = self.store.write(snapshot.timestamp, values)
        self.write_ms = (time.perf_counter() - start) * 1000

    def status(self) -> dict[str, float]:
        return {
            **super().status(),
            "series": len(self.store.series),
            "series_expired": self.store.expired,
            "points_last_flush": self.points,
            "write_ms": round(self.write_ms, 1),
            "disk_bytes": self.store.disk_bytes(),
        }

    def close(self) -> None:
        self.store.close()
