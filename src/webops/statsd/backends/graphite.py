"""Flush to carbon over its plaintext protocol (`graphiteHost`, `graphitePort`).

Each flush opens a connection, writes the lines and closes, as Etsy's backend does; a failure is
logged and counted in `last_exception`.
"""

from __future__ import annotations

import logging
import socket
import time

from ..snapshot import Snapshot
from .base import Backend
from .naming import GraphiteNaming

log = logging.getLogger("webops.statsd")


class GraphiteBackend(Backend):
    name = "graphite"

    def __init__(self, config, startup_time: float) -> None:
        super().__init__(config, startup_time)
        self.host = config["graphiteHost"]
        self.port = config["graphitePort"]
        if config["graphiteProtocol"] != "text":
            raise ValueError("graphiteProtocol: only 'text' is supported so far")
        self.naming = GraphiteNaming(config)
        self.flush_time = 0
        self.flush_length = 0
        if not self.host:
            log.warning("graphite backend: graphiteHost is not set, flushes are not sent anywhere")

    def flush(self, snapshot: Snapshot) -> None:
        if not self.host:
            return
        started = time.monotonic()
        lines = self.naming.plaintext(snapshot)
        gs = self.naming.stats_path("graphiteStats")
        ts = f" {snapshot.timestamp}\n"
        own = (
            f"{gs}.last_exception {self.last_exception}{ts}{gs}.last_flush {self.last_flush}{ts}"
            f"{gs}.flush_time {self.flush_time}{ts}{gs}.flush_length {self.flush_length}{ts}"
        )
        data = (lines + own).encode()
        try:
            with socket.create_connection((self.host, self.port), timeout=10) as sock:
                sock.sendall(data)
        except OSError as e:
            log.error("graphite backend: cannot send to %s:%s: %s", self.host, self.port, e)
            raise
        self.flush_time = round((time.monotonic() - started) * 1000)
        self.flush_length = len(data)

    def status(self) -> dict[str, float]:
        return {**super().status(), "flush_time": self.flush_time, "flush_length": self.flush_length}
