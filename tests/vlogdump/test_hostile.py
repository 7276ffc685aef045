"""An operator's day: binary junk and garbled records in the stream, a line of many megabytes, a
FIFO stopped by SIGTERM, varnishd restarted under a live `varnishlog | vlogdump` (vxids start
over), and a fetch left over from before the restart."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import stop_process, wait_until
from tests.servers import Varnish
from webops.vlogdump.cli import read_lines
from webops.vlogdump.parse import Counts, LogParser

from .conftest import Backend
from .live import CLIENT, VLOGDUMP, Live, default_signals, get, ncsa

DATA = Path(__file__).parent / "data"
URLS = ["/", "/", "/pass", "/nothere", "/synth"]  # the recorded log's requests, in order


def run(data: bytes, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*VLOGDUMP, "--no-color", *args], input=data, capture_output=True, timeout=120)


def test_binary_junk_and_garbled_records_are_skipped_not_fatal() -> None:
    lines = (DATA / "varnish71-vxid.txt").read_bytes().splitlines(keepends=True)
    first_end = next(i for i, line in enumerate(lines) if line.startswith(b"-   End"))
    junk = [
        "*   << Request  >> \u00b2\n".encode(),  # a digit to str.isdigit(), not to int()
        b"*   << Request  >> " + b"9" * 5000 + b"\n",  # more digits than int() takes
        "*\u00b2* << Request  >> 7\n".encode(),
        b"*1000000* << Request  >> 7\n",
        random.Random(1).randbytes(200_000),  # binary: NULs, invalid UTF-8, stray newlines
        b"\n\n\r\n\x00\n",
    ]
    inside = [  # records inside the first transaction (a fetch), before its End
        "-   Begin          bereq \u00b2 fetch\n".encode(),
        b"-   Link           bereq " + b"7" * 5000 + b" fetch\n",
        b"-   Timestamp      BerespBody: inf inf inf\n",
        b"-   Timestamp      Start: nan nan nan\n",
        b"-   Timestamp      Resp: 1e999 1e999 1e999\n",
    ]
    noisy = b"".join([*lines[:first_end], *inside, *lines[first_end:20], *junk, *lines[20:], *junk])
    r = run(noisy, "--format", "json")
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode()[-2000:]
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert [g["url"] for g in got if g["esi_parent"] is None][-5:] == URLS
    assert next(g for g in got if g["url"] == "/")["time_ms"] == 1.516  # junk times ignored
    assert b"bad lines skipped" in r.stderr


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc")
def test_a_line_of_megabytes_is_skipped_in_flat_memory(tmp_path) -> None:
    """A file that is not a log (a core dump, a tarball): a 24 MB line without a newline."""
    # peak RSS from VmHWM: it starts over at exec (getrusage's maxrss keeps pytest's, from fork)
    wrapper = (
        "import os, sys\n"
        "from webops.cli import main\n"
        "try:\n"
        "    main(['vlogdump', '--no-color', sys.argv[1]])\n"
        "finally:\n"
        "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "    os.write(2, b'maxrss %s\\n' % hwm.encode())\n"
    )
    log = (DATA / "varnish71-vxid.txt").read_bytes()
    small, huge = tmp_path / "small.txt", tmp_path / "huge.txt"
    small.write_bytes(log)
    huge.write_bytes(b"x" * 24_000_000 + b"\n" + log)

    def maxrss(path: Path) -> tuple[int, str]:
        r = subprocess.run(
            [sys.executable, "-c", wrapper, str(path)], capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0, r.stderr[-2000:]
        return int(r.stderr.rsplit("maxrss ", 1)[1]), r.stdout

    base, expected = maxrss(small)
    used, out = maxrss(huge)
    assert out == expected  # every request, as without the junk
    assert used - base < 16_000, f"{used - base} KiB more for one long line"  # KiB on Linux


def test_read_lines_drops_over_long_lines_whole() -> None:
    r, w = os.pipe()
    data = b"ok1\n" + b"x" * 5000 + b"\nok2\n" + b"y" * 200_000 + b"\nok3\n" + b"z" * 3000
    threading.Thread(target=lambda: (os.write(w, data), os.close(w)), daemon=True).start()
    counts = Counts()
    got = [line for lines in read_lines(r, False, counts, max_line=1000) if lines for line in lines]
    os.close(r)
    assert got == [b"ok1\n", b"ok2\n", b"ok3\n"]
    assert counts.bad_lines == 3  # the unfinished last one too


def test_sigterm_on_a_fifo_prints_the_summary(tmp_path) -> None:
    """`webops vlogdump FILE` where FILE is a FIFO: blocked reading, not on a live pipe."""
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [*VLOGDUMP, "--no-color", str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )
    assert proc.stdout is not None
    try:
        with open(fifo, "wb") as writer:  # opens once vlogdump has opened it for reading
            writer.write((DATA / "varnish71-vxid.txt").read_bytes())
            writer.flush()
            first = proc.stdout.readline()  # read while the writer stays open: no end of input
            assert " => GET / " in first
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGTERM
        assert "5 transactions seen, 5 shown" in err and "Traceback" not in err
    finally:
        stop_process(proc)


def _req(vxid: int, url: str, start: float, link: int | None, end: bool = True) -> list[str]:
    lines = [
        f"*   << Request  >> {vxid}\n",
        f"-   Begin          req {vxid - 1} rxreq\n",
        f"-   Timestamp      Start: {start:.6f} 0.000000 0.000000\n",
        f"-   ReqURL         {url}\n",
        "-   VCL_call       MISS\n",
    ]
    if link is not None:
        lines.append(f"-   Link           bereq {link} fetch\n")
    if end:
        lines += [f"-   Timestamp      Resp: {start + 0.002:.6f} 0.002000 0.001000\n", "-   End\n"]
    return lines


def _bereq(vxid: int, url: str, start: float) -> list[str]:
    return [
        f"*   << BeReq    >> {vxid}\n",
        f"-   Begin          bereq {vxid - 1} fetch\n",
        f"-   Timestamp      Start: {start:.6f} 0.000000 0.000000\n",
        f"-   BereqURL       {url}\n",
        f"-   Timestamp      BerespBody: {start + 0.001:.6f} 0.001000 0.001000\n",
        "-   End\n",
    ]


@pytest.mark.parametrize("left_over", ["fetch", "request"])
def test_vxids_reused_after_a_varnishd_restart_do_not_mix_transactions(left_over: str) -> None:
    """varnishd restarted one second later: vxids start over. What the old instance left behind
    (a fetch whose request never ended, or a request whose fetch never ended) is not joined with
    the new instance's transaction of the same vxid."""
    if left_over == "fetch":
        old = _bereq(3, "/before", 1000.0001) + _req(2, "/before", 1000.0, 3, end=False)
    else:
        old = _req(2, "/before", 1000.0, 3)
    new = _req(2, "/after", 1001.0, 3) + _bereq(3, "/after", 1001.0001)  # the request ends first
    p = LogParser()
    out = [t for line in old + new for t in p.feed(line)] + list(p.finish())
    joined = {t.url: t.backend.url if t.backend else None for t in out}
    assert joined["/after"] == "/after"
    if left_over == "request":
        assert joined["/before"] is None and p.counts.unjoined == 1
    else:
        assert "/before" not in joined and p.counts.fetches_dropped == 1


def test_a_varnishd_restart_under_a_live_run() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    v = Varnish(server.server_address[1])
    live = Live(v)
    try:
        live.attach("/probe-before")
        for i in range(3):
            get(v, f"/cache/before/{i}")
        want = {f"/cache/before/{i}" for i in range(3)}
        wait_until(lambda: want <= live.urls(), what="the requests before the restart", detail=live.detail)
        reference = {u: int(d) for _, d, _, u in ncsa(v, *CLIENT)}
        v.restart()
        live.attach("/probe-after")  # varnishlog found the new log: vlogdump ran on through it
        for i in range(3):
            get(v, f"/cache/after/{i}")
        want |= {f"/cache/after/{i}" for i in range(3)}
        wait_until(lambda: want <= live.urls(), what="the requests after the restart", detail=live.detail)
        reference |= {u: int(d) for _, d, _, u in ncsa(v, *CLIENT)}  # the new log only
        for r in live.records:
            if r["url"] in want:
                assert r["backend"]["url"] == r["url"]  # each with its own fetch
                assert round(r["time_ms"] * 1000) == reference[r["url"]]
        assert live.proc.poll() is None
        live.proc.send_signal(signal.SIGTERM)
        live.finished()
        assert "Traceback" not in live.err and "transactions seen" in live.err
    finally:
        live.stop()
        v.stop()
        server.shutdown()
