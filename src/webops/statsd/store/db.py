"""The store on disk: one SQLite file (WAL), whisper's layout in tables.

Why SQLite and not whisper files: whisper writes one file per series, each update a read of its
header and a write per archive, so 10,000 series at a 10 s flush cost more than a tenth of a core
in system calls alone; here a flush is one transaction of upserts. The layout is whisper's all the
same: each series has fixed archives (step, points), each archive a ring of `points` slots
(slot = time / step mod points), so the disk use is bounded by the retentions from the first
write, and reads skip slots whose stamp is outside the window asked for. Crash safety is
SQLite's: a flush is one transaction, so `kill -9` loses at most the flush being written, never
the file.

The coarser archives are written at every flush with the rollup of the bucket so far (a Bucket
per series and archive in memory); after a restart, a bucket in progress is first rebuilt from
the finest archive, which holds its points.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .retention import ROLLUPS, Archive, Bucket, Schema, rollup_of, schema_of

PURGE_EVERY = 3600  # seconds of flushes between looks for expired series

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, "
    "archives TEXT NOT NULL, rollup TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS points (series INTEGER NOT NULL, archive INTEGER NOT NULL, "
    "slot INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL, "
    "PRIMARY KEY (series, archive, slot)) WITHOUT ROWID",
)


@dataclass(frozen=True)
class Series:
    id: int
    archives: tuple[Archive, ...]
    rollup: str


@dataclass(frozen=True)
class Fetched:
    """Values from `start` every `step` seconds; None where nothing was written."""

    start: int
    step: int
    values: list[float | None]


class Store:
    """Writes come from one thread (the backend's), reads from the HTTP server's: each has its
    own connection; WAL lets them run side by side."""

    def __init__(self, path: Path, schemas: Sequence[Schema]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.schemas = schemas
        self.db = self._connect()
        for statement in SCHEMA:
            self.db.execute(statement)
        self.series: dict[str, Series] = {
            name: Series(sid, tuple(Archive(*a) for a in json.loads(archives)), rollup)
            for sid, name, archives, rollup in self.db.execute(
                "SELECT id, name, archives, rollup FROM series"
            )
        }
        self.buckets: dict[tuple[int, int], Bucket] = {}
        self.local = threading.local()  # readers' connections
        # when each series was last written: a restart counts as a write, so a series is dropped
        # only after a whole retention without one since
        self.last: dict[int, int] = {}
        self.loaded = int(time.time())
        self.next_purge = 0
        self.expired = 0

    def _connect(self) -> sqlite3.Connection:
        # a file another process holds locked (a backup, sqlite3 in a shell) makes the writer
        # wait, in its own thread, with the flushes queued behind it, rather than lose one
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # a process crash loses nothing committed
        return db

    def write(self, ts: int, values: Iterable[tuple[str, float]]) -> int:
        """One flush, in one transaction; returns the points written."""
        rows: list[tuple[int, int, int, int, float]] = []
        db = self.db
        db.execute("BEGIN")
        try:
            for name, value in values:
                series = self.series.get(name) or self._add(name)
                self.last[series.id] = ts
                for i, a in enumerate(series.archives):
                    start = ts - ts % a.step
                    if i == 0:
                        rows.append((series.id, 0, start // a.step % a.points, start, value))
                        continue
                    bucket = self.buckets.get((series.id, i))
                    if bucket is None or bucket.start != start:
                        bucket = self.buckets[series.id, i] = self._resume(series, start, a.step, ts)
                    bucket.add(value)
                    rows.append(
                        (series.id, i, start // a.step % a.points, start, ROLLUPS[series.rollup](bucket))
                    )
            db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?)", rows)
            if ts >= self.next_purge:
                self.next_purge = ts + PURGE_EVERY
                self._purge(ts)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(rows)

    def _purge(self, now: int) -> None:
        """Drop the series nothing was written to for longer than their longest archive: all
        their points have expired, and names sent once (hostile or not) must not pile up."""
        gone = [
            (name, s)
            for name, s in self.series.items()
            if self.last.get(s.id, self.loaded) + s.archives[-1].seconds < now
        ]
        for name, s in gone:
            self.db.execute("DELETE FROM points WHERE series = ?", (s.id,))
            self.db.execute("DELETE FROM series WHERE id = ?", (s.id,))
            del self.series[name]
            self.last.pop(s.id, None)
            for i in range(len(s.archives)):
                self.buckets.pop((s.id, i), None)
        self.expired += len(gone)

    def _add(self, name: str) -> Series:
        """A new series takes the retentions its name matches now (as whisper: a file's archives
        are fixed when it is created)."""
        archives = schema_of(name, self.schemas).archives
        cur = self.db.execute(
            "INSERT INTO series (name, archives, rollup) VALUES (?, ?, ?)",
            (name, json.dumps([[a.step, a.points] for a in archives]), rollup_of(name)),
        )
        assert cur.lastrowid is not None
        series = self.series[name] = Series(cur.lastrowid, archives, rollup_of(name))
        return series

    def _resume(self, series: Series, start: int, step: int, now: int) -> Bucket:
        """A bucket from the finest archive's points already in it (none, unless restarted)."""
        bucket = Bucket(start)
        for (value,) in self.db.execute(
            "SELECT value FROM points WHERE series = ? AND archive = 0 AND ts >= ? AND ts < ? ORDER BY ts",
            (series.id, start, min(start + step, now)),
        ):
            bucket.add(value)
        return bucket

    # ------------------------------------------------------------------ reading

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self.local, "db", None)
        if db is None:
            db = self.local.db = self._connect()
        return db

    @contextmanager
    def interruptible(self, stop: Callable[[], bool]) -> Iterator[None]:
        """Reads in this thread give up (sqlite3.OperationalError: interrupted) once `stop()` says
        so: a render's deadline reaches into a long query."""
        db = self._reader()
        db.set_progress_handler(stop, 10_000)  # every 10,000 SQLite instructions
        try:
            yield
        finally:
            db.set_progress_handler(None, 0)

    def names(self) -> list[str]:
        return [name for (name,) in self._reader().execute("SELECT name FROM series ORDER BY name")]

    def fetch(
        self, name: str, start: int, end: int, now: int, charge: Callable[[int], object] | None = None
    ) -> Fetched | None:
        """What whisper's fetch answers: the finest archive that reaches back to `start`, its
        points stamped in (start, end] (both clamped to what the file holds), None-filled; None
        for an unknown series. `charge(points)` is called before they are allocated, and may
        raise to refuse them (a year of a 1 s archive is 31 million)."""
        db = self._reader()
        row = db.execute("SELECT id, archives FROM series WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        sid, archives = row[0], [Archive(*a) for a in json.loads(row[1])]
        end = min(end, now)
        start = max(start, now - archives[-1].seconds)
        index, archive = next(
            ((i, a) for i, a in enumerate(archives) if a.seconds >= now - start),
            (len(archives) - 1, archives[-1]),
        )
        step = archive.step
        first = start - start % step + step
        stop = end - end % step + step
        if stop <= first:
            return Fetched(first, step, [])
        if charge is not None:
            charge((stop - first) // step)
        values: list[float | None] = [None] * ((stop - first) // step)
        for ts, value in db.execute(
            "SELECT ts, value FROM points WHERE series = ? AND archive = ? AND ts >= ? AND ts < ?",
            (sid, index, first, stop),
        ):
            values[(ts - first) // step] = value
        return Fetched(first, step, values)

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())

    def close(self) -> None:
        self.db.close()


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
