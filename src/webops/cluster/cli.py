"""`webops cluster serve`: the clustering API under gunicorn (or uvicorn --reload for development)."""

from __future__ import annotations

import argparse
import os
import sys


def _env(name: str, default: str | None) -> str | None:
    """A default from the environment, as text: argparse converts it with the option's `type` only
    when this command runs, so `PORT=abc` is an error of `webops cluster serve` alone (naming the
    option), never of every webops tool at start-up."""
    return os.environ.get(name) or default


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
    s.add_argument("--port", type=int, default=_env("PORT", "8000"), help="port (PORT, default 8000)")
    s.add_argument("--workers", type=int, default=_env("WORKERS", "3"), help="worker processes (WORKERS, 3)")
    s.add_argument(
        "--timeout", type=int, default=_env("TIMEOUT", "60"), help="worker timeout (TIMEOUT, 60 s)"
    )
    s.add_argument(
        "--log-level", default=_env("LOG_LEVEL", "info"), help="gunicorn log level (LOG_LEVEL, info)"
    )
    s.add_argument(
        "--max-requests", type=int, default=50, help="recycle a worker after N requests (50; 0: never)"
    )
    s.add_argument(
        "--max-requests-jitter", type=int, default=10, help="random extra requests per worker (10)"
    )
    s.add_argument(
        "--no-preload",
        dest="preload",
        action="store_false",
        help="load the model in every worker instead of once in the master (to compare memory)",
    )
    s.add_argument("--threads", type=int, default=1, help="torch threads per worker (1)")
    s.add_argument(
        "--model",
        default=_env("MODEL", None),
        help="model path or name (MODEL; default: bundled all-MiniLM-L6-v2)",
    )
    s.add_argument("--threshold", type=float, default=0.5, help="default cosine distance threshold (0.5)")
    s.add_argument("--max-sentences", type=int, default=1000, help="sentences per request at most (1000)")
    s.add_argument("--max-chars", type=int, default=2000, help="characters per sentence at most (2000)")
    s.add_argument("--statsd", metavar="HOST:PORT", help="send request count and latency to this statsd")
    s.add_argument("--reload", action="store_true", help="development: uvicorn with auto-reload, one process")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from .serve import ServeOptions, Server
    except ImportError as e:
        print(f"webops cluster: {e.name} is missing: pip install 'webops[cluster]'", file=sys.stderr)
        return 2
    if args.reload:
        import uvicorn

        os.environ.update(
            {
                "WEBOPS_CLUSTER_MODEL": args.model or "",
                "WEBOPS_CLUSTER_STATSD": args.statsd or "",
                "WEBOPS_CLUSTER_THRESHOLD": str(args.threshold),
            }
        )
        uvicorn.run(
            "webops.cluster.serve:dev_app",
            factory=True,
            reload=True,
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
        threshold=args.threshold,
        max_sentences=args.max_sentences,
        max_chars=args.max_chars,
        statsd=args.statsd,
    )
    Server(opts).run()
    return 0
