"""Etsy statsd's configuration keys: defaults, validation, and the settings objects built from them.

One table (`SCHEMA`) drives validation, `--check-config` and the README's option list, so a key
cannot be accepted without being checked and documented.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.config import ConfigError, key_line, load_object
from .aggregate import AggregationSettings
from .snapshot import SummarySettings

log = logging.getLogger("webops.statsd")

Validator = Callable[[Any], Any]


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ValueError(f"expected true or false, got {v!r}")


def _number(minimum: float | None = None, integer: bool = False, maximum: float | None = None) -> Validator:
    def check(v: Any) -> float | int:
        if isinstance(v, bool):
            raise ValueError(f"expected a number, got {v!r}")
        try:
            n = float(v) if isinstance(v, str) else v
        except ValueError:
            raise ValueError(f"expected a number, got {v!r}") from None
        if not isinstance(n, int | float) or n != n:
            raise ValueError(f"expected a number, got {v!r}")
        if integer:
            if n != int(n):
                raise ValueError(f"expected a whole number, got {v!r}")
            n = int(n)
        if minimum is not None and n < minimum:
            raise ValueError(f"must be at least {minimum}, got {v!r}")
        if maximum is not None and n > maximum:
            raise ValueError(f"must be at most {maximum}, got {v!r}")
        return n

    return check


_port = _number(0, integer=True, maximum=65535)


def _string(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def _choice(*options: str) -> Validator:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {v!r}")
        return v

    return check


def _server(v: Any) -> str:
    """Etsy's `server` module path: ./servers/udp or ./servers/tcp (a typo must not become UDP)."""
    name = _string(v).rstrip("/").rsplit("/", 1)[-1].removesuffix(".js")
    if name not in ("udp", "tcp"):
        raise ValueError(f"expected ./servers/udp or ./servers/tcp, got {v!r}")
    return v


def _mode(v: Any) -> int:
    """A file mode: a number (0o660 in config.js, 432 in JSON) or an octal string ("0660", "660")."""
    if isinstance(v, str):
        try:
            v = int(v.strip().removeprefix("0o"), 8)
        except ValueError:
            raise ValueError(f'expected an octal mode such as "0660", got {v!r}') from None
    mode = _number(0, integer=True, maximum=0o7777)(v)
    return int(mode)


def _pcts(v: Any) -> list[float]:
    items = v if isinstance(v, list) else [v]
    out = []
    for item in items:
        n = _number()(item)
        if n == 0 or not -100 <= n <= 100:
            raise ValueError(f"percentiles must be between -100 and 100 and not 0, got {item!r}")
        out.append(n)
    return out


def _readers(v: Any) -> str | int:
    return v if v == "auto" else _number(0, integer=True, maximum=64)(v)


def _http(v: Any) -> dict | bool:
    if v is False:
        return False
    if v is True:
        return {"address": "127.0.0.1", "port": 8127}
    if not isinstance(v, dict):
        raise ValueError(f"expected false or {{address, port}}, got {v!r}")
    return {"address": _string(v.get("address", "127.0.0.1")), "port": _port(v.get("port", 8127))}


def _str_list(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"expected a list of strings, got {v!r}")
    return v


def _histogram(v: Any) -> list[dict]:
    if not isinstance(v, list):
        raise ValueError(f"expected a list of {{metric, bins}}, got {v!r}")
    for entry in v:
        if not isinstance(entry, dict) or not isinstance(entry.get("bins", []), list):
            raise ValueError(f"each entry needs metric and a bins list, got {entry!r}")
        for b in entry.get("bins", []):
            if b != "inf":
                _number()(b)
    return v


def _servers(v: Any) -> list[dict]:
    if not isinstance(v, list) or not all(isinstance(s, dict) for s in v):
        raise ValueError(f"expected a list of server objects, got {v!r}")
    out = []
    for i, s in enumerate(v):
        try:
            out.append(_check_section(s, SERVER_KEYS))
        except ValueError as e:
            raise ValueError(f"servers[{i}]: {e}") from None
    return out


def _repeater(v: Any) -> list[dict]:
    if not isinstance(v, list) or not all(isinstance(r, dict) and "host" in r for r in v):
        raise ValueError(f"expected a list of {{host, port}}, got {v!r}")
    return [{"host": _string(r["host"]), "port": _port(r.get("port", 8125))} for r in v]


def _section(keys: dict[str, tuple[Any, Validator, str]]) -> Validator:
    return lambda v: _check_section(v, keys)


def _check_section(v: Any, keys: dict[str, tuple[Any, Validator, str]]) -> dict:
    if not isinstance(v, dict):
        raise ValueError(f"expected an object, got {v!r}")
    out = {}
    for k, value in v.items():
        if k not in keys:
            warn_unknown(k)
            out[k] = value
            continue
        try:
            out[k] = keys[k][1](value)
        except ValueError as e:
            raise ValueError(f"{k}: {e}") from None
    return out


_warned: set[str] = set()


def warn_unknown(key: str) -> None:
    """Warn once per key: a typo must not be silent, but a reload must not repeat it forever."""
    if key not in _warned:
        _warned.add(key)
        log.warning("config: unknown key %r ignored (see README for the keys webops statsd reads)", key)


# name: (default, validator, description). Defaults of None mean "unset".
SERVER_KEYS: dict[str, tuple[Any, Validator, str]] = {
    "server": ("./servers/udp", _server, "./servers/udp or ./servers/tcp"),
    "address": (None, _string, "address to listen on"),
    "address_ipv6": (False, _bool, "listen on IPv6"),
    "port": (8125, _port, "port to listen on"),
    "socket": (None, _string, "TCP server only: a unix stream socket path instead of a port"),
    "socket_mod": (None, _mode, 'permissions of the unix socket (0o660 or "0660")'),
    "rcvbuf": (8 * 1024 * 1024, _number(0, integer=True), "UDP SO_RCVBUF in bytes"),
}

GRAPHITE_KEYS: dict[str, tuple[Any, Validator, str]] = {
    "legacyNamespace": (True, _bool, "stats.<name>, stats_counts.<name>, stats.timers.<name>..."),
    "globalPrefix": ("stats", _string, "prefix of every name (non-legacy namespace)"),
    "prefixCounter": ("counters", _string, "counter prefix (non-legacy)"),
    "prefixTimer": ("timers", _string, "timer prefix (non-legacy)"),
    "prefixGauge": ("gauges", _string, "gauge prefix (non-legacy)"),
    "prefixSet": ("sets", _string, "set prefix (non-legacy)"),
    "globalSuffix": (None, _string, "suffix appended to every name (e.g. the host name)"),
}

KEYFLUSH_KEYS: dict[str, tuple[Any, Validator, str]] = {
    "interval": (0, _number(0), "ms between top-keys logs"),
    "percent": (100, _number(0, maximum=100), "share of keys to log"),
    "log": (None, _string, "file to append to (default stdout)"),
}

CONSOLE_KEYS: dict[str, tuple[Any, Validator, str]] = {
    "prettyprint": (True, _bool, "multi-line output"),
}

FILE_KEYS: dict[str, tuple[Any, Validator, str]] = {
    "path": ("statsd-flush.log", _string, "file to append every flush to"),
    "format": ("graphite", _choice("graphite", "json"), "graphite plaintext lines or JSON lines"),
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
    "backend": ("stdout", _choice("stdout", "syslog", "stderr"), "where to log"),
    "application": ("statsd", _string, "syslog ident"),
    "level": ("LOG_INFO", _choice(*LOG_LEVELS), "log level"),
}

SECTIONS = {
    "graphite": GRAPHITE_KEYS,
    "keyFlush": KEYFLUSH_KEYS,
    "log": LOG_KEYS,
    "console": CONSOLE_KEYS,
    "file": FILE_KEYS,
}

SCHEMA: dict[str, tuple[Any, Validator, str]] = {
    "address": ("127.0.0.1", _string, "UDP/TCP listen address (Etsy's default is 0.0.0.0; webops: loopback)"),
    "host": (None, _string, "Net::Statsd::Server's name for address"),
    "address_ipv6": (False, _bool, "listen on IPv6 (address defaults to ::1)"),
    "port": (8125, _port, "UDP/TCP listen port"),
    "server": ("./servers/udp", _server, "./servers/udp or ./servers/tcp, when servers is not set"),
    "servers": (
        None,
        _servers,
        "list of listeners: {server, address, address_ipv6, port, socket, socket_mod}",
    ),
    "socket": (None, _string, "unix stream socket path for a ./servers/tcp listener"),
    "socket_mod": (None, _mode, 'permissions of that socket (0o660 or "0660")'),
    "rcvbuf": (8 * 1024 * 1024, _number(0, integer=True), "UDP SO_RCVBUF in bytes (webops)"),
    "readers": (
        "auto",
        _readers,
        "UDP reader processes: auto (one per CPU, at most 4) or N; 0 reads in the main process",
    ),
    "mgmt_address": ("127.0.0.1", _string, "management console address"),
    "mgmt_port": (8126, _port, "management console port"),
    "mgmtMaxConnections": (100, _number(1, integer=True), "console connections; past it new ones are closed"),
    "mgmtIdleTimeout": (60, _number(0), "seconds a console connection may sit idle (0: forever)"),
    "tcpMaxConnections": (
        1000,
        _number(1, integer=True),
        "connections per TCP/unix listener; past it new ones are closed",
    ),
    "tcpIdleTimeout": (300, _number(0), "seconds a TCP/unix connection may send nothing (0: forever)"),
    "maxSeries": (
        500_000,
        _number(1, integer=True),
        "distinct series kept; updates of new series past it are refused (statsd.metrics_refused)",
    ),
    "backends": (None, _str_list, "backends to flush to: graphite, console, file (Etsy or Perl names)"),
    "flushInterval": (10000, _number(1, integer=True), "flush interval in ms"),
    "percentThreshold": ([90], _pcts, "timer percentile(s); negative = top percentiles"),
    "histogram": ([], _histogram, "timer histograms: [{metric, bins: [..., 'inf']}]"),
    "calculatedTimerMetrics": ([], _str_list, "timer stats to send (empty: all)"),
    "flush_counts": (True, _bool, "send stats_counts (legacy) / .count counter values"),
    "deleteIdleStats": (False, _bool, "default for all four delete* options"),
    "deleteCounters": (None, _bool, "drop idle counters instead of sending 0"),
    "deleteTimers": (None, _bool, "drop idle timers instead of sending count 0"),
    "deleteGauges": (None, _bool, "drop idle gauges instead of repeating them"),
    "deleteSets": (None, _bool, "drop idle sets instead of sending 0"),
    "gaugesMaxTTL": (1, _number(1, integer=True), "with deleteGauges: flushes a gauge survives idle"),
    "prefixStats": ("statsd", _string, "prefix of the daemon's own stats"),
    "keyNameSanitize": (True, _bool, "clean metric names as Etsy does"),
    "healthStatus": ("up", _choice("up", "down"), "initial health reported by the console"),
    "dumpMessages": (False, _bool, "log every received line"),
    "debug": (False, _bool, "debug logging"),
    "title": ("statsd", lambda v: v, "process title (accepted for compatibility; not applied)"),
    "automaticConfigReload": (True, _bool, "reload the config file when it changes"),
    "keyFlush": ({}, _section(KEYFLUSH_KEYS), "periodically log the most frequently sent keys"),
    "log": ({}, _section(LOG_KEYS), "logging"),
    "console": ({}, _section(CONSOLE_KEYS), "console backend"),
    "file": ({}, _section(FILE_KEYS), "file backend (webops / Net::Statsd::Server)"),
    "graphiteHost": (None, _string, "carbon host"),
    "graphitePort": (2003, _port, "carbon plaintext port"),
    "graphitePicklePort": (2004, _port, "carbon pickle port"),
    "graphiteProtocol": ("text", _choice("text", "pickle"), "carbon protocol"),
    "graphiteBufferSize": (
        256 * 1024 * 1024,
        _number(1024, integer=True),
        "bytes of flushes kept while carbon is away",
    ),
    "graphiteSpoolFile": (None, _string, "where unsent flushes wait across a restart"),
    "graphite": ({}, _section(GRAPHITE_KEYS), "Graphite naming"),
    "http": ({"address": "127.0.0.1", "port": 8127}, _http, "HTTP /health and /metrics; false turns it off"),
    "persistGauges": (None, _string, "file where gauges survive a restart"),
    "repeater": ([], _repeater, "statsd daemons to forward every packet to"),
    "repeaterProtocol": ("udp4", _choice("udp4", "udp6", "tcp"), "repeater transport"),
}

BACKEND_ALIASES = {"graphite": "graphite", "console": "console", "file": "file", "repeater": "repeater"}


def backend_name(spec: str) -> str:
    """`./backends/graphite`, `graphite`, `Graphite` (Perl) all name the same backend."""
    name = spec.rsplit("/", 1)[-1].removesuffix(".js").lower()
    if name not in BACKEND_ALIASES:
        raise ValueError(f"unknown backend {spec!r} (known: {', '.join(BACKEND_ALIASES)})")
    return BACKEND_ALIASES[name]


@dataclass(frozen=True)
class Listener:
    kind: str  # "udp", "tcp" or "unix"
    address: str
    port: int
    path: str | None = None
    mode: int | None = None
    rcvbuf: int = 0


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
            kind = s.get("server", "./servers/udp").rstrip("/").rsplit("/", 1)[-1].removesuffix(".js")
            v6 = s.get("address_ipv6", self.raw["address_ipv6"])
            address = s.get("address") or ("::1" if v6 else "127.0.0.1")
            if kind == "tcp" and s.get("socket"):
                out.append(Listener("unix", "", 0, s["socket"], s.get("socket_mod")))
            else:
                out.append(
                    Listener(kind, address, s.get("port", 8125), rcvbuf=s.get("rcvbuf", self.raw["rcvbuf"]))
                )
        return out

    @property
    def readers(self) -> int:
        wanted = self.raw["readers"]
        return min(os.cpu_count() or 1, 4) if wanted == "auto" else wanted

    def aggregation(self) -> AggregationSettings:
        r = self.raw
        return AggregationSettings(
            prefix_stats=r["prefixStats"],
            sanitize=r["keyNameSanitize"],
            delete_counters=r["deleteCounters"],
            delete_timers=r["deleteTimers"],
            delete_gauges=r["deleteGauges"],
            delete_sets=r["deleteSets"],
            gauges_max_ttl=r["gaugesMaxTTL"],
            key_flush=bool(r["keyFlush"].get("interval")),
            max_series=r["maxSeries"],
        )

    def summary(self) -> SummarySettings:
        r = self.raw
        return SummarySettings(
            flush_interval_ms=r["flushInterval"],
            pct_threshold=tuple(r["percentThreshold"]),
            histogram=tuple(r["histogram"]),
            calculated_timer_metrics=tuple(r["calculatedTimerMetrics"]),
        )


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
    for key in ("deleteCounters", "deleteTimers", "deleteGauges", "deleteSets"):
        if raw[key] is None:
            raw[key] = raw["deleteIdleStats"]
    if raw["backends"] is None:
        # Etsy loads graphite by default; with no carbon to talk to, show the flushes instead.
        raw["backends"] = ["./backends/graphite"] if raw["graphiteHost"] else ["./backends/console"]
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
    user.update(overrides or {})
    return build(user, path, text)
