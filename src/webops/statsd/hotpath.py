"""Which hot path reads UDP: the native one (Rust, native/) or the Python reference.

The native path is receiver threads inside the extension `webops.statsd._native`: they receive
with `recvmmsg`, split, parse the lines whose meaning is certain and pre-aggregate them without
the GIL. Every `BATCH_SECONDS` the event loop takes what they hold as the same `Batch` a Python
reader process hands over (aggregate.py), so merging, gauge order, maxSeries and the lines the
fast path leaves to the reference parser all go through the one Python implementation.

The extension is built by `pip install` when cargo and Debian's crates are there (README: Install); when
it is not, `hotPath: auto` runs the Python readers and says so on start, in the console's
`stats` and in /metrics. `WEBOPS_STATSD_HOTPATH` sets the default of `hotPath` (the test suite
runs once with each).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..common.ratelimit import RateLimitedLog
from .aggregate import AggregationSettings, Batch, Read, Totals
from .kinds.timers import TimerSeries
from .listeners import dump_packets
from .readers import BATCH_SECONDS, FORWARD_MAX, ReaderSettings
from .validate import Key

log = logging.getLogger("webops.statsd")

try:
    from . import _native  # typed by _native.pyi

    NATIVE_MISSING = ""
except ImportError as e:  # not built here: the Python reference runs
    _native = None  # type: ignore[assignment]  # every use checks for None first
    NATIVE_MISSING = str(e)

CHOICES = ("auto", "native", "python")
NATIVE_AUTO = 1  # receiver threads for `readers: auto` (make bench measures 1 against 2)


def validate(v: Any) -> str:
    """The `hotPath` config key: `native` is refused where the extension is not built."""
    if v not in CHOICES:
        raise ValueError(f"expected one of {', '.join(CHOICES)}, got {v!r}")
    if v == "native" and _native is None:
        raise ValueError(f"the native hot path is not built here ({NATIVE_MISSING}); see the README: Install")
    return str(v)


CONFIG_KEYS: dict[str, Key] = {
    "hotPath": Key(
        "auto",
        validate,
        "auto (native if built, else python), native (Rust receivers) or python (the reference)",
        # the default, not an override: a file's hotPath wins (make test runs the suite with it)
        env="WEBOPS_STATSD_HOTPATH",
        env_is_default=True,
    ),
}


def choose(wanted: str) -> str:
    """`native` or `python`: what `hotPath: wanted` runs on this install."""
    return "python" if wanted == "python" or _native is None else "native"


def default() -> str:
    """What hotPath runs here when no config file sets it (WEBOPS_STATSD_HOTPATH, else auto)."""
    key = CONFIG_KEYS["hotPath"]
    return choose(os.environ.get(key.env or "", "").strip() or key.default)


def describe(hot_path: str) -> str:
    if hot_path == "native":
        return "native (Rust receiver threads, recvmmsg)"
    why = "hotPath: python" if _native is not None else f"native extension not built: {NATIVE_MISSING}"
    return f"python (reference; {why})"


def to_batch(taken: _native.Taken, settings: AggregationSettings) -> Batch:
    """One receiver's take() as the Batch a Python reader would have handed over. maxSeries is
    decided when the main process merges it; set members past maxSetMembers the receiver
    refused already, and counted."""
    prefix = settings.prefix_stats
    counters = taken.counters
    own = {f"{prefix}.packets_received": taken.packets, f"{prefix}.metrics_received": taken.metrics}
    if taken.set_members_refused:
        own[f"{prefix}.set_members_refused"] = taken.set_members_refused
    for key, n in own.items():
        counters[key] = counters.get(key, 0) + n
    tables: dict[str, dict[str, Any]] = {
        "counters": counters,
        "timers": {k: TimerSeries(samples, count) for k, (samples, count) in taken.timers.items()},
        "sets": taken.sets,
    }
    reads: list[Read] = [
        (seq, {"gauges": gauges} if gauges else {}, slow) for seq, gauges, slow in taken.reads
    ]
    totals = Totals(
        packets_received=taken.packets,
        metrics_received=taken.metrics,
        set_members_refused=taken.set_members_refused,
        last_msg_seen=taken.last_seen,
    )
    batch = Batch(tables, reads, totals, Counter(taken.key_counts), taken.seqs)
    batch.packets, batch.packets_dropped = taken.raw, taken.raw_dropped
    return batch


class NativePool:
    """Receiver threads over the UDP sockets, behind ReaderPool's interface (the daemon uses one
    or the other for its lifetime). On reload a new intake starts first and the old one stops
    once it has read what the sockets hold; they share the read numbering, so gauges keep their
    order. A receiver thread that ends without being stopped (a panic) is replaced."""

    def __init__(self, on_batch: Callable[[Batch], None]) -> None:
        assert _native is not None
        self.on_batch = on_batch
        self.socks: list[socket.socket] = []
        self.settings: ReaderSettings | None = None
        self.intake: _native.Intake | None = None
        self.restarts = 0
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None
        self.held_back = 0  # reads skipped by full batches, as last reported
        self.behind_log = RateLimitedLog(log, "intake messages")

    @property
    def running(self) -> int:
        return self.intake.running() if self.intake is not None else 0

    @property
    def healthy(self) -> bool:
        return self.settings is None or not self.socks or self.running >= self.settings.count

    def _start(
        self, socks: list[socket.socket], settings: ReaderSettings, after: _native.Intake | None
    ) -> _native.Intake:
        keep = FORWARD_MAX if settings.forward or settings.dump else 0
        aggregation = settings.aggregation
        return _native.Intake(
            [s.fileno() for s in socks],
            settings.count,
            aggregation.max_series,  # what one batch holds; the main process decides maxSeries
            aggregation.max_set_members,
            aggregation.key_flush,
            keep,
            after,
        )

    async def switch(self, socks: list[socket.socket], settings: ReaderSettings) -> None:
        if socks == self.socks and settings == self.settings and self.healthy:
            return
        old = self.intake
        self.intake = self._start(socks, settings, old) if socks else None
        self.held_back = 0
        self.socks, self.settings = list(socks), settings
        if old is not None:
            await self._retire(old)
        if self.timer is None:
            self.timer = self.loop.call_later(BATCH_SECONDS, self._tick)

    async def _retire(self, intake: _native.Intake) -> None:
        await asyncio.to_thread(intake.stop)  # its threads drain the sockets first
        self._deliver(intake)

    def _deliver(self, intake: _native.Intake) -> None:
        settings = self.settings
        assert settings is not None
        for taken in intake.take():
            batch = to_batch(taken, settings.aggregation)
            if settings.dump:
                dump_packets(batch.packets)
            if not settings.forward:
                batch.packets = []
            self.on_batch(batch)

    def _tick(self) -> None:
        self.timer = self.loop.call_later(BATCH_SECONDS, self._tick)
        intake = self.intake
        if intake is None or self.settings is None:
            return
        self._deliver(intake)
        if (held := intake.held_back()) > self.held_back:
            self.behind_log.warning(
                "this process is behind the native receivers (lines they leave to the Python parser:"
                " several values, DogStatsD fields, unusual numbers; a slow flush; or maxSeries new"
                " series within one batch): they paused %d times, datagrams waited in the socket"
                " buffer, and what overflowed it the kernel dropped (statsd.udp_kernel_drops)",
                held - self.held_back,
            )
            self.held_back = held
        if intake.running() < self.settings.count:
            self.restarts += 1
            log.error(
                "a native receiver thread ended (%d restarts so far); starting new receivers", self.restarts
            )
            self.intake, self.held_back = self._start(self.socks, self.settings, intake), 0
            self.loop.create_task(self._retire(intake))

    async def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.intake is not None:
            await self._retire(self.intake)
        self.intake, self.socks, self.settings = None, [], None
