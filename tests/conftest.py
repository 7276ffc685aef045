"""Helpers shared by every test: free loopback ports and polling instead of sleeping."""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from tests.servers import Carbon

T = TypeVar("T")

GRAPHITE_WEB = Path("/usr/lib/python3/dist-packages/graphite/settings.py")
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
    import subprocess

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


def tmux_run(args: list[str], check: bool = False):
    """tmux on a private server (-L): the tests never touch, nor are touched by, the user's tmux."""
    import subprocess

    command = ["tmux", "-L", f"webops-tests-{os.getpid()}", *args]
    return subprocess.run(command, capture_output=True, text=True, check=check)


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
def graphite(tmp_path: Path) -> Iterator[tuple[Carbon, int]]:
    """carbon-cache and graphite-web (Django's server, Debian's packages) on its whisper files:
    (carbon, graphite-web's port). Shared: the store's differential test, webops check's tests."""
    import shutil
    import subprocess

    from tests.servers import Carbon

    need(GRAPHITE_WEB.exists(), "graphite-web (apt-get install graphite-web)")
    carbon = Carbon(tmp_path / "carbon", retention="1s:10m").start()
    web = tmp_path / "web"
    web.mkdir()
    carbon.whisper_dir.mkdir(parents=True, exist_ok=True)
    (web / "webops_gw_settings.py").write_text(
        f'SECRET_KEY = "webops-test"\nTIME_ZONE = "UTC"\nSTORAGE_DIR = "{web}"\n'
        f'WHISPER_DIR = "{carbon.whisper_dir}"\nSTANDARD_DIRS = ["{carbon.whisper_dir}"]\n'
        f'LOG_DIR = "{web}"\nINDEX_FILE = "{web}/index"\n'
        f'CARBONLINK_HOSTS = ["127.0.0.1:{carbon.query_port}"]\n'
        'DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", '
        f'"NAME": "{web}/graphite.db"}}}}\n'
    )
    env = {**os.environ, "GRAPHITE_SETTINGS_MODULE": "webops_gw_settings", "PYTHONPATH": str(web)}
    django = ["/usr/bin/python3", "-m", "django"]
    subprocess.run(
        [*django, "migrate", "--settings=graphite.settings", "-v0"], env=env, check=True, capture_output=True
    )
    port = free_port()
    out = open(web / "out.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*django, "runserver", f"127.0.0.1:{port}", "--noreload", "--settings=graphite.settings"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: _answers(port), timeout=60, what="graphite-web to answer")
        yield carbon, port
    finally:
        stop_process(proc, 30)
        out.close()
        carbon.stop()
        shutil.rmtree(web, ignore_errors=True)


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/find?query=*", timeout=30).read()
        return True
    except OSError:
        return False
