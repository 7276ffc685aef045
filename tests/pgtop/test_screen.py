"""The interactive screen, driven in a real terminal (tmux send-keys / capture-pane)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from tests.conftest import need, tmux, tmux_run, wait_until
from tests.servers import Postgres


class Terminal:
    def __init__(self, name: str, command: list[str], size: tuple[int, int] = (160, 30)) -> None:
        need(shutil.which("tmux") is not None, "tmux not found (apt-get install tmux)")
        self.name = name
        # the tmux server does not pass the test's environment on: the state directory goes along
        env = f"XDG_STATE_HOME={shlex.quote(os.environ['XDG_STATE_HOME'])}"
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

        return wait_until(showing, what=what or repr(text))

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
    screen = t.shows("SELECT pg_sleep(120)", "query text on screen")
    pids = {s.pid for s in crowd}
    shown = rows_shown(screen)
    assert len([p for p in shown if p in pids]) >= min(len(pids), size[1] - 7), screen  # whole pids
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
