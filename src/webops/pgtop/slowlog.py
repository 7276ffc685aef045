"""Slow queries: each written once (per server, pid and query start) to a log file, and posted to
Slack.

"Once" holds across runs: what was recorded is kept in a small state file, so `--once` from cron
every minute logs and posts a long query once, not every minute. Posting happens in a thread (a
slow webhook must not freeze the screen), at most `per_minute` posts a minute; every failure
(refused, HTTP error, bad URL, rate limit, posts left at exit) is reported, never fatal.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx

from .data import Backend

SEEN_MAX = 10_000  # remembered (server, pid, query start) entries: only queries still slow are kept


def state_dir() -> Path:
    """$XDG_STATE_HOME/webops (~/.local/state/webops): logs and state, never the current directory."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "webops"


def default_log_path() -> str:
    return str(state_dir() / "pgtop-slow.log")


def describe(b: Backend, server: str) -> str:
    return (
        f"server={server} pid={b.pid} user={b.usename} db={b.datname} client={b.client or '-'} "
        f"duration={b.query_seconds or 0:.1f}s"
    )


def _key(b: Backend) -> str:
    return f"{b.pid}@{b.query_start.isoformat() if b.query_start else '-'}"


class SlowLog:
    def __init__(
        self,
        path: str | None,
        notify: Callable[[Backend], None] | None = None,
        server: str = "",
        seen_path: Path | None = None,
    ) -> None:
        self.path, self.notify, self.server = path, notify, server
        self.seen_path = seen_path
        self.errors: list[str] = []
        self.seen: set[str] = set(self._load_seen())

    def _load_seen(self) -> list[str]:
        if self.seen_path is None:
            return []
        try:
            return list(json.loads(self.seen_path.read_text()).get(self.server, []))
        except (OSError, ValueError, AttributeError):
            return []

    def _save_seen(self) -> None:
        if self.seen_path is None:
            return
        try:
            self.seen_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                state = json.loads(self.seen_path.read_text())
                state = state if isinstance(state, dict) else {}
            except (OSError, ValueError):
                state = {}
            state[self.server] = sorted(self.seen)[:SEEN_MAX]
            tmp = self.seen_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(self.seen_path)
        except OSError as e:
            self.errors.append(f"slow log state {self.seen_path}: {e.strerror or e}")

    def record(self, slow: list[Backend]) -> list[Backend]:
        """Log the slow queries not logged yet; returns them. Forgets queries no longer slow."""
        current = {_key(b): b for b in slow}
        new = [b for k, b in current.items() if k not in self.seen]
        changed = bool(new) or not self.seen <= current.keys()
        self.seen = set(current)
        if new and self.path:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    for b in new:
                        f.write(
                            f"{datetime.now().isoformat(timespec='seconds')} {describe(b, self.server)}\n"
                            f"    {(b.query or '').strip()}\n"
                        )
            except OSError as e:
                self.errors.append(f"slow log {self.path}: {e.strerror or e}")
        if changed:
            self._save_seen()
        if self.notify:
            for b in new:
                self.notify(b)
        return new

    def problem(self) -> str | None:
        """The latest failure not reported yet (the log, its state, Slack), for the status line."""
        if isinstance(self.notify, Slack) and (failure := self.notify.take_failure()):
            self.errors.append(failure)
        return self.errors.pop() if self.errors else None


def slack_escape(text: str) -> str:
    """Slack's markup: &, < and > must be escaped, and a ``` inside the SQL would end the code
    block (a zero-width space keeps it from being one)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("```", "`\u200b`\u200b`")


class Slack:
    """Posts to an incoming-webhook URL from a thread; failures are kept for the screen and
    `--once` to show."""

    def __init__(self, url: str, per_minute: int = 10, server: str = "") -> None:
        self.url, self.per_minute, self.server = url, per_minute, server
        self.queue: queue.Queue[Backend | None] = queue.Queue(maxsize=1000)
        self.sent: list[float] = []
        self.posted = 0
        self.held_back = 0  # not posted: over the rate limit or the queue's bound
        self.failures: list[str] = []  # every failed post, in order
        self.reported = 0  # failures already shown on the screen
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def __call__(self, b: Backend) -> None:
        try:
            self.queue.put_nowait(b)
        except queue.Full:
            self._fail("queue full (1,000 posts waiting)")

    def message(self, b: Backend) -> dict:
        text = (
            f":snail: Slow query on {slack_escape(self.server or 'PostgreSQL')}: "
            f"{slack_escape(describe(b, self.server))}\n```{slack_escape((b.query or '').strip())}```"
        )
        return {"text": text}

    def _fail(self, why: str) -> None:
        with self.lock:
            self.failures.append(f"slack: {why}")

    def take_failure(self) -> str | None:
        with self.lock:
            if self.reported < len(self.failures):
                self.reported = len(self.failures)
                return self.failures[-1] + (
                    f" ({len(self.failures)} failures so far)" if self.reported > 1 else ""
                )
        return None

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while (b := self.queue.get()) is not None:
                now = time.monotonic()
                self.sent = [t for t in self.sent if now - t < 60]
                if len(self.sent) >= self.per_minute:
                    self.held_back += 1
                    self._fail(f"rate limit ({self.per_minute}/min): pid {b.pid} not posted")
                    continue
                try:
                    r = client.post(self.url, json=self.message(b))
                    r.raise_for_status()
                    self.sent.append(now)
                    self.posted += 1
                except httpx.HTTPStatusError as e:
                    self._fail(f"post for pid {b.pid} refused: HTTP {e.response.status_code}")
                except (httpx.HTTPError, httpx.InvalidURL, ValueError) as e:  # refused, timed out, bad URL
                    self._fail(f"cannot post for pid {b.pid}: {e or type(e).__name__}")

    def close(self, timeout: float = 10) -> list[str]:
        """Send what is queued (up to `timeout` seconds), stop, and return every failure,
        including the posts still unsent."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            unsent = self.queue.qsize()
            self._fail(f"{unsent} post(s) not sent at exit (gave up after {timeout:g}s)")
        with self.lock:
            return list(self.failures)
