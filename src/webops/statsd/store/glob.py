"""Graphite's path wildcards, as the reference every faster matcher (nametree.py) is held to:
a pattern to one matcher a node, and the reference find and match over a list of names.

The meaning is graphite-web 1.1's (finders/standard.py): the pattern is split on its dots first,
each node's `{a,b}` braces are expanded (innermost first, so they nest: `a{1,{2,3}}`), and each
node of a name is matched by `fnmatch` against its node's expansions. Hence `[!1]` is the
negation and `[^1]` the set of `^` and `1`; a `[` with no `]` after it is a plain character
(`a[]`, `a[`); braces never span a dot (`{a.b,c}` is the nodes `{a` and `b,c}`, literal); and
no wildcard crosses a dot, whatever its class, since a name's nodes are matched one by one."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from math import prod

MAX_ALTERNATIVES = 1000  # patterns a path's {a,b} braces expand to, at most
_INNER_BRACES = re.compile(r"\{([^{}]*)\}")  # graphite-web's EXPAND_BRACES_RE: a pair with none inside
_WILD = re.compile(r"[*?\[]")  # what makes graphite-web match a node by fnmatch, not by its name


class GlobError(ValueError):
    """A path expression that cannot be matched: a 400 with this one line."""


@dataclass(frozen=True)
class Node:
    """One node of a pattern: the patterns its braces stand for, and one regex for them all
    (fnmatch's, whose `*` takes linear time in Python 3.11: atomic groups, no backtracking)."""

    alternatives: tuple[str, ...]
    regex: re.Pattern[str]

    @property
    def names(self) -> tuple[str, ...] | None:
        """The names this node stands for when none of its alternatives has a wildcard (looked
        up as they are, as graphite-web does), else None."""
        return None if any(map(_WILD.search, self.alternatives)) else self.alternatives

    def match(self, text: str) -> bool:
        return self.regex.match(text) is not None


def nodes(pattern: str) -> list[Node]:
    """The pattern's nodes; GlobError when its braces stand for more than MAX_ALTERNATIVES paths
    (expanded recursively, `{a,b}{c,d}...` is exponential: refused before it is built)."""
    out = []
    for part in pattern.split("."):
        alternatives = sorted(_expand(part))
        out.append(Node(tuple(alternatives), re.compile("|".join(map(fnmatch.translate, alternatives)))))
    if prod(len(n.alternatives) for n in out) > MAX_ALTERNATIVES:
        raise GlobError(f"a path's {{a,b}} braces stand for more than {MAX_ALTERNATIVES} paths")
    return out


def _expand(node: str) -> set[str]:
    """Every pattern a node's braces stand for, as graphite-web's expand_braces: the first pair
    of braces with none inside is replaced by each of its comma-separated texts, until none is left."""
    out, todo = set(), [node]
    while todo:
        p = todo.pop()
        m = _INNER_BRACES.search(p)
        if m is None:
            out.add(p)
        else:
            todo.extend(p[: m.start()] + alt + p[m.end() :] for alt in m[1].split(","))
        if len(out) + len(todo) > MAX_ALTERNATIVES:
            raise GlobError(f"a path's {{a,b}} braces stand for more than {MAX_ALTERNATIVES} paths")
    return out


def matches(pattern: list[Node], name: str) -> bool:
    """Whether a whole name is one the pattern's nodes stand for."""
    parts = name.split(".")
    return len(parts) == len(pattern) and all(n.match(p) for n, p in zip(pattern, parts, strict=True))


def find(names: Iterable[str], pattern: str) -> Iterator[tuple[str, bool]]:
    """(path, is_leaf) for every node the pattern names, as /metrics/find answers: series
    (leaves) and the branches above them; a path that is both comes twice."""
    compiled = nodes(pattern)
    depth = len(compiled)
    found: set[tuple[str, bool]] = set()
    for name in names:
        parts = name.split(".")
        if len(parts) >= depth and all(n.match(p) for n, p in zip(compiled, parts, strict=False)):
            found.add((".".join(parts[:depth]), len(parts) == depth))
    yield from sorted(found)


def matching(names: Iterable[str], pattern: str) -> list[str]:
    """The series a render target's path expression names."""
    compiled = nodes(pattern)
    return sorted(n for n in names if matches(compiled, n))
