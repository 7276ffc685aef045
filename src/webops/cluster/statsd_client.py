"""A tiny statsd client, so webops' own services can report to a statsd (webops statsd, or any).

UDP, fire and forget: a missing daemon costs nothing and never raises into the caller.
"""

from __future__ import annotations

import contextlib
import socket


class StatsdClient:
    def __init__(self, address: str, prefix: str = "") -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"statsd address {address!r}: expected host:port")
        self.addr = (host.strip("[]"), int(port))
        self.prefix = prefix + "." if prefix else ""
        self.sock = socket.socket(
            socket.AF_INET6 if ":" in self.addr[0] else socket.AF_INET, socket.SOCK_DGRAM
        )

    def _send(self, line: str) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendto(line.encode(), self.addr)

    def incr(self, name: str, value: int = 1) -> None:
        self._send(f"{self.prefix}{name}:{value}|c")

    def timing(self, name: str, ms: float) -> None:
        self._send(f"{self.prefix}{name}:{ms:.3f}|ms")
