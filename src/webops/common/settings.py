"""One settings layer for every tool: what a setting is, where its value may come from, and which
source won.

A setting is a `Key`: its default, the check its value must pass, a line of help, and optionally
the environment variable and the command-line flag that set it. A tool's keys are one `Settings`.
`Settings.resolve` layers, in this order, each later one winning:

    the default  ->  the config file  ->  the environment  ->  the command line

and remembers where every value came from, so `--check-config` shows each value with its source
(`Resolved.lines`), the way `git config --show-origin` does: an operator asking "why is the port
8000?" gets "--port" or "/etc/webops/cluster.toml:3" or "$PORT" for an answer.

A value is checked by the same function whatever its source. From a file it is typed (5, true,
["a"]); from the environment or a flag it is text ("5", "true"), so the checks in this module
accept both; a key whose text needs shaping first (a comma-separated list, one key of a section)
says how in `Key.text`. A setting that is a section (a dict) is merged key by key across layers:
a flag that sets one key of it keeps the file's others. Every problem is one `ConfigError`
naming the source and the key; `webops.cli` prints it as one line and exits 2.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import ConfigError, key_line, load_object, read_text
from .text import printable

Check = Callable[[Any], Any]
"""A setting's value as a file, the environment or a flag gives it -> the value to use; raises
ValueError with the sentence the user will read ("expected a number, got 'x'")."""


@dataclass(frozen=True)
class Key:
    """One setting. `switch`: the flag takes no value and sets the key to it (`--idle` -> True,
    `--no-preload` -> False). `text`: how the environment's or a flag's text becomes what a file
    would hold, before the check (`"a,b"` -> `["a", "b"]`); none: the check takes the text."""

    default: Any
    check: Check
    help: str
    env: str | None = None
    flag: str | None = None
    short: str | None = None
    metavar: str | None = None
    switch: bool | None = None
    text: Callable[[str], Any] | None = None
    secret: bool = False  # --check-config says it is set, not what it is (a webhook URL, a token)
    env_is_default: bool = False  # the variable replaces the default, below the file (a test switch)
    parts: Mapping[str, str] = field(default_factory=dict)  # a section's flags: {"--http-port": "port"}


DEFAULT = "default"


def read_js(path: str) -> tuple[dict[str, Any], str]:
    """A JSON / JSON5 / JavaScript object literal file (Etsy's config.js, pgtop's), and its text."""
    return load_object(path)


def read_toml(path: str) -> tuple[dict[str, Any], str]:
    """A TOML file (the gate's), and its text."""
    text = read_text(path)
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{printable(path)}: not TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{printable(path)}: nested too deeply for a config file") from None


@dataclass
class Resolved:
    """The values of a tool's settings, and where each came from."""

    values: dict[str, Any]
    sources: dict[str, str]
    order: tuple[str, ...] = ()
    secret: frozenset[str] = frozenset()

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def lines(self) -> list[str]:
        """`name = value  # source` for every setting (known keys in their order, then any
        unknown ones a tool keeps), each value as JSON so it reads the same in every tool."""
        names = [*self.order, *(n for n in self.values if n not in self.order)]
        shown = [(n, self._shown(n)) for n in names]
        width = max((len(n) + len(v) + 3 for n, v in shown if len(n) + len(v) < 60), default=0)
        return [f"{n} = {v}".ljust(width) + f"  # {self.sources.get(n, DEFAULT)}" for n, v in shown]

    def _shown(self, name: str) -> str:
        value = self.values[name]
        if name in self.secret and isinstance(value, str) and value:
            return '"(set, not shown)"'
        return json.dumps(value, default=str, ensure_ascii=False)


@dataclass(frozen=True)
class Settings:
    """A tool's keys, how its config file is read, and what it does with keys it does not know
    (None: refuse them; statsd warns and keeps them, as Etsy's backends may read their own)."""

    keys: Mapping[str, Key]
    read: Callable[[str], tuple[dict[str, Any], str]] = read_js
    unknown: Callable[[str], None] | None = field(default=None, compare=False)

    def add_arguments(self, parser: argparse.ArgumentParser, config: bool = True) -> None:
        """Each key's flag, and (with `config`) `--config FILE` and `--check-config`. A flag
        left out is absent from the namespace, so only what the command line says overrides."""
        if config:
            parser.add_argument(
                "--config",
                metavar="FILE",
                help="settings file; the environment and the flags below win over it",
            )
            parser.add_argument(
                "--check-config",
                action="store_true",
                help="print every setting with where its value comes from (default, file, "
                "environment, flag) and exit; 2 if one is invalid",
            )
        for name, key in self.keys.items():
            for flag, part in key.parts.items():
                parser.add_argument(
                    flag,
                    dest=f"{_dest(name)}.{part}",
                    metavar=part.upper(),
                    default=argparse.SUPPRESS,
                    help=f"{part} of {name}: {key.help}",
                )
            if key.flag is None:
                continue
            names = [key.short, key.flag] if key.short else [key.flag]
            help_text = key.help + _origin_note(key)
            if key.switch is not None:
                parser.add_argument(
                    *names,
                    dest=_dest(name),
                    action="store_const",
                    const=key.switch,
                    default=argparse.SUPPRESS,
                    help=help_text,
                )
            else:
                parser.add_argument(
                    *names,
                    dest=_dest(name),
                    metavar=key.metavar or name.upper(),
                    default=argparse.SUPPRESS,
                    help=help_text,
                )

    def flags(self, args: argparse.Namespace) -> dict[str, Any]:
        """What the command line set, by key name (as text, or a switch's value)."""
        given = vars(args)
        out = {name: given[_dest(name)] for name in self.keys if _dest(name) in given}
        for name, key in self.keys.items():
            section = {
                p: given[f"{_dest(name)}.{p}"] for p in key.parts.values() if f"{_dest(name)}.{p}" in given
            }
            if section:
                out[name] = {**out.get(name, {}), **section}
        return out

    def resolve(
        self,
        path: str | None = None,
        environ: Mapping[str, str] | None = None,
        flags: Mapping[str, Any] | None = None,
        file: Mapping[str, Any] | None = None,
        text: str = "",
    ) -> Resolved:
        """Defaults, then the file at `path` (or an already-read `file` object and its `text`, for
        line numbers), then `environ` (os.environ unless given), then `flags`; each value checked
        once, naming its source."""
        if path is not None and file is None:
            file, text = self.read(path)
        raw: dict[str, Any] = {}
        sources: dict[str, list[str]] = {}

        def put(name: str, value: Any, source: str) -> None:
            before = raw.get(name)
            if isinstance(value, dict) and isinstance(before, dict) and name in sources:
                value = {**before, **value}  # a section: a later layer sets only the keys it names
                sources[name].append(source)
            else:
                sources[name] = [source]
            raw[name] = value

        env = os.environ if environ is None else environ
        for name, key in self.keys.items():
            if key.env and key.env_is_default and env.get(key.env, "").strip():
                put(name, _shaped(key, env[key.env]), f"${key.env}")
        where = printable(path) if path else "config"
        for name, value in (file or {}).items():
            if name not in self.keys:
                if self.unknown is None:
                    line = key_line(text, name) if text else None
                    known = ", ".join(self.keys)
                    raise ConfigError(f"{_at(where, line)}: unknown key {name!r} (known: {known})")
                self.unknown(name)
            line = key_line(text, name) if text else None
            put(name, value, _at(where, line))
        for name, key in self.keys.items():
            if key.env and not key.env_is_default and env.get(key.env, "") != "":
                put(name, _shaped(key, env[key.env]), f"${key.env}")
        for name, value in (flags or {}).items():
            key = self.keys[name]
            by = [flag for flag, part in key.parts.items() if isinstance(value, dict) and part in value]
            source = ", ".join(by) if by else key.flag or "command line"
            put(name, _shaped(key, value) if isinstance(value, str) else value, source)
        values: dict[str, Any] = {}
        for name, key in self.keys.items():
            if name not in raw:
                values[name] = copy.deepcopy(key.default)
                continue
            try:
                values[name] = key.check(raw[name])
            except ValueError as e:
                raise ConfigError(f"{', '.join(sources[name])}: {name}: {_said(key, raw[name], e)}") from None
        for name, value in raw.items():
            values.setdefault(name, value)  # unknown keys the tool keeps
        secret = frozenset(name for name, key in self.keys.items() if key.secret)
        return Resolved(values, {n: ", ".join(s) for n, s in sources.items()}, tuple(self.keys), secret)


MAX_MESSAGE = 300  # characters of a refusal: a 100 kB value is named, not echoed whole


def _said(key: Key, value: Any, refusal: ValueError) -> str:
    """A check's refusal as the user reads it: a secret's value never in it, and bounded."""
    text = str(refusal)
    if key.secret and isinstance(value, str) and value:
        text = text.replace(repr(value), "(not shown)").replace(value, "(not shown)")
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "... (cut)"


def _dest(name: str) -> str:
    return "setting." + name


def _at(where: str, line: int | None) -> str:
    return f"{where}:{line}" if line else where


def _shaped(key: Key, text: str) -> Any:
    return key.text(text) if key.text else text


def _origin_note(key: Key) -> str:
    parts = []
    if key.env:
        parts.append(f"${key.env}")
    if key.switch is None and key.default not in (None, "", [], {}):
        parts.append(f"default {key.default}")
    return f" ({'; '.join(parts)})" if parts else ""


# The checks: each accepts a file's typed value and the environment's or a flag's text.


def boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.lower() in _WORDS:
        return _WORDS[v.lower()]
    raise ValueError(f"expected true or false, got {v!r}")


_WORDS = {
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "on": True,
    "off": False,
    "1": True,
    "0": False,
}


def number(minimum: float | None = None, integer: bool = False, maximum: float | None = None) -> Check:
    """A finite number (a whole one with `integer`) within the bounds; text is read as a number."""

    def check(v: Any) -> float | int:
        if isinstance(v, bool):
            raise ValueError(f"expected a number, got {v!r}")
        # ASCII digits: not the Arabic-Indic or fullwidth ones, nor 1_000, all of which float() takes
        if isinstance(v, str) and not _ASCII_NUMBER.fullmatch(v.strip()):
            raise ValueError(f"expected a number, got {v!r}")
        try:
            n = float(v) if isinstance(v, str) else v
        except ValueError:
            raise ValueError(f"expected a number, got {v!r}") from None
        if not isinstance(n, int | float):
            raise ValueError(f"expected a number, got {v!r}")
        if not math.isfinite(n):  # nan, inf: never a setting
            raise ValueError(f"expected a finite number, got {v!r}")
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


_ASCII_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", re.I | re.A)

port = number(0, integer=True, maximum=65535)


def string(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def optional(check: Check) -> Check:
    """`check`, or None for an unset value (a file's null, an empty flag)."""
    return lambda v: None if v is None else check(v)


def choice(*options: str) -> Check:
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


def comma_list(text: str) -> list[str]:
    """`Key.text` for a list given as `a,b,c` in the environment or on the command line."""
    return [part.strip() for part in text.split(",") if part.strip()]
