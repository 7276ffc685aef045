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
