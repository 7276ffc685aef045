"""The gate's settings: one TOML file shared by `build`, `vcl` and `check`, each key a row of
KEYS (its type, default and meaning), every key overridable on the command line."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import re
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting that cannot work: said in one line, naming the key."""


def _path(v: Any) -> Path:
    if (
        not isinstance(v, str)
        or not v.startswith("/")
        or not _in_vcl(v)
        or v.endswith("/")
        or Path(v).is_dir()
    ):
        raise ValueError(
            "an absolute path to a file, without double quotes or control characters (it goes into VCL)"
        )
    return Path(v)


def _text(v: Any) -> str:
    if not isinstance(v, str) or not _in_vcl(v):
        raise ValueError("a string without double quotes or control characters (it goes into VCL)")
    return v


def _in_vcl(v: str) -> bool:
    """Whether the text can sit between a VCL string's double quotes as it is: no double quote
    (and so neither long-string delimiter, {" nor "}) and nothing unprintable (control
    characters, DEL, line breaks, command-line bytes that were not UTF-8)."""
    return '"' not in v and v.isprintable()


def _cookie(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", v):
        raise ValueError("a cookie name (RFC 6265 token)")
    return v


def _regex(v: Any) -> str:
    """Read alike by Python (build, check) and by varnishd's PCRE2 (the VCL): printable ASCII
    (Varnish matches bytes, Python characters), and compiled by both where libpcre2 is here."""
    if not isinstance(v, str) or '"' in v or not all(" " <= c <= "~" for c in v):
        raise ValueError("a regular expression in printable ASCII, without double quotes (it goes into VCL)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FutureWarning: Python reads "[[" or "--" unlike PCRE2
        try:
            re.compile(v)
        except (re.error, Warning) as e:
            raise ValueError(f"a regular expression ({e})") from None
    if (why := _pcre2_error(v)) is not None:
        raise ValueError(f"a regular expression Varnish's PCRE2 compiles ({why})")
    return v


@functools.cache
def _pcre2() -> ctypes.CDLL | None:
    """libpcre2-8, which varnishd compiles the VCL's regular expressions with; None if absent."""
    for name in ("libpcre2-8.so.0", ctypes.util.find_library("pcre2-8")):
        try:
            lib = ctypes.CDLL(name) if name else None
        except OSError:
            continue
        if lib is None:
            continue
        lib.pcre2_compile_8.restype = ctypes.c_void_p
        lib.pcre2_compile_8.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint32,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_void_p,
        ]
        lib.pcre2_code_free_8.argtypes = [ctypes.c_void_p]
        lib.pcre2_get_error_message_8.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        return lib
    return None


def _pcre2_error(pattern: str) -> str | None:
    """PCRE2's refusal of the pattern as varnishd compiles a VCL regex (no options), or None."""
    lib = _pcre2()
    if lib is None:
        return None
    data = pattern.encode()
    code, offset = ctypes.c_int(), ctypes.c_size_t()
    compiled = lib.pcre2_compile_8(data, len(data), 0, ctypes.byref(code), ctypes.byref(offset), None)
    if compiled:
        lib.pcre2_code_free_8(compiled)
        return None
    message = ctypes.create_string_buffer(256)
    lib.pcre2_get_error_message_8(code.value, message, len(message))
    return f"{message.value.decode(errors='replace')} at position {offset.value}"


def _percent(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 100:
        raise ValueError("a whole percentage, 0 to 100")
    return v


def _positive_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError("a whole number, 1 or more")
    return v


def _fraction(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
        raise ValueError("a fraction, 0 or more (0.2 = 20 %)")
    return float(v)


def _seconds(v: Any) -> float:
    # from 1 ms, in whole ms: the VCL writes it as a plain decimal with at most 3 decimals (more,
    # and varnishd refuses the VCL: "Too many digits for real")
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0.001 <= v <= 3600 or round(v, 3) != v:
        raise ValueError("seconds, at least 0.001 and at most 3600, in whole milliseconds (3 decimals)")
    return float(v)


def _salt(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_.-]*", v):
        raise ValueError("letters, digits, '_', '.' or '-' (it goes into VCL)")
    return v


@dataclass(frozen=True)
class Key:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str


KEYS = [
    Key("db", _path, "/var/lib/webops-gate/user_profiles.db", "the live SQLite file varnishd reads"),
    Key("cookie", _cookie, "userId", "the cookie that carries the user id"),
    Key("url", _regex, "^/", "the requests the gate decides (a regular expression on req.url)"),
    Key("id_pattern", _regex, "^[A-Za-z0-9_-]{1,64}$", "a well-formed user id; anything else is anonymous"),
    Key("rollout", _percent, 100, "the share of users with a profile that get a personalized response"),
    Key("salt", _salt, "", "mixed into the rollout bucket (one per feature)"),
    Key("min_events", _positive_int, 5, "the history a user needs for has_profile (build)"),
    Key(
        "max_change",
        _fraction,
        0.2,
        "the profiles a publish may add and remove, as a share of the live file's",
    ),
    Key("check_interval", _seconds, 5.0, "how often varnishd looks for a new file, in seconds"),
    Key("vmod", _text, "", "libvmod_gate.so's path for `import gate from`; empty: varnish's vmod dir"),
]


@dataclass(frozen=True)
class Config:
    db: Path
    cookie: str
    url: str
    id_pattern: str
    rollout: int
    salt: str
    min_events: int
    max_change: float
    check_interval: float
    vmod: str


def load(path: Path | None, overrides: Mapping[str, Any]) -> Config:
    """Defaults, then the file's keys, then the command line's; raises ConfigError."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text())
        except OSError as e:
            raise ConfigError(f"{path}: {e.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not TOML: {e}") from None
    known = {k.name: k for k in KEYS}
    for name in values:
        if name not in known:
            raise ConfigError(f"{path}: unknown key {name!r} (known: {', '.join(known)})")
    values |= {k: v for k, v in overrides.items() if v is not None}
    out = {}
    for key in KEYS:
        raw = values.get(key.name, key.default)
        try:
            out[key.name] = key.parse(raw)
        except ValueError as e:
            raise ConfigError(f"{key.name} = {raw!r}: expected {e}") from None
    assert {f.name for f in fields(Config)} == set(out)
    return Config(**out)
