"""Flush to carbon (Graphite) over its plaintext or pickle protocol, losing nothing it accepted.

A flush is rendered at once (Etsy's names, original timestamp) and appended to a bounded buffer;
a sender thread keeps one connection to carbon and writes the buffer out in order. When carbon is
down or slow, flushes wait in the buffer and are retried with backoff; when it comes back they
arrive in order with their timestamps. Past `graphiteBufferSize` bytes the oldest flushes are
dropped, counted in `datapoints_dropped`, and said once per outage in the log.

On reload the buffer passes to the new backend; on shutdown the sender gets `SHUTDOWN_SEND`
seconds to empty it, and what is left is written to `graphiteSpoolFile` (when set) and sent
first at the next start.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import socket
import struct
import threading
import time

from ..jsfmt import number
from ..snapshot import Snapshot
from .base import Backend
from .naming import GraphiteNaming

log = logging.getLogger("webops.statsd")

PICKLE_BATCH = 5000  # datapoints per pickle message (carbon refuses messages over 1 MiB)
SHUTDOWN_SEND = 10.0
BACKOFF_MAX = 30.0


class Chunk:
    """One flush, ready for the wire."""

    __slots__ = ("data", "points")

    def __init__(self, data: bytes, points: int) -> None:
        self.data, self.points = data, points


def encode(lines: list[tuple[str, float]], ts: int, protocol: str) -> bytes:
    if protocol == "pickle":
        out = []
        for i in range(0, len(lines), PICKLE_BATCH):
            payload = pickle.dumps([(p, (ts, v)) for p, v in lines[i : i + PICKLE_BATCH]], protocol=2)
            out.append(struct.pack("!L", len(payload)) + payload)
        return b"".join(out)
    suffix = f" {ts}\n"
    return "".join(f"{p} {number(v)}{suffix}" for p, v in lines).encode()


class GraphiteBackend(Backend):
    name = "graphite"
    manages_last_flush = True

    def __init__(self, config, startup_time: float) -> None:
        super().__init__(config, startup_time)
        self.host = config["graphiteHost"]
        self.protocol = config["graphiteProtocol"]
        self.port = config["graphitePicklePort"] if self.protocol == "pickle" else config["graphitePort"]
        self.max_bytes = config["graphiteBufferSize"]
        self.spool = config["graphiteSpoolFile"]
        self.naming = GraphiteNaming(config)
        self.flush_time = 0
        self.flush_length = 0
        self.dropped = 0
        self.buffer: collections.deque[Chunk] = collections.deque()
        self.buffered_bytes = 0
        self.cond = threading.Condition()
        self.closing = False
        self.outage_since: float | None = None
        self.dropped_this_outage = False
        if not self.host:
            log.warning("graphite backend: graphiteHost is not set, flushes are not sent anywhere")
            return
        self._load_spool()
        self.sender = threading.Thread(target=self._send_loop, name="graphite-sender", daemon=True)
        self.sender.start()

    # --- producing ----------------------------------------------------------------------

    def flush(self, snapshot: Snapshot) -> None:
        if not self.host:
            return
        started = time.monotonic()
        lines = list(self.naming.metrics(snapshot))
        gs = self.naming.stats_path("graphiteStats")
        lines += [
            (f"{gs}.last_exception", self.last_exception),
            (f"{gs}.last_flush", self.last_flush),
            (f"{gs}.flush_time", self.flush_time),
            (f"{gs}.flush_length", self.flush_length),
            (f"{gs}.datapoints_dropped", self.dropped),
            (f"{gs}.calculationtime", round((time.monotonic() - started) * 1000)),
        ]
        self._append(Chunk(encode(lines, snapshot.timestamp, self.protocol), len(lines)))

    def _append(self, chunk: Chunk) -> None:
        with self.cond:
            self.buffer.append(chunk)
            self.buffered_bytes += len(chunk.data)
            while self.buffered_bytes > self.max_bytes and len(self.buffer) > 1:
                oldest = self.buffer.popleft()
                self.buffered_bytes -= len(oldest.data)
                self.dropped += oldest.points
                if not self.dropped_this_outage:
                    self.dropped_this_outage = True
                    log.error(
                        "graphite backend: buffer full (%d bytes): dropping the oldest flushes "
                        "(graphiteStats.datapoints_dropped counts them)",
                        self.max_bytes,
                    )
            self.cond.notify()

    # --- sending ------------------------------------------------------------------------

    def _send_loop(self) -> None:
        conn: socket.socket | None = None
        backoff = 0.5
        while True:
            with self.cond:
                while not self.buffer and not self.closing:
                    self.cond.wait()
                if not self.buffer:
                    break
                chunk = self.buffer[0]
            started = time.monotonic()
            try:
                if conn is None:
                    conn = socket.create_connection((self.host, self.port), timeout=10)
                conn.sendall(chunk.data)
            except OSError as e:
                if conn is not None:
                    conn.close()
                    conn = None
                self._failed(e)
                with self.cond:  # wait out the backoff, but wake up at once to shut down
                    if self.cond.wait_for(lambda: self.closing, timeout=backoff):
                        break
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = 0.5
            with self.cond:
                self.buffer.popleft()
                self.buffered_bytes -= len(chunk.data)
            self.flush_time = round((time.monotonic() - started) * 1000)
            self.flush_length = len(chunk.data)
            self.last_flush = int(time.time())
            if self.outage_since is not None:
                log.warning(
                    "graphite backend: %s:%s is back after %.0f s; sending the buffered flushes",
                    self.host,
                    self.port,
                    time.time() - self.outage_since,
                )
                self.outage_since = None
                self.dropped_this_outage = False
        if conn is not None:
            conn.close()

    def _failed(self, e: OSError) -> None:
        self.last_exception = int(time.time())
        if self.outage_since is None:
            self.outage_since = time.time()
            log.error(
                "graphite backend: cannot send to %s:%s: %s; buffering flushes and retrying",
                self.host,
                self.port,
                e,
            )

    # --- lifecycle ----------------------------------------------------------------------

    def handover(self, successor: Backend) -> None:
        """On reload: give the flushes not yet sent to the new graphite backend, in order."""
        if not isinstance(successor, GraphiteBackend) or not self.host:
            return
        self._stop_sender(timeout=0)
        with self.cond:
            pending = list(self.buffer)
            self.buffer.clear()
            self.buffered_bytes = 0
        with successor.cond:
            for chunk in reversed(pending):
                successor.buffer.appendleft(chunk)
                successor.buffered_bytes += len(chunk.data)
            successor.dropped += self.dropped
            successor.cond.notify()

    def _stop_sender(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            self.cond.wait_for(
                lambda: not self.buffer or self.outage_since is not None,
                timeout=max(0.0, deadline - time.monotonic()),
            )
            self.closing = True
            self.cond.notify_all()
        self.sender.join(max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if not self.host:
            return
        self._stop_sender(timeout=SHUTDOWN_SEND)
        with self.cond:
            left = list(self.buffer)
        if not left:
            return
        points = sum(c.points for c in left)
        if self.spool:
            self._save_spool(left)
            log.warning(
                "graphite backend: %d datapoints not sent; kept in %s for the next start", points, self.spool
            )
        else:
            log.error(
                "graphite backend: %d datapoints could not be sent before exit "
                "(set graphiteSpoolFile to keep them)",
                points,
            )

    def _save_spool(self, chunks: list[Chunk]) -> None:
        tmp = f"{self.spool}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump({"protocol": self.protocol, "chunks": [(c.data, c.points) for c in chunks]}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.spool)

    def _load_spool(self) -> None:
        if not self.spool or not os.path.exists(self.spool):
            return
        try:
            with open(self.spool, "rb") as f:
                saved = pickle.load(f)  # our own file, written by _save_spool
        except (OSError, pickle.UnpicklingError, EOFError) as e:
            log.error("graphite backend: cannot read spool %s: %s", self.spool, e)
            return
        if saved.get("protocol") != self.protocol:
            log.error(
                "graphite backend: spool %s was written for graphiteProtocol %r; not sent",
                self.spool,
                saved.get("protocol"),
            )
            return
        for data, points in saved["chunks"]:
            self._append(Chunk(data, points))
        os.unlink(self.spool)
        log.info("graphite backend: %d flushes from %s queued for sending", len(saved["chunks"]), self.spool)

    def status(self) -> dict[str, float]:
        return {
            **super().status(),
            "flush_time": self.flush_time,
            "flush_length": self.flush_length,
            "datapoints_dropped": self.dropped,
            "buffered_flushes": len(self.buffer),
            "buffered_bytes": self.buffered_bytes,
        }
