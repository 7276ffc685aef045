"""The interactive screen, driven in a real terminal (tmux send-keys / capture-pane)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import need, tmux, tmux_run, wait_until
from tests.servers import Postgres


class Terminal:
    def __init__(self, name: str, command: list[str]) -> None:
        need(shutil.which("tmux") is not None, "tmux not found (apt-get install tmux)")
        self.name = name
        tmux("new-session", "-d", "-s", name, "-x", "160", "-y", "30", " ".join(command))

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

    def open_(name: str, command: list[str]) -> Terminal:
        t = Terminal(name, command)
        opened.append(t)
        return t

    yield open_
    for t in opened:
        t.close()


def pgtop_command(dsn: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "webops", "pgtop", f"'{dsn}'", *args]


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
    t.shows("About to signal 1 backend(s)")
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
        t.shows("connection lost", "the lost connection on screen")
        server.start()
        wait_until(
            lambda: "connection lost" not in t.screen() and "PostgreSQL 1" in t.screen(),
            what="pgtop reconnecting",
        )
        assert t.alive()
    finally:
        server.stop()
