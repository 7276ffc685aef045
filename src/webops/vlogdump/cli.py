"""`webops vlogdump [FILE] [options]`: varnishlog's output, one readable line per transaction.

Options keep the awk tool's names, so old command lines work (`-v only_misses=1`), and have
ordinary flags too (`--only-misses`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator

from ..common import flags
from ..common.config import ConfigError
from ..common.settings import Key, Resolved, Settings, boolean, choice, read_js
from . import output
from .filters import Filters, is_true
from .parse import JOIN_WAIT, Counts, LogParser

BOOLEAN = ["show_req_headers", "show_resp_headers", "only_hits", "only_misses", "only_pass"]
VALUED = {
    "only_slow": "MS",
    "only_status": "REGEX",
    "url_match": "REGEX",
    "client_match": "REGEX",
    "req_method": "REGEX",
    "req_headers_match": "REGEX",
    "resp_headers_match": "REGEX",
}


# How this host's transactions are shown: the settings layer's keys (defaults, --config FILE,
# the environment, flags). Which transactions one run shows (the awk options above) and what it
# reads (FILE) are that run's own arguments.
KEYS: dict[str, Key] = {
    "format": Key(
        "text",
        choice("text", "json"),
        "text, or json: one object per transaction",
        env="WEBOPS_VLOGDUMP_FORMAT",
        flag="--format",
    ),
    "color": Key(
        True,
        boolean,
        "no colours (also when stdout is not a terminal)",
        env="NO_COLOR",
        flag="--no-color",
        switch=False,
        text=lambda _: False,  # NO_COLOR set (not empty): no colours, whatever its value
    ),
    "slow": Key(
        1000.0,
        flags.as_check(flags.positive_float),
        "times from MS on are red, from MS/10 yellow",
        env="WEBOPS_VLOGDUMP_SLOW",
        flag="--slow",
        metavar="MS",
    ),
    "max_pending": Key(
        10_000,
        flags.as_check(flags.positive_int),
        "transactions held while incomplete or awaiting their backend fetch",
        env="WEBOPS_VLOGDUMP_MAX_PENDING",
        flag="--max-pending",
        metavar="N",
    ),
    "join_wait": Key(
        JOIN_WAIT,
        flags.as_check(flags.non_negative_float),
        "seconds a request waits for a backend fetch not read yet",
        env="WEBOPS_VLOGDUMP_JOIN_WAIT",
        flag="--join-wait",
        metavar="S",
    ),
    "summary": Key(
        True,
        boolean,
        "no summary on stderr at exit",
        env="WEBOPS_VLOGDUMP_SUMMARY",
        flag="--no-summary",
        switch=False,
    ),
}
SETTINGS = Settings(KEYS, read_js)


def resolve(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Resolved:
    """The settings of this run (ConfigError naming the source: exit 2). NO_COLOR counts when it
    is set and not empty, as no-color.org says and as every variable here reads."""
    return SETTINGS.resolve(args.config, environ=environ, flags=SETTINGS.flags(args))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vlogdump",
        help="one readable line per Varnish transaction (varnishlog | webops vlogdump)",
        description="Reads varnishlog's text output (Varnish 6/7, -g vxid or -g request) from FILE or "
        "stdin and prints each client request as two lines, with its backend fetch joined in.",
    )
    p.add_argument("file", nargs="?", help="a saved varnishlog output (default: stdin)")
    p.add_argument(
        "-v",
        dest="awk",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option by its awk name, e.g. -v only_misses=1 -v url_match='!^/static'",
    )
    for name in BOOLEAN:
        p.add_argument("--" + name.replace("_", "-"), dest=name, action="store_const", const="1")
    for name, meta in VALUED.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, metavar=meta)
    SETTINGS.add_arguments(p)
    p.set_defaults(run=run)


def options(args: argparse.Namespace) -> dict[str, str]:
    """Flags and -v pairs merged into one name -> value mapping (awk names)."""
    opts = {name: getattr(args, name) for name in [*BOOLEAN, *VALUED] if getattr(args, name) is not None}
    for pair in args.awk:
        name, sep, value = pair.partition("=")
        if not sep or (name not in BOOLEAN and name not in VALUED):
            known = ", ".join([*BOOLEAN, *VALUED])
            raise ValueError(f"-v {pair}: unknown option (known: {known})")
        opts[name] = value
    if "only_slow" in opts:  # NaN would hide every transaction, a negative one is no filter
        try:
            flags.non_negative_float(opts["only_slow"])
        except argparse.ArgumentTypeError:
            raise ValueError(
                f"only_slow: expected milliseconds (0 or more), got {opts['only_slow']!r}"
            ) from None
    return opts


MAX_LINE = 1 << 20  # bytes; varnishlog's longest record is 64 KiB (vsl_reclen), longer is junk
BINARY_MAGIC = b"VSL\0"  # how a file written by `varnishlog -w` starts (VSL_FILE_ID)


class BinaryLog(Exception):
    """The input is varnishlog's binary file (`varnishlog -w`), not its text output."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def read_lines(
    fd: int, live: bool, counts: Counts, wake: int | None = None, max_line: int = MAX_LINE
) -> Iterator[list[bytes] | None]:
    """Lines as they come; None after a quiet half second of a live input (a pipe from
    varnishlog), so that waiting requests can go out without stalling until the next line.

    Stops early when `wake` (a signal's wakeup pipe) becomes readable. A line longer than
    `max_line` (binary junk, a file that is not a log) is skipped and counted as a bad line
    without being held whole: memory stays flat however long it is. Raises BinaryLog when the
    input starts as a binary log file does (it would otherwise read as a few bad lines)."""
    buf = b""
    start: bytes | None = b""  # the first bytes, until there are enough to tell a binary log
    skipping = False  # inside an over-long line: drop bytes up to its end
    watch = [fd] if wake is None else [fd, wake]
    while True:
        if live or wake is not None:
            ready, _, _ = select.select(watch, [], [], 0.5 if live else None)
            if wake is not None and wake in ready:
                return
            if not ready:
                yield None
                continue
        chunk = os.read(fd, 1 << 16)
        if start is not None:
            start = (start + chunk)[: len(BINARY_MAGIC)]
            if start == BINARY_MAGIC:
                raise BinaryLog
            if len(start) == len(BINARY_MAGIC) or not chunk:
                start = None
        if not chunk:
            break
        if skipping:
            end = chunk.find(b"\n")
            if end < 0:
                continue
            chunk, skipping = chunk[end + 1 :], False
        *lines, buf = (buf + chunk).split(b"\n")
        if len(buf) > max_line:
            buf, skipping = b"", True
            counts.bad_lines += 1
        if lines:
            long = [line for line in lines if len(line) > max_line]
            if long:
                counts.bad_lines += len(long)
                lines = [line for line in lines if len(line) <= max_line]
            yield [line + b"\n" for line in lines]
    if buf:
        yield [buf]


class Signals:
    """SIGINT and SIGTERM end a run as the end of input does (the summary is printed), then the
    process ends by that signal, so that a shell sees 130 or 143 and a script stops with it.

    The handler only notes the signal and wakes the read loop through a pipe (signal.set_wakeup_fd):
    a transaction is never cut in half by an exception raised in the middle of its bookkeeping."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self.wake: int | None = None
        self._old: dict[int, object] = {}
        self._fds: tuple[int, int] | None = None
        self._old_wakeup = -1

    def __enter__(self) -> Signals:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals go to the main thread only: nothing to catch here
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._fds, self.wake = (r, w), r
        self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:  # ignored when started (`cmd &`): stays so
                self._old[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum: int, _frame) -> None:
        if self.caught is None:
            self.caught = signum

    def __exit__(self, *exc) -> None:
        if self._fds is None:
            return
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._old_wakeup)
        for fd in self._fds:
            os.close(fd)

    def end_by_signal(self) -> None:
        """After the summary: die of the signal caught, as an interrupted program should."""
        if self.caught is None:
            return
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        signal.signal(self.caught, signal.SIG_DFL)
        os.kill(os.getpid(), self.caught)


def run(args: argparse.Namespace) -> int:
    settings = resolve(args)
    if args.check_config:
        print("\n".join(settings.lines()))
        return 0
    try:
        opts = options(args)
        keep = Filters.from_options(opts)
        stream = open(args.file, "rb") if args.file else sys.stdin.buffer  # noqa: SIM115 - closed below
    except (ValueError, OSError) as e:
        raise ConfigError(str(e)) from None
    color = settings["color"] and sys.stdout.isatty()
    live = not args.file  # a pipe from varnishlog: show each transaction as soon as it is complete
    show_req = is_true(opts.get("show_req_headers"))
    show_resp = is_true(opts.get("show_resp_headers"))
    parser = LogParser(settings["max_pending"], settings["join_wait"])
    summary = output.Summary()
    write = sys.stdout.write

    def show(txns) -> None:
        for t in txns:
            if keep(t):
                summary.add(t)
                write(
                    output.as_json(t)
                    if settings["format"] == "json"
                    else output.text(t, show_req, show_resp, color, settings["slow"])
                )
                if live:
                    sys.stdout.flush()

    with Signals() as signals:
        try:
            for lines in read_lines(stream.fileno(), live, parser.counts, signals.wake):
                if lines is None:  # the input is quiet: requests waited long enough for their fetch
                    show(parser.expire())
                    continue
                for raw in lines:
                    show(parser.feed(raw.decode("utf-8", "replace")))
                if signals.caught is not None:
                    break
            show(parser.finish())
            sys.stdout.flush()
        except KeyboardInterrupt:  # a SIGINT before the handler was in place, or in another thread
            show(parser.finish())
        except BinaryLog:
            name = args.file or "FILE"
            raise ConfigError(
                f"{args.file or 'stdin'}: this is a binary varnishlog file (varnishlog -w): "
                f"read it with varnishlog -r {name} | webops vlogdump"
            ) from None
        except BrokenPipeError:  # `| head`: the reader is gone, so is the point of going on
            sys.stderr.close()
            return 0
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        if settings["summary"]:
            sys.stderr.write(summary.render(parser.counts))
            sys.stderr.flush()
    signals.end_by_signal()
    return 0
