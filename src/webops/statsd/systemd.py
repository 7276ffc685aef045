"""systemd integration: sockets passed by socket activation, and readiness notification.

Socket activation (`LISTEN_FDS`): systemd binds the ports before the daemon starts and keeps
them bound across restarts, so nothing sent meanwhile is refused. Readiness (`NOTIFY_SOCKET`,
`Type=notify`): `READY=1` is sent once every listener is bound and every reader reads, so
`systemctl start` returns when intake works, and `STOPPING=1` when the daemon begins to stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

log = logging.getLogger("webops.statsd")

SD_LISTEN_FDS_START = 3

_activated: dict[tuple, socket.socket] | None = None


def sock_key(kind: str, address: str | tuple) -> tuple:
    """What a socket is bound to, comparable between a config (names, ::1) and getsockname()."""
    if isinstance(address, str):
        return ("unix", os.path.realpath(address))
    host, port = address[0], address[1]
    with contextlib.suppress(OSError):
        host = socket.inet_ntop(
            socket.AF_INET6 if ":" in host else socket.AF_INET,
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host),
        )
    return (kind, host, port)


def activated_sockets() -> dict[tuple, socket.socket]:
    """The sockets systemd passed (LISTEN_PID/LISTEN_FDS), by what they are bound to. Read once."""
    global _activated
    if _activated is not None:
        return _activated
    _activated = {}
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return _activated
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        count = 0
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        try:
            sock = socket.socket(fileno=fd)
        except OSError as e:
            log.error("socket activation: fd %d is not a socket: %s", fd, e)
            continue
        kind = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
        key = sock_key(kind, sock.getsockname())
        _activated[key] = sock
        log.info("socket activation: fd %d is %s", fd, key)
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)  # not for our children (reader processes)
    return _activated


def take_activated(key: tuple) -> socket.socket | None:
    """The activated socket bound to `key` (see sock_key), taken out so it is used once."""
    return activated_sockets().pop(key, None)


def notify(state: str) -> bool:
    """Tell systemd (or whatever set NOTIFY_SOCKET) our state; False when nobody listens."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # abstract namespace
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), address)
        return True
    return False
