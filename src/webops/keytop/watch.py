"""memcached's own key stream (`watch fetchers mutations`, memcached >= 1.5): no root, no sniffing.

Lines look like `ts=... gid=4 type=item_get key=foo status=found clsid=1 cfd=25 size=3`. memcached
logs an internal fetch before every store (`set` shows as item_get + item_store, same key, same
connection), so a fetch is held back until the next event of its connection tells which it was.
Deletes, touches and incr/decr only show as fetches: they count as calls (with their hit/miss).
Keys are %-escaped by memcached where they hold non-printable bytes; they are shown as sent.

memcached drops log entries when they come faster than it (or keytop) can pass them on: in the
worker threads' log buffers and in the watcher's. Its `stats` count both (`log_worker_dropped`,
`log_watcher_skipped`); `lost_entries` reads them, so a burst that was not fully seen is said.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import unquote

from .events import Event

WATCH_COMMAND = b"watch fetchers mutations\r\n"


def parse_line(line: str) -> dict[str, str] | None:
    """The key=value fields of one watch line; None for anything else (OK, banners)."""
    if not line.startswith("ts="):
        return None
    fields = {}
    for part in line.split(" "):
        k, sep, v = part.partition("=")
        if sep:
            fields[k] = v
    return fields if "type" in fields and "key" in fields else None


class WatchDecoder:
    """Turns watch lines into events, pairing each store with the fetch memcached logged before it."""

    def __init__(self, server: str = "") -> None:
        self.server = server
        self.pending: dict[str, tuple[float, dict[str, str]]] = {}  # per connection (cfd)

    def feed(self, line: str, now: float | None = None) -> list[Event]:
        fields = parse_line(line.rstrip("\r\n"))
        if fields is None:
            return []
        cfd = fields.get("cfd", "")
        out = []
        held = self.pending.pop(cfd, None)
        kind = fields["type"]
        if kind == "item_store":
            if held is not None and held[1]["key"] != fields["key"]:
                out.append(self._fetch(held[1]))
            if fields.get("status") == "stored":
                out.append(
                    Event(_key(fields), set=True, written=_int(fields.get("size")), server=self.server)
                )
            else:  # NOT_STORED / EXISTS / NOT_FOUND: still a call on the key
                out.append(Event(_key(fields), server=self.server))
            return out
        if held is not None:
            out.append(self._fetch(held[1]))
        if kind == "item_get":
            self.pending[cfd] = (time.monotonic() if now is None else now, fields)
        return out

    def expire(self, older_than: float = 0.2, now: float | None = None) -> list[Event]:
        """Fetches no store followed within `older_than` seconds: they were real fetches."""
        now = time.monotonic() if now is None else now
        done = [cfd for cfd, (t, _) in self.pending.items() if now - t >= older_than]
        return [self._fetch(self.pending.pop(cfd)[1]) for cfd in done]

    def _fetch(self, fields: dict[str, str]) -> Event:
        if fields.get("status") == "found":
            return Event(_key(fields), hit=True, read=_int(fields.get("size")), server=self.server)
        return Event(_key(fields), miss=True, server=self.server)


def _key(fields: dict[str, str]) -> str:
    return unquote(fields["key"], errors="replace")


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _address(server: str) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--server {server!r}: expected host:port")
    return host.strip("[]"), int(port)


def _ask(sock: socket.socket, command: bytes, end: bytes, chunk_size: int = 65536) -> bytes:
    """Send a command; read until the reply ends with `end` (or the connection closes)."""
    sock.sendall(command)
    reply = b""
    while not reply.endswith(end):
        chunk = sock.recv(chunk_size)
        if not chunk:
            break
        reply += chunk
    return reply


def lost_entries(server: str, timeout: float = 5.0) -> int:
    """Log entries memcached has dropped since it started (worker buffers and watchers)."""
    with socket.create_connection(_address(server), timeout=timeout) as sock:
        data = _ask(sock, b"stats\r\n", b"END\r\n")
    stats = dict(
        line.split(" ", 2)[1:] for line in data.decode(errors="replace").splitlines() if line.count(" ") >= 2
    )
    return _int(stats.get("log_worker_dropped")) + _int(stats.get("log_watcher_skipped"))


def connect(server: str, timeout: float = 5.0) -> socket.socket:
    """Open a watch connection to host:port and check memcached accepted the command."""
    sock = socket.create_connection(_address(server), timeout=timeout)
    reply = _ask(sock, WATCH_COMMAND, b"\r\n", 64)  # small reads: the log stream follows the OK
    if not reply.startswith(b"OK"):
        sock.close()
        raise ConnectionError(
            f"{server}: memcached refused 'watch' ({reply.strip().decode(errors='replace')});"
            " it needs memcached >= 1.5"
        )
    sock.settimeout(None)
    return sock
