"""Reading config files that people write by hand, and saying exactly where they are wrong.

Etsy's statsd evaluates its config as JavaScript. json5 reads what most files are (an object literal:
unquoted keys, comments, trailing commas, single quotes; or plain JSON); a file that uses
expressions (`60 * 1000`, `0o660`, `process.env.X || "..."`) is read by jsconfig, which evaluates
those few kinds of expression without running any code. A key whose value is `undefined` or `null`
(an unset environment variable) reads as unset.
"""

from __future__ import annotations

import json
import os
import re
import select
import stat
import time
from pathlib import Path
from typing import Any

import json5

from .jsconfig import Unsupported, parse_js_object
from .text import printable


class ConfigError(Exception):
    """A config problem, already phrased as the one line the user will read."""


MAX_BYTES = 1 << 20  # a config file people write is a few kB; past this it is something else
READ_SECONDS = 10  # a pipe (`--config <(...)`) whose writer has not finished by then never will


def read_text(path: str | Path) -> str:
    """A config file's text (a UTF-8 BOM, as Windows editors write, dropped), or the one line
    saying why it cannot be read. Bounded whatever the path names: a FIFO nobody writes to, a
    device that never ends (/dev/zero), a huge file each get their line instead of a hang or
    all the memory."""
    shown = printable(str(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    except OSError as e:
        raise ConfigError(f"{shown}: cannot read: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        os.close(fd)
        raise ConfigError(f"{shown}: cannot read: Is a directory")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_BYTES + 1) if stat.S_ISREG(mode) else _read_stream(fd, shown)
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{shown}: larger than {MAX_BYTES >> 20} MiB: not a config file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{shown}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _read_stream(fd: int, shown: str) -> bytes:
    """A pipe's or a device's bytes up to one past MAX_BYTES, within READ_SECONDS."""
    deadline = time.monotonic() + READ_SECONDS
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BYTES:
        try:  # non-blocking: b"" is the end (a FIFO with no writer ends at once), EAGAIN "wait"
            chunk = os.read(fd, MAX_BYTES + 1 - size)
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ConfigError(f"{shown}: nothing more to read within {READ_SECONDS} s") from None
            continue
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def load_object(path: str | Path) -> tuple[dict[str, Any], str]:
    """The top-level object of a JSON/JSON5/JS-literal file, and the file's text (for line numbers)."""
    text = read_text(path)
    shown = printable(str(path))
    try:
        return _parse_object(text, shown), text
    except RecursionError:  # json5, esprima and the walk below recurse once per level
        raise ConfigError(f"{shown}: nested too deeply for a config file") from None


def _parse_object(text: str, path: str) -> dict[str, Any]:
    try:
        data = json.loads(text)  # most files are plain JSON: the C parser, at once
    except ValueError:
        data = _parse_js(text, path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must hold one object ({{ ... }}), not {type(data).__name__}")
    return _without_unset(data)


def _parse_js(text: str, path: str) -> Any:
    try:
        return json5.loads(text)
    except ValueError as e:
        try:
            return parse_js_object(text)
        except Unsupported as unsupported:  # valid JavaScript that a config may not use
            raise ConfigError(f"{path}:{unsupported.line}: {unsupported}") from None
        except ValueError:
            # json5 says "<string>:LINE message"; show it as "FILE:LINE: message".
            m = re.match(r"<string>:(\d+) (.*)", str(e))
            where, msg = (f"{path}:{m.group(1)}", m.group(2)) if m else (str(path), str(e))
            raise ConfigError(f"{where}: not a valid JavaScript object literal / JSON: {msg}") from e


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
