"""`webops pgtop [DSN] [options]`: top for PostgreSQL.

Connection follows libpq: a DSN or URI, --host/--port/--user/--dbname, the PG* environment
variables, ~/.pgpass and service files all work as they do for psql.
"""

from __future__ import annotations

import argparse
import re
import sys

from ..common.config import ConfigError, load_object
from ..common.terminal import has_tty
from . import data

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
    p.add_argument("-p", "--port", type=int, help="server port (PGPORT)")
    p.add_argument("-U", "--user", help="role to connect as (PGUSER)")
    p.add_argument("-d", "--dbname", help="database to connect to (PGDATABASE)")
    p.add_argument(
        "--refresh", type=float, default=2.0, metavar="S", help="seconds between refreshes (default 2)"
    )
    p.add_argument(
        "--slow-threshold",
        type=float,
        default=5.0,
        metavar="S",
        help="queries running this long are slow: bold yellow, logged, killed by K (default 5)",
    )
    p.add_argument("--log-file", default="pgtop.log", help="slow query log (default pgtop.log; '' for none)")
    p.add_argument(
        "--slack-webhook", metavar="URL", help="post each slow query to this Slack incoming webhook"
    )
    p.add_argument(
        "--slack-per-minute", type=int, default=10, metavar="N", help="at most N posts a minute (10)"
    )
    p.add_argument("--view", choices=data.VIEWS, default="all", help="rows shown (default all)")
    p.add_argument("--sort", choices=data.SORTS, default="duration", help="row order (default duration)")
    p.add_argument("--filter-db", help="only this database")
    p.add_argument("--filter-user", help="only this role")
    p.add_argument("--filter-state", help="only this state (active, idle in transaction, ...)")
    p.add_argument("--min-duration", type=float, metavar="S", help="only queries running at least S seconds")
    p.add_argument("--query-regex", metavar="REGEX", help="only queries matching (case-insensitive)")
    p.add_argument("--idle", action="store_true", default=False, help="show idle sessions too")
    p.add_argument("--once", action="store_true", help="print the table once and exit")
    p.add_argument("--format", choices=["text", "json"], default="text", help="--once output format")
    p.add_argument(
        "--kill-slower-than",
        type=float,
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


def apply_config(args: argparse.Namespace, argv_given: set[str]) -> None:
    """Options from --config FILE, for every option not given on the command line."""
    assert _parser is not None
    conf, _ = load_object(args.config)
    actions = {a.dest: a for a in _parser._actions if a.dest not in ("help", "config", "run")}
    for key, value in conf.items():
        dest = key.replace("-", "_")
        if dest not in actions:
            raise ConfigError(f"{args.config}: unknown option {key!r}")
        if dest in argv_given:
            continue
        action = actions[dest]
        if isinstance(value, str) and action.type is not None:
            try:
                value = action.type(value)  # type: ignore[operator]  # a callable type= in our parser
            except ValueError:
                raise ConfigError(f"{args.config}: {key}: not a valid value: {value!r}") from None
        if action.choices and value not in action.choices:
            raise ConfigError(
                f"{args.config}: {key}: expected one of {', '.join(action.choices)}, got {value!r}"
            )
        setattr(args, dest, value)


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


def connector(args: argparse.Namespace):
    params = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("user", args.user), ("dbname", args.dbname))
        if v is not None
    }

    import psycopg

    def connect():
        conn = psycopg.connect(
            args.dsn or "", autocommit=True, connect_timeout=10, application_name="webops pgtop", **params
        )
        return conn

    return connect


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
    try:
        if args.config:
            apply_config(args, _given(args.argv))
        f = filters(args)
    except ConfigError as e:
        print(f"webops pgtop: {e}", file=sys.stderr)
        return 2
    except re.error as e:
        print(f"webops pgtop: --query-regex: {e}", file=sys.stderr)
        return 2
    import psycopg

    from . import render
    from .slowlog import Slack, SlowLog

    connect = connector(args)
    slack = Slack(args.slack_webhook, args.slack_per_minute) if args.slack_webhook else None
    slowlog = SlowLog(args.log_file or None, slack)
    try:
        if args.kill_slower_than is not None:
            return kill_slow(connect, args)
        if args.once or not (sys.stdout.isatty() and has_tty()):
            with connect() as conn:
                snap = data.fetch(conn)
                slowlog.record(data.slow(snap, args.slow_threshold))
                rows = data.select(snap, args.view, f, args.sort)
                sys.stdout.write(
                    render.as_json(snap, rows) if args.format == "json" else render.as_text(snap, rows)
                )
            return 0
    except psycopg.Error as e:
        print(f"webops pgtop: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        if slack is not None and (args.once or args.kill_slower_than is not None):
            slack.close()
    from .ui import Screen, State

    state = State(view=args.view, sort=args.sort, refresh=args.refresh, filters=f)
    target = (
        args.dsn
        or " ".join(
            f"{k}={v}" for k, v in (("host", args.host), ("port", args.port), ("db", args.dbname)) if v
        )
        or "(libpq defaults)"
    )
    try:
        return Screen(connect, state, args.slow_threshold, slowlog, f"pgtop {target}").run()
    finally:
        if slack is not None:
            slack.close()


def kill_slow(connect, args: argparse.Namespace) -> int:
    """--kill-slower-than S [--cancel|--terminate] --yes: the K key, without a terminal."""
    from . import render
    from .actions import signal_backends

    how = args.how or "cancel"
    with connect() as conn:
        targets = data.slow(data.fetch(conn), args.kill_slower_than)
        if not targets:
            print(f"no query running longer than {args.kill_slower_than:g}s")
            return 0
        if not args.yes:
            for b in targets:
                query = " ".join((b.query or "").split())
                print(f"would {how} {b.pid} ({render.seconds(b.query_seconds)}): {query}")
            print("(add --yes to do it)")
            return 0
        failed = 0
        for r in signal_backends(conn, [b.pid for b in targets], how):
            print(f"{r.pid}: {'ok' if r.ok else 'FAILED'}: {r.message}")
            failed += not r.ok
    return 1 if failed else 0
