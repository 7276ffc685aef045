"""The access log: one line a request, the combined log format plus the duration.

    127.0.0.1 - - [04/Dec/2026:05:01:02 +0000] "POST /cluster HTTP/1.1" 200 117 "-" "curl/8.5.0" 0.031

client address, [time the request arrived, local time], request line, status, response body bytes,
Referer, User-Agent, seconds from the request's first byte to its last response byte (like
nginx's $request_time, millisecond resolution). What the client sent is escaped (`"`, `\\`, and
bytes outside printable ASCII as `\\xHH`, as nginx does), so a line is always one line and its
quoted fields always parse.

A file is opened in append mode by every worker (each line is one write) and reopened when it is
moved or deleted (logrotate needs no signal); `-` is stderr.
"""

from __future__ import annotations

import logging
import sys
import time

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SAFE = {c: chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\'}


def escape(raw: bytes) -> str:
    return "".join(_SAFE.get(c) or f"\\x{c:02X}" for c in raw)


def clf_time(when: float) -> str:
    """`04/Dec/2026:05:01:02 +0000`, in local time, whatever the locale."""
    t = time.localtime(when)
    offset = t.tm_gmtoff or 0
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return (
        f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
        f"{sign}{hours:02d}{minutes:02d}"
    )


def line(scope: dict, status: int, sent: int, arrived: float, seconds: float) -> str:
    client = scope.get("client") or ("-", 0)
    path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    if scope.get("query_string"):
        path += b"?" + scope["query_string"]
    request = b"%s %s HTTP/%s" % (
        scope.get("method", "-").encode("latin-1", "replace"),
        path,
        scope.get("http_version", "1.1").encode("latin-1", "replace"),
    )
    if scope.get("unparsed"):
        request = b"-"  # the HTTP parser rejected it: there is no request line to show
    headers = dict(scope.get("headers") or [])
    referer = escape(headers.get(b"referer", b"-"))
    agent = escape(headers.get(b"user-agent", b"-"))
    return (
        f'{escape(str(client[0]).encode())} - - [{clf_time(arrived)}] "{escape(request)}" {status} {sent} '
        f'"{referer}" "{agent}" {seconds:.3f}'
    )


class AccessLog:
    def __init__(self, target: str) -> None:
        handler: logging.Handler
        if target == "-":
            handler = logging.StreamHandler(sys.stderr)
        else:
            from logging.handlers import WatchedFileHandler

            handler = WatchedFileHandler(target, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        # A logger of its own, outside logging's tree: no other handler sees these lines.
        self.logger = logging.Logger("webops.cluster.access", logging.INFO)
        self.logger.addHandler(handler)

    def log(self, scope: dict, status: int, sent: int, arrived: float, seconds: float) -> None:
        self.logger.info(line(scope, status, sent, arrived, seconds))
