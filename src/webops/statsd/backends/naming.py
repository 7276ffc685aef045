"""Etsy's Graphite naming: which metric paths a flush becomes, in both namespace layouts.

Shared by the Graphite backend and the file backend's plaintext format, so a file written by
webops holds exactly the lines carbon would have received.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..jsfmt import number
from ..kinds import KINDS
from ..kinds.base import Kind, Point
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
        self.global_ns = [prefix] if self.legacy or prefix else []
        self.namespaces: dict[str, list[str]] = {}
        for kind in KINDS:
            part = kind.legacy_namespace if self.legacy else g[f"prefix{kind.graphite_name}"]
            self.namespaces[kind.table] = self.global_ns + ([part] if part else [])

    def namespace(self, kind: type[Kind]) -> list[str]:
        return self.namespaces[kind.table]

    def path(self, namespace: list[str], key: str, *extra: str) -> str:
        """namespace.key.extra + globalSuffix, with the key's `;tag=value` part kept at the end."""
        name, sep, tags = key.partition(";")
        if self.clean:
            name = sanitize_key(name)
        return ".".join([*namespace, name, *extra]) + self.suffix + sep + tags

    def stats_path(self, *parts: str) -> str:
        """A path for the daemon's own stats: <globalPrefix>.<prefixStats>.<parts>."""
        return ".".join([*self.global_ns, self.prefix_stats, *parts]) + self.suffix

    def points(self, snap: Snapshot) -> Iterator[Point]:
        """Every value of a flush with its rollup, in Etsy's order."""
        for kind in KINDS:
            raw, summaries = snap.tables[kind.table], snap.summaries[kind.table]
            for key, summary in summaries.items():
                yield from kind.graphite(self, key, raw[key], summary)
        if self.legacy:
            yield Point(self.prefix_stats + ".numStats" + self.suffix, snap.num_stats, "last")
        else:
            yield Point(self.stats_path("numStats"), snap.num_stats, "last")
        for key, value in snap.statsd_metrics.items():
            yield Point(self.stats_path(key), value, "average")

    def metrics(self, snap: Snapshot) -> Iterator[tuple[str, float]]:
        """Every (path, value) of a flush, in Etsy's order: what carbon receives."""
        for point in self.points(snap):
            yield point.path, point.value

    def plaintext(self, snap: Snapshot) -> str:
        """Carbon's plaintext protocol: `path value timestamp` lines."""
        ts = f" {snap.timestamp}\n"
        return "".join(f"{p} {number(v)}{ts}" for p, v in self.metrics(snap))
