"""`webops <tool> ...`: one entry point, one subcommand per tool."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def main(argv: list[str] | None = None) -> int:
    from .cluster import cli as cluster_cli
    from .cmdlog import cli as cmdlog_cli
    from .gate import cli as gate_cli
    from .keytop import cli as keytop_cli
    from .pgtop import cli as pgtop_cli
    from .statsd import cli as statsd_cli
    from .vlogdump import cli as vlogdump_cli

    parser = argparse.ArgumentParser(prog="webops", description="Tools for web operations.")
    parser.add_argument("--version", action="version", version=f"webops {__version__}")
    sub = parser.add_subparsers(dest="tool", metavar="TOOL", required=True)
    statsd_cli.register(sub)
    keytop_cli.register(sub)
    pgtop_cli.register(sub)
    vlogdump_cli.register(sub)
    cluster_cli.register(sub)
    cmdlog_cli.register(sub)
    gate_cli.register(sub)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.argv = argv[1:]  # the tool's own arguments, for tools that need to know what was given
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
