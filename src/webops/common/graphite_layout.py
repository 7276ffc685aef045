"""Where Etsy statsd's metrics land in Graphite: the path layout that `webops statsd` writes
(its graphite backend, file backend and store) and `webops check` reads back by metric name.

Two tools need it, so it lives here (tools never import each other). It is the rule only, from a
statsd config's `graphite` section (legacyNamespace, globalPrefix, prefix<Kind>, globalSuffix)
and `flush_counts`; validating those keys is statsd's business (its config schema uses
`DEFAULTS` as its defaults).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .jsnumber import number

# By a metric kind's table: its `prefix<Name>` key's Name, and its part of the legacy namespace
# (legacyNamespace: stats.<part>.<key>; "" for counters: stats.<key>).
KINDS: dict[str, tuple[str, str]] = {
    "counters": ("Counter", ""),
    "timers": ("Timer", "timers"),
    "gauges": ("Gauge", "gauges"),
    "sets": ("Set", "sets"),
}
LEGACY_COUNTS = "stats_counts"  # legacyNamespace: a counter's count per flush, stats_counts.<key>
RATE, COUNT = "rate", "count"  # non-legacy: <ns>.<key>.rate and <ns>.<key>.count

DEFAULTS: dict[str, Any] = {
    "legacyNamespace": True,
    "globalPrefix": "stats",
    **{f"prefix{name}": table for table, (name, _) in KINDS.items()},
    "globalSuffix": None,
}


# Etsy's keyNameSanitize (0.9+ keeps `;` and `=` so Graphite tags survive).
_SAFE_KEY = re.compile(r"[A-Za-z0-9_.;=\-]*")
_SPACES = re.compile(r"\s+")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.;=\-]")


def sanitize_key(key: str) -> str:
    """Etsy's sanitizeKeyName: whitespace runs to `_`, `/` to `-`, drop anything else unusual.
    The daemon applies it to every key it receives (keyNameSanitize, on by default), so a name
    looked up by its sent spelling must go through it too."""
    if _SAFE_KEY.fullmatch(key):
        return key
    return _UNSAFE.sub("", _SPACES.sub("_", key).replace("/", "-"))


def pct_suffix(pct: float) -> str:
    """`90` -> `90`, `99.9` -> `99_9`, `-10` -> `top10`: the names Etsy gives percentile stats
    (`upper_99_9`, `lower_top10`), its percentThreshold number as JavaScript writes it."""
    return number(pct).replace(".", "_", 1).replace("-", "top", 1)


def namespace(legacy: bool, global_prefix: str, part: str) -> list[str]:
    """The path parts before a key: [globalPrefix] (always in the legacy layout, when set in the
    other), then the kind's part (legacy namespace part, or its prefix<Kind>) when not empty."""
    ns = [global_prefix] if legacy or global_prefix else []
    return ns + ([part] if part else [])


@dataclass(frozen=True)
class Layout:
    """One daemon's layout: `Layout.of(config)` from its config object (as the file holds it)."""

    graphite: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULTS))
    flush_counts: bool = True

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Layout:
        section = config.get("graphite") or {}
        return cls(
            {**DEFAULTS, **{k: v for k, v in section.items() if v is not None}},
            config.get("flush_counts", True) is not False,
        )

    @property
    def legacy(self) -> bool:
        return bool(self.graphite["legacyNamespace"])

    def namespace(self, table: str) -> list[str]:
        name, legacy_part = KINDS[table]
        part = legacy_part if self.legacy else self.graphite[f"prefix{name}"]
        return namespace(self.legacy, self.graphite["globalPrefix"] or "", part or "")

    def path(self, parts: list[str], key: str, *extra: str) -> str:
        """parts.key.extra + globalSuffix, a `;tag=value` part of the key kept at the end."""
        name, sep, tags = key.partition(";")
        suffix = self.graphite["globalSuffix"]
        return ".".join([*parts, name, *extra]) + ("." + suffix if suffix else "") + sep + tags

    def counter(self, key: str, count: bool = False) -> str:
        """A counter's per-second rate, or (`count`) its count per flush."""
        if self.legacy:
            return self.path([LEGACY_COUNTS] if count else self.namespace("counters"), key)
        return self.path(self.namespace("counters"), key, COUNT if count else RATE)

    def timer(self, key: str, stat: str) -> str:
        return self.path(self.namespace("timers"), key, stat)

    def gauge(self, key: str) -> str:
        return self.path(self.namespace("gauges"), key)

    def set(self, key: str) -> str:
        return self.path(self.namespace("sets"), key, COUNT)
