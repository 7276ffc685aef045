"""statsd-aware shortcuts: a metric's name and statistic to the Graphite path the daemon writes,
through common's layout (the one `webops statsd` names its series with), for the daemon's config
or, without one, Etsy's defaults. Pure but for reading the config file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..common.config import ConfigError, load_object
from ..common.graphite_layout import Layout, pct_suffix, sanitize_key

COUNTER_STATS = ("rate", "count")
GAUGE_STATS = ("value",)
_PCT = re.compile(r"p(-?\d+(?:\.\d+)?)")
DEFAULT_PERCENTILES = [90]  # Etsy's percentThreshold


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
    """The path of `name`'s `stat` for a metric of `kind` (counter, timer, gauge, set). The name
    goes through the daemon's keyNameSanitize first (unless its config turns it off), as the
    daemon did when it received it: `my metric` was written as `my_metric`."""
    layout = Layout.of(config)
    if config.get("keyNameSanitize", True) is not False:
        name = sanitize_key(name)
    if not name:
        raise ConfigError(f"--{kind}: the name is empty (once sanitized as the daemon does)")
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
    -> `upper_99_9`, `p-10` -> `lower_top10` (a negative percentThreshold: the slowest 10 %),
    named by the daemon's own suffix rule; any other name (mean, upper, lower, count, count_ps,
    sum, median, std, mean_90, ...) as is. A percentile the daemon does not compute (its
    percentThreshold, Etsy's [90] without a config) is an error, not a series that never comes."""
    m = _PCT.fullmatch(stat)
    if not m:
        return stat
    pct = float(m[1])
    if pct == 0 or not -100 <= pct <= 100:
        raise ConfigError(f"--stat {stat}: a percentile is between -100 and 100, not 0")
    wanted = config.get("percentThreshold", DEFAULT_PERCENTILES)
    wanted = wanted if isinstance(wanted, list) else [wanted]
    have = [float(p) for p in wanted if isinstance(p, int | float | str)]
    if pct not in have:
        listed = "[" + ", ".join(str(p) for p in wanted) + "]"
        if config:
            raise ConfigError(
                f"--stat {stat}: percentile {m[1]} is not in the statsd config's percentThreshold {listed}"
            )
        raise ConfigError(
            f"--stat {stat}: percentile {m[1]} is not in the daemon's percentThreshold {listed} "
            f"(Etsy's default); give --statsd-config or use p90"
        )
    return ("upper_" if pct > 0 else "lower_") + pct_suffix(pct)
