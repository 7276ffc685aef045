"""A real graphite-web (Debian's 1.1.8, Django's server) for the differential and federation
tests: on a carbon's whisper files, or on none with CLUSTER_SERVERS pointing at webops daemons."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import free_port, need, stop_process, wait_until
from tests.servers import Carbon

GRAPHITE_WEB = Path("/usr/lib/python3/dist-packages/graphite/settings.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # the Python Debian's graphite-web and Django are installed for


def get(port: int, path: str, **params: str) -> object:
    url = f"http://127.0.0.1:{port}{path}?{urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _answers(port: int) -> bool:
    try:
        get(port, "/metrics/find", query="*")
        return True
    except OSError:
        return False


def gw_settings(web: Path, whisper_dir: Path, extra: str = "") -> str:
    """graphite-web's local_settings for a test: everything under `web`, UTC."""
    return (
        f'SECRET_KEY = "webops-test"\nTIME_ZONE = "UTC"\nSTORAGE_DIR = "{web}"\n'
        f'WHISPER_DIR = "{whisper_dir}"\nSTANDARD_DIRS = ["{whisper_dir}"]\n'
        f'LOG_DIR = "{web}"\nINDEX_FILE = "{web}/index"\n'
        'DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", '
        f'"NAME": "{web}/graphite.db"}}}}\n{extra}'
    )


@pytest.fixture
def start_graphite_web(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """start(whisper_dir, extra settings) -> the port of a running graphite-web; stopped after."""
    need(GRAPHITE_WEB.exists(), "graphite-web (apt-get install graphite-web)")
    procs: list[tuple[subprocess.Popen, object]] = []

    def start(whisper_dir: Path, extra: str = "") -> int:
        web = tmp_path / f"web{len(procs)}"
        web.mkdir()
        whisper_dir.mkdir(parents=True, exist_ok=True)
        (web / "webops_gw_settings.py").write_text(gw_settings(web, whisper_dir, extra))
        env = {**os.environ, "GRAPHITE_SETTINGS_MODULE": "webops_gw_settings", "PYTHONPATH": str(web)}
        django = [SYSTEM_PYTHON, "-m", "django"]
        subprocess.run(
            [*django, "migrate", "--settings=graphite.settings", "-v0"],
            env=env,
            check=True,
            capture_output=True,
        )
        port = free_port()
        out = open(web / "out.log", "wb")  # noqa: SIM115 - closed at teardown
        proc = subprocess.Popen(
            [*django, "runserver", f"127.0.0.1:{port}", "--noreload", "--settings=graphite.settings"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, out))
        wait_until(
            lambda: _answers(port),
            timeout=60,
            what="graphite-web to answer",
            detail=lambda: (web / "out.log").read_text(errors="replace")[-2000:],
        )
        return port

    yield start
    for proc, out in procs:
        stop_process(proc, 30)
        out.close()  # type: ignore[attr-defined]


@pytest.fixture
def graphite(tmp_path: Path, start_graphite_web) -> Iterator[tuple[Carbon, int]]:
    """carbon-cache and graphite-web (Debian's packages) on its whisper files."""
    carbon = Carbon(tmp_path / "carbon", retention="1s:10m").start()
    try:
        port = start_graphite_web(
            carbon.whisper_dir, f'CARBONLINK_HOSTS = ["127.0.0.1:{carbon.query_port}"]\n'
        )
        yield carbon, port
    finally:
        carbon.stop()
        shutil.rmtree(tmp_path / "web0", ignore_errors=True)
