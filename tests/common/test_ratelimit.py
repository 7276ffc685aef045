"""Floods of log lines: a few shown, the rest summed up once the window is over."""

from __future__ import annotations

import logging

from webops.common.ratelimit import RateLimitedLog


def test_burst_then_one_summary(caplog) -> None:
    now = [0.0]
    log = RateLimitedLog(
        logging.getLogger("test.ratelimit"), "bad lines", burst=3, window=60, clock=lambda: now[0]
    )
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        for i in range(10):
            log.warning("bad %d", i)
        log.hold_back(5)  # counted elsewhere (a reader process), never formatted
        now[0] = 30.0
        log.tick()  # the minute is not over: nothing yet
        now[0] = 61.0
        log.tick()
        log.warning("after")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["bad 0", "bad 1", "bad 2", "12 more bad lines not logged in the last 61 s", "after"]
