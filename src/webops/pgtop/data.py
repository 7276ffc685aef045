"""What pgtop shows, fetched once a refresh, and the pure functions that filter, sort and rate it."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

from . import queries

HIDDEN = "<insufficient privilege>"
VIEWS = ("all", "running", "waiting", "blocking")
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
        d["query_start"] = self.query_start.isoformat() if self.query_start else None
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

    def states(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.backends:
            if b.backend_type == "client backend":
                key = b.state or "unknown"
                out[key] = out.get(key, 0) + 1
        return out


def fetch(conn, previous: Snapshot | None = None) -> Snapshot:
    """One round trip's worth of state (two queries in one transaction-less autocommit session)."""
    row = conn.execute(queries.SERVER).fetchone()
    server = Server(*row)
    if server.version_num < queries.MIN_VERSION:
        raise RuntimeError(f"PostgreSQL {server.version} is too old: pgtop needs 10 or newer")
    cur = conn.execute(queries.activity(server.version_num))
    backends = [
        Backend(**dict(zip([c.name for c in cur.description], r, strict=True))) for r in cur.fetchall()
    ]
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

    def __call__(self, b: Backend) -> bool:
        if not self.show_idle and (b.state or "").startswith("idle") and b.state != "idle in transaction":
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
    rows = [b for b in snap.backends if filters(b)]
    if view == "running":
        rows = [b for b in rows if b.state == "active"]
    elif view == "waiting":
        rows = [b for b in rows if b.blocked_by]
    elif view == "blocking":
        blockers = {pid for b in snap.backends for pid in b.blocked_by}
        rows = [b for b in rows if b.pid in blockers]
    key = {
        "duration": lambda b: -(b.query_seconds or 0),
        "pid": lambda b: b.pid,
        "user": lambda b: (b.usename or "", b.pid),
        "database": lambda b: (b.datname or "", b.pid),
    }[sort]
    return sorted(rows, key=key)


def slow(snap: Snapshot, threshold: float) -> list[Backend]:
    """Queries running for `threshold` seconds or more (what K kills and the slow log records)."""
    return [
        b
        for b in snap.backends
        if b.state == "active" and b.backend_type == "client backend" and (b.query_seconds or 0) >= threshold
    ]
