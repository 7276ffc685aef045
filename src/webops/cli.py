"""`webops <tool> ...`: one entry point, one subcommand per tool.

The exit status means the same for every tool, and is mapped here, once:

    0    ok
    1    a negative answer: a check that found a problem (`cmdlog doctor`), an alert not
         delivered (`pgtop --once`), a signal that failed, a file not published (`gate`)
    2    usage or config: a bad flag (argparse), a bad setting or config file, something named
         that is not there; one line on stderr, `webops <tool>: <message>`
    130  interrupted by Ctrl-C (SIGINT), without a traceback

A reader of stdout that goes early (`| head`) ends the tool quietly, with 0.

The exception is `webops check`, a monitoring plugin: its statuses are the plugin API's (0 OK,
1 WARNING, 2 CRITICAL, 3 UNKNOWN), a usage or config error is UNKNOWN (3) with one status line on
stdout, so its parser's `error` and its `run` end in 3 themselves, and `main` returns what `run`
returns (its parser also reports arguments it does not know, through `usage_error`); anything
it raises that nothing caught ends as UNKNOWN too (`check_cli.crashed`).

A tool returns 0 or 1 from its `run`, and raises `ConfigError` (common/config.py) for a usage or
config problem instead of printing it and returning 2 itself. A tool that prints a summary when
interrupted (vlogdump) ends by the signal it got, which a shell sees as 130 (or 143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .common.config import ConfigError

OK, NEGATIVE, USAGE, INTERRUPTED = 0, 1, 2, 130


def main(argv: list[str] | None = None) -> int:
    from .check import cli as check_cli
    from .cluster import cli as cluster_cli
    from .cmdlog import cli as cmdlog_cli
    from .gate import cli as gate_cli
    from .keytop import cli as keytop_cli
    from .pgtop import cli as pgtop_cli
    from .statsd import cli as statsd_cli
    from .vlogdump import cli as vlogdump_cli

    parser = argparse.ArgumentParser(
        prog="webops",
        description="Tools for web operations.",
        epilog="exit status: 0 ok; 1 a negative answer (a failed check or alert); 2 usage or config; "
        "130 interrupted (Ctrl-C); `webops check` has a monitoring plugin's: 0 OK, 1 WARNING, "
        "2 CRITICAL, 3 UNKNOWN",
    )
    parser.add_argument("--version", action="version", version=f"webops {__version__}")
    sub = parser.add_subparsers(dest="tool", metavar="TOOL", required=True)
    statsd_cli.register(sub)
    keytop_cli.register(sub)
    pgtop_cli.register(sub)
    vlogdump_cli.register(sub)
    cluster_cli.register(sub)
    cmdlog_cli.register(sub)
    gate_cli.register(sub)
    check_cli.register(sub)
    argv = sys.argv[1:] if argv is None else argv
    tool = "webops"
    try:
        args, extra = parser.parse_known_args(argv)  # a usage error: argparse's message, SystemExit(2)
        if extra:  # reported by the tool's own parser when it has one (check: UNKNOWN, 3)
            getattr(args, "usage_error", parser.error)(f"unrecognized arguments: {' '.join(extra)}")
        tool = f"webops {args.tool}"
        args.argv = argv[1:]  # the tool's own arguments, for tools that need to know what was given
        return args.run(args)
    except ConfigError as e:
        print(f"{tool}: {e}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # `| head` took what it wanted and went: no traceback, and none at exit either (Python
        # flushes stdout once more then), so stdout is pointed at /dev/null
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    except Exception as e:
        if argv[:1] == ["check"]:  # a plugin ends UNKNOWN with one status line, never a traceback
            return check_cli.crashed(e)
        raise


if __name__ == "__main__":
    sys.exit(main())
