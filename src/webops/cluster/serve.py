"""Serving: gunicorn with uvicorn workers and the model loaded once, in the master, before fork.

With `preload_app`, the workers share the model's memory pages copy-on-write instead of each
loading its own copy (bench/cluster_bench.py measures the difference). Nothing runs inference in
the master; each worker sets torch's thread count after the fork.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gunicorn.app.base import BaseApplication

from . import model as models
from .api import Limits, create_app
from .clustering import DEFAULT_THRESHOLD


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 3
    timeout: int = 60
    max_requests: int = 50
    max_requests_jitter: int = 10
    log_level: str = "info"
    preload: bool = True
    threads: int = 1  # torch threads per worker: workers are the parallelism
    model: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    max_sentences: int = 1000
    max_chars: int = 2000
    statsd: str | None = None

    def app(self):
        return create_app(
            models.load(self.model), Limits(self.max_sentences, self.max_chars), self.threshold, self.statsd
        )


class Server(BaseApplication):
    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        super().__init__()

    def load_config(self) -> None:
        o = self.opts
        threads = o.threads

        def post_fork(server, worker) -> None:
            models.after_fork(threads)

        settings = {
            "bind": f"{o.host}:{o.port}",
            "workers": o.workers,
            "worker_class": "uvicorn_worker.UvicornWorker",
            "preload_app": o.preload,
            "max_requests": o.max_requests,
            "max_requests_jitter": o.max_requests_jitter,
            "timeout": o.timeout,
            "loglevel": o.log_level,
            "post_fork": post_fork,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        return self.opts.app()


def dev_app():
    """For `--reload`: uvicorn re-imports this in a fresh process, so options travel in the environment."""
    return ServeOptions(
        model=os.environ.get("WEBOPS_CLUSTER_MODEL") or None,
        threshold=float(os.environ.get("WEBOPS_CLUSTER_THRESHOLD", DEFAULT_THRESHOLD)),
        statsd=os.environ.get("WEBOPS_CLUSTER_STATSD") or None,
    ).app()
