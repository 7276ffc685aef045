"""Slow queries: each written once (per pid and query start) to a log file, and posted to Slack.

Posting happens in a thread (a slow webhook must not freeze the screen), at most `per_minute`
posts a minute; a failure to post is shown and logged, never fatal.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime

import httpx

from .data import Backend


def describe(b: Backend) -> str:
    return (
        f"pid={b.pid} user={b.usename} db={b.datname} client={b.client or '-'} "
        f"duration={b.query_seconds or 0:.1f}s"
    )


class SlowLog:
    def __init__(self, path: str | None, notify: Callable[[Backend], None] | None = None) -> None:
        self.path = path
        self.notify = notify
        self.seen: set[tuple[int, datetime | None]] = set()
        self.errors: list[str] = []

    def record(self, slow: list[Backend]) -> list[Backend]:
        """Log the slow queries not logged yet; returns them. Forgets pids no longer slow."""
        current = {(b.pid, b.query_start) for b in slow}
        new = [b for b in slow if (b.pid, b.query_start) not in self.seen]
        self.seen &= current
        self.seen |= current
        if new and self.path:
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    for b in new:
                        f.write(
                            f"{datetime.now().isoformat(timespec='seconds')} {describe(b)}\n"
                            f"    {(b.query or '').strip()}\n"
                        )
            except OSError as e:
                self.errors.append(f"slow log {self.path}: {e.strerror or e}")
        if self.notify:
            for b in new:
                self.notify(b)
        return new


class Slack:
    """Posts to an incoming-webhook URL from a thread; `status` says how the last post went."""

    def __init__(self, url: str, per_minute: int = 10, server: str = "") -> None:
        self.url, self.per_minute, self.server = url, per_minute, server
        self.queue: queue.Queue[Backend | None] = queue.Queue(maxsize=1000)
        self.sent: list[float] = []
        self.held_back = 0
        self.status = ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def __call__(self, b: Backend) -> None:
        try:
            self.queue.put_nowait(b)
        except queue.Full:
            self.held_back += 1

    def message(self, b: Backend) -> dict:
        text = (
            f":snail: Slow query on {self.server or 'PostgreSQL'}: {describe(b)}\n"
            f"```{(b.query or '').strip()}```"
        )
        return {"text": text}

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while (b := self.queue.get()) is not None:
                now = time.monotonic()
                self.sent = [t for t in self.sent if now - t < 60]
                if len(self.sent) >= self.per_minute:
                    self.held_back += 1
                    self.status = f"slack: rate limited, {self.held_back} slow queries not posted"
                    continue
                try:
                    r = client.post(self.url, json=self.message(b))
                    r.raise_for_status()
                    self.sent.append(now)
                    self.status = f"slack: posted pid {b.pid}"
                except httpx.HTTPError as e:
                    self.status = f"slack: cannot post: {e}"

    def close(self, timeout: float = 10) -> None:
        self.queue.put(None)
        self.thread.join(timeout)
