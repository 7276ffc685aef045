"""The awk tool's filters, by their original names; all given filters must hold."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .parse import Transaction


def _regex(name: str, text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as e:
        raise ValueError(f"{name}: not a valid regular expression: {text!r} ({e})") from None


@dataclass
class Filters:
    only_slow: float | None = None  # ms
    handlings: set[str] = field(default_factory=set)  # only_hits / only_misses / only_pass
    only_status: re.Pattern[str] | None = None
    url_match: re.Pattern[str] | None = None
    url_negate: bool = False
    client_match: re.Pattern[str] | None = None
    req_method: re.Pattern[str] | None = None
    req_headers_match: re.Pattern[str] | None = None
    resp_headers_match: re.Pattern[str] | None = None

    @classmethod
    def from_options(cls, opts: dict[str, str]) -> Filters:
        f = cls()
        if "only_slow" in opts:
            try:
                f.only_slow = float(opts["only_slow"])
            except ValueError:
                raise ValueError(f"only_slow: expected milliseconds, got {opts['only_slow']!r}") from None
        for name, handling in (("only_hits", "HIT"), ("only_misses", "MISS"), ("only_pass", "PASS")):
            if is_true(opts.get(name)):
                f.handlings.add(handling)
        for name in ("only_status", "client_match", "req_method", "req_headers_match", "resp_headers_match"):
            if opts.get(name):
                setattr(f, name, _regex(name, opts[name]))
        if url := opts.get("url_match"):
            f.url_negate = url.startswith("!")
            f.url_match = _regex("url_match", url[1:] if f.url_negate else url)
        return f

    def __call__(self, t: Transaction) -> bool:
        if self.only_slow is not None and (t.time_ms is None or t.time_ms < self.only_slow):
            return False
        if self.handlings and t.handling not in self.handlings:
            return False
        if self.only_status and not self.only_status.search(t.status):
            return False
        if self.url_match and bool(self.url_match.search(t.url)) == self.url_negate:
            return False
        if self.client_match and not self.client_match.search(t.client):
            return False
        if self.req_method and not self.req_method.search(t.method):
            return False
        if self.req_headers_match and not _any_header(self.req_headers_match, t.req_headers):
            return False
        if self.resp_headers_match:
            headers = t.resp_headers + (t.backend.resp_headers if t.backend else [])
            if not _any_header(self.resp_headers_match, headers):
                return False
        return True


def _any_header(pattern: re.Pattern[str], headers: list[tuple[str, str]]) -> bool:
    return any(pattern.search(f"{name}: {value}") for name, value in headers)


def is_true(value: str | None) -> bool:
    """The awk tool's flags: 1, true, yes... are on; 0, false, no and nothing are off."""
    return value is not None and value.lower() not in ("", "0", "false", "no")
