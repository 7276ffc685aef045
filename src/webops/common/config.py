"""Reading config files that people write by hand, and saying exactly where they are wrong.

Etsy's statsd evaluates its config as JavaScript. json5 reads what most files are (an object literal:
unquoted keys, comments, trailing commas, single quotes; or plain JSON); a file that uses
expressions (`60 * 1000`, `0o660`, `process.env.X || "..."`) is read by jsconfig, which evaluates
those few kinds of expression without running any code. A key whose value is `undefined` or `null`
(an unset environment variable) reads as unset.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import json5

from .jsconfig import Unsupported, parse_js_object


class ConfigError(Exception):
    """A config problem, already phrased as the one line the user will read."""


def read_text(path: str | Path) -> str:
    """A config file's text, or the one line saying why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_object(path: str | Path) -> tuple[dict[str, Any], str]:
    """The top-level object of a JSON/JSON5/JS-literal file, and the file's text (for line numbers)."""
    text = read_text(path)
    try:
        data = json5.loads(text)
    except ValueError as e:
        try:
            data = parse_js_object(text)
        except Unsupported as unsupported:  # valid JavaScript that a config may not use
            raise ConfigError(f"{path}:{unsupported.line}: {unsupported}") from None
        except ValueError:
            # json5 says "<string>:LINE message"; show it as "FILE:LINE: message".
            m = re.match(r"<string>:(\d+) (.*)", str(e))
            where, msg = (f"{path}:{m.group(1)}", m.group(2)) if m else (str(path), str(e))
            raise ConfigError(f"{where}: not a valid JavaScript object literal / JSON: {msg}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must hold one object ({{ ... }}), not {type(data).__name__}")
    return _without_unset(data), text


def _without_unset(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_unset(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_unset(v) for v in value]
    return value


def key_line(text: str, key: str) -> int | None:
    """Line number where `key` is first set in the file text (quoted or not; `key:` in a JS object,
    `key =` at the start of a TOML line), for error messages."""

    def name(group: str) -> str:
        return f"(?P<{group}>[\"']?{re.escape(key)}[\"']?)"

    pattern = re.compile(r"(?:^|[{,\s])" + name("js") + r"\s*:|^[ \t]*" + name("toml") + r"\s*=", re.M)
    m = pattern.search(text)
    return text.count("\n", 0, m.start(m.lastgroup or 0)) + 1 if m else None
