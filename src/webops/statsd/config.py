"""Etsy statsd's configuration keys: defaults, validation, and the settings objects built from them.

One table (`SCHEMA`) drives validation, `--check-config` and the README's option list, so a key
cannot be accepted without being checked and documented.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.config import ConfigError, key_line, load_object
from . import backends, hotpath, kinds
from .aggregate import AggregationSettings
from .listeners import SERVERS, Listener, server_name
from .snapshot import SummarySettings
from .validate import (
    Key,
    Validator,
    boolean,
    check_section,
    choice,
    number,
    port,
    section,
    str_list,
    string,
    warn_unknown,
)

log = logging.getLogger("webops.statsd")


def _server(v: Any) -> str:
    """Etsy's `server` module path: ./servers/udp or ./servers/tcp (a typo must not become UDP)."""
    if server_name(string(v)) not in SERVERS:
        raise ValueError(f"expected one of {', '.join(f'./servers/{n}' for n in SERVERS)}, got {v!r}")
    return v


def _mode(v: Any) -> int:
    """A file mode: a number (0o660 in config.js, 432 in JSON) or an octal string ("0660", "660")."""
    if isinstance(v, str):
        try:
            v = int(v.strip().removeprefix("0o"), 8)
        except ValueError:
            raise ValueError(f'expected an octal mode such as "0660", got {v!r}') from None
    mode = number(0, integer=True, maximum=0o7777)(v)
    return int(mode)


def _readers(v: Any) -> str | int:
    return v if v == "auto" else number(0, integer=True, maximum=64)(v)


def _http(v: Any) -> dict | bool:
    """false, true (the defaults) or {address, port, and the limits of HTTP_KEYS}."""
    if v is False:
        return False
    if v is not True and not isinstance(v, dict):
        raise ValueError(f"expected false or {{address, port, ...}}, got {v!r}")
    given = check_section(v if isinstance(v, dict) else {}, HTTP_KEYS)
    return {**{k: d for k, (d, _, _) in HTTP_KEYS.items()}, **given}


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
SERVER_KEYS: dict[str, tuple[Any, Validator, str]] = {
    "server": ("./servers/udp", _server, "./servers/udp or ./servers/tcp"),
    "address": (None, string, "address to listen on"),
    "address_ipv6": (False, boolean, "listen on IPv6"),
    "port": (8125, port, "port to listen on"),
    "socket": (None, string, "TCP server only: a unix stream socket path instead of a port"),
    "socket_mod": (None, _mode, 'permissions of the unix socket (0o660 or "0660")'),
    "rcvbuf": (8 * 1024 * 1024, number(0, integer=True), "UDP SO_RCVBUF in bytes"),
}

KEYFLUSH_KEYS: dict[str, tuple[Any, Validator, str]] = {
    "interval": (0, number(0), "ms between top-keys logs"),
    "percent": (100, number(0, maximum=100), "share of keys to log"),
    "log": (None, string, "file to append to (default stdout)"),
}

# The HTTP endpoint's limits: what one client or one request may take of a daemon that must keep
# answering /health (README: Limits).
HTTP_KEYS: dict[str, tuple[Any, Validator, str]] = {
    "address": ("127.0.0.1", string, "address to listen on"),
    "port": (8127, port, "port to listen on"),
    "maxConnections": (
        512,
        number(1, integer=True),
        "open connections; past it the oldest one still sending its request is closed",
    ),
    "headerTimeout": (10, number(0.1), "seconds a connection gets to send its request line and headers"),
    "bodyTimeout": (30, number(0.1), "seconds to send a POSTed body, and to take the reply"),
    "renderThreads": (2, number(1, integer=True, maximum=64), "Graphite requests evaluated at once"),
    "renderTimeout": (20, number(0.1), "seconds after which a Graphite request is abandoned (504)"),
    "renderMaxPoints": (
        1_000_000,
        number(1, integer=True),
        "points a /render may read and summarize may make; past it a 422",
    ),
    "renderMaxSeries": (10_000, number(1, integer=True), "series a /render may read; past it a 422"),
}

LOG_LEVELS = {
    "LOG_DEBUG": logging.DEBUG,
    "LOG_INFO": logging.INFO,
    "LOG_NOTICE": logging.INFO,
    "LOG_WARN": logging.WARNING,
    "LOG_WARNING": logging.WARNING,
    "LOG_ERR": logging.ERROR,
    "LOG_ERROR": logging.ERROR,
    "LOG_CRIT": logging.CRITICAL,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}

LOG_KEYS: dict[str, tuple[Any, Validator, str]] = {
    "backend": ("stdout", choice("stdout", "syslog", "stderr"), "where to log"),
    "application": ("statsd", string, "syslog ident"),
    "level": ("LOG_INFO", choice(*LOG_LEVELS), "log level"),
}

SECTIONS: dict[str, dict[str, Key]] = {
    "keyFlush": KEYFLUSH_KEYS,
    "log": LOG_KEYS,
    **backends.SECTIONS,
}

SCHEMA: dict[str, tuple[Any, Validator, str]] = {
    "address": ("127.0.0.1", string, "UDP/TCP listen address (Etsy's default is 0.0.0.0; webops: loopback)"),
    "host": (None, string, "Net::Statsd::Server's name for address"),
    "address_ipv6": (False, boolean, "listen on IPv6 (address defaults to ::1)"),
    "port": (8125, port, "UDP/TCP listen port"),
    "server": ("./servers/udp", _server, "./servers/udp or ./servers/tcp, when servers is not set"),
    "servers": (
        None,
        _servers,
        "list of listeners: {server, address, address_ipv6, port, socket, socket_mod}",
    ),
    "socket": (None, string, "unix stream socket path for a ./servers/tcp listener"),
    "socket_mod": (None, _mode, 'permissions of that socket (0o660 or "0660")'),
    "rcvbuf": (8 * 1024 * 1024, number(0, integer=True), "UDP SO_RCVBUF in bytes (webops)"),
    "readers": (
        "auto",
        _readers,
        "UDP readers. python: reader processes, auto (one per CPU, at most 4) or N, 0 reads in the "
        "main process; native: receiver threads, auto (1) or N",
    ),
    "hotPath": (
        hotpath.DEFAULT,
        hotpath.validate,
        "auto (native if built, else python), native (Rust receivers) or python (the reference)",
    ),
    "mgmt_address": ("127.0.0.1", string, "management console address"),
    "mgmt_port": (8126, port, "management console port"),
    "mgmtMaxConnections": (
        100,
        number(1, integer=True),
        "console connections; past it the one quiet the longest is closed",
    ),
    "mgmtIdleTimeout": (60, number(0), "seconds a console connection may sit idle (0: forever)"),
    "tcpMaxConnections": (
        1000,
        number(1, integer=True),
        "connections per TCP/unix listener; past it new ones are closed",
    ),
    "tcpIdleTimeout": (300, number(0), "seconds a TCP/unix connection may send nothing (0: forever)"),
    "maxSeries": (
        500_000,
        number(1, integer=True),
        "distinct series kept; updates of new series past it are refused (statsd.metrics_refused)",
    ),
    "maxSetMembers": (
        100_000,
        number(1, integer=True),
        "members a set keeps an interval; new ones past it are refused (statsd.set_members_refused)",
    ),
    "backends": (
        None,
        str_list,
        "backends to flush to: graphite, console, file, repeater, store (Etsy or Perl names)",
    ),
    "flushInterval": (10000, number(1, integer=True), "flush interval in ms"),
    "flush_counts": (True, boolean, "send stats_counts (legacy) / .count counter values"),
    "deleteIdleStats": (False, boolean, "default for every delete* option (deleteCounters, ...)"),
    "prefixStats": ("statsd", string, "prefix of the daemon's own stats"),
    "keyNameSanitize": (True, boolean, "clean metric names as Etsy does"),
    "healthStatus": ("up", choice("up", "down"), "initial health reported by the console"),
    "dumpMessages": (False, boolean, "log every received line"),
    "debug": (False, boolean, "debug logging"),
    "title": ("statsd", lambda v: v, "process title (accepted for compatibility; not applied)"),
    "automaticConfigReload": (True, boolean, "reload the config file when it changes"),
    "keyFlush": ({}, section(KEYFLUSH_KEYS), "periodically log the most frequently sent keys"),
    "log": ({}, section(LOG_KEYS), "logging"),
    "http": (
        _http(True),
        _http,
        "HTTP /health, /metrics and Graphite's API, and their limits; false turns it off",
    ),
    "persistGauges": (None, string, "file where gauges survive a restart"),
}

SCHEMA.update(kinds.CONFIG_KEYS)  # each metric kind brings its own keys (delete<Kind>, ...)
SCHEMA.update(backends.CONFIG_KEYS)  # and each backend


def backend_name(spec: str) -> str:
    """`./backends/graphite`, `graphite`, `Graphite` (Perl) all name the same backend."""
    name = spec.rsplit("/", 1)[-1].removesuffix(".js").lower()
    if name not in backends.REGISTRY:
        raise ValueError(f"unknown backend {spec!r} (known: {', '.join(backends.REGISTRY)})")
    return name


@dataclass
class StatsdConfig:
    """The effective configuration: Etsy's keys (as a dict, for backends) plus derived settings."""

    raw: dict[str, Any]
    path: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def section(self, name: str) -> dict[str, Any]:
        """A nested section with its defaults filled in (graphite, console, file, log, keyFlush)."""
        out = {k: d for k, (d, _, _) in SECTIONS[name].items()}
        out.update(self.raw.get(name) or {})
        return out

    @property
    def backends(self) -> list[str]:
        return [backend_name(b) for b in self.raw["backends"]]

    @property
    def listeners(self) -> list[Listener]:
        servers = self.raw.get("servers") or [
            {
                k: self.raw[k]
                for k in ("server", "address", "address_ipv6", "port", "socket", "socket_mod")
                if self.raw.get(k) is not None
            }
        ]
        out = []
        for s in servers:
            kind = server_name(s.get("server", "./servers/udp"))
            v6 = s.get("address_ipv6", self.raw["address_ipv6"])
            address = s.get("address") or ("::1" if v6 else "127.0.0.1")
            if not SERVERS[kind].datagram and s.get("socket"):
                out.append(Listener("unix", "", 0, s["socket"], s.get("socket_mod")))
            else:
                out.append(
                    Listener(kind, address, s.get("port", 8125), rcvbuf=s.get("rcvbuf", self.raw["rcvbuf"]))
                )
        return out

    @property
    def hot_path(self) -> str:
        """`native` or `python`: which hot path this config runs here."""
        return hotpath.choose(self.raw["hotPath"])

    @property
    def readers(self) -> int:
        return self.readers_for(self.hot_path)

    def readers_for(self, hot_path: str) -> int:
        """Reader processes (python) or receiver threads (native, at least one)."""
        wanted = self.raw["readers"]
        if hot_path == "native":
            return hotpath.NATIVE_AUTO if wanted == "auto" else max(1, wanted)
        return min(os.cpu_count() or 1, 4) if wanted == "auto" else wanted

    def aggregation(self) -> AggregationSettings:
        r = self.raw
        return AggregationSettings(
            prefix_stats=r["prefixStats"],
            sanitize=r["keyNameSanitize"],
            deletes=frozenset(k.table for k in kinds.KINDS if r[k.delete_key()]),
            options=self.kind_options(),
            key_flush=bool(r["keyFlush"].get("interval")),
            max_series=r["maxSeries"],
            max_set_members=r["maxSetMembers"],
        )

    def summary(self) -> SummarySettings:
        r = self.raw
        return SummarySettings(flush_interval_ms=r["flushInterval"], options=self.kind_options())

    def kind_options(self) -> dict[str, Any]:
        """The values of the metric kinds' own keys (percentThreshold, gaugesMaxTTL, ...)."""
        return {key: self.raw[key] for key in kinds.CONFIG_KEYS}


def build(user: dict[str, Any], path: str | None = None, text: str = "") -> StatsdConfig:
    """Validate a user's config dict and fill in defaults; errors name the file, line and key."""
    where = path or "command line"
    raw: dict[str, Any] = {}
    for key, value in user.items():
        if key not in SCHEMA:
            warn_unknown(key)
            raw[key] = value
            continue
        try:
            raw[key] = SCHEMA[key][1](value)
        except ValueError as e:
            line = key_line(text, key) if text else None
            raise ConfigError(f"{where}{f':{line}' if line else ''}: {key}: {e}") from None
    for key, (default, _, _) in SCHEMA.items():
        raw.setdefault(key, copy.deepcopy(default))
    if raw["host"] and "address" not in user:
        raw["address"] = raw["host"]
    if raw["address_ipv6"] and "address" not in user and not raw["host"]:
        raw["address"] = "::1"
    for key in (k.delete_key() for k in kinds.KINDS):
        if raw[key] is None:
            raw[key] = raw["deleteIdleStats"]
    if raw["backends"] is None:
        # Etsy loads graphite by default; with no carbon to talk to, show the flushes and keep
        # their history (the store, read by Graphite's API) instead.
        raw["backends"] = ["./backends/graphite"] if raw["graphiteHost"] else ["./backends/console", "store"]
    try:
        for b in raw["backends"]:
            backend_name(b)
    except ValueError as e:
        line = key_line(text, "backends") if text else None
        raise ConfigError(f"{where}{f':{line}' if line else ''}: backends: {e}") from None
    return StatsdConfig(raw, path)


def load(path: str | None, overrides: dict[str, Any] | None = None) -> StatsdConfig:
    """Read a config file (or none: built-in defaults), then apply command-line overrides."""
    user: dict[str, Any] = {}
    text = ""
    if path:
        user, text = load_object(path)
        path = str(Path(path))
    for key, value in (overrides or {}).items():  # a flag for one key of a section keeps the rest
        both = isinstance(value, dict) and isinstance(user.get(key), dict)
        user[key] = {**user[key], **value} if both else value
    return build(user, path, text)
