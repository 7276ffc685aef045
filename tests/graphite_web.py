"""A real graphite-web (Debian's 1.1.8, Django's server) for the differential and federation
tests and for `make bench-store`: on a carbon's whisper files, or on none with CLUSTER_SERVERS
pointing at webops daemons. Plain classes, no pytest fixture (tests/conftest.py wraps them)."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

from tests.conftest import free_port, need, wait_until
from tests.servers import Carbon, Logged

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


class GraphiteWeb(Logged):
    """graphite-web serving `whisper_dir` (and `extra` settings) on a free loopback port; its
    settings, database and logs under `root` (made here)."""

    OUT = "out.log"

    def __init__(self, root: Path, whisper_dir: Path, extra: str = "") -> None:
        need(GRAPHITE_WEB.exists(), "graphite-web (apt-get install graphite-web)")
        self.root, self.whisper_dir, self.extra = root, whisper_dir, extra
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> GraphiteWeb:
        self.root.mkdir(parents=True)
        self.whisper_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "webops_gw_settings.py").write_text(gw_settings(self.root, self.whisper_dir, self.extra))
        env = {**os.environ, "GRAPHITE_SETTINGS_MODULE": "webops_gw_settings", "PYTHONPATH": str(self.root)}
        django = [SYSTEM_PYTHON, "-m", "django"]
        subprocess.run(
            [*django, "migrate", "--settings=graphite.settings", "-v0"],
            env=env,
            check=True,
            capture_output=True,
        )
        self.log = open(self.root / self.OUT, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*django, "runserver", f"127.0.0.1:{self.port}", "--noreload", "--settings=graphite.settings"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: _answers(self.port),
                timeout=60,
                what="graphite-web to answer",
                detail=lambda: self.log_tail(2000),
            )
        except BaseException:  # never leave a half-started server behind
            self.stop()
            raise
        return self


@contextmanager
def carbon_and_web(root: Path, retention: str) -> Iterator[tuple[Carbon, GraphiteWeb]]:
    """carbon-cache (its whisper files under `root/carbon`) and graphite-web reading them, asking
    carbon's cache for what is not written yet (CARBONLINK), as they are deployed together."""
    carbon = Carbon(root / "carbon", retention=retention).start()
    try:
        web = GraphiteWeb(
            root / "web", carbon.whisper_dir, f'CARBONLINK_HOSTS = ["127.0.0.1:{carbon.query_port}"]\n'
        ).start()
        try:
            yield carbon, web
        finally:
            web.stop()
    finally:
        carbon.stop()
