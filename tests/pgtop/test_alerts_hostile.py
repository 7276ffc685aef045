"""Slow-query alerts against what an operator's day brings: a webhook that does not answer, a pgtop
killed in the middle of a post, another pgtop's post still on its way, and a state file that is
damaged or was written by a newer pgtop.

Real PostgreSQL, a real local HTTP server as the webhook, real pgtop processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import stop_process, wait_until

PGTOP = [sys.executable, "-m", "webops", "pgtop"]


class SlowHook:
    """A webhook that, while `hanging`, answers nobody until the test lets it (past pgtop's 10 s)."""

    def __init__(self) -> None:
        self.hanging = True
        self.release = threading.Event()
        self.received: list[str] = []  # each post's text, when it arrives
        self.answered: list[str] = []  # each post answered 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                text = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["text"]
                hook.received.append(text)
                if hook.hanging:
                    hook.release.wait(120)
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:  # pgtop gave up and went
                    return
                hook.answered.append(text)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/hostile"

    def tries(self, pid: int) -> int:
        return sum(f"pid={pid} " in t for t in self.received)

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = SlowHook()
    yield h
    h.stop()


def once(pg, cwd: Path, *args: str) -> list[str]:
    return [*PGTOP, pg.dsn, "--once", "--slow-threshold", "1", "--log-file", "", *args]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=cwd)


def test_a_post_not_confirmed_at_exit_is_posted_by_the_next_run(pg, session, hook, tmp_path) -> None:
    slow = session("SELECT pg_sleep(120) /* webhook hangs */", running_for=1.0)
    first = run(once(pg, tmp_path, "--slack-webhook", hook.url), tmp_path)
    assert first.returncode == 1 and "not sent at exit" in first.stderr, first.stderr
    assert hook.tries(slow.pid) == 1
    hook.hanging = False  # the webhook is back: the very next run posts (not 5 minutes later)
    second = run(once(pg, tmp_path, "--slack-webhook", hook.url), tmp_path)
    assert second.returncode == 0, second.stderr
    assert hook.tries(slow.pid) == 2 and sum(f"pid={slow.pid} " in t for t in hook.answered) == 1


def test_the_claim_of_a_killed_pgtop_does_not_hold_the_next_run_back(pg, session, hook, tmp_path) -> None:
    slow = session("SELECT pg_sleep(120) /* killed in a post */", running_for=1.0)
    killed = subprocess.Popen(
        once(pg, tmp_path, "--slack-webhook", hook.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    try:
        wait_until(lambda: hook.tries(slow.pid) == 1, what="the post on its way")
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    finally:
        stop_process(killed)
    hook.hanging = False
    after = run(once(pg, tmp_path, "--slack-webhook", hook.url), tmp_path)
    assert after.returncode == 0, after.stderr
    assert hook.tries(slow.pid) == 2, hook.received


def test_a_run_that_leaves_a_post_to_a_live_pgtop_says_it_was_not_confirmed(
    pg, session, hook, tmp_path
) -> None:
    slow = session("SELECT pg_sleep(120) /* another posts */", running_for=1.0)
    posting = subprocess.Popen(
        once(pg, tmp_path, "--slack-webhook", hook.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        wait_until(lambda: hook.tries(slow.pid) == 1, what="the first pgtop's post on its way")
        second = run(once(pg, tmp_path, "--slack-webhook", hook.url), tmp_path)
        _, err = posting.communicate(timeout=60)
    finally:
        stop_process(posting)
    assert posting.returncode == 1 and "not sent at exit" in err, err
    assert hook.tries(slow.pid) == 1  # the live claim was respected...
    assert second.returncode == 1, second.stderr  # ...and the run that relied on it says so
    assert f"pid {slow.pid} not posted by this run" in second.stderr
    assert f"pgtop pid {posting.pid}" in second.stderr


DAMAGED = ["", "garbage{", "[]", "null", '{"version": 2, "outputs": [1]}', '{"version": 2, "outputs": {"lo']


@pytest.mark.parametrize("content", DAMAGED, ids=["empty", "garbage", "list", "null", "shape", "truncated"])
def test_a_damaged_state_file_is_kept_aside_and_said(pg, session, tmp_path, content) -> None:
    slow = session("SELECT pg_sleep(120) /* damaged state */", running_for=1.0)
    log = tmp_path / "slow.log"
    state = tmp_path / "pgtop-seen.json"
    state.write_text(content)
    command = [*PGTOP, pg.dsn, "--once", "--slow-threshold", "1", "--log-file", str(log)]
    first = run(command, tmp_path)
    assert first.returncode == 1, first.stderr
    assert "pgtop-seen.json: unreadable" in first.stderr and "pgtop-seen.json.corrupt" in first.stderr
    assert len(first.stderr.strip().splitlines()) == 1, first.stderr
    assert (tmp_path / "pgtop-seen.json.corrupt").read_text() == content
    assert log.read_text().count(f"pid={slow.pid} ") == 1
    second = run(command, tmp_path)  # the new state file is good: nothing more to say
    assert second.returncode == 0 and second.stderr == "", second.stderr
    assert log.read_text().count(f"pid={slow.pid} ") == 1


def test_a_newer_state_file_is_not_overwritten(pg, session, tmp_path) -> None:
    session("SELECT pg_sleep(120) /* newer state */", running_for=1.0)
    log = tmp_path / "slow.log"
    state = tmp_path / "pgtop-seen.json"
    newer = '{"version": 99, "outputs": {"future": true}}'
    state.write_text(newer)
    result = run([*PGTOP, pg.dsn, "--once", "--slow-threshold", "1", "--log-file", str(log)], tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "newer pgtop (version 99" in lines[0], result.stderr
    assert state.read_text() == newer
    assert not (tmp_path / "pgtop-seen.json.corrupt").exists()
