"""A listener: `./servers/udp_reuseport`, UDP bound with SO_REUSEPORT.

A second daemon (the next version, during a deploy without systemd's socket activation) can bind
the same port while this one still runs, so no datagram is refused in between: while both hold
the port the kernel hands each datagram to one of them, and the old one's shutdown drains and
flushes what it received. Both must run as the same user (Linux's rule for SO_REUSEPORT).

A listener is an entry in listeners.SERVERS, keyed by the name of Etsy's server module: a
`Server(bind, datagram)`. `bind` returns a bound, non-blocking socket; the daemon reads it
itself, as datagrams (reader processes, native receiver threads or the event loop) or, with
datagram=False, as a listening stream socket of newline-separated lines (StreamListener). So
the bind function is all a listener writes. Paste it into src/webops/statsd/listeners.py, next
to bind_udp (the imports below are that module's own), and add the SERVERS entry. See
docs/recipes/listener.md.
"""

from __future__ import annotations

import socket

from webops.statsd.listeners import Listener, Server, set_rcvbuf


def bind_udp_reuseport(spec: Listener) -> socket.socket:
    """A bound, non-blocking UDP socket that other SO_REUSEPORT sockets may share.

    `spec` is what the config asked for (listeners.configured): address, port, rcvbuf. Raise
    OSError when it cannot be bound, after closing the socket: the daemon then refuses to start
    (exit 2, naming the listener), or a reload binds none of its new listeners and keeps the
    running ones. Not taken from socket activation (systemd.take_activated): systemd names what
    it passes `udp` or `tcp` by socket type, so a socket it bound would never match this kind."""
    family = socket.AF_INET6 if ":" in spec.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        set_rcvbuf(sock, spec.rcvbuf)  # the UDP receive buffer `rcvbuf` asks for (warns if capped)
        sock.bind((spec.address, spec.port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)  # every read is a bounded loop of non-blocking recv()s
    return sock


# In listeners.py: SERVERS["udp_reuseport"] = UDP_REUSEPORT (that is, one more line in its literal).
NAME = "udp_reuseport"
UDP_REUSEPORT = Server(bind_udp_reuseport, datagram=True)
