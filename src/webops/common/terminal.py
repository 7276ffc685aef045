"""The keyboard of the controlling terminal, for the live screens (keytop, pgtop).

Read from /dev/tty, not stdin: stdin may be the data (`tcpflow -c | webops keytop --stdin`).
"""

from __future__ import annotations

import os
import select
import termios
import tty

ARROWS = {"\x1b[A": "up", "\x1b[B": "down", "\x1b[C": "right", "\x1b[D": "left"}


def has_tty() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDONLY))
        return True
    except OSError:
        return False


class Keyboard:
    """Single key presses (cbreak mode), arrows as "up"/"down"/..., restored on close()."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/tty", os.O_RDONLY)
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        self.pending = ""

    def read(self, timeout: float) -> str | None:
        """The next key, waiting up to `timeout` seconds. Keys typed (or pasted) together are
        returned one by one, escape sequences (arrows) as one key."""
        if not self.pending:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
            if not ready:
                return None
            self.pending = os.read(self.fd, 1024).decode(errors="replace")
        for seq, name in ARROWS.items():
            if self.pending.startswith(seq):
                self.pending = self.pending[len(seq) :]
                return name
        key, self.pending = self.pending[0], self.pending[1:]
        if key == "\x1b":
            if self.pending.startswith("["):  # an unknown escape sequence: drop it
                self.pending = self.pending.lstrip("[0123456789;")[1:]
            return "escape"
        return key

    def close(self) -> None:
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
        os.close(self.fd)
