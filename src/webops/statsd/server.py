"""The daemon: listeners feed the aggregator, a grid-aligned timer flushes it to the backends.

This is the wiring and the lifecycle (start, reload, stop, flush delivery); the surfaces are
their own modules: the listeners' reconciliation (reconcile.py), the HTTP routes (routes.py),
the console (admin.py), keyFlush (keyflush.py), the log (logs.py), descriptors (descriptors.py).

Threads: the event loop owns intake, the console and the timers; one flusher thread turns each
detached interval into a snapshot (timer maths stays off the receive path); each backend has its
own thread (backends.base.BackendRunner).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from ..common.config import ConfigError
from ..common.ratelimit import RateLimitedLog
from . import backends, dashboard, hotpath, reconcile, systemd
from .admin import Console, serve
from .aggregate import SLOW_MAX_BYTES, Aggregator, Batch
from .backends.base import Backend, BackendRunner
from .descriptors import StreamLimits, raise_fd_limit
from .flush import Flusher
from .hotpath import NativePool
from .keyflush import KeyFlush
from .listeners import dump_packets, kernel_drops
from .logs import setup_logging
from .persist import load_gauges, save_gauges
from .prometheus_state import StateFile
from .protocol import BadLine
from .readers import ReaderPool, ReaderSettings
from .routes import HttpRoutes
from .settings import Config
from .snapshot import Snapshot

log = logging.getLogger("webops.statsd")

SHUTDOWN_TIMEOUT = 60.0  # seconds the backends get to write the last flushes on exit
SLOW_SLICE_SECONDS = 0.002  # slow-lane parsing per turn of the event loop (aggregate.work_slow)


class StatsdDaemon:
    def __init__(self, config: Config, reload_config: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.reload_config = reload_config
        self.startup_time = time.time()
        self.health = config["healthStatus"]
        self.bad_log = RateLimitedLog(log, "bad lines")
        self.aggregator = Aggregator(config.aggregation(), on_bad_line=self._bad_line)
        self.summary = config.summary()
        self.sockets = reconcile.Sockets(self.on_data)
        self.stream_limits = StreamLimits()
        self.runners: list[BackendRunner] = []
        self.packet_backends: list[Backend] = []
        self.mgmt: asyncio.Server | None = None
        self.console: Console | None = None
        self.mgmt_bind: tuple[str, int] | None = None
        self.http_server: asyncio.Server | None = None
        self.http_bind: tuple[str, int] | None = None
        self.http = HttpRoutes(self)
        if config["persistGauges"]:
            self.aggregator.gauges.update(load_gauges(config["persistGauges"]))
        self.prometheus_state: StateFile | None = None  # fixed for the daemon's lifetime
        if path := config["prometheus"]["stateFile"]:
            self.prometheus_state = StateFile(path)  # ConfigError: another daemon holds it
            self.http.prometheus.restore(self.prometheus_state.load())
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
        self.key_flush = KeyFlush(lambda: self.config, self.aggregator.take_key_counts)
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
        return kernel_drops(self.sockets.udp_socks())

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
        tasks = [asyncio.create_task(flushes), asyncio.create_task(self.key_flush.run())]
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
        except Exception as e:  # a reader's own failure must not end the flush loop that called it
            log.error("reload: %s: %s (keeping the running configuration)", type(e).__name__, e)
            return
        if await self._apply(new):
            log.info("configuration reloaded")

    async def _apply(self, config: Config, first: bool = False) -> bool:
        """Make the running daemon match `config`, touching only what changed.

        At start, any failure is a ConfigError (exit 2). On reload every new socket is bound
        before an old one is closed; a part that fails is logged and keeps running as it was.
        Returns whether everything applied.
        """
        old = self.config
        if config.hot_path != self.hot_path:
            log.warning("hotPath: %s takes effect at the next restart", config.raw["hotPath"])
        state_file = self.prometheus_state.path if self.prometheus_state else None
        if config["prometheus"]["stateFile"] != state_file:
            log.warning(
                "prometheus.stateFile: %s takes effect at the next restart", config["prometheus"]["stateFile"]
            )
        self.config = config
        self.config_mtime = self._mtime()
        setup_logging(config)
        self.aggregator.configure(config.aggregation())
        self.summary = config.summary()
        self.http.prometheus.configure(config.prometheus)
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

    def _apply_backends_safely(self, config: Config, first: bool) -> None:
        try:
            self._apply_backends(config)
        except (OSError, ValueError) as e:
            if first:
                raise ConfigError(str(e)) from e
            log.error("reload: %s", e)

    def _apply_backends(self, config: Config) -> None:
        try:
            created = [backends.create(n, config, self.startup_time) for n in config.backends]
        except (ValueError, OSError) as e:
            raise ValueError(f"backends: {e} (keeping the running backends)") from e
        old_runners, self.runners = self.runners, [BackendRunner(b) for b in created]
        self.packet_backends = [b for b in created if b.wants_packets]
        self.http.serve(created)
        successors = {b.name: b for b in created}
        for r in old_runners:  # they finish their queued flushes in the background, then hand over
            successor = successors.get(r.backend.name)
            threading.Thread(target=r.stop, args=(SHUTDOWN_TIMEOUT, successor), daemon=True).start()

    async def _apply_listeners(self, config: Config) -> None:
        """Bind what is new (all or nothing), switch the readers, then close what went away."""
        plan = reconcile.plan(self.sockets.bound(), config.listeners)
        await self.sockets.apply(
            plan, self.pool, self._reader_settings(config), lambda: self.stream_limits(config)
        )

    def _reader_settings(self, config: Config) -> ReaderSettings | None:
        """What UDP reader processes (or native receivers) are told; None: UDP is read in this
        process (`readers: 0`)."""
        readers = config.readers_for(self.hot_path)
        if not readers:
            return None
        # A reader hands everything over: what a flush keeps or forgets (delete*) and the
        # kinds' options are the main process's, and changing them restarts no reader.
        intake = dataclasses.replace(config.aggregation(), deletes=frozenset(), options={})
        return ReaderSettings(
            readers,
            intake,
            bool(self.packet_backends),
            config["dumpMessages"],
            log.getEffectiveLevel(),
        )

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

    async def _apply_mgmt(self, config: Config) -> None:
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

    async def _apply_http(self, config: Config) -> None:
        h = config["http"]
        bind = (h["address"], h["port"]) if h else None
        if h:
            self.http.apply_limits(config)
        if bind == self.http_bind:
            return
        if bind is None:
            if self.http_server is not None:
                self.http_server.close()
            self.http_server, self.http_bind = None, None
            return
        try:
            self.http_server = await self._rebind(self.http_server, bind, self.http.endpoint.start)
        except OSError as e:
            raise OSError(f"cannot listen on http {bind[0]}:{bind[1]}: {e.strerror or e}") from e
        self.http_bind = bind
        log.info("http (/health, /metrics, Graphite's /render and /metrics/find) on %s:%s", *bind)
        port = self.http_server.sockets[0].getsockname()[1]  # the one bound, for port 0
        log.info("dashboard: %s", dashboard.url(bind[0], port))

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
        self.sockets.drain_and_close()
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
        if self.prometheus_state is not None:  # saved by the final flush: the next process's
            self.prometheus_state.close()
        log.info("stopped")

    def _close_http(self) -> None:
        """First thing at shutdown: no new request, and those in flight (renders, clients that do
        not read their reply) closed and abandoned, so HTTP never holds up the exit."""
        if self.http_server is not None:
            self.http_server.close()
        self.http.close()

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
        """In the flusher's thread: every backend, /metrics (and its totals' state file) and the
        saved gauges."""
        for r in list(self.runners):
            r.submit(slot_snapshot if r.backend.overwrites_slots else snapshot)
        self.http.flushed(snapshot)  # /metrics and the dashboard
        if self.prometheus_state is not None:
            self.prometheus_state.save(self.http.prometheus.saved())
        self.last_flush = (time.time(), snapshot.statsd_metrics.get("processing_time", 0))
        if path := self.config["persistGauges"]:
            gauges = {k: v for k, v in snapshot.gauges.items() if k != self.aggregator.k_lag}
            try:
                save_gauges(path, gauges)
            except OSError as e:
                log.error("persistGauges: cannot write %s: %s", path, e)

    def _mtime(self) -> tuple[float | None, ...]:
        """When the config file and the mapping file it names last changed:
        automaticConfigReload follows both."""
        return tuple(_mtime(p) for p in (self.config.path, self.config["prometheus"]["mapping"]))


def _mtime(path: str | None) -> float | None:
    try:
        return os.stat(path).st_mtime if path else None
    except OSError:
        return None
