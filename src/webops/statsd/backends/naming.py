"""Etsy's Graphite naming: which metric paths a flush becomes, in both namespace layouts.

Shared by the Graphite backend and the file backend's plaintext format, so a file written by
webops holds exactly the lines carbon would have received.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..jsfmt import number
from ..protocol import sanitize_key
from ..snapshot import Snapshot


class GraphiteNaming:
    def __init__(self, config) -> None:
        g = config.section("graphite")
        self.legacy = g["legacyNamespace"]
        self.prefix_stats = config["prefixStats"]
        self.flush_counts = config["flush_counts"]
        # With keyNameSanitize off, names reach the backends raw; carbon's plaintext protocol
        # cannot carry spaces, so (as Etsy's graphite backend does) the name is cleaned here.
        self.clean = not config["keyNameSanitize"]
        suffix = g["globalSuffix"]
        self.suffix = "." + suffix if suffix else ""
        prefix = g["globalPrefix"]
        if self.legacy:
            self.global_ns = [prefix]
            self.counter_ns, self.timer_ns = [prefix], [prefix, "timers"]
            self.gauge_ns, self.set_ns = [prefix, "gauges"], [prefix, "sets"]
        else:
            base = [prefix] if prefix else []

            def ns(p: str) -> list[str]:
                return base + ([p] if p else [])

            self.global_ns = base
            self.counter_ns, self.timer_ns = ns(g["prefixCounter"]), ns(g["prefixTimer"])
            self.gauge_ns, self.set_ns = ns(g["prefixGauge"]), ns(g["prefixSet"])

    def path(self, namespace: list[str], key: str, *extra: str) -> str:
        """namespace.key.extra + globalSuffix, with the key's `;tag=value` part kept at the end."""
        name, sep, tags = key.partition(";")
        if self.clean:
            name = sanitize_key(name)
        return ".".join([*namespace, name, *extra]) + self.suffix + sep + tags

    def stats_path(self, *parts: str) -> str:
        """A path for the daemon's own stats: <globalPrefix>.<prefixStats>.<parts>."""
        return ".".join([*self.global_ns, self.prefix_stats, *parts]) + self.suffix

    def metrics(self, snap: Snapshot) -> Iterator[tuple[str, float]]:
        """Every (path, value) of a flush, in Etsy's order."""
        for key, value in snap.counters.items():
            rate = snap.counter_rates[key]
            if self.legacy:
                yield self.path(self.counter_ns, key), rate
                if self.flush_counts:
                    yield self.path(["stats_counts"], key), value
            else:
                yield self.path(self.counter_ns, key, "rate"), rate
                if self.flush_counts:
                    yield self.path(self.counter_ns, key, "count"), value
        for key, data in snap.timer_data.items():
            for stat, stat_value in data.items():
                if isinstance(stat_value, dict):
                    for bin_name, freq in stat_value.items():
                        yield self.path(self.timer_ns, key, stat, bin_name), freq
                else:
                    yield self.path(self.timer_ns, key, stat), stat_value
        for key, value in snap.gauges.items():
            yield self.path(self.gauge_ns, key), value
        for key, members in snap.sets.items():
            yield self.path(self.set_ns, key, "count"), len(members)
        if self.legacy:
            yield self.prefix_stats + ".numStats" + self.suffix, snap.num_stats
        else:
            yield self.stats_path("numStats"), snap.num_stats
        for key, value in snap.statsd_metrics.items():
            yield self.stats_path(key), value

    def plaintext(self, snap: Snapshot) -> str:
        """Carbon's plaintext protocol: `path value timestamp` lines."""
        ts = f" {snap.timestamp}\n"
        return "".join(f"{p} {number(v)}{ts}" for p, v in self.metrics(snap))
