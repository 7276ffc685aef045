"""`webops cmdlog report`: one line per command a user ran, from wherever the records are.

(`install`, `uninstall` and `doctor` are issue 18's next parts.)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from typing import TextIO


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cmdlog", help="what a service user ran on a host")
    cmds = p.add_subparsers(dest="cmdlog_cmd", metavar="COMMAND", required=True)
    r = cmds.add_parser(
        "report",
        help="one line per command, from syslog files, journalctl -o json, snoopy or ausearch -i output",
        description="Reads command records (webops cmdlog's, the seed's `Running ...` lines, snoopy's, "
        "`ausearch -i` events) from FILEs or stdin and prints time, host, user, pid, directory, command.",
    )
    r.add_argument("files", nargs="*", metavar="FILE", help="files to read (default: stdin)")
    r.add_argument("--user", action="append", help="only this user (repeat for several)")
    r.add_argument("--since", type=_when, metavar="TIME", help="only from this time on (ISO 8601)")
    r.add_argument("--until", type=_when, metavar="TIME", help="only before this time (ISO 8601)")
    r.add_argument("--grep", type=_regex, metavar="REGEX", help="only commands matching")
    r.add_argument("--format", choices=["text", "json"], default="text", help="json: one object a line")
    for name, text in (
        (
            "install",
            "put the snippet in a user's start files (and print what else each way of running needs)",
        ),
        ("uninstall", "remove it: the start files come back as they were"),
    ):
        c = cmds.add_parser(name, help=text, description=text)
        c.add_argument("--user", required=True, help="the user whose commands are logged")
        c.add_argument("--home", help="that user's home (default: from the password database)")
    p.set_defaults(run=run)


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an ISO 8601 time (2026-11-23T19:40)") from None


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None


def _naive(t: datetime) -> datetime:
    """Compare times whether or not they carry a zone (syslog's classic format has none)."""
    return t.replace(tzinfo=None) if t.tzinfo is None else t.astimezone().replace(tzinfo=None)


def run(args: argparse.Namespace) -> int:
    if args.cmdlog_cmd in ("install", "uninstall"):
        return _install(args)
    return _report(args)


def _install(args: argparse.Namespace) -> int:
    import pwd
    from pathlib import Path

    from . import snippet

    uid: int | None
    try:
        entry = pwd.getpwnam(args.user)
        home, uid = Path(args.home or entry.pw_dir), entry.pw_uid
    except KeyError:
        if not args.home:
            print(f"webops cmdlog: no user {args.user!r} on this host", file=sys.stderr)
            return 2
        home, uid = Path(args.home), None
    if not home.is_dir():
        print(f"webops cmdlog: {home}: not a directory", file=sys.stderr)
        return 2
    try:
        changed = snippet.install(home) if args.cmdlog_cmd == "install" else snippet.uninstall(home)
    except OSError as e:
        print(f"webops cmdlog: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    print(f"{args.cmdlog_cmd}: " + (", ".join(map(str, changed)) or "nothing to change"))
    if args.cmdlog_cmd == "install":
        print("\n".join(snippet.instructions(home, args.user, uid)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .records import read

    try:
        streams: list[TextIO] = [open(f, encoding="utf-8", errors="replace") for f in args.files]  # noqa: SIM115
        streams = streams or [sys.stdin]
    except OSError as e:
        print(f"webops cmdlog: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    users = set(args.user or [])
    try:
        for stream in streams:
            for rec in read(stream):
                if users and rec.user not in users:
                    continue
                if args.grep and not args.grep.search(rec.command):
                    continue
                if args.since and (rec.time is None or _naive(rec.time) < _naive(args.since)):
                    continue
                if args.until and (rec.time is None or _naive(rec.time) >= _naive(args.until)):
                    continue
                if args.format == "json":
                    sys.stdout.write(json.dumps(rec.as_dict()) + "\n")
                else:
                    when = rec.time.strftime("%Y-%m-%d %H:%M:%S") if rec.time else "-"
                    pid = str(rec.pid) if rec.pid is not None else "-"
                    fields = [when, rec.host or "-", rec.user or "-", pid, rec.cwd or "-", rec.command]
                    sys.stdout.write("  ".join(fields) + "\n")
    except BrokenPipeError:
        sys.stderr.close()
    finally:
        for stream in streams:
            if stream is not sys.stdin:
                stream.close()
    return 0
