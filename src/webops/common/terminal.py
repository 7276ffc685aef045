"""The keyboard of the controlling terminal, for the live screens (keytop, pgtop).

Read from /dev/tty, not stdin: stdin may be the data (`tcpflow -c | webops keytop --stdin`).
A window resize (SIGWINCH) wakes a waiting `read` and comes back as the key "resize", so a screen
redraws at once instead of at its next refresh.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import termios
import tty

# xterm / VT sequences (tmux sends the same)
SEQUENCES = {
    "\x1b[A": "up",
    "\x1b[B": "down",
    "\x1b[C": "right",
    "\x1b[D": "left",
    "\x1b[5~": "pgup",
    "\x1b[6~": "pgdn",
    "\x1b[H": "home",
    "\x1b[1~": "home",
    "\x1bOH": "home",
    "\x1b[F": "end",
    "\x1b[4~": "end",
    "\x1bOF": "end",
}


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
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.previous_handler = signal.signal(signal.SIGWINCH, self._resized)

    def _resized(self, signum, frame) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self.wake_w, b"r")

    def read(self, timeout: float) -> str | None:
        """The next key, waiting up to `timeout` seconds. Keys typed (or pasted) together are
        returned one by one, escape sequences (arrows) as one key. EOFError: the terminal closed."""
        if not self.pending:
            ready, _, _ = select.select([self.fd, self.wake_r], [], [], max(0.0, timeout))
            if self.wake_r in ready:
                os.read(self.wake_r, 1024)
                return "resize"
            if not ready:
                return None
            self.pending = os.read(self.fd, 1024).decode(errors="replace")
            if not self.pending:
                raise EOFError("the terminal is gone")
        for seq, name in SEQUENCES.items():
            if self.pending.startswith(seq):
                self.pending = self.pending[len(seq) :]
                return name
        key, self.pending = self.pending[0], self.pending[1:]
        if key == "\x1b":
            if self.pending[:1] in ("[", "O"):  # an unknown escape sequence: drop it
                self.pending = self.pending[1:].lstrip("0123456789;")[1:]
            return "escape"
        return key

    def close(self) -> None:
        signal.signal(signal.SIGWINCH, self.previous_handler)
        os.close(self.wake_r)
        os.close(self.wake_w)
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
        os.close(self.fd)
