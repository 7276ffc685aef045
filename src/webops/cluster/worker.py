"""The gunicorn worker: uvicorn's, with its own accept loop, connection guards and a shutdown that
loses no request, keep-alive clients' included.

Accepting (`Acceptor`, instead of asyncio's accept loop):
- one connection per wake-up, and a worker with requests in flight waits ACCEPT_STEP a request
  (ACCEPT_DELAY at most) before it accepts (when there are other workers): every worker is woken
  for a new connection, so the least busy one takes it first. asyncio's loop accepts up to 100
  at once: one worker took 7 of 8 clients.
- at most `max_connections` connections a worker, kept below the open-file limit (RLIMIT_NOFILE
  minus what the worker already has open and FD_RESERVE): at it, a new connection is accepted
  and room made by closing the longest-idle connections (no request), or failing those the one
  whose request is still arriving slowest (bytes a second since its first byte): a request not
  yet whole is not in progress, else 3,000 connections sending headers and a byte of body held
  every worker for --request-timeout. Only when every connection has a whole request being
  answered does the worker stop accepting and leave new ones to the others.
- out of file descriptors (EMFILE): idle connections are closed, accepting pauses ACCEPT_PAUSE,
  and one line is logged every LOG_EVERY seconds at most (asyncio logged a traceback for every
  failed accept: 140 MB in 25 s).

Connections (`GuardedProtocol`):
- a connection must send its first byte within `keep_alive` seconds, and a request (headers and
  body) must arrive whole within `request_timeout` seconds of its first byte, else it is closed
  (slowloris: headers or a body trickled); between requests uvicorn's keep-alive timeout applies.
- keep-alive connections are moved between workers by answering `Connection: close` (the client
  reconnects, and an idle worker accepts first): after `keepalive_requests` requests on one
  connection, and whenever this worker has other requests in flight.

Parser errors (TLS handshakes, garbage, no Host, ...): uvicorn's 400, counted, timed and
access-logged by the app's `unparsed` hook (api.py), and its log line rate-limited.

Dying with the master: PR_SET_PDEATHSIG (set in post_fork) and a check of the parent's pid
every tick of the server's loop.

Retiring (`--max-requests`, or a shutdown): from the last request on, every response says
`Connection: close`; the worker stops accepting, gives connections it already accepted
DRAIN_SECONDS to show their request, then waits (up to `keep_alive` seconds) for keep-alive
connections to come back with a request, answered with `Connection: close`, or to expire; only
then does it shut down as uvicorn does, answering every request it admitted (gunicorn's graceful
timeout, serve.py, is sized for that) and telling the master it is alive meanwhile. uvicorn
alone closes idle keep-alive connections at once and a request crossing the close is lost (45 of
698 with http.client).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
from gunicorn.arbiter import Arbiter
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import Server, ServerState
from uvicorn_worker import UvicornWorker

from ..common.ratelimit import RateLimitedLog

DRAIN_SECONDS = 0.5
ACCEPT_DELAY = 0.05  # a busy worker lets idle ones take a new connection first: at most this,
ACCEPT_STEP = 0.01  # and this much per request it has in flight
ACCEPT_PAUSE = 0.1  # after EMFILE, or at the connection limit with nothing to close
FD_RESERVE = 128  # descriptors kept free for what a worker opens besides connections
LOG_EVERY = 10.0
PR_SET_PDEATHSIG = 1  # prctl(2)

log = logging.getLogger("uvicorn.error")
INVALID = "Invalid HTTP request received."  # uvicorn's warning for what h11 cannot parse (a 400)
# What the parser rejects (TLS handshakes, garbage, a missing Host, oversized or duplicate headers)
# can come in floods: at most 5 lines a minute, then a count of the rest.
invalid_log = RateLimitedLog(log, "invalid HTTP requests (answered 400)")
# Set by the worker from the app (api.create_app's `app.state.unparsed`): counts, times and
# access-logs a request the parser rejected, which the app itself never sees.
UNPARSED: Callable[[Any, int, int, float, float], None] | None = None


class _Logger:
    """uvicorn.error for a connection, with the parser's 400 warning rate-limited."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if msg == INVALID and not args:
            invalid_log.warning(INVALID)
        else:
            self._logger.warning(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


@dataclass
class Settings:
    keep_alive: int = 5  # idle seconds before the first request and between requests
    request_timeout: int = 30  # a request's headers and body, from its first byte
    max_connections: int = 1000  # a worker
    keepalive_requests: int = 100  # requests on one connection before `Connection: close` (0: no limit)
    workers: int = 1


SETTINGS = Settings()  # set in the master (serve.py) before the fork


def die_with_parent(ppid: int) -> None:
    """In a worker right after the fork: SIGTERM when the master dies, even by SIGKILL (Linux's
    PR_SET_PDEATHSIG; elsewhere, and should the master die before this runs, the worker's loop
    notices that its parent changed: `DrainingServer.on_tick`)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the loop's check remains
        return
    if os.getppid() != ppid:  # the master died before the prctl: nobody will send the signal
        os.kill(os.getpid(), signal.SIGTERM)


def _fd_limit() -> int:
    """Connections a worker can hold without running out of descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = 64
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(16, soft - open_now - FD_RESERVE)


class GuardedProtocol(H11Protocol):
    def __init__(
        self, config: Any, server_state: ServerState, app_state: dict[str, Any], _loop: Any = None
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.settings = SETTINGS
        self.opened = self.active = time.monotonic()
        self.served = 0
        self.reading = False  # a request has begun and is not whole yet
        self.begun = self.opened  # when the current request's first byte came
        self.received = 0  # its bytes so far
        self.logger = _Logger(self.logger)  # type: ignore[assignment]
        self.read_timer: asyncio.TimerHandle | None = None
        self.inner = self.app
        self.app = self._app

    # timeouts
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.settings.keep_alive)  # the first byte, within keep-alive seconds

    def data_received(self, data: bytes) -> None:
        self.active = time.monotonic()
        if not self.reading and (self.cycle is None or self.cycle.response_complete):
            self.begun, self.received = self.active, 0  # the first byte of a request
        self.received += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return self._disarm()
        state = self.conn.their_state
        if state is h11.SEND_BODY or (state is h11.IDLE and bool(self.conn.trailing_data[0])):
            if not self.reading:
                self.reading = True
                self._arm(self.settings.request_timeout)
        else:
            self.reading = False
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.read_timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _expired(self) -> None:
        """Nothing within keep-alive seconds, or a request not whole within request_timeout."""
        self.read_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """What the parser rejected: answered as uvicorn does, and counted and logged as any request."""
        super().send_400_response(msg)
        hook = UNPARSED
        if hook is not None:
            seconds = time.monotonic() - self.begun
            with contextlib.suppress(Exception):  # metrics never break a connection
                hook(self.client, 400, len(msg.encode()), time.time() - seconds, seconds)

    def arriving(self) -> bool:
        """A request has begun and is not whole yet (headers or body still on their way): nothing
        is being computed for it, and closing it costs the client a retry, not an answer."""
        return self.reading and self.transport is not None and not self.transport.is_closing()

    def rate(self, now: float) -> float:
        """Bytes a second the current request has arrived at, since its first byte."""
        return self.received / max(now - self.begun, 0.001)

    def idle(self) -> bool:
        """No request in progress: closing it loses nothing the client is waiting for."""
        if self.transport is None or self.transport.is_closing():
            return False  # already on its way out
        return (self.cycle is None or self.cycle.response_complete) and not self.reading

    # spreading keep-alive connections, and retiring
    def should_close(self) -> bool:
        s, state = self.settings, self.server_state
        if getattr(state, "retiring", False):
            return True
        limit = getattr(state, "max_requests", None)
        if limit is not None and state.total_requests + 1 >= limit:
            return True
        if s.keepalive_requests and self.served >= s.keepalive_requests:
            return True
        return s.workers > 1 and len(state.tasks) > 1  # busy: let the client reconnect to an idle worker

    async def _app(self, scope: Any, receive: Callable, send: Callable) -> None:
        self.served += 1

        async def closing_send(message: Any) -> None:
            if message["type"] == "http.response.start" and self.should_close():
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.inner(scope, receive, closing_send)


class Acceptor:
    """Accepts from a listening socket in place of asyncio's loop (see the module's docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        state: ServerState,
        settings: Settings,
    ) -> None:
        self.loop, self.sock, self.factory, self.state = loop, sock, factory, state
        self.settings = settings
        self.limit = min(settings.max_connections, _fd_limit())
        self.closed = False
        self.reading = False
        self.resumed = -1.0  # when accepting resumed after a pause
        self.timer: asyncio.TimerHandle | None = None
        self.failures = 0
        self.logged = 0.0
        self.tasks: set[asyncio.Task[None]] = set()
        sock.setblocking(False)
        self._resume()

    def _resume(self) -> None:
        self.timer = None
        self.resumed = self.loop.time()
        if not self.closed and not self.reading:
            self.loop.add_reader(self.sock.fileno(), self._ready)
            self.reading = True

    def _pause(self, seconds: float) -> None:
        if self.reading:
            self.loop.remove_reader(self.sock.fileno())
            self.reading = False
        if self.timer is None and not self.closed:
            self.timer = self.loop.call_later(seconds, self._resume)

    def _ready(self) -> None:
        # Busy: wait 10 ms a request in flight (50 ms at most) before accepting; every worker is
        # woken for a new connection, so the least busy one takes it.
        delay = min(ACCEPT_DELAY, ACCEPT_STEP * len(self.state.tasks))
        if self.settings.workers > 1 and delay and self.loop.time() - self.resumed >= delay:
            return self._pause(delay)
        victims: list[GuardedProtocol] = []
        if len(self.state.connections) >= self.limit:
            victims = self._victims(max(1, self.limit // 20))
            if not victims:  # every connection has a whole request being answered: the others take it
                return self._pause(ACCEPT_PAUSE)
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it: nobody is closed for nothing
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                return self._out_of_descriptors(e)
            raise
        for p in victims:  # room for it (the limit keeps FD_RESERVE descriptors spare for the moment)
            p.transport.close()
        conn.setblocking(False)
        task = self.loop.create_task(self._connect(conn))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn)
        except OSError:
            conn.close()

    def _victims(self, count: int) -> list[GuardedProtocol]:
        """What to close to make room at the limit: up to `count` connections with no request
        (longest idle first); failing those, the one whose request is still arriving slowest
        (fewest bytes a second since its first byte: headers or a body trickled, or stalled).
        A whole request being answered is never among them."""
        conns = [p for p in self.state.connections if isinstance(p, GuardedProtocol)]
        idle = heapq.nsmallest(count, (p for p in conns if p.idle()), key=lambda p: p.active)
        if idle:
            return idle
        now = time.monotonic()
        arriving = [p for p in conns if p.arriving()]
        return [min(arriving, key=lambda p: p.rate(now))] if arriving else []

    def _close_idle(self, count: int) -> int:
        """Close up to `count` connections with no request in progress, longest idle first."""
        idle = [p for p in self.state.connections if isinstance(p, GuardedProtocol) and p.idle()]
        victims = heapq.nsmallest(count, idle, key=lambda p: p.active)
        for p in victims:
            p.transport.close()
        return len(victims)

    def _out_of_descriptors(self, e: OSError) -> None:
        self.failures += 1
        self._close_idle(max(1, len(self.state.connections) // 10))
        now = time.monotonic()
        if now - self.logged >= LOG_EVERY:
            log.warning(
                "accept: %s (%d times since the last such message; %d connections open, limit %d): "
                "closing idle connections",
                os.strerror(e.errno or 0),
                self.failures,
                len(self.state.connections),
                self.limit,
            )
            self.logged, self.failures = now, 0
        self._pause(ACCEPT_PAUSE)

    def close(self) -> None:
        self.closed = True
        if self.reading:
            self.loop.remove_reader(self.sock.fileno())
            self.reading = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    async def wait_closed(self) -> None:
        return None


class DrainingServer(Server):
    ppid = 0  # the master's pid: when the worker's parent is another, the master is gone

    async def on_tick(self, counter: int) -> bool:
        if self.ppid and os.getppid() != self.ppid and not self.should_exit:
            log.warning("the master (pid %d) is gone: shutting down", self.ppid)
            self.should_exit = True
        if counter % 10 == 0:
            invalid_log.tick()  # the count of lines held back, without waiting for the next one
        return await super().on_tick(counter)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None:  # pragma: no cover - gunicorn always hands its sockets over
            return await super().startup(sockets)
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(STARTUP_FAILURE)
        config, loop = self.config, asyncio.get_running_loop()
        self.server_state.max_requests = self.limit_max_requests  # type: ignore[attr-defined]
        self.server_state.retiring = False  # type: ignore[attr-defined]

        def factory() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop
            )

        acceptors = [Acceptor(loop, sock, factory, self.server_state, SETTINGS) for sock in sockets]
        self.servers = acceptors  # type: ignore[assignment]
        self.started = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.server_state.retiring = True  # type: ignore[attr-defined]  # every response: Connection: close
        for server in self.servers:
            server.close()  # no new connections: the other workers take them
        for sock in sockets or []:
            sock.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(DRAIN_SECONDS, SETTINGS.keep_alive) + 0.5
        heartbeat = loop.create_task(self._heartbeat())  # the master's --timeout: still alive
        await asyncio.sleep(DRAIN_SECONDS)
        # Keep-alive connections: their next request is answered with Connection: close, or they
        # expire after keep-alive seconds (as any idle connection does); closing them now would
        # lose a request already on its way.
        while self.server_state.connections and loop.time() < deadline and not self.force_exit:
            await asyncio.sleep(0.05)
        try:
            await super().shutdown()  # waits for every request it admitted to be answered
        finally:
            heartbeat.cancel()

    async def _heartbeat(self) -> None:
        """While requests finish after the stop, tell the master the worker is alive (the main
        loop that did has ended), so a retiring worker is not killed as hung after --timeout."""
        notify = self.config.callback_notify
        while notify is not None:
            with contextlib.suppress(Exception):
                await notify()
            await asyncio.sleep(1.0)


class Worker(UvicornWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.http = GuardedProtocol
        self.config.timeout_keep_alive = SETTINGS.keep_alive

    async def _serve(self) -> None:  # UvicornWorker._serve, with the draining server
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        server.ppid = self.ppid
        global UNPARSED
        UNPARSED = getattr(getattr(self.wsgi, "state", None), "unparsed", None)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
