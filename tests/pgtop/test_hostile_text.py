"""Text a database user chooses (a query, a table name) never drives the operator's terminal."""

from __future__ import annotations

import json

from tests.pgtop.test_pgtop import pgtop

# clear the screen, home, retitle the terminal (OSC 0), a carriage return, a bell
HOSTILE = "\x1b[2J\x1b[H CLEAR \x1b]0;pwned\x07 back\rOVER"


def test_control_characters_in_a_query_are_escaped_everywhere(pg, session, tmp_path) -> None:
    s = session(f"SELECT pg_sleep(30) /* {HOSTILE} */", running_for=1.0)
    text = pgtop(pg, "--once", "--columns", "pid,query", "--query-regex", "CLEAR")
    assert text.returncode == 0, text.stderr
    row = next(line for line in text.stdout.splitlines() if line.startswith(str(s.pid)))
    assert "\\x1b[2J" in row and "\\x07" in row and "\\x0d" in row
    assert not any(c in text.stdout for c in "\x1b\x07\r")
    log = tmp_path / "slow.log"
    pgtop(pg, "--once", "--slow-threshold", "1", "--log-file", str(log))
    assert "CLEAR" in log.read_text() and not any(c in log.read_text() for c in "\x1b\x07\r")
    backends = json.loads(pgtop(pg, "--once", "--format", "json").stdout)["backends"]
    assert any("\\x1b]0;pwned\\x07" in (b["query"] or "") for b in backends if b["pid"] == s.pid)


def test_a_multi_line_query_keeps_its_lines(pg, session) -> None:
    s = session("SELECT pg_sleep(30)\n\t/* second line */", running_for=0.5)
    backends = json.loads(pgtop(pg, "--once", "--format", "json").stdout)["backends"]
    assert (
        next(b["query"] for b in backends if b["pid"] == s.pid) == "SELECT pg_sleep(30)\n\t/* second line */"
    )


def test_a_line_end_in_a_query_cannot_forge_a_slow_log_entry(pg, session, tmp_path) -> None:
    forged = "2026-01-01T00:00:00 server=x pid=1 user=admin db=prod client=- duration=99.0s"
    s = session(f"SELECT pg_sleep(30) /* a\n{forged}\n*/", running_for=1.0)
    log = tmp_path / "slow.log"
    assert pgtop(pg, "--once", "--slow-threshold", "1", "--log-file", str(log)).returncode == 0
    lines = log.read_text().splitlines()
    entries = [line for line in lines if not line.startswith("    ")]
    assert len(entries) == 1 and f"pid={s.pid}" in entries[0], lines
    assert f"    {forged}" in lines
