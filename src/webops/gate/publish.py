"""`webops gate build`: decide has_profile, write a new SQLite file beside the live one, check
it, fsync, and rename it over the live file, which varnishd picks up within its check interval.

Nothing reaches the live path unless every check passed: a publish fails whole or not at all.
The checks (`check`) are also what `webops gate install` runs on a file built elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
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


STALE_AFTER = 86400.0  # seconds untouched after which a temporary file is stale whatever its pid


@dataclass(frozen=True)
class Checked:
    """A file that passed `check`: what it holds, and its churn against the live file."""

    users: int
    profiles: int
    previous: int | None  # profiles in the live file (None: there is none that reads)
    added: int
    removed: int


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
    return sqlite3.connect(f"file:{_uri(path)}?mode=ro&immutable=1", uri=True)


def _uri(path: Path) -> str:
    return re.sub(r"[%?#]", lambda m: f"%{ord(m[0]):02X}", str(path))


def temp_path(live: Path) -> Path:
    """This process's temporary file beside the live one (same filesystem: the rename is atomic)."""
    return live.with_name(f".{live.name}.new-{os.getpid()}")


def remove_stale(live: Path, stale_after: float = STALE_AFTER) -> list[Path]:
    """Remove the temporary files that killed publishes (or pulls) left beside the live file:
    those whose process is gone, or untouched for `stale_after` seconds (its pid reused). A
    running one's file is left alone. Returns what was removed."""
    prefix = f".{live.name}."
    removed = []
    try:
        entries = list(os.scandir(live.parent))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        if (m := re.fullmatch(r"(?:new|pull)-([0-9]{1,9})", entry.name[len(prefix) :])) is None:
            continue
        try:
            age = time.time() - entry.stat(follow_symlinks=False).st_mtime
            if _running(int(m[1])) and age < stale_after:
                continue
            os.unlink(entry.path)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
        removed.append(Path(entry.path))
    return removed


def _running(pid: int) -> bool:
    """Whether another process has this pid (this one's own name is a dead process's)."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def swap_lock(live: Path) -> Iterator[None]:
    """One swap at a time in the live file's directory (builds, installs, pulls, rollbacks): the
    churn is checked against the file that is really replaced. A lock on the directory itself,
    so a read-only directory needs no lock file (and fails later, at the rename, in one line)."""
    fd = os.open(live.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def discard(path: Path) -> None:
    """Remove a temporary file if it can be (a read-only directory: it could not be made either)."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make a rename in the directory survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(counts: Counter[str], cfg: Config, force: bool = False, source: str = "") -> Report:
    start = time.monotonic()
    live = cfg.db
    if not live.parent.is_dir():
        raise PublishError(f"{live.parent}: no such directory")
    well_formed = re.compile(cfg.id_pattern)
    rows = sorted((uid, int(n >= cfg.min_events)) for uid, n in counts.items() if well_formed.search(uid))
    skipped = len(counts) - len(rows)
    profiles = sum(has for _, has in rows)
    remove_stale(live)
    new = temp_path(live)
    try:
        _write(new, rows, cfg, source)
        fd = os.open(new, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(new, 0o644)  # varnishd's worker user reads it
        with swap_lock(live):
            checked = check(new, live if live.exists() else None, cfg, force, expect=(len(rows), profiles))
            os.replace(new, live)
            fsync_dir(live.parent)  # the rename itself survives a crash
    except (OSError, sqlite3.Error) as e:
        raise PublishError(f"{new}: {e}") from None
    finally:
        discard(new)
    return Report(
        live,
        checked.users,
        checked.profiles,
        skipped,
        checked.previous,
        checked.added,
        checked.removed,
        time.monotonic() - start,
    )


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


# (name, declared type, primary key) of each column, as PRAGMA table_info says them
COLUMNS = {
    "user_profiles": [("user_id", "TEXT", True), ("has_profile", "INTEGER", False)],
    "webops_gate": [("key", "TEXT", True), ("value", "TEXT", False)],
}


def check(
    new: Path, live: Path | None, cfg: Config, force: bool, expect: tuple[int, int] | None = None
) -> Checked:
    """Check `new` as varnishd will read it before it may replace `live`: integrity, schema (the
    user_profiles table and the webops_gate table, with their columns), has_profile 0 or 1, the
    counts read back (and equal to `expect`, (users, profiles), when given), and the churn (the
    profiles added plus removed) within cfg.max_change of the live file's profiles unless
    `force`. A live file that does not read is no previous file. Raises PublishError, one line."""
    try:
        with closing(open_readonly(new)) as db:
            return _check(db, new, live, cfg, force, expect)
    except sqlite3.Error as e:
        raise PublishError(f"{new}: {e}") from None


def _check(
    db: sqlite3.Connection,
    new: Path,
    live: Path | None,
    cfg: Config,
    force: bool,
    expect: tuple[int, int] | None,
) -> Checked:
    if (ok := db.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
        raise PublishError(f"{new}: integrity check failed: {ok}")
    for table, want in COLUMNS.items():
        got = [(c[1], c[2].upper(), c[5] > 0) for c in db.execute(f"PRAGMA main.table_info({table})")]
        if got != want:
            shape = ", ".join(f"{n} {t}{' PRIMARY KEY' if pk else ''}" for n, t, pk in got) if got else "none"
            raise PublishError(f"{new}: not a profiles file: table {table} has columns ({shape})")
    db.execute("SELECT has_profile FROM user_profiles WHERE user_id = ?", ("",)).fetchall()  # the VMOD's
    users, profiles, odd = db.execute(
        "SELECT count(*), coalesce(sum(has_profile IS 1), 0), coalesce(sum(has_profile NOT IN (0, 1)), 0) "
        "FROM user_profiles"
    ).fetchone()
    if odd:
        raise PublishError(f"{new}: {odd} rows have a has_profile other than 0 or 1")
    if expect is not None and (users, profiles) != expect:
        raise PublishError(
            f"{new}: read back {users} users, {profiles} profiles; wrote {expect[0]}, {expect[1]}"
        )
    previous = _attach(db, live) if live is not None else None
    if previous is None:
        return Checked(users, profiles, None, profiles, 0)
    added = db.execute(
        "SELECT count(*) FROM user_profiles n WHERE has_profile AND NOT EXISTS "
        "(SELECT 1 FROM old.user_profiles o WHERE o.user_id = n.user_id AND o.has_profile)"
    ).fetchone()[0]
    removed = db.execute(
        "SELECT count(*) FROM old.user_profiles o WHERE has_profile AND NOT EXISTS "
        "(SELECT 1 FROM user_profiles n WHERE n.user_id = o.user_id AND n.has_profile)"
    ).fetchone()[0]
    churn = (added + removed) / previous if previous else (1.0 if added + removed else 0.0)
    if churn > cfg.max_change and not force:
        raise PublishError(
            f"profiles would go from {previous:,} to {profiles:,}, +{added:,} -{removed:,} ({churn:.0%} "
            f"of the live file's changed, over max_change {cfg.max_change:.0%}): nothing published; "
            "--force to publish anyway"
        )
    return Checked(users, profiles, previous, int(added), int(removed))


def _attach(db: sqlite3.Connection, live: Path) -> int | None:
    """The live file as `old`, and its profile count; None (not attached) when it does not read."""
    try:
        db.execute("ATTACH ? AS old", (f"file:{_uri(live)}?mode=ro&immutable=1",))
    except sqlite3.Error:
        return None
    try:
        return int(db.execute("SELECT count(*) FROM old.user_profiles WHERE has_profile").fetchone()[0])
    except sqlite3.Error:
        db.execute("DETACH old")
        return None
