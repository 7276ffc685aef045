"""What the listeners become when the daemon starts or reloads, in two steps:

- `plan` (pure): from the listeners bound now and those the configuration wants, what to open,
  keep (with the options to change on a socket that stays bound) and close, each with why.
  Tested without a socket.
- `Sockets.apply` (the I/O), in the order that loses nothing: every new socket is bound first,
  all or nothing (a reload that cannot bind one changes nothing); then the sockets that stay get
  their new options, the UDP readers switch to the new set, and only then is what went away
  drained and closed.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .listeners import Listener, OnData, StreamListener, UdpListener, describe, set_rcvbuf, spec_key
from .readers import ReaderSettings

log = logging.getLogger("webops.statsd")


@dataclass(frozen=True)
class Keep:
    """A listener that stays bound: its socket is kept, whatever else the new spec says."""

    old: Listener
    new: Listener
    rcvbuf: int | None = None  # a UDP socket's new receive buffer, to ask the kernel for
    chmod: int | None = None  # a unix socket's new mode

    @property
    def why(self) -> str:
        changes = []
        if self.rcvbuf is not None:
            changes.append(f"receive buffer {self.old.rcvbuf} -> {self.rcvbuf}")
        if self.chmod is not None:
            was = "unset" if self.old.mode is None else oct(self.old.mode)
            changes.append(f"mode {was} -> {oct(self.chmod)}")
        return f"still configured ({', '.join(changes)})" if changes else "still configured, unchanged"


@dataclass(frozen=True)
class Plan:
    """By spec_key, in the configuration's order (those to close: in the order they were bound)."""

    open: dict[tuple, Listener]
    keep: dict[tuple, Keep]
    close: dict[tuple, Listener]

    def reasons(self) -> dict[tuple, str]:
        """Each listener's step and why, as `open: ...`, `keep: ...`, `close: ...`."""
        return {
            **{key: "open: new in the configuration" for key in self.open},
            **{key: f"keep: {k.why}" for key, k in self.keep.items()},
            **{key: "close: no longer in the configuration" for key in self.close},
        }


def plan(bound: Mapping[tuple, Listener], wanted: Iterable[Listener]) -> Plan:
    """What makes the listeners `bound` (by spec_key) into those `wanted`. A listener is the same
    one when it is bound to the same thing (spec_key): its other options change in place. Two
    wanted listeners on one address are one, the last one's options."""
    by_key = {spec_key(s): s for s in wanted}
    return Plan(
        open={key: spec for key, spec in by_key.items() if key not in bound},
        keep={key: _keep(bound[key], spec) for key, spec in by_key.items() if key in bound},
        close={key: spec for key, spec in bound.items() if key not in by_key},
    )


def _keep(old: Listener, new: Listener) -> Keep:
    """A UDP socket's receive buffer is asked for again when it changed; a unix socket is
    chmod-ed when a mode is given that differs (no mode given: the socket keeps its own)."""
    rcvbuf = new.rcvbuf if new.server.datagram and new.rcvbuf != old.rcvbuf else None
    chmod = new.mode if new.kind == "unix" and new.mode is not None and new.mode != old.mode else None
    return Keep(old, new, rcvbuf, chmod)


class Pool(Protocol):
    """What apply needs of the UDP reader pool (readers.ReaderPool, hotpath.NativePool)."""

    async def switch(self, socks: list[socket.socket], settings: ReaderSettings) -> None: ...

    async def close(self) -> None: ...


class Sockets:
    """The daemon's bound listeners, by spec_key: every UDP socket, those of them read in this
    process (`readers: 0`), and the stream listeners."""

    def __init__(self, on_data: OnData) -> None:
        self.on_data = on_data
        self.udp: dict[tuple, tuple[Listener, socket.socket]] = {}  # bound UDP sockets
        self.udp_local: dict[tuple, UdpListener] = {}  # those read in this process (readers: 0)
        self.streams: dict[tuple, StreamListener] = {}

    def bound(self) -> dict[tuple, Listener]:
        """What plan() starts from."""
        udp = {key: spec for key, (spec, _) in self.udp.items()}
        return {**udp, **{key: listener.spec for key, listener in self.streams.items()}}

    def udp_socks(self) -> list[socket.socket]:
        return [sock for _, sock in self.udp.values()]

    async def apply(
        self,
        plan: Plan,
        pool: Pool,
        readers: ReaderSettings | None,
        conn_limits: Callable[[], tuple[int, float]],
    ) -> None:
        """Carry `plan` out. `readers`: the reader pool's settings, or None to read UDP in this
        process; `conn_limits`: (max connections, idle timeout) for each stream listener."""
        new_udp, new_streams = self._bind(plan.open)
        for key, keep in plan.keep.items():
            self._change(key, keep, conn_limits)
        self.udp.update(new_udp)
        for key, (spec, sock) in new_streams.items():
            self.streams[key] = StreamListener(spec, sock, self.on_data, *conn_limits())
        for spec, _ in [*new_udp.values(), *new_streams.values()]:
            log.info("listening on %s", describe(spec))
        await self._switch_readers([k for k in self.udp if k not in plan.close], pool, readers)
        self._close(plan.close)

    def _bind(self, specs: dict[tuple, Listener]) -> tuple[dict, dict]:
        """Bind every new listener, or none: (UDP, stream) sockets by key."""
        new_udp: dict[tuple, tuple[Listener, socket.socket]] = {}
        new_streams: dict[tuple, tuple[Listener, socket.socket]] = {}
        try:
            for key, spec in specs.items():
                bound = (spec, spec.server.bind(spec))
                (new_udp if spec.server.datagram else new_streams)[key] = bound
        except OSError as e:
            for _, sock in [*new_udp.values(), *new_streams.values()]:
                sock.close()
            raise OSError(f"cannot listen on {describe(spec)}: {e.strerror or e}") from e
        return new_udp, new_streams

    def _change(self, key: tuple, keep: Keep, conn_limits: Callable[[], tuple[int, float]]) -> None:
        """The options of a socket that stays."""
        if key in self.udp:
            sock = self.udp[key][1]
            if keep.rcvbuf is not None:
                set_rcvbuf(sock, keep.rcvbuf)
            self.udp[key] = (keep.new, sock)
            return
        listener = self.streams[key]
        listener.max_conns, listener.idle_timeout = conn_limits()
        if keep.chmod is not None:
            os.chmod(keep.new.path or "", keep.chmod)
        listener.spec = keep.new

    async def _switch_readers(self, keys: list[tuple], pool: Pool, readers: ReaderSettings | None) -> None:
        """UDP read by reader processes (new ones start before old ones stop) or in this process."""
        if readers is not None:
            await pool.switch([self.udp[k][1] for k in keys], readers)
            for key in list(self.udp_local):
                self.udp_local.pop(key).stop_reading()
            return
        for key in keys:
            if key not in self.udp_local:
                self.udp_local[key] = UdpListener(self.udp[key][0], self.udp[key][1], self.on_data)
        await pool.close()
        for key in [k for k in self.udp_local if k not in keys]:
            self.udp_local.pop(key).drain()

    def _close(self, gone: dict[tuple, Listener]) -> None:
        """What went away: stream listeners first (drained: their connections' last lines count)."""
        for key in [k for k in self.streams if k in gone]:
            listener = self.streams.pop(key)
            log.info("closing listener %s", describe(listener.spec))
            listener.drain()
            listener.close()
        for key in [k for k in self.udp if k in gone]:
            spec, sock = self.udp.pop(key)
            log.info("closing listener %s", describe(spec))
            sock.close()

    def drain_and_close(self) -> None:
        """At shutdown (the readers already handed over): read what every socket still holds, then
        close them all."""
        draining: list[UdpListener | StreamListener] = [*self.udp_local.values(), *self.streams.values()]
        for listener in draining:
            listener.drain()
        for listener in self.streams.values():
            listener.close()
        for _, sock in self.udp.values():
            sock.close()
