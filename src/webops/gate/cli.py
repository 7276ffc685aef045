"""`webops gate`: build (publish the profiles file), install / pull / rollback (get it onto each
Varnish host), vcl (the VCL to include), check (one user's decision, and why), vmod (build the
VMOD on this host)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ..common.config import ConfigError

if TYPE_CHECKING:
    from .config import Config


def register(sub: argparse._SubParsersAction) -> None:
    from .config import SETTINGS

    p = sub.add_parser("gate", help="who gets a personalized response, decided inside Varnish")
    cmds = p.add_subparsers(dest="gate_cmd", metavar="COMMAND", required=True)
    parsers = {
        "build": cmds.add_parser(
            "build",
            help="publish the profiles file from user signals (JSONL or CSV)",
            description="Counts events per user from FILEs (or stdin), marks has_profile from min_events, "
            "writes a new SQLite file beside the live one, checks it and renames it over the live file.",
        ),
        "install": cmds.add_parser(
            "install",
            help="swap a copied profiles file in on this Varnish host (checked, previous kept)",
            description="Copies FILE beside the live file, checks it against it (integrity, schema, "
            "churn within max_change unless --force), keeps the live file under DB.versions/ and renames "
            "the copy over it. Copy files onto a host under another name than the live one (rsync, scp), "
            "then install.",
        ),
        "pull": cmds.add_parser(
            "pull",
            help="fetch the published file over HTTP and install it (nothing new: nothing done)",
            description="Downloads URL (the publisher's file behind any static web server) and installs it "
            "as `install` does; the same file again changes nothing. Run it from cron or a timer.",
        ),
        "rollback": cmds.add_parser("rollback", help="make the newest kept version live again"),
        "vcl": cmds.add_parser("vcl", help="print the VCL to include in varnishd's"),
        "check": cmds.add_parser("check", help="what the gate decides for a user, and why"),
    }
    b = parsers["build"]
    b.add_argument("files", nargs="*", metavar="FILE", help="signal files (default: stdin)")
    b.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="the files' format")
    b.add_argument("--force", action="store_true", help="publish even past max_change")
    # the positional arguments a command needs may be left out with --check-config (run says so)
    parsers["install"].add_argument(
        "file",
        nargs="?",
        type=Path,
        metavar="FILE",
        help="the built file, copied to this host (needed unless --check-config)",
    )
    parsers["pull"].add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="http(s) URL of the published file (needed unless --check-config)",
    )
    parsers["pull"].add_argument(
        "--timeout", type=float, default=300.0, help="seconds for the whole download (default: 300)"
    )
    for name in ("install", "pull", "rollback"):
        parsers[name].add_argument("--keep", type=int, default=5, help="previous versions kept (default: 5)")
    for name in ("install", "pull"):
        parsers[name].add_argument("--force", action="store_true", help="install even past max_change")
    parsers["check"].add_argument(
        "user_id", nargs="?", metavar="USER_ID", help="the user to decide for (needed unless --check-config)"
    )
    parsers["check"].add_argument("--format", choices=["text", "json"], default="text")
    for parser in parsers.values():
        # --config FILE (the gate's settings, TOML), --check-config, and each key's flag (--db, ...)
        SETTINGS.add_arguments(parser)
        parser.set_defaults(gate_parser=parser)
    v = cmds.add_parser("vmod", help="build the VMOD against this host's varnishd and install it")
    v.add_argument(
        "--out", type=Path, metavar="DIR", help="where to put libvmod_gate.so (default: varnish's)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .config import SETTINGS, config, resolve

    if args.gate_cmd == "vmod":
        return _vmod(args)
    missing = {"install": "file", "pull": "url", "check": "user_id"}.get(args.gate_cmd)
    if missing is not None and getattr(args, missing) is None and not args.check_config:
        args.gate_parser.error(f"the following arguments are required: {missing.upper()}")
    resolved = resolve(args.config, SETTINGS.flags(args))  # ConfigError: webops.cli says it, exit 2
    if args.check_config:
        print("\n".join(resolved.lines()))
        return 0
    cfg = config(resolved)
    if args.gate_cmd == "vcl":
        from .vcl import render

        sys.stdout.write(render(cfg))
        return 0
    if args.gate_cmd == "check":
        from .decide import decide

        d = decide(args.user_id, cfg)
        if args.format == "json":
            print(json.dumps({"user_id": args.user_id, "decision": d.decision, "steps": d.steps}))
        else:
            print(f"{args.user_id}: {d.decision}")
            print("\n".join(f"  {step}" for step in d.steps))
        return 0
    if args.gate_cmd in ("install", "pull", "rollback"):
        return _fleet(args, cfg)
    return _build(args, cfg)


def _fleet(args: argparse.Namespace, cfg: Config) -> int:
    from .install import install, pull, rollback
    from .publish import PublishError

    if getattr(args, "keep", 1) < 1:
        raise ConfigError("--keep: expected a whole number of at least 1")
    try:
        if args.gate_cmd == "install":
            done = install(args.file, cfg, force=args.force, keep=args.keep)
        elif args.gate_cmd == "pull":
            done = pull(args.url, cfg, force=args.force, keep=args.keep, timeout=args.timeout)
        else:
            done = rollback(cfg, keep=args.keep)
    except PublishError as e:
        print(f"webops gate: {e}", file=sys.stderr)
        return 1
    print("\n".join(done.lines))
    return 0


def _build(args: argparse.Namespace, cfg: Config) -> int:
    from .publish import PublishError, publish
    from .signals import READERS, SignalError

    counts: Counter[str] = Counter()
    reader = READERS[args.format]
    try:
        if not args.files:
            reader(sys.stdin, "stdin", counts)
        for name in args.files:
            with open(name, encoding="utf-8", newline="") as f:
                reader(f, name, counts)
        report = publish(counts, cfg, force=args.force, source=", ".join(args.files) or "stdin")
    except OSError as e:
        raise ConfigError(f"{e.filename}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text: {e}") from None
    except (SignalError, PublishError) as e:
        print(f"webops gate: {e}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    return 0


def _vmod(args: argparse.Namespace) -> int:
    from .vmod import BuildError, build, default_dir

    try:
        path = build(args.out or default_dir())
    except (BuildError, OSError) as e:
        print(f"webops gate: {e}", file=sys.stderr)
        return 1
    print(f"built {path}")
    print("in VCL: " + ("import gate;" if args.out is None else f'import gate from "{path}";'))
    return 0
