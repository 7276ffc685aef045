"""The live screen fitted to small terminals, and the stdin reader's hand-over of bursts."""

from __future__ import annotations

import os
import queue
import threading

from tests.conftest import wait_until
from webops.keytop import render
from webops.keytop.app import Health, stream_source
from webops.keytop.events import Event
from webops.keytop.protocol import TextDecoder
from webops.keytop.render import View, compact, printable, rows_fitting, screen
from webops.keytop.table import KeyTable


def test_an_80_column_screen_keeps_every_number_whole() -> None:
    t = KeyTable(started=1.0)
    for i in range(3):
        for _ in range(1000):
            t.add(Event(f"key:{i}" * 5, read=123_456_789), now=2.0)
    t.total.calls += 98_765_432  # big totals, as after a day of traffic
    rows = t.rows("calls", 10, 2.0)
    rows[0]["calls"] = 1_234_567_890
    group = screen(rows, t.totals(2.0), Health(), "keytop", View("calls"), 80)
    lines = [line.plain for line in group.renderables]  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in lines)
    assert "1.23G" in lines[4] and "…" not in "".join(lines[4].split()[1:])  # numbers never cut


def test_helpers() -> None:
    assert compact(999_999) == "999999" and compact(1_234_567) == "1.23M" and compact(2.5) == "2.5"
    assert printable("a\x1b[31mb") == "a\\x1b[31mb"
    assert rows_fitting(24) == 19


def test_a_burst_on_stdin_is_handed_over_while_the_input_stays_open() -> None:
    read_fd, write_fd = os.pipe()
    feed: queue.Queue = queue.Queue()
    stop = threading.Event()
    decoder = TextDecoder()
    thread = threading.Thread(
        target=stream_source,
        args=(read_fd, decoder.feed, decoder.idle, decoder.finish, feed, stop),
        daemon=True,
    )
    thread.start()
    try:
        os.write(write_fd, b"get a\r\n" * 5)  # and nothing after it for a while
        seen: list[Event] = []

        def five() -> bool:
            while not feed.empty():
                item = feed.get()
                if isinstance(item, list):
                    seen.extend(item)
            return len(seen) == 5

        wait_until(five, what="the burst handed over without a later line")
    finally:
        stop.set()
        thread.join(5)
        os.close(write_fd)
        os.close(read_fd)


def test_every_loss_in_the_totals_has_a_line_for_stderr() -> None:
    """docs/keytop.md: approximate, lost_entries, gaps, down, notes in the JSON totals, each also on
    stderr (app.run prints these lines)."""
    totals = {
        "lost_entries": 7,
        "gaps": [{"server": "m1:11211", "seconds": 2.5}],
        "down": {"m2:11211": "down (refused)"},
        "notes": ["3 bytes skipped"],
    }
    lines = render.loss_lines(totals)
    assert lines == [
        "memcached dropped 7 log entries (keytop read too slowly)",
        "1 gap(s) without data, 2.5s (m1:11211)",
        "m2:11211: down (refused)",
        "3 bytes skipped",
    ]
    assert render.losses(totals) == "APPROXIMATE COUNTS: " + "; ".join(lines)
    assert render.loss_lines({"lost_entries": 0, "gaps": [], "down": {}, "notes": []}) == []
