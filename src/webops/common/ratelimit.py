"""Log lines that can come in floods (bad packets, failing peers) without flooding the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """At most `burst` messages per `window` seconds; then one summary of how many were held back."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        burst: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.what, self.burst, self.window, self.clock = logger, what, burst, window, clock
        self.window_start = clock()
        self.logged = 0
        self.suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        self.tick()
        if self.logged < self.burst:
            self.logged += 1
            self.logger.warning(msg, *args)
        else:
            self.suppressed += 1

    def hold_back(self, count: int) -> None:
        """Count messages that were never formatted (their sender already dropped them)."""
        self.suppressed += count

    def tick(self) -> None:
        """Close the window if it is over (call it now and then so the summary is not late)."""
        now = self.clock()
        if now - self.window_start < self.window:
            return
        if self.suppressed:
            self.logger.warning(
                "%d more %s not logged in the last %d s",
                self.suppressed,
                self.what,
                round(now - self.window_start),
            )
        self.window_start, self.logged, self.suppressed = now, 0, 0
