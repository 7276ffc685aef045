"""pgtop against a real PostgreSQL: slow and blocked sessions, the log, Slack, kills, privileges."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from tests.conftest import wait_until

PGTOP = [sys.executable, "-m", "webops", "pgtop"]


def pgtop(pg, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # No slow log unless the test asks for one (a later --log-file wins): none in the checkout.
    command = [*PGTOP, pg.dsn, "--log-file", "", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def rows(pg, *args: str) -> dict[int, dict]:
    r = pgtop(pg, "--once", "--format", "json", *args)
    assert r.returncode == 0, r.stderr
    return {b["pid"]: b for b in json.loads(r.stdout)["backends"]}


def test_json_shows_slow_and_blocked_sessions(pg, session, tmp_path) -> None:
    with pg.connect() as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS locked (id int)")
    holder = psycopg.connect(pg.dsn)  # a transaction holding a lock, idle in transaction
    holder.execute("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
    slow = session("SELECT pg_sleep(30) /* slow one */", running_for=1.0)
    blocked = session("SELECT count(*) FROM locked")
    got = rows(pg, "--slow-threshold", "1", "--log-file", str(tmp_path / "slow.log"))
    assert got[slow.pid]["state"] == "active" and got[slow.pid]["query_seconds"] >= 1
    assert "pg_sleep(30)" in got[slow.pid]["query"]
    assert got[blocked.pid]["blocked_by"] == [holder.info.backend_pid]
    assert got[blocked.pid]["wait_event_type"] == "Lock"
    assert got[holder.info.backend_pid]["state"] == "idle in transaction"  # shown even with idle hidden
    full = json.loads(pgtop(pg, "--once", "--format", "json", "--idle").stdout)
    assert holder.info.backend_pid in {b["pid"] for b in full["backends"]}
    assert full["server"]["version_num"] >= 100000 and "active" in full["connections"]
    waiting = rows(pg, "--view", "waiting")
    assert set(waiting) == {blocked.pid}
    blocking = rows(pg, "--view", "blocking", "--idle")
    assert set(blocking) == {holder.info.backend_pid}
    running = rows(pg, "--view", "running", "--idle")
    assert {slow.pid, blocked.pid} <= set(running) and holder.info.backend_pid not in running
    assert slow.pid in rows(pg, "--min-duration", "1")
    assert set(rows(pg, "--query-regex", "slow one")) == {slow.pid}
    holder.close()
    log = (tmp_path / "slow.log").read_text()
    assert f"pid={slow.pid} user=postgres db=postgres" in log and "pg_sleep(30)" in log


def test_text_once_is_a_table(pg, session) -> None:
    s = session("SELECT pg_sleep(30)")
    r = pgtop(pg, "--once")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("PostgreSQL ") and "cache hit ratio" in lines[1]
    assert lines[2].split()[:4] == ["PID", "DB", "USER", "CLIENT"]
    assert any(line.startswith(str(s.pid)) and "pg_sleep(30)" in line for line in lines)


def test_kill_slower_than_cancels_or_terminates_for_real(pg, session) -> None:
    victim = session("SELECT pg_sleep(60)", running_for=1.0)
    listed = pgtop(pg, "--kill-slower-than", "1")
    assert f"would cancel {victim.pid}" in listed.stdout and not victim.done.is_set()
    r = pgtop(pg, "--kill-slower-than", "1", "--cancel", "--yes")
    assert r.returncode == 0 and f"{victim.pid}: ok: cancelled" in r.stdout
    assert victim.done.wait(10) and isinstance(victim.error, psycopg.errors.QueryCanceled)
    assert victim.conn.execute("SELECT 1").fetchone() == (1,)  # cancel keeps the session
    second = session("SELECT pg_sleep(60)", running_for=1.0)
    r = pgtop(pg, "--kill-slower-than", "1", "--terminate", "--yes")
    assert f"{second.pid}: ok: terminated" in r.stdout
    assert second.done.wait(10) and isinstance(second.error, psycopg.OperationalError)
    with pg.connect() as admin:
        wait_until(
            lambda: (
                not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (second.pid,)).fetchone()
            ),
            what="the terminated backend gone",
        )


def test_an_ordinary_role_sees_what_it_may(pg, session) -> None:
    with pg.connect() as admin:
        for role in ("watcher", "app"):
            admin.execute(f"DROP ROLE IF EXISTS {role}")
            admin.execute(f"CREATE ROLE {role} LOGIN")
    other = session("SELECT pg_sleep(60) /* someone else's */", user="app", running_for=1.0)
    as_watcher = pg.dsn.replace("user=postgres", "user=watcher")
    r = subprocess.run(
        [*PGTOP, as_watcher, "--once", "--format", "json"], capture_output=True, text=True, timeout=60
    )
    seen = {b["pid"]: b for b in json.loads(r.stdout)["backends"]}
    assert seen[other.pid]["query"] == "<insufficient privilege>"
    r = subprocess.run(
        [*PGTOP, as_watcher, "--kill-slower-than", "0", "--cancel", "--yes"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "no query running" in r.stdout  # it cannot even see that the query is slow
    with pg.connect() as admin:
        admin.execute("GRANT pg_read_all_stats, pg_signal_backend TO watcher")
    r = subprocess.run(
        [*PGTOP, as_watcher, "--once", "--format", "json"], capture_output=True, text=True, timeout=60
    )
    seen = {b["pid"]: b for b in json.loads(r.stdout)["backends"]}
    assert "someone else's" in seen[other.pid]["query"]
    r = subprocess.run(
        [*PGTOP, as_watcher, "--kill-slower-than", "1", "--cancel", "--yes"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"{other.pid}: ok: cancelled" in r.stdout
    with pg.connect() as admin:
        admin.execute("REVOKE pg_signal_backend FROM watcher")
    protected = session("SELECT pg_sleep(60)", user="app", running_for=1.0)
    from webops.pgtop.actions import signal_backends
    from webops.pgtop.data import fetch

    with psycopg.connect(as_watcher, autocommit=True) as conn:
        listed = [b for b in fetch(conn).backends if b.pid == protected.pid]
        (result,) = signal_backends(conn, listed, "terminate")
    assert not result.ok and "not allowed" in result.message


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def slack_hook():
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/x", Hook.received
    server.shutdown()


def test_slow_queries_are_posted_to_slack(pg, session, slack_hook, tmp_path) -> None:
    url, received = slack_hook
    s = session("SELECT pg_sleep(60) /* post me */", running_for=1.0)
    r = pgtop(
        pg, "--once", "--slow-threshold", "1", "--slack-webhook", url, "--log-file", str(tmp_path / "l")
    )
    assert r.returncode == 0
    (post,) = [p for p in received if f"pid={s.pid}" in p["text"]]
    assert "```SELECT pg_sleep(60) /* post me */```" in post["text"]


class Failing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("hook", ["refused", "http 500"])
def test_failed_slack_posts_are_said_in_once_mode(pg, session, tmp_path, hook) -> None:
    s = session("SELECT pg_sleep(60)", running_for=1.0)
    server = None
    url = "http://127.0.0.1:1/nope"
    if hook == "http 500":
        server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        r = pgtop(
            pg, "--once", "--slow-threshold", "1", "--slack-webhook", url, "--log-file", str(tmp_path / "l")
        )
    finally:
        if server is not None:
            server.shutdown()
    assert str(s.pid) in r.stdout  # the table is still printed: a dead webhook is not fatal
    assert r.returncode == 1, r.stderr  # but cron sees that something failed, and why
    expected = "HTTP 500" if hook == "http 500" else "Connection refused"
    assert "slack: " in r.stderr and expected in r.stderr and str(s.pid) in r.stderr


def test_config_file_with_the_command_line_winning(pg, session, tmp_path) -> None:
    s = session("SELECT pg_sleep(60)")
    conf = tmp_path / "pgtop.json"
    conf.write_text(json.dumps({"format": "json", "once": True, "view": "blocking", "log-file": ""}))
    r = subprocess.run([*PGTOP, pg.dsn, "--config", str(conf)], capture_output=True, text=True, timeout=60)
    assert json.loads(r.stdout)["backends"] == []  # view blocking from the file: nobody blocks
    r = subprocess.run(
        [*PGTOP, pg.dsn, "--config", str(conf), "--view", "running"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert s.pid in {b["pid"] for b in json.loads(r.stdout)["backends"]}
    conf.write_text(json.dumps({"refresh_rate": 1}))
    r = subprocess.run(
        [*PGTOP, pg.dsn, "--config", str(conf), "--once"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "unknown key 'refresh_rate'" in r.stderr


def test_pg_environment_variables_are_used(pg) -> None:
    import os

    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg.port),
        "PGUSER": "postgres",
        "PGDATABASE": "postgres",
    }
    r = subprocess.run([*PGTOP, "--once"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.startswith("PostgreSQL ")


def test_unreachable_server_is_a_one_line_error() -> None:
    r = subprocess.run(
        [*PGTOP, "host=127.0.0.1 port=1 connect_timeout=2", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.startswith("webops pgtop: ") and r.stderr.count("\n") == 1


def test_the_dsn_can_come_from_the_config_file(pg, tmp_path) -> None:
    conf = tmp_path / "db.json"
    conf.write_text(json.dumps({"dsn": pg.dsn, "format": "json", "log-file": ""}))
    r = subprocess.run(
        [*PGTOP, "--config", str(conf), "--view", "running", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr  # "running" is the value of --view, not a DSN on the command line
    assert "backends" in json.loads(r.stdout)


def test_refresh_and_config_values_are_checked(pg, tmp_path) -> None:
    r = subprocess.run([*PGTOP, pg.dsn, "--refresh", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--refresh" in r.stderr and "at least 0.1" in r.stderr
    conf = tmp_path / "pgtop.json"
    for bad, says in (
        ({"idle": "no"}, "idle: expected true or false, got 'no'"),
        ({"refresh": "abc"}, "refresh: not a valid value"),
        ({"refresh": 0}, "refresh: not a valid value"),
        ({"slow-threshold": [1]}, "slow-threshold: expected a number"),
        ({"view": 3}, "view: expected one of all, running"),
        ({"terminate": "yes"}, "terminate: expected true or false"),
    ):
        conf.write_text(json.dumps(bad))
        r = subprocess.run([*PGTOP, pg.dsn, "--config", str(conf), "--once"], capture_output=True, text=True)
        assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1, (bad, r.stderr)


def test_cancel_or_terminate_can_be_set_in_the_config(pg, session, tmp_path) -> None:
    victim = session("SELECT pg_sleep(60)", running_for=1.0)
    conf = tmp_path / "killer.json"
    conf.write_text(json.dumps({"kill-slower-than": 1, "terminate": True, "yes": True, "log-file": ""}))
    r = subprocess.run([*PGTOP, pg.dsn, "--config", str(conf)], capture_output=True, text=True, timeout=60)
    assert f"{victim.pid}: ok: terminated" in r.stdout, r.stdout + r.stderr


def test_the_slow_log_lives_in_the_state_directory_and_cron_runs_report_once(
    pg, session, slack_hook, tmp_path, state_home
) -> None:
    url, received = slack_hook
    s = session("SELECT pg_sleep(60) /* a < b && c > d ``` */", running_for=1.0)
    command = [*PGTOP, pg.dsn, "--once", "--slow-threshold", "1", "--slack-webhook", url]
    for _ in range(3):  # cron, every minute
        r = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing in the directory it ran in
    log = (state_home / "webops" / "pgtop-slow.log").read_text()
    assert log.count(f"pid={s.pid} ") == 1 and f"server=127.0.0.1:{pg.port}/postgres" in log
    (post,) = [p for p in received if f"pid={s.pid}" in p["text"]]
    assert f"127.0.0.1:{pg.port}/postgres" in post["text"]  # which server
    assert "a &lt; b &amp;&amp; c &gt; d" in post["text"]  # Slack's markup escaped
    assert post["text"].count("```") == 2  # the SQL's own ``` does not end the code block


def test_posts_over_the_rate_limit_are_said(pg, session, slack_hook) -> None:
    url, received = slack_hook
    for i in range(3):
        session(f"SELECT pg_sleep(60) /* slow {i} */", running_for=1.0)
    r = pgtop(pg, "--once", "--slow-threshold", "1", "--slack-webhook", url, "--slack-per-minute", "1")
    assert len(received) == 1
    assert r.returncode == 1 and r.stderr.count("rate limit (1/min)") == 2, r.stderr


def test_locks_and_the_blocking_tree_once(pg, session) -> None:
    with pg.connect() as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS oncelock (id int)")
    holder = psycopg.connect(pg.dsn)
    holder.execute("LOCK TABLE oncelock IN ACCESS EXCLUSIVE MODE")
    try:
        waiter = session("SELECT count(*) FROM oncelock")
        got = rows(pg, "--view", "tree")
        assert list(got) == [holder.info.backend_pid, waiter.pid]  # the root first, then its waiter
        assert (got[waiter.pid]["lock_mode"], got[waiter.pid]["lock_relation"]) == (
            "AccessShareLock",
            "oncelock",
        )
        assert got[holder.info.backend_pid]["held"] == ["AccessExclusiveLock on oncelock"]
    finally:
        holder.close()


@pytest.fixture
def idle_blockers(pg, session):
    """Waiters behind sessions doing nothing: an advisory lock held by an idle session (with a
    chain: a waiter that others wait for), and a table lock held by a transaction whose savepoint
    failed (idle in transaction (aborted), its locks still held)."""
    with pg.connect() as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS abortlock (id int)")
    holder = pg.connect()  # autocommit: after this the session is plain idle, holding the lock
    holder.execute("SELECT pg_advisory_lock(4201)")
    aborted = psycopg.connect(pg.dsn)
    aborted.execute("LOCK TABLE abortlock IN ACCESS EXCLUSIVE MODE")
    aborted.execute("SAVEPOINT orm")  # what ORMs do: the error aborts only the savepoint
    with pytest.raises(psycopg.errors.DivisionByZero):
        aborted.execute("SELECT 1 / 0")  # idle in transaction (aborted): the lock is still held
    middle = session("SELECT pg_advisory_lock(4202), pg_advisory_lock(4201) /* middle */")
    last = session("SELECT pg_advisory_lock(4202) /* last in the chain */")
    behind = session("SELECT count(*) FROM abortlock /* behind an aborted transaction */")
    pids = {
        "holder": holder.info.backend_pid,
        "aborted": aborted.info.backend_pid,
        "middle": middle.pid,
        "last": last.pid,
        "behind": behind.pid,
    }
    with pg.connect() as admin:
        expected = {
            pids["middle"]: [pids["holder"]],
            pids["last"]: [pids["middle"]],
            pids["behind"]: [pids["aborted"]],
        }
        wait_until(
            lambda: all(
                admin.execute("SELECT pg_blocking_pids(%s)", (pid,)).fetchone()[0] == blockers
                for pid, blockers in expected.items()
            ),
            what="the three waiters waiting",
        )
    yield pids
    for s in (middle, last, behind):
        with pg.connect() as admin:
            admin.execute("SELECT pg_cancel_backend(%s)", (s.pid,))
    holder.close()
    aborted.close()


def test_every_waiter_is_shown_with_its_blockers_whatever_they_do(pg, idle_blockers) -> None:
    p = idle_blockers
    tree = list(rows(pg, "--view", "tree"))  # idle sessions hidden, as by default
    assert set(p.values()) <= set(tree), (p, tree)
    chain = tree.index(p["holder"])
    assert tree[chain : chain + 3] == [p["holder"], p["middle"], p["last"]]  # the chain, in order
    aborted = tree.index(p["aborted"])
    assert tree[aborted : aborted + 2] == [p["aborted"], p["behind"]]
    everything = rows(pg)  # view all, idle hidden: the idle blocker is not
    assert set(p.values()) <= set(everything)
    assert everything[p["holder"]]["state"] == "idle"
    assert everything[p["aborted"]]["state"] == "idle in transaction (aborted)"
    assert set(rows(pg, "--view", "blocking")) == {p["holder"], p["middle"], p["aborted"]}


def test_a_signal_never_hits_another_backend_than_the_listed_one(pg, session) -> None:
    """The session is checked by pid and backend start in the statement that signals it: a
    listing whose backend start differs (the pid now belongs to a new backend) hits nothing."""
    from dataclasses import replace
    from datetime import timedelta

    from webops.pgtop.actions import signal_backends
    from webops.pgtop.data import fetch

    victim = session("SELECT pg_sleep(60) /* same pid, other session */")
    with pg.connect() as conn:
        (listed,) = [b for b in fetch(conn).backends if b.pid == victim.pid]
        assert listed.backend_start is not None
        older = replace(listed, backend_start=listed.backend_start - timedelta(seconds=1))
        for how in ("cancel", "terminate"):
            for same_query in (True, False):
                (r,) = signal_backends(conn, [older], how, same_query=same_query)
                assert r.skipped and not r.ok, r
        assert not victim.done.is_set()
        (r,) = signal_backends(conn, [listed], "terminate", same_query=False)
        assert r.ok and r.message == "terminated"
    assert victim.done.wait(10) and isinstance(victim.error, psycopg.OperationalError)
