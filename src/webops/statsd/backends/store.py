"""The embedded history (`store`): every flush of every series into an SQLite file under a data
directory, with Graphite-style retentions and rollups (see store/db.py for the layout and why).

Series are named as the graphite backend names them, so the same targets work on this store and
on a carbon/graphite-web that receives the same flushes.

The store never holds up intake or the other backends, and loses no flush it was handed:
- it writes in a thread of its own; a flush that comes while it is still writing waits, merged
  with any other waiting one (snapshot.merge: counts add up, rates cover both), so what waits is
  at most one flush's worth of series, however far behind it is;
- what waits is also spooled to disk (store/spool.py) and written at the next start if the
  daemon is killed or runs out of time at shutdown: `kill -9` loses at most the flush being
  written;
- a store that cannot open or write (a read-only directory, a full disk, a damaged file, a
  second daemon on the same directory) is said once per cause, counted, and tried again at each
  flush: history resumes by itself once the cause is gone; a damaged file is set aside.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ...common.ratelimit import RateLimitedLog
from ..http import Answer, Outgoing, Request, Route
from ..snapshot import Snapshot, merge
from ..store import graphite_api
from ..store.db import Store
from ..store.functions import Budget
from ..store.retention import RetentionError, describe, schemas
from ..store.spool import Spool
from ..validate import Key, section, string
from .base import Backend, Offload, log, register
from .naming import GraphiteNaming

HISTORY_OFF = "history is off until it can, trying again at each flush"
CLOSE_SECONDS = 45.0  # at shutdown, then what is left stays spooled for the next start
DAMAGED = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB: a file to set aside, not to retry
NO_STORE = 'no store: add "store" to backends for history and the Graphite API\n'


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
    "dir": Key(default_dir(), string, "the data directory (store.sqlite in it)"),
    "retentions": Key(
        [],
        retention_rules,
        'per name regex, first match wins, e.g. [["^stats\\\\.timers\\\\.", "10s:1d,1m:30d"]]; '
        "everything else: the flush interval for 6 h (1 h under 10 s), then 10s:6h,1m:7d,10m:1y",
    ),
}


@dataclass
class Pending:
    """Flushes waiting for the store, merged into one snapshot."""

    snapshot: Snapshot
    flushes: int = 1
    seqs: list[int] = field(default_factory=list)  # their spooled files

    def then(self, newer: Pending) -> Pending:
        return Pending(
            merge(self.snapshot, newer.snapshot), self.flushes + newer.flushes, self.seqs + newer.seqs
        )


@register
class StoreBackend(Backend):
    name = "store"
    manages_last_flush = True
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {
        "store": Key(
            {},
            section(STORE_KEYS),
            "the embedded history (webops); the flag sets its dir",
            flag="--data-dir",
            metavar="DIR",
            text=lambda path: {"dir": path},
        ),
    }
    SECTIONS: ClassVar[dict[str, dict[str, Key]]] = {"store": STORE_KEYS}
    PATHS: ClassVar[dict[str, str]] = dict.fromkeys(
        (
            *graphite_api.STORE_PATHS,
            *graphite_api.PLAIN_PATHS,
            *(p + "/" for p in graphite_api.STORE_PATHS),  # graphite-web's remote finder asks /render/
        ),
        NO_STORE,
    )

    def __init__(self, config, startup_time: float) -> None:
        super().__init__(config, startup_time)
        s = config.section("store")
        self.path = Path(os.path.expanduser(s["dir"])) / "store.sqlite"
        self.flush_ms = config["flushInterval"]
        self.schemas = schemas([(p, r) for p, r in s["retentions"]], self.flush_ms)
        self.naming = GraphiteNaming(config)
        self.spool = Spool(self.path.parent / "spool")
        self.store: Store | None = None
        self.cond = threading.Condition()
        self.waiting: Pending | None = None
        self.replay: Pending | None = None  # spooled by an earlier run: written first
        self.busy = False
        self.closing = False
        self.seq = 0
        self.cause: str | None = None  # why history is off
        self.said: set[str] = set()  # the causes logged since history was last written
        self.errors = RateLimitedLog(log, "store messages")
        self.points = 0
        self.write_ms = 0.0
        self.written_ms = 0  # the newest flush time written
        self.flushes_merged = 0
        self.flushes_lost = 0
        self.write_errors = 0
        self._say_retentions()
        self._open()
        self.thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self.thread.start()

    def _say_retentions(self) -> None:
        for rule in self.schemas[:-1]:
            step = rule.archives[0].step
            if step < self.flush_ms:
                log.warning(
                    "store: retentions for /%s/ start at %s but flushes come every %d ms: slots between "
                    "flushes stay empty",
                    rule.pattern.pattern,
                    describe(rule.archives[:1]),
                    self.flush_ms,
                )
        log.info("store: %s, default retentions %s", self.path, describe(self.schemas[-1].archives))

    # --- opening ------------------------------------------------------------------------

    def _open(self) -> bool:
        """Open the file (setting a damaged one aside); pick up what an earlier run spooled."""
        try:
            try:
                store = Store(self.path, self.schemas)
            except sqlite3.DatabaseError as e:
                if getattr(e, "sqlite_errorcode", 0) & 0xFF not in DAMAGED:
                    raise
                self._set_aside(e)
                store = Store(self.path, self.schemas)
            committed = store.journal_seq()
            seqs = self.spool.seqs()
        except (sqlite3.Error, OSError) as e:
            self._failed(f"open {self.path}", e)
            return False
        self.store = store
        self.spool.drop([q for q in seqs if q <= committed])
        self.seq = max([committed, *seqs])
        replay: Pending | None = None
        for seq, snapshot in self.spool.load([q for q in seqs if q > committed]):
            if snapshot is None:
                self.flushes_lost += 1
                continue
            one = Pending(snapshot, 1, [seq])
            replay = one if replay is None else replay.then(one)
        if replay is not None:
            log.info("store: writing %d flushes spooled by an earlier run", replay.flushes)
        self.replay = replay
        return True

    def _set_aside(self, e: sqlite3.Error) -> None:
        """A damaged file is kept for a human to look at, never overwritten; history starts anew."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            old = self.path.with_name(self.path.name + suffix)
            if old.exists():
                old.replace(self.path.with_name(f"{self.path.name}.damaged-{stamp}{suffix}"))
        log.error(
            "store: %s is damaged (%s): set aside as %s.damaged-%s; history starts again",
            self.path,
            e,
            self.path.name,
            stamp,
        )

    def _failed(self, what: str, e: BaseException, then: str = HISTORY_OFF) -> None:
        """Counted always; said once per cause until history is written again (and at a bounded
        rate whatever the causes)."""
        self.write_errors += 1
        cause = f"cannot {what}: {e}"
        if then == HISTORY_OFF:
            self.cause = cause
        if cause not in self.said:
            self.said.add(cause)
            self.errors.warning("store: %s; %s", cause, then)

    # --- Graphite's API ------------------------------------------------------------------

    def routes(self, offload: Offload) -> dict[str, Route]:
        """graphite_api's routes: those that read the store in the render threads, under their
        name and with graphite-web's trailing slash (its RemoteFinder asks /metrics/find/); the
        others (no store read: /functions, /version...) on the event loop."""
        out: dict[str, Route] = {}
        for path, answer in graphite_api.STORE_PATHS.items():
            out[path] = out[path + "/"] = self._graphite(offload, answer)
        out.update(graphite_api.PLAIN_PATHS)
        return out

    def _graphite(self, offload: Offload, answer: Callable[[Store, Request, Budget], Answer]) -> Route:
        """A Graphite API route on this store, in the render threads (a wide wildcard reads
        thousands of series); a 503 saying why while history is off."""

        async def route(request: Request) -> Outgoing:
            store = self.store
            if store is None:
                return 503, "text/plain", f"history is off: {self.cause or 'the store is not open yet'}\n"
            return await offload(lambda budget: answer(store, request, budget))

        return route

    # --- flushing -----------------------------------------------------------------------

    def flush(self, snapshot: Snapshot) -> None:
        """In the runner's thread: hand the flush over; never waits for SQLite."""
        one = Pending(snapshot)
        with self.cond:
            behind = self.busy or self.waiting is not None or self.replay is not None
        if behind and self.store is not None:
            self._spool(one)
        with self.cond:
            if self.waiting is not None:
                one = self.waiting.then(one)
                self.flushes_merged += 1
            self.waiting = one
            self.cond.notify()

    def _spool(self, pending: Pending) -> None:
        try:
            self.spool.put(self.seq + 1, pending.snapshot)
        except OSError as e:
            self._failed(f"spool a flush in {self.spool.dir}", e, "it waits in memory only")
            return
        self.seq += 1
        pending.seqs.append(self.seq)

    def _run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.waiting or self.replay or self.closing)
                take = self.replay or self.waiting
                if take is None:
                    return  # closing, nothing left
                if take is self.replay:
                    self.replay = None
                else:
                    self.waiting = None
                self.busy = True
            ok = self._write(take)
            with self.cond:
                self.busy = False
                if not ok:  # it waits again, in front of anything newer
                    self.waiting = take if self.waiting is None else take.then(self.waiting)
                    if self.closing:
                        return
                    self.cond.wait_for(lambda: self.closing, timeout=max(self.flush_ms / 1000, 1.0))

    def _write(self, pending: Pending) -> bool:
        if self.store is not None and self.store.replaced():
            log.warning(
                "store: %s was removed or replaced while in use: history goes on in a new file", self.path
            )
            self.store.close()
            self.store = None
        if self.store is None and not self._open():
            return False
        assert self.store is not None
        snap = pending.snapshot
        started = time.perf_counter()
        try:
            points = (p for p in self.naming.points(snap) if math.isfinite(p.value))
            self.points = self.store.write(
                snap.time_ms, snap.flush_interval_ms, points, max(pending.seqs, default=0)
            )
        except sqlite3.Error as e:
            if getattr(e, "sqlite_errorcode", 0) & 0xFF in DAMAGED:
                self.store.close()
                self.store = None
                self._set_aside(e)
            self._failed(f"write {self.path}", e)
            return False
        self.spool.drop(pending.seqs)
        self.write_ms = (time.perf_counter() - started) * 1000
        self.written_ms = max(self.written_ms, snap.time_ms)
        self.last_flush = int(time.time())
        if self.cause is not None:
            log.warning("store: history written again (%s: over)", self.cause)
            self.cause = None
            self.said.clear()
        return True

    def status(self) -> dict[str, float]:
        store = self.store
        with self.cond:
            waiting = (self.waiting.flushes if self.waiting else 0) + (
                self.replay.flushes if self.replay else 0
            )
        return {
            **super().status(),
            "history": int(store is not None and self.cause is None),
            "series": len(store.ids) if store else 0,
            "series_expired": store.expired if store else 0,
            "points_last_flush": self.points,
            "write_ms": round(self.write_ms, 1),
            "flushes_waiting": waiting,
            "flushes_merged": self.flushes_merged,
            "flushes_lost": self.flushes_lost,
            "write_errors": self.write_errors,
            # how far history is behind the newest flush handed over (0 when it keeps up)
            "lag_seconds": round(max(0, self._newest_ms() - self.written_ms) / 1000, 3)
            if self.written_ms
            else 0,
            "disk_bytes": store.disk_bytes() if store else 0,
        }

    def _newest_ms(self) -> int:
        pending = self.waiting
        return pending.snapshot.time_ms if pending else self.written_ms

    def close(self) -> None:
        """Write what waits (CLOSE_SECONDS at most); what is still not written then stays spooled
        for the next start, and only what could not even be spooled is lost (counted, said)."""
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.thread.join(CLOSE_SECONDS)
        with self.cond:
            left = [p for p in (self.replay, self.waiting) if p is not None]
        for pending in left:
            if self.store is not None and len(pending.seqs) < pending.flushes:
                self.spool.drop(pending.seqs)
                pending.seqs.clear()
                self._spool(pending)  # all its flushes in one file
            if pending.seqs:
                log.warning(
                    "store: %d flushes not written yet stay spooled for the next start", pending.flushes
                )
            else:
                self.flushes_lost += pending.flushes
                log.error("store: %d flushes lost to history (%s)", pending.flushes, self.cause or "shutdown")
        if self.store is not None and not self.thread.is_alive():
            self.store.close()
