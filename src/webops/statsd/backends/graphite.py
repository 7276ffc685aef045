"""Flush to carbon (Graphite) over its plaintext or pickle protocol, losing nothing it accepted.

A flush is rendered at once (Etsy's names, original timestamp) and appended to a bounded buffer;
a sender thread writes the buffer out in order. A flush leaves the buffer only once carbon has
read it: as Etsy's backend does, each round of sending uses its own connection, and it ends with
a half-close that carbon answers by closing its side after it has read (and parsed) everything
before it. A connection that is refused, reset, closed early, or never answers (a stopped
carbon, a port that accepts and never reads) confirms nothing: its flushes stay and are sent
again, with backoff (0.5 s doubling to 30 s), in order, with their original timestamps.

Carbon keeps what it received in memory before writing it; a carbon killed in that moment loses
it. So after any failed round the flushes confirmed in the last `RESEND_SECONDS` are sent again
too: carbon writes one value per metric and timestamp, so sending a flush twice changes nothing
(a carbon-aggregator in front would count it twice: see docs/statsd.md: Graphite).

Past `graphiteBufferSize` bytes the oldest flushes are dropped, counted in `datapoints_dropped`,
and said once per outage in the log. On reload the buffer passes to the new backend; on shutdown
the sender gets `SHUTDOWN_SEND` seconds to empty it, and what is left is written to
`graphiteSpoolFile` (when set; data only, never code) and sent first at the next start.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import logging
import os
import pickle
import select
import socket
import struct
import threading
import time
from typing import ClassVar

from .. import validate
from ..jsfmt import number
from ..kinds import outputs
from ..persist import write_private
from ..snapshot import Snapshot
from ..validate import Key
from .base import Backend, register
from .naming import GRAPHITE, GraphiteNaming

log = logging.getLogger("webops.statsd")

PICKLE_BATCH = 5000  # datapoints per pickle message (carbon refuses messages over 1 MiB)
SHUTDOWN_SEND = 10.0
BACKOFF_MAX = 30.0
IO_TIMEOUT = 10.0  # connect, send, and carbon's answer to the half-close
ROUND_BYTES = 8 * 1024 * 1024  # at most this much is sent per connection
RESEND_SECONDS = 60.0
MAX_ROUNDS = 8  # rounds waiting for carbon's close at once
SPOOL_MAGIC = "webops-graphite-spool"


class Chunk:
    """One flush, ready for the wire. `resend`: already confirmed once (sent again after a
    failure, in case carbon lost it from memory): dropping it loses nothing that is counted."""

    __slots__ = ("confirmed_at", "data", "in_flight", "points", "resend")

    def __init__(self, data: bytes, points: int, resend: bool = False) -> None:
        self.data, self.points, self.resend = data, points, resend
        self.confirmed_at = 0.0
        self.in_flight = False  # part of a round waiting for carbon's close


def encode(lines: list[tuple[str, float]], ts: int, protocol: str) -> bytes:
    if protocol == "pickle":
        out = []
        for i in range(0, len(lines), PICKLE_BATCH):
            payload = pickle.dumps([(p, (ts, v)) for p, v in lines[i : i + PICKLE_BATCH]], protocol=2)
            out.append(struct.pack("!L", len(payload)) + payload)
        return b"".join(out)
    suffix = f" {ts}\n"
    return "".join(f"{p} {number(v)}{suffix}" for p, v in lines).encode()


def open_round(host: str, port: int, data: bytes, timeout: float = IO_TIMEOUT) -> socket.socket:
    """Connect, send `data` and half-close: carbon answers by closing its side once it has read
    it all. Returns the connection to watch for that close."""
    conn = socket.create_connection((host, port), timeout=timeout)
    try:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        conn.close()
        raise
    conn.setblocking(False)
    return conn


class Unconfirmed(OSError):
    """Carbon did not close the connection after reading the round in time."""


class Round:
    """One connection's worth of flushes: sent and half-closed, waiting for carbon to close."""

    __slots__ = ("chunks", "conn", "deadline", "size", "started")

    def __init__(self, conn: socket.socket, chunks: list[Chunk], size: int) -> None:
        self.conn, self.chunks, self.size = conn, chunks, size
        self.started = time.monotonic()
        self.deadline = self.started + IO_TIMEOUT


GRAPHITE_KEYS: dict[str, Key] = {
    "legacyNamespace": Key(
        True, validate.boolean, "stats.<name>, stats_counts.<name>, stats.timers.<name>..."
    ),
    "globalPrefix": Key("stats", validate.string, "prefix of every name (non-legacy namespace)"),
    **{  # one per metric kind: prefixCounter, prefixTimer, prefixGauge, prefixSet
        f"prefix{graphite.name}": Key(kind.table, validate.string, f"{kind.table[:-1]} prefix (non-legacy)")
        for kind, graphite in outputs("graphite naming", GRAPHITE)
    },
    "globalSuffix": Key(None, validate.string, "suffix appended to every name (e.g. the host name)"),
}


@register
class GraphiteBackend(Backend):
    name = "graphite"
    manages_last_flush = True
    overwrites_slots = True
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {
        "graphiteHost": Key(None, validate.string, "carbon host"),
        "graphitePort": Key(2003, validate.port, "carbon plaintext port"),
        "graphitePicklePort": Key(2004, validate.port, "carbon pickle port"),
        "graphiteProtocol": Key("text", validate.choice("text", "pickle"), "carbon protocol"),
        "graphiteBufferSize": Key(
            256 * 1024 * 1024,
            validate.number(1024, integer=True),
            "bytes of flushes kept while carbon is away",
        ),
        "graphiteSpoolFile": Key(None, validate.string, "where unsent flushes wait across a restart"),
        "graphite": Key({}, validate.section(GRAPHITE_KEYS), "Graphite naming"),
    }
    SECTIONS: ClassVar[dict[str, dict[str, Key]]] = {"graphite": GRAPHITE_KEYS}

    def __init__(self, config, startup_time: float) -> None:
        super().__init__(config, startup_time)
        self.host = config["graphiteHost"]
        self.protocol = config["graphiteProtocol"]
        self.port = config["graphitePicklePort"] if self.protocol == "pickle" else config["graphitePort"]
        self.max_bytes = config["graphiteBufferSize"]
        self.spool = config["graphiteSpoolFile"]
        self.naming = GraphiteNaming(config)
        self.last_exception = 0  # as Etsy's graphite backend: 0 until a send fails
        self.flush_time = 0
        self.flush_length = 0
        self.dropped = 0
        self.resent = 0
        self.buffer: collections.deque[Chunk] = collections.deque()  # not yet confirmed, in order
        self.buffered_bytes = 0
        self.recent: collections.deque[Chunk] = collections.deque()  # confirmed, kept RESEND_SECONDS
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
        text, metrics = (  # plaintext: the naming writes the lines, no (path, value) pair per line
            (self.naming.plaintext(snapshot), [])
            if self.protocol == "text"
            else ("", list(self.naming.metrics(snapshot)))
        )
        gs = self.naming.stats_path("graphiteStats")
        metrics += [
            (f"{gs}.last_exception", self.last_exception),
            (f"{gs}.last_flush", self.last_flush),
            (f"{gs}.flush_time", self.flush_time),
            (f"{gs}.flush_length", self.flush_length),
            (f"{gs}.datapoints_dropped", self.dropped),
            (f"{gs}.calculationtime", round((time.monotonic() - started) * 1000)),
        ]
        data = text.encode() + encode(metrics, snapshot.timestamp, self.protocol)
        self._append(Chunk(data, text.count("\n") + len(metrics)))

    def _append(self, chunk: Chunk) -> None:
        with self.cond:
            self.buffer.append(chunk)
            self.buffered_bytes += len(chunk.data)
            self._bound()
            self.cond.notify()

    def _bound(self) -> None:
        while self.buffered_bytes > self.max_bytes and len(self.buffer) > 1:
            oldest = self.buffer.popleft()
            self.buffered_bytes -= len(oldest.data)
            if oldest.resend:
                continue
            self.dropped += oldest.points
            if not self.dropped_this_outage:
                self.dropped_this_outage = True
                log.error(
                    "graphite backend: buffer full (%d bytes): dropping the oldest flushes "
                    "(graphiteStats.datapoints_dropped counts them)",
                    self.max_bytes,
                )

    # --- sending ------------------------------------------------------------------------

    def _send_loop(self) -> None:
        """Send rounds in order without waiting for the previous one's confirmation (a receiver
        slow to confirm must not hold the next flushes back), at most MAX_ROUNDS at a time;
        confirm each when carbon closes it, fail it (its flushes go out again) when it is
        refused, reset, or not closed within IO_TIMEOUT."""
        rounds: list[Round] = []
        backoff, retry_at = 0.5, 0.0
        while True:
            chunks: list[Chunk] = []
            size = 0
            with self.cond:
                unsent = [c for c in self.buffer if not c.in_flight]
                if not unsent and not rounds:
                    if self.closing:
                        break
                    self.cond.wait()
                    continue
                if unsent and len(rounds) < MAX_ROUNDS and time.monotonic() >= retry_at:
                    for chunk in unsent:
                        if chunks and size + len(chunk.data) > ROUND_BYTES:
                            break
                        chunk.in_flight = True
                        chunks.append(chunk)
                        size += len(chunk.data)
                elif self.closing and not rounds:
                    break  # only flushes waiting out a backoff: close() keeps them
            if chunks:
                try:
                    conn = open_round(self.host, self.port, b"".join(c.data for c in chunks))
                    rounds.append(Round(conn, chunks, size))
                except OSError as e:
                    self._failed(chunks, e)
                    retry_at, backoff = time.monotonic() + backoff, min(backoff * 2, BACKOFF_MAX)
            backoff = self._settle(rounds, 0.0 if chunks else 0.05, backoff)
        for r in rounds:
            r.conn.close()

    def _settle(self, rounds: list[Round], wait: float, backoff: float) -> float:
        """Confirm the rounds carbon closed, fail the expired ones; returns the next backoff."""
        if not rounds:
            if wait:
                with self.cond:
                    self.cond.wait(wait)
            return backoff
        readable, _, _ = select.select([r.conn for r in rounds], [], [], wait)
        now = time.monotonic()
        for r in list(rounds):
            error: OSError | None = None
            if r.conn in readable:
                try:
                    if r.conn.recv(4096):
                        continue  # carbon never writes: ignore it, keep waiting for the close
                except OSError as e:
                    error = e
                else:
                    rounds.remove(r)
                    r.conn.close()
                    self._confirmed(r.chunks)
                    self.flush_time = round((now - r.started) * 1000)
                    self.flush_length = r.size
                    self.last_flush = int(time.time())
                    backoff = 0.5
                    continue
            elif now > r.deadline:
                error = Unconfirmed(f"no close after the data within {IO_TIMEOUT:.0f} s")
            if error is not None:
                rounds.remove(r)
                r.conn.close()
                self._failed(r.chunks, error)
        return backoff

    def _confirmed(self, chunks: list[Chunk]) -> None:
        now = time.monotonic()
        with self.cond:
            for chunk in chunks:
                chunk.in_flight = False
                with contextlib.suppress(ValueError):  # not dropped meanwhile
                    self.buffer.remove(chunk)
                    self.buffered_bytes -= len(chunk.data)
                if not chunk.resend:
                    chunk.confirmed_at = now
                    self.recent.append(chunk)
            while self.recent and self.recent[0].confirmed_at < now - RESEND_SECONDS:
                self.recent.popleft()
            self.cond.notify_all()
        if self.outage_since is not None:
            log.warning(
                "graphite backend: %s:%s is back after %.0f s; sending the buffered flushes",
                self.host,
                self.port,
                time.time() - self.outage_since,
            )
            self.outage_since = None
            self.dropped_this_outage = False

    def _failed(self, chunks: list[Chunk], e: OSError) -> None:
        self.last_exception = int(time.time())
        with self.cond:
            for chunk in chunks:
                chunk.in_flight = False  # they go out again, in their place in the buffer
            # What carbon confirmed lately may still be in its memory only: send it again.
            again = [Chunk(c.data, c.points, resend=True) for c in self.recent]
            self.recent.clear()
            for chunk in reversed(again):
                self.buffer.appendleft(chunk)
                self.buffered_bytes += len(chunk.data)
            self.resent += sum(c.points for c in again)
            self._bound()
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
        """On reload: give the flushes not yet confirmed to the new graphite backend, in order."""
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
            successor._bound()
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
        self.sender.join(max(1.0, deadline - time.monotonic()) + IO_TIMEOUT)

    def close(self) -> None:
        if not self.host:
            return
        self._stop_sender(timeout=SHUTDOWN_SEND)
        with self.cond:
            left = [c for c in self.buffer if not c.resend]
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

    # --- the spool file: data only (a header line, then one JSON object per flush) ----------

    def _save_spool(self, chunks: list[Chunk]) -> None:
        lines = [json.dumps({"format": SPOOL_MAGIC, "version": 1, "protocol": self.protocol})]
        lines += [
            json.dumps({"points": c.points, "data": base64.b64encode(c.data).decode("ascii")}) for c in chunks
        ]
        write_private(self.spool, ("\n".join(lines) + "\n").encode())

    def _load_spool(self) -> None:
        if not self.spool or not os.path.exists(self.spool):
            return
        try:
            chunks = read_spool(self.spool, self.protocol)
        except (OSError, ValueError) as e:
            aside = f"{self.spool}.bad-{int(time.time())}"
            try:
                os.replace(self.spool, aside)
                where = f"moved to {aside}"
            except OSError as move_error:
                where = f"and cannot be moved aside: {move_error}"
            log.error("graphite backend: spool %s is not usable (%s); %s", self.spool, e, where)
            return
        for chunk in chunks:
            self._append(chunk)
        os.unlink(self.spool)
        log.info("graphite backend: %d flushes from %s queued for sending", len(chunks), self.spool)

    def status(self) -> dict[str, float]:
        return {
            **super().status(),
            "flush_time": self.flush_time,
            "flush_length": self.flush_length,
            "datapoints_dropped": self.dropped,
            "datapoints_resent": self.resent,
            "buffered_flushes": len(self.buffer),
            "buffered_bytes": self.buffered_bytes,
        }


def read_spool(path: str, protocol: str) -> list[Chunk]:
    """The flushes a spool file holds; ValueError names what is wrong with it."""
    with open(path, encoding="ascii") as f:
        try:
            header = json.loads(f.readline())
        except UnicodeDecodeError as e:
            raise ValueError(f"not a spool file ({e.reason})") from None
        if not isinstance(header, dict) or header.get("format") != SPOOL_MAGIC:
            raise ValueError("not a webops graphite spool file")
        if header.get("protocol") != protocol:
            raise ValueError(f"written for graphiteProtocol {header.get('protocol')!r}, not {protocol!r}")
        chunks = []
        for number_, line in enumerate(f, start=2):
            try:
                entry = json.loads(line)
                points = entry["points"]
                data = base64.b64decode(entry["data"], validate=True)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
                raise ValueError(f"line {number_}: {e}") from None
            if not isinstance(points, int) or points < 0:
                raise ValueError(f"line {number_}: bad points {points!r}")
            chunks.append(Chunk(data, points))
        return chunks
