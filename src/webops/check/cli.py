"""`webops check`: a monitoring plugin on Graphite's `/render` API (the daemon's store, graphite-web,
webops on another host).

Its exit statuses are the plugin API's, not webops's: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; a
bad flag, setting or config is UNKNOWN (3) with one status line on stdout (where Nagios reads),
never webops's 2, which a monitoring system would read as CRITICAL. So `run` owns its statuses:
its parser's `error` and its own `ConfigError`s end in 3, and `webops.cli` returns what `run`
returns.

Settings (the API's URL, the timeout, the statsd config naming the daemon's layout and port, the
stale state, the default window and aggregation) come through the common settings layer; the
target, thresholds and trend options are the invocation's.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from typing import Any, NoReturn

from .. import __version__
from ..common import flags
from ..common.config import ConfigError
from ..common.settings import Key, Settings, choice, number, optional, read_js, string
from . import ranges
from .evaluate import check_agg

UNKNOWN = 3
MAX_TIMEOUT = 3600  # an hour: beyond any scheduler's check interval (and threading's limits)


def _offset(v: Any) -> str:
    from .graphite import offset

    offset(str(v))
    return str(v)


def _window_start(v: Any) -> str:
    from .graphite import when

    when(str(v), 0)
    return str(v)


KEYS: dict[str, Key] = {
    "url": Key(
        None,
        optional(string),
        "Graphite render API to ask (default: the local daemon's, http://127.0.0.1:8127, or the "
        "address --statsd-config's http section names)",
        env="WEBOPS_CHECK_URL",
        flag="--url",
        short="-u",
        metavar="URL",
    ),
    "statsd_config": Key(
        None,
        optional(string),
        "the webops/Etsy statsd config whose daemon is asked: its HTTP port and Graphite naming "
        "(legacyNamespace, globalPrefix, prefix<Kind>, globalSuffix) for --counter/--timer/--gauge/--set",
        env="WEBOPS_CHECK_STATSD_CONFIG",
        flag="--statsd-config",
        metavar="FILE",
    ),
    "timeout": Key(
        8.0,
        number(minimum=0.001, maximum=MAX_TIMEOUT),
        f"seconds for the whole check (every request), at most {MAX_TIMEOUT}; past it UNKNOWN "
        "(under NRPE's 10 s)",
        env="WEBOPS_CHECK_TIMEOUT",
        flag="--timeout",
        metavar="SECONDS",
    ),
    "stale": Key(
        "critical",
        choice("critical", "unknown"),
        "state when a series has no data in the window (never OK): critical or unknown",
        env="WEBOPS_CHECK_STALE",
        flag="--stale",
    ),
    "from": Key(
        "-5min",
        _window_start,
        "start of the window: an offset (-5min, -1h), now, or epoch seconds",
        env="WEBOPS_CHECK_FROM",
        flag="--from",
        metavar="WHEN",
    ),
    "agg": Key(
        "avg",
        lambda v: check_agg(string(v)),
        "how the window's points become one value: avg, max, min, sum, last, pNN (p95); nulls ignored",
        env="WEBOPS_CHECK_AGG",
        flag="--agg",
    ),
}
SETTINGS = Settings(KEYS, read_js)


def _range(text: str) -> ranges.Range:
    try:
        return ranges.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _change(text: str) -> tuple[ranges.Range, bool]:
    try:
        return ranges.parse_change(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _offset_arg(text: str) -> str:
    try:
        return _offset(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="monitoring plugin (Nagios, NRPE, Icinga, Sensu) on Graphite metrics and trends",
        description="Check a Graphite target against thresholds (Monitoring Plugins ranges), its "
        "freshness, its change from a day or week before, or its Holt-Winters confidence bands. "
        "Exit: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also for a bad option or an unreachable API).",
        epilog="ranges: 10 (alert outside 0..10), 10: (below 10), ~:10 (above 10), 10:20 (outside), "
        "@10:20 (inside); ends inclusive. Nulls are ignored; a window with no value is stale.",
    )
    what = p.add_mutually_exclusive_group()  # one is required, but not for --check-config
    what.add_argument(
        "-t",
        "--target",
        metavar="EXPR",
        help="any target /render accepts (functions, wildcards); -t is the target here, not the "
        "timeout as in the C plugins (--timeout)",
    )
    what.add_argument(
        "--counter", metavar="NAME", help="a statsd counter: its rate (--stat count: per flush)"
    )
    what.add_argument("--timer", metavar="NAME", help="a statsd timer: --stat mean (default), upper, pNN...")
    what.add_argument("--gauge", metavar="NAME", help="a statsd gauge")
    what.add_argument(
        "--set", dest="set_", metavar="NAME", help="a statsd set (its count of distinct values)"
    )
    p.add_argument(
        "--stat",
        metavar="STAT",
        help="with --counter: rate or count; with --timer: mean, upper, lower, median, std, count, "
        "count_ps, sum, pNN (upper_NN), or any name statsd writes (mean_90)",
    )
    p.add_argument(
        "-w", "--warning", type=_range, metavar="RANGE", help="WARNING when the value alerts in RANGE"
    )
    p.add_argument(
        "-c", "--critical", type=_range, metavar="RANGE", help="CRITICAL when the value alerts in RANGE"
    )
    SETTINGS.add_arguments(p)
    for action in p._actions:
        if action.dest == "check_config":  # the layer's help says 2; a plugin's bad setting is 3
            action.help = (
                "print every setting with where its value comes from and exit; UNKNOWN (3) if one is invalid"
            )
    p.add_argument("--until", default="now", metavar="WHEN", help="end of the window (default now)")
    p.add_argument(
        "--uom", default="", metavar="UNIT", help="unit in perfdata: s, ms, us, %%, B, KB, MB, TB, c"
    )
    p.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"webops check {__version__}",
        help="print the version and exit (UNKNOWN, 3, as the Monitoring Plugins do)",
    )
    p.add_argument(
        "--compare",
        type=_offset_arg,
        metavar="OFFSET",
        help="also fetch the same window OFFSET earlier (-1d, -1w) and check the change",
    )
    p.add_argument(
        "--change-warning",
        type=_change,
        metavar="RANGE[%]",
        help="WARNING when the change alerts in RANGE; with %% relative (percent of the earlier "
        "value), else absolute; a lone number N means more than N either way (-N:N)",
    )
    p.add_argument("--change-critical", type=_change, metavar="RANGE[%]", help="CRITICAL likewise")
    p.add_argument(
        "--holt-winters",
        action="store_true",
        help="CRITICAL (or --hw-state) when the value is outside graphite-web's "
        "holtWintersConfidenceBands for the window",
    )
    p.add_argument(
        "--delta", type=flags.positive_float, default=3.0, metavar="N", help="bands at N deviations (3)"
    )
    p.add_argument(
        "--bootstrap",
        type=_offset_arg,
        default="7d",
        metavar="INTERVAL",
        help="history the model learns from (7d)",
    )
    p.add_argument(
        "--seasonality", type=_offset_arg, default="1d", metavar="INTERVAL", help="season length (1d)"
    )
    p.add_argument(
        "--hw-source",
        choices=["auto", "server", "client"],
        default="auto",
        help="where the bands are computed: server (holtWintersConfidenceBands), client (the same "
        "maths here, on the fetched history), auto (server, else client when the API lacks it)",
    )
    p.add_argument(
        "--hw-state", choices=["warning", "critical"], default="critical", help="state outside the bands"
    )

    def usage_error(message: str) -> NoReturn:
        from .output import line

        print(line(UNKNOWN, f"webops check: {message}"))
        raise SystemExit(UNKNOWN)

    def plugin_exit(status: int = 0, message: str | None = None) -> NoReturn:
        """--help and --version end as the Monitoring Plugins' do: UNKNOWN (3), not OK."""
        if message:
            sys.stderr.write(message)
        raise SystemExit(UNKNOWN if status == 0 else status)

    # `--from -5min`, `--compare -1w`, `-w -10:-1`, `-c -.5:`, `-w -0:0`: Graphite's offsets and
    # negative ranges are values, not options (argparse only takes plain negative numbers as
    # values), and so is `-inf:`, for ranges.parse to refuse with its reason. No option of this
    # parser starts with `-` and a digit, `.`, `~`, `:`, `inf` or `nan`.
    p._negative_number_matcher = re.compile(r"^-([\d.~:]|inf|nan)", re.I)
    p.error = usage_error  # type: ignore[method-assign]  # a plugin's usage error is UNKNOWN (3)
    p.exit = plugin_exit  # type: ignore[method-assign]
    p.set_defaults(run=_run, usage_error=usage_error)


def _run(args: argparse.Namespace) -> int:
    from .output import line

    try:
        settings = SETTINGS.resolve(args.config, flags=SETTINGS.flags(args))
        if args.check_config:  # needs no target: it is about the settings
            print("\n".join(settings.lines()))
            return 0
        from .run import Check

        check = Check.plan(args, settings)
    except (ConfigError, ValueError) as e:
        print(line(UNKNOWN, f"webops check: {e}"))
        return UNKNOWN
    return finish(check, settings["timeout"])


def crashed(e: BaseException) -> int:
    """What `webops.cli` ends `webops check` with when something raised that nothing caught:
    a plugin's UNKNOWN with one status line (a traceback and exit 1 would read as WARNING)."""
    from .output import line

    print(line(UNKNOWN, f"webops check failed: {type(e).__name__}: {e}"))
    return UNKNOWN


def finish(check: Any, timeout: float) -> int:
    """Run the check in a thread, so that no server (one that accepts and never answers, or
    trickles bytes) holds it past `timeout`: then UNKNOWN."""
    from .output import line

    result: list[tuple[int, str]] = []
    worker = threading.Thread(
        target=lambda: result.append(check.run(time.monotonic() + timeout)), daemon=True
    )
    worker.start()
    worker.join(timeout + 0.5)
    state, text = (
        result[0] if result else (UNKNOWN, line(UNKNOWN, f"no answer within --timeout {timeout:g} s"))
    )
    print(text)
    sys.stdout.flush()
    return state
