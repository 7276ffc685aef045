"""A small HTTP endpoint beside the console: GET /health for load balancers and orchestrators,
GET /metrics for Prometheus, and Graphite's /metrics/find and /render on the store. Plain
asyncio: a few fixed routes with query strings and form bodies do not justify a web framework."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from ..common.aio import close_writer

log = logging.getLogger("webops.statsd")

Reply = tuple[int, str, str]  # (status, content type, body)
MAX_CONNECTIONS = 100  # past it a new connection is closed at once; each gets 10 s to send its request
MAX_BODY = 1 << 20  # a POSTed form (Grafana posts its render requests): 1 MiB is thousands of targets
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    503: "Service Unavailable",
}


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, list[str]] = field(default_factory=dict)  # the query string and a form body

    def get(self, name: str, default: str = "") -> str:
        return self.params.get(name, [default])[-1]


Route = Callable[[Request], "Reply | Awaitable[Reply]"]


async def _read(reader: asyncio.StreamReader) -> Request | Reply:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    target = rest.split(" ", 1)[0]
    path, _, query = target.partition("?")
    request = Request(method, path, parse_qs(query))
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    if method == "POST":
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return 400, "text/plain", "bad Content-Length\n"
        if length > MAX_BODY:
            return 413, "text/plain", f"a body is at most {MAX_BODY} bytes\n"
        body = await asyncio.wait_for(reader.readexactly(length), timeout=10)
        if "application/x-www-form-urlencoded" in headers.get("content-type", ""):
            for k, v in parse_qs(body.decode("utf-8", "replace")).items():
                request.params.setdefault(k, []).extend(v)
    return request


async def serve(routes: dict[str, Route], host: str, port: int) -> asyncio.Server:
    open_now = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now
        if open_now >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        open_now += 1
        try:
            request = await _read(reader)
            method = request.method if isinstance(request, Request) else "GET"
            if not isinstance(request, Request):
                status, ctype, body = request
            elif request.path not in routes:
                status, ctype, body = 404, "text/plain", "not found\n"
            elif method not in ("GET", "HEAD", "POST"):
                status, ctype, body = 405, "text/plain", "GET, HEAD or POST\n"
            else:
                result = routes[request.path](request)
                status, ctype, body = await result if inspect.isawaitable(result) else result
            data = body.encode()
            head = (
                f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else data))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError) as e:
            log.debug("http: %s", e)
        finally:
            open_now -= 1
            await close_writer(writer)

    return await asyncio.start_server(handle, host, port)
