"""statsd's own checks for config keys, beside the common ones (common/settings.py) it re-exports:
each takes what the file says and returns the value to use, or raises ValueError with the sentence
the user will read. A key is a common `Key` (default, check, help); the core keys live in
config.py, each backend's in its own module (see backends/__init__.py).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from ..common.settings import Check, Key, boolean, choice, number, port, str_list, string

__all__ = ["Key", "Validator", "boolean", "buckets", "choice", "number", "port", "str_list", "string"]

log = logging.getLogger("webops.statsd")

Validator = Check


def section(keys: dict[str, Key]) -> Validator:
    return lambda v: check_section(v, keys)


def check_section(v: Any, keys: dict[str, Key]) -> dict:
    if not isinstance(v, dict):
        raise ValueError(f"expected an object, got {v!r}")
    out = {}
    for k, value in v.items():
        if k not in keys:
            warn_unknown(k)
            out[k] = value
            continue
        try:
            out[k] = keys[k].check(value)
        except ValueError as e:
            raise ValueError(f"{k}: {e}") from None
    return out


MAX_BUCKETS = 100  # each is a line per timer on every scrape and a count kept per timer


def buckets(v: Any) -> list[float]:
    """Histogram upper bounds: a non-empty list of at most MAX_BUCKETS finite numbers, strictly
    increasing (a bucket boundary given twice, or out of order, would make a cumulative count go
    down). The cap keeps memory and scrape size per timer bounded: 1,000 buckets over 10,000
    timers grew a daemon past 3 GB."""
    if not isinstance(v, list) or not v:
        raise ValueError(f"expected a non-empty list of numbers, got {v!r}")
    if len(v) > MAX_BUCKETS:
        raise ValueError(f"at most {MAX_BUCKETS} buckets, got {len(v)}")
    for b in v:
        if isinstance(b, bool) or not isinstance(b, int | float):
            raise ValueError(f"bucket bounds are numbers, got {b!r}")
    bounds = [number()(b) for b in v]
    for lower, upper in itertools.pairwise(bounds):
        if upper <= lower:
            raise ValueError(f"bucket bounds must be strictly increasing, got {upper!r} after {lower!r}")
    return bounds


def file_mode(v: Any) -> int:
    """A file mode: a number (0o660 in config.js, 432 in JSON) or an octal string ("0660", "660")."""
    if isinstance(v, str):
        try:
            v = int(v.strip().removeprefix("0o"), 8)
        except ValueError:
            raise ValueError(f'expected an octal mode such as "0660", got {v!r}') from None
    mode = number(0, integer=True, maximum=0o7777)(v)
    return int(mode)


_warned: set[str] = set()


def warn_unknown(key: str) -> None:
    """Warn once per key: a typo must not be silent, but a reload must not repeat it forever."""
    if key not in _warned:
        _warned.add(key)
        log.warning("config: unknown key %r ignored (see docs/statsd.md: Configuration keys)", key)
