"""A real PostgreSQL for pgtop's tests, and sessions that are slow or blocked on purpose."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import psycopg
import pytest

from tests.conftest import wait_until
from tests.servers import Postgres


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    server = Postgres()
    yield server
    server.stop()


class Session:
    """A connection running one statement in a thread (pg_sleep, a lock wait, ...)."""

    def __init__(self, pg: Postgres, sql: str, user: str = "postgres") -> None:
        self.conn = psycopg.connect(f"{pg.dsn.replace('user=postgres', f'user={user}')}", autocommit=True)
        self.pid = self.conn.info.backend_pid
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(sql,), daemon=True)
        self.thread.start()

    def _run(self, sql: str) -> None:
        try:
            self.conn.execute(sql)
        except BaseException as e:  # the test looks at how it ended (cancelled, terminated)
            self.error = e
        finally:
            self.done.set()

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.cancel()
        self.done.wait(10)
        self.conn.close()


@pytest.fixture
def session(pg: Postgres) -> Iterator:
    opened: list[Session] = []

    def start(sql: str, user: str = "postgres", running_for: float = 0.0) -> Session:
        s = Session(pg, sql, user)
        opened.append(s)
        with pg.connect() as admin:
            wait_until(
                lambda: admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'active' "
                    "AND clock_timestamp() - query_start >= make_interval(secs => %s)",
                    (s.pid, running_for),
                ).fetchone(),
                what=f"session {s.pid} running for {running_for}s",
            )
        return s

    yield start
    for s in opened:
        s.close()


@pytest.fixture(autouse=True)
def state_home(tmp_path_factory, monkeypatch) -> Iterator:
    """pgtop keeps its slow log and what it already reported under $XDG_STATE_HOME: a fresh one
    per test (inherited by the pgtop processes a test starts)."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(path))
    yield path
