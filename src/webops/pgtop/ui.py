"""The interactive screen: refresh, keys, confirmations. All data work is in data.py."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import psycopg
from rich.console import Console
from rich.live import Live

from ..common.terminal import Keyboard
from . import data, render
from .actions import signal_backends
from .slowlog import SlowLog


@dataclass
class State:
    view: str = "all"
    sort: str = "duration"
    refresh: float = 2.0
    filters: data.Filters = field(default_factory=data.Filters)
    selected: int = 0
    message: str = ""
    overlay: list[str] | None = None
    confirm: list[data.Backend] | None = None  # backends about to be signalled
    prompt: str | None = None  # text typed at the filter prompt


class Screen:
    def __init__(self, connect, state: State, slow_threshold: float, slowlog: SlowLog, title: str) -> None:
        self.connect, self.state, self.slow_threshold, self.slowlog = connect, state, slow_threshold, slowlog
        self.title = title
        self.conn = None
        self.snap: data.Snapshot | None = None
        self.rows: list[data.Backend] = []
        self.console = Console()

    def poll(self) -> None:
        """Fetch a snapshot; a lost connection is shown and retried at the next refresh."""
        try:
            if self.conn is None or self.conn.closed:
                self.conn = self.connect()
            self.snap = data.fetch(self.conn, self.snap)
            if self.state.message.startswith("connection lost"):
                self.state.message = "reconnected"
            new = self.slowlog.record(data.slow(self.snap, self.slow_threshold))
            if new:
                self.state.message = f"{len(new)} new slow quer{'y' if len(new) == 1 else 'ies'} logged"
            if self.slowlog.errors:
                self.state.message = self.slowlog.errors.pop()
        except (psycopg.Error, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.state.message = f"connection lost: {first}; retrying every {self.state.refresh:g}s"
            if self.conn is not None:
                self.conn.close()
            self.conn = None
        self._select()

    def _select(self) -> None:
        s = self.state
        self.rows = data.select(self.snap, s.view, s.filters, s.sort) if self.snap else []
        s.selected = max(0, min(s.selected, len(self.rows) - 1))

    def render(self):
        s = self.state
        size = os.get_terminal_size(sys.stdout.fileno())
        self.console.size = size
        body = max(3, size.lines - 7)
        status = s.message
        if s.prompt is not None:
            status = f"filter (db= user= state= min= re=; enter applies, esc backs out): {s.prompt}"
        elif s.confirm is not None:
            status = "c: cancel the queries (pg_cancel_backend)   t: terminate the sessions   esc: back out"
        info = (
            f"{self.title}   view {s.view}  sort {s.sort}  refresh {s.refresh:g}s"
            f"  idle {'shown' if s.filters.show_idle else 'hidden'}"
            + (f"  filter {s.filters.describe()}" if s.filters.describe() else "")
        )
        overlay = s.overlay
        if s.confirm is not None:
            overlay = [f"About to signal {len(s.confirm)} backend(s):", ""] + [
                f"  {b.pid:>7}  {b.usename or ''}  {b.datname or ''}  {render.seconds(b.query_seconds)}  "
                f"{' '.join((b.query or '').split())[:120]}"
                for b in s.confirm
            ]
        return render.screen(
            self.snap, self.rows, s.selected, self.slow_threshold, status, body, info, overlay
        )

    def key(self, key: str) -> bool:
        """Handle one key; False means quit."""
        s = self.state
        if s.prompt is not None:
            return self._prompt_key(key)
        if s.confirm is not None:
            if key in ("c", "t"):
                how = "cancel" if key == "c" else "terminate"
                pids = [b.pid for b in s.confirm]
                results: list = signal_backends(self.conn, pids, how) if self.conn else []
                s.overlay = (
                    [f"{how}:", ""]
                    + [f"  {r.pid:>7}  {'ok' if r.ok else 'FAILED'}  {r.message}" for r in results]
                    + ["", "(any key returns)"]
                )
                s.message = f"{how}: {sum(r.ok for r in results)} of {len(results)} done"
                s.confirm = None
            elif key in ("escape", "q", "n"):
                s.confirm = None
                s.message = "nothing signalled"
            return True
        if s.overlay is not None:
            s.overlay = None
            return True
        if key in ("q", "Q"):
            return False
        if key == "up":
            s.selected = max(0, s.selected - 1)
        elif key == "down":
            s.selected = min(len(self.rows) - 1, s.selected + 1)
        elif key in ("\n", "\r"):
            if self.rows:
                b = self.rows[s.selected]
                s.overlay = [
                    f"pid {b.pid}  {b.usename} @ {b.datname}  {render.seconds(b.query_seconds)}",
                    "",
                    *(b.query or "").splitlines(),
                    "",
                    "(any key returns)",
                ]
        elif key == "k":
            if self.rows:
                s.confirm = [self.rows[s.selected]]
        elif key == "K":
            targets = data.slow(self.snap, self.slow_threshold) if self.snap else []
            if targets:
                s.confirm = targets
            else:
                s.message = f"no query running longer than {self.slow_threshold:g}s"
        elif key == "/":
            s.prompt = ""
        elif key == "s":
            s.sort = data.SORTS[(data.SORTS.index(s.sort) + 1) % len(data.SORTS)]
        elif key == "v":
            s.view = data.VIEWS[(data.VIEWS.index(s.view) + 1) % len(data.VIEWS)]
        elif key == "i":
            s.filters.show_idle = not s.filters.show_idle
        elif key == "+":
            s.refresh = min(60.0, s.refresh * 2)
        elif key == "-":
            s.refresh = max(0.25, s.refresh / 2)
        elif key == "?":
            s.overlay = render.HELP.splitlines()
        self._select()
        return True

    def _prompt_key(self, key: str) -> bool:
        s = self.state
        assert s.prompt is not None
        if key == "escape":
            s.prompt = None
        elif key in ("\n", "\r"):
            try:
                s.filters = data.parse_filter(s.prompt, s.filters)
                s.message = f"filter: {s.filters.describe() or 'none'}"
            except ValueError as e:
                s.message = str(e)
            s.prompt = None
            self._select()
        elif key in ("\x7f", "\b"):
            s.prompt = s.prompt[:-1]
        elif len(key) == 1 and key.isprintable():
            s.prompt += key
        return True

    def run(self) -> int:
        keyboard = Keyboard()
        try:
            with Live(console=self.console, screen=True, auto_refresh=False) as live:
                next_poll = 0.0
                while True:
                    if time.monotonic() >= next_poll:
                        self.poll()
                        next_poll = time.monotonic() + self.state.refresh
                    live.update(self.render(), refresh=True)
                    key = keyboard.read(next_poll - time.monotonic())
                    if key is not None and not self.key(key):
                        return 0
        except KeyboardInterrupt:
            return 0
        finally:
            keyboard.close()
            if self.conn is not None:
                self.conn.close()
