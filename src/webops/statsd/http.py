"""A small HTTP endpoint beside the console: GET /health for load balancers and orchestrators,
GET /metrics for Prometheus, and Graphite's /metrics/find and /render on the store (what each
path answers is routes.py's; this is the protocol and its limits). Plain asyncio: a few fixed
routes with query strings and form bodies do not justify a web framework.

Every request is bounded, because /health is what a load balancer trusts: a connection gets
`headerTimeout` to send its request line and headers and `bodyTimeout` to send a body or take
the reply; past `maxConnections` the oldest connection still sending its request (a slowloris
is always the oldest) is closed to make room; every request gets an answer, a broken one a 4xx
and a route that fails a 500; heavy routes run in Workers, bounded in number and in time."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import queue
import re
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, parse_qsl

from ..common.ratelimit import RateLimitedLog

log = logging.getLogger("webops.statsd")

Reply = tuple[int, str, "str | bytes"]  # (status, content type, body: bytes as they are (pickle))
MAX_HEAD = 1 << 16  # the request line and headers: past it a 431
MAX_BODY = 1 << 20  # a POSTed form (Grafana posts its render requests): 1 MiB is thousands of targets
WAITING = 32  # renders waiting for a worker thread; past them a 503 at once
METHODS = ("GET", "HEAD", "POST")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's method and header names


@dataclass(frozen=True)
class Limits:
    """The `http` keys that bound connections (config.py has their defaults and meaning)."""

    max_connections: int = 512
    header_timeout: float = 10.0
    body_timeout: float = 30.0


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, list[str]] = field(default_factory=dict)  # the query string and a form body
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    # every parameter named, with a value or without (`&noNullPoints`, which params leaves out)
    names: set[str] = field(default_factory=set)

    def get(self, name: str, default: str = "") -> str:
        return self.params.get(name, [default])[-1]

    def has(self, name: str) -> bool:
        """Whether the parameter is there at all, blank or not (graphite-web's flags)."""
        return name in self.params or name in self.names


Route = Callable[[Request], "Reply | Awaitable[Reply]"]


def parse_head(head: bytes) -> Request | Reply:
    """A request line and headers, ending with their blank line, read strictly: anything but
    `METHOD /target HTTP/1.x` and `Name: value` lines is a 400, a method other than GET, HEAD
    and POST a 405."""
    lines = head.decode("latin-1").split("\r\n")[:-2]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not re.fullmatch(r"HTTP/1\.[01]", parts[2]):
        return 400, "text/plain", "bad request line: expected METHOD /path HTTP/1.1\n"
    method, target, _ = parts
    if method not in METHODS:
        return 405, "text/plain", "GET, HEAD or POST\n"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            return 400, "text/plain", "bad header line: expected Name: value\n"
        name, value = name.lower(), value.strip()
        # a body whose end two parties could read differently is how requests are smuggled
        # past a proxy: refused, as RFC 9112 asks
        if name == "content-length" and headers.get(name, value) != value:
            return 400, "text/plain", "conflicting Content-Length headers\n"
        if name == "transfer-encoding":
            return 501, "text/plain", "Transfer-Encoding is not supported: send a Content-Length\n"
        headers[name] = value
    path, _, query = target.partition("?")
    return Request(method, path, parse_qs(query), headers, _names(query))


def _names(query: str) -> set[str]:
    return {name for name, _ in parse_qsl(query, keep_blank_values=True)}


def body_length(request: Request) -> int | Reply:
    """The length of a POSTed body, or the 400 / 413 that refuses it."""
    text = request.headers.get("content-length", "0")
    if not re.fullmatch(r"[0-9]{1,16}", text):
        return 400, "text/plain", "bad Content-Length\n"
    if int(text) > MAX_BODY:
        return 413, "text/plain", f"a body is at most {MAX_BODY} bytes\n"
    return int(text)


@dataclass
class _Connection:
    writer: asyncio.StreamWriter
    reading: bool = True  # still sending its request: the one to close when room is needed


class Endpoint:
    """The HTTP server's routes, limits (a reload may change them), open connections and counts
    (/metrics' statsd_http_*), kept across rebinds."""

    def __init__(self, routes: dict[str, Route], limits: Limits) -> None:
        self.routes = routes
        self.limits = limits
        self.open: dict[asyncio.Task, _Connection] = {}  # oldest first
        self.counts: Counter[str] = Counter()  # evicted, refused, timeouts
        self.replies: Counter[int] = Counter()  # by status
        self.errors = RateLimitedLog(log, "http errors")
        self.closed = False

    async def start(self, host: str, port: int) -> asyncio.Server:
        # asyncio accepts up to `backlog` connections at a time before any handler can make room:
        # more than its 100, so a flood is taken in large bites, not so many that a bite on top of
        # maxConnections runs out of descriptors (512 + 256 fit under a limit of 1024)
        return await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD, backlog=256)

    def close(self) -> None:
        """Close every connection at once, whatever it waits for (a render, a client that does
        not read its reply), and any accepted after: shutdown does not wait for HTTP."""
        self.closed = True
        for task, conn in self.open.items():
            conn.writer.transport.abort()
            task.cancel()
        self.open.clear()

    def _evict(self) -> bool:
        """Make room: close the oldest connection still sending its request (it was not going
        to be served soon), or say there is none."""
        oldest = next((task for task, conn in self.open.items() if conn.reading), None)
        if oldest is None:
            return False
        self.open.pop(oldest).writer.transport.abort()
        self.counts["evicted"] += 1
        return True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # asyncio runs each connection's handler in a task of its own
        if self.closed or (len(self.open) >= self.limits.max_connections and not self._evict()):
            self.counts["refused"] += 1
            writer.transport.abort()
            return
        conn = self.open[task] = _Connection(writer)
        try:
            request = await self._read(reader)
            conn.reading = False
            reply = await self._route(request) if isinstance(request, Request) else request
            self.replies[reply[0]] += 1
            await self._send(
                writer, reply, head_only=isinstance(request, Request) and request.method == "HEAD"
            )
        except TimeoutError:
            self.counts["timeouts"] += 1
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            log.debug("http: %s", e)
        except asyncio.CancelledError:
            # shutdown (Endpoint.close): end quietly, or asyncio's own done-callback reports the
            # cancelled handler as an unhandled exception, once per open connection
            pass
        finally:
            self.open.pop(task, None)
            await _close(writer, self.limits.body_timeout)

    async def _read(self, reader: asyncio.StreamReader) -> Request | Reply:
        async with asyncio.timeout(self.limits.header_timeout):
            head, rest = await _read_head(reader)
        if isinstance(head, tuple):
            return head
        request = parse_head(head)
        if not isinstance(request, Request) or request.method != "POST":
            return request
        length = body_length(request)
        if not isinstance(length, int):
            return length
        body = rest[:length]
        if len(body) < length:
            more = reader.readexactly(length - len(body))
            body += await asyncio.wait_for(more, self.limits.body_timeout)
        if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
            form = body.decode("utf-8", "replace")
            for k, v in parse_qs(form).items():
                request.params.setdefault(k, []).extend(v)
            request.names |= _names(form)
        return request

    async def _route(self, request: Request) -> Reply:
        """The route's reply; a route that fails is a 500, logged at a bounded rate."""
        route = self.routes.get(request.path)
        if route is None:
            return 404, "text/plain", "not found\n"
        try:
            result = route(request)
            return await result if inspect.isawaitable(result) else result
        except Exception as e:
            self.errors.warning("http: %s %s: %r", request.method, request.path[:200], e)
            return 500, "text/plain", f"internal error ({type(e).__name__}), logged\n"

    async def _send(self, writer: asyncio.StreamWriter, reply: Reply, head_only: bool) -> None:
        status, ctype, body = reply
        data = body if isinstance(body, bytes) else body.encode()
        writer.write(
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        )
        if not head_only:
            writer.write(data)
        await asyncio.wait_for(writer.drain(), self.limits.body_timeout)


# What the bytes received so far may be the start of: `METHOD /target HTTP/1.x` (a token, a
# target, a prefix of the version), before the line ends
_REQUEST_LINE_START = re.compile(
    rb"[!#$%&'*+.^_`|~0-9A-Za-z-]*"
    rb"|[!#$%&'*+.^_`|~0-9A-Za-z-]+ [\x21-\x7e]*"
    rb"|[!#$%&'*+.^_`|~0-9A-Za-z-]+ [\x21-\x7e]+ (?:H(?:T(?:T(?:P(?:/(?:1(?:\.[01]?)?)?)?)?)?)?)?"
)
_NOT_HTTP: Reply = (400, "text/plain", "not an HTTP/1.x request (this port speaks plain HTTP)\n")


def request_line_possible(received: bytes) -> bool:
    """Whether `received`, the first bytes of a connection, can still become an HTTP/1.x request
    line: false as soon as they cannot (the console's `stats\\r\\n`, HTTP/0.9's `GET /health\\r\\n`,
    a TLS ClientHello's 0x16), so such a client gets its 400 at once rather than holding a
    connection slot for headerTimeout."""
    line, crlf, _ = received.partition(b"\r\n")
    if crlf:
        return re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [\x21-\x7e]+ HTTP/1\.[01]", line) is not None
    return _REQUEST_LINE_START.fullmatch(line.removesuffix(b"\r")) is not None


async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes | Reply, bytes]:
    """The request line and headers up to their blank line, and what came after them (the start of
    a body); a 400 as soon as the first bytes cannot be a request line, a 431 past MAX_HEAD."""
    received = b""
    too_long: Reply = (431, "text/plain", f"the request line and headers are at most {MAX_HEAD} bytes\n")
    while (end := received.find(b"\r\n\r\n")) < 0:
        if not request_line_possible(received[:MAX_HEAD]):
            return _NOT_HTTP, b""
        if len(received) > MAX_HEAD:
            return too_long, b""
        chunk = await reader.read(MAX_HEAD)
        if not chunk:
            raise asyncio.IncompleteReadError(received, None)
        received += chunk
    if not request_line_possible(received):
        return _NOT_HTTP, b""
    if end + 4 > MAX_HEAD:
        return too_long, b""
    return received[: end + 4], received[end + 4 :]


async def _close(writer: asyncio.StreamWriter, timeout: float) -> None:
    """Close gracefully, or abort a peer that does not take what is left within `timeout`."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except (TimeoutError, ConnectionError):
        writer.transport.abort()


_Job = tuple[Callable[[], Reply], asyncio.Future, asyncio.AbstractEventLoop]  # what, for whom, on which loop


class Workers:
    """A few daemon threads for the routes too heavy for the event loop (Graphite's).

    Not asyncio's default executor: Python joins its threads at exit, and shutdown and /metrics
    use it, so one endless render there held the daemon past SIGTERM. At most `threads` jobs run
    and WAITING more wait; past them a 503 at once. A job that outlives its timeout is
    abandoned: the client gets a 504, and `stop()` tells the job, which has to notice (a thread
    cannot be killed)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.pending = 0  # running or waiting; changed on the event loop only
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        for i in range(threads):
            threading.Thread(target=self._work, name=f"webops-render-{i}", daemon=True).start()

    async def run(self, job: Callable[[], Reply], timeout: float, stop: Callable[[], None]) -> Reply:
        if self.pending >= self.threads + WAITING:
            return (
                503,
                "text/plain",
                f"busy: {self.pending} renders running or waiting (http.renderThreads is {self.threads}); "
                "try again\n",
            )
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Reply] = loop.create_future()
        self.pending += 1
        self.jobs.put((job, done, loop))
        try:
            return await asyncio.wait_for(done, timeout)
        except TimeoutError:  # seen here, or by the job itself (functions.Expired)
            return 504, "text/plain", f"render abandoned after {timeout:g} s (http.renderTimeout)\n"
        finally:
            stop()  # answered, timed out or cancelled (shutdown): the job stops at its next check

    def close(self) -> None:
        """The threads end after the jobs already queued (a reload that changes their number)."""
        for _ in range(self.threads):
            self.jobs.put(None)

    def _work(self) -> None:
        while (item := self.jobs.get()) is not None:
            job, done, loop = item
            try:
                outcome: tuple[Reply | None, Exception | None] = (job(), None)
            except Exception as e:  # handed to the route that waits, as asyncio.to_thread does
                outcome = (None, e)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(self._settle, done, *outcome)

    def _settle(self, done: asyncio.Future, result: Reply | None, error: Exception | None) -> None:
        self.pending -= 1
        if done.done():  # abandoned
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)
