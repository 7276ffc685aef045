"""The configuration, wired: config.py's core keys with the plug-in packages' own, and what the
daemon derives from a config.

config.py is a leaf that validates and holds values; this module knows the parts that bring keys
(each metric kind, each backend, the listeners, the hot path) and assembles them into the one
`Schema` every config is checked against, so the parts stay below config in the import order
instead of config sitting on top of all of them. `build` and `load` are config.py's with that
schema, giving a `Config`: the values plus the settings objects the aggregator, the flush, the
listeners and the hot path take.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from ..common.config import ConfigError as ConfigError
from . import backends, config, hotpath, kinds, listeners, prometheus
from .aggregate import AggregationSettings
from .config import StatsdConfig as StatsdConfig
from .listeners import Listener
from .prometheus import PrometheusSettings
from .snapshot import SummarySettings

# The listeners' keys right after `port` and the hot path's after `readers`, as Etsy and docs/statsd.md
# list them (the order `--check-config` and the console's `config` print); each metric kind's
# keys (delete<Kind>, ...), then each backend's.
SCHEMA = config.assemble(
    {"port": listeners.CONFIG_KEYS, "readers": hotpath.CONFIG_KEYS}, kinds.CONFIG_KEYS, backends.CONFIG_KEYS
)
SECTIONS = {**config.SECTIONS, **backends.SECTIONS}
WIRED = config.Schema(
    SCHEMA, SECTIONS, tuple(backends.REGISTRY), tuple(kind.delete_key() for kind in kinds.KINDS)
)


SETTINGS = config.settings(WIRED)  # the flags of `webops statsd`, from the keys that name one


class Config(config.StatsdConfig):
    """A config checked against the whole schema, with the settings the daemon derives from it."""

    @property
    def listeners(self) -> list[Listener]:
        return listeners.configured(self.raw)

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
        return SummarySettings(
            flush_interval_ms=r["flushInterval"],
            options=self.kind_options(),
            native_timers=self.hot_path == "native",
        )

    @functools.cached_property
    def prometheus(self) -> PrometheusSettings:
        """/metrics' settings, the mapping file read and compiled once per config: its lookups
        cached for up to maxSeries names (the most series there can be)."""
        try:
            return prometheus.configured(self.raw["prometheus"], self.raw["maxSeries"])
        except ConfigError as e:
            raise ConfigError(f"prometheus.mapping: {e}") from None

    def kind_options(self) -> dict[str, Any]:
        """The values of the metric kinds' own keys (percentThreshold, gaugesMaxTTL, ...)."""
        return {key: self.raw[key] for key in kinds.CONFIG_KEYS}


def backend_name(spec: str) -> str:
    """`./backends/graphite`, `graphite`, `Graphite` (Perl) all name the same backend."""
    return WIRED.backend_name(spec)


def build(user: dict[str, Any], path: str | None = None, text: str = "") -> Config:
    """Validate a user's config dict and fill in defaults; errors name the file, line and key."""
    return _read_files(Config(**vars(config.build(user, WIRED, path, text))))


def load(path: str | None, flags: dict[str, Any] | None = None) -> Config:
    """Read a config file (or none: built-in defaults), then apply the command line's flags
    (`SETTINGS.flags(args)`: by key name, as text)."""
    return _read_files(Config(**vars(config.load(path, WIRED, flags))))


def _read_files(cfg: Config) -> Config:
    """The files a config names, read now: a bad mapping file fails the start and
    --check-config (exit 2), and a reload keeps the running configuration."""
    _ = cfg.prometheus  # cached: read once per config
    return cfg
