"""A small HTTP endpoint beside the console: GET /health for load balancers and orchestrators,
GET /metrics for Prometheus, and Graphite's /metrics/find and /render on the store (what each
path answers is routes.py's; this is the protocol and its limits). Plain asyncio: a few fixed
routes with query strings and form bodies do not justify a web framework.

Every request is bounded, because /health is what a load balancer trusts: a connection gets
`headerTimeout` to send its request line and headers and `bodyTimeout` to send a body or take
the reply; past `maxConnections` the oldest connection still sending its request (a slowloris
is always the oldest) is closed to make room; every request gets an answer, a broken one a 4xx
and a route that fails a 500; heavy routes run in Workers, bounded in number and in time.

A long answer (/render's text) is sent as it is made, with HTTP/1.1's chunked encoding: the
Workers make its parts, a part ahead of the one being sent, so what is held is a part or two,
not the whole answer (twice over: text, then bytes). An answer begun is never turned into an
error: what can fail is done before the first part (graphite_api.render_parts), and a part that
fails, a client that goes away or one that takes longer than `bodyTimeout` for the whole answer
ends the connection without the last, empty chunk, so the client knows its answer is cut short
(counted in `cut`, the client's going logged at debug, a failure at a bounded rate). An HTTP/1.0
client, which knows no chunks, gets the parts as they are made too, the close ending the answer
(so no client can make the daemon hold an answer whole while it reads slowly); HEAD gets the
whole answer's Content-Length. A client past its `bodyTimeout` is cut at once (aborted), not
given a graceful close's second `bodyTimeout` to take what is left."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import queue
import re
import threading
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, parse_qsl

from ..common.ratelimit import RateLimitedLog

log = logging.getLogger("webops.statsd")

Reply = tuple[int, str, "str | bytes"]  # (status, content type, body: bytes as they are (pickle))
# what a job in the Workers answers: a text of parts, made there a part at a time (Workers.parts)
Answer = tuple[int, str, "str | bytes | Iterator[str]"]
Outgoing = tuple[int, str, "str | bytes | AsyncGenerator[bytes, None]"]  # what a route answers
MAX_HEAD = 1 << 16  # the request line and headers: past it a 431
MAX_BODY = 1 << 20  # a POSTed form (Grafana posts its render requests): 1 MiB is thousands of targets
WAITING = 32  # renders waiting for a worker thread; past them a 503 at once
PART = 1 << 16  # bytes of an answer made at a time (one job in the Workers), sent as one chunk
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
    version: str = "HTTP/1.1"  # an HTTP/1.0 client cannot read a chunked answer

    def get(self, name: str, default: str = "") -> str:
        return self.params.get(name, [default])[-1]

    def has(self, name: str) -> bool:
        """Whether the parameter is there at all, blank or not (graphite-web's flags)."""
        return name in self.params or name in self.names


Route = Callable[[Request], "Outgoing | Awaitable[Outgoing]"]


def parse_head(head: bytes) -> Request | Reply:
    """A request line and headers, ending with their blank line, read strictly: anything but
    `METHOD /target HTTP/1.x` and `Name: value` lines is a 400, a method other than GET, HEAD
    and POST a 405."""
    lines = head.decode("latin-1").split("\r\n")[:-2]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not re.fullmatch(r"HTTP/1\.[01]", parts[2]):
        return 400, "text/plain", "bad request line: expected METHOD /path HTTP/1.1\n"
    method, target, version = parts
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
    return Request(method, path, parse_qs(query), headers, _names(query), version)


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
        self.counts: Counter[str] = Counter()  # evicted, refused, timeouts, cut
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
            head_only = isinstance(request, Request) and request.method == "HEAD"
            http10 = isinstance(request, Request) and request.version == "HTTP/1.0"
            await self._send(writer, reply, head_only, http10)
        except TimeoutError:
            # the client had its bodyTimeout: it gets no more time to take what is left
            self.counts["timeouts"] += 1
            writer.transport.abort()
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            log.debug("http: %s", e)
            writer.transport.abort()
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

    async def _route(self, request: Request) -> Outgoing:
        """The route's reply; a route that fails is a 500, logged at a bounded rate."""
        route = self.routes.get(request.path)
        if route is None:
            return 404, "text/plain", "not found\n"
        try:
            result = route(request)
            return await result if inspect.isawaitable(result) else result
        except Exception as e:
            return self._failed(f"{request.method} {request.path[:200]}", e)

    def _failed(self, what: str, e: Exception) -> tuple[int, str, bytes]:
        self.errors.warning("http: %s: %r", what, e)
        return 500, "text/plain", f"internal error ({type(e).__name__}), logged\n".encode()

    async def _send(
        self, writer: asyncio.StreamWriter, reply: Outgoing, head_only: bool, http10: bool
    ) -> None:
        """The reply, all of it within bodyTimeout (the parts' making included). A body of parts
        goes out as it is made: chunked, or to an HTTP/1.0 client (which knows no chunks) as
        plain bytes ended by the close, so no client can make the daemon hold an answer whole
        while it reads slowly; HEAD gets the whole answer's Content-Length (its parts are made
        and counted, not kept). A part that fails before anything is sent makes the answer a 500."""
        status, ctype, body = reply
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                whole = isinstance(body, str | bytes)
                if isinstance(body, str | bytes):
                    data = body if isinstance(body, bytes) else body.encode()
                    length = len(data)
                else:
                    try:
                        data = await anext(body, b"")
                        if head_only:
                            whole, length = True, len(data) + sum([len(part) async for part in body])
                    except Exception as e:
                        status, ctype, data = self._failed("the first part of an answer", e)
                        whole, length = True, len(data)
                head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {ctype}\r\n"
                self.replies[status] += 1
                if whole:
                    writer.write(f"{head}Content-Length: {length}\r\nConnection: close\r\n\r\n".encode())
                    if not head_only:
                        writer.write(data)
                    await writer.drain()
                    return
                assert not isinstance(body, str | bytes)
                if http10:
                    writer.write(f"{head}Connection: close\r\n\r\n".encode())
                    await self._parts(writer, data, body, chunked=False)
                else:
                    writer.write(f"{head}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode())
                    if await self._parts(writer, data, body, chunked=True):
                        writer.write(b"0\r\n\r\n")
                        await writer.drain()
        except (TimeoutError, ConnectionError):
            if not isinstance(body, str | bytes):
                self.counts["cut"] += 1
            raise
        finally:
            if not isinstance(body, str | bytes):
                await body.aclose()

    async def _parts(
        self,
        writer: asyncio.StreamWriter,
        first: bytes,
        rest: AsyncGenerator[bytes, None],
        chunked: bool = False,
    ) -> bool:
        """Each part as it comes (as a chunk if `chunked`); whether they all came. A part that
        fails ends the answer there: chunked, the missing last chunk tells the client so."""
        part = first
        while part:
            writer.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
            await writer.drain()
            try:
                part = await anext(rest, b"")
            except Exception as e:
                self.counts["cut"] += 1
                self.errors.warning("http: a part of an answer begun failed, the answer is cut: %r", e)
                return False
        return True


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


@dataclass(frozen=True)
class _Job:
    work: Callable[[], object]
    done: asyncio.Future  # settled with what `work` returns or raises, on `loop`
    loop: asyncio.AbstractEventLoop
    render: bool  # counted in `pending` (a part of an answer begun is not)


PARTS, RENDERS, END = range(3)  # the order the threads take jobs in: an answer begun goes first


class Workers:
    """A few daemon threads for the routes too heavy for the event loop (Graphite's).

    Not asyncio's default executor: Python joins its threads at exit, and shutdown and /metrics
    use it, so one endless render there held the daemon past SIGTERM. At most `threads` jobs run
    and WAITING more wait; past them a 503 at once. A job that outlives its timeout is
    abandoned: the client gets a 504, and `stop()` tells the job, which has to notice (a thread
    cannot be killed).

    An answer of parts (Answer) is made here too, a part per job, each taken before any render
    waiting (an answer begun is not held up behind new work) and one part ahead of the sending,
    so a thread is busy while a part is made, never while a slow client reads."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.pending = 0  # renders running or waiting; changed on the event loop only
        self.jobs: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self.order = itertools.count()  # first come, first served within a rank
        self.closed = False
        for i in range(threads):
            threading.Thread(target=self._work, name=f"webops-render-{i}", daemon=True).start()

    def _put(self, rank: int, job: _Job | None) -> None:
        self.jobs.put((rank, next(self.order), job))

    async def run(self, job: Callable[[], Answer], timeout: float, stop: Callable[[], None]) -> Outgoing:
        if self.pending >= self.threads + WAITING:
            return (
                503,
                "text/plain",
                f"busy: {self.pending} renders running or waiting (http.renderThreads is {self.threads}); "
                "try again\n",
            )
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Answer] = loop.create_future()
        self.pending += 1
        self._put(RENDERS, _Job(job, done, loop, render=True))
        try:
            status, content_type, body = await asyncio.wait_for(done, timeout)
        except TimeoutError:  # seen here, or by the job itself (functions.Expired)
            return 504, "text/plain", f"render abandoned after {timeout:g} s (http.renderTimeout)\n"
        finally:
            stop()  # answered, timed out or cancelled (shutdown): the job stops at its next check
        return status, content_type, body if isinstance(body, str | bytes) else self.parts(body)

    async def parts(self, made: Iterator[str]) -> AsyncGenerator[bytes, None]:
        """`made`'s text in parts of about PART bytes, each made in a thread, the next one while
        this one is sent."""
        loop = asyncio.get_running_loop()

        def part() -> bytes:
            out, size = [], 0
            for text in made:
                out.append(data := text.encode())
                size += len(data)
                if size >= PART:
                    break
            return b"".join(out)

        def make() -> asyncio.Future[bytes]:
            if self.closed:  # replaced (a reload): its threads end, the answer does not
                return asyncio.ensure_future(asyncio.to_thread(part))
            ahead: asyncio.Future[bytes] = loop.create_future()
            self._put(PARTS, _Job(part, ahead, loop, render=False))
            return ahead

        ahead = make()
        try:
            while data := await ahead:
                ahead = make()
                yield data
        finally:
            ahead.cancel()  # the part being made when the sending stopped: nobody takes it

    def close(self) -> None:
        """The threads end after the jobs already queued (a reload that changes their number)."""
        self.closed = True
        for _ in range(self.threads):
            self._put(END, None)

    def _work(self) -> None:
        while (job := self.jobs.get()[2]) is not None:
            try:
                outcome: tuple[object, Exception | None] = (job.work(), None)
            except Exception as e:  # handed to the route that waits, as asyncio.to_thread does
                outcome = (None, e)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                job.loop.call_soon_threadsafe(self._settle, job, *outcome)

    def _settle(self, job: _Job, result: object, error: Exception | None) -> None:
        if job.render:
            self.pending -= 1
        if job.done.done():  # abandoned
            return
        if error is not None:
            job.done.set_exception(error)
        else:
            job.done.set_result(result)
