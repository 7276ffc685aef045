"""keytop's main loop: sources feed events from threads, the table is redrawn every --time."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live

from ..common.terminal import Keyboard, has_tty
from . import render, watch
from .events import Event
from .pcap import read_pcap
from .protocol import TextDecoder
from .table import KeyTable

Feed = queue.Queue  # of list[Event], BaseException (a source failed) or None (a source ended)

SORT_KEYS = {"c": "calls", "h": "hits", "m": "misses", "b": "bytes", "r": "rate"}


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


def watch_source(server: str, feed: Feed, stop: threading.Event) -> None:
    try:
        sock = watch.connect(server)
    except (OSError, ValueError) as e:
        feed.put(ConnectionError(f"{server}: {getattr(e, 'strerror', None) or e}"))
        return
    decoder = watch.WatchDecoder()
    sock.settimeout(0.2)
    buf = b""
    with sock:
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                feed.put(decoder.expire())
                if stop.is_set():  # the socket is empty: everything sent before the stop is in
                    break
                continue
            if not chunk:
                break
            *complete, buf = (buf + chunk).split(b"\n")
            events: list[Event] = []
            for raw in complete:
                events.extend(decoder.feed(raw.decode("utf-8", "replace")))
            events.extend(decoder.expire())
            feed.put(events)
    feed.put(decoder.expire(older_than=0))
    feed.put(None)


def line_source(lines: Iterable[str], to_events: Callable[[str], list[Event]], finish, feed: Feed) -> None:
    batch: list[Event] = []
    last = time.monotonic()
    for line in lines:
        batch.extend(to_events(line))
        if len(batch) > 1000 or time.monotonic() - last > 0.1:
            feed.put(batch)
            batch, last = [], time.monotonic()
    batch.extend(finish())
    feed.put(batch)
    feed.put(None)


def field_events(n: int) -> Callable[[str], list[Event]]:
    """pipestat's --field: count the Nth whitespace-separated field of each line (1 is the first)."""

    def events(line: str) -> list[Event]:
        fields = line.split()
        return [Event(fields[n - 1])] if len(fields) >= n else []

    return events


def pcap_source(path: str, port: int, feed: Feed) -> None:
    try:
        batch: list[Event] = []
        for ev in read_pcap(path, port):
            batch.append(ev)
            if len(batch) >= 1000:
                feed.put(batch)
                batch = []
        feed.put(batch)
    except (OSError, ValueError) as e:
        feed.put(e)
    feed.put(None)


def start_sources(opts: Options, feed: Feed, stop: threading.Event) -> tuple[list[threading.Thread], str]:
    targets: list[tuple[Callable[..., None], tuple]]
    if opts.pcap:
        targets = [(pcap_source, (opts.pcap, opts.port, feed))]
        title = f"keytop: {opts.pcap}"
    elif opts.stdin or opts.field:
        stream = (raw.decode("utf-8", "replace") for raw in sys.stdin.buffer)
        if opts.field:
            targets = [(line_source, (stream, field_events(opts.field), list, feed))]
            title = f"keytop: field {opts.field} of stdin"
        else:
            decoder = TextDecoder(opts.port)
            targets = [(line_source, (stream, decoder.feed, decoder.finish, feed))]
            title = "keytop: memcached traffic on stdin"
    else:
        targets = [(watch_source, (s, feed, stop)) for s in opts.servers]
        title = "keytop: " + ", ".join(opts.servers)
    threads = [threading.Thread(target=fn, args=args, daemon=True) for fn, args in targets]
    for t in threads:
        t.start()
    return threads, title


def run(opts: Options) -> int:
    table = KeyTable(opts.max_keys)
    feed: Feed = queue.Queue()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads, title = start_sources(opts, feed, stop)
    interactive = opts.format is None and sys.stdout.isatty() and has_tty()
    deadline = time.monotonic() + opts.runtime if opts.runtime else None
    live_sources = len(threads)
    sort, paused = opts.sort, False
    keyboard = Keyboard() if interactive else None
    console = Console()

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
            elif isinstance(item, BaseException):
                raise item
            else:
                now = time.time()
                for ev in item:
                    table.add(ev, now)

    def draw(live: Live) -> None:
        now = time.time()
        screen = render.screen(
            table.rows(sort, opts.limit, now), table.totals(now), title, sort, paused, opts.limit
        )
        live.update(screen, refresh=True)

    try:
        with (
            Live(console=console, screen=True, auto_refresh=False)
            if interactive
            else contextlib.nullcontext() as live
        ):
            while not stop.is_set():
                tick = time.monotonic() + opts.interval
                if deadline is not None:
                    tick = min(tick, deadline)
                if keyboard is not None:
                    drain(None)
                    assert live is not None
                    # the real terminal size: stale COLUMNS/LINES in the environment must not win
                    console.size = os.get_terminal_size(sys.stdout.fileno())
                    if not paused:
                        draw(live)
                    while (left := tick - time.monotonic()) > 0:
                        key = keyboard.read(left)
                        if key in ("q", "Q"):
                            stop.set()
                            break
                        if key in ("p", "P"):
                            paused = not paused
                        elif key in SORT_KEYS:
                            sort = SORT_KEYS[key]
                        if key is not None:
                            draw(live)
                else:
                    drain(tick)
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if live_sources == 0 and not interactive:
                    break
    except (KeyboardInterrupt, EOFError):  # ^C, or the terminal closed
        pass
    except (ConnectionError, OSError, ValueError) as e:
        print(f"webops keytop: {e}", file=sys.stderr)
        return 2
    finally:
        if keyboard is not None:
            keyboard.close()
    stop.set()
    for t in threads:
        t.join(timeout=3)
    with contextlib.suppress(ConnectionError, OSError, ValueError):
        drain(None)
    if not interactive:
        now = time.time()
        sys.stdout.write(
            render.FORMATS[opts.format or "text"](table.rows(sort, opts.limit, now), table.totals(now))
        )
    return 0
