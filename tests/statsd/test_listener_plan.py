"""What a start or a reload does to the listeners, decided without a socket (reconcile.plan), and
the apply step that carries a plan out, on real loopback sockets."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from tests.conftest import free_port
from webops.statsd.listeners import Listener, spec_key
from webops.statsd.reconcile import Keep, Plan, Sockets, plan


def udp(port: int, rcvbuf: int = 0, address: str = "127.0.0.1") -> Listener:
    return Listener("udp", address, port, rcvbuf=rcvbuf)


def tcp(port: int, rcvbuf: int = 0) -> Listener:
    return Listener("tcp", "127.0.0.1", port, rcvbuf=rcvbuf)


def unix(path: str, mode: int | None = None) -> Listener:
    return Listener("unix", "", 0, path=path, mode=mode)


def keyed(*specs: Listener) -> dict[tuple, Listener]:
    return {spec_key(s): s for s in specs}


def test_at_start_everything_is_opened() -> None:
    wanted = [udp(8125), tcp(8125), unix("/run/statsd.sock")]
    p = plan({}, wanted)
    assert p == Plan(open=keyed(*wanted), keep={}, close={})
    assert set(p.reasons().values()) == {"open: new in the configuration"}


def test_a_reload_opens_what_is_new_keeps_what_stays_and_closes_what_went_away() -> None:
    p = plan(keyed(udp(8125), tcp(8125)), [udp(8125), udp(9125)])
    assert list(p.open) == [spec_key(udp(9125))]
    assert p.keep == {spec_key(udp(8125)): Keep(udp(8125), udp(8125))}
    assert p.close == keyed(tcp(8125))
    assert p.reasons() == {
        spec_key(udp(9125)): "open: new in the configuration",
        spec_key(udp(8125)): "keep: still configured, unchanged",
        spec_key(tcp(8125)): "close: no longer in the configuration",
    }


def test_udp_and_tcp_on_one_port_are_two_listeners() -> None:
    p = plan(keyed(udp(8125)), [tcp(8125)])
    assert p.open == keyed(tcp(8125)) and p.close == keyed(udp(8125)) and not p.keep


def test_an_address_spelled_another_way_is_the_same_socket() -> None:
    p = plan(keyed(udp(8125, address="::1")), [udp(8125, address="0:0::1")])
    assert not p.open and not p.close
    assert p.keep[spec_key(udp(8125, address="::1"))].new.address == "0:0::1"  # the new spec is kept


def test_a_changed_receive_buffer_is_asked_for_again_on_the_socket_that_stays() -> None:
    p = plan(keyed(udp(8125, rcvbuf=1 << 20)), [udp(8125, rcvbuf=8 << 20)])
    keep = p.keep[spec_key(udp(8125))]
    assert keep.rcvbuf == 8 << 20 and keep.chmod is None
    assert keep.why == f"still configured (receive buffer {1 << 20} -> {8 << 20})"
    same = udp(8125, rcvbuf=1 << 20)
    assert plan(keyed(same), [same]).keep[spec_key(same)].rcvbuf is None
    # a stream socket's receive buffer is not the listener's business
    assert plan(keyed(tcp(8125)), [tcp(8125, rcvbuf=1 << 20)]).keep[spec_key(tcp(8125))].rcvbuf is None


@pytest.mark.parametrize(
    ("old", "new", "chmod"),
    [(None, 0o660, 0o660), (0o600, 0o660, 0o660), (0o660, 0o660, None), (0o660, None, None)],
)
def test_a_unix_socket_is_chmod_ed_only_to_a_mode_given_that_differs(old, new, chmod) -> None:
    p = plan(keyed(unix("/run/s.sock", old)), [unix("/run/s.sock", new)])
    assert p.keep[spec_key(unix("/run/s.sock"))].chmod == chmod
    if chmod is not None:
        assert p.keep[spec_key(unix("/run/s.sock"))].why.endswith(f"-> {oct(chmod)})")


def test_two_listeners_on_one_address_are_one_with_the_last_ones_options() -> None:
    p = plan({}, [udp(8125, rcvbuf=1), udp(8125, rcvbuf=2)])
    assert list(p.open.values()) == [udp(8125, rcvbuf=2)]


class NoReaders:
    """The reader pool, for `readers: 0`: UDP is read in this process."""

    closed = 0

    async def switch(self, socks: list[socket.socket], settings) -> None:
        raise AssertionError("no reader processes with readers: 0")

    async def close(self) -> None:
        self.closed += 1


def test_apply_binds_all_or_nothing_then_reads_and_closes(caplog) -> None:
    got: list[bytes] = []
    port, other = free_port(), free_port()

    async def run() -> None:
        sockets = Sockets(got.extend)
        limits = lambda: (10, 60.0)  # noqa: E731
        await sockets.apply(plan({}, [udp(port)]), NoReaders(), None, limits)
        assert list(sockets.udp_local) == [spec_key(udp(port))]
        # the second new socket cannot be bound: the first one is closed again, nothing changes
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind(("127.0.0.1", other))
            wanted = [udp(port), udp(free_port()), tcp(other)]
            with pytest.raises(OSError, match=f"cannot listen on tcp://127.0.0.1:{other}"):
                await sockets.apply(plan(sockets.bound(), wanted), NoReaders(), None, limits)
        assert sockets.bound() == keyed(udp(port))
        # a reload to another port: what the old socket holds is read before it closes
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"a:1|c", ("127.0.0.1", port))
        moved = free_port()
        await sockets.apply(plan(sockets.bound(), [udp(moved)]), NoReaders(), None, limits)
        assert sockets.bound() == keyed(udp(moved)) and list(sockets.udp_local) == [spec_key(udp(moved))]
        sockets.drain_and_close()

    with caplog.at_level(logging.INFO, logger="webops.statsd"):
        asyncio.run(run())
    assert got == [b"a:1|c"]
    said = [r.getMessage() for r in caplog.records]
    assert f"closing listener udp://127.0.0.1:{port}" in said
    assert said.count(f"listening on udp://127.0.0.1:{port}") == 1
