"""Etsy statsd's own Graphite integration tests (test/graphite_*.js of the npm package 0.9.0), run
against webops: each spawns the daemon with a config, sends over UDP and reads what reaches a
Graphite socket. A drop-in passes them unchanged, save three adaptations of the harness:

- `node stats.js CONFIG` becomes `python -m webops statsd CONFIG`;
- the fixed ports (8125, 31337) become free ones, and the console and HTTP get free ports too;
- the harness's Graphite socket drains the connections it is not collecting at that moment,
  as carbon does (Etsy's backend never waits for carbon; webops waits for carbon to read).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, need

VERSION = "0.9.0"
FILES = [
    "graphite_tests.js",
    "graphite_legacy_tests.js",
    "graphite_pickle_tests.js",
    "graphite_tests_statsprefix.js",
    "graphite_tests_statssuffix.js",
    "graphite_legacy_tests_statsprefix.js",
    "graphite_delete_counters_tests.js",
    "graphite_tests_filters.js",
]


@pytest.fixture(scope="module")
def etsy() -> Path:
    """statsd 0.9.0 and its test tools from npm, cached outside the checkout."""
    need(shutil.which("node") is not None and shutil.which("npm") is not None, "node and npm not found")
    cache = (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "webops-tests" / f"etsy-{VERSION}"
    )
    if not (cache / "node_modules" / ".bin" / "nodeunit").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(cache),
             f"statsd@{VERSION}", "nodeunit@0.11", "underscore@1.4", "temp@0.4"],
            check=True,
            timeout=600,
        )  # fmt: skip
    return cache / "node_modules"


def adapt(text: str) -> str:
    port, graphite, mgmt = free_port(), free_port(), free_port()
    text = text.replace(
        "spawn('node',['stats.js', path])",
        "spawn(process.env.WEBOPS_PYTHON, ['-m', 'webops', 'statsd', path])",
    )
    text = text.replace("31337", str(graphite))
    text = re.sub(r"\b8125\b", str(port), text)
    text = text.replace(f"port: {port}\\n", f"port: {port}, mgmt_port: {mgmt}, http: false\\n", 1)
    return text.replace(
        "this.acceptor = net.createServer();",
        "this.acceptor = net.createServer(); this.acceptor.on('connection', function (s) { s.resume(); });",
    )


def nodeunit(etsy: Path, name: str) -> list[str]:
    return [str(etsy / ".bin" / "nodeunit"), f"test/{name}"]


@pytest.fixture(scope="module")
def suites(
    etsy: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[subprocess.Popen, Path]]]:
    """Every file's nodeunit run, started at once: each spends most of its time waiting for
    flushes, so they run side by side (each with its own ports) instead of one after another."""
    runs = {}
    for name in FILES:
        original = (etsy / "statsd" / "test" / name).read_text()
        assert "spawn('node',['stats.js', path])" in original  # the harness is what we adapt
        work = tmp_path_factory.mktemp(name.removesuffix(".js"))
        (work / "test").mkdir()
        (work / "test" / name).write_text(adapt(original))
        (work / "node_modules").symlink_to(etsy)
        runs[name] = (
            subprocess.Popen(
                nodeunit(etsy, name),
                cwd=work,
                env={**os.environ, "WEBOPS_PYTHON": sys.executable},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            work,
        )
    yield runs
    for proc, _ in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", FILES)
def test_etsy_graphite_suite_passes_against_webops(
    etsy: Path, suites: dict[str, tuple[subprocess.Popen, Path]], name: str
) -> None:
    """Etsy's suites time their checks by the clock (so many flushes in so many ms). Run side by
    side on two cores, a suite can miss a flush for lack of CPU (seen once in CI: numStats of the
    wrong flush); one that fails is run again alone, and must pass then. A real defect fails both."""
    proc, work = suites[name]
    stdout, stderr = proc.communicate(timeout=280)
    summary = re.sub(r"\x1b\[[0-9;]*m", "", stdout)
    if proc.returncode == 0 and "OK:" in summary:
        return
    first = summary[-3000:] + stderr[-2000:]
    alone = subprocess.run(
        nodeunit(etsy, name),
        cwd=work,
        env={**os.environ, "WEBOPS_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=280,
    )
    again = re.sub(r"\x1b\[[0-9;]*m", "", alone.stdout)
    assert alone.returncode == 0 and "OK:" in again, f"side by side:\n{first}\nalone:\n{again[-3000:]}"
