"""UDP intake spread over reader processes, merged into the main process's aggregator.

One Python process parses about a million metrics a second at best; statsd traffic comes in
bursts far above that. Reader processes share the UDP sockets (the kernel hands each datagram to
one of them, even when it all comes from a single client, which SO_REUSEPORT would not spread),
pre-aggregate what they read into a `Batch`, and send it to the main process every
`BATCH_SECONDS`. Merging a batch costs per distinct series, not per line, so the main process
stays free for the console, the flush timer and the backends.

Readers are started with `spawn` (not `fork`): the main process has backend threads, and a fork
would copy their held locks into the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import selectors
import signal
import socket
import threading
import time
from multiprocessing.connection import Connection

from .aggregate import AggregationSettings, Aggregator, Batch
from .config import Listener
from .listeners import bind_udp, describe, dump_packets, recv_many

log = logging.getLogger("webops.statsd")

BATCH_SECONDS = 0.05
STOP = "stop"


def reader_main(
    socks: list[socket.socket],
    conn: Connection,
    settings: AggregationSettings,
    forward: bool,
    dump: bool,
    log_level: int,
) -> None:
    """A reader process: read datagrams, aggregate them, hand a batch over every BATCH_SECONDS."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when readers stop
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(asctime)s - %(levelname)s - reader: %(message)s")
    agg = Aggregator(settings, batch_mode=True)  # bad lines travel in the batch; the main process logs them
    packets: list[bytes] = []
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    sel.register(conn, selectors.EVENT_READ)
    due = time.monotonic() + BATCH_SECONDS

    def read(sock: socket.socket, limit: int) -> None:
        if got := recv_many(sock, limit):
            agg.ingest(b"\n".join(got), time.time(), len(got))  # one decode and split for all
            if forward:
                packets.extend(got)
            if dump:
                dump_packets(got)

    # A thread sends the batches: while the main process is slow to take one (a big flush, a
    # huge batch), this process keeps reading and its next batch simply grows.
    outbox: queue.Queue[Batch | None] = queue.Queue(maxsize=1)

    def send_batches() -> None:
        while True:
            batch = outbox.get()
            conn.send(batch)
            if batch is None:
                return

    sender = threading.Thread(target=send_batches, daemon=True)
    sender.start()

    def take() -> Batch:
        batch = agg.take_batch()
        batch.packets = packets[:]
        packets.clear()
        return batch

    while True:
        for key, _ in sel.select(max(0.0, due - time.monotonic())):
            if key.fileobj is conn:
                if conn.recv() == STOP:
                    for s in socks:
                        read(s, 10**9)  # drain what the kernel still holds
                    outbox.put(take())
                    outbox.put(None)
                    sender.join()
                    return
            else:
                read(key.fileobj, 500)  # type: ignore[arg-type]
        if time.monotonic() >= due:
            if agg.totals.packets_received and outbox.empty():
                outbox.put(take())
            due = time.monotonic() + BATCH_SECONDS


class ReaderPool:
    """N reader processes over a set of UDP sockets; batches go to `on_batch` on the event loop."""

    def __init__(self, on_batch) -> None:
        self.on_batch = on_batch
        self.socks: dict[Listener, socket.socket] = {}
        self.procs: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        self.loop = asyncio.get_running_loop()

    def bind(self, specs: list[Listener]) -> list[Listener]:
        """Make the bound sockets match `specs` (keeping unchanged ones); returns the new specs."""
        for spec in [s for s in self.socks if s not in specs]:
            log.info("closing listener %s", describe(spec))
            self.socks.pop(spec).close()
        added = []
        for spec in specs:
            if spec not in self.socks:
                try:
                    self.socks[spec] = bind_udp(spec)
                except OSError as e:
                    raise OSError(f"cannot listen on {describe(spec)}: {e.strerror or e}") from e
                added.append(spec)
        return added

    def start(self, count: int, settings: AggregationSettings, forward: bool, dump: bool) -> None:
        ctx = multiprocessing.get_context("spawn")
        for _ in range(count if self.socks else 0):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=reader_main,
                name="webops-statsd-reader",
                daemon=True,
                args=(list(self.socks.values()), child, settings, forward, dump, log.getEffectiveLevel()),
            )
            proc.start()
            child.close()
            self.loop.add_reader(parent.fileno(), self._receive, parent)
            self.procs.append((proc, parent))

    def _receive(self, conn: Connection) -> None:
        while conn.poll():
            try:
                batch = conn.recv()
            except (EOFError, OSError):
                self.loop.remove_reader(conn.fileno())
                return
            if batch is None:
                return
            self.on_batch(batch)

    def stop_readers(self) -> None:
        """Stop every reader after it drained the sockets and handed over its last batch."""
        for _, conn in self.procs:
            with contextlib.suppress(OSError):
                conn.send(STOP)
        for proc, conn in self.procs:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(conn.fileno())
            while True:
                try:
                    batch: Batch | None = conn.recv()
                except (EOFError, OSError):
                    break
                if batch is None:
                    break
                self.on_batch(batch)
            proc.join(10)
            conn.close()
        self.procs = []

    def close(self) -> None:
        self.stop_readers()
        for s in self.socks.values():
            s.close()
        self.socks = {}
