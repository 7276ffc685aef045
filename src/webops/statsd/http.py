"""A small HTTP endpoint beside the console: GET /health for load balancers and orchestrators,
GET /metrics for Prometheus. Plain asyncio: two fixed routes do not justify a web framework."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

from ..common.aio import close_writer

log = logging.getLogger("webops.statsd")

Reply = tuple[int, str, str]  # (status, content type, body)
Route = Callable[[], "Reply | Awaitable[Reply]"]
MAX_CONNECTIONS = 100  # past it a new connection is closed at once; each gets 10 s to send its request
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


async def serve(routes: dict[str, Route], host: str, port: int) -> asyncio.Server:
    open_now = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now
        if open_now >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        open_now += 1
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, _, rest = request.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if path not in routes:
                status, ctype, body = 404, "text/plain", "not found\n"
            elif method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", "GET only\n"
            else:
                result = routes[path]()
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
