"""`webops statsd [CONFIG] [flags]`: run the daemon, or check a config and print it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from . import settings as statsd_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "statsd",
        help="statsd-compatible metrics daemon",
        description="A drop-in replacement for Etsy's statsd. CONFIG is an Etsy config.js, a JSON "
        "config (Net::Statsd::Server) or absent (built-in defaults: 127.0.0.1:8125, console on 8126).",
    )
    p.add_argument("config", nargs="?", help="config file (JavaScript object literal or JSON)")
    p.add_argument("--config", dest="config_opt", metavar="FILE", help="same as the positional CONFIG")
    p.add_argument(
        "--check-config",
        nargs="?",
        const=True,
        metavar="FILE",
        help="print the effective configuration as JSON and exit (2 if it is invalid)",
    )
    p.add_argument("--address", help="listen address for UDP/TCP (config: address)")
    p.add_argument("--port", type=int, help="listen port (config: port)")
    p.add_argument("--mgmt-address", help="management console address (config: mgmt_address)")
    p.add_argument("--mgmt-port", type=int, help="management console port (config: mgmt_port)")
    p.add_argument(
        "--flush-interval", type=int, metavar="MS", help="flush interval in ms (config: flushInterval)"
    )
    p.add_argument("--backends", help="comma-separated backends, e.g. console,file (config: backends)")
    p.add_argument("--debug", action="store_true", default=None, help="debug logging (config: debug)")
    p.add_argument("--data-dir", metavar="DIR", help="the store's data directory (config: store.dir)")
    p.set_defaults(run=run)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line flags, as config keys; they win over the file."""
    mapping = {
        "address": args.address,
        "port": args.port,
        "mgmt_address": args.mgmt_address,
        "mgmt_port": args.mgmt_port,
        "flushInterval": args.flush_interval,
        "debug": args.debug,
        "backends": args.backends.split(",") if args.backends else None,
        "store": {"dir": args.data_dir} if args.data_dir else None,
    }
    return {k: v for k, v in mapping.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    path = args.config_opt or args.config
    if isinstance(args.check_config, str):
        path = args.check_config
    flags = overrides(args)
    cfg = statsd_config.load(path, flags)  # ConfigError: webops.cli says it, exit 2
    if args.check_config:
        json.dump(cfg.raw, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from .logs import setup_logging
    from .server import StatsdDaemon

    setup_logging(cfg)
    daemon = StatsdDaemon(cfg, reload_config=lambda: statsd_config.load(path, flags))
    asyncio.run(daemon.run())
    return 0
