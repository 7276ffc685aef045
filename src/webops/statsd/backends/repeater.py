"""Etsy's repeater: forward every packet, unchanged, to other statsd daemons.

UDP (`udp4`/`udp6`) is sent straight from the receive path with a non-blocking socket, as cheap
as a packet can be forwarded. TCP goes through a bounded buffer and a sender thread that keeps one
connection per target and reconnects with backoff, so a slow or absent peer never blocks intake.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time

from ...common.ratelimit import RateLimitedLog
from ..snapshot import Snapshot
from .base import Backend

log = logging.getLogger("webops.statsd")

TCP_BUFFER_BYTES = 64 * 1024 * 1024


class RepeaterBackend(Backend):
    name = "repeater"

    def __init__(self, config, startup_time: float) -> None:
        super().__init__(config, startup_time)
        self.protocol = config["repeaterProtocol"]
        self.targets = [(t["host"], t["port"]) for t in config["repeater"]]
        self.forwarded = 0
        self.dropped = 0
        self.errors = RateLimitedLog(log, "repeater errors")
        if self.protocol == "tcp":
            self.pending: collections.deque[bytes] = collections.deque()
            self.pending_bytes = 0
            self.wake = threading.Condition()
            self.closing = False
            self.conns: dict[tuple[str, int], socket.socket] = {}
            self.sender = threading.Thread(target=self._send_loop, name="repeater-tcp", daemon=True)
            self.sender.start()
        else:
            family = socket.AF_INET6 if self.protocol == "udp6" else socket.AF_INET
            self.addrs = [socket.getaddrinfo(h, p, family, socket.SOCK_DGRAM)[0][4] for h, p in self.targets]
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.setblocking(False)

    def packets_lost(self, count: int) -> None:
        self.dropped += count

    def packet(self, data: bytes) -> None:
        """Called on the receive path for every packet: must never block."""
        if self.protocol != "tcp":
            for addr in self.addrs:
                try:
                    self.sock.sendto(data, addr)
                    self.forwarded += 1
                except OSError as e:
                    self.dropped += 1
                    self.errors.warning("repeater: cannot send to %s: %s", addr, e)
            return
        if not data.endswith(b"\n"):
            data += b"\n"  # on a stream, packets must stay separate lines
        with self.wake:
            self.pending.append(data)
            self.pending_bytes += len(data)
            while self.pending_bytes > TCP_BUFFER_BYTES:
                self.pending_bytes -= len(self.pending.popleft())
                self.dropped += 1
            self.wake.notify()

    def _send_loop(self) -> None:
        backoff = 0.1
        while True:
            with self.wake:
                while not self.pending and not self.closing:
                    self.wake.wait()
                if not self.pending:
                    return
                batch = b"".join(self.pending)
                count = len(self.pending)
            try:
                for target in self.targets:
                    self._conn(target).sendall(batch)
            except OSError as e:
                self.errors.warning("repeater: cannot send to %s: %s (retrying)", target, e)
                self.conns.pop(target, None)
                if self.closing and backoff > 5:
                    return  # shutting down and the peer stays away: give up
                time.sleep(backoff)
                backoff = min(backoff * 2, 10)
                continue
            backoff = 0.1
            with self.wake:
                for _ in range(count):
                    self.pending_bytes -= len(self.pending.popleft())
            self.forwarded += count

    def _conn(self, target: tuple[str, int]) -> socket.socket:
        conn = self.conns.get(target)
        if conn is None:
            conn = self.conns[target] = socket.create_connection(target, timeout=10)
        return conn

    def flush(self, snapshot: Snapshot) -> None:
        """Nothing to do at a flush: the repeater forwards packets, not aggregates."""

    def status(self) -> dict[str, float]:
        return {**super().status(), "packets_forwarded": self.forwarded, "packets_dropped": self.dropped}

    def close(self) -> None:
        if self.protocol == "tcp":
            with self.wake:
                self.closing = True
                self.wake.notify()
            self.sender.join(60)
            for conn in self.conns.values():
                conn.close()
        else:
            self.sock.close()
