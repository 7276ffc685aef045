"""Cancel or terminate backends, saying for each what happened (and why not, when refused).

A backend is signalled only if it still runs what was listed: the check (same session start,
same query start) and the signal are one statement, so a K confirmed a few seconds after the
listing can never cancel the newer, fast query the same session has started meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from . import queries
from .data import Backend


@dataclass
class Result:
    pid: int
    ok: bool
    message: str
    skipped: bool = False  # not signalled: the backend no longer runs what was listed


def signal_backends(conn, targets: list[Backend], how: str) -> list[Result]:
    """`how` is "cancel" (pg_cancel_backend: stop the query) or "terminate" (end the session)."""
    sql = queries.CANCEL if how == "cancel" else queries.TERMINATE
    out = []
    for b in targets:
        params = {"pid": b.pid, "backend_start": b.backend_start, "query_start": b.query_start}
        try:
            row = conn.execute(sql, params).fetchone()
        except psycopg.errors.InsufficientPrivilege as e:
            out.append(
                Result(
                    b.pid,
                    False,
                    f"not allowed: {e.diag.message_primary} "
                    "(needs the same role, superuser or pg_signal_backend)",
                )
            )
            continue
        except psycopg.Error as e:
            out.append(Result(b.pid, False, str(e).strip().splitlines()[0]))
            continue
        if row is None:
            out.append(Result(b.pid, False, "skipped: no longer running the listed query", skipped=True))
            continue
        done = {"cancel": "cancelled", "terminate": "terminated"}[how]
        out.append(Result(b.pid, bool(row[0]), done if row[0] else "no such backend (already gone?)"))
    return out


def summary(how: str, results: list[Result]) -> str:
    """One line: `cancel: 2 done, 1 skipped (query changed), 1 failed`."""
    done = sum(r.ok for r in results)
    skipped = sum(r.skipped for r in results)
    failed = len(results) - done - skipped
    parts = [f"{done} done"]
    if skipped:
        parts.append(f"{skipped} skipped (no longer running the listed query)")
    if failed:
        parts.append(f"{failed} failed")
    return f"{how}: " + ", ".join(parts)
