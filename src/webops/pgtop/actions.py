"""Cancel or terminate backends, saying for each what happened (and why not, when refused)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from . import queries


@dataclass
class Result:
    pid: int
    ok: bool
    message: str


def signal_backends(conn, pids: list[int], how: str) -> list[Result]:
    """`how` is "cancel" (pg_cancel_backend: stop the query) or "terminate" (end the session)."""
    sql = queries.CANCEL if how == "cancel" else queries.TERMINATE
    out = []
    for pid in pids:
        try:
            (ok,) = conn.execute(sql, (pid,)).fetchone()
        except psycopg.errors.InsufficientPrivilege as e:
            out.append(
                Result(
                    pid,
                    False,
                    f"not allowed: {e.diag.message_primary} "
                    "(needs the same role, superuser or pg_signal_backend)",
                )
            )
            continue
        except psycopg.Error as e:
            out.append(Result(pid, False, str(e).strip().splitlines()[0]))
            continue
        done = {"cancel": "cancelled", "terminate": "terminated"}[how]
        out.append(Result(pid, bool(ok), done if ok else "no such backend (already gone?)"))
    return out
