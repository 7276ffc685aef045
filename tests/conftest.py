"""Helpers shared by every test: free loopback ports and polling instead of sleeping."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from tests.servers import Carbon

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    """A port that is free for both TCP and UDP on `host` right now."""
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as t:
            t.bind((host, 0))
            port = t.getsockname()[1]
            with socket.socket(family, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def wait_until(
    check: Callable[[], T],
    timeout: float = 15.0,
    what: str = "condition",
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll `check` until it returns something truthy; fail the test with `what` (and `detail()`,
    what the test knows about the state it is stuck in) after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout} s waiting for {what}" + (f": {detail()}" if detail else "")
            )
        time.sleep(0.02)


def need(available: bool, reason: str) -> None:
    """Skip when a real server/tool is missing, but fail under CI=true, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"required for this test under CI=true: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)  # also usable at a test module's top


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def stop_process(proc, timeout: float = 60) -> int:
    """SIGTERM, wait, then SIGKILL if it will not go: teardown must never hang."""

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def tmux(*args: str) -> str:
    return tmux_run(list(args), check=True).stdout


_tmux_started: list[str] = []


def tmux_run(args: list[str], check: bool = False):
    """tmux on a private server (-L): the tests never touch, nor are touched by, the user's tmux.

    The server is started once with `exit-empty off` and killed at the session's end: by default
    tmux's server exits when its last session closes, and a `new-session` sent in that moment
    reaches the dying server and fails (seen in CI after one test closed its last terminal)."""

    base = ["tmux", "-L", f"webops-tests-{os.getpid()}"]
    if not _tmux_started:
        subprocess.run([*base, "start-server", ";", "set-option", "-s", "exit-empty", "off"], check=True)
        _tmux_started.append(base[2])
    result = subprocess.run([*base, *args], capture_output=True, text=True)
    if check and result.returncode:
        raise AssertionError(f"{' '.join(result.args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def pytest_sessionfinish(session, exitstatus) -> None:
    """Stop the tests' private tmux server (kept alive by `exit-empty off`)."""

    for name in _tmux_started:
        subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True)
        tmpdir = os.environ.get("TMUX_TMPDIR", "/tmp")
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(tmpdir, f"tmux-{os.getuid()}", name))


def checked_config(text: str) -> dict[str, tuple[object, str]]:
    """`webops <tool> --check-config`'s lines (`name = JSON value  # source`) as
    {name: (value, source)}."""
    import json

    out: dict[str, tuple[object, str]] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" = ")
        value, end = json.JSONDecoder().raw_decode(rest)
        source = rest[end:].strip()
        assert source.startswith("# "), line
        out[name] = (value, source[2:])
    return out


@pytest.fixture
def start_graphite_web(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """start(whisper_dir, extra settings) -> the port of a running graphite-web (Debian's), for any
    test that compares with it or reads through it; stopped after."""
    from tests.graphite_web import GraphiteWeb  # here: tests.graphite_web imports this module

    started: list[GraphiteWeb] = []

    def start(whisper_dir: Path, extra: str = "") -> int:
        started.append(GraphiteWeb(tmp_path / f"web{len(started)}", whisper_dir, extra))
        return started[-1].start().port

    yield start
    for web in started:
        web.stop()


@pytest.fixture
def graphite(tmp_path: Path) -> Iterator[tuple[Carbon, int]]:
    """carbon-cache and graphite-web (Debian's packages) on its whisper files: (carbon, web port)."""
    from tests.graphite_web import carbon_and_web

    with carbon_and_web(tmp_path, retention="1s:10m") as (carbon, web):
        yield carbon, web.port


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at `where` (made here): a disk that fills up for real."""
    need(os.geteuid() == 0 and bool(shutil.which("mount")), "mounting a small tmpfs needs root")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
