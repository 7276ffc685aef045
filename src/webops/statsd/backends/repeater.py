"""Etsy's repeater: forward every packet, unchanged, to other statsd daemons.

UDP (`udp4`/`udp6`) is sent straight from the receive path with a non-blocking socket, as cheap
as a packet can be forwarded. TCP gives each target its own bounded buffer, sender thread and
connection (reconnecting with backoff), so a slow or absent peer never blocks intake nor the
other targets, and a packet is sent to a target once: a failure at one target resends nothing
to another. Packets being sent are out of the buffer, so the buffer's bound only ever drops
packets that were never sent, and counts exactly those.
"""

from __future__ import annotations

import collections
import logging
import select
import socket
import threading
from typing import Any, ClassVar

from ...common.ratelimit import RateLimitedLog
from ..snapshot import Snapshot
from ..validate import Key, choice, port, string
from .base import Backend, register

log = logging.getLogger("webops.statsd")

TCP_BUFFER_BYTES = 64 * 1024 * 1024  # per target
BATCH_BYTES = 1024 * 1024  # sent per write at most


def peer_closed(conn: socket.socket) -> bool:
    """Did the peer close (or reset) the connection? A statsd never writes back, so anything
    readable means it is gone; a send would still succeed once on a half-closed socket."""
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def repeater_targets(v: Any) -> list[dict]:
    if not isinstance(v, list) or not all(isinstance(r, dict) and "host" in r for r in v):
        raise ValueError(f"expected a list of {{host, port}}, got {v!r}")
    return [{"host": string(r["host"]), "port": port(r.get("port", 8125))} for r in v]


class TcpTarget:
    """One downstream statsd over TCP: its own buffer, thread and connection."""

    def __init__(self, address: tuple[str, int], errors: RateLimitedLog) -> None:
        self.address, self.errors = address, errors
        self.pending: collections.deque[bytes] = collections.deque()
        self.pending_bytes = 0
        self.forwarded = 0
        self.dropped = 0
        self.cond = threading.Condition()
        self.closing = False
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"repeater-{address[0]}:{address[1]}", daemon=True
        )
        self.thread.start()

    def add(self, data: bytes) -> None:
        with self.cond:
            self.pending.append(data)
            self.pending_bytes += len(data)
            self._bound()
            self.cond.notify()

    def _bound(self) -> None:
        while self.pending_bytes > TCP_BUFFER_BYTES and self.pending:
            self.pending_bytes -= len(self.pending.popleft())
            self.dropped += 1

    def _take(self) -> list[bytes] | None:
        """The next packets to send, out of the buffer (None: closing and nothing left)."""
        with self.cond:
            self.cond.wait_for(lambda: self.pending or self.closing)
            if not self.pending:
                return None
            taken: list[bytes] = []
            size = 0
            while self.pending and (not taken or size + len(self.pending[0]) <= BATCH_BYTES):
                data = self.pending.popleft()
                taken.append(data)
                size += len(data)
            self.pending_bytes -= size
            return taken

    def _give_back(self, taken: list[bytes]) -> None:
        with self.cond:
            self.pending.extendleft(reversed(taken))
            self.pending_bytes += sum(len(d) for d in taken)
            self._bound()

    def _run(self) -> None:
        backoff = 0.1
        while (taken := self._take()) is not None:
            try:
                if self.conn is not None and peer_closed(self.conn):
                    self.conn.close()
                    self.conn = None
                if self.conn is None:
                    self.conn = socket.create_connection(self.address, timeout=10)
                self.conn.sendall(b"".join(taken))
            except OSError as e:
                self._give_back(taken)
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                self.errors.warning("repeater: cannot send to %s:%s: %s (retrying)", *self.address, e)
                with self.cond:
                    if self.cond.wait_for(lambda: self.closing, timeout=backoff) and backoff > 5:
                        return  # shutting down and the peer stays away: give up
                backoff = min(backoff * 2, 10)
                continue
            backoff = 0.1
            self.forwarded += len(taken)

    def close(self, timeout: float) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.thread.join(timeout)
        if self.conn is not None:
            self.conn.close()
        with self.cond:
            if self.pending:
                self.dropped += len(self.pending)
                log.error(
                    "repeater: %d packets for %s:%s could not be sent before exit",
                    len(self.pending),
                    *self.address,
                )


@register
class RepeaterBackend(Backend):
    name = "repeater"
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {
        "repeater": Key([], repeater_targets, "statsd daemons to forward every packet to"),
        "repeaterProtocol": Key("udp4", choice("udp4", "udp6", "tcp"), "repeater transport"),
    }

    def __init__(self, config, startup_time: float) -> None:
        super().__init__(config, startup_time)
        self.protocol = config["repeaterProtocol"]
        self.targets = [(t["host"], t["port"]) for t in config["repeater"]]
        self.udp_forwarded = 0
        self.lost = 0
        self.errors = RateLimitedLog(log, "repeater errors")
        self.tcp = [TcpTarget(t, self.errors) for t in self.targets] if self.protocol == "tcp" else []
        if not self.tcp:
            family = socket.AF_INET6 if self.protocol == "udp6" else socket.AF_INET
            self.addrs = [socket.getaddrinfo(h, p, family, socket.SOCK_DGRAM)[0][4] for h, p in self.targets]
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.setblocking(False)

    @property
    def forwarded(self) -> int:
        return self.udp_forwarded + sum(t.forwarded for t in self.tcp)

    @property
    def dropped(self) -> int:
        return self.lost + sum(t.dropped for t in self.tcp)

    def packets_lost(self, count: int) -> None:
        self.lost += count * max(1, len(self.targets))

    def packet(self, data: bytes) -> None:
        """Called on the receive path for every packet: must never block."""
        if not self.tcp:
            for addr in self.addrs:
                try:
                    self.sock.sendto(data, addr)
                    self.udp_forwarded += 1
                except OSError as e:
                    self.lost += 1
                    self.errors.warning("repeater: cannot send to %s: %s", addr, e)
            return
        if not data.endswith(b"\n"):
            data += b"\n"  # on a stream, packets must stay separate lines
        for target in self.tcp:
            target.add(data)

    def flush(self, snapshot: Snapshot) -> None:
        """Nothing to do at a flush: the repeater forwards packets, not aggregates."""

    def status(self) -> dict[str, float]:
        return {**super().status(), "packets_forwarded": self.forwarded, "packets_dropped": self.dropped}

    def close(self) -> None:
        for target in self.tcp:
            target.close(60)
        if not self.tcp:
            self.sock.close()
