"""The gate's settings: one TOML file shared by every subcommand, each key a row of KEYS (its
default, check and meaning), read through the common settings layer: defaults, then the file
(`--config FILE`), then the environment ($WEBOPS_GATE_DB, ...), then the command line (--db, ...)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..common.settings import Check, Key, Resolved, Settings, read_toml


def _path(v: Any) -> Path:
    if isinstance(v, Path):
        v = str(v)
    if (
        not isinstance(v, str)
        or not v.startswith("/")
        or not _in_vcl(v)
        or v.endswith("/")
        or Path(v).is_dir()
    ):
        raise ValueError(
            "expected an absolute path to a file, without double quotes or control characters "
            f"(it goes into VCL), got {v!r}"
        )
    return Path(v)


def _text(v: Any) -> str:
    if not isinstance(v, str) or not _in_vcl(v):
        raise ValueError(
            f"expected a string without double quotes or control characters (it goes into VCL), got {v!r}"
        )
    return v


def _in_vcl(v: str) -> bool:
    """Whether the text can sit between a VCL string's double quotes as it is: no double quote
    (and so neither long-string delimiter, {" nor "}) and nothing unprintable (control
    characters, DEL, line breaks, command-line bytes that were not UTF-8)."""
    return '"' not in v and v.isprintable()


def _cookie(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", v):
        raise ValueError(f"expected a cookie name (RFC 6265 token), got {v!r}")
    return v


def _regex(v: Any) -> str:
    """Read alike by Python (build, check) and by varnishd's PCRE2 (the VCL): printable ASCII
    (Varnish matches bytes, Python characters), and compiled by both where libpcre2 is here."""
    if not isinstance(v, str) or '"' in v or not all(" " <= c <= "~" for c in v):
        raise ValueError(
            "expected a regular expression in printable ASCII, without double quotes "
            f"(it goes into VCL), got {v!r}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FutureWarning: Python reads "[[" or "--" unlike PCRE2
        try:
            re.compile(v)
        except (re.error, Warning) as e:
            raise ValueError(f"expected a regular expression ({e}), got {v!r}") from None
    if (why := _pcre2_error(v)) is not None:
        raise ValueError(f"expected a regular expression Varnish's PCRE2 compiles ({why}), got {v!r}")
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


def _number(v: Any) -> Any:
    """A flag's or the environment's text as the number the TOML file would hold ("5" -> 5,
    "0.2" -> 0.2); a file's value, or text that is no number, as it is (the check refuses it)."""
    if not isinstance(v, str):
        return v
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v


def _percent(v: Any) -> int:
    n = _number(v)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 100:
        raise ValueError(f"expected a whole percentage, 0 to 100, got {v!r}")
    return n


def _positive_int(v: Any) -> int:
    n = _number(v)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"expected a whole number, 1 or more, got {v!r}")
    return n


def _fraction(v: Any) -> float:
    n = _number(v)
    if isinstance(n, bool) or not isinstance(n, int | float) or not n >= 0:
        raise ValueError(f"expected a fraction, 0 or more (0.2 = 20 %), got {v!r}")
    return float(n)


def _seconds(v: Any) -> float:
    # from 1 ms, in whole ms: the VCL writes it as a plain decimal with at most 3 decimals (more,
    # and varnishd refuses the VCL: "Too many digits for real")
    n = _number(v)
    if isinstance(n, bool) or not isinstance(n, int | float) or not 0.001 <= n <= 3600 or round(n, 3) != n:
        raise ValueError(
            "expected seconds, at least 0.001 and at most 3600, in whole milliseconds "
            f"(3 decimals), got {v!r}"
        )
    return float(n)


def _salt(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_.-]*", v):
        raise ValueError(f"expected letters, digits, '_', '.' or '-' (it goes into VCL), got {v!r}")
    return v


def _key(name: str, default: Any, check: Check, help: str) -> Key:
    """A gate setting: in the file as `name`, in the environment as $WEBOPS_GATE_NAME, on every
    subcommand's command line as --name (underscores as dashes)."""
    return Key(
        default,
        check,
        help,
        env=f"WEBOPS_GATE_{name.upper()}",
        flag=f"--{name.replace('_', '-')}",
        metavar=name.upper(),
    )


KEYS: dict[str, Key] = {
    "db": _key(
        "db", Path("/var/lib/webops-gate/user_profiles.db"), _path, "the live SQLite file varnishd reads"
    ),
    "cookie": _key("cookie", "userId", _cookie, "the cookie that carries the user id"),
    "url": _key("url", "^/", _regex, "the requests the gate decides (a regular expression on req.url)"),
    "id_pattern": _key(
        "id_pattern",
        "^[A-Za-z0-9_-]{1,64}$",
        _regex,
        "a well-formed user id; anything else is anonymous",
    ),
    "rollout": _key(
        "rollout", 100, _percent, "the share of users with a profile that get a personalized response"
    ),
    "salt": _key("salt", "", _salt, "mixed into the rollout bucket (one per feature)"),
    "min_events": _key("min_events", 5, _positive_int, "the history a user needs for has_profile (build)"),
    "max_change": _key(
        "max_change",
        0.2,
        _fraction,
        "the profiles a publish may add and remove, as a share of the live file's",
    ),
    "check_interval": _key(
        "check_interval", 5.0, _seconds, "how often varnishd looks for a new file, in seconds"
    ),
    "vmod": _key(
        "vmod", "", _text, "libvmod_gate.so's path for `import gate from`; empty: varnish's vmod dir"
    ),
}

SETTINGS = Settings(KEYS, read=read_toml)  # a key the gate does not know is an error


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


def resolve(
    path: str | Path | None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Resolved:
    """Every setting and where its value comes from: the defaults, then the file at `path`, then
    `environ` (os.environ unless given), then `flags`; raises ConfigError naming the source."""
    return SETTINGS.resolve(None if path is None else str(path), environ=environ, flags=flags)


def config(resolved: Resolved) -> Config:
    assert {f.name for f in fields(Config)} == set(KEYS)
    return Config(**{name: resolved[name] for name in KEYS})


def load(
    path: str | Path | None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Defaults, then the file's keys, then the environment's, then `overrides` (the command
    line's text, or typed values; None: not given); raises ConfigError."""
    flags = {name: v for name, v in (overrides or {}).items() if v is not None}
    return config(resolve(path, flags, environ))
