"""The flush: on the wall-clock grid, detach the aggregator's interval and turn it into the
snapshot every backend gets, with the timer maths in a thread of its own.

Kept apart from the daemon's wiring (server.py): what a flush covers, how late it may be, and
what the shutdown flush becomes are decisions about time and data, not about sockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from ..common.ratelimit import RateLimitedLog
from .aggregate import Aggregator, Interval, merge_intervals
from .listeners import printable
from .snapshot import Snapshot, SummarySettings, summarize

log = logging.getLogger("webops.statsd")

# (snapshot for every backend, snapshot for backends that overwrite per time slot), flusher thread
Deliver = Callable[[Snapshot, Snapshot], None]


def next_flush(now: float, interval_s: float) -> float:
    """The next multiple of the interval after `now`: flushes stay on the grid (no drift, Etsy #574)."""
    return (math.floor(now / interval_s) + 1) * interval_s


class Flusher:
    def __init__(self, aggregator: Aggregator, deliver: Deliver) -> None:
        self.aggregator, self.deliver = aggregator, deliver
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="flusher")
        self.pending = 0  # intervals handed to the executor and not yet processed
        self.interval_start = time.time()  # what the next flush covers starts here
        self.last_interval: Interval | None = None  # the last grid flush's data (see flush)
        self.last_covered_ms = 0
        self.last_flush_wall: int | None = None
        self.log = RateLimitedLog(log, "flush messages")

    async def run(
        self,
        interval_ms: Callable[[], int],
        summary: Callable[[], SummarySettings],
        tick: Callable[[], Awaitable],
    ) -> None:
        """Flush at every grid point of the (live) flushInterval; `tick` does the daemon's chores
        after each one (log summaries, a config file that changed)."""
        due = next_flush(time.time(), interval_ms() / 1000)
        while True:
            await asyncio.sleep(max(0.0, due - time.time()))
            self.aggregator.advance()  # a read lost with a dead reader must not hold gauges back
            if self.pending:
                # The executor is still busy with an earlier interval (a huge one, a slow machine):
                # this interval's data stays in and goes out with the next flush. Nothing is lost
                # and memory stays bounded; the rates of that flush cover its real length.
                self.log.warning(
                    "flush at %d delayed: the previous flush is still being processed", round(due)
                )
            else:
                self.flush(round(due), due, summary(), self.timestamp_lag(interval_ms()))
            await tick()
            due = next_flush(max(time.time(), due), interval_ms() / 1000)

    def timestamp_lag(self, interval_ms: int) -> float | None:
        """Etsy's statsd.timestamp_lag: seconds between this flush and the last one, less the
        interval (wall clock, whole seconds); none on the first flush, as in Etsy."""
        now = round(time.time())
        previous, self.last_flush_wall = self.last_flush_wall, now
        if previous is None:
            return None
        return now - previous - interval_ms / 1000

    def flush(
        self, ts: int, at: float, summary: SummarySettings, lag: float | None = None, final: bool = False
    ) -> None:
        """Detach the interval in the loop thread (intake runs there too, so no sample can land
        half in one interval and half in the next), then summarize it in the executor.
        `ts`: the flush's timestamp (whole seconds); `at`: the exact time it covers up to.
        A flush delayed past its interval has its rates computed over its real length.

        The final flush (shutdown) is partial. Backends that keep one value per time slot
        (Graphite: carbon overwrites) get it merged with the last grid flush and stamped with
        that flush's time instead: stamped `now`, it would land in that same slot and replace
        a whole interval with a few seconds; stamped in the future, whisper would refuse it.
        """
        interval = self.aggregator.take(ts, lag)
        interval.time_ms = round(at * 1000)
        covered_ms = round((at - self.interval_start) * 1000)
        slot: tuple[Interval, SummarySettings] | None = None
        if final and self.last_interval is not None:
            slot_ms = covered_ms + self.last_covered_ms
            merged = merge_intervals(self.last_interval, interval)
            slot = (merged, dataclasses.replace(summary, flush_interval_ms=slot_ms))
        elif covered_ms > summary.flush_interval_ms:
            summary = dataclasses.replace(summary, flush_interval_ms=covered_ms)
        self.last_interval, self.last_covered_ms = interval, summary.flush_interval_ms
        self.interval_start = at
        self.pending += 1
        self.executor.submit(self._summarize, interval, summary, slot)

    def _summarize(
        self, interval: Interval, summary: SummarySettings, slot: tuple[Interval, SummarySettings] | None
    ) -> None:
        """In the executor: the timer maths, then hand both snapshots over."""
        try:
            snapshot = summarize(interval, summary)
            slot_snapshot = summarize(*slot) if slot else snapshot
        except Exception:  # a bug here must not silently stop every later flush
            log.exception("flush at %d failed", interval.timestamp)
            return
        finally:
            self.pending -= 1
        if snapshot.non_finite:
            self.log.warning(
                "flush at %d: %d series overflowed to infinity and were left out: %s",
                interval.timestamp,
                len(snapshot.non_finite),
                printable(", ".join(snapshot.non_finite[:5])[:300]),
            )
        self.deliver(snapshot, slot_snapshot)

    async def drain(self) -> None:
        """Wait until every flush handed over so far was delivered."""
        await asyncio.get_running_loop().run_in_executor(self.executor, lambda: None)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
