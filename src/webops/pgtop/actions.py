"""Cancel or terminate backends, saying for each what happened (and why not, when refused).

A backend is signalled only if it still is what was listed: the check and the signal are one
statement. Always checked: the same session (pid and backend start), so a pid reused by a new
backend is never hit. With `same_query` (K, `c`, --kill-slower-than), also the same query (query
start), so a K confirmed a few seconds after the listing can never cancel the newer, fast query
the same session has started meanwhile. Without it (`t` and `a` after `k`), whatever the session
runs now: a busy client's query changes many times between the listing and the key press.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from . import queries
from .data import Backend

SQL = {
    ("cancel", True): queries.CANCEL,
    ("terminate", True): queries.TERMINATE,
    ("cancel", False): queries.CANCEL_SESSION,
    ("terminate", False): queries.TERMINATE_SESSION,
}
QUERY_CHANGED = "no longer running the listed query"
SESSION_GONE = "that session has ended (its pid is not the listed backend any more)"
UNIDENTIFIED = "its session start is not visible (pg_read_all_stats): a reused pid is not told apart"


@dataclass
class Result:
    pid: int
    ok: bool
    message: str
    skipped: bool = False  # not signalled: the backend is not what was listed any more


def signal_backends(conn, targets: list[Backend], how: str, same_query: bool = True) -> list[Result]:
    """`how` is "cancel" (pg_cancel_backend: stop the query) or "terminate" (end the session);
    `same_query`: only if it still runs the listed query, else whatever its session runs now."""
    sql = SQL[how, same_query]
    out = []
    for b in targets:
        if b.backend_start is None:
            out.append(Result(b.pid, False, f"skipped: {UNIDENTIFIED}", skipped=True))
            continue
        params = {"pid": b.pid, "backend_start": b.backend_start}
        if same_query:
            params["query_start"] = b.query_start
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
            why = QUERY_CHANGED if same_query else SESSION_GONE
            out.append(Result(b.pid, False, f"skipped: {why}", skipped=True))
            continue
        done = {"cancel": "cancelled", "terminate": "terminated"}[how]
        out.append(Result(b.pid, bool(row[0]), done if row[0] else "no such backend (already gone?)"))
    return out


def summary(how: str, results: list[Result]) -> str:
    """One line: `cancel: 2 done, 1 skipped (no longer running the listed query), 1 failed`."""
    done = sum(r.ok for r in results)
    skipped = [r for r in results if r.skipped]
    failed = len(results) - done - len(skipped)
    parts = [f"{done} done"]
    if skipped:
        why = sorted({r.message.removeprefix("skipped: ") for r in skipped})
        parts.append(f"{len(skipped)} skipped ({'; '.join(why)})")
    if failed:
        parts.append(f"{failed} failed")
    return f"{how}: " + ", ".join(parts)
