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
       a.query_start, a.query, pg_blocking_pids(a.pid) AS blocked_by, {", ".join(extras)}
FROM pg_stat_activity a
WHERE a.pid <> pg_backend_pid()
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

CANCEL = "SELECT pg_cancel_backend(%s)"
TERMINATE = "SELECT pg_terminate_backend(%s)"
