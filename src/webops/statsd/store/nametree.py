"""The series' names as a tree of nodes in the store's own file (table `nodes`), so a wildcard
is answered by walking the nodes it can match, level by level, instead of matching every name:
`stats.timers.host0.*.mean` at 100,000 series reads host0's thousand children, not 100,000 names.

Why a table and not a tree in memory: it is written in the same transaction as the series it
names, so every reader (the render threads, another process reading the file, the next start)
sees the names and the points of one committed state; it costs the daemon no memory (a tree of
dicts for two million names is several hundred MB); and a file written by an older webops gets
its nodes once, at open (db.py).

A row is one node: its parent (0 for the top), its name (the text between two dots), and the
series whose whole name ends there (NULL for a branch only). A node is kept while a series ends
at it or below it: creating a series adds its missing ancestors, dropping one prunes the nodes
left with neither.

The matching is the reference's (glob.py), node by node as graphite-web matches it: each level's
children are looked up by name, or filtered by that level's regex when it has a wildcard. A
pattern's braces are expanded within their node, so a walk is one per pattern, however many
paths its braces stand for; and since no wildcard crosses a dot, no pattern needs every name."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from . import glob

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL, "
    "name TEXT NOT NULL, series INTEGER, UNIQUE (parent, name))",
    # a series' end, for the purge (unlink): found by its id, not by walking down its name
    "CREATE INDEX IF NOT EXISTS nodes_series ON nodes (series) WHERE series IS NOT NULL",
)
_PAIRS = "SELECT value ->> 0 AS parent, value ->> 1 AS name FROM json_each(?)"
_NODES = f"SELECT n.parent, n.name, n.id FROM ({_PAIRS}) AS p JOIN nodes n USING (parent, name)"
_IDS = "SELECT value FROM json_each(?)"


def link(db: sqlite3.Connection, series: Iterable[tuple[int, str]]) -> None:
    """Add the nodes of these (id, name) series, in the writer's transaction, a level at a time.

    Only the nodes whose parent was there before are looked up (one query a level); below a
    node made here every node is new, and is inserted with the next free id, with no lookup
    and no ON CONFLICT. Made a node at a time (a lookup-or-insert each), the nodes doubled the
    first flush of 100,000 names. A node is its path (no list or tuple per name and level:
    at 500,000 names their allocation alone cost more than the inserts)."""
    ends: dict[str, int | None] = {}  # every node these names need (path -> the series ending there)
    levels: list[list[str]] = []  # their paths by depth
    for sid, name in series:
        if name in ends:  # (as a branch of a name before it)
            ends[name] = sid
            continue
        ends[name] = sid
        depth = name.count(".")
        levels.extend([] for _ in range(depth + 1 - len(levels)))
        levels[depth].append(path := name)
        while (cut := path.rfind(".")) >= 0 and (path := path[:cut]) not in ends:
            ends[path] = None
            depth -= 1
            levels[depth].append(path)
    first = free = (db.execute("SELECT max(id) FROM nodes").fetchone()[0] or 0) + 1  # from here: made now
    ids: dict[str, int] = {}  # path -> node, for the nodes this call made or found
    for depth, paths in enumerate(levels):
        parents = []
        for path in paths:
            cut = path.rfind(".")
            parents.append((ids[path[:cut]] if depth else 0, path[cut + 1 :]))
        found = _ids(db, [key for key in parents if key[0] < first])
        new, named = [], []
        for path, key in zip(paths, parents, strict=True):
            node = found.get(key)
            if node is None:
                ids[path] = free
                new.append((free, key[0], key[1], ends[path]))
                free += 1
            else:
                ids[path] = node
                if ends[path] is not None:  # a branch already there becomes a series' end too
                    named.append((ends[path], node))
        db.executemany("INSERT INTO nodes (id, parent, name, series) VALUES (?, ?, ?, ?)", new)
        db.executemany("UPDATE nodes SET series = ? WHERE id = ?", named)


def _ids(db: sqlite3.Connection, pairs: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """The nodes (parent, name) -> id of these pairs that exist."""
    return {(parent, name): node for parent, name, node in db.execute(_NODES, (json.dumps(pairs),))}


def unlink(db: sqlite3.Connection, series: Iterable[int]) -> None:
    """Drop the ends of these series (by id), then every node left with no series at or below
    it, bottom up: each round deletes the candidates left empty and makes their parents the
    next ones (the rest of the tree is not looked at). The rows stay in SQLite, a statement a
    level however many series expire together: walked name by name in Python, the purge of
    100,000 series took five times as long as without a tree."""
    candidates = db.execute(
        "UPDATE nodes SET series = NULL WHERE series IN (SELECT value FROM json_each(?)) RETURNING id",
        (json.dumps(list(series)),),
    ).fetchall()
    while candidates:
        candidates = db.execute(
            "DELETE FROM nodes WHERE id IN (SELECT value FROM json_each(?)) AND series IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM nodes c WHERE c.parent = nodes.id) RETURNING parent",
            (json.dumps(list({node for (node,) in candidates} - {0})),),
        ).fetchall()


@dataclass(frozen=True)
class Found:
    """A node a walk reached: its whole path, the series ending there (or None), and whether
    any name goes on below it."""

    path: str
    series: int | None
    branch: bool


def _walk(db: sqlite3.Connection, pattern: list[glob.Node]) -> Iterator[Found]:
    """The nodes at depth len(pattern) whose every level matches that level's node: its names
    looked up when it has no wildcard, else its children filtered by its regex."""
    frontier: dict[int, str] = {0: ""}
    for depth, node in enumerate(pattern):
        last = depth == len(pattern) - 1
        if not frontier:
            return
        below = ", EXISTS (SELECT 1 FROM nodes c WHERE c.parent = n.id)" if last else ", 0"
        ids = json.dumps(list(frontier))
        select = f"SELECT n.parent, n.id, n.name, n.series{below} FROM nodes n WHERE n.parent IN ({_IDS})"
        if (names := node.names) is None:
            rows = [r for r in db.execute(select, (ids,)) if node.match(r[2])]
        else:
            rows = db.execute(f"{select} AND n.name IN ({_IDS})", (ids, json.dumps(names))).fetchall()
        if last:
            for parent, _, name, sid, branch in rows:
                yield Found(f"{frontier[parent]}.{name}" if depth else name, sid, bool(branch))
            return
        frontier = {
            node_id: f"{frontier[parent]}.{name}" if depth else name for parent, node_id, name, _, _ in rows
        }


def matching(db: sqlite3.Connection, pattern: str) -> list[str]:
    """db.matching's answer for a render target's path, from the tree (glob.GlobError as the
    reference raises it)."""
    return sorted(f.path for f in _walk(db, glob.nodes(pattern)) if f.series is not None)


def find(db: sqlite3.Connection, pattern: str) -> list[tuple[str, bool]]:
    """db.find's answer for /metrics/find, from the tree."""
    found: set[tuple[str, bool]] = set()
    for f in _walk(db, glob.nodes(pattern)):
        if f.series is not None:
            found.add((f.path, True))
        if f.branch:
            found.add((f.path, False))
    return sorted(found)
