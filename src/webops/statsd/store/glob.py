"""Graphite's path wildcards, as the reference every faster matcher (nametree.py) is held to:
a pattern to one regex over whole names, and the reference find and match over a list of names."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

MAX_ALTERNATIVES = 1000  # patterns a path's {a,b} braces expand to, at most


class GlobError(ValueError):
    """A path expression that cannot be matched: a 400 with this one line."""


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Graphite's wildcards, node by node: `*`, `?`, `[0-9]`, `{a,b*}` (wildcards inside braces
    too); none of them crosses a dot.

    Matching takes time linear in the name whatever the pattern: braces are expanded first, and
    each `*` but a node's last takes the first place its following text matches, as an atomic
    group (Python 3.11). Translated naively, `*a*a*a*a*b` against a long name of `a`s backtracks
    for hours, holding the GIL, so no deadline could stop it."""
    return re.compile("(?:" + "|".join(map(_path_regex, _expand(pattern))) + r")\Z")


def _expand(pattern: str) -> list[str]:
    """Every pattern that `{a,b}` braces stand for (left to right, as graphite-web expands them)."""
    out, todo = [], [pattern]
    while todo:
        p = todo.pop()
        start = p.find("{")
        close = p.find("}", start)
        if start < 0 or close < 0:
            out.append(p)
        else:
            todo.extend(p[:start] + alt + p[close + 1 :] for alt in reversed(p[start + 1 : close].split(",")))
        if len(out) + len(todo) > MAX_ALTERNATIVES:
            raise GlobError(f"a path's {{a,b}} braces stand for more than {MAX_ALTERNATIVES} paths")
    return out


def _tokens(node: str) -> list[str]:
    """A node's pattern as regex pieces: `*`, or one piece that matches exactly one character."""
    out = []
    i = 0
    while i < len(node):
        c = node[i]
        if c == "*":
            out.append("*")
        elif c == "?":
            out.append("[^.]")
        elif c == "[" and (close := node.find("]", i)) > i:
            out.append("[" + node[i + 1 : close].replace("\\", "\\\\") + "]")
            i = close
        else:
            out.append(re.escape(c))
        i += 1
    return out


def _path_regex(pattern: str) -> str:
    return r"\.".join(map(_node_regex, pattern.split(".")))


def _node_regex(node: str) -> str:
    """One node: the text before its first `*` anchored, every text between two `*`s at its first
    match (atomic: never tried again further on), the text after the last `*` at the node's end.
    Taking the first match is always right for a text of fixed length with a `*` after it."""
    chunks: list[list[str]] = [[]]
    for token in _tokens(node):
        if token == "*":
            chunks.append([])
        else:
            chunks[-1].append(token)
    texts = ["".join(c) for c in chunks]
    regex = texts[0] + "".join(f"(?>[^.]*?{t})" for t in texts[1:-1] if t)
    return regex + ("[^.]*" + texts[-1] if len(texts) > 1 else "")


def find(names: Iterable[str], pattern: str) -> Iterator[tuple[str, bool]]:
    """(path, is_leaf) for every node the pattern names, as /metrics/find answers: series
    (leaves) and the branches above them; a path that is both comes twice."""
    depth = pattern.count(".") + 1
    regex = glob_regex(pattern)
    found: set[tuple[str, bool]] = set()
    for name in names:
        parts = name.split(".")
        if len(parts) >= depth and regex.match(node := ".".join(parts[:depth])):
            found.add((node, len(parts) == depth))
    yield from sorted(found)


def matching(names: Iterable[str], pattern: str) -> list[str]:
    """The series a render target's path expression names."""
    regex = glob_regex(pattern)
    return sorted(n for n in names if regex.match(n))
