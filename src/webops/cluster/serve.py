"""Serving: gunicorn with uvicorn workers and the model loaded once, in the master, before fork.

With `preload_app`, the workers share the model's memory pages copy-on-write instead of each
loading its own copy (bench/cluster_bench.py measures the difference). Nothing runs inference in
the master; each worker sets torch's thread count after the fork.

Worker recycling (`--max-requests`) is off by default: no memory creep was seen that it would
prevent, and a retiring worker cost seconds of capacity. When it is on, a retiring worker tells
its keep-alive clients `Connection: close` and drains its connections (worker.py), then leaves at
once (`os._exit` in gunicorn's worker_exit hook: Python's teardown of a preloaded model touches
every copy-on-write page, 42 -> 287 MiB and 4-7 s), so its replacement is forked right away, and
the limits are staggered (jitter: half the limit by default) so workers do not retire together.

Timeouts, connection limits and how connections spread over the workers: worker.py, with the
settings below (`workers.SETTINGS`, set here in the master and inherited by every worker).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from gunicorn.app.base import BaseApplication

from . import DEFAULT_MODE, metrics
from . import model as models
from . import worker as workers
from .api import Limits, create_app


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 3
    timeout: int = 60
    max_requests: int = 0
    max_requests_jitter: int | None = None  # None: half of max_requests
    log_level: str = "info"
    preload: bool = True
    threads: int = 1  # torch threads per worker: workers are the parallelism
    model: str | None = None
    mode: str = DEFAULT_MODE
    threshold: float | None = None  # overrides the mode's
    limits: Limits = field(default_factory=Limits)
    statsd: str | None = None
    access_log: str | None = None  # a file, or "-" for stderr
    keep_alive: int = 5  # idle seconds before a first request and between requests
    request_timeout: int = 30  # a request's headers and body must arrive within this, from its first byte
    max_connections: int = 1000  # a worker (and below its open-file limit)
    keepalive_requests: int = 100  # requests on one connection before `Connection: close` (0: no limit)

    def app(self):
        return create_app(
            models.load(self.model), self.limits, self.mode, self.threshold, self.statsd, self.access_log
        )


SLOW_RATE = 1000  # word pieces/s on a slow core (api.Limits.check): what a stop is bounded by
STOP_MARGIN = 5  # seconds for draining, the lifespan and the exit


def graceful_timeout(o: ServeOptions) -> int:
    """How long a stop (SIGTERM, or a worker retired) waits for a worker before SIGKILL: what a
    worker may hold, finished on a slow core. It may have admitted up to --max-queue word pieces
    (or one request of --max-tokens into an empty queue), and have requests still arriving (up to
    --request-timeout) and keep-alive clients coming back (--keep-alive). Never less than --timeout.
    Defaults: 100 + 30 + 5 + 5 = 140 s."""
    held = max(o.limits.max_queue, o.limits.max_tokens)
    return max(o.timeout, math.ceil(held / SLOW_RATE) + o.request_timeout + o.keep_alive + STOP_MARGIN)


class Server(BaseApplication):
    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        # This instance's directory for the workers' Prometheus metrics (metrics.py), made before
        # the app exists; removed at exit.
        self.metrics_dir = metrics.multiprocess_dir()
        super().__init__()

    def load_config(self) -> None:
        o = self.opts
        threads = o.threads

        def post_fork(server, worker) -> None:
            workers.die_with_parent(worker.ppid)  # a SIGKILLed master takes its workers with it
            models.after_fork(threads)

        def worker_exit(server, worker) -> None:
            os._exit(0)  # a retiring worker's teardown only costs time and memory: skip it

        def child_exit(server, worker) -> None:
            metrics.worker_exited(worker.pid, set(server.WORKERS))  # its gauges go, its counts stay

        metrics_dir = self.metrics_dir

        def on_exit(server) -> None:
            metrics.remove_dir(metrics_dir)

        jitter = o.max_requests // 2 if o.max_requests_jitter is None else o.max_requests_jitter
        # Read by each worker after the fork (worker.py): timeouts, connection limits, spreading.
        workers.SETTINGS = workers.Settings(
            keep_alive=o.keep_alive,
            request_timeout=o.request_timeout,
            max_connections=o.max_connections,
            keepalive_requests=o.keepalive_requests,
            workers=o.workers,
        )
        settings = {
            "bind": f"{o.host}:{o.port}",
            "workers": o.workers,
            "worker_class": "webops.cluster.worker.Worker",
            "preload_app": o.preload,
            "max_requests": o.max_requests,
            "max_requests_jitter": jitter,
            "timeout": o.timeout,
            # gunicorn's default (30 s) SIGKILLed a worker with two maximum-size requests admitted
            "graceful_timeout": graceful_timeout(o),
            "keepalive": o.keep_alive,
            "loglevel": o.log_level,
            "post_fork": post_fork,
            "worker_exit": worker_exit,
            "child_exit": child_exit,
            "on_exit": on_exit,
            # gunicorn's control socket (~/.gunicorn/gunicorn.ctl, one path for every instance): unused
            "control_socket_disable": True,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        return self.opts.app()


def dev_app():
    """For `--reload`: uvicorn re-imports this in a fresh process, so options travel in the environment."""
    threshold = os.environ.get("WEBOPS_CLUSTER_THRESHOLD")
    return ServeOptions(
        model=os.environ.get("WEBOPS_CLUSTER_MODEL") or None,
        mode=os.environ.get("WEBOPS_CLUSTER_MODE") or DEFAULT_MODE,
        threshold=float(threshold) if threshold else None,
        statsd=os.environ.get("WEBOPS_CLUSTER_STATSD") or None,
        access_log=os.environ.get("WEBOPS_CLUSTER_ACCESS_LOG") or None,
    ).app()
