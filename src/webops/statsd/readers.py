"""UDP intake spread over reader processes, merged into the main process's aggregator.

One Python process parses about a million metrics a second at best; statsd traffic comes in
bursts far above that. Reader processes share the UDP sockets (the kernel hands each datagram to
one of them, even when it all comes from a single client, which SO_REUSEPORT would not spread),
pre-aggregate what they read into a `Batch`, and send it to the main process every
`BATCH_SECONDS`. Merging a batch costs per distinct series, not per line, so the main process
stays free for the console, the flush timer and the backends.

A reader that falls behind on lines that are slow for the Python parser (bad lines, several
values a line, DogStatsD extras: what the native fast path leaves to it) sheds them, so that the
kernel does not drop datagrams, good lines with them. The rule (`triage`, in `reader_main`):

- A read is *behind* when it brought at least 1/BEHIND_SHARE of the socket's receive buffer
  (a backlog), and parsing it whole would take longer than BEHIND_SECONDS and longer than the
  time since this reader last began to parse a read whole, at what a byte cost it to parse
  lately (measured over about the last COST_BYTES it parsed whole): its share of the traffic
  then comes faster than it parses it, and the socket fills up to what the kernel drops. So a
  reader behind parses what it has the time for, and sheds the rest. Any other read is ingested
  as it is, the reference path at its usual cost (plus two clock readings).
- A read that is behind is triaged: a regular expression picks out the lines that the native fast
  path's grammar accepts (`FAST_LINE`, at C speed). When more than half of the read's lines are
  slow, only the fast ones are ingested and the others are counted in `statsd.lines_shed`; a line
  the fast path takes is never shed. Otherwise the whole read is ingested, and the next
  TRIAGE_SKIP reads that are behind are too, untested: a reader behind on good lines pays for the
  test once in a while only.

Each read is judged on its own, so a reader leaves shedding as soon as it has caught up.

Readers are started with `spawn` (not `fork`): the main process has backend threads, and a fork
would copy their held locks into the child.

A reader that dies (for any reason: a bug, the OOM killer, a stray `kill`) is noticed through
its process sentinel, logged and replaced at once; until the replacement says it is reading,
`healthy` is False, which /health and the console's `health` report. On reload a new set of
readers starts first and the old one stops only once the new one reads, so there is no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import re
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Lock

from .aggregate import AggregationSettings, Batch, BatchAggregator
from .listeners import dump_packets, recv_many

log = logging.getLogger("webops.statsd")

BATCH_SECONDS = 0.05
STOP = "stop"
READY = "ready"
DRAIN_MAX = 1_000_000  # datagrams a stopping reader reads at most: more than any receive buffer holds
DRAIN_SECONDS = 5.0  # and for at most this long: well inside STOP_TIMEOUT, with its batch to send
STOP_TIMEOUT = 10.0  # how long a stopping reader gets to hand its batch over before it is killed
READ_MAX = 500  # datagrams per read (one seal, one look at whether the batch is full)
# and about this many bytes: parsing a read of 64 KiB datagrams of bad lines whole takes about a
# second, so a reader sees STOP (and keeps its drain's deadline) within that, whatever comes
READ_BYTES = 1 << 20
START_TIMEOUT = 60.0
FORWARD_MAX = 100_000  # raw datagrams a batch holds for a repeater while the main process is slow
TRIAGE_SKIP = 20  # reads behind ingested untested after one found mostly fast lines
BEHIND_SECONDS = BATCH_SECONDS  # a read that takes less than this to parse is never behind
BEHIND_SHARE = 16  # nor one that brings less than this share of the receive buffer
COST_BYTES = 1 << 20  # a reader's parse cost per byte is measured over about this many bytes

# What the native parser may take (native/src/parse.rs, `parse_line`), or a little more (a
# rate of 0, a negative ms, a bad part after a good one: the Python parser decides those): a name
# keyNameSanitize leaves alone, then a first `value|type[|@rate]` part (after tags, if they come
# first) with a number as JavaScript reads it, or several (DogStatsD's packed `1:2:3|ms`), then
# anything: more parts, tags, DogStatsD fields.
_BLANK = rb"[\t\x0b\x0c\x1c-\x1f ]*"
_NUMBER = (
    _BLANK + rb"(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|0[xXoObB][0-9a-fA-F]+)" + _BLANK
)
_PART = rb"(?:%(n)s(?::%(n)s)*\|%(b)s(?:c|ms|h|d|g)|[^|\r\n]*\|%(b)ss)%(b)s(?:\|@%(n)s)?" % {
    b"n": _NUMBER,
    b"b": _BLANK,
}
FAST_LINE = re.compile(
    rb"^[A-Za-z0-9_.;=-]*:(?:\|#[^|\r\n]*)?" + _PART + rb"(?:[:|][^\r\n]*)?\r*$", re.MULTILINE
)


def triage(data: bytes) -> tuple[list[bytes], int]:
    """The lines of `data` (newline-separated) that the native fast path's grammar accepts, in
    order, and how many other non-empty lines it holds (what a reader behind sheds)."""
    fast = FAST_LINE.findall(data)
    lines = data.split(b"\n")
    return fast, len(lines) - lines.count(b"") - len(fast)


@dataclass(frozen=True)
class ReaderSettings:
    """What reader processes are started with: a change of any of it means new readers."""

    count: int
    aggregation: AggregationSettings
    forward: bool  # hand the raw packets over too (the repeater backend wants them)
    dump: bool  # dumpMessages
    log_level: int


def reader_main(
    socks: list[socket.socket], conn: Connection, settings: ReaderSettings, turn: Lock, counter: Synchronized
) -> None:
    """A reader process: read datagrams, aggregate them, hand a batch over every BATCH_SECONDS."""
    # The main process decides when readers stop (SIGTERM to the whole process group, as systemd
    # and `timeout` send it, must not lose the batch a reader holds), and notices if they die.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s - %(levelname)s - reader: %(message)s")
    agg = BatchAggregator(settings.aggregation)  # bad lines travel in the batch
    packets: list[bytes] = []
    dropped = 0
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    sel.register(conn, selectors.EVENT_READ)
    due = time.monotonic() + BATCH_SECONDS
    spent, parsed = 0.0, 1  # seconds spent parsing, bytes parsed: the recent reads parsed whole
    backlog = {s: s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2 // BEHIND_SHARE for s in socks}
    last = time.perf_counter()  # when this reader last began to parse a read whole
    untested = 0  # reads behind still to ingest untested (TRIAGE_SKIP)

    def read(sock: socket.socket, limit: int) -> int:
        """One read of up to `limit` datagrams; how many came. A read that fills the batch
        (maxSeries series) hands it over before the next one. A read behind on mostly slow lines
        sheds them (the module's docstring)."""
        nonlocal dropped, untested, spent, parsed, last
        with turn:  # readers take turns at the sockets, so every read gets its place in line
            got = recv_many(sock, limit, READ_BYTES)
            if got:
                seq = counter.value
                counter.value = seq + 1
        if got:
            data = b"\n".join(got)  # one decode and split for all
            whole, cost = True, len(data) * spent / parsed  # seconds parsing it whole would take
            if cost > BEHIND_SECONDS and len(data) >= backlog[sock] and cost > time.perf_counter() - last:
                if untested:
                    untested -= 1
                else:
                    fast, slow = triage(data)
                    if slow > len(fast):  # mostly slow lines: only the fast ones are ingested
                        data, whole = b"\n".join(fast), False
                        agg.shed(slow)
                    else:
                        untested = TRIAGE_SKIP
            started = time.perf_counter()
            agg.ingest(data, time.time(), len(got))
            if whole:  # what a byte of this reader's traffic costs to parse, lately
                spent += time.perf_counter() - started
                parsed += len(data)
                last = started
                if parsed > COST_BYTES:
                    spent, parsed = spent * COST_BYTES / parsed, COST_BYTES
            agg.seal(seq)
            if settings.forward:
                room = FORWARD_MAX - len(packets)
                packets.extend(got[:room])
                dropped += max(0, len(got) - room)
            if settings.dump:
                dump_packets(got)
            if agg.full():
                hand_over()
        return len(got)

    # A thread sends the batches: while the main process is slow to take one (a big flush, a
    # huge batch), this process keeps reading and its next batch grows, up to maxSeries series;
    # then it reads no more until the sender has taken the last one (hand_over).
    outbox: queue.Queue[Batch | str | None] = queue.Queue(maxsize=1)

    def send_batches() -> None:
        with contextlib.suppress(OSError):  # the main process is gone: nothing to send to
            while True:
                batch = outbox.get()
                conn.send(batch)
                if batch is None:
                    return

    sender = threading.Thread(target=send_batches, daemon=True)
    sender.start()
    outbox.put(READY)

    def take() -> Batch:
        nonlocal dropped
        batch = agg.take_batch()
        batch.packets = packets[:]
        batch.packets_dropped, dropped = dropped, 0
        packets.clear()
        return batch

    def hand_over() -> None:
        """The batch now, waiting while the sender still holds the last one: meanwhile datagrams
        wait in the socket buffer (the kernel counts what overflows it), as they do for a slow
        reader. Past maxSeries a batch must not refuse a series (the main process may hold it),
        so this is what keeps its memory bounded. Gone with the main process: dropped."""
        batch = take()
        while sender.is_alive():
            try:
                outbox.put(batch, timeout=BATCH_SECONDS)
            except queue.Full:
                continue
            return

    while True:
        for key, _ in sel.select(max(0.0, due - time.monotonic())):
            if key.fileobj is conn:
                try:
                    conn.recv()  # STOP is the only message
                except (EOFError, OSError):
                    return  # the main process died: nobody to hand anything to
                # what the kernel still holds, for DRAIN_SECONDS at most: a sender that goes on
                # sending must not keep the reader busy past the main process's patience, which
                # would kill it and lose everything its batch holds
                until = time.monotonic() + DRAIN_SECONDS
                for s in socks:
                    drained = 0
                    while drained < DRAIN_MAX and time.monotonic() < until and (n := read(s, READ_MAX)):
                        drained += n
                outbox.put(take())
                outbox.put(None)
                sender.join()
                return
            read(key.fileobj, READ_MAX)  # type: ignore[arg-type]
        if time.monotonic() >= due:
            if agg.totals.packets_received and outbox.empty():
                outbox.put(take())
            due = time.monotonic() + BATCH_SECONDS


@dataclass(eq=False)
class Reader:
    proc: BaseProcess
    conn: Connection
    ready: asyncio.Future
    done: asyncio.Future
    stopping: bool = False
    batches: int = field(default=0)


class ReaderPool:
    """N reader processes over a set of UDP sockets; batches go to `on_batch` on the event loop."""

    def __init__(self, on_batch) -> None:
        self.on_batch = on_batch
        self.socks: list[socket.socket] = []
        self.settings: ReaderSettings | None = None
        self.readers: list[Reader] = []
        self.restarts = 0
        self.loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        self.turn = ctx.Lock()  # shared by every generation of readers, as is the read counter
        self.counter = ctx.Value("Q", 0, lock=False)

    @property
    def running(self) -> int:
        return sum(1 for r in self.readers if r.ready.done() and not r.done.done() and not r.stopping)

    @property
    def healthy(self) -> bool:
        """Every reader that should run is reading."""
        return self.settings is None or not self.socks or self.running >= self.settings.count

    async def switch(self, socks: list[socket.socket], settings: ReaderSettings) -> None:
        """Run `settings.count` readers over `socks`: new readers start first, the old ones stop
        (handing over what they hold) only once the new ones read. A no-op when nothing changed."""
        if socks == self.socks and settings == self.settings and self.healthy:
            return
        old = [r for r in self.readers if not r.stopping]
        new = [self._spawn(list(socks), settings) for _ in range(settings.count if socks else 0)]
        if new:
            await asyncio.wait([r.ready for r in new], timeout=START_TIMEOUT)
            if not all(r.ready.done() and r.ready.result() for r in new):
                log.error("reader processes did not all start within %d s", START_TIMEOUT)
        # Only now: until the new readers read, the old ones are what health is judged by.
        self.socks, self.settings = list(socks), settings
        await self.stop(old)

    def _spawn(self, socks: list[socket.socket], settings: ReaderSettings) -> Reader:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=reader_main,
            name="webops-statsd-reader",
            daemon=True,
            args=(socks, child, settings, self.turn, self.counter),
        )
        proc.start()
        child.close()
        reader = Reader(proc, parent, self.loop.create_future(), self.loop.create_future())
        self.readers.append(reader)
        self.loop.add_reader(parent.fileno(), self._receive, reader)
        self.loop.add_reader(proc.sentinel, self._exited, reader)
        return reader

    def _receive(self, reader: Reader) -> None:
        try:
            while reader.conn.poll():
                message = reader.conn.recv()
                if message == READY:
                    if not reader.ready.done():
                        reader.ready.set_result(True)
                elif message is None:
                    self._finish(reader)
                    return
                else:
                    self.on_batch(message)
        except (EOFError, OSError):
            self._finish(reader)

    def _finish(self, reader: Reader) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(reader.conn.fileno())
        if not reader.ready.done():
            reader.ready.set_result(False)  # it died before it could read
        if not reader.done.done():
            reader.done.set_result(True)

    def _exited(self, reader: Reader) -> None:
        """The process ended. Unless we stopped it, that is a crash: say so and replace it."""
        self.loop.remove_reader(reader.proc.sentinel)
        self._receive(reader)  # a batch it sent before dying still counts
        self._finish(reader)
        reader.proc.join(1)  # the sentinel closes a moment before the process can be reaped
        reader.conn.close()
        if reader in self.readers:
            self.readers.remove(reader)
        if reader.stopping:
            return
        self.restarts += 1
        log.error(
            "reader process %d died (exit code %s); starting a replacement (%d restarts so far)",
            reader.proc.pid,
            reader.proc.exitcode,
            self.restarts,
        )
        if self.socks and self.settings is not None:
            self._spawn(self.socks, self.settings)

    async def stop(self, readers: list[Reader] | None = None, timeout: float = STOP_TIMEOUT) -> None:
        """Stop readers (default: all) after they drained the sockets and handed over their batch."""
        readers = list(self.readers) if readers is None else readers
        for r in readers:
            r.stopping = True
            with contextlib.suppress(OSError):
                r.conn.send(STOP)
        if readers:
            await asyncio.wait([r.done for r in readers], timeout=timeout)
        for r in readers:
            if r.proc.is_alive():
                await asyncio.to_thread(r.proc.join, timeout)
            if r.proc.is_alive():
                log.error("reader process %d did not stop; killing it", r.proc.pid)
                r.proc.kill()

    async def close(self) -> None:
        await self.stop()
        self.socks, self.settings = [], None
