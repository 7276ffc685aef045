"""keytop as a user runs it: real memcached, a real client library, the real command."""

from __future__ import annotations

import array
import csv
import fcntl
import io
import json
import shutil
import signal
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from tests.conftest import need, stop_process, tmux, tmux_run, wait_until
from tests.servers import Memcached

DATA = Path(__file__).parent / "data"
KEYTOP = [sys.executable, "-m", "webops", "keytop"]


@pytest.fixture
def memcached():
    m = Memcached()
    yield m
    m.stop()


def meta(port: int, *commands: bytes) -> None:
    """Meta commands over a raw socket (the client library speaks the classic protocol)."""
    import socket

    with socket.create_connection(("127.0.0.1", port)) as s:
        for cmd in commands:
            s.sendall(cmd)
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += s.recv(4096)
            if reply.startswith(b"VA"):
                size = int(reply.split()[1])
                while len(reply) < len(reply.split(b"\r\n", 1)[0]) + 2 + size + 2:
                    reply += s.recv(4096)


def test_watch_counts_are_exact(memcached: Memcached) -> None:
    proc = subprocess.Popen(
        [*KEYTOP, "--server", memcached.address, "--format", "json", "--limit", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: memcached.stats().get("log_watchers") == "1", what="keytop watching")
        client = Client(("127.0.0.1", memcached.port))
        client.set("page:home", b"<html>", noreply=False)
        client.set("page:about", b"about", noreply=False)
        for _ in range(3):
            assert client.get("page:home") == b"<html>"
        assert client.get("page:missing") is None
        assert client.get_many(["page:home", "page:about", "page:gone"]) == {
            "page:home": b"<html>",
            "page:about": b"about",
        }
        client.close()
        meta(memcached.port, b"ms sess:1 2\r\nhi\r\n", b"mg sess:1 v\r\n", b"mg sess:none v\r\n")
        sent = lambda: int(memcached.stats()["log_watcher_sent"])  # noqa: E731
        wait_until(lambda: sent() >= 15, what="memcached to send every event to keytop")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, err
    report = json.loads(out)
    rows = {r["key"]: r for r in report["keys"]}

    def counts(key: str) -> tuple[int, int, int, int, int, int]:
        r = rows[key]
        return r["calls"], r["hits"], r["misses"], r["sets"], r["bytes_read"], r["bytes_written"]

    assert counts("page:home") == (5, 4, 0, 1, 24, 6)
    assert counts("page:about") == (2, 1, 0, 1, 5, 5)
    assert counts("page:missing") == (1, 0, 1, 0, 0, 0)
    assert counts("page:gone") == (1, 0, 1, 0, 0, 0)
    assert counts("sess:1") == (2, 1, 0, 1, 2, 2)
    assert counts("sess:none") == (1, 0, 1, 0, 0, 0)
    assert report["totals"]["distinct_keys"] == 6
    assert report["totals"]["calls"] == 12


def test_runtime_stops_it_and_text_is_the_default(memcached: Memcached) -> None:
    r = subprocess.run(
        [*KEYTOP, "--server", memcached.address, "--runtime", "0.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0
    assert r.stdout.splitlines()[1].split() == [
        "KEY",
        "CALLS",
        "HITS",
        "MISSES",
        "SETS",
        "READ",
        "WRITTEN",
        "SIZE",
        "CALLS/S",
        "BYTES/S",
        "SHARE",
    ]


def test_unreachable_server_is_a_one_line_error() -> None:
    r = subprocess.run(
        [*KEYTOP, "--server", "127.0.0.1:1", "--runtime", "5"], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2
    assert r.stderr.startswith("webops keytop: 127.0.0.1:1:") and r.stderr.count("\n") == 1


@pytest.mark.parametrize("fmt", ["json", "csv", "text"])
def test_stdin_with_recorded_tcpdump_text(fmt: str) -> None:
    text = (DATA / "tcpdump-A.txt").read_text()
    r = subprocess.run(
        [*KEYTOP, "--stdin", "--format", fmt, "--port", "22211"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    if fmt == "json":
        rows = {k["key"]: k for k in json.loads(r.stdout)["keys"]}
        assert (rows["user:1"]["calls"], rows["user:1"]["hits"]) == (5, 4)
    elif fmt == "csv":
        rows = {row["key"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
        assert rows["user:3"]["misses"] == "1"
    else:
        assert "user:1" in r.stdout.splitlines()[2]  # the most called key first


def test_pcap_file() -> None:
    r = subprocess.run(
        [*KEYTOP, "--pcap", str(DATA / "memcached.pcap"), "--port", "22211", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    rows = {k["key"]: k for k in json.loads(r.stdout)["keys"]}
    assert (rows["user:2"]["calls"], rows["user:2"]["sets"]) == (4, 1)


def test_missing_pcap_file_is_a_clear_error(tmp_path) -> None:
    r = subprocess.run(
        [*KEYTOP, "--pcap", str(tmp_path / "nope.pcap")], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and "nope.pcap" in r.stderr


def test_field_mode_is_pipestat() -> None:
    lines = "GET /a 200\nGET /b 200\nPOST /a 500\nshort\n"
    r = subprocess.run(
        [*KEYTOP, "--field", "2", "--format", "json"], input=lines, capture_output=True, text=True, timeout=30
    )
    rows = {k["key"]: k["calls"] for k in json.loads(r.stdout)["keys"]}
    assert rows == {"/a": 2, "/b": 1}


def test_live_screen_in_a_terminal(memcached: Memcached) -> None:
    need(shutil.which("tmux") is not None, "tmux not found (apt-get install tmux)")
    session = f"keytop{memcached.port}"
    cmd = " ".join([*KEYTOP, "--server", memcached.address, "--time", "0.2", "--limit", "5"])
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "20", cmd)
    try:
        screen = lambda: tmux("capture-pane", "-p", "-t", session)  # noqa: E731
        wait_until(
            lambda: "KEY" in screen() and memcached.stats().get("log_watchers") == "1",
            what="the keytop screen",
        )
        client = Client(("127.0.0.1", memcached.port))
        for _ in range(3):
            client.get("screen:hot")
        client.get("screen:cold")
        client.close()
        wait_until(
            lambda: "screen:hot" in (text := screen()) and "screen:cold" in text, what="the keys on screen"
        )
        lines = screen().splitlines()
        assert lines.index(next(x for x in lines if "screen:hot" in x)) < lines.index(
            next(x for x in lines if "screen:cold" in x)
        )
        tmux("send-keys", "-t", session, "m")
        wait_until(lambda: "MISSES*" in screen(), what="sorting by misses")
        tmux("send-keys", "-t", session, "p")
        wait_until(lambda: "PAUSED" in screen(), what="pause")
        tmux("send-keys", "-t", session, "q")
        wait_until(
            lambda: tmux_run(["has-session", "-t", session]).returncode != 0,
            what="q to quit",
        )
    finally:
        tmux_run(["kill-session", "-t", session])


def watching(*servers: str) -> subprocess.Popen:
    """keytop on the watch stream of `servers`, printing JSON when it is stopped."""
    args = [arg for server in servers for arg in ("--server", server)]
    return subprocess.Popen(
        [*KEYTOP, *args, "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def keytop_json(proc: subprocess.Popen) -> tuple[dict, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return json.loads(out), err


def unread(pipe) -> int:
    """Bytes written to a pipe and not read yet by the process at its other end (FIONREAD)."""
    count = array.array("i", [0])
    fcntl.ioctl(pipe.fileno(), termios.FIONREAD, count)
    return count[0]


@pytest.mark.parametrize("stop", ["runtime", "sigterm"])
@pytest.mark.parametrize("mode", ["--stdin", "--field"])
def test_stdin_stopped_while_open_keeps_the_last_burst(mode: str, stop: str) -> None:
    args = ["--stdin"] if mode == "--stdin" else ["--field", "2"]
    if stop == "runtime":
        args += ["--runtime", "3"]
    proc = subprocess.Popen(
        [*KEYTOP, *args, "--format", "json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    burst = (
        b"".join(b"get burst:key\r\n" for _ in range(10)) if mode == "--stdin" else b"GET burst:key\n" * 10
    )
    proc.stdin.write(burst)
    proc.stdin.flush()  # and the input stays open
    try:
        if stop == "sigterm":
            # once keytop has read the whole burst from the pipe (not after a guessed second)
            wait_until(lambda: unread(proc.stdin) == 0, what="keytop reading the burst")
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)  # not communicate(): that would close the input
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        proc.stdin.close()
        stop_process(proc)
    assert proc.returncode == 0, err  # not 134 ("Fatal Python error ... daemon threads")
    rows = {r["key"]: r for r in json.loads(out)["keys"]}
    assert rows["burst:key"]["calls"] == 10


def test_a_restarted_memcached_is_reconnected_and_the_gap_said() -> None:
    m = Memcached()
    proc = watching(m.address)
    try:
        wait_until(lambda: m.stats().get("log_watchers") == "1", what="keytop watching")
        client = Client(("127.0.0.1", m.port))
        client.get("before")
        client.close()
        wait_until(lambda: int(m.stats()["log_watcher_sent"]) >= 1, what="the get logged")
        m.restart()
        wait_until(lambda: m.stats().get("log_watchers") == "1", what="keytop watching again", timeout=20)
        client = Client(("127.0.0.1", m.port))
        client.get("after")
        client.close()
        wait_until(lambda: int(m.stats()["log_watcher_sent"]) >= 1, what="the get logged")
        report, _ = keytop_json(proc)
    finally:
        stop_process(proc)
        m.stop()
    assert {r["key"] for r in report["keys"]} == {"before", "after"}
    totals = report["totals"]
    assert totals["approximate"] and len(totals["gaps"]) == 1 and totals["gaps"][0]["server"] == m.address


def test_entries_memcached_dropped_are_counted_and_said() -> None:
    m = Memcached("-o", "watcher_logbuf_size=8")  # a small log buffer: a burst overflows it
    proc = watching(m.address)
    try:
        wait_until(lambda: m.stats().get("log_watchers") == "1", what="keytop watching")
        import socket

        gets = 100_000
        with socket.create_connection(("127.0.0.1", m.port)) as s:
            s.sendall(b"".join(b"get burst%d\r\n" % (i % 1000) for i in range(gets)))
            got = b""
            while got.count(b"END\r\n") < gets:
                got += s.recv(1 << 20)

        def accounted() -> int:  # every get was logged to keytop, or dropped and counted
            st = m.stats()
            return sum(int(st[k]) for k in ("log_watcher_sent", "log_watcher_skipped", "log_worker_dropped"))

        wait_until(lambda: accounted() >= gets, what="memcached done with the burst")
        st = m.stats()
        skipped = int(st["log_watcher_skipped"]) + int(st["log_worker_dropped"])
        report, _ = keytop_json(proc)
    finally:
        stop_process(proc)
        m.stop()
    totals = report["totals"]
    assert skipped > 0, "the burst did not overflow memcached's log buffer"
    assert totals["lost_entries"] == skipped and totals["approximate"]
    assert totals["calls"] + skipped == gets


def test_one_server_down_among_several_does_not_stop_the_others(memcached: Memcached) -> None:
    proc = watching(memcached.address, "127.0.0.1:1")
    try:
        wait_until(lambda: memcached.stats().get("log_watchers") == "1", what="keytop watching")
        client = Client(("127.0.0.1", memcached.port))
        client.get("still:counted")
        client.close()
        wait_until(lambda: int(memcached.stats()["log_watcher_sent"]) >= 1, what="the get logged")
        report, err = keytop_json(proc)
    finally:
        stop_process(proc)
    rows = {r["key"]: r for r in report["keys"]}
    assert rows["still:counted"]["calls"] == 1 and rows["still:counted"]["servers"] == [memcached.address]
    assert "127.0.0.1:1" in report["totals"]["down"] and "127.0.0.1:1: down" in err


def test_the_80_column_screen_shows_help_escaped_keys_and_the_new_columns(memcached: Memcached) -> None:
    need(shutil.which("tmux") is not None, "tmux not found (apt-get install tmux)")
    session = f"keytop80{memcached.port}"
    cmd = " ".join([*KEYTOP, "--server", memcached.address, "--time", "0.2"])  # the default --limit 40
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd)
    try:
        screen = lambda: tmux("capture-pane", "-p", "-t", session)  # noqa: E731
        wait_until(lambda: memcached.stats().get("log_watchers") == "1", what="keytop watching")
        client = Client(("127.0.0.1", memcached.port), allow_unicode_keys=True)
        client.set("big:value", b"x" * 5000, noreply=False)
        client.set("small", b"x", noreply=False)
        for _ in range(3):
            client.get("small")
        import socket

        with socket.create_connection(("127.0.0.1", memcached.port)) as s:
            s.sendall(b"get \x1b[31mred\r\n")
            s.recv(100)
        client.close()
        text = wait_until(lambda: t if "red" in (t := screen()) and "small" in t else None, what="the keys")
        assert "\\x1b[31mred" in text  # escaped, not interpreted
        assert "q: quit" in text  # the help line fits with the default limit of 40
        assert all(len(line) <= 80 for line in text.splitlines())
        assert "SIZE" in text or "CALLS" in text
        tmux("send-keys", "-t", session, "z")  # sort by value size
        wait_until(lambda: "SIZE*" in screen(), what="sorting by value size")
        lines = screen().splitlines()
        order = [next(i for i, x in enumerate(lines) if k in x) for k in ("big:value", "small")]
        assert order[0] < order[1]
        tmux("send-keys", "-t", session, "o")  # the other way round
        wait_until(lambda: "SIZE^" in screen(), what="reverse order")
    finally:
        tmux_run(["kill-session", "-t", session])


def test_the_help_screen_lists_every_key_and_each_key_does_what_it_says(memcached: Memcached) -> None:
    """`?` shows the key table the screen runs on; each sort key sorts by the column it names."""
    from webops.keytop.app import KEYS, SORT_KEYS
    from webops.keytop.render import COLUMNS, SORTED_BY

    need(shutil.which("tmux") is not None, "tmux not found (apt-get install tmux)")
    session = f"keytophelp{memcached.port}"
    cmd = " ".join([*KEYTOP, "--server", memcached.address, "--time", "0.2"])
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "24", cmd)
    try:
        screen = lambda: tmux("capture-pane", "-p", "-t", session)  # noqa: E731
        wait_until(lambda: "KEY" in screen() and "? help" in screen(), what="the keytop screen")
        tmux("send-keys", "-t", session, "?")
        expected = [f"{b.label} {' '.join(b.help.split())}" for b in KEYS.bindings]
        wait_until(  # the whole help drawn (a capture may catch a screen half written)
            lambda: all(e in " ".join(screen().split()) for e in expected),
            what="every key of the table in the help",
            detail=screen,
        )
        tmux("send-keys", "-t", session, "x")  # any key returns
        wait_until(lambda: "keytop keys" not in screen() and "KEY" in screen(), what="the table back")
        titles = {name: title for name, title, _ in COLUMNS}
        for key, sort in SORT_KEYS.items():
            marked = titles[SORTED_BY.get(sort, sort)] + "*"
            tmux("send-keys", "-t", session, key)
            wait_until(lambda m=marked: m in screen(), what=f"{key}: sort by {sort}")
        tmux("send-keys", "-t", session, "o")
        wait_until(lambda: "KEY^" in screen(), what="o: the order turned round")
        tmux("send-keys", "-t", session, "p")
        wait_until(lambda: "PAUSED" in screen(), what="p: paused")
        tmux("send-keys", "-t", session, "q")
        wait_until(lambda: tmux_run(["has-session", "-t", session]).returncode != 0, what="q to quit")
    finally:
        tmux_run(["kill-session", "-t", session])
