"""Where packets come in: UDP, newline-delimited TCP and unix stream sockets.

Sockets are read directly from the event loop's readiness callbacks (not asyncio transports):
one wake-up reads what is already queued, which is what keeps loss low under load, and on
shutdown the same read loop drains what the kernel still holds before the socket closes.

Every read is bounded (a UDP wake-up reads at most 2,000 datagrams, a TCP wake-up at most
`STREAM_SLICES` x 64 KiB of one connection, handed over line by line as it comes), so one fast
client cannot starve the others, the console or the flush timer. Stream listeners cap their
connections and close idle ones; running out of file descriptors pauses accepting for a moment
instead of spinning, and every such error is logged at a bounded rate.

Sockets can come from systemd socket activation (`LISTEN_FDS`): they are bound before the daemon
starts and stay bound across restarts, so nothing sent meanwhile is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..common.ratelimit import RateLimitedLog
from .systemd import sock_key, take_activated
from .validate import Key, boolean, check_section, file_mode, number, port, string

log = logging.getLogger("webops.statsd")

MAX_PACKET = 65536
MAX_LINE = 65536
STREAM_SLICES = 16  # 64 KiB reads of one connection per wake-up: 1 MiB, then the others get a turn
ACCEPT_PAUSE = 0.5  # seconds accepting waits after running out of file descriptors
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)
_rcvbuf_warned = False

OnData = Callable[[list[bytes]], None]  # datagrams (or TCP chunks of whole lines)


@dataclass(frozen=True)
class Listener:
    """One configured listener: `kind` is a SERVERS name, or "unix" (a stream server on a path)."""

    kind: str
    address: str
    port: int
    path: str | None = None
    mode: int | None = None
    rcvbuf: int = 0

    @property
    def server(self) -> Server:
        return SERVERS["tcp" if self.kind == "unix" else self.kind]


def set_rcvbuf(sock: socket.socket, wanted: int) -> int:
    """Ask for `wanted` bytes of receive buffer; warn once if the kernel caps it. Returns what we got."""
    global _rcvbuf_warned
    if not wanted:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if SO_RCVBUFFORCE is not None and os.geteuid() == 0:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, wanted)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < wanted:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux reports double
    if got < wanted and not _rcvbuf_warned:
        _rcvbuf_warned = True
        log.warning(
            "UDP SO_RCVBUF is %d bytes, not the %d asked for: the kernel caps it at net.core.rmem_max; "
            "lift the cap with: sysctl -w net.core.rmem_max=%d",
            got,
            wanted,
            wanted,
        )
    return got


def kernel_drops(socks: list[socket.socket]) -> int:
    """Datagrams the kernel dropped at these UDP sockets since they were bound (their receive
    buffer was full: the daemon was behind): the `drops` column of /proc/net/udp and udp6, found
    by the sockets' inodes. 0 where /proc does not say."""
    inodes = set()
    for sock in socks:
        with contextlib.suppress(OSError, ValueError):
            inodes.add(os.fstat(sock.fileno()).st_ino)
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 12 and int(fields[9]) in inodes:
                        total += int(fields[12])
        except OSError:
            continue
    return total


def spec_key(spec: Listener) -> tuple:
    """What a listener is bound to, whatever its options (rcvbuf, socket mode)."""
    if spec.kind == "unix":
        assert spec.path
        return sock_key("unix", spec.path)
    return sock_key(spec.kind, (spec.address, spec.port))


# --- binding ------------------------------------------------------------------------------


def bind_udp(spec: Listener) -> socket.socket:
    """A bound, non-blocking UDP socket with the receive buffer asked for."""
    sock = take_activated(spec_key(spec))
    if sock is None:
        family = socket.AF_INET6 if ":" in spec.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            set_rcvbuf(sock, spec.rcvbuf)
            sock.bind((spec.address, spec.port))
        except OSError:
            sock.close()
            raise
    else:
        set_rcvbuf(sock, spec.rcvbuf)
    sock.setblocking(False)
    return sock


def bind_unix(path: str, mode: int) -> socket.socket:
    """A unix stream socket at `path` with `mode` from the moment it appears there: it is bound
    in a private directory, chmod-ed, then renamed into place (no umask, no window)."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        os.unlink(path)  # left by a previous run; never remove a non-socket file
    private = tempfile.mkdtemp(prefix=".statsd-", dir=os.path.dirname(os.path.abspath(path)))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        staged = os.path.join(private, "s")
        sock.bind(staged)
        os.chmod(staged, mode)
        os.rename(staged, path)
    except OSError:
        sock.close()
        raise
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(private)
    return sock


def bind_stream(spec: Listener) -> socket.socket:
    sock = take_activated(spec_key(spec))
    if sock is not None:
        pass
    elif spec.kind == "unix":
        assert spec.path
        sock = bind_unix(spec.path, 0o600 if spec.mode is None else spec.mode)
    else:
        family = socket.AF_INET6 if ":" in spec.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((spec.address, spec.port))
        except OSError:
            sock.close()
            raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


# --- reading ------------------------------------------------------------------------------


def printable(text: str) -> str:
    """`text` with control characters escaped (\\n, \\x1b...): what a packet says must never move
    a terminal's cursor, ring its bell or start a new log line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def dump_packets(packets: list[bytes]) -> None:
    """Etsy's dumpMessages: log every packet as received (escaped: one packet, one log line)."""
    for data in packets:
        log.info("%s", printable(data.decode("utf-8", "replace").rstrip("\n")))


def recv_many(sock: socket.socket, limit: int, max_bytes: int = 1 << 62) -> list[bytes]:
    """The datagrams already queued on a non-blocking socket, up to `limit` of them and about
    `max_bytes` (one datagram more at most)."""
    recv = sock.recv
    got: list[bytes] = []
    append = got.append
    size = 0
    for _ in range(limit):
        try:
            append(data := recv(MAX_PACKET))
        except (BlockingIOError, InterruptedError):
            break
        except OSError as e:  # e.g. ICMP errors reported on the socket: never fatal
            log.debug("udp recv: %s", e)
            break
        size += len(data)
        if size >= max_bytes:
            break
    return got


class UdpListener:
    """UDP read by the event loop itself (`readers: 0`); see readers.py for reader processes."""

    def __init__(self, spec: Listener, sock: socket.socket, on_data: OnData) -> None:
        self.spec, self.sock, self.on_data = spec, sock, on_data
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self.read)

    def read(self) -> None:
        # bounded, so one flood cannot starve the console and the flush timer
        if got := recv_many(self.sock, 2000):
            self.on_data(got)

    def drain(self) -> None:
        self.stop_reading()
        if got := recv_many(self.sock, 1_000_000):
            self.on_data(got)

    def stop_reading(self) -> None:
        """Leave the socket bound (the daemon owns it), stop reading it here."""
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.sock.fileno())

    def close(self) -> None:
        self.stop_reading()


class StreamListener:
    """TCP (or unix socket) connections carrying newline-separated lines, as Etsy's servers/tcp."""

    def __init__(
        self, spec: Listener, sock: socket.socket, on_data: OnData, max_conns: int, idle_timeout: float
    ) -> None:
        self.spec, self.sock, self.on_data = spec, sock, on_data
        self.max_conns, self.idle_timeout = max_conns, idle_timeout
        self.conns: dict[int, tuple[socket.socket, bytearray]] = {}
        self.last_seen: dict[int, float] = {}
        self.refused = 0  # connections closed at once: the cap was reached
        self.timed_out = 0  # connections closed for idling
        self.errors = RateLimitedLog(log, f"connection messages on {describe(spec)}")
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self.accept)
        self.sweeper = self.loop.call_later(self._sweep_every(), self._sweep) if idle_timeout else None

    def _sweep_every(self) -> float:
        return max(0.05, min(self.idle_timeout / 4, 5.0))

    def accept(self) -> None:
        for _ in range(64):  # bounded: a connection storm must not hold the loop
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: pause accepting, keep serving the others
                self.errors.warning(
                    "accept on %s: %s; pausing for %.1f s", describe(self.spec), e, ACCEPT_PAUSE
                )
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(ACCEPT_PAUSE, self._resume_accepting)
                return
            if len(self.conns) >= self.max_conns:
                self.refused += 1
                self.errors.warning(
                    "%s: %d connections open (the limit): closing a new one",
                    describe(self.spec),
                    self.max_conns,
                )
                conn.close()
                continue
            conn.setblocking(False)
            fd = conn.fileno()
            self.conns[fd] = (conn, bytearray())
            self.last_seen[fd] = time.monotonic()
            self.loop.add_reader(fd, self.read, fd)

    def _resume_accepting(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            if self.sock.fileno() >= 0:
                self.loop.add_reader(self.sock.fileno(), self.accept)

    def read(self, fd: int, slices: int = STREAM_SLICES) -> None:
        conn, buf = self.conns[fd]
        self.last_seen[fd] = time.monotonic()
        for _ in range(slices):
            try:
                chunk = conn.recv(MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._close_conn(fd, flush_partial=True)
                return
            buf += chunk
            end = buf.rfind(b"\n")
            if end >= 0:
                data = bytes(buf[: end + 1])
                del buf[: end + 1]  # before parsing: whatever happens there, no line is counted twice
                self.on_data([data])
            if len(buf) > MAX_LINE:  # a "line" this long is garbage: hand it over so it counts as bad
                data = bytes(buf)
                buf.clear()
                self.on_data([data])

    def _sweep(self) -> None:
        """Close connections that sent nothing for idle_timeout seconds (a client that went away
        without closing, or one holding descriptors on purpose)."""
        cutoff = time.monotonic() - self.idle_timeout
        for fd in [fd for fd, seen in self.last_seen.items() if seen < cutoff]:
            self.timed_out += 1
            self._close_conn(fd, flush_partial=True)
        self.sweeper = self.loop.call_later(self._sweep_every(), self._sweep)

    def _close_conn(self, fd: int, flush_partial: bool) -> None:
        conn, buf = self.conns.pop(fd)
        self.last_seen.pop(fd, None)
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(fd)
        conn.close()
        if flush_partial and buf:
            self.on_data([bytes(buf)])  # a last line without its newline still counts

    def drain(self) -> None:
        """Stop accepting; read what every open connection has already sent, then close it."""
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.sock.fileno())
        for fd in list(self.conns):
            if fd in self.conns:
                self.read(fd, slices=10**6)
            if fd in self.conns:
                self._close_conn(fd, flush_partial=True)

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
        for fd in list(self.conns):
            self._close_conn(fd, flush_partial=False)
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if self.spec.kind == "unix" and self.spec.path:
            with contextlib.suppress(OSError):
                os.unlink(self.spec.path)


def describe(spec: Listener) -> str:
    if spec.kind == "unix":
        return f"unix:{spec.path}"
    host = f"[{spec.address}]" if ":" in spec.address else spec.address
    return f"{spec.kind}://{host}:{spec.port}"


@dataclass(frozen=True)
class Server:
    """What an Etsy `server` module (./servers/NAME) is here: how it binds, and whether what comes
    in is datagrams (read by reader processes, or UdpListener) or a stream (StreamListener)."""

    bind: Callable[[Listener], socket.socket]
    datagram: bool


# A new kind of listener is one entry here (and its bind function).
SERVERS: dict[str, Server] = {
    "udp": Server(bind_udp, datagram=True),
    "tcp": Server(bind_stream, datagram=False),
}


def server_name(module: str) -> str:
    """`./servers/udp`, `servers/udp.js`, `udp` -> `udp`."""
    return module.rstrip("/").rsplit("/", 1)[-1].removesuffix(".js")


# --- the listeners' config keys, and the listeners a config asks for --------------------------


def _server(v: Any) -> str:
    """Etsy's `server` module path: ./servers/udp or ./servers/tcp (a typo must not become UDP)."""
    if server_name(string(v)) not in SERVERS:
        raise ValueError(f"expected one of {', '.join(f'./servers/{n}' for n in SERVERS)}, got {v!r}")
    return v


def _servers(v: Any) -> list[dict]:
    if not isinstance(v, list) or not all(isinstance(s, dict) for s in v):
        raise ValueError(f"expected a list of server objects, got {v!r}")
    out = []
    for i, s in enumerate(v):
        try:
            out.append(check_section(s, SERVER_KEYS))
        except ValueError as e:
            raise ValueError(f"servers[{i}]: {e}") from None
    return out


# name: (default, validator, description). Defaults of None mean "unset".
SERVER_KEYS: dict[str, Key] = {
    "server": Key("./servers/udp", _server, "./servers/udp or ./servers/tcp"),
    "address": Key(None, string, "address to listen on"),
    "address_ipv6": Key(False, boolean, "listen on IPv6"),
    "port": Key(8125, port, "port to listen on"),
    "socket": Key(None, string, "TCP server only: a unix stream socket path instead of a port"),
    "socket_mod": Key(None, file_mode, 'permissions of the unix socket (0o660 or "0660")'),
    "rcvbuf": Key(8 * 1024 * 1024, number(0, integer=True), "UDP SO_RCVBUF in bytes"),
}

# The top-level keys that need SERVERS to be checked (config.py has the others: address, port...).
CONFIG_KEYS: dict[str, Key] = {
    "server": Key("./servers/udp", _server, "./servers/udp or ./servers/tcp, when servers is not set"),
    "servers": Key(
        None,
        _servers,
        "list of listeners: {server, address, address_ipv6, port, socket, socket_mod}",
    ),
}


def configured(raw: dict[str, Any]) -> list[Listener]:
    """The listeners a config's keys ask for: `servers`, or the top-level keys as one."""
    servers = raw.get("servers") or [
        {
            k: raw[k]
            for k in ("server", "address", "address_ipv6", "port", "socket", "socket_mod")
            if raw.get(k) is not None
        }
    ]
    out = []
    for s in servers:
        kind = server_name(s.get("server", "./servers/udp"))
        v6 = s.get("address_ipv6", raw["address_ipv6"])
        address = s.get("address") or ("::1" if v6 else "127.0.0.1")
        if not SERVERS[kind].datagram and s.get("socket"):
            out.append(Listener("unix", "", 0, s["socket"], s.get("socket_mod")))
        else:
            out.append(Listener(kind, address, s.get("port", 8125), rcvbuf=s.get("rcvbuf", raw["rcvbuf"])))
    return out
