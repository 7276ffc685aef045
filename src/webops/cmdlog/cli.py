"""`webops cmdlog`: install the snippet for a user, say what will be logged (doctor), and report
one line per command a user ran, from wherever the records are."""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path, PosixPath
from typing import IO

from ..common.config import ConfigError
from ..common.settings import Key, Resolved, Settings, choice, optional, read_js

# The tree report's and doctor's default places (/var/log/auth.log, /var/log/secure, the journal)
# are looked for under: / on a host; a test's own tree (not an option: no user needs it).
ROOT_ENV = "WEBOPS_CMDLOG_ROOT"


def _path(v: object) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a path, got {v!r}")
    return v


# The settings of the subcommands that have some (defaults, --config FILE, the environment,
# flags: the common settings layer). What one run is about (--user, --host, --since, --grep,
# FILEs, --journal, --home) stays that run's own arguments.
REPORT_KEYS: dict[str, Key] = {
    "format": Key("text", choice("text", "json"), "text, or json: one object a line", flag="--format"),
}
DOCTOR_KEYS: dict[str, Key] = {
    "socket": Key(
        "/dev/log",
        _path,
        "the syslog socket the snippet writes to",
        env="WEBOPS_CMDLOG_SOCKET",
        flag="--socket",
    ),
    "log": Key(
        None,
        optional(_path),
        "where syslog writes authpriv, to find the test record in (default: /var/log/auth.log "
        "or /var/log/secure when readable, else the journal)",
        env="WEBOPS_CMDLOG_LOG",
        flag="--log",
        metavar="FILE",
    ),
    "nrpe_config": Key(
        "/etc/nagios/nrpe.cfg",
        _path,
        "the NRPE config to look for a check in",
        env="WEBOPS_CMDLOG_NRPE_CONFIG",
        flag="--nrpe-config",
        metavar="FILE",
    ),
    "audit_rules": Key(
        "/etc/audit/rules.d",
        _path,
        "auditd's rules directory",
        env="WEBOPS_CMDLOG_AUDIT_RULES",
        flag="--audit-rules",
        metavar="DIR",
    ),
    "crontabs": Key(
        "/var/spool/cron/crontabs",
        _path,
        "the crontabs directory",
        env="WEBOPS_CMDLOG_CRONTABS",
        flag="--crontabs",
        metavar="DIR",
    ),
    "format": Key("text", choice("text", "json"), "text, or json: one object a check", flag="--format"),
}
SETTINGS = {"report": Settings(REPORT_KEYS, read_js), "doctor": Settings(DOCTOR_KEYS, read_js)}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cmdlog", help="what a service user ran on a host")
    cmds = p.add_subparsers(dest="cmdlog_cmd", metavar="COMMAND", required=True)
    r = cmds.add_parser(
        "report",
        help="one line per command, from syslog files, journalctl -o json, snoopy or ausearch -i output",
        description="Reads command records (webops cmdlog's, the seed's `Running ...` lines, snoopy's, "
        "`ausearch -i` events) from FILEs or stdin and prints time, host, user, pid, directory, command. "
        "With no FILE: stdin when it is a pipe or a file, else where this host's syslog puts authpriv "
        "(/var/log/auth.log or /var/log/secure when readable, else the journal).",
    )
    r.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="files to read, - for stdin (default: a piped stdin, else /var/log/auth.log or "
        "/var/log/secure, else the journal)",
    )
    r.add_argument(
        "--journal",
        action="store_true",
        help="read the systemd journal (journalctl -o json; with FILEs: those journal files)",
    )
    r.add_argument("--user", action="append", help="only this user (repeat for several)")
    r.add_argument(
        "--host",
        action="append",
        help="only records from this host, as syslog names it (repeat for several; its dropped counts too)",
    )
    r.add_argument("--since", type=_when, metavar="TIME", help="only from this time on (ISO 8601)")
    r.add_argument("--until", type=_when, metavar="TIME", help="only before this time (ISO 8601)")
    r.add_argument("--grep", type=_regex, metavar="REGEX", help="only commands matching")
    SETTINGS["report"].add_arguments(r)
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
    d = cmds.add_parser(
        "doctor",
        help="say what will and will not be logged for a user here, and why",
        description="Each line a check (ok; gap: some ways of running commands are not logged; fail: "
        "nothing is; unknown: this run could not find out) with its fix. It sends the syslog socket a "
        "test record and looks for it where syslog writes authpriv, and asks auditctl (as root) "
        "whether auditd runs with the rule loaded.",
        epilog="exit status: 0 every check is ok; 1 at least one is a gap, a fail or unknown; "
        "2 a usage error (an unknown user, a bad option).",
    )
    # required, but not by --check-config, which shows settings that do not depend on the user
    d.add_argument("--user", help="the user whose commands are logged (required)")
    SETTINGS["doctor"].add_arguments(d)
    p.set_defaults(run=run)


# a command may carry escape sequences (to retitle or clear the reader's terminal): shown, not run
_VISIBLE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F] if c != 0x09} | {0x09: "\\t"}


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


def _root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or "/")


def resolve(args: argparse.Namespace) -> Resolved:
    """A subcommand's settings for this run (ConfigError naming the source: exit 2)."""
    settings = SETTINGS[args.cmdlog_cmd]
    return settings.resolve(args.config, flags=settings.flags(args))


def run(args: argparse.Namespace) -> int:
    if args.cmdlog_cmd in ("install", "uninstall"):
        return _install(args)
    settings = resolve(args)
    if args.check_config:
        print("\n".join(settings.lines()))
        return 0
    if args.cmdlog_cmd == "doctor":
        if not args.user:
            raise ConfigError("doctor: --user is required: the user whose commands are logged")
        return _doctor(args, settings)
    return _report(args, settings)


def _doctor(args: argparse.Namespace, settings: Resolved) -> int:
    from dataclasses import asdict

    from . import doctor

    try:
        facts = doctor.gather(
            args.user,
            settings["socket"],
            Path(settings["nrpe_config"]),
            Path(settings["audit_rules"]),
            Path(settings["crontabs"]),
            log=Path(settings["log"]) if settings["log"] else None,
            root=_root(),
        )
    except KeyError:
        raise ConfigError(f"no user {args.user!r} on this host") from None
    found = doctor.checks(facts)
    for c in found:
        if settings["format"] == "json":
            print(json.dumps(asdict(c)))
        else:
            print(f"{c.state:<7} {c.what:<22} {c.detail}" + (f"\n{'':30}fix: {c.fix}" if c.fix else ""))
    return doctor.exit_status(found)


class _StartFile(PosixPath):
    """A path whose text keeps any bytes: a start file may hold Latin-1 or other non-UTF-8 bytes,
    which come back as they were (surrogateescape) instead of stopping install with a traceback.
    Paths made from it (home / ".bashrc") are of this class too."""

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        return super().read_text(encoding or "utf-8", errors or "surrogateescape")

    def write_text(
        self, data: str, encoding: str | None = None, errors: str | None = None, newline: str | None = None
    ) -> int:
        return super().write_text(data, encoding or "utf-8", errors or "surrogateescape", newline)


def _install(args: argparse.Namespace) -> int:
    import pwd

    from . import snippet

    uid: int | None
    try:
        entry = pwd.getpwnam(args.user)
        home, uid, gid = Path(args.home or entry.pw_dir), entry.pw_uid, entry.pw_gid
    except KeyError:
        if not args.home:
            raise ConfigError(f"no user {args.user!r} on this host") from None
        home, uid, gid = Path(args.home), None, -1
    if not home.is_dir():
        raise ConfigError(f"{home}: not a directory")
    try:
        files = _StartFile(home)
        changed = snippet.install(files) if args.cmdlog_cmd == "install" else snippet.uninstall(files)
        if uid is not None and os.geteuid() == 0:  # root installing: the files stay the user's
            for path in changed:
                if path.exists():
                    os.chown(path, uid, gid)
    except OSError as e:
        raise ConfigError(f"{e.filename}: {e.strerror}") from None
    print(f"{args.cmdlog_cmd}: " + (", ".join(map(str, changed)) or "nothing to change"))
    if args.cmdlog_cmd == "install":
        print("\n".join(snippet.instructions(home, args.user, uid)))
    return 0


def _journal(args: argparse.Namespace) -> subprocess.Popen[str]:
    """journalctl's JSON of the identifiers records come under: the snippet's, snoopy's and, for
    the seed's recipe, the users' names."""
    from .doctor import journalctl
    from .records import TAG

    where = ["--no-pager", *(f"--file={f}" for f in args.files)] if args.files else journalctl(_root())[1:]
    cmd = ["journalctl", "-o", "json", *where]
    if args.since:
        cmd.append(f"--since={args.since:%Y-%m-%d %H:%M:%S}")
    for ident in [TAG, "snoopy", *(args.user or [])]:
        cmd += ["-t", ident]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")


def _piped() -> bool:
    """Whether stdin is a pipe or a file (`ausearch -i | webops cmdlog report`), not a terminal,
    /dev/null or closed: only then is it read when no FILE is named."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def _report(args: argparse.Namespace, settings: Resolved) -> int:
    from .doctor import where_records_are
    from .records import read

    journal = None
    if not args.journal and not args.files and not _piped():
        where = where_records_are(_root())
        passed = f" ({'; '.join(where.looked)})" if where.looked else ""
        if where.file is not None:
            print(f"webops cmdlog: reading {where.file}{passed}", file=sys.stderr)
            args.files = [str(where.file)]
        elif where.journal:
            print(f"webops cmdlog: reading the journal{passed}", file=sys.stderr)
            args.journal = True
        else:
            raise ConfigError(
                f"found no records to read: {'; '.join(where.looked)}. Name a FILE "
                "(- for stdin), pipe them in, or use --journal"
            )
    try:
        if args.journal:
            journal = _journal(args)
            assert journal.stdout is not None
            streams: list[IO[str]] = [journal.stdout]
        else:
            streams = [
                sys.stdin if f == "-" else open(f, encoding="utf-8", errors="replace")  # noqa: SIM115
                for f in args.files
            ]
            streams = streams or [sys.stdin]
    except OSError as e:
        raise ConfigError(f"{e.filename}: {e.strerror}") from None
    users, dropped = set(args.user or []), 0
    hosts = {h.casefold() for h in args.host or []}
    gaps: dict[str, dict[str, int]] = {}  # host: reason: records dropped
    try:
        for stream in streams:
            for rec in read(stream):
                if hosts and rec.host.casefold() not in hosts:
                    continue
                dropped += rec.dropped  # a gap in everyone's records: shown whatever the other filters
                if rec.dropped:
                    reason = rec.command.split(": ", 1)[1] if ": " in rec.command else ""
                    by_reason = gaps.setdefault(rec.host or "-", {})
                    by_reason[reason] = by_reason.get(reason, 0) + rec.dropped
                if not rec.dropped and users and rec.user not in users:
                    continue
                if not rec.dropped and args.grep and not args.grep.search(rec.command):
                    continue
                if args.since and (rec.time is None or _naive(rec.time) < _naive(args.since)):
                    continue
                if args.until and (rec.time is None or _naive(rec.time) >= _naive(args.until)):
                    continue
                if settings["format"] == "json":
                    sys.stdout.write(json.dumps(rec.as_dict()) + "\n")
                else:
                    when = rec.time.strftime("%Y-%m-%d %H:%M:%S") if rec.time else "-"
                    pid = str(rec.pid) if rec.pid is not None else "-"
                    fields = [when, rec.host or "-", rec.user or "-", pid, rec.cwd or "-", rec.command]
                    sys.stdout.write("  ".join(fields).translate(_VISIBLE) + "\n")
    except BrokenPipeError:
        sys.stderr.close()
    finally:
        for stream in streams:
            if stream is not sys.stdin:
                stream.close()
    if dropped:
        print(
            f"webops cmdlog: {dropped} records were dropped before syslog (the 'dropped' lines)",
            file=sys.stderr,
        )
        for name, by_reason in sorted(gaps.items()):
            why = "; ".join(
                f"{n}: {reason}" if len(by_reason) > 1 else reason for reason, n in by_reason.items()
            )
            print(
                f"webops cmdlog: host {name}: {sum(by_reason.values())} records dropped"
                + (f" ({why})" if why else ""),
                file=sys.stderr,
            )
    if journal is not None and journal.wait() != 0:
        assert journal.stderr is not None
        why = " ".join(journal.stderr.read().split()) or f"exit status {journal.returncode}"
        raise ConfigError(f"journalctl: {why}")
    return 0
