"""The interactive screen, driven in a real terminal (tmux send-keys / capture-pane)."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from tests.conftest import need, stop_process, tmux, tmux_run, wait_until
from tests.servers import Postgres, _pg_bin


class Terminal:
    def __init__(self, name: str, command: list[str], size: tuple[int, int] = (160, 30)) -> None:
        need(shutil.which("tmux") is not None, "tmux not found (apt-get install tmux)")
        self.name = name
        # the tmux server does not pass the test's environment on: the state directory goes along
        # (and PYTHONPATH, when set: the pgtop under test is the one this test imports)
        env = " ".join(
            f"{k}={shlex.quote(os.environ[k])}" for k in ("XDG_STATE_HOME", "PYTHONPATH") if k in os.environ
        )
        tmux(
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            str(size[0]),
            "-y",
            str(size[1]),
            f"env {env} {' '.join(command)}",
        )

    def screen(self) -> str:
        return tmux("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        tmux("send-keys", "-t", self.name, *keys)

    def shows(self, text: str, what: str = "") -> str:
        def showing() -> str | None:
            screen = self.screen()
            return screen if text in screen else None

        return wait_until(showing, what=what or repr(text), detail=lambda: "the screen:\n" + self.screen())

    def alive(self) -> bool:
        return tmux_run(["has-session", "-t", self.name]).returncode == 0

    def close(self) -> None:
        tmux_run(["kill-session", "-t", self.name])


@pytest.fixture
def terminal():
    opened: list[Terminal] = []

    def open_(name: str, command: list[str], size: tuple[int, int] = (160, 30)) -> Terminal:
        t = Terminal(name, command, size)
        opened.append(t)
        return t

    yield open_
    for t in opened:
        t.close()


def pgtop_command(dsn: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "webops", "pgtop", shlex.quote(dsn), *args]


PID_ROW = re.compile(r"^[* ] +(\d+) ", re.M)  # a table row: tag mark, the pid right-aligned


def rows_shown(screen: str) -> list[int]:
    return [int(p) for p in PID_ROW.findall(screen)]


def test_screen_keys_and_the_query_killer(pg, session, terminal, tmp_path: Path) -> None:
    log = tmp_path / "slow.log"
    victim = session("SELECT pg_sleep(120) /* on screen */", running_for=1.0)
    t = terminal(
        f"pgtop{pg.port}",
        pgtop_command(pg.dsn, "--refresh", "0.5", "--slow-threshold", "1", "--log-file", str(log)),
    )
    screen = t.shows("pg_sleep(120)", "the slow query on screen")
    assert "PostgreSQL 15" in screen or "PostgreSQL 1" in screen
    assert "transactions/s" in screen and "cache hit ratio" in screen
    t.keys("v")
    t.shows("view running")
    t.keys("s")
    t.shows("sort pid")
    t.keys("?")
    t.shows("pgtop keys")
    t.keys("x")
    t.shows("view running")
    t.keys("Enter")  # the selected row's full query
    t.shows("/* on screen */")
    t.keys("x")
    t.keys("/", "u", "s", "e", "r", "=", "n", "o", "b", "o", "d", "y", "Enter")
    t.shows("filter user=nobody")
    wait_until(lambda: "pg_sleep(120)" not in t.screen(), what="the filter hiding the row")
    t.keys("/", "Enter")
    t.shows("pg_sleep(120)", "the row back once the filter is cleared")
    t.keys("K")
    t.shows("About to signal 1 backend(s) (queries over 1s in view running)")
    t.keys("Escape")
    t.shows("nothing signalled")
    assert not victim.done.is_set()
    t.keys("K")
    t.shows("About to signal")
    t.keys("c")
    t.shows("cancelled")
    assert victim.done.wait(10)
    assert log.read_text().count(f"pid={victim.pid} ") == 1  # several refreshes, logged once
    t.keys("x", "q")
    wait_until(lambda: not t.alive(), what="q to quit")


def test_the_help_lists_every_key_of_the_table_and_the_keys_do_what_it_says(pg, terminal) -> None:
    from webops.pgtop.ui import KEYS

    t = terminal(f"pgtophelp{pg.port}", pgtop_command(pg.dsn, "--refresh", "0.5"))
    t.shows("cache hit ratio")
    t.keys("?")
    expected = [f"{b.label} {' '.join(b.help.split())}" for b in KEYS.bindings]
    wait_until(  # the whole help drawn (a capture may catch a screen half written)
        lambda: all(e in " ".join(t.screen().split()) for e in expected),
        what="every key of the table in the help",
        detail=lambda: "the screen:\n" + t.screen(),
    )
    t.keys("x")  # any key returns
    wait_until(lambda: "pgtop keys" not in t.screen(), what="the help closed")
    for key, shown in [
        ("C", "columns: full"),
        ("i", "idle shown"),
        ("+", "refresh 1s"),
        ("-", "refresh 0.5s"),
    ]:
        t.keys(key)
        t.shows(shown, f"{key}: {shown}")
    t.keys("p")
    t.shows("paused (p resumes)")
    t.keys("p", "q")
    wait_until(lambda: not t.alive(), what="q to quit")


def test_a_lost_connection_is_shown_and_retried(terminal) -> None:
    server = Postgres()
    try:
        t = terminal(
            f"pgtoplost{server.port}", pgtop_command(server.dsn, "--refresh", "0.5", "--log-file", "''")
        )
        t.shows("PostgreSQL 1", "the header")
        server.halt()
        screen = t.shows("connection lost", "the lost connection on screen")
        assert not PID_ROW.search(screen), screen  # no stale rows to act on while disconnected
        t.keys("k")
        t.shows("not connected: nothing to act on")
        server.start()
        wait_until(
            lambda: "connection lost" not in t.screen() and "PostgreSQL 1" in t.screen(),
            what="pgtop reconnecting",
        )
        assert t.alive()
    finally:
        server.stop()


@pytest.fixture
def crowd(session):
    """30 client sessions with long queries: more backends than a 24-line screen has rows."""
    return [
        session(f"SELECT pg_sleep(120) /* crowd member {i:02d}, a comment as long as real queries get */")
        for i in range(30)
    ]


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 50)])
def test_every_width_shows_whole_pids_and_the_query(pg, crowd, terminal, size) -> None:
    command = pgtop_command(pg.dsn, "--refresh", "0.5", "--sort", "pid", "--view", "running")
    t = terminal(f"pgtopw{size[0]}", command, size)
    t.shows("SELECT pg_sleep(120)", "query text on screen")
    pids = {s.pid for s in crowd}
    rows = min(len(pids), size[1] - 7)
    # the crowd's queries start one by one: wait for as many of them as the screen has rows,
    # whole pids each (a loaded machine once drew 17 before the 30 were running)

    def enough() -> str:
        shot = t.screen()
        return shot if len([p for p in rows_shown(shot) if p in pids]) >= rows else ""

    screen = wait_until(enough, what=f"{rows} crowd rows with whole pids", detail=t.screen)
    lines = [
        line for line in screen.splitlines() if PID_ROW.match(line) and int(PID_ROW.match(line)[1]) in pids
    ]
    assert all("SELECT pg_sleep(120)" in line for line in lines), screen
    header = next(line for line in screen.splitlines() if "PID" in line and "QUERY" in line)
    if size[0] >= 120:
        assert " DB " in header and " USER " in header
    if size[0] >= 200:  # the server is on this host: pg_activity's process columns
        assert "CPU%" in header and "MEM" in header


def test_scrolling_reaches_every_row_and_the_selection_follows_its_backend(
    pg, session, crowd, terminal
) -> None:
    command = pgtop_command(pg.dsn, "--refresh", "0.5", "--sort", "pid", "--view", "running")
    t = terminal("pgtopscroll", command, (80, 24))
    screen = t.shows("more below")
    first_rows = rows_shown(screen)
    t.keys("End")
    last = max(s.pid for s in crowd)
    screen = wait_until(
        lambda: sc if last in rows_shown(sc := t.screen()) else None, what="End shows the last row"
    )
    assert "more above" in screen
    t.keys("Home")
    wait_until(lambda: rows_shown(t.screen())[:3] == first_rows[:3], what="Home back at the top")
    t.keys("PgDn")
    wait_until(lambda: rows_shown(t.screen())[0] != first_rows[0], what="PgDn scrolls a page")
    t.keys("Home", "Down", "Down", "Down", "Enter")
    selected = int(re.search(r"^pid (\d+) ", t.shows("any key returns"), re.M)[1])
    t.keys("x")
    above = next(s for s in crowd if s.pid < selected)  # a backend above the selection leaves
    with pg.connect() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (above.pid,))
    wait_until(lambda: above.pid not in rows_shown(t.screen()), what="the row above gone")
    t.keys("Enter")
    assert f"pid {selected} " in t.shows("any key returns")  # still the same backend
    t.keys("x", "p")  # pause: a new backend does not show up until resumed
    t.shows("paused")
    active = re.search(r"connections: active (\d+)", t.screen())[1]
    late = session("SELECT pg_sleep(60) /* late */")
    t.keys("End")
    assert f"connections: active {active}" in t.screen() and late.pid not in rows_shown(t.screen())
    t.keys("p")
    t.shows(f"connections: active {int(active) + 1}", "the refresh resumed")


def test_a_resize_redraws_at_once(pg, crowd, terminal) -> None:
    t = terminal("pgtopresize", pgtop_command(pg.dsn, "--refresh", "60"), (80, 24))
    t.shows("SELECT pg_sleep(120)")
    assert max(map(len, t.screen().splitlines())) <= 80
    tmux("resize-window", "-t", t.name, "-x", "200", "-y", "50")
    # the next refresh is a minute away: only the resize itself can have redrawn the screen
    wait_until(lambda: max(map(len, t.screen().splitlines())) > 150, what="the wider screen", timeout=10)


def test_tags_columns_and_the_blocking_tree(pg, session, terminal) -> None:
    with pg.connect() as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS treelock (id int)")
    holder = pg.connect()
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE treelock IN ACCESS EXCLUSIVE MODE")
    try:
        waiter = session("SELECT count(*) FROM treelock /* the waiter */")
        t = terminal("pgtoptree", pgtop_command(pg.dsn, "--refresh", "0.5", "--view", "tree"), (300, 30))
        screen = t.shows("the waiter")
        order = rows_shown(screen)
        assert order.index(holder.info.backend_pid) < order.index(waiter.pid)  # root, then its waiter
        assert "AccessShareLock on treelock" in screen and "AccessExclusiveLock on treelock" in screen
        waiter_line = next(line for line in screen.splitlines() if "the waiter" in line)
        assert "  SELECT count(*)" in waiter_line  # indented under its blocker
        t.keys(" ", "Down", " ")
        t.shows("tagged 2")
        t.keys("k")
        t.shows("About to signal 2 backend(s) (2 tagged)")
        t.keys("Escape")
        t.shows("nothing signalled")
        t.keys("C")
        screen = t.shows("columns: full")
        assert " APP " in screen and " TYPE " in screen
    finally:
        holder.close()


def replaced_query(pg) -> tuple[threading.Thread, list[int]]:
    """A session whose slow query ends and is replaced by another one on the same connection."""
    conn = pg.connect()
    pid = [conn.info.backend_pid]

    def run() -> None:
        try:
            conn.execute("SELECT pg_sleep(3) /* the first */")
            conn.execute("SELECT pg_sleep(60) /* the second */")
        except psycopg.errors.QueryCanceled:
            pass  # the test's own cleanup
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, pid


def test_k_signals_only_what_was_listed(pg, terminal) -> None:
    t = terminal("pgtopguard", pgtop_command(pg.dsn, "--refresh", "0.5", "--slow-threshold", "1"))
    t.shows("cache hit ratio")  # keys typed before the screen is up are flushed with the tty mode
    t.keys("/", "u", "s", "e", "r", "=", "n", "o", "b", "o", "d", "y", "Enter")
    t.shows("filter user=nobody")
    thread, (pid,) = replaced_query(pg)
    t.shows("1 new slow query logged")
    t.keys("K")  # the filter hides it: K acts on what is shown, and says so
    t.shows("no query running longer than 1s in view all, filter user=nobody")
    t.keys("/", "Enter")
    t.shows("the first")
    t.keys("K")
    t.shows("About to signal 1 backend(s) (queries over 1s in view all)")
    assert "the first" in t.screen()
    with pg.connect() as admin:  # the listed query ends and the session starts another one
        wait_until(
            lambda: admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query LIKE '%%the second%%'", (pid,)
            ).fetchone(),
            what="the second query running",
        )
        t.keys("c")
        t.shows("skipped (no longer running the listed query)")
        state = admin.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    assert state[0] == "active" and "the second" in state[1]  # left alone
    assert thread.is_alive()
    with pg.connect() as admin:
        admin.execute("SELECT pg_cancel_backend(%s)", (pid,))


def test_slack_failures_show_on_screen(pg, session, terminal) -> None:
    session("SELECT pg_sleep(60)", running_for=1.0)
    t = terminal(
        "pgtopslack",
        pgtop_command(
            pg.dsn, "--refresh", "0.5", "--slow-threshold", "1", "--slack-webhook", "http://127.0.0.1:1/x"
        ),
    )
    t.shows("slack: cannot post")


@pytest.fixture
def secret_role(pg):
    """A role that must give a password (scram) over TCP; everyone else keeps trust."""
    with pg.connect() as admin:
        admin.execute("DROP ROLE IF EXISTS secretive")
        admin.execute("CREATE ROLE secretive LOGIN PASSWORD 'hunter2'")
        (hba,) = admin.execute("SHOW hba_file").fetchone()
        original = Path(hba).read_text()
        Path(hba).write_text("host all secretive 127.0.0.1/32 scram-sha-256\n" + original)
        admin.execute("SELECT pg_reload_conf()")
    yield f"host=127.0.0.1 port={pg.port} user=secretive dbname=postgres"
    Path(hba).write_text(original)
    with pg.connect() as admin:
        admin.execute("SELECT pg_reload_conf()")


def test_passwords_are_never_shown_and_asked_for_when_needed(pg, secret_role, terminal) -> None:
    uri = f"postgresql://secretive:hunter2@127.0.0.1:{pg.port}/postgres"
    for i, dsn in enumerate((secret_role + " password=hunter2", uri)):
        t = terminal(f"pgtoppw{i}", pgtop_command(dsn, "--refresh", "0.5"))
        screen = t.shows(f"pgtop 127.0.0.1:{pg.port}/postgres")
        assert "hunter2" not in screen
        t.close()
    t = terminal("pgtopprompt", pgtop_command(secret_role, "--refresh", "0.5"))
    t.shows("Password for user secretive:")
    t.keys("hunter2", "Enter")
    screen = t.shows("cache hit ratio")
    assert "hunter2" not in screen


def test_a_start_that_never_connects_is_an_error(terminal) -> None:
    command = " ".join(pgtop_command("host=127.0.0.1 port=1 connect_timeout=2"))
    t = terminal("pgtopnever", ["sh", "-c", shlex.quote(f"{command}; echo EXIT=$?; sleep 60")])
    screen = t.shows("EXIT=")
    assert "EXIT=2" in screen and "webops pgtop: " in screen


def test_the_default_tree_shows_a_waiter_behind_an_idle_session(pg, session, terminal) -> None:
    holder = pg.connect()  # takes an advisory lock, then sits idle (not in a transaction)
    holder.execute("SELECT pg_advisory_lock(4301) /* the idle holder */")
    try:
        waiter = session("SELECT pg_advisory_lock(4301) /* the waiter */")
        t = terminal("pgtopidletree", pgtop_command(pg.dsn, "--refresh", "0.5", "--view", "tree"))
        screen = t.shows("the waiter", "the waiter in the tree, idle sessions hidden")
        assert "idle hidden" in screen
        order = rows_shown(screen)
        assert order.index(holder.info.backend_pid) < order.index(waiter.pid), screen
        holder_line = next(line for line in screen.splitlines() if "the idle holder" in line)
        assert " idle " in holder_line
        waiter_line = next(line for line in screen.splitlines() if "the waiter" in line)
        assert str(holder.info.backend_pid) in waiter_line.split()[1:]  # BLOCKED BY
        assert "  SELECT pg_advisory_lock(4301) /* the waiter" in waiter_line  # indented under it
    finally:
        holder.close()


def query_changed(pg, pid: int) -> None:
    """Wait until backend `pid` runs a query started after now: the one listed has ended."""
    with pg.connect() as admin:
        (now,) = admin.execute("SELECT clock_timestamp()").fetchone()
        wait_until(
            lambda: admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query_start > %s", (pid, now)
            ).fetchone(),
            what=f"backend {pid} on a newer query",
        )


def backend_start(pg, pid: int):
    with pg.connect() as admin:
        row = admin.execute("SELECT backend_start FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row[0] if row else None


def test_t_terminates_a_busy_session_whatever_its_query(pg, terminal, tmp_path: Path) -> None:
    pgbench = _pg_bin("pgbench")
    need(pgbench is not None, "pgbench not found (apt-get install postgresql-contrib)")
    script = tmp_path / "busy.sql"
    script.write_text("SELECT pg_sleep(0.01) /* busy_client */;\n")
    command = [pgbench, "-n", "-c", "1", "-T", "300", "-f", str(script)]
    client = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "postgres"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with pg.connect() as admin:
            (pid,) = wait_until(
                lambda: admin.execute(  # not the connection pgbench opens first and closes
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' "
                    "AND query LIKE '%%' || 'busy_' || 'client' || '%%'"
                ).fetchone(),
                what="pgbench running its script",
            )
        args = ("--refresh", "0.5", "--idle", "--query-regex", "busy_client")  # its row, idle or not
        t = terminal("pgtopbusy", pgtop_command(pg.dsn, *args))
        wait_until(lambda: rows_shown(t.screen()) == [pid], what="the busy session's row")
        t.keys("k")
        listing = t.shows("About to signal 1 backend(s) (the selected row)")
        query_changed(pg, pid)  # the listed query is long gone: the session is still the same
        t.keys("t")
        screen = t.shows("terminate: 1 done", "the busy session terminated")
        assert "t    terminate the sessions (only the listed ones: same pid, same start)" in listing
        assert f"{pid}  ok  terminated" in screen
        wait_until(lambda: client.poll() is not None, what="pgbench losing its session")
        assert backend_start(pg, pid) is None
    finally:
        stop_process(client)


@pytest.fixture
def busy_loop(pg):
    """A client issuing short queries back to back (its query_start changes all the time); it
    counts the queries cancelled under it and goes on."""
    conn = pg.connect()
    stop = threading.Event()
    cancelled: list[int] = []

    def run() -> None:
        while not stop.is_set():
            try:
                conn.execute("SELECT pg_sleep(0.05) /* busy_loop */")
            except psycopg.errors.QueryCanceled:
                cancelled.append(1)
            except psycopg.Error:
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield conn.info.backend_pid, cancelled
    stop.set()
    thread.join(10)
    conn.close()


def test_k_then_a_cancels_whatever_a_busy_session_runs_now(pg, busy_loop, terminal) -> None:
    pid, cancelled = busy_loop
    started = backend_start(pg, pid)
    args = ("--refresh", "0.5", "--idle", "--query-regex", "busy_loop")
    t = terminal("pgtopbusyloop", pgtop_command(pg.dsn, *args))
    wait_until(lambda: rows_shown(t.screen()) == [pid], what="the busy session's row")
    t.keys("k")
    t.shows("About to signal 1 backend(s) (the selected row)")
    query_changed(pg, pid)
    t.keys("c")  # the listed query: gone, so nothing is cancelled (and pgtop says what would do it)
    skipped = t.shows("skipped (no longer running the listed query)")
    assert not cancelled
    for _ in range(5):  # a cancel landing between two of its queries finds nothing to cancel
        t.keys("x", "k")
        listing = t.shows("About to signal 1 backend(s) (the selected row)")
        query_changed(pg, pid)
        t.keys("a")
        t.shows("cancel: 1 done", "whatever it ran, cancelled")
        assert "a    cancel whatever each session runs now" in listing
        with contextlib.suppress(pytest.fail.Exception):
            wait_until(lambda: cancelled, timeout=2, what="the busy client seeing its query cancelled")
        if cancelled:
            break
    assert cancelled, "5 cancels, none seen by the busy client"
    assert backend_start(pg, pid) == started  # the session goes on: only its query was cancelled
    assert "k then a cancels whatever it runs now" in skipped  # what the skipped c said to do


@pytest.fixture
def pileup(pg, session):
    """A transaction holding a lock, idle, and 30 sessions waiting for it."""
    with pg.connect() as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS pileup (id int)")
    holder = psycopg.connect(pg.dsn)
    holder.execute("LOCK TABLE pileup IN ACCESS EXCLUSIVE MODE")
    waiters = [session(f"SELECT count(*) FROM pileup /* pileup {i:02d} */") for i in range(30)]
    yield holder.info.backend_pid, {s.pid for s in waiters}
    holder.close()


def test_at_80x24_a_lock_pileup_shows_who_waits_on_whom(pg, pileup, terminal) -> None:
    holder, waiters = pileup
    t = terminal("pgtoppileup", pgtop_command(pg.dsn, "--refresh", "0.5"), (80, 24))
    screen = t.shows("pileup", "the pile-up on screen")
    assert "BLOCKED BY" in screen
    lines = [
        line for line in screen.splitlines() if PID_ROW.match(line) and int(PID_ROW.match(line)[1]) in waiters
    ]
    assert len(lines) >= 10, screen
    assert all(str(holder) in line.split()[1:] for line in lines), screen  # each says on whom it waits


def test_at_80x24_the_filter_and_the_sort_stay_visible(pg, terminal) -> None:
    t = terminal("pgtopnarrow", pgtop_command(pg.dsn, "--refresh", "0.5"), (80, 24))
    t.shows("cache hit ratio")
    t.keys("/", *"re=pileup|crowd", "Enter", "s")
    screen = t.shows("filter re=pileup|crowd", "the filter in the title")
    assert "sort pid" in t.shows("sort pid") and "view all" in screen
    assert max(map(len, t.screen().splitlines())) <= 80
    t.keys("/", *"db=postgres user=postgres re=a_regex_as_long_as_they_get")
    t.shows("re=a_regex_as_long_as_they_get", "the end of what is typed at the prompt")
    t.keys("Escape")


def test_at_80x24_a_confirmation_says_how_many_it_does_not_list(pg, crowd, terminal) -> None:
    pids = {s.pid for s in crowd}
    args = ("--refresh", "0.5", "--slow-threshold", "0", "--query-regex", "crowd")
    t = terminal("pgtopmany", pgtop_command(pg.dsn, *args), (80, 24))
    wait_until(lambda: pids <= set(rows_shown(t.screen())) or "more below" in t.screen(), what="the crowd")
    t.keys("K")
    screen = t.shows("About to signal 30 backend(s)")
    more = re.search(r"… and (\d+) more", screen)
    assert more, screen
    listed = set(rows_shown(screen)) & pids
    assert len(listed) + int(more[1]) == 30, screen
    assert "esc  back out" in screen
    t.keys("Escape")
    t.shows("nothing signalled")


@pytest.mark.parametrize("size", [(40, 10), (60, 15)])
def test_a_small_terminal_shows_the_pileup_rows_and_k_lists_a_target_and_its_keys(
    pg, pileup, terminal, size
) -> None:
    _, waiters = pileup
    args = ("--refresh", "0.5", "--slow-threshold", "0", "--log-file", "''", "--query-regex", "pileup")
    t = terminal(f"pgtopsmall{size[0]}", pgtop_command(pg.dsn, *args), size)
    screen = wait_until(
        lambda: sc if len(set(rows_shown(sc := t.screen())) & waiters) >= 3 else None,
        what="rows of the pile-up on a small screen",
        detail=lambda: "the screen:\n" + t.screen(),
    )
    lines = screen.splitlines()
    assert len(lines) <= size[1] and max(map(len, lines)) <= size[0], screen
    assert "view all" in lines[0] and "sort duration" in lines[0] and "filter re=pileup" in lines[0], screen
    assert re.search(r"q.quit.*\?.help", screen), screen  # the keys' hint
    assert "more below" in screen, screen
    t.keys("K")
    screen = t.shows("About to signal", "the confirmation")
    total = int(re.search(r"About to signal (\d+) backend", screen)[1])
    listed = set(rows_shown(screen)) & waiters
    more = re.search(r"… and (\d+) more", screen)
    assert listed and more, screen
    assert len(listed) + int(more[1]) == total, screen
    keys = " ".join(screen.split())
    assert "c cancel" in keys and "t term" in keys and "esc back" in keys, screen
    assert max(map(len, screen.splitlines())) <= size[0], screen
    t.keys("Escape")
    t.shows("nothing signalled")


def test_a_terminal_too_small_says_so(pg, terminal) -> None:
    t = terminal("pgtoptiny", pgtop_command(pg.dsn, "--refresh", "0.5", "--log-file", "''"), (30, 6))
    screen = t.shows("need 40x8", "the too-small notice")
    assert "terminal too small" in " ".join(screen.split())
    t.keys("q")
    wait_until(lambda: not t.alive(), what="q to quit")
