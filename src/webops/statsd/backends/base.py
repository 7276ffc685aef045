"""The backend interface, and the runner that keeps a slow backend from holding anything up.

A backend is plain synchronous code: `flush(snapshot)` gets each flush, `status()` feeds the
console's `stats` command, `routes()` adds its own paths to the HTTP endpoint. Each backend runs
in its own thread with its own queue, so a backend that blocks (a dead carbon, a full disk)
delays only itself: intake and other backends go on.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

from ...common.ratelimit import RateLimitedLog
from ..http import Answer, Outgoing, Route
from ..snapshot import Snapshot
from ..store.functions import Budget
from ..validate import Key

log = logging.getLogger("webops.statsd")

REGISTRY: dict[str, type[Backend]] = {}  # canonical (lower-case) name -> class

# How a backend's route runs work too heavy for the event loop (a wide wildcard reads thousands
# of series): `await offload(job)` runs job(budget) in the render threads, on the budget of the
# http.render* keys (the job checks it as it goes), and is a 503 when they are all busy, a 504
# past http.renderTimeout.
Offload = Callable[[Callable[[Budget], Answer]], Awaitable[Outgoing]]


def register(cls: type[Backend]) -> type[Backend]:
    REGISTRY[cls.name] = cls
    return cls


class Backend:
    """Subclass, set `name`, decorate with @register: that is a whole backend. Its config keys
    (`CONFIG_KEYS`, and nested `SECTIONS`) join the schema, so they are validated, shown by
    --check-config and checked against docs/statsd.md like every other key."""

    name = "backend"
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {}
    SECTIONS: ClassVar[dict[str, dict[str, Key]]] = {}
    # False: the runner stamps last_flush when flush() returns. Backends that only queue the data
    # in flush() (graphite) set it themselves when the data really left.
    manages_last_flush = False
    # True: the destination keeps one value per time slot, the last one written (carbon). The
    # shutdown flush then comes merged with the last grid flush, under that flush's timestamp.
    overwrites_slots = False
    # The HTTP paths routes() serves, each with the 404 body answered while no backend of this
    # kind runs: a client of a path that exists learns what to configure, not just "not found".
    PATHS: ClassVar[dict[str, str]] = {}

    def __init__(self, config, startup_time: float) -> None:
        self.config = config
        self.last_flush = int(startup_time)
        self.last_exception = int(startup_time)

    def flush(self, snapshot: Snapshot) -> None:
        raise NotImplementedError

    def packet(self, data: bytes) -> None:
        """Every received packet, on the receive path (for forwarding): must never block.

        Only backends that override this are called; see `wants_packets`."""

    def packets_lost(self, count: int) -> None:
        """`count` packets could not be handed to `packet()` (a bound was reached upstream)."""

    @property
    def wants_packets(self) -> bool:
        return type(self).packet is not Backend.packet

    def status(self) -> dict[str, float]:
        """Values shown as `<name>.<stat>: value` by the console (`last_*` shown as seconds ago)."""
        return {"last_flush": self.last_flush, "last_exception": self.last_exception}

    def routes(self, offload: Offload) -> dict[str, Route]:
        """Paths this backend answers on the `http` endpoint while it runs (the store: Graphite's
        /render and /metrics/find), beside the daemon's own; name them in PATHS too. A route is
        called on the event loop: anything slow goes through `offload`. Two running backends
        offering one path: the first in `backends` answers it."""
        return {}

    def handover(self, successor: Backend) -> None:
        """On reload, before close(): pass undelivered data to the backend that replaces this one."""

    def close(self) -> None:
        """Release files and sockets; called after the last flush has been handled."""


class BackendRunner:
    """Feeds one backend from its own thread, snapshots in order. At most `MAX_QUEUED` wait: a
    backend that stays slower than the flush interval (a blocked stdout, a stalled disk) loses
    its oldest waiting snapshot rather than the daemon's memory; `flushes_dropped` counts them."""

    MAX_QUEUED = 10

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.queue: collections.deque[Snapshot | None] = collections.deque()
        self.cond = threading.Condition()
        self.dropped = 0
        self.errors = RateLimitedLog(log, f"backend {backend.name} messages")
        self.successor: Backend | None = None
        self.thread = threading.Thread(target=self._run, name=f"backend-{backend.name}", daemon=True)
        self.thread.start()

    def submit(self, snapshot: Snapshot | None) -> None:
        with self.cond:
            if snapshot is not None and len(self.queue) >= self.MAX_QUEUED:
                self.queue.popleft()
                self.dropped += 1
                self.errors.warning(
                    "backend %s: %d flushes waiting (it is slower than the flush interval): "
                    "dropped the oldest (%d so far)",
                    self.backend.name,
                    self.MAX_QUEUED,
                    self.dropped,
                )
            self.queue.append(snapshot)
            self.cond.notify()

    def status(self) -> dict[str, float]:
        return {**self.backend.status(), "flushes_dropped": self.dropped}

    def _next(self) -> Snapshot | None:
        with self.cond:
            self.cond.wait_for(lambda: self.queue)
            return self.queue.popleft()

    def _run(self) -> None:
        while (snapshot := self._next()) is not None:
            try:
                self.backend.flush(snapshot)
                if not self.backend.manages_last_flush:
                    self.backend.last_flush = int(time.time())
            except Exception as e:  # a backend bug must not kill the thread: later flushes still go
                self.backend.last_exception = int(time.time())
                log.error("backend %s: flush failed: %s", self.backend.name, e, exc_info=log.isEnabledFor(10))
        try:
            if self.successor is not None:
                self.backend.handover(self.successor)
            self.backend.close()
        except Exception as e:
            log.error("backend %s: close failed: %s", self.backend.name, e)

    def stop(self, timeout: float | None = None, successor: Backend | None = None) -> bool:
        """Let the backend finish every queued flush, hand over to `successor` (a reload), close.
        False if it did not finish within `timeout`."""
        self.successor = successor
        self.submit(None)
        self.thread.join(timeout)
        return not self.thread.is_alive()
