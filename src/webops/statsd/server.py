"""The daemon: listeners feed the aggregator, a grid-aligned timer flushes it to the backends.

Threads: the event loop owns intake, the console and the timers; one flusher thread turns each
detached interval into a snapshot (timer maths stays off the receive path); each backend has its
own thread (backends.base.BackendRunner).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

from ..common.config import ConfigError
from ..common.ratelimit import RateLimitedLog
from . import backends, dashboard, hotpath, http, systemd
from .admin import Console, serve
from .aggregate import SLOW_MAX_BYTES, Aggregator, Batch
from .backends.base import Backend, BackendRunner
from .backends.store import StoreBackend
from .config import StatsdConfig
from .flush import Flusher
from .hotpath import NativePool
from .listeners import (
    Listener,
    StreamListener,
    UdpListener,
    describe,
    dump_packets,
    kernel_drops,
    set_rcvbuf,
    spec_key,
)
from .persist import load_gauges, save_gauges
from .prometheus import PrometheusView
from .protocol import BadLine
from .readers import ReaderPool, ReaderSettings
from .snapshot import Snapshot
from .store import graphite_api
from .store.db import Store
from .store.functions import Budget

log = logging.getLogger("webops.statsd")

SHUTDOWN_TIMEOUT = 60.0  # seconds the backends get to write the last flushes on exit
FD_RESERVE = 64  # descriptors kept free of client connections: files, backends, readers, /health
SLOW_SLICE_SECONDS = 0.002  # slow-lane parsing per turn of the event loop (aggregate.work_slow)


class StatsdDaemon:
    def __init__(self, config: StatsdConfig, reload_config: Callable[[], StatsdConfig] | None = None) -> None:
        self.config = config
        self.reload_config = reload_config
        self.startup_time = time.time()
        self.health = config["healthStatus"]
        self.bad_log = RateLimitedLog(log, "bad lines")
        self.aggregator = Aggregator(config.aggregation(), on_bad_line=self._bad_line)
        self.summary = config.summary()
        self.udp: dict[tuple, tuple[Listener, socket.socket]] = {}  # bound UDP sockets, by address
        self.udp_local: dict[tuple, UdpListener] = {}  # those read in this process (readers: 0)
        self.streams: dict[tuple, StreamListener] = {}
        self.runners: list[BackendRunner] = []
        self.packet_backends: list[Backend] = []
        self.mgmt: asyncio.Server | None = None
        self.console: Console | None = None
        self.mgmt_bind: tuple[str, int] | None = None
        self.http_server: asyncio.Server | None = None
        self.http_bind: tuple[str, int] | None = None
        routes: dict[str, http.Route] = {
            "/health": self._health,
            "/metrics": self._metrics,
            "/render": self._graphite(
                lambda store, req, budget: graphite_api.render(store, req, budget=budget)
            ),
            "/metrics/find": self._graphite(lambda store, req, budget: graphite_api.find_nodes(store, req)),
            "/dashboard/status": self._status,
            **dashboard.ROUTES,
        }
        self.endpoint = http.Endpoint(routes, http.Limits())
        self.workers: http.Workers | None = None  # the render threads, while HTTP is on
        self.prometheus = PrometheusView()
        if config["persistGauges"]:
            self.aggregator.gauges.update(load_gauges(config["persistGauges"]))
        self.flusher = Flusher(self.aggregator, self._deliver)
        self.last_flush: tuple[float, float] | None = None  # when, and its processing_time (ms)
        self.events_log = RateLimitedLog(log, "event loop messages")
        self.refused_log = RateLimitedLog(log, "series limit messages")
        self.refused_seen = 0
        self.members_log = RateLimitedLog(log, "set member limit messages")
        self.members_seen = 0
        self.shed_log = RateLimitedLog(log, "slow-lane messages")
        self.shed_seen = 0
        self.slow_scheduled = False
        self.key_log = RateLimitedLog(log, "keyFlush messages")
        self.key_log_errors = 0  # intervals whose top keys could not be written, in a row
        self.fd_warned = False
        self.stopping = asyncio.Event()
        self.hot_path = config.hot_path  # fixed for the daemon's lifetime (a reload says so)
        self.config_mtime = self._mtime()

    # --- intake -------------------------------------------------------------------------

    def on_data(self, packets: list[bytes]) -> None:
        data = packets[0] if len(packets) == 1 else b"\n".join(packets)
        self.aggregator.ingest(data, time.time(), len(packets))
        if self.config["dumpMessages"]:
            dump_packets(packets)
        for backend in self.packet_backends:
            for packet in packets:
                backend.packet(packet)

    def _bad_line(self, bad: BadLine) -> None:
        self.bad_log.warning("bad line: %s: %r", bad.reason, bad.line[:200])

    def kernel_drops(self) -> int:
        """UDP datagrams the kernel dropped because intake was behind (console, /metrics)."""
        return kernel_drops([sock for _, sock in self.udp.values()])

    def backend_status(self) -> list[tuple[str, dict[str, float]]]:
        """Each backend's name and status (console `stats`, /metrics)."""
        return [(r.backend.name, r.status()) for r in self.runners]

    def health_state(self) -> str:
        """`up`, `down` (set on the console), or `down (...)` when intake is not whole."""
        if self.health != "up":
            return self.health
        if not self.pool.healthy:
            want = self.pool.settings.count if self.pool.settings else 0
            what = "receiver threads" if self.hot_path == "native" else "reader processes"
            return f"down ({what}: {self.pool.running} of {want} running)"
        return "up"

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception)
        raise_fd_limit()
        self.pool: ReaderPool | NativePool = (
            NativePool(self.on_batch) if self.hot_path == "native" else ReaderPool(self.on_batch)
        )
        log.info("hot path: %s", hotpath.describe(self.hot_path))
        await self._apply(self.config, first=True)
        for sig, handler in (
            (signal.SIGTERM, self.stop),
            (signal.SIGINT, self.stop),
            (signal.SIGHUP, self.reload),
        ):
            loop.add_signal_handler(sig, handler)
        log.info("server is up")
        systemd.notify("READY=1")
        flushes = self.flusher.run(lambda: self.config["flushInterval"], lambda: self.summary, self._tick)
        tasks = [asyncio.create_task(flushes), asyncio.create_task(self._key_flush_loop())]
        await self.stopping.wait()
        for t in tasks:
            t.cancel()
        await self._shutdown()

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """asyncio's own errors (accept() out of descriptors...), one line each, rate-limited:
        a connection storm must not become a storm of tracebacks in the log."""
        exc = context.get("exception")
        self.events_log.warning("event loop: %s%s", context.get("message"), f": {exc}" if exc else "")

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: draining sockets and flushing")
            systemd.notify("STOPPING=1")
        self.stopping.set()

    def reload(self) -> None:
        asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        if self.reload_config is None:
            return
        try:
            new = self.reload_config()
        except ConfigError as e:
            log.error("reload: %s (keeping the running configuration)", e)
            return
        if await self._apply(new):
            log.info("configuration reloaded")

    async def _apply(self, config: StatsdConfig, first: bool = False) -> bool:
        """Make the running daemon match `config`, touching only what changed.

        At start, any failure is a ConfigError (exit 2). On reload every new socket is bound
        before an old one is closed; a part that fails is logged and keeps running as it was.
        Returns whether everything applied.
        """
        old = self.config
        if config.hot_path != self.hot_path:
            log.warning("hotPath: %s takes effect at the next restart", config.raw["hotPath"])
        self.config = config
        self.config_mtime = self._mtime()
        setup_logging(config)
        self.aggregator.configure(config.aggregation())
        self.summary = config.summary()
        ok = True
        steps = [self._apply_listeners, self._apply_mgmt, self._apply_http]
        if first or config.raw != old.raw:
            self._apply_backends_safely(config, first)
        for step in steps:
            try:
                await step(config)
            except (OSError, ValueError) as e:
                if first:
                    raise ConfigError(str(e)) from e
                log.error("reload: %s; keeping the running one", e)
                ok = False
        return ok

    def _apply_backends_safely(self, config: StatsdConfig, first: bool) -> None:
        try:
            self._apply_backends(config)
        except (OSError, ValueError) as e:
            if first:
                raise ConfigError(str(e)) from e
            log.error("reload: %s", e)

    def _apply_backends(self, config: StatsdConfig) -> None:
        try:
            created = [backends.create(n, config, self.startup_time) for n in config.backends]
        except (ValueError, OSError) as e:
            raise ValueError(f"backends: {e} (keeping the running backends)") from e
        old_runners, self.runners = self.runners, [BackendRunner(b) for b in created]
        self.packet_backends = [b for b in created if b.wants_packets]
        successors = {b.name: b for b in created}
        for r in old_runners:  # they finish their queued flushes in the background, then hand over
            successor = successors.get(r.backend.name)
            threading.Thread(target=r.stop, args=(SHUTDOWN_TIMEOUT, successor), daemon=True).start()

    async def _apply_listeners(self, config: StatsdConfig) -> None:
        """Bind what is new (all or nothing), switch the readers, then close what went away."""
        wanted = {spec_key(s): s for s in config.listeners}
        new_udp: dict[tuple, tuple[Listener, socket.socket]] = {}
        new_streams: dict[tuple, tuple[Listener, socket.socket]] = {}
        try:
            for key, spec in wanted.items():
                if key in self.udp or key in self.streams:
                    continue
                bound = (spec, spec.server.bind(spec))
                (new_udp if spec.server.datagram else new_streams)[key] = bound
        except OSError as e:
            for _, sock in [*new_udp.values(), *new_streams.values()]:
                sock.close()
            raise OSError(f"cannot listen on {describe(spec)}: {e.strerror or e}") from e
        # options of sockets that stay
        for key, (spec, sock) in list(self.udp.items()):
            if key in wanted and wanted[key].rcvbuf != spec.rcvbuf:
                set_rcvbuf(sock, wanted[key].rcvbuf)
            if key in wanted:
                self.udp[key] = (wanted[key], sock)
        for key, listener in self.streams.items():
            if key in wanted:
                listener.max_conns, listener.idle_timeout = self._conn_limits(config)
                spec = wanted[key]
                if spec.kind == "unix" and spec.mode is not None and spec.mode != listener.spec.mode:
                    os.chmod(spec.path or "", spec.mode)
                listener.spec = spec
        self.udp.update(new_udp)
        for key, (spec, sock) in new_streams.items():
            self.streams[key] = StreamListener(spec, sock, self.on_data, *self._conn_limits(config))
        for spec, _ in [*new_udp.values(), *new_streams.values()]:
            log.info("listening on %s", describe(spec))
        await self._switch_udp_readers(config, [k for k in self.udp if k in wanted])
        for key in [k for k in self.streams if k not in wanted]:
            listener = self.streams.pop(key)
            log.info("closing listener %s", describe(listener.spec))
            listener.drain()
            listener.close()
        for key in [k for k in self.udp if k not in wanted]:
            spec, sock = self.udp.pop(key)
            log.info("closing listener %s", describe(spec))
            sock.close()

    async def _switch_udp_readers(self, config: StatsdConfig, keys: list[tuple]) -> None:
        """UDP read by reader processes (new ones start before old ones stop) or in this process."""
        readers = config.readers_for(self.hot_path)
        socks = [self.udp[k][1] for k in keys]
        if readers:
            # A reader hands everything over: what a flush keeps or forgets (delete*) and the
            # kinds' options are the main process's, and changing them restarts no reader.
            intake = dataclasses.replace(config.aggregation(), deletes=frozenset(), options={})
            settings = ReaderSettings(
                readers,
                intake,
                bool(self.packet_backends),
                config["dumpMessages"],
                log.getEffectiveLevel(),
            )
            await self.pool.switch(socks, settings)
            for key in list(self.udp_local):
                self.udp_local.pop(key).stop_reading()
        else:
            for key in keys:
                if key not in self.udp_local:
                    self.udp_local[key] = UdpListener(self.udp[key][0], self.udp[key][1], self.on_data)
            await self.pool.close()
            for key in [k for k in self.udp_local if k not in keys]:
                self.udp_local.pop(key).drain()

    def _conn_limits(self, config: StatsdConfig) -> tuple[int, float]:
        """tcpMaxConnections per stream listener, lowered if the descriptors cannot hold them all
        (with the console's and HTTP's share and a reserve kept free: /health must still answer)."""
        streams = max(1, sum(1 for s in config.listeners if not s.server.datagram))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        budget = (soft - FD_RESERVE - config["mgmtMaxConnections"] - self._http_cap(config)) // streams
        wanted = config["tcpMaxConnections"]
        if budget < wanted and not self.fd_warned:
            self.fd_warned = True
            log.warning(
                "tcpMaxConnections %d lowered to %d: the file descriptor limit is %d (raise it with "
                "LimitNOFILE= in the systemd unit or ulimit -n)",
                wanted,
                max(1, budget),
                soft,
            )
        return max(1, min(wanted, budget)), config["tcpIdleTimeout"]

    def _http_cap(self, config: StatsdConfig) -> int:
        """http.maxConnections, lowered to what the descriptors hold beside the console and the
        reserve: past that accept() fails, and the eviction that keeps /health answering under a
        slowloris never happens."""
        if not config["http"]:
            return 0
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return max(1, min(config["http"]["maxConnections"], soft - FD_RESERVE - config["mgmtMaxConnections"]))

    async def _rebind(self, current: asyncio.Server | None, bind: tuple[str, int], start) -> asyncio.Server:
        """A server on the new address, bound before the old one closes. Only when the new one
        needs the old one's very port is the old one closed first, and reopened if that fails."""
        try:
            server = await start(*bind)
        except OSError:
            if current is None or not any(s.getsockname()[1] == bind[1] for s in current.sockets):
                raise
            old_bind = current.sockets[0].getsockname()[:2]
            current.close()
            try:
                server = await start(*bind)
            except OSError:
                await start(*old_bind)  # back to what ran, then say what failed
                raise
        if current is not None:
            current.close()
        return server

    async def _apply_mgmt(self, config: StatsdConfig) -> None:
        bind = (config["mgmt_address"], config["mgmt_port"])
        limits = (config["mgmtMaxConnections"], config["mgmtIdleTimeout"])
        if bind == self.mgmt_bind and self.console is not None:
            self.console.limits = limits
            return
        console = self.console = Console(self, limits=limits)
        try:
            self.mgmt = await self._rebind(self.mgmt, bind, lambda h, p: serve(console, h, p))
        except OSError as e:
            raise OSError(f"cannot listen on management {bind[0]}:{bind[1]}: {e.strerror or e}") from e
        self.mgmt_bind = bind
        log.info("management console on %s:%s", *bind)

    async def _apply_http(self, config: StatsdConfig) -> None:
        h = config["http"]
        bind = (h["address"], h["port"]) if h else None
        if h:
            self._apply_http_limits(config)
        if bind == self.http_bind:
            return
        if bind is None:
            if self.http_server is not None:
                self.http_server.close()
            self.http_server, self.http_bind = None, None
            return
        try:
            self.http_server = await self._rebind(self.http_server, bind, self.endpoint.start)
        except OSError as e:
            raise OSError(f"cannot listen on http {bind[0]}:{bind[1]}: {e.strerror or e}") from e
        self.http_bind = bind
        log.info("http (/health, /metrics, Graphite's /render and /metrics/find) on %s:%s", *bind)

    def _apply_http_limits(self, config: StatsdConfig) -> None:
        """The http keys' limits, at once, for the connections already open too; the render
        threads are replaced only when their number changes."""
        h = config["http"]
        cap = self._http_cap(config)
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

    def _graphite(self, answer: Callable[[Store, http.Request, Budget], http.Reply]) -> http.Route:
        """A Graphite API route on the store backend's data, in the render threads (a wide
        wildcard reads thousands of series), on the budget of the http.render* keys."""

        async def route(request: http.Request) -> http.Reply:
            backend = next((r.backend for r in self.runners if isinstance(r.backend, StoreBackend)), None)
            if backend is None:
                return (
                    404,
                    "text/plain",
                    'no store: add "store" to backends for history and the Graphite API\n',
                )
            store = backend.store
            if store is None:
                return 503, "text/plain", f"history is off: {backend.cause or 'the store is not open yet'}\n"
            h = self.config["http"]
            budget = Budget(
                max_points=h["renderMaxPoints"],
                max_series=h["renderMaxSeries"],
                deadline=time.monotonic() + h["renderTimeout"],
            )
            assert self.workers is not None  # made with the endpoint
            return await self.workers.run(
                lambda: answer(store, request, budget), h["renderTimeout"], budget.stop
            )

        return route

    def _status(self, request: http.Request) -> http.Reply:
        """The dashboard's header: the daemon's own health, totals and backends."""
        totals = self.aggregator.totals
        flushed, processing = self.last_flush or (0.0, 0.0)
        body = {
            "health": self.health_state(),
            "now": time.time(),
            "flushInterval": self.config["flushInterval"],
            "packets_received": totals.packets_received,
            "metrics_received": totals.metrics_received,
            "bad_lines_seen": totals.bad_lines_seen,
            "last_flush": flushed,
            "processing_time": processing,
            "backends": dict(self.backend_status()),
        }
        return 200, "application/json", json.dumps(body)

    def _health(self, request: http.Request | None = None) -> tuple[int, str, str]:
        state = self.health_state()
        return (200 if state == "up" else 503), "text/plain", f"health: {state}\n"

    async def _metrics(self, request: http.Request | None = None) -> tuple[int, str, str]:
        if self.prometheus.stale:  # rendering 100k series takes a while: never on the loop
            await asyncio.to_thread(self.prometheus.refresh)
        own: list[tuple[str, str, tuple[tuple[str, str], ...], float]] = [
            ("statsd_health_up", "gauge", (), 1.0 if self.health_state() == "up" else 0.0),
            ("statsd_reader_restarts", "gauge", (), self.pool.restarts),
            ("statsd_hot_path_info", "gauge", (("hot_path", self.hot_path),), 1.0),
            ("statsd_uptime_seconds", "gauge", (), time.time() - self.startup_time),
            ("statsd_udp_kernel_drops_total", "counter", (), self.kernel_drops()),
        ]
        for name, status in self.backend_status():
            for stat, value in status.items():
                own.append(("statsd_backend", "gauge", (("backend", name), ("stat", stat)), value))
        own += self._http_metrics()
        return 200, "text/plain; version=0.0.4; charset=utf-8", self.prometheus.render(own)

    def _http_metrics(self) -> list[tuple[str, str, tuple[tuple[str, str], ...], float]]:
        """The endpoint's own limits at work: connections closed to make room (evicted) or not
        accepted (refused), clients too slow (timeouts), renders in flight, replies by status."""
        e = self.endpoint
        return [
            ("statsd_http_connections", "gauge", (), len(e.open)),
            ("statsd_http_connections_evicted_total", "counter", (), e.counts["evicted"]),
            ("statsd_http_connections_refused_total", "counter", (), e.counts["refused"]),
            ("statsd_http_timeouts_total", "counter", (), e.counts["timeouts"]),
            ("statsd_http_renders", "gauge", (), self.workers.pending if self.workers else 0),
            *(
                ("statsd_http_responses_total", "counter", (("code", str(code)),), n)
                for code, n in sorted(e.replies.items())
            ),
        ]

    def on_batch(self, batch: Batch) -> None:
        self.aggregator.merge(batch)
        self._schedule_slow()
        for item in batch.bad_lines:
            self._bad_line(item)
        self.bad_log.hold_back(batch.totals.bad_lines_seen - len(batch.bad_lines))
        for packet in batch.packets:
            for backend in self.packet_backends:
                backend.packet(packet)
        if batch.packets_dropped:
            for backend in self.packet_backends:
                backend.packets_lost(batch.packets_dropped)
            self.events_log.warning(
                "%d packets not forwarded: a reader held %d for the repeater while this process was busy",
                batch.packets_dropped,
                len(batch.packets),
            )

    def _schedule_slow(self) -> None:
        if self.aggregator.slow and not self.slow_scheduled:
            self.slow_scheduled = True
            asyncio.get_running_loop().call_soon(self._slow_slice)

    def _slow_slice(self) -> None:
        """One slice of the slow lane, then back in line behind the console, /health, timers and
        intake: a flood of lines the fast path leaves to Python delays them by a slice at most."""
        self.slow_scheduled = False
        self.aggregator.work_slow(SLOW_SLICE_SECONDS)
        self._schedule_slow()

    async def _shutdown(self) -> None:
        self._close_http()
        await self.pool.close()
        self.aggregator.advance(force=True)  # every reader handed over: apply what is left
        draining: list[UdpListener | StreamListener] = [*self.udp_local.values(), *self.streams.values()]
        for listener in draining:
            listener.drain()
        for listener in self.streams.values():
            listener.close()
        for _, sock in self.udp.values():
            sock.close()
        if self.mgmt is not None:
            self.mgmt.close()
        now = time.time()
        self.flusher.flush(int(now), now, self.summary, final=True)
        await self.flusher.drain()  # the last snapshot is queued at every backend
        loop = asyncio.get_running_loop()
        # side by side: two unreachable backends must not add up past systemd's 90 s
        stops = [loop.run_in_executor(None, r.stop, SHUTDOWN_TIMEOUT) for r in self.runners]
        for r, finished in zip(self.runners, await asyncio.gather(*stops), strict=True):
            if not finished:
                log.error("backend %s did not finish within %d s", r.backend.name, SHUTDOWN_TIMEOUT)
        self.flusher.close()
        log.info("stopped")

    def _close_http(self) -> None:
        """First thing at shutdown: no new request, and those in flight (renders, clients that do
        not read their reply) closed and abandoned, so HTTP never holds up the exit."""
        if self.http_server is not None:
            self.http_server.close()
        self.endpoint.close()
        if self.workers is not None:
            self.workers.close()

    # --- flushing -----------------------------------------------------------------------

    async def _tick(self) -> None:
        """After each flush: log summaries due, and a config file that changed."""
        self.bad_log.tick()
        self._note_refused()
        self._note_shed()
        if self.config["automaticConfigReload"] and self.config.path and self._mtime() != self.config_mtime:
            await self._reload()

    def _note_refused(self) -> None:
        refused = self.aggregator.totals.metrics_refused
        if refused > self.refused_seen:
            self.refused_log.warning(
                "maxSeries (%d) reached: %d updates of new series refused (statsd.metrics_refused); "
                "existing series go on",
                self.config["maxSeries"],
                refused - self.refused_seen,
            )
            self.refused_seen = refused
        members = self.aggregator.totals.set_members_refused
        if members > self.members_seen:
            self.members_log.warning(
                "maxSetMembers (%d) reached: %d new members of full sets refused "
                "(statsd.set_members_refused); members held go on, and a full set counts the limit",
                self.config["maxSetMembers"],
                members - self.members_seen,
            )
            self.members_seen = members

    def _note_shed(self) -> None:
        shed = self.aggregator.totals.lines_shed
        if shed > self.shed_seen:
            self.shed_log.warning(
                "%d slow lines (bad lines, several values, DogStatsD extras) shed unparsed because "
                "intake was behind on them (%s; statsd.lines_shed); every line of the fast path's "
                "form went on",
                shed - self.shed_seen,
                f"more than {SLOW_MAX_BYTES >> 20} MiB waiting"
                if self.hot_path == "native"
                else "a reader process had more than it could parse in time",
            )
            self.shed_seen = shed

    def _deliver(self, snapshot: Snapshot, slot_snapshot: Snapshot) -> None:
        """In the flusher's thread: every backend, /metrics and the saved gauges."""
        for r in list(self.runners):
            r.submit(slot_snapshot if r.backend.overwrites_slots else snapshot)
        self.prometheus.update(snapshot)
        self.last_flush = (time.time(), snapshot.statsd_metrics.get("processing_time", 0))
        if path := self.config["persistGauges"]:
            gauges = {k: v for k, v in snapshot.gauges.items() if k != self.aggregator.k_lag}
            try:
                save_gauges(path, gauges)
            except OSError as e:
                log.error("persistGauges: cannot write %s: %s", path, e)

    async def _key_flush_loop(self) -> None:
        """Etsy's keyFlush: every interval, log the most frequently sent keys."""
        while True:
            kf = self.config.section("keyFlush")
            if not kf["interval"]:
                await asyncio.sleep(1)
                continue
            await asyncio.sleep(kf["interval"] / 1000)
            counts = self.aggregator.take_key_counts()
            top = counts.most_common(math.ceil(len(counts) * kf["percent"] / 100))
            stamp = time.strftime("%a %b %d %Y %H:%M:%S GMT%z (%Z)")
            text = "".join(f"{stamp} count={n} key={k}\n" for k, n in top)
            if kf["log"]:
                self._append_key_log(kf["log"], text)
            else:
                sys.stdout.write(text)
                sys.stdout.flush()

    def _append_key_log(self, path: str, text: str) -> None:
        """One interval's top keys; a file that cannot be written (missing directory, full disk)
        costs that interval's list, said at a bounded rate, and the next interval tries again."""
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            self.key_log_errors += 1
            self.key_log.warning("keyFlush: cannot write %s: %s (trying again next interval)", path, e)
            return
        if self.key_log_errors:
            log.info("keyFlush: writing %s again after %d failed intervals", path, self.key_log_errors)
            self.key_log_errors = 0

    def _mtime(self) -> float | None:
        try:
            return os.stat(self.config.path).st_mtime if self.config.path else None
        except OSError:
            return None


def raise_fd_limit() -> None:
    """Lift the soft descriptor limit to the hard one (often 1024 -> 524288): client connections
    are capped by tcpMaxConnections / mgmtMaxConnections, not by a default nobody chose."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def setup_logging(config: StatsdConfig) -> None:
    """Etsy's `log` section: stdout (default), stderr or syslog, at LOG_* levels."""
    from logging.handlers import SysLogHandler

    from .config import LOG_LEVELS

    section = config.section("log")
    level = logging.DEBUG if config["debug"] else LOG_LEVELS[section["level"]]
    root = logging.getLogger("webops")
    root.setLevel(level)
    kind = section["backend"]
    current = getattr(root, "_webops_handler", None)
    if current is not None and getattr(current, "_webops_kind", None) == (kind, section["application"]):
        return
    if kind == "syslog":
        handler: logging.Handler = SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter(f"{section['application']}: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stdout if kind == "stdout" else sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s", "%d %b %H:%M:%S"))
    handler._webops_kind = (kind, section["application"])  # type: ignore[attr-defined]
    if current is not None:
        root.removeHandler(current)
    root.addHandler(handler)
    root._webops_handler = handler  # type: ignore[attr-defined]
    root.propagate = False
