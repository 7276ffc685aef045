"""keytop's main loop: sources feed events from threads, the table is redrawn every --time.

Sources say what they could not see on the same queue (`Notice`): a memcached that went away (and
the gap until it came back), entries memcached dropped, the parts of a capture that are missing.
The counts are then marked approximate, on screen and in every output format.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from ..common import live
from ..common.config import ConfigError
from ..common.live import Binding, KeyTable
from ..common.terminal import has_tty
from . import render, watch
from .events import Event
from .pcap import CaptureReport, read_pcap
from .protocol import TextDecoder, text
from .table import KeyTable as Counts

SORT_KEYS = {"c": "calls", "h": "hits", "m": "misses", "s": "sets", "b": "bytes", "r": "rate",
             "w": "bandwidth", "z": "size", "k": "key"}  # fmt: skip
RECONNECT_EVERY = 1.0  # seconds between attempts to reach a memcached that went away


@dataclass
class Notice:
    """Something a source could not see, or a change of its state."""

    source: str
    message: str
    skipped: int = 0  # log entries memcached dropped (since the last notice)
    gap: float = 0.0  # seconds without data that just ended
    down: bool = False
    note: str = ""  # what a capture did not hold
    current: list[str] | None = None  # what this source has not seen so far (replaces the last)


@dataclass
class Health:
    """What keytop knows it missed, for the screen and the outputs."""

    servers: dict[str, str] = field(default_factory=dict)  # source -> "up" or why it is down
    skipped: int = 0
    gaps: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    last: str = ""
    current: dict[str, list[str]] = field(default_factory=dict)  # source -> its notes so far

    def apply(self, n: Notice) -> None:
        self.skipped += n.skipped
        if n.note:
            self.notes.append(n.note)
        if n.current is not None:
            self.current[n.source] = n.current
        if n.gap:
            self.gaps.append({"server": n.source, "seconds": round(n.gap, 1)})
        if n.message:
            self.servers[n.source] = n.message if n.down else "up"
            self.last = f"{n.source}: {n.message}"

    @property
    def all_notes(self) -> list[str]:
        return [*self.notes, *(note for notes in self.current.values() for note in notes)]

    @property
    def approximate(self) -> bool:
        return bool(
            self.skipped or self.gaps or self.all_notes or any(v != "up" for v in self.servers.values())
        )

    def as_dict(self) -> dict:
        return {
            "approximate": self.approximate,
            "lost_entries": self.skipped,
            "gaps": self.gaps,
            "down": {k: v for k, v in self.servers.items() if v != "up"},
            "notes": self.all_notes,
        }


Feed = queue.Queue  # of list[Event], Notice, BaseException (fatal) or None (a source ended)


@dataclass
class Options:
    servers: list[str]
    stdin: bool
    pcap: str | None
    field: int | None
    port: int
    limit: int
    interval: float
    runtime: float | None
    format: str | None
    sort: str
    max_keys: int
    reverse: bool = False


def watch_source(server: str, feed: Feed, stop: threading.Event, fatal_first: bool) -> None:
    """memcached's watch stream, reconnected whenever it goes away; the gap is reported."""
    down_since: float | None = None
    first = True
    while not stop.is_set():
        before = _lost(server)  # before the watch starts: a loss in its first moments counts
        try:
            sock = watch.connect(server)
        except ValueError as e:  # a malformed --server
            feed.put(e)
            return
        except OSError as e:
            reason = f"{getattr(e, 'strerror', None) or e}"
            if first and fatal_first:
                feed.put(ConnectionError(f"{server}: {reason}"))
                return
            if down_since is None:
                down_since = time.monotonic()
                feed.put(Notice(server, f"down ({reason}); retrying every {RECONNECT_EVERY:g}s", down=True))
            first = False
            stop.wait(RECONNECT_EVERY)
            continue
        first = False
        if down_since is not None:
            gap = time.monotonic() - down_since
            feed.put(Notice(server, f"back after {gap:.1f}s without data", gap=gap))
            down_since = None
        else:
            feed.put(Notice(server, "watching"))
        if _read_watch(server, sock, feed, stop, before):
            return
        down_since = time.monotonic()
        feed.put(Notice(server, f"connection lost; reconnecting every {RECONNECT_EVERY:g}s", down=True))
    feed.put(None)


def _read_watch(server: str, sock, feed: Feed, stop: threading.Event, reported: int | None) -> bool:
    """Read one watch connection until it ends (False) or keytop stops (True); every second, and
    at the end, memcached's count of dropped log entries (`reported`: the count before the watch
    began) says what this stream did not carry."""
    decoder = watch.WatchDecoder(server)
    sock.settimeout(0.2)
    buf = b""
    checked = time.monotonic()

    def report_losses() -> None:
        nonlocal reported, checked
        now = _lost(server)
        if now is not None and reported is not None and now > reported:
            feed.put(Notice(server, "", skipped=now - reported))
            reported = now
        checked = time.monotonic()

    with sock:
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                feed.put(decoder.expire())
                if stop.is_set():  # the socket is empty: everything sent before the stop is in
                    feed.put(decoder.expire(older_than=0))
                    report_losses()
                    feed.put(None)
                    return True
                chunk = None
            except OSError:
                chunk = b""
            if chunk == b"":
                feed.put(decoder.expire(older_than=0))
                return False
            if chunk:
                *complete, buf = (buf + chunk).split(b"\n")
                events: list[Event] = []
                for raw in complete:
                    events.extend(decoder.feed(raw.decode("utf-8", "replace")))
                events.extend(decoder.expire())
                feed.put(events)
            if time.monotonic() - checked >= 1.0:
                report_losses()


def _lost(server: str) -> int | None:
    try:
        return watch.lost_entries(server)
    except (OSError, ValueError):
        return None


def stream_source(
    fd: int,
    to_events: Callable[[str], list[Event]],
    idle: Callable[[], list[Event]],
    finish: Callable[[], list[Event]],
    feed: Feed,
    stop: threading.Event,
    notes: Callable[[], list[str]] = list,
) -> None:
    """Lines of a file descriptor (stdin), read without Python's buffered stdin (a stop while the
    input is still open must not hang the interpreter's shutdown). A pause in the input hands
    over what was read so far at once: a burst shows without waiting for the next line. What the
    input did not show (`notes`) is said as it changes."""
    buf = b""
    batch: list[Event] = []
    said: list[str] = []

    def tell() -> None:
        nonlocal said
        if (now := notes()) != said:
            feed.put(Notice("stdin", "", current=now))
            said = now

    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            batch.extend(idle())
            if batch:
                feed.put(batch)
                batch = []
            tell()
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        *lines, buf = (buf + chunk).split(b"\n")
        for raw in lines:
            batch.extend(to_events(raw.decode("latin-1") + "\n"))
        if len(batch) > 1000:
            feed.put(batch)
            batch = []
    if buf:
        batch.extend(to_events(buf.decode("latin-1")))
    batch.extend(finish())
    feed.put(batch)
    tell()
    feed.put(None)


def field_events(n: int) -> Callable[[str], list[Event]]:
    """pipestat's --field: count the Nth whitespace-separated field of each line (1 is the first)."""

    def events(line: str) -> list[Event]:
        fields = line.split()
        return [Event(text(fields[n - 1]))] if len(fields) >= n else []

    return events


def pcap_source(path: str, port: int, feed: Feed) -> None:
    report = CaptureReport()
    try:
        batch: list[Event] = []
        for ev in read_pcap(path, port, report):
            batch.append(ev)
            if len(batch) >= 1000:
                feed.put(batch)
                batch = []
        feed.put(batch)
    except (OSError, ValueError) as e:
        feed.put(e)
    for note in report.notes:
        feed.put(Notice(path, "", note=note))
    feed.put(None)


def start_sources(opts: Options, feed: Feed, stop: threading.Event) -> tuple[list[threading.Thread], str]:
    targets: list[tuple[Callable[..., None], tuple]]
    if opts.pcap:
        targets = [(pcap_source, (opts.pcap, opts.port, feed))]
        title = f"keytop: {opts.pcap}"
    elif opts.stdin or opts.field:
        fd = sys.stdin.fileno()
        if opts.field:
            targets = [(stream_source, (fd, field_events(opts.field), list, list, feed, stop))]
            title = f"keytop: field {opts.field} of stdin"
        else:
            decoder = TextDecoder(opts.port)
            targets = [
                (stream_source, (fd, decoder.feed, decoder.idle, decoder.finish, feed, stop, decoder.notes))
            ]
            title = "keytop: memcached traffic on stdin"
    else:
        single = len(opts.servers) == 1
        targets = [(watch_source, (s, feed, stop, single)) for s in opts.servers]
        title = "keytop: " + ", ".join(opts.servers)
    threads = [threading.Thread(target=fn, args=args, daemon=True) for fn, args in targets]
    for t in threads:
        t.start()
    return threads, title


class Screen:
    """The live screen (common/live.py runs it): the table redrawn every --time, the keys of KEYS."""

    def __init__(self, table: Counts, health: Health, title: str, opts: Options, drain, stop, console):
        self.table, self.health, self.title, self.opts = table, health, title, opts
        self.drain, self.stop, self.console = drain, stop, console
        self.view = render.View(opts.sort, opts.reverse)
        self.overlay: list[str] | None = None
        self.shown: tuple[os.terminal_size, Any] | None = None  # kept while paused

    def refreshing(self) -> bool:
        return True  # counting goes on while the screen is paused

    def interval(self) -> float:
        return self.opts.interval

    def refresh(self) -> None:
        self.drain(None)

    def finished(self) -> bool:
        return self.stop.is_set()

    def render(self, size: os.terminal_size):
        if self.view.paused and self.shown is not None and self.shown[0] == size:
            return self.shown[1]
        now = time.time()
        fitting = render.rows_fitting(size.lines)
        rows = self.table.rows(self.view.sort, min(self.opts.limit, fitting), now, self.view.reverse)
        overlay = self.overlay[: fitting + 1] if self.overlay is not None else None
        group = render.screen(
            rows, self.table.totals(now), self.health, self.title, self.view, size.columns, overlay
        )
        self.shown = (size, group)
        return group

    def intercept(self, key: str) -> bool:
        self.shown = None  # a key redraws, paused or not
        if self.overlay is None:
            return False
        self.overlay = None
        return True

    def sort(self, key: str) -> None:
        self.view.sort, self.view.reverse = SORT_KEYS[key], False

    def reverse(self) -> None:
        self.view.reverse = not self.view.reverse

    def pause(self) -> None:
        self.view.paused = not self.view.paused

    def help(self) -> None:
        self.overlay = KEYS.help_lines(self.console.size.width)


KEYS = KeyTable(
    "keytop keys",
    [
        Binding(
            tuple(SORT_KEYS),
            " ".join(SORT_KEYS),
            "sort",
            "sort by calls, hits, misses, sets, bytes, calls/s, bytes/s, value size, key",
            with_key=True,
        ),
        Binding(("o",), "o", "reverse", "turn the order round (* marks the sorted column, ^ when reversed)"),
        Binding(("p", "P"), "p", "pause", "pause / resume the screen (counting goes on)"),
        Binding(("?",), "?", "help", "this help (any key returns)"),
        Binding(("q", "Q"), "q", "quit", "quit"),
    ],
)


def run(opts: Options) -> int:
    table = Counts(opts.max_keys, started=time.time())
    health = Health()
    feed: Feed = queue.Queue()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads, title = start_sources(opts, feed, stop)
    interactive = opts.format is None and sys.stdout.isatty() and has_tty()
    deadline = time.monotonic() + opts.runtime if opts.runtime else None
    live_sources = len(threads)

    def drain(block_until: float | None) -> None:
        """Move what the sources produced into the table, waiting until `block_until` if asked."""
        nonlocal live_sources
        while True:
            timeout = None if block_until is None else block_until - time.monotonic()
            try:
                item = feed.get(timeout=timeout) if timeout and timeout > 0 else feed.get_nowait()
            except queue.Empty:
                return
            if item is None:
                live_sources -= 1
            elif isinstance(item, Notice):
                health.apply(item)
            elif isinstance(item, BaseException):
                raise item
            else:
                now = time.time()
                for ev in item:
                    table.add(ev, now)

    interrupted = False
    try:
        if interactive:
            console = Console()
            screen = Screen(table, health, title, opts, drain, stop, console)
            live.run(screen, KEYS, console, deadline=deadline)
        while not interactive and not stop.is_set():
            tick = time.monotonic() + opts.interval
            drain(tick if deadline is None else min(tick, deadline))
            if (deadline is not None and time.monotonic() >= deadline) or live_sources == 0:
                break
    except KeyboardInterrupt:  # ^C: the final table all the same, then webops exits 130
        interrupted = True
    except (ConnectionError, OSError, ValueError) as e:  # no memcached to watch, no capture to read
        stop.set()
        raise ConfigError(str(e)) from None
    stop.set()
    for t in threads:
        t.join(timeout=3)
    with contextlib.suppress(ConnectionError, OSError, ValueError):
        drain(None)
    if not interactive:
        now = time.time()
        totals = {**table.totals(now), **health.as_dict()}
        rows = table.rows(opts.sort, opts.limit, now, opts.reverse)
        sys.stdout.write(render.FORMATS[opts.format or "text"](rows, totals))
    for line in render.loss_lines(health.as_dict()):  # every loss the outputs carry, on stderr too
        print(f"webops keytop: {line}", file=sys.stderr)
    if interrupted:
        raise KeyboardInterrupt
    return 0
