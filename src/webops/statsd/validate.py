"""Validators for config keys: each takes what the file says and returns the value to use, or
raises ValueError with the sentence the user will read. A key is `(default, validator, doc)`;
the core keys live in config.py, each backend's in its own module (see backends/__init__.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("webops.statsd")

Validator = Callable[[Any], Any]
Key = tuple[Any, Validator, str]  # (default, validator, description)


def boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ValueError(f"expected true or false, got {v!r}")


def number(minimum: float | None = None, integer: bool = False, maximum: float | None = None) -> Validator:
    def check(v: Any) -> float | int:
        if isinstance(v, bool):
            raise ValueError(f"expected a number, got {v!r}")
        try:
            n = float(v) if isinstance(v, str) else v
        except ValueError:
            raise ValueError(f"expected a number, got {v!r}") from None
        if not isinstance(n, int | float) or n != n:
            raise ValueError(f"expected a number, got {v!r}")
        if integer:
            if n != int(n):
                raise ValueError(f"expected a whole number, got {v!r}")
            n = int(n)
        if minimum is not None and n < minimum:
            raise ValueError(f"must be at least {minimum}, got {v!r}")
        if maximum is not None and n > maximum:
            raise ValueError(f"must be at most {maximum}, got {v!r}")
        return n

    return check


port = number(0, integer=True, maximum=65535)


def string(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def choice(*options: str) -> Validator:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {v!r}")
        return v

    return check


def str_list(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"expected a list of strings, got {v!r}")
    return v


def section(keys: dict[str, tuple[Any, Validator, str]]) -> Validator:
    return lambda v: check_section(v, keys)


def check_section(v: Any, keys: dict[str, tuple[Any, Validator, str]]) -> dict:
    if not isinstance(v, dict):
        raise ValueError(f"expected an object, got {v!r}")
    out = {}
    for k, value in v.items():
        if k not in keys:
            warn_unknown(k)
            out[k] = value
            continue
        try:
            out[k] = keys[k][1](value)
        except ValueError as e:
            raise ValueError(f"{k}: {e}") from None
    return out


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
        log.warning("config: unknown key %r ignored (see README for the keys webops statsd reads)", key)
