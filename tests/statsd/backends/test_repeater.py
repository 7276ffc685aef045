"""The repeater between two real webops daemons."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import free_port, wait_until


@pytest.mark.parametrize("protocol", ["udp4", "tcp"])
def test_every_packet_is_forwarded_unchanged(start_daemon, protocol: str) -> None:
    port = free_port()
    server = "./servers/tcp" if protocol == "tcp" else "./servers/udp"
    downstream = start_daemon(servers=[{"server": server, "port": port}])
    upstream = start_daemon(
        backends=["./backends/repeater", "./backends/file"],
        repeater=[{"host": "127.0.0.1", "port": port}],
        repeaterProtocol=protocol,
    )
    packets = [b"rep.count:1|c\nrep.timer:%d|ms" % i for i in range(200)] + [b"rep.tagged:2|c|#a:b"]
    upstream.send(*packets)
    wait_until(lambda: downstream.total("metrics_received") == 401, what="all lines downstream")
    counters = downstream.console("counters")
    assert "'rep.count': 200" in counters and "'rep.tagged;a=b': 2" in counters
    assert "repeater.packets_forwarded: 201" in upstream.console("stats")


def test_tcp_repeater_holds_packets_while_the_peer_is_away(start_daemon) -> None:
    port = free_port()
    upstream = start_daemon(
        backends=["./backends/repeater"],
        repeater=[{"host": "127.0.0.1", "port": port}],
        repeaterProtocol="tcp",
    )
    upstream.send(*[b"held:1|c"] * 50)
    wait_until(lambda: upstream.total("packets_received") == 50, what="packets upstream")
    with socket.socket() as probe:  # nothing listens there yet: the repeater must be retrying
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    downstream = start_daemon(servers=[{"server": "./servers/tcp", "port": port}])
    wait_until(
        lambda: "held: 50" in downstream.console("counters"), timeout=30, what="held packets delivered"
    )


def test_tcp_repeater_sends_once_to_each_target_when_another_fails(start_daemon) -> None:
    up_port, down_port = free_port(), free_port()
    up = start_daemon(servers=[{"server": "./servers/tcp", "port": up_port}])
    upstream = start_daemon(
        backends=["./backends/repeater"],
        repeater=[{"host": "127.0.0.1", "port": down_port}, {"host": "127.0.0.1", "port": up_port}],
        repeaterProtocol="tcp",
    )
    for i in range(30):
        upstream.send(b"once:1|c")
        wait_until(lambda i=i: upstream.total("packets_received") == i + 1, what="the packet upstream")
    wait_until(
        lambda: "once: 30" in up.console("counters"),
        what="30 packets at the live target",
        detail=lambda: up.console("counters") + upstream.logs()[-2000:],
    )
    wait_until(lambda: "repeater: cannot send" in upstream.logs(), what="the dead target's failures")
    assert "once: 30" in up.console("counters")  # not one more
    down = start_daemon(servers=[{"server": "./servers/tcp", "port": down_port}])
    wait_until(lambda: "once: 30" in down.console("counters"), timeout=30, what="the late target's 30")
    assert "once: 30" in up.console("counters")


def test_tcp_repeater_bound_counts_exactly_the_packets_never_sent(monkeypatch) -> None:
    from webops.common.ratelimit import RateLimitedLog
    from webops.statsd.backends import repeater

    monkeypatch.setattr(repeater, "TCP_BUFFER_BYTES", 100)
    port = free_port()
    target = repeater.TcpTarget(("127.0.0.1", port), RateLimitedLog(repeater.log, "t"))
    for i in range(50):  # nobody listens: everything waits, the buffer holds 100 bytes
        target.add(b"p%02d:1|c\n" % i)
    wait_until(lambda: target.dropped > 0, what="drops at the bound")
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        conn, _ = server.accept()
        with conn:
            wait_until(lambda: target.forwarded + target.dropped == 50, timeout=30, what="all accounted")
            target.close(10)
            got = b""
            conn.settimeout(30)
            while chunk := conn.recv(65536):
                got += chunk
    lines = got.decode().splitlines()
    assert len(lines) == target.forwarded
    assert target.forwarded + target.dropped == 50
    assert lines == sorted(lines) and lines[-1] == "p49:1|c"  # the newest kept, in order
