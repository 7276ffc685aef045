"""Text from other people's programs, made safe to show on a terminal or write to a log.

A memcached key, a SQL query or a database name is chosen by whoever talks to the server, not by
the operator whose screen shows it: an ESC in it could clear the screen, retitle the terminal or
write to the clipboard (OSC 52), and a CR or an LF could forge lines in a log. Control characters
become `\\xNN`, as `cat -v` and the kernel's log do; what is printable is left alone.
"""

from __future__ import annotations


def printable(text: str, keep: str = "") -> str:
    """`text` with every non-printable character but those in `keep` written as `\\xNN`
    (`\\uNNNN` past U+00FF)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else _escape(c) for c in text)


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n <= 0xFF else f"\\u{n:04x}"
