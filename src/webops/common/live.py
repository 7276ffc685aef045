"""The live screens' loop (pgtop, keytop): a refresh timer, the terminal in cbreak mode and back,
key reading, redraw at once on a resize, and the keys as data.

A screen says what its keys do in a `KeyTable` (each `Binding`: the keys, how the help names them,
the screen's method that does it, the help text); the loop looks each key press up there, and the
help screen is generated from the same table, so it never lists a key that does nothing nor
misses one that does something.

The loop itself knows nothing of the screen's data: it asks the screen (`LiveScreen`) whether
the refresh timer runs, refreshes it when due, renders it and sends the result to the terminal
only when it changed. Ctrl-C is not caught here: it goes up to `webops.cli`, which exits 130.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .terminal import Keyboard

IDLE_WAIT = 3600.0  # seconds a key read waits when nothing is due (paused): a key or resize wakes it


@dataclass(frozen=True)
class Binding:
    """One line of a screen's key table."""

    keys: tuple[str, ...]  # as `Keyboard.read` returns them: "q", "up", "pgdn", "\r", " "...
    label: str  # how the help screen names them: "up / down", "enter"
    action: str  # the screen's method that does it ("quit" ends the loop)
    help: str
    with_key: bool = False  # the method is told which of `keys` was pressed


class KeyTable:
    """A screen's keys, in the order its help lists them."""

    def __init__(self, title: str, bindings: Sequence[Binding]) -> None:
        self.title = title
        self.bindings = list(bindings)
        self.by_key: dict[str, Binding] = {}
        for b in self.bindings:
            for key in b.keys:
                if key in self.by_key:
                    raise ValueError(f"{title}: key {key!r} bound twice")
                self.by_key[key] = b

    def lookup(self, key: str) -> Binding | None:
        return self.by_key.get(key)

    def help_lines(self, width: int = 100) -> list[str]:
        """The help screen: one entry per binding, its label then its text (wrapped to `width`)."""
        column = max(len(b.label) for b in self.bindings) + 2
        lines = [self.title, ""]
        for b in self.bindings:
            wrapped = textwrap.wrap(b.help, max(20, width - column - 2)) or [""]
            lines.append(f"  {b.label.ljust(column)}{wrapped[0]}")
            lines += [f"  {'':{column}}{more}" for more in wrapped[1:]]
        return [*lines, "", "(any key returns)"]


class LiveScreen(Protocol):
    """What the loop needs of a screen; its key table's actions are its own methods."""

    def refreshing(self) -> bool:
        """Whether the refresh timer runs now (not while paused or while a confirmation waits)."""
        ...

    def interval(self) -> float:
        """Seconds between refreshes."""
        ...

    def refresh(self) -> None:
        """New data, at each tick of the timer."""
        ...

    def render(self, size: os.terminal_size) -> Any:
        """The whole screen at `size`: a rich Group of Texts."""
        ...

    def intercept(self, key: str) -> bool:
        """A mode (a prompt, a confirmation, an overlay) takes the key before the table does:
        True when it did."""
        ...

    def finished(self) -> bool:
        """Whether the loop ends (a signal, a deadline, the input's end)."""
        ...


def dispatch(screen: LiveScreen, keys: KeyTable, key: str) -> bool:
    """Handle one key: the screen's mode first, then its key table. False: quit."""
    if key == "resize" or screen.intercept(key):
        return True
    binding = keys.lookup(key)
    if binding is None:
        return True
    if binding.action == "quit":
        return False
    action = getattr(screen, binding.action)
    if binding.with_key:
        action(key)
    else:
        action()
    return True


def fingerprint(group: Any, size: os.terminal_size) -> object:
    """What a drawn screen looks like: the same fingerprint, nothing to send to the terminal."""
    return (size, [(t.plain, str(t.style)) for t in getattr(group, "renderables", [group])])


def run(
    screen: LiveScreen,
    table: KeyTable,
    console: Any,
    keyboard: Callable[[], Any] = Keyboard,
    deadline: float | None = None,
    terminal_size: Callable[[], os.terminal_size] | None = None,
) -> None:
    """Show `screen`, its keys in `table`, until a quit key, `screen.finished()`, `deadline`
    (time.monotonic()) or the terminal closing. The terminal is restored whatever ends it
    (Ctrl-C goes on up)."""
    from rich.live import Live

    size_of = terminal_size or (lambda: os.get_terminal_size(sys.stdout.fileno()))
    keys = keyboard()
    try:
        with Live(console=console, screen=True, auto_refresh=False) as live:
            next_refresh = 0.0
            drawn: object = None
            while not screen.finished():
                if screen.refreshing() and time.monotonic() >= next_refresh:
                    screen.refresh()
                    next_refresh = time.monotonic() + screen.interval()
                size = size_of()
                console.size = size
                group = screen.render(size)
                if (now := fingerprint(group, size)) != drawn:
                    live.update(group, refresh=True)
                    drawn = now
                wait = next_refresh - time.monotonic() if screen.refreshing() else IDLE_WAIT
                if deadline is not None:
                    if time.monotonic() >= deadline:
                        return
                    wait = min(wait, deadline - time.monotonic())
                key = keys.read(wait)
                if key is not None and not dispatch(screen, table, key):
                    return
    except EOFError:  # the terminal closed
        return
    finally:
        keys.close()
