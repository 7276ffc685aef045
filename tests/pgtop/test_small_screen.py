"""The screen on small terminals and deep lock queues (pure): rows first, then the status and the
keys; the header goes first; the title on one line, never wrapped mid-word; a confirmation always
lists a target, says how many it does not list, and shows its keys."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from webops.pgtop import columns, render
from webops.pgtop.data import Filters, Server, Snapshot, select
from webops.pgtop.ui import confirmation

from .test_data import backend

HOLDER = 4000
TITLE = "pgtop 127.0.0.1:54321/postgres"


def pileup(n: int = 67) -> Snapshot:
    """An idle-in-transaction holder and `n` sessions waiting for its lock."""
    waiters = [
        backend(
            5000 + i,
            seconds=30.0 - i / 10,
            blocked_by=[HOLDER],
            query=f"SELECT count(*) FROM pileup /* {i} */",
        )
        for i in range(n)
    ]
    holder = backend(HOLDER, state="idle in transaction", seconds=60, query="LOCK TABLE pileup")
    server = Server(version="15.10 (Debian 15.10-1.pgdg120+1)", version_num=150010, uptime=3725)
    return Snapshot(server, [holder, *waiters], xacts_per_s=1234.5, tuples_per_s=98765.4)


def parts(view: str = "all") -> list[str]:
    return [f"view {view}", "sort duration", "refresh 2s", "idle hidden", "filter user=app"]


def draw(snap: Snapshot, size: tuple[int, int], overlay=None, status: str = "3 new slow queries logged"):
    rows = select(snap, "all", Filters(), "duration")
    view = {
        "selected": 0,
        "offset": 0,
        "columns": columns.PROFILES["standard"],
        "local": False,
        "slow": 5.0,
        "tagged": set(),
    }
    group, _, page = render.screen((TITLE, parts()), snap, rows, view, status, size, overlay)
    console = Console(width=size[0], height=size[1], record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(group)
    console.file.close()
    return console.export_text().rstrip("\n").split("\n"), page


@pytest.mark.parametrize("size", [(40, 8), (40, 10), (60, 15), (80, 24), (120, 40)])
def test_a_small_screen_keeps_rows_status_and_keys_and_one_title_line(size) -> None:
    lines, _ = draw(pileup(), size)
    assert len(lines) == size[1] and all(len(line) <= size[0] for line in lines), "\n".join(lines)
    screen = "\n".join(lines)
    title = lines[0]
    assert "view all" in title and "sort duration" in title and "filter user=app" in title, screen
    assert any("PID" in line and "QUERY" in line for line in lines), screen
    rows = [line for line in lines if re.match(r"[* ] +\d+ ", line)]
    assert len(rows) >= min(5, size[1] - 5), screen  # rows of backends first
    assert any("SELECT count(*)" in row for row in rows), screen
    assert lines[-2].startswith("3 new slow queries logged"), screen  # the status
    assert re.search(r"q.quit.*\?.help", lines[-1]), screen  # the keys
    assert "more below" in screen, screen
    if size[1] >= 24:
        assert "cache hit ratio" in screen and "PostgreSQL 15.10" in screen  # room for the header
    if size[0] <= 40:
        assert "postgre\n" not in screen  # never a word wrapped


@pytest.mark.parametrize("size", [(40, 8), (40, 10), (60, 15), (80, 24)])
@pytest.mark.parametrize("key", ["k", "K"])
def test_a_confirmation_lists_a_target_says_how_many_more_and_shows_its_keys(size, key) -> None:
    snap = pileup()
    targets = snap.backends[1:]
    listing = confirmation(targets, "queries over 1s in view all, filter user=app", key)
    lines, _ = draw(snap, size, listing, status="c cancel  t terminate  esc back")
    screen = "\n".join(lines)
    assert len(lines) == size[1] and all(len(line) <= size[0] for line in lines), screen
    assert f"About to signal {len(targets)} backend(s)" in screen, screen
    listed = [line for line in lines if line.strip().split(" ")[0].isdigit()]
    assert listed, screen
    more = [line for line in lines if "… and " in line]
    assert len(more) == 1, screen
    assert len(listed) + int(more[0].split("… and ")[1].split()[0]) == len(targets), screen
    keys = " ".join(" ".join(lines[lines.index(more[0]) + 1 : -2]).split())  # the listing's keys
    assert "c cancel" in keys and "t term" in keys and "esc" in keys, screen
    assert ("a cancel" in keys) == (key == "k"), screen
    assert lines[-2].startswith("c cancel"), screen  # and the status line's, whole


def test_below_the_minimum_one_line_says_the_terminal_is_too_small() -> None:
    lines, _ = draw(pileup(), (30, 6))
    assert "terminal too small" in " ".join(lines) and "need 40x8" in " ".join(lines)
    assert all(len(line) <= 30 for line in lines)


@pytest.mark.parametrize("width", [80, 120])
def test_a_deep_lock_queue_leaves_the_query_its_third(width: int) -> None:
    """60 sessions queued one behind the other on one advisory lock: each waits for the previous."""
    chain = [backend(6000, query="SELECT pg_advisory_lock(1) /* root */")]
    chain += [
        backend(6000 + i, blocked_by=[6000 + i - 1], query=f"SELECT pg_advisory_lock(1) /* waiter {i} */")
        for i in range(1, 61)
    ]
    rows = select(Snapshot(Server(), chain), "tree", Filters(), "duration")
    assert [b.depth for b in rows] == list(range(61))
    keys = columns.PROFILES["standard"]
    head, body = render.table(Snapshot(Server(), chain), rows, keys, width, local=False)
    start = head.index("QUERY")
    for line in body:
        query = line[start:].strip()
        assert "SELECT pg_advisory" in query, line  # the query, not only its indentation
        assert len(query.split("SELECT", 1)[0]) <= 2 * columns.DEPTH_SHOWN + 6, line
    deep = body[-1][start:]
    assert "└[60]" in deep and "SELECT pg_advisory" in deep
    assert "    SELECT" in body[2][start:]  # shallow levels: still indented, two spaces a level
