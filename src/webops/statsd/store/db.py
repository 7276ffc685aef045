"""The store on disk: one SQLite file (WAL), whisper's layout in tables.

Why SQLite and not whisper files: whisper writes one file per series, each update a read of its
header and a write per archive, so 10,000 series at a 10 s flush cost more than a tenth of a core
in system calls alone; here a flush is one transaction of upserts. The layout is whisper's all the
same: each series has fixed archives (step, points), each archive a ring of `points` slots
(slot = time / step mod points), so the disk use is bounded by the retentions from the first
write, and reads skip slots whose stamp is outside the window asked for. Times are milliseconds.

Every flush goes into every archive's slot at once, combined with what the slot already holds
for the same time by the series' rollup (retention.ROLLUPS), inside SQLite: the coarser archives
need no state in memory, a restart in the middle of a bucket goes on where it was, and two
flushes for one slot (a shutdown's partial flush, a flush interval finer than the step, flushes
merged while the store caught up) add up instead of the second replacing the first. Crash safety
is SQLite's: a flush is one transaction, so `kill -9` loses at most the flush being written,
never the file.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from . import nametree
from .retention import ROLLUPS, Archive, Point, Schema, schema_of

VERSION = 3  # PRAGMA user_version: 0 was seconds, no weights; 2 had no name tree (migrated at open)
PURGE_EVERY = 3_600_000  # milliseconds of flushes between looks for expired series
HOUR = 3_600_000
CACHE_KIB = 64 * 1024  # SQLite's page cache for the writer: the upserts' working set stays in memory
ROLLUP_NAMES = list(ROLLUPS)
SHIFT = 16  # an id's code: id << SHIFT | shape << 3 | rollup (compact: millions of series)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, "
    "archives TEXT NOT NULL, rollup TEXT NOT NULL)",
    # ts: the slot's start (ms); weight: the milliseconds of flushes combined in it
    "CREATE TABLE IF NOT EXISTS points (series INTEGER NOT NULL, archive INTEGER NOT NULL, "
    "slot INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL, weight INTEGER NOT NULL, "
    "PRIMARY KEY (series, archive, slot)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    *nametree.SCHEMA,
)
MIGRATE_FROM_SECONDS = (
    "ALTER TABLE points ADD COLUMN weight INTEGER NOT NULL DEFAULT 0",
    "UPDATE series SET archives = (SELECT json_group_array(json_array(json_extract(value, '$[0]') * 1000, "
    "json_extract(value, '$[1]'))) FROM json_each(series.archives))",
    "UPDATE points SET ts = ts * 1000, weight = (SELECT json_extract(archives, '$[' || points.archive || "
    "'][0]') FROM series WHERE series.id = points.series)",
)


class Busy(OSError):
    """Another daemon holds this store (two daemons writing one history would double it)."""


@dataclass(frozen=True)
class Fetched:
    """Values from `start` every `step` milliseconds; None where nothing was written."""

    start: int
    step: int
    values: list[float | None]


class Store:
    """Writes come from one thread (the backend's), reads from the HTTP server's: each has its
    own connection; WAL lets them run side by side. Opening raises sqlite3.Error or OSError
    (Busy) for a file that cannot serve: the backend says so and tries again later."""

    def __init__(self, path: Path, schemas: Sequence[Schema]) -> None:
        self.path = path
        self.schemas = schemas
        self.lock = _lock(path)
        # per series id, the hour (since opening, 1 on) it was last written; 0: not since opening,
        # which counts as written then, so a series is dropped only after a whole retention
        self.written = array("H")
        try:
            self.db = self._connect(CACHE_KIB)
            self._prepare()
            self.shapes: list[tuple[Archive, ...]] = []
            self.shape_codes: dict[tuple[Archive, ...], int] = {}
            # name -> code (see SHIFT): a dict of small ints, the least memory per name
            self.ids: dict[str, int] = {}
            self.shape_text: dict[str, tuple[Archive, ...]] = {}
            for sid, name, archives, rollup in self.db.execute(
                "SELECT id, name, archives, rollup FROM series"
            ):
                self.ids[name] = self._code(sid, self._shape(archives), rollup)
        except BaseException:
            self.lock.close()
            raise
        self.local = threading.local()  # readers' connections
        self.identity = _identity(path)
        self.loaded: int | None = None  # the first flush's time: hours count from it
        self.next_purge = 0
        self.expired = 0

    def _connect(self, cache_kib: int = 2048) -> sqlite3.Connection:
        # a file another process holds locked (a backup, sqlite3 in a shell) makes the writer
        # wait, in its own thread, with the flushes merged behind it, rather than lose one
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        db.execute(f"PRAGMA cache_size = -{cache_kib}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # a process crash loses nothing committed
        return db

    def _prepare(self) -> None:
        """Create the tables, or bring a file written by an older webops up to date (once)."""
        db = self.db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        existing = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'points'").fetchone()[0]
        db.execute("BEGIN IMMEDIATE")
        try:
            if existing and version < 2:
                for statement in MIGRATE_FROM_SECONDS:
                    db.execute(statement)
            for statement in SCHEMA:
                db.execute(statement)
            if existing and version < 3:  # the names written before there was a tree
                nametree.link(db, db.execute("SELECT id, name FROM series").fetchall())
            db.execute(f"PRAGMA user_version = {VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _code(self, sid: int, shape: tuple[Archive, ...], rollup: str) -> int:
        index = self.shape_codes.get(shape)
        if index is None:
            index = self.shape_codes[shape] = len(self.shapes)
            self.shapes.append(shape)
        if sid >= len(self.written):
            self.written.frombytes(bytes(2 * (sid + 1024 - len(self.written))))
        return sid << SHIFT | index << 3 | ROLLUP_NAMES.index(rollup if rollup in ROLLUPS else "average")

    def journal_seq(self) -> int:
        """The last spooled flush (backends/store.py) this file holds: 0 if none."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'journal'").fetchone()
        return row[0] if row else 0

    def write(self, time_ms: int, weight_ms: int, points: Iterable[Point], seq: int = 0) -> int:
        """One flush at `time_ms` covering `weight_ms`, in one transaction; returns the points
        written (one per archive). `seq`: the spooled flush it completes, recorded with it."""
        groups: dict[int, list[tuple[int, float]]] = defaultdict(list)
        new: dict[str, tuple[str, float]] = {}
        ids = self.ids
        for path, value, rollup in points:
            code = ids.get(path)
            if code is None:
                new.setdefault(path, (rollup, value))  # a name met twice in a flush: the first
            else:
                groups[code & 0xFFFF].append((code >> SHIFT, value))
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for path, code in self._add(new).items():
                groups[code & 0xFFFF].append((code >> SHIFT, new[path][1]))
            written = 0
            for key, rows in groups.items():
                shape = self.shapes[key >> 3]
                db.executemany(self._upsert(shape, ROLLUP_NAMES[key & 7], time_ms, weight_ms), rows)
                written += len(rows) * len(shape)
            if seq:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('journal', ?)", (seq,))
            self._mark(groups.values(), time_ms)  # before a purge: what this flush wrote stays
            if time_ms >= self.next_purge:
                self.next_purge = time_ms + PURGE_EVERY
                self._purge(time_ms)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # (SQLite has rolled back itself on a full disk)
                db.execute("ROLLBACK")
            for path in new:  # created in the transaction that was undone
                self.ids.pop(path, None)
            raise
        return written

    @staticmethod
    def _upsert(shape: tuple[Archive, ...], rollup: str, time_ms: int, weight_ms: int) -> str:
        """The statement that puts one flush's value of a series (?1 its id, ?2 the value) into the
        slot of each of its archives: the slots and stamps are the same for every series of the
        shape, so they are written into the SQL (integers), and SQLite fans a row out."""
        archives = " UNION ALL ".join(
            f"SELECT {i} AS a, {time_ms // a.step % a.points} AS s, {time_ms - time_ms % a.step} AS t"
            for i, a in enumerate(shape)
        )
        return (
            "INSERT INTO points (series, archive, slot, ts, value, weight) "
            f"SELECT ?1, a, s, t, ?2, {weight_ms} FROM ({archives}) WHERE true "
            "ON CONFLICT (series, archive, slot) DO UPDATE SET "
            f"value = CASE WHEN ts = excluded.ts THEN {ROLLUPS[rollup]} ELSE excluded.value END, "
            "weight = CASE WHEN ts = excluded.ts THEN weight + excluded.weight ELSE excluded.weight END, "
            "ts = excluded.ts WHERE excluded.ts >= ts"  # a late flush never overwrites a newer one
        )

    def _add(self, new: dict[str, tuple[str, float]]) -> dict[str, int]:
        """New series take the retentions their names match now (as whisper: a file's archives
        are fixed when it is created) and the rollup their kind declares. A row already there
        (another daemon's, before this one opened the file) is taken as it is."""
        db = self.db
        rows = []
        texts: dict[int, str] = {}  # a rule's archives (the same tuple for its names) as JSON, once
        for name, (rollup, _) in new.items():
            shape = schema_of(name, self.schemas).archives
            if (text := texts.get(id(shape))) is None:
                text = texts[id(shape)] = json.dumps([[a.step, a.points] for a in shape])
            rows.append((name, text, rollup))
        db.executemany("INSERT OR IGNORE INTO series (name, archives, rollup) VALUES (?, ?, ?)", rows)
        names = list(new)
        codes = {}
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            for sid, name, archives, rollup in db.execute(
                f"SELECT id, name, archives, rollup FROM series WHERE name IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                codes[name] = self.ids[name] = self._code(sid, self._shape(archives), rollup)
        nametree.link(db, ((code >> SHIFT, name) for name, code in codes.items()))
        return codes

    def _shape(self, archives: str) -> tuple[Archive, ...]:
        """A series' archives from their JSON, shared between every series of that shape."""
        shape = self.shape_text.get(archives)
        if shape is None:
            shape = self.shape_text[archives] = tuple(Archive(*a) for a in json.loads(archives))
        return shape

    def _mark(self, groups: Iterable[list[tuple[int, float]]], time_ms: int) -> None:
        if self.loaded is None:
            self.loaded = time_ms
        hour = max(1, min((time_ms - self.loaded) // HOUR + 1, 0xFFFF))
        written = self.written
        for rows in groups:
            for sid, _ in rows:
                written[sid] = hour

    def _purge(self, now: int) -> None:
        """Drop the series nothing was written to for longer than their longest archive: all
        their points have expired, and names sent once (hostile or not) must not pile up."""
        hour = (now - (self.loaded if self.loaded is not None else now)) // HOUR + 1
        written = self.written
        gone = []
        for name, code in self.ids.items():
            sid = code >> SHIFT
            last = written[sid] if sid < len(written) else 0
            if (hour - last - 1) * HOUR > self.shapes[code >> 3 & 0x1FFF][-1].span:
                gone.append((name, sid))
        self.db.executemany("DELETE FROM points WHERE series = ?", [(sid,) for _, sid in gone])
        self.db.executemany("DELETE FROM series WHERE id = ?", [(sid,) for _, sid in gone])
        nametree.unlink(self.db, (sid for _, sid in gone))
        for name, _ in gone:
            del self.ids[name]
        self.expired += len(gone)

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

    def match(self, pattern: str) -> list[str]:
        """The series a render target's path expression names (glob.matching's answer), from the
        name tree: the nodes the pattern can reach, not every name."""
        return nametree.matching(self._reader(), pattern)

    def find(self, pattern: str) -> list[tuple[str, bool]]:
        """(path, is_leaf) for every node the pattern names (glob.find's answer), from the tree."""
        return nametree.find(self._reader(), pattern)

    def fetch(
        self, name: str, start: int, end: int, now: int, charge: Callable[[int], object] | None = None
    ) -> Fetched | None:
        """What whisper's fetch answers (milliseconds): the finest archive that reaches back to
        `start`, its points stamped in (start, end] (both clamped to what the file holds),
        None-filled; None for an unknown series. `charge(points)` is called before they are
        allocated, and may raise to refuse them (a year of a 1 s archive is 31 million)."""
        return self.fetch_many([name], start, end, now, charge).get(name)

    def fetch_many(
        self,
        names: Sequence[str],
        start: int,
        end: int,
        now: int,
        charge: Callable[[int], object] | None = None,
    ) -> dict[str, Fetched]:
        """fetch's answer for each of `names` that is a series, in their order: a wildcard's
        thousand series in one query for their archives and one for their points per archive
        chosen (one when they share their retentions), not a query per series. `charge` is
        called for each series in turn before its points are allocated."""
        db = self._reader()
        shapes: dict[str, list[Archive]] = {}
        found = {
            name: (sid, shapes.get(text) or shapes.setdefault(text, [Archive(*a) for a in json.loads(text)]))
            for name, sid, text in db.execute(
                "SELECT j.value, s.id, s.archives FROM json_each(?) j JOIN series s ON s.name = j.value",
                (json.dumps(list(names)),),
            )
        }
        out: dict[str, Fetched] = {}
        reads: dict[tuple[int, int, int, int], dict[int, Fetched]] = defaultdict(
            dict
        )  # archive, step, first, stop
        for name in names:
            if name not in found or name in out:
                continue
            sid, archives = found[name]
            until = min(end, now)
            since = max(start, now - archives[-1].span)
            index, archive = next(
                ((i, a) for i, a in enumerate(archives) if a.span >= now - since),
                (len(archives) - 1, archives[-1]),
            )
            step = archive.step
            first = since - since % step + step
            stop = until - until % step + step
            if stop <= first:
                out[name] = Fetched(first, step, [])
                continue
            if charge is not None:
                charge((stop - first) // step)
            out[name] = reads[index, step, first, stop][sid] = Fetched(
                first, step, [None] * ((stop - first) // step)
            )
        for (index, step, first, stop), by_id in reads.items():
            for sid, ts, value in db.execute(
                "SELECT series, ts, value FROM points WHERE series IN (SELECT value FROM json_each(?)) "
                "AND archive = ? AND ts >= ? AND ts < ?",
                (json.dumps(list(by_id)), index, first, stop),
            ):
                by_id[sid].values[(ts - first) // step] = value
        return out

    def replaced(self) -> bool:
        """Whether the file at our path is gone or another one (removed, moved, the directory
        swapped): writing on would put history where nothing reads it."""
        try:
            return _identity(self.path) != self.identity
        except OSError:
            return True

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())

    def close(self) -> None:
        self.db.close()
        self.lock.close()


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _lock(path: Path) -> IO[str]:
    """The store's directory for this daemon alone: an advisory lock beside the file, released
    by the kernel whenever the process ends (kill -9 included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path.with_name(path.name + ".lock"), "a+", encoding="utf-8")  # noqa: SIM115 (held open)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise Busy(f"{path.parent} is in use by another webops statsd (pid {holder})") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock
