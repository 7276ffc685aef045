"""Reading config files that people write by hand, and saying exactly where they are wrong.

Etsy's statsd evaluates its config as a JavaScript object literal; json5 reads that (unquoted keys,
comments, trailing commas, single quotes) as well as plain JSON, without running any code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import json5


class ConfigError(Exception):
    """A config problem, already phrased as the one line the user will read."""


def load_object(path: str | Path) -> tuple[dict[str, Any], str]:
    """The top-level object of a JSON/JSON5/JS-literal file, and the file's text (for line numbers)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    try:
        data = json5.loads(text)
    except ValueError as e:
        # json5 says "<string>:LINE message"; show it as "FILE:LINE: message".
        m = re.match(r"<string>:(\d+) (.*)", str(e))
        where, msg = (f"{path}:{m.group(1)}", m.group(2)) if m else (str(path), str(e))
        raise ConfigError(f"{where}: not a valid JavaScript object literal / JSON: {msg}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must hold one object ({{ ... }}), not {type(data).__name__}")
    return data, text


def key_line(text: str, key: str) -> int | None:
    """Line number where `key` is first set in the file text (quoted or not), for error messages."""
    pattern = re.compile(r"""(?:^|[{,\s])["']?""" + re.escape(key) + r"""["']?\s*:""", re.M)
    m = pattern.search(text)
    return text.count("\n", 0, m.start()) + 1 if m else None
