"""`webops cluster serve`: the clustering API under gunicorn (or uvicorn --reload for development).

Its settings go through the one settings layer (common/settings.py): the defaults below, then
`--config FILE` (a JSON / JS object keyed by the setting names: `{"workers": 4, "max_sentences":
500}`), then the environment (HOST, PORT, WORKERS, TIMEOUT, LOG_LEVEL, MODEL: what container
deployments set), then the flags. They are resolved only when this command runs, so `PORT=abc` is
an error of `webops cluster serve` alone (naming $PORT), never of every webops tool at start-up.
`--check-config` prints each value and where it comes from without loading the model (nor
importing torch: it works without the cluster extra).
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from ..common.config import ConfigError
from ..common.settings import Key, Resolved, Settings, boolean, choice, number, optional, string
from . import DEFAULT_MODE, PRESETS


def _whole(minimum: int, maximum: int | None = None):
    """A whole number within the bounds, from a file's number or the environment's / a flag's text."""
    check = number(minimum, integer=True, maximum=maximum)

    def whole(v: Any) -> int:
        if isinstance(v, float | str) and not isinstance(v, bool):
            try:
                infinite = math.isinf(float(v))
            except ValueError:
                infinite = False
            if infinite:  # number(integer=True) would raise OverflowError on int(inf)
                raise ValueError(f"expected a whole number, got {v!r}")
        return int(check(v))

    return whole


def _threshold(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError(f"expected a number, got {v!r}")
    try:
        value = float(v)
    except ValueError:
        raise ValueError(f"expected a number, got {v!r}") from None
    if not (0 < value <= 2):  # NaN fails this too
        raise ValueError(f"{v!r} is not a cosine distance in (0, 2]")
    return value


def _address(v: Any) -> str:
    """host:port that resolves now: a typo is an error at start, not a traceback after the model loads."""
    import socket

    text = string(v)
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
    except OSError as e:
        raise ValueError(f"{text!r}: {host} does not resolve ({e.strerror or e})") from None
    return text


_presets = " or ".join(f"{name} (cosine distance {d})" for name, d in PRESETS.items())

# Every serve option that is a setting. Names are the ServeOptions / Limits fields (and the keys
# of a --config file); the environment variables are the ones container deployments already set.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")  # gunicorn's (and uvicorn's) names

SETTINGS = Settings(
    {
        "host": Key("127.0.0.1", string, "bind address", env="HOST", flag="--host"),
        "port": Key(8000, _whole(1, 65535), "port", env="PORT", flag="--port"),
        "workers": Key(3, _whole(1), "worker processes", env="WORKERS", flag="--workers"),
        "timeout": Key(60, _whole(1), "worker timeout, seconds", env="TIMEOUT", flag="--timeout"),
        "log_level": Key(
            "info",
            choice(*LOG_LEVELS),
            "gunicorn log level: " + ", ".join(LOG_LEVELS),
            env="LOG_LEVEL",
            flag="--log-level",
            text=str.lower,
        ),
        "max_requests": Key(
            0,
            _whole(0),
            "recycle a worker after this many requests; 0: never, see docs/cluster.md",
            flag="--max-requests",
        ),
        "max_requests_jitter": Key(
            None,
            optional(_whole(0)),
            "random extra requests per worker, so they do not retire together (default: half of "
            "--max-requests)",
            flag="--max-requests-jitter",
        ),
        "preload": Key(
            True,
            boolean,
            "load the model in every worker instead of once in the master (to compare memory)",
            flag="--no-preload",
            switch=False,
        ),
        "threads": Key(1, _whole(1), "torch threads per worker", flag="--threads"),
        "model": Key(
            None,
            optional(string),
            "model path or name, else the bundled all-MiniLM-L6-v2",
            env="MODEL",
            flag="--model",
        ),
        "mode": Key(DEFAULT_MODE, choice(*sorted(PRESETS)), f"default grouping: {_presets}", flag="--mode"),
        "threshold": Key(
            None,
            optional(_threshold),
            "default cosine distance threshold, in (0, 2] (overrides --mode)",
            flag="--threshold",
        ),
        "max_sentences": Key(1000, _whole(1), "sentences per request at most", flag="--max-sentences"),
        "max_chars": Key(2000, _whole(1), "characters per sentence at most", flag="--max-chars"),
        "max_tokens": Key(
            50_000,
            _whole(1),
            "word pieces per request at most (~16 s of a core; at most 1000 x --timeout)",
            flag="--max-tokens",
        ),
        "max_body": Key(1 << 20, _whole(1), "request body bytes at most", flag="--max-body"),
        "statsd": Key(
            None,
            optional(_address),
            "send counts and latency to this statsd",
            flag="--statsd",
            metavar="HOST:PORT",
        ),
        "max_queue": Key(
            100_000,
            _whole(1),
            "word pieces queued in a worker before a 503 with Retry-After",
            flag="--max-queue",
        ),
        "keep_alive": Key(
            5,
            _whole(1),
            "seconds a connection may stay idle, before its first request and between requests",
            flag="--keep-alive",
        ),
        "request_timeout": Key(
            30,
            _whole(1),
            "seconds a request's headers and body may take to arrive, from its first byte",
            flag="--request-timeout",
        ),
        "max_connections": Key(
            1000,
            _whole(1),
            "connections a worker holds at most (kept below its open-file limit)",
            flag="--max-connections",
        ),
        "keepalive_requests": Key(
            100,
            _whole(0),
            "requests on one keep-alive connection before it is closed (0: no limit)",
            flag="--keepalive-requests",
        ),
        "access_log": Key(
            None,
            optional(string),
            "log every request to FILE ('-': stderr)",
            flag="--access-log",
            metavar="FILE",
        ),
    }
)

LIMITS = ("max_sentences", "max_chars", "max_tokens", "max_body", "max_queue")  # api.Limits' fields


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="text-clustering HTTP API (needs: pip install webops[cluster])")
    cmds = p.add_subparsers(dest="cluster_cmd", metavar="COMMAND", required=True)
    s = cmds.add_parser(
        "serve",
        help="serve the API",
        description='POST /cluster {"sentences": [...]}, GET /health, /docs. Settings come from '
        "the defaults, then --config FILE (a JSON object keyed by the setting names), then the "
        "environment (HOST, PORT, WORKERS, TIMEOUT, LOG_LEVEL, MODEL), then the flags; "
        "--check-config shows where each comes from.",
    )
    SETTINGS.add_arguments(s)  # --config, --check-config, and every setting's flag
    s.add_argument("--reload", action="store_true", help="development: uvicorn with auto-reload, one process")
    p.set_defaults(run=run)


def _check_limits(resolved: Resolved, limits_type: Any) -> Any:
    """api.Limits from the settings, refused (naming where the values come from) if the worker
    timeout cannot hold a request of --max-tokens."""
    limits = limits_type(*(resolved[name] for name in LIMITS))
    try:
        limits.check(resolved["timeout"])
    except ValueError as e:
        where = ", ".join(f"{n} from {resolved.sources.get(n, 'default')}" for n in ("max_tokens", "timeout"))
        raise ConfigError(f"{e} ({where})") from None
    return limits


def run(args: argparse.Namespace) -> int:
    resolved = SETTINGS.resolve(args.config, flags=SETTINGS.flags(args))  # ConfigError: exit 2
    if args.check_config:
        try:  # the limits' own check, when the extra is there (it needs FastAPI, never torch)
            from .api import Limits
        except ImportError:
            pass
        else:
            _check_limits(resolved, Limits)
        print("\n".join(resolved.lines()))
        return 0
    try:
        from .api import Limits
        from .serve import ServeOptions, Server
    except ImportError as e:
        raise ConfigError(f"{e.name} is missing: pip install 'webops[cluster]'") from None
    limits = _check_limits(resolved, Limits)
    v = resolved.values
    access_log = v["access_log"]
    if access_log and access_log != "-":
        try:  # as the workers will open it (append, created if missing), before the model loads
            with open(access_log, "a", encoding="utf-8"):
                pass
        except OSError as e:
            source = resolved.sources.get("access_log", "default")
            raise ConfigError(f"{source}: access_log: {access_log}: {e.strerror or e}") from None
    if args.reload:
        import uvicorn

        os.environ.update(
            {
                "WEBOPS_CLUSTER_MODEL": v["model"] or "",
                "WEBOPS_CLUSTER_STATSD": v["statsd"] or "",
                "WEBOPS_CLUSTER_ACCESS_LOG": access_log or "",
                "WEBOPS_CLUSTER_MODE": v["mode"],
                "WEBOPS_CLUSTER_THRESHOLD": "" if v["threshold"] is None else str(v["threshold"]),
            }
        )
        uvicorn.run(
            "webops.cluster.serve:dev_app",
            factory=True,
            reload=True,
            reload_dirs=[os.path.dirname(os.path.dirname(os.path.abspath(__file__)))],  # not .venv
            host=v["host"],
            port=v["port"],
            log_level=v["log_level"],
        )
        return 0
    opts = ServeOptions(limits=limits, **{n: value for n, value in v.items() if n not in LIMITS})
    Server(opts).run()
    return 0
