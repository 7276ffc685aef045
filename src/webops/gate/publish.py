"""`webops gate build`: decide has_profile, write a new SQLite file beside the live one, check
it, fsync, and rename it over the live file, which varnishd picks up within its check interval.

Nothing reaches the live path unless every check passed: a publish fails whole or not at all.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from .config import Config

SCHEMA = (
    "CREATE TABLE user_profiles (user_id TEXT PRIMARY KEY NOT NULL, has_profile INTEGER NOT NULL) "
    "WITHOUT ROWID",
    "CREATE TABLE webops_gate (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
)


class PublishError(RuntimeError):
    """Why nothing was published, in one line."""


@dataclass(frozen=True)
class Report:
    path: Path
    users: int
    profiles: int
    skipped: int  # ids that are not well-formed: the VCL treats them as anonymous anyway
    previous: int | None  # profiles in the file replaced (None: there was none)
    added: int
    removed: int
    seconds: float

    def lines(self) -> list[str]:
        out = [
            f"published {self.path}: {self.users:,} users, {self.profiles:,} with a profile "
            f"({self.seconds:.1f} s)"
        ]
        if self.skipped:
            out.append(f"skipped {self.skipped:,} ids that are not well-formed (id_pattern)")
        if self.previous is None:
            out.append("no previous file: every profile is new")
        else:
            out.append(
                f"since the last publish: {self.previous:,} -> {self.profiles:,} profiles, "
                f"+{self.added:,} -{self.removed:,}"
            )
        return out


def open_readonly(path: Path) -> sqlite3.Connection:
    """The way the VMOD opens it: read-only, never created, immutable (no locks)."""
    return sqlite3.connect(f"file:{_uri(path)}?immutable=1", uri=True)


def _uri(path: Path) -> str:
    return re.sub(r"[%?#]", lambda m: f"%{ord(m[0]):02X}", str(path))


def profiles_in(path: Path) -> int | None:
    """The profile count of a published file, None when there is none that reads."""
    if not path.exists():
        return None
    try:
        with closing(open_readonly(path)) as db:
            return int(db.execute("SELECT count(*) FROM user_profiles WHERE has_profile").fetchone()[0])
    except sqlite3.Error:
        return None


def publish(counts: Counter[str], cfg: Config, force: bool = False, source: str = "") -> Report:
    start = time.monotonic()
    live = cfg.db
    if not live.parent.is_dir():
        raise PublishError(f"{live.parent}: no such directory")
    well_formed = re.compile(cfg.id_pattern)
    rows = sorted((uid, int(n >= cfg.min_events)) for uid, n in counts.items() if well_formed.search(uid))
    skipped = len(counts) - len(rows)
    profiles = sum(has for _, has in rows)
    previous = profiles_in(live)
    if previous is not None and not force:
        change = abs(profiles - previous) / previous if previous else (1.0 if profiles else 0.0)
        if change > cfg.max_change:
            raise PublishError(
                f"profiles would go from {previous:,} to {profiles:,} ({change:.0%} change, over "
                f"max_change {cfg.max_change:.0%}): nothing published; --force to publish anyway"
            )
    new = live.with_name(f".{live.name}.new-{os.getpid()}")
    try:
        _write(new, rows, cfg, source)
        added, removed = _check(new, len(rows), profiles, live if previous is not None else None)
        fd = os.open(new, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(new, 0o644)  # varnishd's worker user reads it
        os.replace(new, live)
        dirfd = os.open(live.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)  # the rename itself survives a crash
        finally:
            os.close(dirfd)
    except (OSError, sqlite3.Error) as e:
        raise PublishError(f"{new}: {e}") from None
    finally:
        new.unlink(missing_ok=True)
    return Report(live, len(rows), profiles, skipped, previous, added, removed, time.monotonic() - start)


def _write(path: Path, rows: list[tuple[str, int]], cfg: Config, source: str) -> None:
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # the file is private until the rename: no journal, no syncs until the one fsync
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("BEGIN")
        for statement in SCHEMA:
            db.execute(statement)
        db.executemany("INSERT INTO user_profiles VALUES (?, ?)", rows)  # sorted: appends to the b-tree
        meta = {
            "published_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "min_events": str(cfg.min_events),
            "source": source,
        }
        db.executemany("INSERT INTO webops_gate VALUES (?, ?)", meta.items())
        db.execute("COMMIT")
    finally:
        db.close()


def _check(new: Path, users: int, profiles: int, live: Path | None) -> tuple[int, int]:
    """Integrity, schema and counts of the new file, read back as varnishd will; returns the
    profiles added and removed against the live file."""
    with closing(open_readonly(new)) as db:
        if (ok := db.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
            raise PublishError(f"{new}: integrity check failed: {ok}")
        db.execute("SELECT has_profile FROM user_profiles WHERE user_id = ?", ("",)).fetchall()
        got = db.execute("SELECT count(*), coalesce(sum(has_profile), 0) FROM user_profiles").fetchone()
        if tuple(got) != (users, profiles):
            raise PublishError(
                f"{new}: read back {got[0]} users, {got[1]} profiles; wrote {users}, {profiles}"
            )
        if live is None:
            return profiles, 0
        db.execute("ATTACH ? AS old", (f"file:{_uri(live)}?immutable=1",))
        added = db.execute(
            "SELECT count(*) FROM user_profiles n WHERE has_profile AND NOT EXISTS "
            "(SELECT 1 FROM old.user_profiles o WHERE o.user_id = n.user_id AND o.has_profile)"
        ).fetchone()[0]
        removed = db.execute(
            "SELECT count(*) FROM old.user_profiles o WHERE has_profile AND NOT EXISTS "
            "(SELECT 1 FROM user_profiles n WHERE n.user_id = o.user_id AND n.has_profile)"
        ).fetchone()[0]
        return int(added), int(removed)
