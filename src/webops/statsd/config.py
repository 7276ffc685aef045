"""Etsy statsd's configuration: the core keys (defaults, validation, docs) and the effective config.

A leaf: it imports no other part of the daemon. The plug-in packages bring their own keys (each
metric kind, backend, the listeners, the hot path) and settings.py, the wiring, assembles them
with these into one `Schema`, which drives validation, `--check-config` and docs/statsd.md's option
list, so a key cannot be accepted without being checked and documented. What the daemon derives
from a config (aggregation and summary settings, listeners, the hot path) is settings.py's too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.config import ConfigError, load_object
from ..common.settings import Key, Resolved, Settings, comma_list, read_js
from .validate import (
    boolean,
    buckets,
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
    return {**{k: key.default for k, key in HTTP_KEYS.items()}, **given}


def _prometheus(v: Any) -> dict[str, Any]:
    """{timers, buckets, mapping}, the defaults filled in (as --check-config shows them)."""
    given = check_section(v, PROMETHEUS_KEYS)
    return {**{k: key.default for k, key in PROMETHEUS_KEYS.items()}, **given}


# How /metrics shows timers, and the statsd_exporter mapping file it names series by
# (prometheus.py, prometheus_mapping.py; docs/statsd.md: HTTP: /health and /metrics).
PROMETHEUS_KEYS: dict[str, Key] = {
    "timers": Key(
        "summary",
        choice("summary", "histogram", "both"),
        "timers as summaries, histograms, or both (the histogram as <name>_histogram)",
    ),
    # The Prometheus client's default buckets, in ms: statsd timers are sent in ms, and webops
    # exposes the unit sent (statsd_exporter converts to seconds).
    "buckets": Key(
        [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
        buckets,
        "histogram upper bounds, strictly increasing, in the unit timers are sent (ms)",
    ),
    "mapping": Key(None, string, "statsd_exporter mapping file (YAML or JSON): names and labels"),
    # prometheus_state.py; read at start only (a reload that changes it says so)
    "stateFile": Key(None, string, "file where /metrics' totals survive a restart (one daemon per file)"),
}

KEYFLUSH_KEYS: dict[str, Key] = {
    "interval": Key(0, number(0), "ms between top-keys logs"),
    "percent": Key(100, number(0, maximum=100), "share of keys to log"),
    "log": Key(None, string, "file to append to (default stdout)"),
}

# The HTTP endpoint's limits: what one client or one request may take of a daemon that must keep
# answering /health (docs/statsd.md: Limits).
HTTP_KEYS: dict[str, Key] = {
    "address": Key("127.0.0.1", string, "address to listen on"),
    "port": Key(8127, port, "port to listen on"),
    "maxConnections": Key(
        512,
        number(1, integer=True),
        "open connections; past it the oldest one still sending its request is closed",
    ),
    "headerTimeout": Key(10, number(0.1), "seconds a connection gets to send its request line and headers"),
    "bodyTimeout": Key(30, number(0.1), "seconds to send a POSTed body, and to take the reply"),
    "renderThreads": Key(2, number(1, integer=True, maximum=64), "Graphite requests evaluated at once"),
    "renderTimeout": Key(20, number(0.1), "seconds after which a Graphite request is abandoned (504)"),
    "renderMaxPoints": Key(
        1_000_000,
        number(1, integer=True),
        "points a /render may read and summarize may make; past it a 422",
    ),
    "renderMaxSeries": Key(10_000, number(1, integer=True), "series a /render may read; past it a 422"),
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

LOG_KEYS: dict[str, Key] = {
    "backend": Key("stdout", choice("stdout", "syslog", "stderr"), "where to log"),
    "application": Key("statsd", string, "syslog ident"),
    "level": Key("LOG_INFO", choice(*LOG_LEVELS), "log level"),
}

SECTIONS: dict[str, dict[str, Key]] = {
    "keyFlush": KEYFLUSH_KEYS,
    "log": LOG_KEYS,
}

SCHEMA: dict[str, Key] = {
    "address": Key(
        "127.0.0.1",
        string,
        "UDP/TCP listen address (Etsy's default is 0.0.0.0; webops: loopback)",
        flag="--address",
    ),
    "host": Key(None, string, "Net::Statsd::Server's name for address"),
    "address_ipv6": Key(False, boolean, "listen on IPv6 (address defaults to ::1)"),
    "port": Key(8125, port, "UDP/TCP listen port", flag="--port"),
    "socket": Key(None, string, "unix stream socket path for a ./servers/tcp listener"),
    "socket_mod": Key(None, file_mode, 'permissions of that socket (0o660 or "0660")'),
    "rcvbuf": Key(8 * 1024 * 1024, number(0, integer=True), "UDP SO_RCVBUF in bytes (webops)"),
    "readers": Key(
        "auto",
        _readers,
        "UDP readers. python: reader processes, auto (one per CPU, at most 4) or N, 0 reads in the "
        "main process; native: receiver threads, auto (1) or N",
    ),
    "mgmt_address": Key("127.0.0.1", string, "management console address", flag="--mgmt-address"),
    "mgmt_port": Key(8126, port, "management console port", flag="--mgmt-port"),
    "mgmtMaxConnections": Key(
        100,
        number(1, integer=True),
        "console connections; past it the one quiet the longest is closed",
    ),
    "mgmtIdleTimeout": Key(60, number(0), "seconds a console connection may sit idle (0: forever)"),
    "tcpMaxConnections": Key(
        1000,
        number(1, integer=True),
        "connections per TCP/unix listener; past it new ones are closed",
    ),
    "tcpIdleTimeout": Key(300, number(0), "seconds a TCP/unix connection may send nothing (0: forever)"),
    "maxSeries": Key(
        500_000,
        number(1, integer=True),
        "distinct series kept; updates of new series past it are refused (statsd.metrics_refused)",
    ),
    "maxSetMembers": Key(
        100_000,
        number(1, integer=True),
        "members a set keeps an interval; new ones past it are refused (statsd.set_members_refused)",
    ),
    "backends": Key(
        None,
        str_list,
        "backends to flush to: graphite, console, file, repeater, store (Etsy or Perl names)",
        flag="--backends",
        text=comma_list,
    ),
    "flushInterval": Key(
        10000, number(1, integer=True), "flush interval in ms", flag="--flush-interval", metavar="MS"
    ),
    "flush_counts": Key(True, boolean, "send stats_counts (legacy) / .count counter values"),
    "deleteIdleStats": Key(False, boolean, "default for every delete* option (deleteCounters, ...)"),
    "prefixStats": Key("statsd", string, "prefix of the daemon's own stats"),
    "keyNameSanitize": Key(True, boolean, "clean metric names as Etsy does"),
    "healthStatus": Key("up", choice("up", "down"), "initial health reported by the console"),
    "dumpMessages": Key(False, boolean, "log every received line"),
    "debug": Key(False, boolean, "debug logging", flag="--debug", switch=True),
    "title": Key("statsd", lambda v: v, "process title (accepted for compatibility; not applied)"),
    "automaticConfigReload": Key(True, boolean, "reload the config file when it changes"),
    "keyFlush": Key({}, section(KEYFLUSH_KEYS), "periodically log the most frequently sent keys"),
    "log": Key({}, section(LOG_KEYS), "logging"),
    "http": Key(
        _http(True),
        _http,
        "HTTP /health, /metrics and Graphite's API, and their limits; false turns it off",
        parts={"--http-address": "address", "--http-port": "port"},
    ),
    "prometheus": Key(
        _prometheus({}),
        _prometheus,
        "/metrics: timers as summary, histogram or both, histogram buckets, a mapping file",
        parts={"--prometheus-mapping": "mapping"},
    ),
    "persistGauges": Key(None, string, "file where gauges survive a restart"),
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
    that names it (where Etsy's and docs/statsd.md's lists have them), then `tables` in turn."""
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
    resolved: Resolved | None = field(default=None, repr=False)  # each value's source

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def section(self, name: str) -> dict[str, Any]:
        """A nested section with its defaults filled in (graphite, console, file, log, keyFlush)."""
        out = {k: key.default for k, key in self.schema.sections[name].items()}
        out.update(self.raw.get(name) or {})
        return out

    @property
    def backends(self) -> list[str]:
        return [self.schema.backend_name(b) for b in self.raw["backends"]]


def settings(schema: Schema) -> Settings:
    """The common settings layer over a schema: Etsy's files (JS or JSON), unknown keys warned
    about and kept (a third-party backend may read its own), and the environment only where a
    key names a variable (hotPath's default; Etsy's config.js reads it itself: `process.env.X`)."""
    return Settings(schema.keys, read_js, unknown=warn_unknown)


def build(
    user: dict[str, Any],
    schema: Schema,
    path: str | None = None,
    text: str = "",
    flags: dict[str, Any] | None = None,
) -> StatsdConfig:
    """Validate a user's config dict (and command-line flags over it) and fill in defaults;
    errors name the file, line and key."""
    resolved = settings(schema).resolve(path, flags=flags, file=user, text=text)
    raw, sources = dict(resolved.values), dict(resolved.sources)
    if raw["host"] and "address" not in resolved.sources:
        raw["address"] = raw["host"]
        sources["address"] = "host"
    if raw["address_ipv6"] and "address" not in resolved.sources and not raw["host"]:
        raw["address"] = "::1"
        sources["address"] = "address_ipv6"
    for key in schema.idle_deletes:
        if raw[key] is None:
            raw[key] = raw["deleteIdleStats"]
            sources.setdefault(key, "deleteIdleStats")
    if raw["backends"] is None:
        # Etsy loads graphite by default; with no carbon to talk to, show the flushes and keep
        # their history (the store, read by Graphite's API) instead.
        raw["backends"] = (
            ["./backends/graphite"] if raw.get("graphiteHost") else ["./backends/console", "store"]
        )
        sources["backends"] = "default (graphiteHost)" if raw.get("graphiteHost") else "default"
    try:
        for b in raw["backends"]:
            schema.backend_name(b)
    except ValueError as e:
        raise ConfigError(f"{sources['backends']}: backends: {e}") from None
    return StatsdConfig(raw, path, schema, Resolved(raw, sources, resolved.order))


def load(path: str | None, schema: Schema, flags: dict[str, Any] | None = None) -> StatsdConfig:
    """Read a config file (or none: built-in defaults), then apply the command line's flags."""
    user: dict[str, Any] = {}
    text = ""
    if path:
        user, text = load_object(path)
        path = str(Path(path))
    return build(user, schema, path, text, flags)
