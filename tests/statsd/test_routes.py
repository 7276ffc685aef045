"""The HTTP route table: the daemon's own paths, and those the running backends offer
(Backend.routes), without a daemon process."""

from __future__ import annotations

import asyncio
import inspect
from typing import ClassVar

import pytest

from webops.statsd import settings as statsd_config
from webops.statsd.backends import base
from webops.statsd.backends.store import NO_STORE
from webops.statsd.http import Reply, Request, Route
from webops.statsd.routes import HttpRoutes


class Echo(base.Backend):
    """A backend offering a path, registered for these tests only."""

    name = "echo"
    PATHS: ClassVar[dict[str, str]] = {"/echo": "no echo: add it to backends\n", "/health": "never\n"}

    def __init__(self, config, startup_time: float, word: str = "hello") -> None:
        super().__init__(config, startup_time)
        self.word = word

    def flush(self, snapshot) -> None:
        pass

    def routes(self, offload: base.Offload) -> dict[str, Route]:
        async def echo(request: Request) -> Reply:
            said = request.get("say", self.word)
            # the heavy part in a render thread, with the http.render* budget
            return await offload(lambda budget: (200, "text/plain", f"{said} {budget.max_series}\n"))

        return {"/echo": echo, "/health": lambda request: (200, "text/plain", "not the daemon's\n")}


class Source:
    """All HttpRoutes reads of the daemon here."""

    def __init__(self) -> None:
        self.config = statsd_config.build({"http": {"renderMaxSeries": 7}})

    def health_state(self) -> str:
        return "up"


@pytest.fixture
def echo_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.REGISTRY, Echo.name, Echo)


async def get(routes: HttpRoutes, path: str) -> bytes:
    """`path` asked of the endpoint over a real connection."""
    server = await routes.endpoint.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(f"GET {path} HTTP/1.1\r\n\r\n".encode())
        reply = await reader.read()
        writer.close()
        return reply
    finally:
        server.close()


def test_a_running_backend_answers_its_paths_and_its_kind_says_what_to_configure(echo_registered) -> None:
    async def run() -> list[bytes]:
        routes = HttpRoutes(Source())  # type: ignore[arg-type]
        routes.apply_limits(routes.daemon.config)  # the render threads
        replies = [await get(routes, "/echo"), await get(routes, "/render")]
        config = routes.daemon.config
        routes.serve([Echo(config, 0, "first"), Echo(config, 0, "second")])
        replies += [
            await get(routes, "/echo?say=hi"),
            await get(routes, "/echo"),
            await get(routes, "/health"),
        ]
        routes.serve([])  # a reload without it
        replies.append(await get(routes, "/echo"))
        routes.close()
        return replies

    before, no_store, hi, first, health, after = asyncio.run(run())
    assert before.startswith(b"HTTP/1.1 404 ") and before.endswith(b"\r\n\r\nno echo: add it to backends\n")
    assert no_store.startswith(b"HTTP/1.1 404 ") and no_store.endswith(NO_STORE.encode())
    assert hi.startswith(b"HTTP/1.1 200 ") and hi.endswith(b"\r\n\r\nhi 7\n")
    assert first.endswith(b"\r\n\r\nfirst 7\n")  # two offering one path: the first in `backends`
    assert health.endswith(b"\r\n\r\nhealth: up\n")  # the daemon's own paths are its own
    assert after.startswith(b"HTTP/1.1 404 ")


def test_the_store_answers_its_paths_itself_503_while_history_is_off() -> None:
    from webops.statsd.backends.store import StoreBackend

    store = StoreBackend.__new__(StoreBackend)  # no file opened: history is off
    store.store, store.cause = None, "cannot open /nowhere/store.sqlite: read-only"

    async def offload(job):
        raise AssertionError("nothing to render while history is off")

    routes = store.routes(offload)
    reads = {"/render", "/metrics/find", "/metrics/expand", "/metrics/index.json", "/tags"}
    reads |= {"/tags/autoComplete/tags", "/tags/autoComplete/values", "/tags/findSeries"}
    assert (
        set(routes) == set(StoreBackend.PATHS) >= reads | {p + "/" for p in reads} | {"/functions", "/tags"}
    )
    for path, route in routes.items():
        reply = route(Request("GET", path, {"query": ["*"]}))
        reply = asyncio.run(reply) if inspect.isawaitable(reply) else reply  # type: ignore[arg-type]
        if path.rstrip("/") in reads:  # what reads the store says why it cannot
            assert reply == (503, "text/plain", f"history is off: {store.cause}\n"), path
        else:  # /functions, /version...: nothing to read, answered as ever
            assert reply[0] in (200, 400) and reply[2], path
