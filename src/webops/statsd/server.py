"""The daemon: listeners feed the aggregator, a grid-aligned timer flushes it to the backends.

Threads: the event loop owns intake, the console and the timers; one flusher thread turns each
detached interval into a snapshot (timer maths stays off the receive path); each backend has its
own thread (backends.base.BackendRunner).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..common.config import ConfigError
from ..common.ratelimit import RateLimitedLog
from . import backends, http
from .admin import Console, serve
from .aggregate import Aggregator, Batch, Interval
from .backends.base import Backend, BackendRunner
from .config import Listener, StatsdConfig
from .listeners import StreamListener, UdpListener, describe, dump_packets, open_listener
from .persist import load_gauges, save_gauges
from .prometheus import PrometheusView
from .protocol import BadLine
from .readers import ReaderPool
from .snapshot import SummarySettings, summarize

log = logging.getLogger("webops.statsd")

SHUTDOWN_TIMEOUT = 60.0  # seconds the backends get to write the last flushes on exit


def next_flush(now: float, interval_s: float) -> float:
    """The next multiple of the interval after `now`: flushes stay on the grid (no drift, Etsy #574)."""
    return (math.floor(now / interval_s) + 1) * interval_s


class StatsdDaemon:
    def __init__(self, config: StatsdConfig, reload_config: Callable[[], StatsdConfig] | None = None) -> None:
        self.config = config
        self.reload_config = reload_config
        self.startup_time = time.time()
        self.health = config["healthStatus"]
        self.bad_log = RateLimitedLog(log, "bad lines")
        self.aggregator = Aggregator(config.aggregation(), on_bad_line=self._bad_line)
        self.summary = config.summary()
        self.listeners: dict[Listener, UdpListener | StreamListener] = {}
        self.runners: list[BackendRunner] = []
        self.packet_backends: list[Backend] = []
        self.mgmt: asyncio.Server | None = None
        self.mgmt_bind: tuple[str, int] | None = None
        self.http_server: asyncio.Server | None = None
        self.http_bind: tuple[str, int] | None = None
        self.prometheus = PrometheusView()
        if config["persistGauges"]:
            self.aggregator.gauges.update(load_gauges(config["persistGauges"]))
        self.flusher = ThreadPoolExecutor(1, thread_name_prefix="flusher")
        self.stopping = asyncio.Event()
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

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.pool = ReaderPool(self.on_batch)
        await self._apply(self.config, first=True)
        for sig, handler in (
            (signal.SIGTERM, self.stop),
            (signal.SIGINT, self.stop),
            (signal.SIGHUP, self.reload),
        ):
            loop.add_signal_handler(sig, handler)
        log.info("server is up")
        tasks = [asyncio.create_task(self._flush_loop()), asyncio.create_task(self._key_flush_loop())]
        await self.stopping.wait()
        for t in tasks:
            t.cancel()
        await self._shutdown()

    def stop(self) -> None:
        log.info("stopping: draining sockets and flushing")
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
        await self._apply(new)
        log.info("configuration reloaded")

    async def _apply(self, config: StatsdConfig, first: bool = False) -> None:
        """Make the running daemon match `config`, touching only what changed.

        At start, any failure is a ConfigError (exit 2); on reload it is logged and the part
        that failed keeps running as it was.
        """
        old = self.config
        self.config = config
        self.config_mtime = self._mtime()
        setup_logging(config)
        self.aggregator.configure(config.aggregation())
        self.summary = config.summary()
        try:
            if first or config.raw != old.raw:
                self._apply_backends(config)
            self._apply_listeners(config, restart_readers=first or config.raw != old.raw)
            await self._apply_mgmt(config)
            await self._apply_http(config)
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

    def _apply_listeners(self, config: StatsdConfig, restart_readers: bool) -> None:
        readers = config.readers
        wanted = [s for s in config.listeners if s.kind != "udp" or not readers]
        for spec in [s for s in self.listeners if s not in wanted]:
            log.info("closing listener %s", describe(spec))
            self.listeners.pop(spec).close()
        for spec in wanted:
            if spec not in self.listeners:
                try:
                    self.listeners[spec] = open_listener(spec, self.on_data)
                except OSError as e:
                    raise OSError(f"cannot listen on {describe(spec)}: {e.strerror or e}") from e
                log.info("listening on %s", describe(spec))
        pooled = [s for s in config.listeners if s.kind == "udp" and readers]
        if restart_readers or list(self.pool.socks) != pooled:
            self.pool.stop_readers()
            try:
                for spec in self.pool.bind(pooled):
                    log.info("listening on %s (%d reader processes)", describe(spec), readers)
            finally:  # the sockets that did bind keep being read
                self.pool.start(
                    readers, config.aggregation(), bool(self.packet_backends), config["dumpMessages"]
                )

    async def _apply_mgmt(self, config: StatsdConfig) -> None:
        bind = (config["mgmt_address"], config["mgmt_port"])
        if bind == self.mgmt_bind:
            return
        if self.mgmt is not None:
            self.mgmt.close()
        try:
            self.mgmt = await serve(Console(self), *bind)
        except OSError as e:
            raise OSError(f"cannot listen on management {bind[0]}:{bind[1]}: {e.strerror or e}") from e
        self.mgmt_bind = bind
        log.info("management console on %s:%s", *bind)

    async def _apply_http(self, config: StatsdConfig) -> None:
        h = config["http"]
        bind = (h["address"], h["port"]) if h else None
        if bind == self.http_bind:
            return
        if self.http_server is not None:
            self.http_server.close()
            self.http_server = None
        self.http_bind = bind
        if bind is None:
            return
        routes = {"/health": self._health, "/metrics": self._metrics}
        try:
            self.http_server = await http.serve(routes, *bind)
        except OSError as e:
            self.http_bind = None
            raise OSError(f"cannot listen on http {bind[0]}:{bind[1]}: {e.strerror or e}") from e
        log.info("http (/health, /metrics) on %s:%s", *bind)

    def _health(self) -> tuple[int, str, str]:
        return (200 if self.health == "up" else 503), "text/plain", f"health: {self.health}\n"

    def _metrics(self) -> tuple[int, str, str]:
        own = [
            ("statsd_health_up", "gauge", (), 1.0 if self.health == "up" else 0.0),
            ("statsd_uptime_seconds", "gauge", (), time.time() - self.startup_time),
        ]
        for r in self.runners:
            for stat, value in r.backend.status().items():
                own.append(("statsd_backend", "gauge", (("backend", r.backend.name), ("stat", stat)), value))
        return 200, "text/plain; version=0.0.4; charset=utf-8", self.prometheus.render(own)

    def on_batch(self, batch: Batch) -> None:
        self.aggregator.merge(batch)
        for item in batch.bad_lines:
            self._bad_line(item)
        self.bad_log.hold_back(batch.totals.bad_lines_seen - len(batch.bad_lines))
        for packet in batch.packets:
            for backend in self.packet_backends:
                backend.packet(packet)

    async def _shutdown(self) -> None:
        self.pool.close()
        for listener in self.listeners.values():
            listener.drain()
        for listener in self.listeners.values():
            listener.close()
        for server in (self.mgmt, self.http_server):
            if server is not None:
                server.close()
        self._flush_now(int(time.time()))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.flusher, lambda: None)  # the last snapshot is queued
        for r in self.runners:
            if not await loop.run_in_executor(None, r.stop, SHUTDOWN_TIMEOUT):
                log.error("backend %s did not finish within %d s", r.backend.name, SHUTDOWN_TIMEOUT)
        self.flusher.shutdown(wait=True)
        log.info("stopped")

    # --- flushing -----------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            interval_s = self.config["flushInterval"] / 1000
            due = next_flush(time.time(), interval_s)
            await asyncio.sleep(max(0.0, due - time.time()))
            self._flush_now(round(due), round(time.time() - due, 3))
            self.bad_log.tick()
            if (
                self.config["automaticConfigReload"]
                and self.config.path
                and self._mtime() != self.config_mtime
            ):
                await self._reload()

    def _flush_now(self, ts: int, lag: float | None = None) -> None:
        """Detach the interval in the loop thread (intake runs there too, so no sample can land
        half in one interval and half in the next), then summarize it in the flusher thread.
        `lag`: how late this flush started after its grid time, in seconds (statsd.timestamp_lag)."""
        interval = self.aggregator.take(ts, lag)
        self.flusher.submit(self._dispatch, interval, self.summary, list(self.runners))

    def _dispatch(self, interval: Interval, summary: SummarySettings, runners: list[BackendRunner]) -> None:
        """In the flusher thread: the timer maths, then every backend, /metrics and saved gauges."""
        try:
            snapshot = summarize(interval, summary)
        except Exception:  # a bug here must not silently stop every later flush
            log.exception("flush at %d failed", interval.timestamp)
            return
        for r in runners:
            r.submit(snapshot)
        self.prometheus.update(snapshot)
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
                with open(kf["log"], "a", encoding="utf-8") as f:
                    f.write(text)
            else:
                sys.stdout.write(text)
                sys.stdout.flush()

    def _mtime(self) -> float | None:
        try:
            return os.stat(self.config.path).st_mtime if self.config.path else None
        except OSError:
            return None


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
