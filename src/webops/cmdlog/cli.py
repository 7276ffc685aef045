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
    p = sub.add_parser("cmdlog", help="what a service user ran on a host (report)")
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
