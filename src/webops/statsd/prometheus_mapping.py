"""statsd_exporter's mapping file, read the way statsd_exporter reads it: which statsd names
become which Prometheus names and labels on /metrics (`prometheus: {mapping: FILE}`).

Teams moving from statsd_exporter keep their mapping files, so the format is its format (YAML;
JSON is YAML too): `defaults` (match_type, observer_type, histogram_options.buckets,
glob_disable_ordering) and `mappings`, each with match, match_type (glob, regex), name, labels,
honor_labels, action (map, drop), match_metric_type (counter, gauge, observer), observer_type
(summary, histogram) and histogram_options.buckets. Its matching order is statsd_exporter's too:
every glob rule is tried before any regex rule; among globs the first in the file wins (with
`glob_disable_ordering`, the most specific: a literal node beats `*`, left to right); regexes
are tried in file order and match anywhere in the name (`match: "."` matches every name).

One difference, said loudly in docs/statsd.md: statsd_exporter divides timer values by 1000
(ms to s) before they meet its buckets; webops keeps the unit the values were sent in, so the
buckets of a mapping file are read in that unit (ms for `|ms` timers).

Pure: `parse` takes the file's object, `load` reads a file; a `Mapper` is compiled once and
remembers its answers per (name, metric type) in a bounded LRU cache, so a flood of new names
costs lookups, never unbounded memory. Regex rules run on the `regex` module with a time limit
per name and rule: a pattern that backtracks catastrophically (`(a+)+$`) on a name a client
chose costs REGEX_SECONDS and counts as no match, instead of holding the daemon.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import regex
import yaml

from ..common.config import ConfigError, read_text
from ..common.ratelimit import RateLimitedLog
from ..common.text import printable
from .exposition import Labels, label_name, metric_name
from .validate import buckets

log = logging.getLogger("webops.statsd")
slow_log = RateLimitedLog(log, "slow mapping regexes")

MATCH_TYPES = ("glob", "regex")
REGEX_SECONDS = 0.05  # per name and regex rule; a lookup's answer is then cached
ACTIONS = ("map", "drop")
METRIC_TYPES = ("counter", "gauge", "observer")  # statsd_exporter's; set sizes count as gauges
OBSERVER_TYPES = ("summary", "histogram")

# Accepted so statsd_exporter's files load, and without effect here (docs/statsd.md says so):
# help texts, series TTLs, summary objectives (webops' quantiles are percentThreshold's) and
# native-histogram tuning (webops writes the text format, which has no native histograms).
IGNORED = {"help", "ttl", "summary_options"}
IGNORED_DEFAULTS = {"ttl", "summary_options"}
IGNORED_HISTOGRAM = {"native_histogram_bucket_factor", "native_histogram_max_buckets"}
RULE_KEYS = {
    "match",
    "match_type",
    "name",
    "labels",
    "honor_labels",
    "action",
    "match_metric_type",
    "observer_type",
    "histogram_options",
    *IGNORED,
}
DEFAULT_KEYS = {
    "match_type",
    "observer_type",
    "histogram_options",
    "glob_disable_ordering",
    *IGNORED_DEFAULTS,
}

# statsd_exporter's own checks of a glob, a name template and a label name
_GLOB = re.compile(r"(\*|[a-zA-Z_][a-zA-Z0-9_-]*)(\.\*|\.[a-zA-Z0-9_][a-zA-Z0-9_-]*)*")
_TEMPLATE_REF = r"\$\{?\d+\}?"
_NAME = re.compile(rf"([a-zA-Z_]|{_TEMPLATE_REF})([a-zA-Z0-9_]|{_TEMPLATE_REF})*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# How each kind of rule fills in its captures (both as statsd_exporter does): a glob's `$N` or
# `${N}` (a reference to anything else, `$1_x` included, is empty: write `${1}_x`); a regex's Go
# `Expand`: `$1`, `${1}`, `$name`, `${name}`, `$$` for a dollar.
_GLOB_REF = re.compile(r"\$\{?([a-zA-Z0-9_$]+)\}?")
_REGEX_REF = re.compile(r"\$(?:(\$)|\{([a-zA-Z0-9_]+)\}|([a-zA-Z0-9_]+))")


@dataclass(frozen=True)
class Mapped:
    """What a rule makes of one statsd name."""

    name: str  # a valid Prometheus name
    labels: Labels  # the rule's, filled in
    drop: bool = False  # action: drop: the series leaves /metrics
    honor_labels: bool = False  # a DogStatsD tag wins over the rule's label of the same name
    observer: str | None = None  # summary / histogram; None: the config's prometheus.timers
    buckets: tuple[float, ...] | None = None  # None: the config's prometheus.buckets


@dataclass(frozen=True)
class Rule:
    index: int  # place in the file, from 0
    pattern: Any  # re.Pattern for a glob (linear by construction), regex.Pattern for a regex
    glob: bool
    specificity: tuple[int, ...]  # a glob's nodes, 0 literal and 1 `*`: glob_disable_ordering's rank
    name: str
    labels: tuple[tuple[str, str], ...]
    drop: bool
    honor_labels: bool
    metric_type: str | None
    observer: str | None
    buckets: tuple[float, ...] | None

    def apply(self, match: Any) -> Mapped:
        fill: Callable[[str], str] = (
            functools.partial(_glob_fill, match.groups())
            if self.glob
            else functools.partial(_regex_fill, match)
        )
        labels = tuple(sorted((k, fill(v)) for k, v in self.labels))
        return Mapped(
            metric_name(fill(self.name)), labels, self.drop, self.honor_labels, self.observer, self.buckets
        )


def _glob_fill(captures: tuple[str, ...], template: str) -> str:
    def ref(m: re.Match[str]) -> str:
        n = m.group(1)
        return captures[int(n) - 1] if n.isdigit() and 1 <= int(n) <= len(captures) else ""

    return _GLOB_REF.sub(ref, template)


def _regex_fill(match: Any, template: str) -> str:
    def ref(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        group = m.group(2) or m.group(3)
        try:
            return match.group(int(group) if group.isdigit() else group) or ""
        except IndexError:  # no such group: empty, as Go's Expand
            return ""

    return _REGEX_REF.sub(ref, template)


class Mapper:
    """The compiled rules; `map(name, metric_type)` is the one question asked of them."""

    def __init__(
        self, rules: list[Rule], glob_disable_ordering: bool = False, cache_size: int = 100_000
    ) -> None:
        self.rules = rules
        self.globs = [r for r in rules if r.glob]
        self.regexes = [r for r in rules if not r.glob]
        self.ordered = not glob_disable_ordering
        self.map = functools.lru_cache(maxsize=cache_size)(self._map)
        self.timeouts = 0  # regex lookups abandoned at REGEX_SECONDS

    def _map(self, name: str, metric_type: str) -> Mapped | None:
        """The first rule that matches `name` of `metric_type` (counter, gauge, observer), applied;
        None when none does (the name is then exposed as without a mapping)."""
        found = None
        for rule in self.globs:
            if rule.metric_type not in (None, metric_type):
                continue
            m = rule.pattern.fullmatch(name)
            if m and (found is None or (not self.ordered and rule.specificity < found[0].specificity)):
                found = (rule, m)
                if self.ordered:
                    break
        if found is None:
            for rule in self.regexes:
                if rule.metric_type not in (None, metric_type):
                    continue
                try:
                    m = rule.pattern.search(name, timeout=REGEX_SECONDS)
                except TimeoutError:
                    self.timeouts += 1
                    slow_log.warning(
                        "prometheus.mapping: rule %d (%s) gave up on a name after %g s (%d so far); "
                        "it counts as no match",
                        rule.index,
                        printable(rule.pattern.pattern),
                        REGEX_SECONDS,
                        self.timeouts,
                    )
                    continue
                if m:
                    found = (rule, m)
                    break
        return found[0].apply(found[1]) if found else None


def load(path: str, cache_size: int = 100_000) -> Mapper:
    """A mapping file, compiled; a ConfigError naming the file and the problem in one line."""
    shown = printable(path)
    text = read_text(path)
    if not text.strip():  # also the moment `cp` has truncated the file and not yet written it
        raise ConfigError(f"{shown}: empty (a file without rules says `mappings: []`)")
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader, stricter
        if doc is None:  # comments only
            raise ConfigError(f"{shown}: empty (a file without rules says `mappings: []`)")
        return parse(doc, cache_size)
    except yaml.MarkedYAMLError as e:
        where = f" at line {e.problem_mark.line + 1}" if e.problem_mark else ""
        raise ConfigError(f"{shown}: not YAML{where}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{shown}: not YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise ConfigError(f"{shown}: nested too deeply") from None
    except ValueError as e:  # parse's, and YAML's own (an integer of over 4,300 digits)
        raise ConfigError(f"{shown}: {' '.join(str(e).split())}") from None


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe subset, refusing a key given twice in one object, as statsd_exporter's strict
    reading does (otherwise the second `mappings:` would silently replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)  # type: ignore[no-untyped-call,no-any-return]


def parse(doc: Any, cache_size: int = 100_000) -> Mapper:
    """A mapping file's object, compiled; ValueError saying which rule is wrong and why."""
    if not isinstance(doc, dict):
        raise ValueError(f"expected an object with defaults and mappings, got {type(doc).__name__}")
    _known(doc, {"defaults", "mappings"}, "the file")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ValueError(f"defaults: expected an object, got {defaults!r}")
    _known(defaults, DEFAULT_KEYS, "defaults")
    try:
        match_type = _one_of(defaults, "match_type", MATCH_TYPES) or "glob"
        observer = _one_of(defaults, "observer_type", OBSERVER_TYPES)
        bounds = _buckets(defaults)
        unordered = defaults.get("glob_disable_ordering", False)
        if not isinstance(unordered, bool):
            raise ValueError(f"glob_disable_ordering: expected true or false, got {unordered!r}")
    except ValueError as e:
        raise ValueError(f"defaults: {e}") from None
    mappings = doc.get("mappings") or []
    if not isinstance(mappings, list):
        raise ValueError(f"mappings: expected a list of rules, got {mappings!r}")
    rules = []
    for i, entry in enumerate(mappings):
        shown = f"mappings[{i}]"
        if isinstance(entry, dict) and isinstance(entry.get("match"), str):
            shown += f" (match {entry['match']!r})"
        try:
            rules.append(_rule(i, entry, match_type, observer, bounds))
        except ValueError as e:
            raise ValueError(f"{shown}: {e}") from None
    return Mapper(rules, unordered, cache_size)


def _rule(
    index: int, entry: Any, match_type: str, observer: str | None, bounds: tuple[float, ...] | None
) -> Rule:
    if not isinstance(entry, dict):
        raise ValueError(f"expected an object with match and name, got {entry!r}")
    _known(entry, RULE_KEYS, "a rule")
    match = entry.get("match")
    if not isinstance(match, str) or not match:
        raise ValueError(f"match: expected a glob or a regex, got {match!r}")
    glob = (_one_of(entry, "match_type", MATCH_TYPES) or match_type) == "glob"
    if glob:
        if not _GLOB.fullmatch(match):
            raise ValueError("invalid glob: nodes are `*` or names of letters, digits, _ and -")
        nodes = match.split(".")
        pattern = re.compile(r"\.".join("([^.]*)" if n == "*" else re.escape(n) for n in nodes))
        specificity = tuple(int(n == "*") for n in nodes)
    else:
        try:
            pattern = regex.compile(match, flags=regex.V0)
        except regex.error as e:
            raise ValueError(f"invalid regex: {e}") from None
        specificity = ()
    action = _one_of(entry, "action", ACTIONS) or "map"
    name = entry.get("name")
    if name is None or name == "":
        raise ValueError("name: every rule needs a metric name (a drop rule too, as statsd_exporter asks)")
    if not isinstance(name, str):
        raise ValueError(f"name: expected a string, got {name!r}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"name: {name!r} is not a Prometheus name (letters, digits, _, and $N captures)")
    labels = entry.get("labels") or {}
    if not isinstance(labels, dict):
        raise ValueError(f"labels: expected an object, got {labels!r}")
    for k, v in labels.items():
        if not isinstance(k, str) or not _LABEL.fullmatch(k):
            raise ValueError(f"labels: {k!r} is not a label name")
        if k.startswith("__"):
            raise ValueError(f"labels: {k!r}: names starting with __ are Prometheus' own")
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise ValueError(f"labels: {k}: expected a string, got {v!r}")
    honor = entry.get("honor_labels", False)
    if not isinstance(honor, bool):
        raise ValueError(f"honor_labels: expected true or false, got {honor!r}")
    return Rule(
        index=index,
        pattern=pattern,
        glob=glob,
        specificity=specificity,
        name=name,
        labels=tuple((label_name(k), str(v)) for k, v in labels.items()),  # `le` -> `exported_le`
        drop=action == "drop",
        honor_labels=honor,
        metric_type=_one_of(entry, "match_metric_type", METRIC_TYPES),
        observer=_one_of(entry, "observer_type", OBSERVER_TYPES) or observer,
        buckets=_buckets(entry) or bounds,
    )


def _known(obj: Mapping[str, Any], keys: set[str], what: str) -> None:
    """statsd_exporter reads its file strictly: a misspelt key is an error, not a silent no-op."""
    for k in obj:
        if k not in keys:
            raise ValueError(f"unknown key {k!r} in {what} (known: {', '.join(sorted(keys))})")


def _one_of(obj: Mapping[str, Any], key: str, options: tuple[str, ...]) -> str | None:
    value = obj.get(key)
    if value in (None, ""):
        return None
    if value not in options:
        raise ValueError(f"{key}: expected one of {', '.join(options)}, got {value!r}")
    return str(value)


def _buckets(obj: Mapping[str, Any]) -> tuple[float, ...] | None:
    options = obj.get("histogram_options")
    if options is None:
        return None
    if not isinstance(options, dict):
        raise ValueError(f"histogram_options: expected an object, got {options!r}")
    _known(options, {"buckets", *IGNORED_HISTOGRAM}, "histogram_options")
    if options.get("buckets") is None:
        return None
    try:
        return tuple(buckets(options["buckets"]))
    except ValueError as e:
        raise ValueError(f"histogram_options: buckets: {e}") from None
