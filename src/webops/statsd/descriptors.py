"""The daemon's file descriptors, shared out: client connections (stream listeners, the console,
HTTP) are capped by their keys, lowered where the descriptor limit cannot hold them all, and a
reserve is always kept free (files, backends, readers, /health must still answer)."""

from __future__ import annotations

import contextlib
import logging
import resource
from typing import TYPE_CHECKING

from .config import StatsdConfig

if TYPE_CHECKING:
    from .settings import Config

log = logging.getLogger("webops.statsd")

FD_RESERVE = 64  # descriptors kept free of client connections: files, backends, readers, /health


def raise_fd_limit() -> None:
    """Lift the soft descriptor limit to the hard one (often 1024 -> 524288): client connections
    are capped by tcpMaxConnections / mgmtMaxConnections, not by a default nobody chose."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def http_cap(config: StatsdConfig) -> int:
    """http.maxConnections, lowered to what the descriptors hold beside the console and the
    reserve: past that accept() fails, and the eviction that keeps /health answering under a
    slowloris never happens."""
    if not config["http"]:
        return 0
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(1, min(config["http"]["maxConnections"], soft - FD_RESERVE - config["mgmtMaxConnections"]))


class StreamLimits:
    """What each stream listener gets: (max connections, idle timeout). The lowering is said once
    for the daemon's lifetime, not at every reload."""

    def __init__(self) -> None:
        self.warned = False

    def __call__(self, config: Config) -> tuple[int, float]:
        """tcpMaxConnections per stream listener, lowered if the descriptors cannot hold them all
        (with the console's and HTTP's share and a reserve kept free: /health must still answer)."""
        streams = max(1, sum(1 for s in config.listeners if not s.server.datagram))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        budget = (soft - FD_RESERVE - config["mgmtMaxConnections"] - http_cap(config)) // streams
        wanted = config["tcpMaxConnections"]
        if budget < wanted and not self.warned:
            self.warned = True
            log.warning(
                "tcpMaxConnections %d lowered to %d: the file descriptor limit is %d (raise it with "
                "LimitNOFILE= in the systemd unit or ulimit -n)",
                wanted,
                max(1, budget),
                soft,
            )
        return max(1, min(wanted, budget)), config["tcpIdleTimeout"]
