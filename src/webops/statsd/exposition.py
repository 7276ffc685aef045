"""Prometheus' text exposition format: safe names and labels, and families that never collide.

Each family's `# TYPE` line names exactly the samples it covers (`# TYPE x_total counter`), as
Prometheus' own parser requires. Two statsd series can meet under one Prometheus name: when the
kinds differ the later kind's name gets a suffix (`x_gauge`), when they are of one kind the later
series gets a `statsd_name` label with its own statsd name; either way no sample is written twice
and no family is typed twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .jsfmt import number

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]  # (sample name, labels, value)


def metric_name(name: str) -> str:
    """A statsd name made Prometheus-safe: `api.get-user` -> `api_get_user`."""
    safe = _INVALID_NAME.sub("_", name) or "_"
    return "_" + safe if safe[0].isdigit() else safe


def split_key(key: str) -> tuple[str, str, Labels]:
    """`name;k=v;flag` -> (statsd name, prometheus name, labels); a bare tag gets "true"."""
    name, *tags = key.split(";")
    labels = []
    for tag in tags:
        k, sep, v = tag.partition("=")
        label = _INVALID_LABEL.sub("_", k) or "_"
        if label[0].isdigit():
            label = "_" + label
        labels.append((label, v if sep else "true"))
    return name, metric_name(name), tuple(sorted(labels))


def format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    esc = [(k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")) for k, v in labels]
    return "{" + ",".join(f'{k}="{v}"' for k, v in esc) + "}"


def format_value(v: float) -> str:
    return "NaN" if v != v else number(v).replace("Infinity", "Inf")


class Exposition:
    """Families being written: claims names so no two kinds share one, no series appears twice."""

    SUFFIXES = {"summary": ("", "_sum", "_count"), "histogram": ("_bucket", "_sum", "_count")}

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, list[str]]] = {}  # name -> (type, statsd kind, lines)
        self.owner: dict[str, str] = {}  # every sample name -> the family that writes it
        self.seen: set[tuple[str, Labels]] = set()

    def family(self, base: str, kind: str, tag: str) -> str:
        """The family name for a series of Prometheus type `kind` and statsd kind `tag` wanting
        `base`: `base` if it (and the names of its samples) is free or already used by the same
        kinds; otherwise `base_<tag>`."""
        for name in (base, f"{base}_{tag}", f"{base}_{tag}_"):
            samples = [name + s for s in self.SUFFIXES.get(kind, ("",))]
            if all(self.owner.get(s, name) == name for s in samples) and (
                name not in self.families or self.families[name][:2] == (kind, tag)
            ):
                for s in samples:
                    self.owner[s] = name
                self.families.setdefault(name, (kind, tag, []))
                return name
        raise AssertionError("unreachable: the last candidate is always free")

    def add(self, family: str, samples: Iterable[Sample], statsd_name: str) -> None:
        """One series' samples; relabelled with its statsd name if one of them is already taken."""
        samples = list(samples)
        if any((name, labels) in self.seen for name, labels, _ in samples):
            extra = (("statsd_name", statsd_name),)
            samples = [(name, tuple(sorted(labels + extra)), v) for name, labels, v in samples]
            if any((name, labels) in self.seen for name, labels, _ in samples):
                return  # the very same series twice: keep the first
        lines = self.families[family][2]
        for name, labels, value in samples:
            self.seen.add((name, labels))
            lines.append(f"{name}{format_labels(labels)} {format_value(value)}")

    def text(self) -> str:
        out = []
        for name, (kind, _, lines) in self.families.items():
            if lines:
                out.append(f"# TYPE {name} {kind}")
                out.extend(lines)
        return "\n".join(out) + "\n" if out else ""
