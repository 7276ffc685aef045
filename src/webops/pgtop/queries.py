"""Every SQL pgtop sends, with the differences between server versions kept here and nowhere else.

Supported: PostgreSQL 10 to 17 (10 brought backend_type and pg_blocking_pids for every session).
"""

from __future__ import annotations

MIN_VERSION = 100000


def activity(version: int) -> str:
    """One row per backend but our own. Columns differ by version only in the extras at the end."""
    extras = []
    extras.append("a.leader_pid" if version >= 130000 else "NULL::int AS leader_pid")
    extras.append("a.query_id" if version >= 140000 else "NULL::bigint AS query_id")
    return f"""
SELECT a.pid, a.datname, a.usename, host(a.client_addr) AS client_addr, a.client_port,
       a.application_name, a.backend_type, a.state, a.wait_event_type, a.wait_event,
       extract(epoch FROM clock_timestamp() - a.query_start)::float8 AS query_seconds,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS xact_seconds,
       a.query_start, a.query, pg_blocking_pids(a.pid) AS blocked_by, {", ".join(extras)},
       a.backend_start, w.locktype AS lock_type, w.mode AS lock_mode, w.relation AS lock_relation
FROM pg_stat_activity a
LEFT JOIN LATERAL (
    SELECT l.locktype, l.mode, l.relation::regclass::text AS relation
    FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted LIMIT 1
) w ON true
WHERE a.pid <> pg_backend_pid()
"""


# The locks the blockers hold on what their waiters wait for (sent only when someone waits).
HELD = """
SELECT DISTINCT h.pid, h.locktype, h.mode, h.relation::regclass::text AS relation
FROM pg_locks w
JOIN pg_locks h ON h.granted AND h.pid <> w.pid AND h.locktype = w.locktype
    AND h.database IS NOT DISTINCT FROM w.database AND h.relation IS NOT DISTINCT FROM w.relation
    AND h.transactionid IS NOT DISTINCT FROM w.transactionid
    AND h.virtualxid IS NOT DISTINCT FROM w.virtualxid AND h.page IS NOT DISTINCT FROM w.page
    AND h.tuple IS NOT DISTINCT FROM w.tuple
WHERE NOT w.granted AND h.pid = ANY(%s)
"""


SERVER = """
SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS version_num,
       extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS uptime,
       sum(xact_commit + xact_rollback)::float8 AS xacts,
       sum(tup_returned + tup_fetched + tup_inserted + tup_updated + tup_deleted)::float8 AS tuples,
       sum(blks_hit)::float8 AS blks_hit, sum(blks_read)::float8 AS blks_read
FROM pg_stat_database
"""

# Check and signal in one statement, so nothing can change between the two: the backend is
# signalled only if it still is the session that was listed (same pid and backend_start: a pid
# reused by a new backend never matches) and, for the query-guarded forms, still runs the query
# that was listed (query_start). No row back means it was not signalled.
_GUARDED = """
SELECT {function}(a.pid) FROM pg_stat_activity a
WHERE a.pid = %(pid)s AND a.backend_start = %(backend_start)s{query}
"""
_SAME_QUERY = "\n  AND a.query_start IS NOT DISTINCT FROM %(query_start)s"
CANCEL = _GUARDED.format(function="pg_cancel_backend", query=_SAME_QUERY)
TERMINATE = _GUARDED.format(function="pg_terminate_backend", query=_SAME_QUERY)
# the same session, whatever it runs now (a busy client's query changes many times a second)
CANCEL_SESSION = _GUARDED.format(function="pg_cancel_backend", query="")
TERMINATE_SESSION = _GUARDED.format(function="pg_terminate_backend", query="")
