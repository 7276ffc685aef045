"""`webops keytop`: live top of memcached keys."""

from __future__ import annotations

import argparse

from ..common import flags
from ..common.config import ConfigError
from .table import KeyTable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keytop",
        help="live top of memcached keys",
        description="Which memcached keys are hit most. By default reads memcached's own key stream "
        "(`watch fetchers mutations`, memcached >= 1.5): no root, hits and misses exact.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--stdin",
        action="store_true",
        help="read memcached protocol text from stdin (tcpflow -c, tcpdump -A, or bare)",
    )
    src.add_argument("--pcap", metavar="FILE", help="read a saved capture (tcpdump -w), pcap or pcapng")
    src.add_argument(
        "--field",
        type=int,
        metavar="N",
        help="pipestat mode: count the Nth whitespace field of each stdin line (1 = first)",
    )
    p.add_argument(
        "--server",
        action="append",
        metavar="HOST:PORT",
        help="memcached to watch (repeat for several; default 127.0.0.1:11211)",
    )
    p.add_argument(
        "--port", type=flags.port, default=11211, help="memcached port in captures (default 11211)"
    )
    p.add_argument("--limit", type=int, default=40, help="rows shown (default 40)")
    p.add_argument(
        "--time",
        type=flags.positive_float,
        default=1.0,
        metavar="S",
        help="refresh every S seconds (default 1)",
    )
    p.add_argument("--runtime", type=flags.positive_float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--format",
        choices=["text", "json", "csv"],
        help="print the final table in this format and exit (no live screen)",
    )
    p.add_argument(
        "--sort", choices=sorted(KeyTable.SORTS), default="calls", help="initial sort (default calls)"
    )
    p.add_argument(
        "--max-keys",
        type=int,
        default=100_000,
        metavar="N",
        help="keys tracked at most; past that the least called are forgotten (default 100000)",
    )
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.field is not None and args.field < 1:
        raise ConfigError("--field counts from 1")
    if args.limit < 1 or args.time <= 0 or args.max_keys < 10:
        raise ConfigError("--limit and --time must be positive, --max-keys at least 10")
    from .app import Options, run  # rich, dpkt: loaded when keytop runs, not for every webops tool

    return run(
        Options(
            servers=args.server or ["127.0.0.1:11211"],
            stdin=args.stdin,
            pcap=args.pcap,
            field=args.field,
            port=args.port,
            limit=args.limit,
            interval=args.time,
            runtime=args.runtime,
            format=args.format,
            sort=args.sort,
            max_keys=args.max_keys,
        )
    )
