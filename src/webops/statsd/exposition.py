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
Sample = tuple[str, Labels, float]  # (sample name, its labels beyond its series', value)


def metric_name(name: str) -> str:
    """A statsd name made Prometheus-safe: `api.get-user` -> `api_get_user`."""
    safe = _INVALID_NAME.sub("_", name) or "_"
    return "_" + safe if safe[0].isdigit() else safe


# Labels /metrics writes itself (a histogram's `le`, a summary's `quantile`, the `statsd_name`
# that tells two colliding series apart), and Prometheus' own `__` names: a tag or a mapping
# rule's label of one of these names becomes `exported_<name>`, as Prometheus renames a target's
# conflicting labels; otherwise one client's tag `le` made a line Prometheus rejects, failing
# the whole scrape.
RESERVED_LABELS = frozenset({"le", "quantile", "statsd_name"})


def label_name(k: str) -> str:
    """A tag's or a rule's label name, made Prometheus-safe and kept off the reserved ones."""
    label = _INVALID_LABEL.sub("_", k) or "_"
    if label[0].isdigit():
        label = "_" + label
    return "exported_" + label if label in RESERVED_LABELS or label.startswith("__") else label


def split_key(key: str) -> tuple[str, str, Labels]:
    """`name;k=v;flag` -> (statsd name, prometheus name, labels); a bare tag gets "true"."""
    name, *tags = key.split(";")
    labels = []
    for tag in tags:
        k, sep, v = tag.partition("=")
        labels.append((label_name(k), v if sep else "true"))
    return name, metric_name(name), tuple(sorted(labels))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_text(labels: Labels) -> str:
    """`k="v",k2="v2"`: the labels inside the braces."""
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels)


def format_labels(labels: Labels) -> str:
    return "{" + label_text(labels) + "}" if labels else ""


def format_value(v: float) -> str:
    """JavaScript's Number#toString, with Prometheus' NaN and +Inf/-Inf. A float whose repr is in
    positional notation (1e-4 <= |v| < 1e16) is written by JS with the same shortest digits, so
    repr serves it: a /metrics render writes hundreds of thousands of values."""
    if type(v) is float:
        if not v:
            return "0"  # -0.0 too, as in JS
        r = repr(v)
        if "e" not in r and "n" not in r:  # not 1e+16, inf, nan
            return r[:-2] if r.endswith(".0") else r
    elif type(v) is int:
        return str(v)
    return "NaN" if v != v else number(v).replace("Infinity", "Inf")


class Exposition:
    """Families being written: claims names so no two kinds share one, no series appears twice."""

    SUFFIXES = {"summary": ("", "_sum", "_count"), "histogram": ("_bucket", "_sum", "_count")}

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str, list[str]]] = {}  # name -> (type, statsd kind, lines)
        self.owner: dict[str, str] = {}  # every sample name -> the family that writes it
        self.claimed: dict[tuple[str, str, str], str] = {}  # family()'s answers: owners never change
        self.seen: set[tuple[str, Labels]] = set()  # (family, labels) of each series written
        self.fragments: dict[Labels, str] = {}  # label_text of samples' own labels (le, quantile)
        self.values: dict[float, str] = {}  # format_value's: bucket counts repeat a lot

    def family(self, base: str, kind: str, tag: str) -> str:
        """The family name for a series of Prometheus type `kind` and statsd kind `tag` wanting
        `base`: `base` if it (and the names of its samples) is free or already used by the same
        kinds; otherwise `base_<tag>`. As names are only ever claimed, never given back, the
        answer for (base, kind, tag) stays the same: asked again, it is looked up."""
        claimed = self.claimed.get((base, kind, tag))
        if claimed is not None:
            return claimed
        owner, families, suffixes = self.owner, self.families, self.SUFFIXES.get(kind, ("",))
        for name in (base, f"{base}_{tag}", f"{base}_{tag}_"):
            samples = [name + s for s in suffixes]
            known = families.get(name)
            if (known is None or known[:2] == (kind, tag)) and all(
                owner.get(s, name) == name for s in samples
            ):
                for s in samples:
                    owner[s] = name
                if known is None:
                    families[name] = (kind, tag, [])
                self.claimed[base, kind, tag] = name
                return name
        raise AssertionError("unreachable: the last candidate is always free")

    def add(self, family: str, labels: Labels, samples: Iterable[Sample], statsd_name: str) -> None:
        """One series of `family` with `labels`, as its samples: relabelled with its statsd name if
        the family has that series already. Every kind's series has a sample with exactly the
        series' labels (a gauge's value, a summary's or histogram's `_sum`), and a family's sample
        names are its own, so one seen (family, labels) stands for all the series' samples; the
        series' label text is written once for all of them."""
        lines = self.families[family][2]
        if (family, labels) in self.seen:
            labels = tuple(sorted((*labels, ("statsd_name", statsd_name))))
            if (family, labels) in self.seen:
                return  # the very same series twice: keep the first
            self.seen.add((family, labels))
            lines.extend(
                f"{name}{format_labels(tuple(sorted(labels + extra)))} {format_value(value)}"
                for name, extra, value in samples
            )
            return
        self.seen.add((family, labels))
        own = label_text(labels)
        braced, joined = ("{" + own + "}", "{" + own + ",") if own else ("", "{")
        fragments, values = self.fragments, self.values
        for name, extra, value in samples:
            text = values.get(value)
            if text is None:
                text = values[value] = format_value(value)
            if not extra:
                lines.append(f"{name}{braced} {text}")
                continue
            fragment = fragments.get(extra)
            if fragment is None:
                fragment = fragments[extra] = label_text(extra)
            lines.append(f"{name}{joined}{fragment}}} {text}")

    def text(self) -> str:
        out = []
        for name, (kind, _, lines) in self.families.items():
            if lines:
                out.append(f"# TYPE {name} {kind}")
                out.extend(lines)
        return "\n".join(out) + "\n" if out else ""
