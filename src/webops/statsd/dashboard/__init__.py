"""The live dashboard served at `/`: one page, plain JavaScript and uPlot (1.6.32, MIT, from npm,
kept here as built so users need no build step). It reads Graphite's API and /dashboard/status."""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import cache
from importlib import resources

from ..http import Reply, Request

FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/uPlot.iife.min.js": ("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "/dashboard/uPlot.min.css": ("uPlot.min.css", "text/css; charset=utf-8"),
}


def _file(name: str, ctype: str) -> Callable[[Request], Reply]:
    """A route answering with one of the files, read at its first request, not at start."""

    @cache
    def text() -> str:
        return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")

    def route(request: Request) -> Reply:
        return 200, ctype, text()

    return route


ROUTES = {path: _file(name, ctype) for path, (name, ctype) in FILES.items()}


def url(address: str, port: int) -> str:
    """The dashboard's address as a browser opens it, for the start log: a wildcard address is
    this host's name (0.0.0.0 is no place to browse to), an IPv6 address goes in brackets."""
    if address in ("", "0.0.0.0", "::"):
        address = socket.gethostname()
    elif ":" in address:
        address = f"[{address}]"
    return f"http://{address}:{port}/"
