"""statsd-aware shortcuts: a metric's name and statistic to the Graphite path the daemon writes,
through common's layout (the one `webops statsd` names its series with), for the daemon's config
or, without one, Etsy's defaults. Pure but for reading the config file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..common.config import ConfigError, load_object
from ..common.graphite_layout import Layout

COUNTER_STATS = ("rate", "count")
GAUGE_STATS = ("value",)
_PCT = re.compile(r"p(\d+(?:\.\d+)?)")


def read_config(path: str | None) -> dict[str, Any]:
    """A statsd config file as written (JSON, JSON5 or a JS object literal); none: {}."""
    return load_object(path)[0] if path else {}


def url_of(config: Mapping[str, Any]) -> str:
    """The daemon's API address from its config's `http` section (127.0.0.1:8127 by default; a
    wildcard address is reached on loopback)."""
    http = config.get("http", True)
    if http is False:
        raise ConfigError("the statsd config turns HTTP off (http: false): give --url")
    section = http if isinstance(http, dict) else {}
    host = str(section.get("address") or "127.0.0.1")
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    port = section.get("port", 8127)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def resolve(kind: str, name: str, stat: str | None, config: Mapping[str, Any]) -> str:
    """The path of `name`'s `stat` for a metric of `kind` (counter, timer, gauge, set)."""
    layout = Layout.of(config)
    if kind == "counter":
        stat = stat or "rate"
        if stat not in COUNTER_STATS:
            raise ConfigError(f"--counter takes --stat rate or count, got {stat!r}")
        if stat == "count" and not layout.flush_counts:
            raise ConfigError("the statsd config has flush_counts: false, so counts are not kept")
        return layout.counter(name, count=stat == "count")
    if kind == "timer":
        return layout.timer(name, timer_stat(stat or "mean", config))
    if stat not in (None, "value", "count"):
        raise ConfigError(f"--{kind} takes no --stat (got {stat!r})")
    return layout.gauge(name) if kind == "gauge" else layout.set(name)


def timer_stat(stat: str, config: Mapping[str, Any]) -> str:
    """`p99` -> `upper_99` (the largest value in the fastest 99 %: statsd's percentile), `p99.9`
    -> `upper_99_9`; any other name (mean, upper, lower, count, count_ps, sum, median, std,
    mean_90, ...) as is. With a config, a percentile it does not compute is an error."""
    m = _PCT.fullmatch(stat)
    if not m:
        return stat
    if config:
        wanted = config.get("percentThreshold", [90])
        wanted = wanted if isinstance(wanted, list) else [wanted]
        if float(m[1]) not in [float(p) for p in wanted]:
            have = ", ".join(str(p) for p in wanted)
            raise ConfigError(f"--stat {stat}: the statsd config's percentThreshold has {have}, not {m[1]}")
    return "upper_" + m[1].replace(".", "_")
