"""Etsy statsd's configuration: the core keys (defaults, validation, docs) and the effective config.

A leaf: it imports no other part of the daemon. The plug-in packages bring their own keys (each
metric kind, backend, the listeners, the hot path) and settings.py, the wiring, assembles them
with these into one `Schema`, which drives validation, `--check-config` and the README's option
list, so a key cannot be accepted without being checked and documented. What the daemon derives
from a config (aggregation and summary settings, listeners, the hot path) is settings.py's too.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.config import ConfigError, key_line, load_object
from .validate import (
    Key,
    Validator,
    boolean,
    check_section,
    choice,
    file_mode,
    number,
    port,
    section,
    str_list,
    string,
    warn_unknown,
)

log = logging.getLogger("webops.statsd")


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
}

SCHEMA: dict[str, tuple[Any, Validator, str]] = {
    "address": ("127.0.0.1", string, "UDP/TCP listen address (Etsy's default is 0.0.0.0; webops: loopback)"),
    "host": (None, string, "Net::Statsd::Server's name for address"),
    "address_ipv6": (False, boolean, "listen on IPv6 (address defaults to ::1)"),
    "port": (8125, port, "UDP/TCP listen port"),
    "socket": (None, string, "unix stream socket path for a ./servers/tcp listener"),
    "socket_mod": (None, file_mode, 'permissions of that socket (0o660 or "0660")'),
    "rcvbuf": (8 * 1024 * 1024, number(0, integer=True), "UDP SO_RCVBUF in bytes (webops)"),
    "readers": (
        "auto",
        _readers,
        "UDP readers. python: reader processes, auto (one per CPU, at most 4) or N, 0 reads in the "
        "main process; native: receiver threads, auto (1) or N",
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


@dataclass(frozen=True)
class Schema:
    """Every key a config may hold, and what the plug-in packages add to the core's rules:
    assembled by settings.py (the core alone: `CORE`)."""

    keys: Mapping[str, Key]
    sections: Mapping[str, dict[str, Key]]  # nested sections, for StatsdConfig.section
    backends: tuple[str, ...] = ()  # the registered backends' names
    idle_deletes: tuple[str, ...] = ()  # the kinds' delete<Table> keys: unset, deleteIdleStats

    def backend_name(self, spec: str) -> str:
        """`./backends/graphite`, `graphite`, `Graphite` (Perl) all name the same backend."""
        name = spec.rsplit("/", 1)[-1].removesuffix(".js").lower()
        if name not in self.backends:
            raise ValueError(f"unknown backend {spec!r} (known: {', '.join(self.backends)})")
        return name


CORE = Schema(SCHEMA, SECTIONS)


def assemble(placed: Mapping[str, Mapping[str, Key]], *tables: Mapping[str, Key]) -> dict[str, Key]:
    """The core keys with the plug-in packages' own: each of `placed` right after the core key
    that names it (where Etsy's and the README's lists have them), then `tables` in turn."""
    out: dict[str, Key] = {}
    for key, entry in SCHEMA.items():
        out[key] = entry
        out.update(placed.get(key, {}))
    for table in tables:
        out.update(table)
    return out


@dataclass
class StatsdConfig:
    """The effective configuration: Etsy's keys (as a dict, for backends) plus derived settings."""

    raw: dict[str, Any]
    path: str | None = None
    schema: Schema = field(default=CORE, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def section(self, name: str) -> dict[str, Any]:
        """A nested section with its defaults filled in (graphite, console, file, log, keyFlush)."""
        out = {k: d for k, (d, _, _) in self.schema.sections[name].items()}
        out.update(self.raw.get(name) or {})
        return out

    @property
    def backends(self) -> list[str]:
        return [self.schema.backend_name(b) for b in self.raw["backends"]]


def build(user: dict[str, Any], schema: Schema, path: str | None = None, text: str = "") -> StatsdConfig:
    """Validate a user's config dict and fill in defaults; errors name the file, line and key."""
    where = path or "command line"
    keys = schema.keys
    raw: dict[str, Any] = {}
    for key, value in user.items():
        if key not in keys:
            warn_unknown(key)
            raw[key] = value
            continue
        try:
            raw[key] = keys[key][1](value)
        except ValueError as e:
            line = key_line(text, key) if text else None
            raise ConfigError(f"{where}{f':{line}' if line else ''}: {key}: {e}") from None
    for key, (default, _, _) in keys.items():
        raw.setdefault(key, copy.deepcopy(default))
    if raw["host"] and "address" not in user:
        raw["address"] = raw["host"]
    if raw["address_ipv6"] and "address" not in user and not raw["host"]:
        raw["address"] = "::1"
    for key in schema.idle_deletes:
        if raw[key] is None:
            raw[key] = raw["deleteIdleStats"]
    if raw["backends"] is None:
        # Etsy loads graphite by default; with no carbon to talk to, show the flushes and keep
        # their history (the store, read by Graphite's API) instead.
        raw["backends"] = (
            ["./backends/graphite"] if raw.get("graphiteHost") else ["./backends/console", "store"]
        )
    try:
        for b in raw["backends"]:
            schema.backend_name(b)
    except ValueError as e:
        line = key_line(text, "backends") if text else None
        raise ConfigError(f"{where}{f':{line}' if line else ''}: backends: {e}") from None
    return StatsdConfig(raw, path, schema)


def load(path: str | None, schema: Schema, overrides: dict[str, Any] | None = None) -> StatsdConfig:
    """Read a config file (or none: built-in defaults), then apply command-line overrides."""
    user: dict[str, Any] = {}
    text = ""
    if path:
        user, text = load_object(path)
        path = str(Path(path))
    for key, value in (overrides or {}).items():  # a flag for one key of a section keeps the rest
        both = isinstance(value, dict) and isinstance(user.get(key), dict)
        user[key] = {**user[key], **value} if both else value
    return build(user, schema, path, text)
