"""Graphite's tagged series over the store's names, answered as graphite-web 1.1's tag database
(graphite/tags: base.py, utils.py, localdatabase.py) answers: the store keeps a DogStatsD-tagged
series under Graphite's tagged name (`stats.counters.req.rate;env=prod;route=home`), so its tag
database is the set of its names that carry tags; there is no second index to keep in step.

Pure: names in, answers out. The regular expressions (`tag=~`, /tags?filter=) are users' text
run on every name: the `regex` module (re's syntax) runs them with a timeout, as the render
functions' grep/exclude do, so `(a+)+$` is an answer and not a pinned thread.

Semantics, as graphite-web's: an expression is `tag=spec`, `tag!=spec`, `tag=~regex` or
`tag!=~regex`; a series without the tag has the value "" for it; a regex is anchored at the start
(`^(regex)` unless it begins with `^`); at least one expression must not match "" (else every
series would match); every series has the tag `name`, its metric path."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import regex

from .functions.filter import PATTERN_SECONDS

AUTOCOMPLETE_LIMIT = 100  # graphite-web's TAGDB_AUTOCOMPLETE_LIMIT
_SPEC = re.compile(r"^([^;!=]+)(!?=~?)([^;]*)$")  # graphite-web's parse_tagspec


class TagError(ValueError):
    """A request the tag database refuses: a 400 with this one line."""


def parse(name: str) -> dict[str, str] | None:
    """A tagged name's tags, `name` among them; None for a name without tags or one
    graphite-web's TaggedSeries.parse_carbon would refuse (it is not in its tag database)."""
    metric, sep, rest = name.partition(";")
    if not sep or not metric or not (value := metric.lstrip("~")):
        return None
    tags = {}
    for segment in rest.split(";"):
        tag, eq, value_ = segment.partition("=")
        if not eq or not tag or not value_ or value_[0] == "~" or any(c in tag for c in ";!^="):
            return None
        tags[tag] = value_
    tags["name"] = value
    return tags


@dataclass(frozen=True)
class Matcher:
    """One tag expression, ready to test a series' tags."""

    tag: str
    op: str
    spec: str
    pattern: Any  # a compiled `regex` for =~ and !=~

    def matches_empty(self) -> bool:
        return self.test("", time.monotonic() + PATTERN_SECONDS)

    def test(self, value: str, deadline: float) -> bool:
        if self.op == "=":
            return value == self.spec
        if self.op == "!=":
            return value != self.spec
        timeout = max(min(PATTERN_SECONDS, deadline - time.monotonic()), 0.001)
        try:
            found = self.pattern.match(value, timeout=timeout) is not None
        except TimeoutError:
            raise TagError(f"{self.tag}{self.op}{self.spec[:60]}: the pattern takes too long") from None
        return found if self.op == "=~" else not found


def anchored(pattern: str) -> str:
    """graphite-web's anchoring of a tag regex: at the start of the value, unless it says `^`."""
    return pattern if pattern.startswith("^") else f"^({pattern})"


def compile_regex(pattern: str, what: str) -> Any:
    try:
        return regex.compile(anchored(pattern))
    except (regex.error, re.error) as e:
        raise TagError(f"{what}: not a regular expression ({e})") from None
    except RecursionError:  # ((((... thousands deep
        raise TagError(f"{what}: a regular expression nested too deeply") from None


def matcher(expr: str) -> Matcher:
    m = _SPEC.match(expr)
    if m is None:
        raise TagError(f"Invalid tagspec {expr[:100]}")
    tag, op, spec = m.groups()
    return Matcher(tag, op, spec, compile_regex(spec, expr[:100]) if "~" in op else None)


def matchers(exprs: Sequence[str]) -> list[Matcher]:
    """The expressions, refused unless one needs a value (graphite-web's rule)."""
    found = [matcher(e) for e in exprs]
    if all(m.matches_empty() for m in found):
        raise TagError("At least one tagspec must not match the empty string")
    return found


def tagged(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """The tagged names among `names`, each with its tags."""
    return {n: tags for n in names if (tags := parse(n)) is not None}


def find_series(names: Iterable[str], exprs: Sequence[str], deadline: float = float("inf")) -> list[str]:
    """The tagged names matching every expression, sorted (graphite-web orders by path)."""
    if not exprs:
        raise TagError("no tag expressions specified")
    ms = matchers(list(dict.fromkeys(exprs)))  # a repeat changes nothing but the cost
    # each expression's answer per value: values repeat across series (env=prod on thousands)
    seen: list[dict[str, bool]] = [{} for _ in ms]

    def test(m: Matcher, known: dict[str, bool], value: str) -> bool:
        if value not in known:
            known[value] = m.test(value, deadline)
        return known[value]

    out = []
    for name, tags in tagged(names).items():
        if time.monotonic() > deadline:
            raise TagError("the tag query ran past the request's deadline: narrow the expressions")
        if all(test(m, known, tags.get(m.tag, "")) for m, known in zip(ms, seen, strict=True)):
            out.append(name)
    return sorted(out)


def _limit(limit: str | None, default: int | None) -> int | None:
    if not limit:
        return default
    try:
        return max(int(limit), 0)
    except ValueError:
        raise TagError(f"limit: expected a whole number, not {limit[:20]!r}") from None


def _filtered(items: Iterable[str], pattern: str | None, deadline: float) -> list[str]:
    """`items` sorted, those an anchored `pattern` (graphite-web's filter) matches."""
    if not pattern:
        return sorted(items)
    m = Matcher("filter", "=~", pattern, compile_regex(pattern, "filter"))
    return sorted(i for i in items if m.test(i, deadline))


def list_tags(
    names: Iterable[str],
    tag_filter: str | None = None,
    limit: str | None = None,
    deadline: float = float("inf"),
) -> list[dict[str, str]]:
    """/tags: every tag, sorted, those `tag_filter` (a regex) matches, the first `limit`."""
    every = {t for tags in tagged(names).values() for t in tags}
    return [{"tag": t} for t in _filtered(every, tag_filter, deadline)[: _limit(limit, None)]]


def auto_complete_tags(
    names: Iterable[str],
    exprs: Sequence[str],
    prefix: str | None = None,
    limit: str | None = None,
    deadline: float = float("inf"),
) -> list[str]:
    """/tags/autoComplete/tags: the tags of the series the expressions match (every series
    without any), except the ones they name, starting with `prefix`."""
    count = _limit(limit, AUTOCOMPLETE_LIMIT)
    if exprs:
        searched = {matcher(e).tag for e in exprs}
        db = tagged(names)
        every = {t for n in find_series(db, exprs, deadline) for t in db[n] if t not in searched}
    else:
        every = {t for tags in tagged(names).values() for t in tags}
    return sorted(t for t in every if t.startswith(prefix or ""))[:count]


def auto_complete_values(
    names: Iterable[str],
    exprs: Sequence[str],
    tag: str,
    prefix: str | None = None,
    limit: str | None = None,
    deadline: float = float("inf"),
) -> list[str]:
    """/tags/autoComplete/values: the values of `tag` on the series the expressions match (every
    series without any), starting with `prefix`."""
    count = _limit(limit, AUTOCOMPLETE_LIMIT)
    db = tagged(names)
    chosen = find_series(db, [*exprs, f"{tag}!="], deadline) if exprs else db
    values = {db[n][tag] for n in chosen if tag in db[n]}
    return sorted(v for v in values if v.startswith(prefix or ""))[:count]
