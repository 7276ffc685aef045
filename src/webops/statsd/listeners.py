"""Where packets come in: UDP, newline-delimited TCP and unix stream sockets.

Sockets are read directly from the event loop's readiness callbacks (not asyncio transports):
one wake-up reads every datagram already queued, which is what keeps loss low under load, and
on shutdown the same read loop drains what the kernel still holds before the socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import sys
from collections.abc import Callable

from .config import Listener

log = logging.getLogger("webops.statsd")

MAX_PACKET = 65536
MAX_LINE = 65536
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)
_rcvbuf_warned = False

OnData = Callable[[list[bytes]], None]  # datagrams (or TCP chunks of whole lines)


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


def bind_udp(spec: Listener) -> socket.socket:
    """A bound, non-blocking UDP socket with the receive buffer asked for."""
    family = socket.AF_INET6 if ":" in spec.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        set_rcvbuf(sock, spec.rcvbuf)
        sock.bind((spec.address, spec.port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def dump_packets(packets: list[bytes]) -> None:
    """Etsy's dumpMessages: log every packet as received."""
    for data in packets:
        log.info("%s", data.decode("utf-8", "replace").rstrip("\n"))


def recv_many(sock: socket.socket, limit: int) -> list[bytes]:
    """The datagrams already queued on a non-blocking socket, up to `limit` of them."""
    recv, got = sock.recv, []
    append = got.append
    for _ in range(limit):
        try:
            append(recv(MAX_PACKET))
        except (BlockingIOError, InterruptedError):
            break
        except OSError as e:  # e.g. ICMP errors reported on the socket: never fatal
            log.debug("udp recv: %s", e)
            break
    return got


class UdpListener:
    """UDP read by the event loop itself (`readers: 0`); see readers.py for reader processes."""

    def __init__(self, spec: Listener, on_data: OnData) -> None:
        self.spec, self.on_data = spec, on_data
        self.sock = bind_udp(spec)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self.read)

    def read(self) -> None:
        # bounded, so one flood cannot starve the console and the flush timer
        if got := recv_many(self.sock, 2000):
            self.on_data(got)

    def drain(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        if got := recv_many(self.sock, 10**9):
            self.on_data(got)

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class StreamListener:
    """TCP (or unix socket) connections carrying newline-separated lines, as Etsy's servers/tcp."""

    def __init__(self, spec: Listener, on_data: OnData) -> None:
        self.spec, self.on_data = spec, on_data
        self.conns: dict[int, tuple[socket.socket, bytearray]] = {}
        if spec.kind == "unix":
            assert spec.path
            if os.path.exists(spec.path) and stat.S_ISSOCK(os.stat(spec.path).st_mode):
                os.unlink(spec.path)  # left by a previous run; never remove a non-socket file
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(spec.path)
            if spec.mode is not None:
                os.chmod(spec.path, spec.mode)
        else:
            family = socket.AF_INET6 if ":" in spec.address else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((spec.address, spec.port))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self.accept)

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: log, keep serving the others
                log.warning("accept on %s: %s", describe(self.spec), e)
                return
            conn.setblocking(False)
            self.conns[conn.fileno()] = (conn, bytearray())
            self.loop.add_reader(conn.fileno(), self.read, conn.fileno())

    def read(self, fd: int) -> None:
        conn, buf = self.conns[fd]
        while True:
            try:
                chunk = conn.recv(MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._close_conn(fd, flush_partial=True)
                return
            buf += chunk
        end = buf.rfind(b"\n")
        if end >= 0:
            self.on_data([bytes(buf[: end + 1])])
            del buf[: end + 1]
        if len(buf) > MAX_LINE:  # a "line" this long is garbage: hand it over so it counts as bad
            self.on_data([bytes(buf)])
            buf.clear()

    def _close_conn(self, fd: int, flush_partial: bool) -> None:
        conn, buf = self.conns.pop(fd)
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(fd)
        if flush_partial and buf:
            self.on_data([bytes(buf)])  # a last line without its newline still counts
        conn.close()

    def drain(self) -> None:
        """Stop accepting; read what every open connection has already sent, then close it."""
        with contextlib.suppress(ValueError, OSError):
            self.loop.remove_reader(self.sock.fileno())
        for fd in list(self.conns):
            if fd in self.conns:
                self.read(fd)
            if fd in self.conns:
                self._close_conn(fd, flush_partial=True)

    def close(self) -> None:
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


def open_listener(spec: Listener, on_data: OnData) -> UdpListener | StreamListener:
    return UdpListener(spec, on_data) if spec.kind == "udp" else StreamListener(spec, on_data)
