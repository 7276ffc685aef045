"""What pgtop shows, fetched once a refresh, and the pure functions that filter, sort and rate it."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from ..common.text import printable
from . import queries

HIDDEN = "<insufficient privilege>"
VIEWS = ("all", "running", "waiting", "blocking", "tree")
SORTS = ("duration", "pid", "user", "database")


@dataclass
class Backend:
    pid: int
    datname: str | None
    usename: str | None
    client_addr: str | None
    client_port: int | None
    application_name: str | None
    backend_type: str | None
    state: str | None
    wait_event_type: str | None
    wait_event: str | None
    query_seconds: float | None
    xact_seconds: float | None
    query_start: datetime | None
    query: str | None
    blocked_by: list[int]
    leader_pid: int | None = None
    query_id: int | None = None
    backend_start: datetime | None = None  # with pid and query_start: what a signal is checked against
    lock_type: str | None = None  # the lock this backend waits for
    lock_mode: str | None = None
    lock_relation: str | None = None
    held: list[str] = field(default_factory=list)  # locks it holds that others wait for
    depth: int = 0  # in the tree view: how deep under the root blocker

    @property
    def lock(self) -> str:
        """What it waits for (`AccessShareLock on orders`) or holds that blocks others."""
        if self.lock_mode:
            return f"{self.lock_mode} on {self.lock_relation or self.lock_type}"
        return ", ".join(self.held)

    @property
    def visible(self) -> bool:
        return self.query != HIDDEN

    @property
    def client(self) -> str:
        if self.client_addr:
            return self.client_addr
        return "local" if self.client_port == -1 else ""

    def as_dict(self) -> dict:
        d = asdict(self)
        for key in ("query_start", "backend_start"):
            d[key] = d[key].isoformat() if d[key] else None
        d.pop("depth")
        return d


@dataclass
class Server:
    version: str = ""
    version_num: int = 0
    uptime: float = 0.0
    xacts: float = 0.0
    tuples: float = 0.0
    blks_hit: float = 0.0
    blks_read: float = 0.0
    at: float = field(default_factory=time.monotonic)

    @property
    def cache_hit_ratio(self) -> float | None:
        total = self.blks_hit + self.blks_read
        return self.blks_hit / total if total else None


@dataclass
class Snapshot:
    server: Server
    backends: list[Backend]
    xacts_per_s: float | None = None
    tuples_per_s: float | None = None
    procs: dict[int, Any] = field(default_factory=dict)  # pid -> procstats.Usage, local servers only

    def states(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.backends:
            if b.backend_type == "client backend":
                key = b.state or "unknown"
                out[key] = out.get(key, 0) + 1
        return out


def shown(column: str, value):
    """A column's value as pgtop may show and log it: any database user chooses the text of a
    query, and the owner of a database, role or table its name, so their control characters are
    escaped here, once, for the screen, `--once`, the slow log and Slack alike. A query keeps its
    line ends and tabs (multi-line SQL is shown as written; the slow log indents every line)."""
    if not isinstance(value, str):
        return value
    return printable(value, keep="\n\t" if column == "query" else "")


def fetch(conn, previous: Snapshot | None = None) -> Snapshot:
    """One round trip's worth of state (two queries in one transaction-less autocommit session)."""
    row = conn.execute(queries.SERVER).fetchone()
    server = Server(*row)
    if server.version_num < queries.MIN_VERSION:
        raise RuntimeError(f"PostgreSQL {server.version} is too old: pgtop needs 10 or newer")
    cur = conn.execute(queries.activity(server.version_num))
    names = [c.name for c in cur.description]
    backends = [Backend(**{n: shown(n, v) for n, v in zip(names, r, strict=True)}) for r in cur.fetchall()]
    blockers = {pid for b in backends for pid in b.blocked_by}
    if blockers:
        by_pid = {b.pid: b for b in backends}
        for pid, locktype, mode, relation in conn.execute(queries.HELD, (sorted(blockers),)).fetchall():
            if pid in by_pid:
                by_pid[pid].held.append(printable(f"{mode} on {relation or locktype}"))
    snap = Snapshot(server, backends)
    if previous is not None:
        elapsed = server.at - previous.server.at
        if elapsed > 0:
            snap.xacts_per_s = max(0.0, (server.xacts - previous.server.xacts) / elapsed)
            snap.tuples_per_s = max(0.0, (server.tuples - previous.server.tuples) / elapsed)
    return snap


@dataclass
class Filters:
    database: str | None = None
    user: str | None = None
    state: str | None = None
    min_duration: float | None = None
    query: re.Pattern[str] | None = None
    show_idle: bool = False

    def __call__(self, b: Backend, blocking: bool = False) -> bool:
        """Is `b` shown? Idle sessions are hidden unless asked for (idle in transaction is always
        shown: it holds locks), but never one that blocks someone (`blocking`): an advisory lock
        held by an idle session, or a transaction aborted after a savepoint, blocks as any other."""
        idle = (b.state or "").startswith("idle") and b.state != "idle in transaction"
        if idle and not self.show_idle and not blocking:
            return False
        if self.database and b.datname != self.database:
            return False
        if self.user and b.usename != self.user:
            return False
        if self.state and b.state != self.state:
            return False
        if self.min_duration is not None and (b.query_seconds or 0) < self.min_duration:
            return False
        return not (self.query and not self.query.search(b.query or ""))

    def describe(self) -> str:
        parts = [
            f"{k}={v}"
            for k, v in (
                ("db", self.database),
                ("user", self.user),
                ("state", self.state),
                ("min", self.min_duration),
            )
            if v is not None
        ]
        if self.query:
            parts.append(f"re={self.query.pattern}")
        return " ".join(parts)


def parse_filter(text: str, base: Filters) -> Filters:
    """`db=app user=web state=active min=5 re=SELECT` (what `/` asks for); empty clears them."""
    out = Filters(show_idle=base.show_idle)
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"filter {word!r}: expected key=value (db, user, state, min, re)")
        if key == "db":
            out.database = value
        elif key == "user":
            out.user = value
        elif key == "state":
            out.state = value
        elif key == "min":
            try:
                out.min_duration = float(value)
            except ValueError:
                raise ValueError(f"filter min={value!r}: expected seconds") from None
        elif key == "re":
            try:
                out.query = re.compile(value, re.I)
            except re.error as e:
                raise ValueError(f"filter re={value!r}: {e}") from None
        else:
            raise ValueError(f"filter {key!r}: unknown (db, user, state, min, re)")
    return out


def select(snap: Snapshot, view: str, filters: Filters, sort: str) -> list[Backend]:
    """The rows of one view, filtered and sorted; a pure function of the snapshot."""
    blockers = {pid for b in snap.backends for pid in b.blocked_by}
    rows = [b for b in snap.backends if filters(b, blocking=b.pid in blockers)]
    if view == "running":
        rows = [b for b in rows if b.state == "active"]
    elif view == "waiting":
        rows = [b for b in rows if b.blocked_by]
    elif view == "blocking":
        rows = [b for b in rows if b.pid in blockers]
    elif view == "tree":
        return tree(with_blockers(rows, snap.backends))
    key = {
        "duration": lambda b: -(b.query_seconds or 0),
        "pid": lambda b: b.pid,
        "user": lambda b: (b.usename or "", b.pid),
        "database": lambda b: (b.datname or "", b.pid),
    }[sort]
    return sorted(rows, key=key)


def with_blockers(rows: list[Backend], backends: list[Backend]) -> list[Backend]:
    """`rows` and, transitively, every backend one of them waits for: a waiter is never shown
    without the chain of sessions it waits on, whatever those are doing or the filter says."""
    by_pid = {b.pid: b for b in backends}
    shown = {b.pid for b in rows}
    out = list(rows)
    todo = [pid for b in rows for pid in b.blocked_by]
    while todo:
        pid = todo.pop()
        if pid in shown or pid not in by_pid:  # not in the snapshot: a prepared transaction (0), us
            continue
        shown.add(pid)
        out.append(by_pid[pid])
        todo.extend(by_pid[pid].blocked_by)
    return out


def tree(rows: list[Backend]) -> list[Backend]:
    """The blocking tree: each backend that blocks others or waits and waits for nobody shown,
    then the backends waiting for it, indented (`depth`), then theirs; the longest waits first.
    Every backend that waits is in it: one whose blocker is not in `rows` (a prepared
    transaction, pgtop's own session) is a root."""
    shown = {b.pid: b for b in rows}
    waiting_for: dict[int, list[Backend]] = {}
    for b in rows:
        for pid in b.blocked_by:
            waiting_for.setdefault(pid, []).append(b)
    involved = [b for b in rows if b.pid in waiting_for or b.blocked_by]
    roots = [b for b in involved if not any(p in shown for p in b.blocked_by)]
    out: list[Backend] = []
    placed: set[int] = set()

    def place(b: Backend, depth: int) -> None:
        if b.pid in placed:  # a backend waiting for two others, or a deadlock about to be broken
            return
        placed.add(b.pid)
        out.append(replace(b, depth=depth))
        for waiter in sorted(waiting_for.get(b.pid, []), key=lambda w: -(w.query_seconds or 0)):
            place(waiter, depth + 1)

    for root in sorted(roots, key=lambda r: -(r.query_seconds or 0)):
        place(root, 0)
    for b in involved:  # cycles with no root: still shown
        if b.pid not in placed:
            place(b, 0)
    return out


def slow(backends: list[Backend], threshold: float) -> list[Backend]:
    """Queries running for `threshold` seconds or more: what the slow log records (of every
    backend) and K kills (of the rows on screen)."""
    return [
        b
        for b in backends
        if b.state == "active" and b.backend_type == "client backend" and (b.query_seconds or 0) >= threshold
    ]
