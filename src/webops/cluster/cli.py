"""`webops cluster serve`: the clustering API under gunicorn (or uvicorn --reload for development)."""

from __future__ import annotations

import argparse
import os

from ..common.config import ConfigError
from . import DEFAULT_MODE, PRESETS


def _env(name: str, default: str | None) -> str | None:
    """A default from the environment, as text: argparse converts it with the option's `type` only
    when this command runs, so `PORT=abc` is an error of `webops cluster serve` alone (naming the
    option), never of every webops tool at start-up."""
    return os.environ.get(name) or default


def _at_least(minimum: int):
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return check


def _port(text: str) -> int:
    value = _at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1-65535)")
    return value


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value <= 2):  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text} is not a cosine distance in (0, 2]")
    return value


def _address(text: str) -> str:
    """host:port that resolves now: a typo is an error at start, not a traceback after the model loads."""
    import socket

    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {host} does not resolve ({e.strerror or e})") from None
    return text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="text-clustering HTTP API (needs: pip install webops[cluster])")
    cmds = p.add_subparsers(dest="cluster_cmd", metavar="COMMAND", required=True)
    s = cmds.add_parser(
        "serve",
        help="serve the API",
        description='POST /cluster {"sentences": [...]}, GET /health, '
        "/docs. Defaults can come from the environment: WORKERS, PORT, TIMEOUT, LOG_LEVEL.",
    )
    s.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=_port, default=_env("PORT", "8000"), help="port (PORT, default 8000)")
    s.add_argument(
        "--workers", type=_at_least(1), default=_env("WORKERS", "3"), help="worker processes (WORKERS, 3)"
    )
    s.add_argument(
        "--timeout", type=_at_least(1), default=_env("TIMEOUT", "60"), help="worker timeout (TIMEOUT, 60 s)"
    )
    s.add_argument(
        "--log-level", default=_env("LOG_LEVEL", "info"), help="gunicorn log level (LOG_LEVEL, info)"
    )
    s.add_argument(
        "--max-requests",
        type=_at_least(0),
        default=0,
        help="recycle a worker after N requests (default 0: never; see the README)",
    )
    s.add_argument(
        "--max-requests-jitter",
        type=_at_least(0),
        help="random extra requests per worker, so they do not retire together (default: half of N)",
    )
    s.add_argument(
        "--no-preload",
        dest="preload",
        action="store_false",
        help="load the model in every worker instead of once in the master (to compare memory)",
    )
    s.add_argument("--threads", type=_at_least(1), default=1, help="torch threads per worker (1)")
    s.add_argument(
        "--model",
        default=_env("MODEL", None),
        help="model path or name (MODEL; default: bundled all-MiniLM-L6-v2)",
    )
    s.add_argument(
        "--mode",
        choices=sorted(PRESETS),
        default=DEFAULT_MODE,
        help="default grouping: topic (cosine distance 0.85) or paraphrase (0.4); default topic",
    )
    s.add_argument(
        "--threshold", type=_threshold, help="default cosine distance threshold, in (0, 2] (overrides --mode)"
    )
    s.add_argument(
        "--max-sentences", type=_at_least(1), default=1000, help="sentences per request at most (1000)"
    )
    s.add_argument(
        "--max-chars", type=_at_least(1), default=2000, help="characters per sentence at most (2000)"
    )
    s.add_argument(
        "--max-tokens",
        type=_at_least(1),
        default=50_000,
        help="word pieces per request at most (50000: ~16 s of a core; at most 1000 x --timeout)",
    )
    s.add_argument(
        "--max-body", type=_at_least(1), default=1 << 20, help="request body bytes at most (1048576)"
    )
    s.add_argument(
        "--statsd", type=_address, metavar="HOST:PORT", help="send counts and latency to this statsd"
    )
    s.add_argument(
        "--max-queue",
        type=_at_least(1),
        default=100_000,
        help="word pieces queued in a worker before a 503 with Retry-After (100000)",
    )
    s.add_argument(
        "--keep-alive",
        type=_at_least(1),
        default=5,
        help="seconds a connection may stay idle, before its first request and between requests (5)",
    )
    s.add_argument(
        "--request-timeout",
        type=_at_least(1),
        default=30,
        help="seconds a request's headers and body may take to arrive, from its first byte (30)",
    )
    s.add_argument(
        "--max-connections",
        type=_at_least(1),
        default=1000,
        help="connections a worker holds at most (1000; kept below its open-file limit)",
    )
    s.add_argument(
        "--keepalive-requests",
        type=_at_least(0),
        default=100,
        help="requests on one keep-alive connection before it is closed (100; 0: no limit)",
    )
    s.add_argument("--access-log", metavar="FILE", help="log every request to FILE ('-': stderr)")
    s.add_argument("--reload", action="store_true", help="development: uvicorn with auto-reload, one process")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from .api import Limits
        from .serve import ServeOptions, Server
    except ImportError as e:
        raise ConfigError(f"{e.name} is missing: pip install 'webops[cluster]'") from None
    limits = Limits(args.max_sentences, args.max_chars, args.max_tokens, args.max_body, args.max_queue)
    try:
        limits.check(args.timeout)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if args.access_log and args.access_log != "-":
        try:  # as the workers will open it (append, created if missing), before the model loads
            with open(args.access_log, "a", encoding="utf-8"):
                pass
        except OSError as e:
            raise ConfigError(f"--access-log {args.access_log}: {e.strerror or e}") from None
    if args.reload:
        import uvicorn

        os.environ.update(
            {
                "WEBOPS_CLUSTER_MODEL": args.model or "",
                "WEBOPS_CLUSTER_STATSD": args.statsd or "",
                "WEBOPS_CLUSTER_ACCESS_LOG": args.access_log or "",
                "WEBOPS_CLUSTER_MODE": args.mode,
                "WEBOPS_CLUSTER_THRESHOLD": "" if args.threshold is None else str(args.threshold),
            }
        )
        uvicorn.run(
            "webops.cluster.serve:dev_app",
            factory=True,
            reload=True,
            reload_dirs=[os.path.dirname(os.path.dirname(os.path.abspath(__file__)))],  # not .venv
            host=args.host,
            port=args.port,
            log_level=args.log_level,
        )
        return 0
    opts = ServeOptions(
        host=args.host,
        port=args.port,
        workers=args.workers,
        timeout=args.timeout,
        max_requests=args.max_requests,
        max_requests_jitter=args.max_requests_jitter,
        log_level=args.log_level,
        preload=args.preload,
        threads=args.threads,
        model=args.model,
        mode=args.mode,
        threshold=args.threshold,
        limits=limits,
        statsd=args.statsd,
        access_log=args.access_log,
        keep_alive=args.keep_alive,
        request_timeout=args.request_timeout,
        max_connections=args.max_connections,
        keepalive_requests=args.keepalive_requests,
    )
    Server(opts).run()
    return 0
