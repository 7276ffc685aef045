"""Socket set-up details that do not need a running daemon."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from webops.statsd import listeners


def test_rcvbuf_capped_by_the_kernel_warns_once_with_the_fix(monkeypatch, caplog) -> None:
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    monkeypatch.setattr(listeners.os, "geteuid", lambda: 1000)  # as a user: no SO_RCVBUFFORCE
    monkeypatch.setattr(listeners, "_rcvbuf_warned", False)
    wanted = rmem_max * 4
    with caplog.at_level(logging.WARNING, logger="webops.statsd"):
        for _ in range(2):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                assert listeners.set_rcvbuf(s, wanted) < wanted
    warnings = [r.getMessage() for r in caplog.records if "SO_RCVBUF" in r.getMessage()]
    assert len(warnings) == 1
    assert f"sysctl -w net.core.rmem_max={wanted}" in warnings[0]


@pytest.mark.skipif(listeners.os.geteuid() != 0, reason="SO_RCVBUFFORCE needs root (CI runs as root)")
def test_rcvbuf_forced_as_root() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        assert listeners.set_rcvbuf(s, 64 << 20) >= 64 << 20


def test_listener_kinds_are_registry_entries() -> None:
    """A `server` module is one SERVERS entry: the config accepts its name, the daemon binds and
    reads it by what the entry says (datagrams or a stream)."""
    from webops.statsd import settings as statsd_config
    from webops.statsd.listeners import SERVERS

    for name, server in SERVERS.items():
        cfg = statsd_config.build({"servers": [{"server": f"./servers/{name}", "port": 9999}]})
        (spec,) = cfg.listeners
        assert spec.kind == name and spec.server is server
    (unix,) = statsd_config.build({"servers": [{"server": "./servers/tcp", "socket": "/s"}]}).listeners
    assert unix.kind == "unix" and not unix.server.datagram
