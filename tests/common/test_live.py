"""The live screens' loop (common/live.py) with a fake keyboard, and the key tables of pgtop and
keytop: every key they bind does something, and their help screens list every one."""

from __future__ import annotations

import io
import os

import pytest
from rich.console import Console, Group
from rich.text import Text

from webops.common import live
from webops.common.live import Binding, KeyTable
from webops.keytop import app as keytop_app
from webops.pgtop import ui as pgtop_ui

SIZE = os.terminal_size((80, 24))
NAMES = {"\r": "enter", "\n": "enter", " ": "space", "pgup": "pgup", "pgdn": "pgdn"}


class FakeKeyboard:
    """Keys as `Keyboard.read` returns them, then the terminal closes (EOFError)."""

    def __init__(self, keys: list[str | BaseException | None]) -> None:
        self.keys = list(keys)
        self.waits: list[float] = []
        self.closed = False

    def read(self, timeout: float) -> str | None:
        self.waits.append(timeout)
        if not self.keys:
            raise EOFError
        key = self.keys.pop(0)
        if isinstance(key, BaseException):
            raise key
        return key

    def close(self) -> None:
        self.closed = True


class Counter:
    """A screen with a number on it: `+` adds one, `r` resets, `?` shows the help."""

    def __init__(self) -> None:
        self.n = 0
        self.every = 5.0
        self.refreshes = 0
        self.paused = False
        self.overlay: list[str] | None = None
        self.renders: list[str] = []

    def refreshing(self) -> bool:
        return not self.paused

    def interval(self) -> float:
        return self.every

    def refresh(self) -> None:
        self.refreshes += 1

    def render(self, size: os.terminal_size) -> Group:
        text = "\n".join(self.overlay) if self.overlay else f"n={self.n}"
        self.renders.append(text)
        return Group(Text(text))

    def intercept(self, key: str) -> bool:
        if self.overlay is None:
            return False
        self.overlay = None
        return True

    def finished(self) -> bool:
        return self.n >= 10

    def add(self, key: str) -> None:
        self.n = 0 if key == "r" else self.n + 1

    def pause(self) -> None:
        self.paused = not self.paused

    def help(self) -> None:
        self.overlay = COUNTER_KEYS.help_lines()


COUNTER_KEYS = KeyTable(
    "counter keys",
    [
        Binding(("+", "r"), "+ / r", "add", "add one / back to zero", with_key=True),
        Binding(("p",), "p", "pause", "pause"),
        Binding(("?",), "?", "help", "this help"),
        Binding(("q",), "q", "quit", "quit"),
    ],
)


def run(screen: Counter, keys: list[str | BaseException | None], **kw) -> FakeKeyboard:
    keyboard = FakeKeyboard(keys)
    console = Console(file=io.StringIO(), force_terminal=True, width=80, height=24)
    live.run(screen, COUNTER_KEYS, console, keyboard=lambda: keyboard, terminal_size=lambda: SIZE, **kw)
    return keyboard


def test_keys_are_looked_up_in_the_table_and_q_quits() -> None:
    screen = Counter()
    keyboard = run(screen, ["+", "x", "+", "resize", "r", "+", "q", "+"])
    assert screen.n == 1 and keyboard.keys == ["+"]  # x did nothing, q ended it, the last + never read
    assert keyboard.closed and screen.refreshes == 1  # no timeout passed: one refresh, at the start


def test_a_timeout_refreshes_and_a_paused_screen_waits_for_a_key() -> None:
    screen = Counter()
    screen.every = 0.0  # each timeout (the fake keyboard's None) finds a refresh due
    keyboard = run(screen, [None, "p", None])
    assert screen.refreshes == 2  # the start, and the timeout
    assert keyboard.waits[-1] == live.IDLE_WAIT  # paused: no refresh due, only a key wakes it


def test_the_help_comes_from_the_table_and_any_key_returns() -> None:
    screen = Counter()
    run(screen, ["?", "+", "+"])
    help_screen = next(r for r in screen.renders if r.startswith("counter keys"))
    for b in COUNTER_KEYS.bindings:
        assert any(line.split() == [*b.label.split(), *b.help.split()] for line in help_screen.splitlines())
    assert screen.n == 1  # the first + only closed the help


def test_the_screen_ends_the_loop_and_ctrl_c_goes_on_up_with_the_terminal_restored() -> None:
    screen = Counter()
    run(screen, ["+"] * 20)
    assert screen.n == 10  # finished() said so
    keyboard = FakeKeyboard(["+", KeyboardInterrupt()])
    console = Console(file=io.StringIO(), force_terminal=True)
    with pytest.raises(KeyboardInterrupt):
        live.run(Counter(), COUNTER_KEYS, console, keyboard=lambda: keyboard, terminal_size=lambda: SIZE)
    assert keyboard.closed


def test_a_deadline_ends_it() -> None:
    screen = Counter()
    keyboard = run(screen, [None] * 5, deadline=0.0)
    assert keyboard.waits == []


def test_a_key_bound_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="bound twice"):
        KeyTable("t", [Binding(("a",), "a", "x", ""), Binding(("b", "a"), "b", "y", "")])


@pytest.mark.parametrize(
    ("table", "screen_class"), [(pgtop_ui.KEYS, pgtop_ui.Screen), (keytop_app.KEYS, keytop_app.Screen)]
)
def test_every_key_of_pgtop_and_keytop_is_in_its_help_and_does_something(table, screen_class) -> None:
    help_text = "\n".join(table.help_lines(200))
    for b in table.bindings:
        line = next((line for line in help_text.splitlines() if line.startswith(f"  {b.label} ")), None)
        assert line is not None and " ".join(b.help.split()) in " ".join(line.split()), (b, help_text)
        for key in b.keys:
            name = NAMES.get(key, key).lower()
            assert name in (b.label + " " + b.help).lower(), (key, b)
        assert b.action == "quit" or callable(getattr(screen_class, b.action, None)), b
    assert table.lookup("?") is not None and table.lookup("?").action == "help"


def test_pgtop_and_keytop_keep_their_keys() -> None:
    assert set(pgtop_ui.KEYS.by_key) == set("qQkKus vCip+-?/\r\n") | {
        "up",
        "down",
        "pgup",
        "pgdn",
        "home",
        "end",
    }
    assert set(keytop_app.KEYS.by_key) == set("chmsbrwzkopPqQ?")
