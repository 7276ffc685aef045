"""Slow-query alerts from several pgtops on one host: each output (log file, webhook) keeps its own
record of what it was given, so no pgtop silences another's alert, and a failed one is retried.

Real PostgreSQL, a real local HTTP server as the webhook, interactive screens in tmux."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import free_port, need, tmux, tmux_run, wait_until

PGTOP = [sys.executable, "-m", "webops", "pgtop"]
SECRET = "T0SECRET/B0SECRET/tokennotinclear"  # the webhook URL's secret part


class Hook:
    """An incoming webhook on a loopback port, answering `status` (200 unless a test changes it)."""

    def __init__(self, port: int = 0) -> None:
        self.status = 200
        self.received: list[dict] = []  # every post, with the status it was answered
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = hook.status
                hook.received.append({"status": status, **body})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{SECRET}"

    def tries(self, pid: int) -> list[dict]:
        return [p for p in self.received if f"pid={pid} " in p["text"]]

    def posted(self, pid: int) -> list[dict]:
        return [p for p in self.tries(pid) if p["status"] == 200]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks():
    started: list[Hook] = []

    def start(port: int = 0) -> Hook:
        h = Hook(port)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


def refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/services/{SECRET}"  # nothing listens there


def once(pg, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """A cron-style run: `--once` with a 1 s threshold."""
    command = [*PGTOP, pg.dsn, "--once", "--slow-threshold", "1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd)


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def logged(path: Path, pid: int) -> int:
    return read(path).count(f"pid={pid} ")


class Terminal:
    """An interactive pgtop in a real terminal (tmux on a private server)."""

    def __init__(self, name: str, *args: str) -> None:
        need(shutil.which("tmux") is not None, "tmux not found (apt-get install tmux)")
        self.name = name
        # the tmux server does not pass the test's environment on: the state directory goes along
        env = f"XDG_STATE_HOME={shlex.quote(os.environ['XDG_STATE_HOME'])}"
        command = " ".join(shlex.quote(a) for a in [*PGTOP, *args])
        tmux("new-session", "-d", "-s", name, "-x", "200", "-y", "30", f"env {env} {command}")

    def screen(self) -> str:
        return tmux("capture-pane", "-p", "-t", self.name)

    def shows(self, text: str, what: str = "") -> str:
        def showing() -> str | None:
            screen = self.screen()
            return screen if text in screen else None

        return wait_until(showing, what=what or repr(text), detail=self.screen)

    def close(self) -> None:
        tmux_run(["kill-session", "-t", self.name])


@pytest.fixture
def terminal(pg):
    opened: list[Terminal] = []

    def open_(*args: str) -> Terminal:
        t = Terminal(f"pgtopalert{pg.port}-{len(opened)}", pg.dsn, "--refresh", "0.5", *args)
        opened.append(t)
        return t

    yield open_
    for t in opened:
        t.close()


def every_file(*roots: Path) -> dict[Path, str]:
    return {p: p.read_text(errors="replace") for root in roots for p in root.rglob("*") if p.is_file()}


def test_an_on_call_screen_and_a_cron_run_both_alert(
    pg, session, hooks, terminal, tmp_path, state_home
) -> None:
    hook = hooks()
    slow = session("SELECT pg_sleep(120) /* both alert */", running_for=1.0)
    screen_log, cron_log = tmp_path / "screen.log", tmp_path / "cron.log"
    t = terminal("--slow-threshold", "1", "--log-file", str(screen_log))
    wait_until(lambda: logged(screen_log, slow.pid), what="the screen logging the slow query")
    t.shows("pg_sleep(120)", "the slow query on screen")

    r = once(pg, tmp_path, "--slack-webhook", hook.url, "--log-file", str(cron_log))
    assert r.returncode == 0, r.stderr
    assert logged(cron_log, slow.pid) == 1 and "pg_sleep(120) /* both alert */" in read(cron_log)
    assert len(hook.posted(slow.pid)) == 1  # the screen being open silenced nothing

    for _ in range(2):  # cron, every minute: still once per output
        r = once(pg, tmp_path, "--slack-webhook", hook.url, "--log-file", str(cron_log))
        assert r.returncode == 0, r.stderr
    assert logged(cron_log, slow.pid) == 1 and len(hook.tries(slow.pid)) == 1
    assert logged(screen_log, slow.pid) == 1
    t.shows("pg_sleep(120)")  # still running, still logged once
    assert logged(screen_log, slow.pid) == 1
    files = every_file(tmp_path, state_home)
    assert files and not [p for p, text in files.items() if SECRET in text]  # the URL is never stored


def test_a_screen_with_no_log_and_no_webhook_marks_nothing(
    pg, session, terminal, tmp_path, state_home
) -> None:
    slow = session("SELECT pg_sleep(120) /* only watched */", running_for=1.0)
    t = terminal("--slow-threshold", "1", "--log-file", "")
    t.shows("only watched", "the slow query on screen")
    t.shows("refresh 0.5s")
    r = once(pg, tmp_path)  # the default log, in the state directory
    assert r.returncode == 0, r.stderr
    assert logged(state_home / "webops" / "pgtop-slow.log", slow.pid) == 1


def test_a_refused_webhook_is_said_even_when_another_pgtop_alerted(pg, session, terminal, tmp_path) -> None:
    slow = session("SELECT pg_sleep(120) /* refused */", running_for=1.0)
    screen_log = tmp_path / "screen.log"
    terminal("--slow-threshold", "1", "--log-file", str(screen_log))
    wait_until(lambda: logged(screen_log, slow.pid), what="the first screen logging the slow query")

    url = refused_url()
    r = once(pg, tmp_path, "--slack-webhook", url, "--log-file", str(tmp_path / "cron.log"))
    assert r.returncode == 1, r.stdout + r.stderr  # cron sees that the alert did not go out
    assert "slack: cannot post" in r.stderr and str(slow.pid) in r.stderr
    assert str(slow.pid) in r.stdout  # the table is still printed
    assert logged(tmp_path / "cron.log", slow.pid) == 1  # what could be done was done

    third = terminal("--slow-threshold", "1", "--log-file", "", "--slack-webhook", url)
    third.shows("slack: cannot post", "the refused post on the third screen")


@pytest.mark.parametrize("failure", ["http 500", "refused"])
def test_a_post_that_failed_is_retried_by_the_next_run(pg, session, hooks, tmp_path, failure) -> None:
    slow = session("SELECT pg_sleep(120) /* retried */", running_for=1.0)
    log = tmp_path / "slow.log"
    if failure == "http 500":
        hook = hooks()
        hook.status = 500
        url = hook.url
    else:
        url = refused_url()
    r = once(pg, tmp_path, "--slack-webhook", url, "--log-file", str(log))
    assert r.returncode == 1, r.stderr
    assert ("HTTP 500" if failure == "http 500" else "Connection refused") in r.stderr
    if failure == "http 500":
        hook.status = 200
    else:
        hook = hooks(int(url.split(":")[2].split("/")[0]))  # the webhook is back on its port
    r = once(pg, tmp_path, "--slack-webhook", url, "--log-file", str(log))
    assert r.returncode == 0, r.stderr
    assert len(hook.posted(slow.pid)) == 1  # the next cron run delivered it
    r = once(pg, tmp_path, "--slack-webhook", url, "--log-file", str(log))
    assert r.returncode == 0, r.stderr
    assert len(hook.posted(slow.pid)) == 1  # and only once
    assert logged(log, slow.pid) == 1  # the log, which worked the first time, is not written again


def test_a_log_that_could_not_be_written_is_retried_by_the_next_run(pg, session, hooks, tmp_path) -> None:
    hook = hooks()
    slow = session("SELECT pg_sleep(120) /* log retried */", running_for=1.0)
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log directory should be")
    log = blocker / "slow.log"
    r = once(pg, tmp_path, "--slack-webhook", hook.url, "--log-file", str(log))
    assert r.returncode == 1 and f"slow log {log}" in r.stderr, r.stderr
    assert len(hook.posted(slow.pid)) == 1  # the webhook is another output: it worked
    blocker.unlink()
    r = once(pg, tmp_path, "--slack-webhook", hook.url, "--log-file", str(log))
    assert r.returncode == 0, r.stderr
    assert logged(log, slow.pid) == 1
    assert len(hook.tries(slow.pid)) == 1  # posted once, not again because the log was retried


def test_pgtops_sharing_a_log_and_a_webhook_at_once_alert_once(pg, session, hooks, tmp_path) -> None:
    hook = hooks()
    slow = [session(f"SELECT pg_sleep(120) /* crowd {i} */", running_for=1.0) for i in range(3)]
    log = tmp_path / "shared.log"
    command = [*PGTOP, pg.dsn, "--once", "--slow-threshold", "1", "--slack-webhook", hook.url]
    with pg.connect() as gate, pg.connect() as watch:
        # pg_locks (a view of a function: no table behind it) locked: every run connects, then
        # waits for it in its first snapshot, then all go at once
        gate.execute("BEGIN")
        gate.execute("LOCK TABLE pg_catalog.pg_locks IN ACCESS EXCLUSIVE MODE")
        runs = [
            subprocess.Popen(
                [*command, "--log-file", str(log)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                cwd=tmp_path,
            )
            for _ in range(4)
        ]
        wait_until(
            lambda: (
                watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'webops pgtop' "
                    "AND wait_event_type = 'Lock'"
                ).fetchone()[0]
                == len(runs)
            ),
            what="every run waiting at the gate",
        )
        gate.execute("ROLLBACK")
    for p in runs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    for s in slow:
        assert logged(log, s.pid) == 1, read(log)
        assert len(hook.tries(s.pid)) == 1, hook.received


def test_a_running_pgtop_tries_a_failed_post_again(pg, session, hooks, monkeypatch) -> None:
    from webops.pgtop import data, slowlog

    monkeypatch.setattr(
        slowlog, "RETRY_SECONDS", 0.0, raising=False
    )  # a minute, for a screen: now, for the test
    hook = hooks()
    hook.status = 500
    slow = session("SELECT pg_sleep(120) /* screen retry */", running_for=1.0)
    log = slowlog.SlowLog(None, slowlog.Slack(hook.url, 100, "db"), "db")
    try:
        with pg.connect() as conn:

            def refresh() -> list:
                return log.record([b for b in data.slow(data.fetch(conn).backends, 1) if b.pid == slow.pid])

            assert [b.pid for b in refresh()] == [slow.pid]
            failure = wait_until(log.problem, what="the failed post said")
            assert "HTTP 500" in failure and str(slow.pid) in failure
            hook.status = 200
            wait_until(lambda: refresh() is not None and hook.posted(slow.pid), what="the post tried again")
            for _ in range(3):
                refresh()
    finally:
        problems = log.close()
    assert len(hook.posted(slow.pid)) == 1 and not [p for p in problems if "HTTP 500" not in p]
