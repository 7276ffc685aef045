"""`webops pgtop [DSN] [options]`: top for PostgreSQL.

Connection follows libpq: a DSN or URI, --host/--port/--user/--dbname, the PG* environment
variables, ~/.pgpass and service files all work as they do for psql.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Any

from ..common import flags
from ..common.config import ConfigError
from ..common.settings import Key, Resolved, Settings, choice, number, read_js, string
from ..common.terminal import has_tty
from . import columns, data

# psycopg, httpx and the screen are imported when pgtop runs, not when `webops` builds its
# command line: `webops statsd` should not pay for them.


# The checks. A value from the file is typed (5, true, "all"); from the environment or a flag it
# is text: each check takes both, and says what it wanted in the words the user reads.


def _switch(v: Any) -> bool:
    """true or false, and nothing else: a file's "no" is a mistake, not a word for false."""
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _refresh(v: Any) -> float:
    """Seconds between redraws: 0 would redraw in a busy loop, inf never; NaN is refused too."""
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError(f"expected a number of seconds, got {v!r}")
    try:
        value = float(v)
    except ValueError:
        raise ValueError(f"not a valid value: {v!r} is not a number of seconds") from None
    if not 0.1 <= value < math.inf:
        raise ValueError(f"not a valid value: {v!r} (at least 0.1 seconds, and finite)")
    return value


def _columns(v: Any) -> tuple[str, ...]:
    return columns.parse_columns(string(v))  # ValueError: "unknown column 'x' (of: ...)"


def _regex(v: Any) -> str:
    try:
        re.compile(string(v), re.I)
    except re.error as e:
        raise ValueError(f"not a valid regular expression: {e}") from None
    return v


def _webhook(v: Any) -> str:
    if not re.match(r"https?://[^/\s]+", string(v)):
        raise ValueError(f"not an http(s) URL: {v!r}")
    return v


SETTINGS = Settings(
    {
        # The connection: libpq's PG* variables, ~/.pgpass and service files stay libpq's own.
        "host": Key(
            None, string, "server host or socket directory (libpq PGHOST)", flag="--host", short="-H"
        ),
        "port": Key(
            None, number(1, integer=True, maximum=65535), "server port (PGPORT)", flag="--port", short="-p"
        ),
        "user": Key(None, string, "role to connect as (PGUSER)", flag="--user", short="-U"),
        "dbname": Key(None, string, "database to connect to (PGDATABASE)", flag="--dbname", short="-d"),
        "refresh": Key(2.0, _refresh, "seconds between refreshes", flag="--refresh", metavar="S"),
        "slow-threshold": Key(
            5.0,
            number(0),
            "queries running this long are slow: bold yellow, logged, killed by K",
            flag="--slow-threshold",
            metavar="S",
        ),
        "log-file": Key(
            None,
            string,
            "slow query log (default $XDG_STATE_HOME/webops/pgtop-slow.log; '' for none)",
            flag="--log-file",
            metavar="LOG_FILE",
        ),
        "slack-webhook": Key(
            None,
            _webhook,
            "post each slow query to this Slack incoming webhook",
            env="WEBOPS_PGTOP_SLACK_WEBHOOK",
            flag="--slack-webhook",
            secret=True,
            metavar="URL",
        ),
        "slack-per-minute": Key(
            10, number(1, integer=True), "at most N posts a minute", flag="--slack-per-minute", metavar="N"
        ),
        "view": Key(
            "all", choice(*data.VIEWS), "rows shown", flag="--view", metavar="{" + ",".join(data.VIEWS) + "}"
        ),
        "sort": Key(
            "duration",
            choice(*data.SORTS),
            "row order",
            flag="--sort",
            metavar="{" + ",".join(data.SORTS) + "}",
        ),
        "filter-db": Key(None, string, "only this database", flag="--filter-db", metavar="FILTER_DB"),
        "filter-user": Key(None, string, "only this role", flag="--filter-user", metavar="FILTER_USER"),
        "filter-state": Key(
            None,
            string,
            "only this state (active, idle in transaction, ...)",
            flag="--filter-state",
            metavar="FILTER_STATE",
        ),
        "min-duration": Key(
            None, number(0), "only queries running at least S seconds", flag="--min-duration", metavar="S"
        ),
        "query-regex": Key(
            None, _regex, "only queries matching (case-insensitive)", flag="--query-regex", metavar="REGEX"
        ),
        "idle": Key(False, _switch, "show idle sessions too", flag="--idle", switch=True),
        "columns": Key(
            None,
            _columns,
            f"columns shown, e.g. pid,db,duration,query (of: {', '.join(columns.COLUMNS)})",
            flag="--columns",
            metavar="LIST",
        ),
        "profile": Key(
            "standard",
            choice(*columns.PROFILES),
            "a set of columns (C cycles them on screen)",
            flag="--profile",
            metavar="{" + ",".join(columns.PROFILES) + "}",
        ),
    }
)
"""pgtop's settings: the file (`--config`), the environment and the flags, in that order."""

INVOCATION = {
    # What one run does, not a setting: plain arguments on the command line (no environment
    # variable), which a --config file may also give, as it always could.
    # a DSN may carry a password: --check-config says it is set, and where, not what it is
    "dsn": Key(None, string, "connection string or URI", secret=True),
    "password": Key(False, _switch, "ask for the password before connecting", flag="--password", secret=True),
    "once": Key(False, _switch, "print the table once and exit", flag="--once"),
    "format": Key("text", choice("text", "json"), "--once output format", flag="--format"),
    "kill-slower-than": Key(None, number(0), "signal queries running longer", flag="--kill-slower-than"),
    "cancel": Key(False, _switch, "with kill-slower-than: cancel (the default)", flag="--cancel"),
    "terminate": Key(False, _switch, "with kill-slower-than: terminate", flag="--terminate"),
    "yes": Key(False, _switch, "with kill-slower-than: do it (without, only list)", flag="--yes"),
}

FILE = Settings({**SETTINGS.keys, **INVOCATION}, read_js)
"""Every key a --config file may set (by its long option name, `slow-threshold` or `slow_threshold`)."""


def build_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "pgtop", help="top for PostgreSQL", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    p.add_argument("dsn", nargs="?", help="connection string or URI (postgresql://user@host:port/db)")
    SETTINGS.add_arguments(p)  # --config FILE, --check-config, --host ... --profile
    p.add_argument(
        "-W", "--password", action="store_true", help="ask for the password before connecting (as psql -W)"
    )
    p.add_argument("--once", action="store_true", help="print the table once and exit")
    p.add_argument("--format", choices=["text", "json"], help="--once output format (default text)")
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


def register(sub: argparse._SubParsersAction) -> None:
    build_parser(sub)


def resolve(args: argparse.Namespace) -> Resolved:
    """Every setting (and every invocation argument a --config file may give) from the defaults,
    the file, the environment and the command line, each later one winning; `how` (cancel or
    terminate) follows the command line, else the last of `cancel: true`/`terminate: true` in
    the file. ConfigError: webops.cli says it, exit 2."""
    given = SETTINGS.flags(args)
    for name, value in (
        ("dsn", args.dsn),
        ("password", args.password or None),
        ("once", args.once or None),
        ("format", args.format),
        ("kill-slower-than", args.kill_slower_than),
        ("yes", args.yes or None),
    ):
        if value is not None:
            given[name] = value
    if args.how:
        given[args.how] = True
    conf: dict[str, Any] = {}
    text = ""
    if args.config is not None:
        conf, text = _dashed(*FILE.read(args.config))
    resolved = FILE.resolve(args.config, flags=given, file=conf, text=text)
    how, source = "cancel", "default"
    for name in [
        *(k for k in conf if k in ("cancel", "terminate")),
        *(given.keys() & {"cancel", "terminate"}),
    ]:
        if resolved[name]:
            how, source = name, resolved.sources[name]
    resolved.values["how"] = how
    resolved.sources["how"] = source
    return resolved


def _dashed(conf: dict[str, Any], text: str) -> tuple[dict[str, Any], str]:
    """A file's keys by their option names: `slow_threshold` is `slow-threshold` (as it always
    was); the text too, so an error still names the key's line. A key that is neither stays as
    written, for the error naming it."""
    out: dict[str, Any] = {}
    for key, value in conf.items():
        name = key.replace("_", "-")
        if name != key and name in FILE.keys:
            text = re.sub(
                r"""(?:^|(?<=[{,\s"']))""" + re.escape(key) + r"""(?=["']?\s*:)""", name, text, flags=re.M
            )
            key = name
        out[key] = value
    return out, text


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
    resolved = resolve(args)  # ConfigError: webops.cli says it, exit 2
    if args.check_config:
        print("\n".join(resolved.lines()))  # and no connection: only what was configured
        return 0
    for name, value in resolved.values.items():
        setattr(args, name.replace("-", "_"), value)
    f = filters(args)  # the regex compiles: its setting was checked
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
