"""Etsy's keyFlush: every `keyFlush.interval`, the most frequently sent keys (the top
`keyFlush.percent`), to a file (`keyFlush.log`) or stdout. The counting is the aggregator's
(AggregationSettings.key_flush); this is the timer and the writing."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Callable

from ..common.ratelimit import RateLimitedLog
from .config import StatsdConfig

log = logging.getLogger("webops.statsd")


class KeyFlush:
    def __init__(self, config: Callable[[], StatsdConfig], take_counts: Callable[[], Counter[str]]) -> None:
        self.config = config  # the running configuration: a reload changes the section at once
        self.take_counts = take_counts
        self.errors_log = RateLimitedLog(log, "keyFlush messages")
        self.errors = 0  # intervals whose top keys could not be written, in a row

    async def run(self) -> None:
        """Every interval, log the most frequently sent keys."""
        while True:
            kf = self.config().section("keyFlush")
            if not kf["interval"]:
                await asyncio.sleep(1)
                continue
            await asyncio.sleep(kf["interval"] / 1000)
            counts = self.take_counts()
            top = counts.most_common(math.ceil(len(counts) * kf["percent"] / 100))
            stamp = time.strftime("%a %b %d %Y %H:%M:%S GMT%z (%Z)")
            text = "".join(f"{stamp} count={n} key={k}\n" for k, n in top)
            if kf["log"]:
                self.append(kf["log"], text)
            else:
                sys.stdout.write(text)
                sys.stdout.flush()

    def append(self, path: str, text: str) -> None:
        """One interval's top keys; a file that cannot be written (missing directory, full disk)
        costs that interval's list, said at a bounded rate, and the next interval tries again."""
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            self.errors += 1
            self.errors_log.warning("keyFlush: cannot write %s: %s (trying again next interval)", path, e)
            return
        if self.errors:
            log.info("keyFlush: writing %s again after %d failed intervals", path, self.errors)
            self.errors = 0
