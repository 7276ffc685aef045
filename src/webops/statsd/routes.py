"""What the `http` endpoint answers: the daemon's own paths (/health for load balancers, /metrics
for Prometheus, /dashboard/status and the dashboard's files), and those the running backends
offer (Backend.routes: the store's Graphite /render and /metrics/find). http.py is the protocol
and its limits; this is the route table, the handlers and the render threads' budget.

The table is made again whenever the backends change (start, a reload), so a path is answered by
the backend running now; a path a backend kind offers while none of that kind runs gets that
kind's 404, saying what to configure."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from . import dashboard, http
from .backends.base import REGISTRY, Backend
from .backends.naming import GraphiteNaming
from .descriptors import http_cap
from .prometheus import PrometheusView
from .store.functions import Budget

if TYPE_CHECKING:
    from .aggregate import Aggregator
    from .config import StatsdConfig
    from .hotpath import NativePool
    from .readers import ReaderPool
    from .snapshot import Snapshot

log = logging.getLogger("webops.statsd")

Sample = tuple[str, str, tuple[tuple[str, str], ...], float]  # name, type, labels, value


# The daemon's own families that a scrape adds to the rendered flush (`metrics` below). They are
# claimed before any statsd series, so a client's series or a mapping rule named like one of
# them gets a suffix (`statsd_health_up_gauge`) instead of a second family of the same name,
# which Prometheus rejects (and which would let any client forge the daemon's health).
OWN_FAMILIES = {
    "statsd_health_up": "gauge",
    "statsd_reader_restarts": "gauge",
    "statsd_hot_path_info": "gauge",
    "statsd_uptime_seconds": "gauge",
    "statsd_udp_kernel_drops_total": "counter",
    "statsd_backend": "gauge",
    "statsd_http_connections": "gauge",
    "statsd_http_connections_evicted_total": "counter",
    "statsd_http_connections_refused_total": "counter",
    "statsd_http_timeouts_total": "counter",
    "statsd_http_replies_cut_total": "counter",
    "statsd_http_renders": "gauge",
    "statsd_http_responses_total": "counter",
}


class HttpSource(Protocol):
    """All the routes see of the daemon (the daemon is one; a test can pass its own)."""

    startup_time: float
    aggregator: Aggregator  # its totals
    hot_path: str
    pool: ReaderPool | NativePool  # its restarts
    last_flush: tuple[float, float] | None  # when, and its processing_time (ms)

    @property
    def config(self) -> StatsdConfig: ...  # read-only: the daemon holds a settings.Config

    def health_state(self) -> str: ...

    def backend_status(self) -> list[tuple[str, dict[str, float]]]: ...

    def kernel_drops(self) -> int: ...


def _absent(text: str) -> http.Route:
    def route(request: http.Request) -> http.Reply:
        return 404, "text/plain", text

    return route


class HttpRoutes:
    """The endpoint (kept across rebinds and reloads), its route table, /metrics' view of the
    flushes and the render threads."""

    def __init__(self, daemon: HttpSource) -> None:
        self.daemon = daemon
        # the flusher updates it, a scrape renders it
        self.prometheus = PrometheusView(reserved=OWN_FAMILIES)
        self.workers: http.Workers | None = None  # the render threads, while HTTP is on
        self.health_ring = dashboard.Health()  # the dashboard's health charts, flush by flush
        self.busiest: tuple[Snapshot | None, list[dict]] = (None, [])  # for which flush
        self.endpoint = http.Endpoint(self.table([]), http.Limits())

    def table(self, backends: Iterable[Backend]) -> dict[str, http.Route]:
        """The daemon's own routes, and those of `backends` (the first offering a path answers it)."""
        offered = {path: _absent(text) for cls in REGISTRY.values() for path, text in cls.PATHS.items()}
        for backend in reversed(list(backends)):
            offered.update(backend.routes(self.offload))
        own: dict[str, http.Route] = {
            "/health": self.health,
            "/metrics": self.metrics,
            "/dashboard/status": self.status,
            **dashboard.ROUTES,
        }
        return {**offered, **own}

    def serve(self, backends: Iterable[Backend]) -> None:
        """From now on, the routes of `backends` (the running ones)."""
        self.endpoint.routes = self.table(backends)

    def apply_limits(self, config: StatsdConfig) -> None:
        """The http keys' limits, at once, for the connections already open too; the render
        threads are replaced only when their number changes."""
        h = config["http"]
        cap = http_cap(config)
        if cap < h["maxConnections"]:
            log.warning(
                "http.maxConnections %d lowered to %d to fit the file descriptor limit (raise it with "
                "LimitNOFILE= in the systemd unit or ulimit -n)",
                h["maxConnections"],
                cap,
            )
        self.endpoint.limits = http.Limits(cap, h["headerTimeout"], h["bodyTimeout"])
        if self.workers is None or self.workers.threads != h["renderThreads"]:
            if self.workers is not None:
                self.workers.close()
            self.workers = http.Workers(h["renderThreads"])

    def close(self) -> None:
        """Every request in flight (renders, clients that do not read their reply) closed and
        abandoned, so HTTP never holds up the exit."""
        self.endpoint.close()
        if self.workers is not None:
            self.workers.close()

    async def offload(self, job: Callable[[Budget], http.Answer]) -> http.Outgoing:
        """A backend route's heavy part (backends.base.Offload), in the render threads, on the
        budget of the running config's http.render* keys."""
        h = self.daemon.config["http"]
        budget = Budget(
            max_points=h["renderMaxPoints"],
            max_series=h["renderMaxSeries"],
            deadline=time.monotonic() + h["renderTimeout"],
        )
        assert self.workers is not None  # made with the endpoint
        return await self.workers.run(lambda: job(budget), h["renderTimeout"], budget.stop)

    def flushed(self, snap: Snapshot) -> None:
        """In the flusher's thread, at every flush: /metrics' view, and the daemon's own health
        for the dashboard (cheap: a few totals; the busiest series wait for a page to ask)."""
        self.prometheus.update(snap)
        d = self.daemon
        totals = d.aggregator.totals
        lags = [status.get("lag_seconds", 0.0) for _, status in d.backend_status()]
        self.health_ring.record(
            dashboard.Sample(
                time=snap.time_ms / 1000,
                metrics_received=totals.metrics_received,
                bad_lines=totals.bad_lines_seen,
                kernel_drops=d.kernel_drops(),
                refused=totals.metrics_refused + totals.set_members_refused,
                shed=totals.lines_shed,
                flush_ms=snap.statsd_metrics.get("processing_time", 0),
                lag_seconds=max(lags, default=0.0),
            )
        )

    def _busiest(self) -> list[dict]:
        """The last flush's busiest series, ranked once per flush (500,000 series take a while:
        off the event loop, and only while a page asks)."""
        snap = self.prometheus.last
        done, ranked = self.busiest
        if snap is None or snap is done:
            return ranked
        ranked = dashboard.busiest(snap, GraphiteNaming(self.daemon.config), self.daemon.aggregator.own_keys)
        self.busiest = (snap, ranked)
        return ranked

    # --- the daemon's own routes ----------------------------------------------------------

    async def status(self, request: http.Request) -> http.Reply:
        """The dashboard's first view: the daemon's own health now and over the last flushes, its
        totals, backends, and the busiest series of the last flush."""
        d = self.daemon
        totals = d.aggregator.totals
        flushed, processing = d.last_flush or (0.0, 0.0)
        busiest = await asyncio.to_thread(self._busiest)
        body = {
            "health": d.health_state(),
            "now": time.time(),
            "flushInterval": d.config["flushInterval"],
            "packets_received": totals.packets_received,
            "metrics_received": totals.metrics_received,
            "bad_lines_seen": totals.bad_lines_seen,
            "metrics_refused": totals.metrics_refused + totals.set_members_refused,
            "lines_shed": totals.lines_shed,
            "kernel_drops": d.kernel_drops(),
            "last_flush": flushed,
            "processing_time": processing,
            "backends": dict(d.backend_status()),
            "history": self.health_ring.columns(),
            "busiest": busiest,
        }
        return 200, "application/json", json.dumps(body)

    def health(self, request: http.Request | None = None) -> http.Reply:
        state = self.daemon.health_state()
        return (200 if state == "up" else 503), "text/plain", f"health: {state}\n"

    async def metrics(self, request: http.Request | None = None) -> http.Reply:
        d = self.daemon
        if self.prometheus.stale:  # rendering 100k series takes a while: never on the loop
            await asyncio.to_thread(self.prometheus.refresh)
        own: list[Sample] = [
            ("statsd_health_up", "gauge", (), 1.0 if d.health_state() == "up" else 0.0),
            ("statsd_reader_restarts", "gauge", (), d.pool.restarts),
            ("statsd_hot_path_info", "gauge", (("hot_path", d.hot_path),), 1.0),
            ("statsd_uptime_seconds", "gauge", (), time.time() - d.startup_time),
            ("statsd_udp_kernel_drops_total", "counter", (), d.kernel_drops()),
        ]
        for name, status in d.backend_status():
            for stat, value in status.items():
                own.append(("statsd_backend", "gauge", (("backend", name), ("stat", stat)), value))
        own += self._http_metrics()
        return 200, "text/plain; version=0.0.4; charset=utf-8", self.prometheus.render(own)

    def _http_metrics(self) -> list[Sample]:
        """The endpoint's own limits at work: connections closed to make room (evicted) or not
        accepted (refused), clients too slow (timeouts), answers sent in parts that were cut short
        (the client went or was too slow, or a part failed), renders in flight, replies by status."""
        e = self.endpoint
        return [
            ("statsd_http_connections", "gauge", (), len(e.open)),
            ("statsd_http_connections_evicted_total", "counter", (), e.counts["evicted"]),
            ("statsd_http_connections_refused_total", "counter", (), e.counts["refused"]),
            ("statsd_http_timeouts_total", "counter", (), e.counts["timeouts"]),
            ("statsd_http_replies_cut_total", "counter", (), e.counts["cut"]),
            ("statsd_http_renders", "gauge", (), self.workers.pending if self.workers else 0),
            *(
                ("statsd_http_responses_total", "counter", (("code", str(code)),), n)
                for code, n in sorted(e.replies.items())
            ),
        ]
