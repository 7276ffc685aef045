"""The management console (TCP 8126): Etsy's commands and reply layout, line by line.

`Console.execute` is pure request -> reply text so scripts' expectations can be tested without a
socket; `serve` puts it on a socket, with a cap on connections (`mgmtMaxConnections`: past it the
connection quiet the longest is closed to make room) and an idle timeout (`mgmtIdleTimeout`
seconds without a command), so idle or abandoned connections can neither use up the daemon's file
descriptors nor lock an operator out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..common.ratelimit import RateLimitedLog
from .backends.console import LIVE, as_held
from .jsfmt import inspect
from .kinds import BY_TABLE

if TYPE_CHECKING:
    from .aggregate import Aggregator
    from .config import StatsdConfig


class ConsoleSource(Protocol):
    """All the console sees of the daemon (the daemon is one; a test can pass its own)."""

    startup_time: float
    health: str  # what `health up|down` sets
    aggregator: Aggregator  # the tables, del*, totals
    hot_path: str  # native or python: which hot path reads UDP (hotpath.py)

    @property
    def config(self) -> StatsdConfig: ...  # read-only: the daemon holds a settings.Config

    def health_state(self) -> str: ...

    def backend_status(self) -> list[tuple[str, dict[str, float]]]: ...

    def kernel_drops(self) -> int: ...


log = logging.getLogger("webops.statsd")

# A line no console client sends but every HTTP request starts with (its request line) or carries
# (a Host header). A web page in an operator's browser can POST to 127.0.0.1:8126; its body would
# otherwise run as commands (`health down`, `delcounters *`): the classic cross-protocol request,
# refused the way Redis refuses it, by closing the connection before anything runs.
HTTP_LINE = re.compile(r"[A-Z]+ \S+ HTTP/\d|(?i:host:)|(?:GET|POST|PUT|HEAD|OPTIONS|DELETE|PATCH) /")

_TABLES = ", ".join(BY_TABLE)
HELP = f"Commands: stats, {_TABLES}, {', '.join('del' + t for t in BY_TABLE)}, health, config, quit\n\n"


def js_string(value: object) -> str:
    """String(value) in JavaScript, which is how Etsy's `config` command prints values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "undefined"
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, float):
        return inspect(value)
    return str(value)


class Console:
    def __init__(
        self,
        daemon: ConsoleSource,
        clock: Callable[[], float] = time.time,
        limits: tuple[int, float] = (100, 60.0),
    ) -> None:
        self.daemon = daemon
        self.clock = clock
        self.limits = limits  # (max connections, idle timeout in seconds; 0: none)
        # open connections, by when each last sent a command: at the cap the quietest one makes
        # room, so an operator's new session gets in however many idle ones a local user holds
        self.open: dict[asyncio.StreamWriter, float] = {}
        self.evicted = 0
        self.http_refused = 0  # connections closed because they spoke HTTP (HTTP_LINE)
        self.errors = RateLimitedLog(log, "console connection messages")

    def execute(self, line: str) -> tuple[str, bool]:
        """Reply to one command line; the flag says whether to close the connection."""
        if HTTP_LINE.match(line):
            self.http_refused += 1
            self.errors.warning(
                "MGMT: closing a connection that sent HTTP (%r): a browser or a proxy, not a console "
                "client; nothing it sent was run",
                line[:80],
            )
            return "", True
        cmd, *args = line.strip().split(" ")
        args = [a for a in args if a]
        d = self.daemon
        agg = d.aggregator
        if cmd == "help":
            return HELP, False
        if cmd == "quit":
            return "", True
        if cmd == "health":
            if args and args[0].lower() in ("up", "down"):
                d.health = args[0].lower()
            return f"health: {d.health_state()}\n", False
        if cmd == "config":
            return self._config(), False
        if cmd == "stats":
            return self._stats(), False
        if cmd in BY_TABLE:
            return inspect(LIVE.get(cmd, as_held)(agg.table(cmd))) + "\nEND\n\n", False
        if cmd.startswith("del") and cmd[3:] in BY_TABLE:
            out = []
            for pattern, deleted in agg.delete(cmd[3:], args):
                if not deleted:
                    out.append(f"metric {pattern} not found\n")
                out.extend(f"deleted: {k}\n" for k in deleted)
            return "".join(out) + "END\n\n", False
        return "ERROR\n", False

    def _stats(self) -> str:
        d = self.daemon
        now = round(self.clock())
        totals = d.aggregator.totals
        lines = [f"uptime: {now - round(d.startup_time)}"]

        def stat(group: str, metric: str, value: float) -> None:
            shown = now - value if metric.startswith("last_") else value
            lines.append(f"{group}.{metric}: {inspect(shown)}")

        stat("messages", "last_msg_seen", round(totals.last_msg_seen or d.startup_time))
        stat("messages", "bad_lines_seen", totals.bad_lines_seen)
        # webops addition: totals since start, which Etsy only exposes per interval in `counters`.
        prefix = d.config["prefixStats"]
        stat(prefix, "packets_received", totals.packets_received)
        stat(prefix, "metrics_received", totals.metrics_received)
        stat(prefix, "bad_lines_seen", totals.bad_lines_seen)
        stat(prefix, "metrics_refused", totals.metrics_refused)
        stat(prefix, "set_members_refused", totals.set_members_refused)
        stat(prefix, "events_seen", totals.events_seen)
        stat(prefix, "lines_shed", totals.lines_shed)  # slow-lane lines past its limit
        stat(prefix, "series", d.aggregator.series_count())
        stat(prefix, "udp_kernel_drops", d.kernel_drops())  # the kernel's: intake was behind
        stat(prefix, "console_http_refused", self.http_refused)
        stat(prefix, "console_evicted", self.evicted)  # quiet connections closed at mgmtMaxConnections
        lines.append(f"hot_path: {d.hot_path}")
        for name, status in d.backend_status():
            for metric, value in status.items():
                stat(name, metric, value)
        return "\n".join(lines) + "\nEND\n\n"

    def _config(self) -> str:
        out = ["\n"]
        for prop, value in self.daemon.config.raw.items():
            if isinstance(value, dict | list) and value:
                items = value.items() if isinstance(value, dict) else enumerate(value)
                out.extend(f"{prop} > {sub}: {js_string(v)}\n" for sub, v in items)
            elif not isinstance(value, dict | list):
                out.append(f"{prop}: {js_string(value)}\n")
        return "".join(out)


async def serve(console: Console, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        most, idle = console.limits
        if len(console.open) >= most:
            quietest = min(console.open, key=console.open.__getitem__)
            console.open.pop(quietest)
            quietest.transport.abort()
            console.evicted += 1
            console.errors.warning(
                "MGMT: %d connections open (mgmtMaxConnections): closing the one quiet the longest", most
            )
        console.open[writer] = time.monotonic()
        try:
            # As Etsy's console, a command needs no newline: each chunk read is handled at once,
            # one command per line in it (`printf stats | nc` works).
            while chunk := await asyncio.wait_for(reader.read(65536), idle or None):
                close = False
                console.open[writer] = time.monotonic()
                for line in chunk.decode("ascii", "replace").splitlines():
                    if not line.strip():
                        continue
                    reply, close = console.execute(line)
                    if reply:
                        writer.write(reply.encode())
                        await writer.drain()
                    if close:
                        break
                if close:
                    break
        except TimeoutError:
            pass  # idle for mgmtIdleTimeout seconds
        except asyncio.CancelledError:
            pass  # shutdown: asyncio would report a cancelled handler as an unhandled exception
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as e:
            console.errors.warning("MGMT: caught %s, moving on", e)
        finally:
            console.open.pop(writer, None)
            writer.close()
            with contextlib.suppress(ConnectionError):  # a peer that already went away
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
