"""`webops keytop`: live top of memcached keys.

Its settings (the memcached to watch, the capture port, rows, refresh, sort, keys kept) come
through the common settings layer: defaults, then `--config FILE`, then $WEBOPS_KEYTOP_*, then
the flags; `--check-config` shows each with its source. What one run reads (--stdin, --pcap,
--field), how long (--runtime) and whether it prints one table and exits (--format) are that
run's own arguments.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..common import flags
from ..common.settings import Key, Resolved, Settings, choice, comma_list, read_js, str_list
from .table import KeyTable


def _servers(v: Any) -> list[str]:
    servers = str_list(v)
    if not servers:
        raise ValueError("expected at least one HOST:PORT")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT, got {server!r}")  # as the watch would, later
    return servers


KEYS: dict[str, Key] = {
    "server": Key(
        ["127.0.0.1:11211"],
        _servers,
        "memcached to watch (repeat for several)",
        env="WEBOPS_KEYTOP_SERVER",
        flag="--server",
        metavar="HOST:PORT",
        text=comma_list,
    ),
    "port": Key(
        11211,
        flags.as_check(flags.port),
        "memcached port in captures",
        env="WEBOPS_KEYTOP_PORT",
        flag="--port",
    ),
    "limit": Key(
        40, flags.as_check(flags.positive_int), "rows shown", env="WEBOPS_KEYTOP_LIMIT", flag="--limit"
    ),
    "time": Key(
        1.0,
        flags.as_check(flags.positive_float),
        "refresh every S seconds",
        env="WEBOPS_KEYTOP_TIME",
        flag="--time",
        metavar="S",
    ),
    "sort": Key(
        "calls",
        choice(*sorted(KeyTable.SORTS)),
        f"initial sort: {', '.join(sorted(KeyTable.SORTS))}",
        env="WEBOPS_KEYTOP_SORT",
        flag="--sort",
    ),
    "max_keys": Key(
        100_000,
        flags.as_check(flags.int_at_least(10)),
        "keys tracked at most (10 or more); past that the least called are forgotten",
        env="WEBOPS_KEYTOP_MAX_KEYS",
        flag="--max-keys",
        metavar="N",
    ),
}
SETTINGS = Settings(KEYS, read_js)


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
        type=flags.positive_int,
        metavar="N",
        help="pipestat mode: count the Nth whitespace field of each stdin line (1 = first)",
    )
    # --server is repeated, so it is added here; the other keys' flags by the settings layer
    server = KEYS["server"]
    p.add_argument(
        "--server",
        dest="servers",
        action="append",
        metavar=server.metavar,
        help=f"{server.help} ($WEBOPS_KEYTOP_SERVER, comma-separated; default {server.default[0]})",
    )
    Settings({n: k for n, k in KEYS.items() if n != "server"}, read_js).add_arguments(p)
    p.add_argument("--runtime", type=flags.positive_float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--format",
        choices=["text", "json", "csv"],
        help="print the final table in this format and exit (no live screen)",
    )
    p.set_defaults(run=_run)


def resolve(args: argparse.Namespace) -> Resolved:
    """The settings of this run: defaults, --config, $WEBOPS_KEYTOP_*, flags (ConfigError: exit 2)."""
    given = SETTINGS.flags(args)
    if args.servers:
        given["server"] = args.servers
    return SETTINGS.resolve(args.config, flags=given)


def _run(args: argparse.Namespace) -> int:
    settings = resolve(args)
    if args.check_config:
        print("\n".join(settings.lines()))
        return 0
    from .app import Options, run  # rich, dpkt: loaded when keytop runs, not for every webops tool

    return run(
        Options(
            servers=settings["server"],
            stdin=args.stdin,
            pcap=args.pcap,
            field=args.field,
            port=settings["port"],
            limit=settings["limit"],
            interval=settings["time"],
            runtime=args.runtime,
            format=args.format,
            sort=settings["sort"],
            max_keys=settings["max_keys"],
        )
    )
