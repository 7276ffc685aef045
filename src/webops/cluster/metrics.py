"""What every request did: Prometheus metrics, statsd counts and the access log, by route.

One ASGI middleware (`Observe`, the outermost) sees every response, 413s and 404s included, and
records it under its route *template* (`/cluster`, `/docs-static`; a path that matches no route
is `unmatched`), so neither `/docs/anything` nor random 404 paths can grow the label values.

Under gunicorn the workers are separate processes: each writes its metrics to memory-mapped files
in a directory private to this server instance (prometheus_client's multiprocess mode), which the
master creates before the app exists (`multiprocess_dir`) and removes when it exits; `/metrics`,
whichever worker answers it, adds up every worker's files. A worker that exits leaves its files
behind, so its counts stay in the totals; its gauges (live modes) are dropped, and the master
folds its counter and histogram files into one archive file per type (`worker_exited`), so a
scrape reads a file per live worker, not one per worker the server ever had (with --max-requests,
thousands a day). Scrapes and the folding take turns on a lock file: a scrape never sees a count
twice or not at all.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import os
import shutil
import tempfile
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK = "scrape.lock"  # in the metrics directory: scrapes share it, folding takes it alone
FOLDED = ("counter", "histogram")  # the types whose dead workers' files are folded into an archive
UNMATCHED = "unmatched"  # the route of a request no route matches (404s, mostly)
UNPARSED = "unparsed"  # the route of a request the HTTP parser rejected (a 400 from the worker)
# Seconds: a health check takes a millisecond, a request of --max-tokens word pieces up to a minute.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def multiprocess_dir() -> str:
    """In the gunicorn master, before the app and any metric exist: a new directory for this
    instance's metric files (two servers on one host never share one), in the environment the
    workers inherit, removed when the master exits (gunicorn's on_exit hook calls `remove_dir`;
    this atexit covers a master that stops before the arbiter runs, e.g. a port in use)."""
    path = tempfile.mkdtemp(prefix=f"webops-cluster-metrics-{os.getpid()}-")
    open(os.path.join(path, LOCK), "w").close()
    os.environ[ENV] = path
    # prometheus_client picks its value class when first imported: make sure it is the file-backed one.
    prometheus_values.ValueClass = prometheus_values.get_value_class()
    master = os.getpid()

    def at_exit() -> None:
        if os.getpid() == master:  # never at a worker's exit (workers inherit atexit handlers)
            remove_dir(path)

    atexit.register(at_exit)
    return path


def remove_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int, live: set[int]) -> None:
    """gunicorn's child_exit hook (in the master; `live`: the workers still running): the dead
    worker's live gauges (queue depth, requests in progress) leave the sums; its counters and
    histograms stay counted, folded into the archive."""
    path = os.environ.get(ENV)
    if path and os.path.isdir(path):
        mark_process_dead(pid, path)
        with contextlib.suppress(Exception):  # metrics never take the arbiter down
            fold(path, live | {os.getpid()})


def _pid(filename: str) -> int | None:
    name = os.path.basename(filename)[: -len(".db")]
    tail = name.rpartition("_")[2]
    return int(tail) if tail.isdigit() else None


def fold(path: str, live: set[int]) -> bool:
    """Fold the counter and histogram files of processes not in `live` into `<type>_archive.db`;
    False when a scrape is reading (the files stay until the next worker exits)."""
    fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # never wait: the arbiter is running this
        except BlockingIOError:
            return False
        for kind in FOLDED:
            archive = os.path.join(path, f"{kind}_archive.db")
            dead = [
                f
                for f in glob.glob(os.path.join(path, f"{kind}_*.db"))
                if _pid(f) is not None and _pid(f) not in live
            ]
            if not dead:
                continue
            merged = MultiProcessCollector.merge(
                dead + ([archive] if os.path.exists(archive) else []), accumulate=False
            )
            new = archive + ".new"  # not *.db: no scrape reads it
            with contextlib.suppress(FileNotFoundError):
                os.remove(new)
            out = MmapedDict(new)
            for metric in merged:
                for sample in metric.samples:
                    labels = sample.labels
                    key = mmap_key(
                        metric.name, sample.name, list(labels), list(labels.values()), metric.documentation
                    )
                    out.write_value(key, sample.value, 0.0)
            out.close()
            os.replace(new, archive)
            for f in dead:
                os.remove(f)
        return True
    finally:
        os.close(fd)  # and the lock with it


class Metrics:
    """The service's metrics. `queue_depth` and `model_seconds` are fed by the code that runs the
    model (the /cluster endpoint, or the scheduler in front of it); the middleware feeds the rest."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(ENV))
        # One process: a registry of this app's own (create_app may run more than once in a process).
        # Several: nothing is registered; /metrics reads every worker's files at each scrape.
        self.registry = CollectorRegistry()
        registry = None if self.multiprocess else self.registry
        self.requests = Counter(
            "webops_cluster_requests",
            "HTTP responses, by route template and status",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "webops_cluster_request_duration_seconds",
            "time from a request's first byte to its last response byte, by route template and status",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "webops_cluster_requests_in_progress",
            "requests being read, waiting or answered, all workers",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "webops_cluster_queue_depth",
            "clustering requests admitted and not finished (waiting for the model or in it), all workers",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.model_seconds = Histogram(
            "webops_cluster_model_seconds",
            "time a request spends in the model: encoding its sentences and clustering them",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route, str(status)).observe(seconds)

    @contextlib.contextmanager
    def model_time(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.model_seconds.observe(time.perf_counter() - started)

    def exposition(self) -> tuple[bytes, str]:
        """The text /metrics answers, and its content type."""
        if self.multiprocess:
            path = os.environ[ENV]
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path)
            fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)  # not while the master folds files
                return generate_latest(registry), CONTENT_TYPE_LATEST
            finally:
                os.close(fd)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def statsd_route(route: str) -> str:
    """A route template as one statsd name component: `/cluster` -> `cluster`, `/openapi.json` ->
    `openapi_json`, `/` -> `root`."""
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in route.strip("/"))
    return name or "root"
