"""`webops statsd [CONFIG] [flags]`: run the daemon, or check a config and print it."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler

from ..common.config import ConfigError
from ..common.text import printable
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
        help="print every setting, with the file line, flag or default it comes from, and exit "
        "(2 if the configuration is invalid)",
    )
    statsd_config.SETTINGS.add_arguments(p, config=False)  # --address, --port, ...: the keys' flags
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    given = [p for p in (args.config, args.config_opt, args.check_config) if isinstance(p, str)]
    if len(set(given)) > 1:  # which one would win is no rule an operator should have to know
        raise ConfigError(f"one config file, please: {' and '.join(printable(p) for p in given)} given")
    path = given[0] if given else None
    flags = statsd_config.SETTINGS.flags(args)
    cfg = statsd_config.load(path, flags)  # ConfigError: webops.cli says it, exit 2
    if args.check_config:
        assert cfg.resolved is not None
        print("\n".join(cfg.resolved.lines()))
        return 0
    from .logs import setup_logging
    from .server import StatsdDaemon

    setup_logging(cfg)
    # a crash in the Rust extension (or a loaded .so overwritten in place by a `cp`) would end the
    # daemon without a word: every thread's Python stack goes to stderr (the journal) instead
    faulthandler.enable()
    daemon = StatsdDaemon(cfg, reload_config=lambda: statsd_config.load(path, flags))
    asyncio.run(daemon.run())
    return 0
