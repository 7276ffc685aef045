"""The seed's example end to end: the real model, served by gunicorn with preload, over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import cluster_available as available
from tests.conftest import free_port, need, stop_process, wait_until
from webops.cluster import EXAMPLE

SEED = EXAMPLE  # the seed's nine titles


class Service:
    def __init__(self, *args: str, env: dict | None = None) -> None:
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
            env=env,
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
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def service(home: Path) -> Iterator[Service]:
    s = Service(
        *("--workers", "2", "--max-requests", "3", "--max-requests-jitter", "0"),
        *("--max-sentences", "50", "--max-chars", "3000", "--max-tokens", "1500", "--max-body", "200000"),
        *("--access-log", str(home / "access.log")),
        env={**os.environ, "HOME": str(home)},
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
        ({"sentences": ["x"] * 51}, "at most 50 sentences"),
        ({"sentences": ["ok", "y" * 3001]}, "sentence 1 has 3001 characters"),
        ({"sentences": ["ok", "word " * 300]}, "sentence 1 has 302 word pieces, the model reads at most 256"),
        ({"sentences": ["a"], "threshold": 0}, "greater than 0"),
        ({"sentences": ["a"], "mode": "vibes"}, "topic"),
        ({"sentences": "not a list"}, "valid list"),
        ({"sentences": ["a"], "threshold": 5}, "less than or equal to 2"),
        ({}, "Field required"),
    ],
)
def test_bad_input_is_a_422_naming_the_problem(service: Service, body: dict, words: str) -> None:
    status, reply, _ = service.post(body)
    assert status == 422
    assert words in json.dumps(reply)


def raw(service: Service, body: bytes, conn: http.client.HTTPConnection | None = None, **headers: str):
    conn = conn or http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    conn.request("POST", "/cluster", body, {"Content-Type": "application/json", **headers})
    r = conn.getresponse()
    return r.status, r.read()


@pytest.mark.parametrize(
    "body",
    [
        b'{"sentences": ["a", "b"], "threshold": NaN}',
        b'{"sentences": ["a", "b"], "threshold": Infinity}',
        b'{"sentences": ["a", "b"], "threshold": 1e999}',
        b'{"sentences": ["a", NaN]}',
        b'{"sentences": ["a", "lone \\ud800 surrogate"]}',
        b'{"sentences": ["a", "\\udfff"]}',
    ],
)
def test_hostile_json_is_a_422_and_the_connection_lives_on(service: Service, body: bytes) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    status, reply = raw(service, body, conn)
    assert status == 422, reply
    status, reply = raw(service, json.dumps({"sentences": SEED[:2]}).encode(), conn)  # same connection
    assert status == 200


def test_every_dimension_is_bounded_with_a_4xx(service: Service) -> None:
    status, reply = raw(service, b'{"sentences": ["' + b"x" * 300_000 + b'"]}')
    assert status == 413 and b"200000 bytes" in reply  # by Content-Length
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    conn.putrequest("POST", "/cluster")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b'{"sentences": ["' + b"y" * 60_000
    for _ in range(5):  # streamed in: no Content-Length to refuse it by
        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    conn.send(b"0\r\n\r\n")
    assert conn.getresponse().status == 413
    status, reply = raw(service, json.dumps({"sentences": ["many words here " * 25] * 30}).encode())
    assert status == 413 and b"word pieces in all" in reply  # 30 x 77 word pieces > 1500
    status, reply = raw(service, json.dumps({"sentences": list(range(19_000))}).encode())
    assert status == 422 and len(reply) < 5000  # the error does not echo a large body back


def test_flags_are_checked_before_the_model_loads(tmp_path) -> None:
    for args, says in (
        (["--threshold", "-1"], "--threshold"),
        (["--threshold", "nan"], "--threshold"),
        (["--workers", "0"], "--workers"),
        (["--threads", "0"], "--threads"),
        (["--max-chars", "-1"], "--max-chars"),
        (["--statsd", "nohost"], "--statsd"),
        (["--statsd", "no.such.host.invalid:8125"], "does not resolve"),
        (["--max-tokens", "100000", "--timeout", "60"], "cannot be encoded within --timeout"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "webops", "cluster", "serve", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        last = r.stderr.strip().splitlines()[-1]  # argparse's usage, then the error on one line
        assert r.returncode == 2 and says in last and "Traceback" not in r.stderr, (args, r.stderr)


def test_the_presets_group_by_topic_by_default(service: Service) -> None:
    from sklearn.metrics import adjusted_rand_score

    data = json.loads((Path(__file__).parents[2] / "bench" / "data" / "cluster_eval.json").read_text())
    topics = data["sets"]["headlines"]
    sentences = [s for group in topics.values() for s in group]
    truth = [name for name, group in topics.items() for _ in group]

    def ari(body: dict) -> tuple[float, int]:
        status, reply, _ = service.post({"sentences": sentences, **body})
        assert status == 200
        label = {s: i for i, c in enumerate(reply["clusters"]) for s in c}
        return adjusted_rand_score(truth, [label[s] for s in sentences]), len(reply["clusters"])

    # topic, the default: chosen on held-out sets (bench/cluster_eval.py), it scores 0.46 on these
    # headlines (0.75 for the default before, which had been fitted to them): well above chance
    assert ari({})[0] >= 0.4
    assert ari({"mode": "paraphrase"})[1] == len(sentences)  # headlines are not rewordings of each other


def test_docs_work_offline_and_the_schema_has_the_bounds(service: Service) -> None:
    status, page = service.get("/docs")
    assert status == 200 and "cdn" not in page.lower() and "/docs-static/swagger-ui-bundle.js" in page
    assert service.get("/docs-static/swagger-ui-bundle.js")[0] == 200
    schema = json.loads(service.get("/openapi.json")[1])
    assert "/cluster" in schema["paths"] and "English" in schema["info"]["description"]
    request = next(
        v for k, v in schema["components"]["schemas"].items() if "sentences" in v.get("properties", {})
    )
    assert request["properties"]["sentences"]["maxItems"] == 50
    assert request["properties"]["sentences"]["items"]["maxLength"] == 3000


def test_sustained_load_across_recycles_loses_no_request(service: Service) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # 60 requests, 4 at a time, on 2 workers replaced every 3 requests (about 20 recycles): every
    # answer right, from workers forked off the preloaded master, and not one request lost.
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: service.post({"sentences": SEED[:3]}), range(60)))
    for status, body, _ in results:
        assert status == 200 and body == {"clusters": [SEED[:3]]}, (status, body)
    pids = {headers["x-worker-pid"] for _, _, headers in results}
    assert len(pids) >= 5, pids


def test_operability(service: Service, home: Path) -> None:
    service.post({"sentences": "not a list"})  # an error is counted too, with its latency
    seen: list[str] = []
    while not any(line.startswith("webops.cluster.responses.cluster.422:") for line in seen):
        seen += service.statsd.recv(65536).decode().splitlines()
    assert any(line.startswith("webops.cluster.latency.cluster:") for line in seen)
    wait_until(lambda: "POST /cluster" in (home / "access.log").read_text(), what="the access log")
    assert not (home / ".gunicorn").exists()  # no control socket in the home directory


def test_requests_are_reported_to_statsd(service: Service) -> None:
    service.post({"sentences": SEED[:2]})
    seen: list[str] = []
    while not {"webops.cluster.requests:1|c", "webops.cluster.responses.cluster.200:1|c"} <= set(seen):
        seen += service.statsd.recv(65536).decode().splitlines()
    assert any(line.startswith("webops.cluster.latency.cluster:") for line in seen)


def test_reload_mode_for_development() -> None:
    s = Service("--reload", "--log-level", "info")
    try:
        assert s.post({"sentences": SEED[5:]})[1] == {"clusters": [SEED[5:]]}
    finally:
        s.stop()
    assert s.proc.stderr is not None
    watched = s.proc.stderr.read().decode()
    package = str(Path(__file__).parents[2] / "src" / "webops")
    assert (
        f"'{package}'" in watched and ".venv" not in watched.split("Will watch for changes")[1].split("\n")[0]
    )


def test_generated_requests_never_get_a_server_error(service: Service) -> None:
    """schemathesis, bounded: requests generated from the OpenAPI schema, valid and not, 25 an
    operation; none may get a 5xx."""
    try:
        import schemathesis
        from schemathesis.checks import not_a_server_error
    except ImportError:
        schemathesis = None
    need(schemathesis is not None, "schemathesis not installed (the dev extra)")
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{service.port}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/cluster" for op in operations)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        no_server_error()
