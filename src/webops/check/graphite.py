"""Graphite's `/render` API, as a client: the check's only I/O. Every failure is a `Unknown` whose
message is the reason the status line gives (unreachable, an HTTP error with the API's own
message, not JSON, a timeout)."""

from __future__ import annotations

import html
import json
import math
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlencode


class Unknown(Exception):
    """The check cannot say: exit 3, UNKNOWN, with this reason."""


@dataclass(frozen=True)
class Series:
    name: str
    timestamps: list[int]
    values: list[float | None]

    @property
    def step(self) -> int:
        if len(self.timestamps) > 1:
            return self.timestamps[1] - self.timestamps[0]
        return 0


# graphite-web's getUnitString: the unit is named by how it starts, "min" and "mon" first
_UNITS = (
    ("min", 60),
    ("mon", 30 * 86400),
    ("s", 1),
    ("h", 3600),
    ("d", 86400),
    ("w", 7 * 86400),
    ("y", 365 * 86400),
)
_OFFSET = re.compile(r"([+-]?)(\d+)([a-z]+)")


def offset(text: str) -> int:
    """Graphite's time offset (`-5min`, `-1d`, `2h`) in seconds; units as graphite-web reads
    them: s, min, h, d, w, mon (30 d), y (365 d), and their longer spellings."""
    m = _OFFSET.fullmatch(text.strip().lower())
    if m:
        for prefix, seconds in _UNITS:
            if m[3].startswith(prefix):
                return (-1 if m[1] == "-" else 1) * int(m[2]) * seconds
    raise ValueError(f"expected a time offset such as -5min, -1h, -1d, -1w, got {text!r}")


def when(text: str, now: int) -> int:
    """`now`, an epoch in seconds or an offset from now (`-5min`): the epoch it means."""
    t = text.strip()
    if t == "now":
        return now
    if t.isdigit():
        return int(t)
    return now + offset(t)


def fetch(url: str, target: str, start: int, end: int, timeout: float) -> list[Series]:
    """`target` over (start, end] from the `/render` API at `url`."""
    query = urlencode({"target": target, "from": str(start), "until": str(end), "format": "json"})
    address = url.rstrip("/") + "/render?" + query
    try:
        with urllib.request.urlopen(address, timeout=timeout) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        raise Unknown(f"{url} answered {e.code} {e.reason}: {_message(e.read())}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, socket.timeout | TimeoutError):
            raise Unknown(f"{url}: no answer within {timeout:g} s") from None
        raise Unknown(f"{url} unreachable: {getattr(reason, 'strerror', None) or reason}") from None
    except TimeoutError:
        raise Unknown(f"{url}: no answer within {timeout:g} s") from None
    except OSError as e:
        raise Unknown(f"{url}: {e.strerror or e}") from None
    try:
        data = json.loads(body)
        return [_series(s) for s in data]
    except (ValueError, TypeError, KeyError, IndexError):
        raise Unknown(f"{url}: not a Graphite render answer: {_message(body)}") from None


def _series(s: dict) -> Series:
    points = s["datapoints"]
    values = [None if v is None or not math.isfinite(v) else float(v) for v, _ in points]
    return Series(str(s["target"]), [int(t) for _, t in points], values)


def _message(body: bytes, limit: int = 200) -> str:
    """The first useful line of an error body: graphite-web's HTML, the store's plain text."""
    text = body.decode("utf-8", "replace")
    if "<" in text:
        title = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
        text = title[1] if title else re.sub(r"<[^>]+>", " ", text)
        text = html.unescape(text)
    text = " ".join(text.split())
    return (text[:limit] + "...") if len(text) > limit else (text or "(no message)")
