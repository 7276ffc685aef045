"""Operability, against the real server (2 gunicorn workers, recycled): /metrics adding up every
worker, bounded route labels, readiness apart from liveness, the access log, statsd per route,
strict request types and the documented error answers, and `k`."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from tests.cluster.test_serve import Service, available
from tests.conftest import need, wait_until
from webops.cluster import EXAMPLE

SEED = EXAMPLE
ROUTES = {"/cluster", "/health", "/ready", "/metrics", "/openapi.json", "/docs", "/docs-static", "unmatched"}
RECYCLE_EVERY = 150  # requests a worker serves before it is replaced


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    (home / "tmp").mkdir()
    return home


def start(home: Path, *args: str) -> Service:
    # TMPDIR: the metric directories are made there, where the tests can see them.
    return Service(*args, env={**os.environ, "HOME": str(home), "TMPDIR": str(home / "tmp")})


@pytest.fixture(scope="module")
def service(home: Path) -> Iterator[Service]:
    s = start(
        home,
        *("--workers", "2", "--max-requests", str(RECYCLE_EVERY), "--max-requests-jitter", "0"),
        *("--max-sentences", "50", "--access-log", str(home / "access.log")),
    )
    yield s
    s.stop()


def call(
    service: Service, method: str, path: str, body: object = None, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def scrape(service: Service) -> dict[tuple[str, tuple], float]:
    """/metrics parsed the way Prometheus parses it: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, text = call(service, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain"), (status, headers)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def responses(metrics: dict, route: str, status: int) -> float:
    return metrics.get(("webops_cluster_requests_total", (("route", route), ("status", str(status)))), 0.0)


def test_metrics_add_up_every_worker(service: Service) -> None:
    need(importlib_ok("prometheus_client"), "prometheus_client (the cluster extra)")
    before = scrape(service)
    pids: set[str] = set()
    sent = 0

    def two_workers_answered() -> bool:
        nonlocal sent
        with ThreadPoolExecutor(4) as pool:
            for status, headers, _ in pool.map(
                lambda _: call(service, "POST", "/cluster", {"sentences": SEED[:2]}), range(4)
            ):
                assert status == 200
                pids.add(headers["x-worker-pid"])
        sent += 4
        return len(pids) >= 2

    wait_until(two_workers_answered, timeout=60, what="two workers to answer")
    for _ in range(4):  # whichever worker answers the scrape, it counts every worker's requests
        after = scrape(service)
        assert responses(after, "/cluster", 200) - responses(before, "/cluster", 200) == sent
        count = ("webops_cluster_request_duration_seconds_count", (("route", "/cluster"), ("status", "200")))
        assert after[count] - before.get(count, 0) == sent
        model = ("webops_cluster_model_seconds_count", ())
        assert after[model] - before.get(model, 0) == sent
        assert after[("webops_cluster_queue_depth", ())] == 0
        assert after[("webops_cluster_requests_in_progress", ())] == 1  # the scrape itself
        assert responses(after, "/metrics", 200) > responses(before, "/metrics", 200)


def importlib_ok(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_labels_stay_bounded_and_recycled_workers_counts_stay(service: Service, home: Path) -> None:
    need(importlib_ok("prometheus_client"), "prometheus_client (the cluster extra)")
    before = scrape(service)
    pid = json.loads(call(service, "GET", "/health")[2])["pid"]
    paths = [f"/{uuid.uuid4().hex}/{i}" for i in range(900)]
    paths += [f"/docs/{uuid.uuid4().hex}" for _ in range(50)]  # no route: /docs is one page
    paths += [f"/docs-static/{uuid.uuid4().hex}.js" for _ in range(50)]  # the mount's 404s
    for path in paths:
        assert call(service, "GET", path)[0] == 404
    after = scrape(service)
    routes = {dict(labels).get("route") for _, labels in after} - {None}
    assert routes <= ROUTES, routes - ROUTES
    assert responses(after, "unmatched", 404) - responses(before, "unmatched", 404) == 950
    assert responses(after, "/docs-static", 404) - responses(before, "/docs-static", 404) == 50
    # 1000 requests on 2 workers that each serve at most RECYCLE_EVERY: the workers that counted
    # them are gone (the one that answered /health before too), and not one count went with them
    assert 2 * RECYCLE_EVERY < 1000
    assert json.loads(call(service, "GET", "/health")[2])["pid"] != pid
    # ... and their files were folded into the archive: a scrape reads a file per live worker (2),
    # the archive and at most a worker or two not folded yet, not one per worker there ever was (8+)
    folder = next(p for p in (home / "tmp").iterdir() if p.name.startswith("webops-cluster-metrics-"))
    wait_until(
        lambda: len(list(folder.glob("counter_*.db"))) <= 5,
        what="the dead workers' files to be folded",
        detail=lambda: str(sorted(p.name for p in folder.iterdir())),
    )
    assert (folder / "counter_archive.db").exists()


def test_ready_and_live_are_separate(service: Service) -> None:
    status, _, body = call(service, "GET", "/ready")
    assert status == 200 and json.loads(body)["status"] == "ready"
    assert call(service, "GET", "/health")[0] == 200


def test_not_ready_when_the_queue_is_full_or_no_model_while_still_alive() -> None:
    need(available(), "the cluster extra is not installed (pip install 'webops[cluster]')")
    from fastapi.testclient import TestClient

    from webops.cluster.api import Limits, create_app

    app = create_app(object(), Limits())
    client = TestClient(app)
    assert client.get("/ready").status_code == 200
    app.state.queue_full = lambda: True  # the hook the scheduler sets
    reply = client.get("/ready")
    assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
    assert reply.json()["reasons"] == ["the queue is full"]
    assert client.get("/health").status_code == 200  # alive all the same
    reply = TestClient(create_app(None, Limits())).get("/ready")
    assert reply.status_code == 503 and reply.json()["reasons"] == ["the model is not loaded"]


LINE = re.compile(
    r'^(?P<client>\S+) - - \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)" (?P<seconds>\d+\.\d{3})$'
)


def test_the_access_log_has_time_duration_and_bytes(service: Service, home: Path) -> None:
    agent = f"probe-{uuid.uuid4().hex}"
    status, _, body = call(
        service, "POST", "/cluster?trace=1", {"sentences": SEED[:3]}, {"User-Agent": agent, "Referer": "r"}
    )
    assert status == 200
    with socket.create_connection(("127.0.0.1", service.port), timeout=60) as raw:  # no client escapes it
        raw.sendall(
            b'GET /no/such/"page"/a\\b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
            b'User-Agent: %s "bad" \x01\xc3\xa9\r\n\r\n' % agent.encode()
        )
        assert raw.makefile("rb").readline().startswith(b"HTTP/1.1 404")
    log = home / "access.log"
    wait_until(lambda: log.read_text().count(agent) >= 2, what="the access log lines")
    lines = log.read_text().splitlines()
    for line in lines:
        assert LINE.match(line), line  # every line, not only ours: one format
    mine = [LINE.match(line) for line in lines if agent in line]
    ok = next(m for m in mine if m and m["agent"] == agent)
    assert ok["client"] == "127.0.0.1" and ok["request"] == "POST /cluster?trace=1 HTTP/1.1"
    assert ok["status"] == "200" and int(ok["bytes"]) == len(body) and ok["referer"] == "r"
    assert float(ok["seconds"]) >= 0
    arrived = datetime.strptime(ok["time"], "%d/%b/%Y:%H:%M:%S %z")
    assert abs((datetime.now(arrived.tzinfo) - arrived).total_seconds()) < 3600
    bad = next(m for m in mine if m and m["agent"] == agent + r" \x22bad\x22 \x01\xC3\xA9")
    assert bad["request"] == r"GET /no/such/\x22page\x22/a\x5Cb HTTP/1.1" and bad["status"] == "404"


def test_statsd_counts_each_route(service: Service) -> None:
    service.statsd.setblocking(False)  # what earlier tests sent may fill the socket's buffer: empty it
    with contextlib.suppress(BlockingIOError):
        while True:
            service.statsd.recv(65536)
    service.statsd.settimeout(5)
    call(service, "GET", "/health")
    call(service, "GET", f"/{uuid.uuid4().hex}")
    call(service, "POST", "/cluster", {"sentences": SEED[:2]})
    call(service, "POST", "/cluster", {"sentences": "not a list"})
    call(service, "GET", "/openapi.json")
    wanted = {
        "webops.cluster.responses.health.200:1|c",
        "webops.cluster.responses.unmatched.404:1|c",
        "webops.cluster.responses.cluster.200:1|c",
        "webops.cluster.responses.cluster.422:1|c",
        "webops.cluster.responses.openapi_json.200:1|c",
    }
    seen: list[str] = []
    while not wanted <= set(seen):
        try:
            seen += service.statsd.recv(65536).decode().splitlines()
        except TimeoutError:
            pytest.fail(f"not received: {wanted - set(seen)}")
    assert any(line.startswith("webops.cluster.latency.cluster:") for line in seen)
    assert any(line.startswith("webops.cluster.latency.health:") for line in seen)


def test_types_are_strict(service: Service) -> None:
    for body in (
        {"sentences": ["a", "b"], "threshold": True},
        {"sentences": ["a", "b"], "threshold": "0.5"},
        {"sentences": ["a", 1]},
        {"sentences": ["a", True]},
        {"sentences": ["a", "b"], "k": True},
        {"sentences": ["a", "b"], "k": 2.0},
        {"sentences": ["a", "b"], "k": "2"},
        {"sentences": ["a", "b"], "k": 0},
        {"sentences": ["a", "b"], "k": 51},  # over --max-sentences
        {"sentences": ["a", "b"], "k": 2, "threshold": 0.5},
        {"sentences": ["a", "b"], "k": 2, "mode": "topic"},
        {"sentences": ["a", "b"], "treshold": 0.5},  # a misspelt field is not ignored
    ):
        status, _, reply = call(service, "POST", "/cluster", body)
        assert status == 422, (body, status, reply)
        assert len(reply) < 2000
    assert call(service, "POST", "/cluster", {"sentences": ["a", "b"], "threshold": 1})[0] == 200


def test_the_schema_has_the_types_and_the_error_answers(service: Service) -> None:
    status, _, text = call(service, "GET", "/openapi.json")
    assert status == 200
    schema = json.loads(text)
    components = schema["components"]["schemas"]
    request = next(v for v in components.values() if "sentences" in v.get("properties", {}))
    props = request["properties"]
    assert props["sentences"]["items"] == {"type": "string", "maxLength": 2000}
    assert props["sentences"]["maxItems"] == 50
    assert {"type": "number", "exclusiveMinimum": 0, "maximum": 2} in [
        {k: v for k, v in option.items() if k in ("type", "exclusiveMinimum", "maximum")}
        for option in props["threshold"]["anyOf"]
    ]
    assert {"type": "integer", "minimum": 1, "maximum": 50} in [
        {k: v for k, v in option.items() if k in ("type", "minimum", "maximum")}
        for option in props["k"]["anyOf"]
    ]
    answers = schema["paths"]["/cluster"]["post"]["responses"]
    for code in ("200", "400", "413", "422", "503"):
        assert "application/json" in answers[code]["content"], code
    assert {"/health", "/ready", "/metrics"} <= set(schema["paths"])
    assert "503" in schema["paths"]["/ready"]["get"]["responses"]


def test_the_error_answers_are_what_the_schema_says(service: Service) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    conn.request("POST", "/cluster", b'{"sentences": ["\xff\xfe"]}', {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 400 and isinstance(json.loads(r.read())["detail"], str)
    conn.close()
    status, _, reply = call(service, "POST", "/cluster", {"sentences": ["a"], "threshold": True})
    detail = json.loads(reply)["detail"]
    assert status == 422 and set(detail[0]) <= {"type", "loc", "msg"}


def test_k_asks_for_a_number_of_clusters(service: Service) -> None:
    for k, expected in ((1, 1), (2, 2), (4, 4), (9, 9), (20, 9)):
        status, _, reply = call(service, "POST", "/cluster", {"sentences": SEED, "k": k})
        clusters = json.loads(reply)["clusters"]
        assert status == 200 and len(clusters) == expected, (k, reply)
        assert sorted(s for c in clusters for s in c) == sorted(SEED)
    status, _, reply = call(service, "POST", "/cluster", {"sentences": SEED, "k": 2})
    assert json.loads(reply)["clusters"] == [SEED[:5], SEED[5:]]
    assert call(service, "POST", "/cluster", {"sentences": [], "k": 3})[2] == b'{"clusters":[]}'


def test_each_instance_has_its_own_metrics_dir_removed_at_exit(service: Service, home: Path) -> None:
    need(importlib_ok("prometheus_client"), "prometheus_client (the cluster extra)")
    dirs = lambda: {p for p in (home / "tmp").iterdir() if p.name.startswith("webops-cluster-metrics-")}  # noqa: E731
    first = dirs()
    assert len(first) == 1 and any(p.suffix == ".db" for p in next(iter(first)).iterdir())
    other = start(home, "--workers", "1")  # a second instance on the same host and TMPDIR
    try:
        assert len(dirs()) == 2
        for _ in range(3):
            assert call(other, "POST", "/cluster", {"sentences": SEED[:2]})[0] == 200
        assert responses(scrape(other), "/cluster", 200) == 3  # its own requests, not the first's
        assert responses(scrape(service), "/cluster", 200) > 3
    finally:
        other.stop()
    wait_until(lambda: dirs() == first, what="the stopped instance's metrics dir to go")


def test_dead_workers_files_are_folded_without_losing_a_count(tmp_path: Path) -> None:
    """What the master does at each worker exit, on its own: the dead workers' files become one
    archive per type, and the scrape says the same before and after."""
    need(importlib_ok("prometheus_client"), "prometheus_client (the cluster extra)")
    import subprocess
    import sys

    worker = (
        "from webops.cluster.metrics import Metrics\n"
        "m = Metrics()\n"
        "for i in range(int(__import__('sys').argv[1])):\n"
        "    m.observe('/cluster', 200, i / 10); m.observe('unmatched', 404, 0.001)\n"
        "    m.model_seconds.observe(i / 100)\n"
        "m.queue_depth.set(3)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (3, 5, 7):  # three workers, each its own process and files
        subprocess.run([sys.executable, "-c", worker, str(n)], env=env, check=True, timeout=60)
    script = (
        "import os, sys\n"
        "from webops.cluster import metrics\n"
        "m = metrics.Metrics()\n"
        "sys.stdout.buffer.write(m.exposition()[0] + b'=====\\n')\n"
        "assert metrics.fold(os.environ['PROMETHEUS_MULTIPROC_DIR'], {os.getpid()})\n"
        "sys.stdout.buffer.write(m.exposition()[0] + b'=====\\n' + str(os.getpid()).encode())\n"
    )
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    before, after, folder = r.stdout.split("=====\n")

    def parsed(text: str) -> dict:
        from prometheus_client.parser import text_string_to_metric_families

        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    assert parsed(after) == pytest.approx(parsed(before))  # the same scrape (sums: float rounding)
    assert parsed(after)[("webops_cluster_requests_total", (("route", "/cluster"), ("status", "200")))] == 15
    assert parsed(after)[("webops_cluster_model_seconds_count", ())] == 15
    # the folding process's own files are a live process's: they stay
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("counter", "histogram")))
    assert [n for n in left if folder not in n] == ["counter_archive.db", "histogram_archive.db"], left
