"""`webops pgtop [DSN] [options]`: top for PostgreSQL.

Connection follows libpq: a DSN or URI, --host/--port/--user/--dbname, the PG* environment
variables, ~/.pgpass and service files all work as they do for psql.
"""

from __future__ import annotations

import argparse
import math
import re
import sys

from ..common import flags
from ..common.config import ConfigError, load_object
from ..common.terminal import has_tty
from . import columns, data

# psycopg, httpx and the screen are imported when pgtop runs, not when `webops` builds its
# command line: `webops statsd` should not pay for them.


def build_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "pgtop", help="top for PostgreSQL", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument("dsn", nargs="?", help="connection string or URI (postgresql://user@host:port/db)")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="a JSON/JS-object file setting any option below by its long name; the command line wins",
    )
    p.add_argument("-H", "--host", help="server host or socket directory (libpq PGHOST)")
    p.add_argument("-p", "--port", type=flags.port, help="server port (PGPORT)")
    p.add_argument("-U", "--user", help="role to connect as (PGUSER)")
    p.add_argument("-d", "--dbname", help="database to connect to (PGDATABASE)")
    p.add_argument(
        "-W", "--password", action="store_true", help="ask for the password before connecting (as psql -W)"
    )
    p.add_argument(
        "--refresh",
        type=refresh_seconds,
        default=2.0,
        metavar="S",
        help="seconds between refreshes (default 2)",
    )
    p.add_argument(
        "--slow-threshold",
        type=flags.non_negative_float,
        default=5.0,
        metavar="S",
        help="queries running this long are slow: bold yellow, logged, killed by K (default 5)",
    )
    p.add_argument(
        "--log-file",
        help="slow query log (default $XDG_STATE_HOME/webops/pgtop-slow.log; '' for none)",
    )
    p.add_argument(
        "--slack-webhook", metavar="URL", help="post each slow query to this Slack incoming webhook"
    )
    p.add_argument(
        "--slack-per-minute",
        type=flags.positive_int,
        default=10,
        metavar="N",
        help="at most N posts a minute (10)",
    )
    p.add_argument("--view", choices=data.VIEWS, default="all", help="rows shown (default all)")
    p.add_argument("--sort", choices=data.SORTS, default="duration", help="row order (default duration)")
    p.add_argument("--filter-db", help="only this database")
    p.add_argument("--filter-user", help="only this role")
    p.add_argument("--filter-state", help="only this state (active, idle in transaction, ...)")
    p.add_argument(
        "--min-duration",
        type=flags.non_negative_float,
        metavar="S",
        help="only queries running at least S seconds",
    )
    p.add_argument("--query-regex", metavar="REGEX", help="only queries matching (case-insensitive)")
    p.add_argument("--idle", action="store_true", default=False, help="show idle sessions too")
    p.add_argument(
        "--columns",
        type=columns_option,
        metavar="LIST",
        help=f"columns shown, e.g. pid,db,duration,query (of: {', '.join(columns.COLUMNS)})",
    )
    p.add_argument(
        "--profile",
        choices=list(columns.PROFILES),
        default="standard",
        help="a set of columns (C cycles them on screen; default standard)",
    )
    p.add_argument("--once", action="store_true", help="print the table once and exit")
    p.add_argument("--format", choices=["text", "json"], default="text", help="--once output format")
    p.add_argument(
        "--kill-slower-than",
        type=flags.non_negative_float,
        metavar="S",
        help="signal every query running longer than S seconds, report each pid, and exit",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--cancel", dest="how", action="store_const", const="cancel", help="with --kill-slower-than"
    )
    how.add_argument(
        "--terminate", dest="how", action="store_const", const="terminate", help="with --kill-slower-than"
    )
    p.add_argument("--yes", action="store_true", help="with --kill-slower-than: do it (without, only list)")
    p.set_defaults(run=run)
    return p


_parser: argparse.ArgumentParser | None = None


def register(sub: argparse._SubParsersAction) -> None:
    global _parser
    _parser = build_parser(sub)


def refresh_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= value < math.inf:  # 0 would redraw in a busy loop, inf never; NaN is refused too
        raise argparse.ArgumentTypeError(f"{text!r}: at least 0.1 seconds, and finite")
    return value


def columns_option(text: str) -> tuple[str, ...]:
    try:
        return columns.parse_columns(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def apply_config(args: argparse.Namespace, argv_given: set[str]) -> None:
    """Options from --config FILE, for every option not given on the command line; a value of
    the wrong type is an error naming the key (never taken for something else)."""
    assert _parser is not None
    conf, _ = load_object(args.config)
    actions = {a.dest: a for a in _parser._actions if a.dest not in ("help", "config", "run", "how")}
    switches = {"cancel": "cancel", "terminate": "terminate"}  # --cancel / --terminate set `how`
    for key, value in conf.items():
        dest = key.replace("-", "_")
        if dest in switches:
            if not isinstance(value, bool):
                raise ConfigError(f"{args.config}: {key}: expected true or false, got {value!r}")
            if value and "how" not in argv_given:
                args.how = switches[dest]
            continue
        if dest not in actions:
            raise ConfigError(f"{args.config}: unknown option {key!r}")
        if dest in argv_given:
            continue
        setattr(args, dest, _config_value(args.config, key, actions[dest], value))


def _config_value(path: str, key: str, action: argparse.Action, value: object) -> object:
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {key}: expected true or false, got {value!r}")
        return value
    if action.type in (int, float, refresh_seconds, *flags.NUMERIC):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{path}: {key}: expected a number, got {value!r}")
    elif not isinstance(value, str):
        raise ConfigError(f"{path}: {key}: expected a string, got {value!r}")
    if action.type is not None:
        try:
            value = action.type(str(value))  # type: ignore[operator]
        except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
            raise ConfigError(f"{path}: {key}: not a valid value: {value!r} ({e})") from None
    if action.choices and value not in action.choices:
        raise ConfigError(f"{path}: {key}: expected one of {', '.join(action.choices)}, got {value!r}")
    return value


def _given(argv: list[str]) -> set[str]:
    """Which options the command line set (so a config file does not override them): argparse
    itself re-reads the arguments with every default suppressed, so option values are never
    mistaken for the DSN."""
    assert _parser is not None
    saved = {a.dest: a.default for a in _parser._actions}
    try:
        for a in _parser._actions:
            a.default = argparse.SUPPRESS
        given, _ = _parser.parse_known_args(argv)
    finally:
        for a in _parser._actions:
            a.default = saved[a.dest]
    return set(vars(given))


class Connector:
    """libpq connections with the options given; asks for the password (once, as psql does)
    when the server wants one and none was given, if there is a terminal to ask on."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.dsn = args.dsn or ""
        self.params = {
            k: v
            for k, v in (
                ("host", args.host),
                ("port", args.port),
                ("user", args.user),
                ("dbname", args.dbname),
            )
            if v is not None
        }
        self.interactive = has_tty()
        if args.password:
            self.params["password"] = self._ask()

    def _ask(self) -> str:
        import getpass

        import psycopg.conninfo

        user = psycopg.conninfo.conninfo_to_dict(self.dsn, **self.params).get("user") or getpass.getuser()
        with open("/dev/tty", "w") as tty:
            return getpass.getpass(f"Password for user {user}: ", stream=tty)

    def __call__(self):
        import psycopg

        def connect():
            return psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=10, application_name="webops pgtop", **self.params
            )

        try:
            return connect()
        except psycopg.OperationalError as e:
            if "no password supplied" not in str(e) or "password" in self.params or not self.interactive:
                raise
        self.params["password"] = self._ask()
        return connect()


def server_label(conn) -> str:
    """Which server: `host:port/dbname` (a socket directory for host), never the password."""
    info = conn.info
    return f"{info.host}:{info.port}/{info.dbname}"


def filters(args: argparse.Namespace) -> data.Filters:
    return data.Filters(
        database=args.filter_db,
        user=args.filter_user,
        state=args.filter_state,
        min_duration=args.min_duration,
        query=re.compile(args.query_regex, re.I) if args.query_regex else None,
        show_idle=args.idle,
    )


def run(args: argparse.Namespace) -> int:
    if args.config:
        apply_config(args, _given(args.argv))  # ConfigError: webops.cli says it, exit 2
    try:
        f = filters(args)
    except re.error as e:
        raise ConfigError(f"--query-regex: {e}") from None
    if args.slack_webhook and not re.match(r"https?://[^/\s]+", args.slack_webhook):
        raise ConfigError(f"--slack-webhook: not an http(s) URL: {args.slack_webhook!r}")
    import psycopg

    from . import render
    from .slowlog import Slack, SlowLog, default_log_path

    connect = Connector(args)
    try:
        conn = connect()  # a first connection that fails is an error, not a screen retrying forever
    except psycopg.Error as e:
        raise ConfigError(first_line(e)) from None
    if args.kill_slower_than is not None:
        try:
            return kill_slow(conn, args)
        except psycopg.Error as e:
            raise ConfigError(first_line(e)) from None
    server = server_label(conn)
    slack = Slack(args.slack_webhook, args.slack_per_minute, server) if args.slack_webhook else None
    log_file = default_log_path() if args.log_file is None else args.log_file or None
    slowlog = SlowLog(log_file, slack, server)  # what each output was given: see slowlog.py
    shown = args.columns or columns.PROFILES[args.profile]
    if args.once or not (sys.stdout.isatty() and has_tty()):
        try:
            with conn:
                snap = data.fetch(conn)
                slowlog.record(data.slow(snap.backends, args.slow_threshold))
                rows = data.select(snap, args.view, f, args.sort)
                sys.stdout.write(
                    render.as_json(snap, rows) if args.format == "json" else render.as_text(snap, rows, shown)
                )
        except psycopg.Error as e:
            report(slowlog)
            raise ConfigError(first_line(e)) from None
        return report(slowlog)
    from .ui import Screen, State

    state = State(view=args.view, sort=args.sort, refresh=args.refresh, filters=f, columns=shown)
    try:
        return Screen(connect, state, args.slow_threshold, slowlog, f"pgtop {server}", conn).run()
    finally:
        for failure in slowlog.close():
            print(f"webops pgtop: {failure}", file=sys.stderr)


def first_line(e: Exception) -> str:
    """psycopg's message, which may run over several lines, as the one line webops prints."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def report(slowlog) -> int:
    """After --once: every problem with the log or Slack on stderr (posts waited for, up to 10 s);
    exit 1 if there was one: an alert not delivered is tried again by the next run."""
    problems = slowlog.close()
    for p in problems:
        print(f"webops pgtop: {p}", file=sys.stderr)
    return 1 if problems else 0


def kill_slow(conn, args: argparse.Namespace) -> int:
    """--kill-slower-than S [--cancel|--terminate] --yes: the K key, without a terminal."""
    from .actions import signal_backends

    how = args.how or "cancel"
    with conn:
        targets = data.slow(data.fetch(conn).backends, args.kill_slower_than)
        if not targets:
            print(f"no query running longer than {args.kill_slower_than:g}s")
            return 0
        if not args.yes:
            for b in targets:
                query = " ".join((b.query or "").split())
                print(f"would {how} {b.pid} ({columns.seconds(b.query_seconds)}): {query}")
            print("(add --yes to do it)")
            return 0
        failed = 0
        for r in signal_backends(conn, targets, how):
            print(f"{r.pid}: {'ok' if r.ok else 'skipped' if r.skipped else 'FAILED'}: {r.message}")
            failed += not r.ok
    return 1 if failed else 0
