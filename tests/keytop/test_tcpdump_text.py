"""`tcpdump -A` text of a real memcached conversation whose values hold anything: CRLFs (cached HTTP
responses), bare LFs, protocol text, a tcpdump header line. keytop's counts must be exactly what the
client did, `approximate` false; and true, said on stderr, whenever something was not seen."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import need, stop_process, wait_until
from tests.servers import Memcached

KEYTOP = [sys.executable, "-m", "webops", "keytop"]
COLUMNS = ("calls", "hits", "misses", "sets", "bytes_read", "bytes_written")


class Client:
    """memcached's text protocol over one socket, each reply read in full (by its lengths), and a
    tally of what every command did to every key: what keytop must find."""

    def __init__(self, port: int, tally: dict[str, Counter]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(10)
        self.buf = b""
        self.tally = tally

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            assert chunk, "memcached closed the connection"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self.sock.recv(1 << 20)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _count(self, key: str, **what: int) -> None:
        c = self.tally.setdefault(key, Counter())
        c["calls"] += 1
        c.update(what)

    def store(self, cmd: str, key: str, value: bytes) -> bytes:
        self.sock.sendall(f"{cmd} {key} 0 0 {len(value)}\r\n".encode() + value + b"\r\n")
        reply = self._line()
        self._count(key, **({"sets": 1, "bytes_written": len(value)} if reply == b"STORED" else {}))
        return reply

    def get(self, *keys: str) -> dict[str, bytes]:
        self.sock.sendall(f"get {' '.join(keys)}\r\n".encode())
        found = {}
        while (line := self._line()) != b"END":
            _, key, _, size = line.split()
            found[key.decode()] = self._exactly(int(size) + 2)[:-2]
        for key in keys:
            hit = key in found
            self._count(key, hits=hit, misses=not hit, bytes_read=len(found.get(key, b"")))
        return found

    def ms(self, key: str, value: bytes) -> None:
        self.sock.sendall(f"ms {key} {len(value)} T0\r\n".encode() + value + b"\r\n")
        assert self._line() == b"HD"
        self._count(key, sets=1, bytes_written=len(value))

    def mg(self, key: str) -> None:
        self.sock.sendall(f"mg {key} v\r\n".encode())
        line = self._line()
        if line.startswith(b"VA "):
            size = int(line.split()[1])
            self._exactly(size + 2)
            self._count(key, hits=1, bytes_read=size)
        else:
            assert line == b"EN"
            self._count(key, misses=1)

    def delete(self, key: str) -> None:
        self.sock.sendall(f"delete {key}\r\n".encode())
        found = self._line() == b"DELETED"
        self._count(key, hits=found, misses=not found)

    def close(self) -> None:
        self.sock.close()


def http_page(i: int) -> bytes:
    """A cached HTTP response: CRLF line ends, a blank line, a body with CRLFs of its own."""
    body = b"".join(b"<p>line %d of page %d</p>\r\n" % (n, i) for n in range(i % 7))
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


def tricky_values(port: int) -> dict[str, bytes]:
    now = time.strftime("%H:%M:%S", time.localtime())
    quoted_header = (  # a tcpdump header line and dump as if of this very server
        f"{now}.000001 IP 127.0.0.1.40000 > 127.0.0.1.{port}: Flags [P.], seq 1:10, ack 1, win 512,"
        " options [nop,nop,TS val 1 ecr 2], length 9\nE..=..@.@.\n........get evil\r\n"
    )
    return {
        "lf": b"a\nb\n\nc",  # bare LFs
        "lf:end": b"\n\n",
        "crlf:end": b"x\r\n\r\n",
        "cr": b"x\r",  # a CR before the value's own CRLF
        "crs": b"\r\r\n\r",
        "cmd:set": b"set foo 0 0 3\r\nbar\r\n",
        "cmd:value": b"VALUE x 0 1\r\nx\r\nEND\r\n",
        "cmd:end": b"END",
        "cmd:end2": b"\r\nEND\r\nSTORED\r\n",
        "cmd:mixed": b"get evil\nEND\r\nVA 3\r\nabc\nmg evil v\r\n",
        "tcpdump": quoted_header.encode(),
        "big": b"".join(b"%05d %s\r\n" % (n, b"z" * 90) for n in range(1500))
        + b"tail\nEND\r\n",  # > a packet
        "empty": b"",
    }


def converse(port: int, tally: dict[str, Counter]) -> None:
    """Two connections, interleaved: stores, hits, misses, multi-gets, meta commands."""
    a, b = Client(port, tally), Client(port, tally)
    values = tricky_values(port)
    pages = {f"page:{i}": http_page(i) for i in range(40)}
    for n, (key, value) in enumerate({**pages, **values}.items()):
        (a if n % 2 else b).store("set", key, value)
    assert a.store("add", "page:1", b"again") == b"NOT_STORED"
    for n, key in enumerate([*pages, *values]):
        assert (b if n % 2 else a).get(key)[key] == {**pages, **values}[key]
    a.get("page:1", "page:2", "page:3", "nothere", "cmd:value", "crlf:end", "lf:end")
    b.get(*values)  # one reply of every tricky value after another
    b.get("missing:1")
    a.ms("meta", b"HD\r\nEN\r\n")
    a.mg("meta")
    b.mg("ghost")
    b.delete("cmd:end")
    a.delete("cmd:end")
    for i in range(0, 40, 3):
        b.get(f"page:{i}")
    a.close()
    b.close()


def capture(tmp_path: Path, iface: str, port: int, *extra: str) -> tuple[subprocess.Popen, Path]:
    need(shutil.which("tcpdump") is not None, "tcpdump not found (apt-get install tcpdump)")
    out, err = tmp_path / f"{iface}.txt", tmp_path / f"{iface}.err"
    proc = subprocess.Popen(
        ["tcpdump", "-i", iface, "-A", "-l", "-B", "65536", *extra, f"tcp port {port}"],
        stdout=out.open("w"),
        stderr=err.open("w"),
    )
    wait_until(lambda: "listening on" in err.read_text(), what="tcpdump listening")
    return proc, out


def stop_capture(proc: subprocess.Popen, out: Path, fins: int) -> str:
    """Stop tcpdump once the closing packets are written (polling its output, not sleeping)."""
    wait_until(lambda: out.read_text(errors="replace").count("Flags [F") >= fins, timeout=60, what="the FINs")
    proc.send_signal(signal.SIGINT)
    proc.wait(10)
    err = out.with_suffix(".err").read_text()
    assert re.search(r"(?m)^0 packets dropped by kernel", err), err  # else the capture is not whole
    return out.read_bytes().decode("latin-1")


def keytop(text: str, port: int) -> tuple[dict, str]:
    r = subprocess.run(
        [*KEYTOP, "--stdin", "--port", str(port), "--format", "json", "--limit", "1000"],
        input=text.encode("latin-1"),
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr.decode()


def table(report: dict) -> dict[str, tuple[int, ...]]:
    return {r["key"]: tuple(r[c] for c in COLUMNS) for r in report["keys"]}


def expected(tally: dict[str, Counter]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(int(c[col]) for col in COLUMNS) for k, c in tally.items()}


@pytest.fixture
def memcached():
    m = Memcached()
    yield m
    m.stop()


@pytest.mark.parametrize("iface", ["lo", "any"])
def test_tcpdump_text_counts_exactly_whatever_values_hold(memcached, tmp_path: Path, iface: str) -> None:
    port = memcached.port
    proc, out = capture(tmp_path, iface, port)
    try:
        tally: dict[str, Counter] = {}
        converse(port, tally)
        text = stop_capture(proc, out, 4)  # two connections closed
    finally:
        stop_process(proc)
    report, err = keytop(text, port)
    assert report["totals"]["notes"] == [] and not report["totals"]["approximate"], report["totals"]
    assert "webops keytop:" not in err
    got, want = table(report), expected(tally)
    wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    assert not wrong, f"{len(wrong)} of {len(want)} keys wrong: {wrong}"
    assert set(got) == set(want)  # nothing invented from the values ("foo", "evil", "x")


def test_a_capture_started_inside_a_value_is_approximate_and_says_so(memcached, tmp_path: Path) -> None:
    port = memcached.port
    tally: dict[str, Counter] = {}
    old = Client(port, {})  # open before the capture: its first part is never seen
    value = b"".join(b"get evil%d\r\nVALUE x 0 1\r\nx\r\nEND\r\n" % n for n in range(4000))
    head = f"set big 0 0 {len(value)}\r\n".encode()
    old.sock.sendall(head + value[:1000])
    proc, out = capture(tmp_path, "lo", port)
    try:
        old.sock.sendall(value[1000:] + b"\r\n")
        assert old._line() == b"STORED"
        old.tally = tally  # from here on what it does is seen
        old.get("after", "big")
        new = Client(port, tally)
        new.store("set", "fresh", b"1\r\n2")
        new.get("fresh")
        new.close()
        old.close()
        text = stop_capture(proc, out, 4)
    finally:
        stop_process(proc)
    report, err = keytop(text, port)
    totals = report["totals"]
    assert totals["approximate"]
    assert any("already open" in n for n in totals["notes"]), totals["notes"]
    assert any("bytes skipped" in n for n in totals["notes"]), totals["notes"]
    for note in totals["notes"]:
        assert f"webops keytop: {note}" in err  # each on stderr too
    got = table(report)
    assert not any(k.startswith("evil") or k == "x" for k in got), got  # nothing read from the value
    assert got["fresh"] == expected(tally)["fresh"]  # a connection seen from its start: exact
    assert got["after"] == expected(tally)["after"]
    assert got["big"] == expected(tally)["big"]  # its get was seen, its set was not


def cut_packets(text: str, keep) -> str:
    """The -A text with packet blocks kept or doubled by `keep(index, block) -> copies`."""
    blocks = re.split(r"(?m)^(?=\d\d:\d\d:\d\d\.\d+ )", text)
    return "".join(block * keep(i, block) for i, block in enumerate(blocks))


@pytest.fixture
def small_capture(memcached, tmp_path: Path):
    port = memcached.port
    proc, out = capture(tmp_path, "lo", port)
    tally: dict[str, Counter] = {}
    try:
        c = Client(port, tally)
        for i in range(6):
            c.store("set", f"k{i}", b"v\r\n%d" % i)
        for i in range(6):
            c.get(f"k{i}")
        c.close()
        text = stop_capture(proc, out, 2)
    finally:
        stop_process(proc)
    return port, text, expected(tally)


def test_a_packet_the_capture_lost_is_said(small_capture) -> None:
    port, text, want = small_capture
    data = [i for i, b in enumerate(re.split(r"(?m)^(?=\d\d:\d\d:\d\d\.\d+ )", text)) if "get k3" in b]
    lost = cut_packets(text, lambda i, block: 0 if i == data[0] else 1)  # the `get k3` never seen
    report, err = keytop(lost, port)
    assert report["totals"]["approximate"]
    assert any("not captured" in n for n in report["totals"]["notes"]), report["totals"]
    assert "not captured" in err
    assert table(report)["k5"] == want["k5"]  # picked up again after the gap


def test_a_packet_seen_twice_is_counted_once(small_capture) -> None:
    port, text, want = small_capture
    twice = cut_packets(text, lambda i, block: 2 if "length 0" not in block.split("\n")[0] else 1)
    report, _ = keytop(twice, port)
    assert table(report) == want
    assert not report["totals"]["approximate"], report["totals"]


def test_packets_cut_short_by_the_snaplen_are_said(memcached, tmp_path: Path) -> None:
    port = memcached.port
    proc, out = capture(tmp_path, "lo", port, "-s", "200")
    tally: dict[str, Counter] = {}
    try:
        c = Client(port, tally)
        c.store("set", "long", b"y\r\n" * 500)
        c.get("long")
        c.get("short")
        c.close()
        text = stop_capture(proc, out, 2)
    finally:
        stop_process(proc)
    report, err = keytop(text, port)
    assert report["totals"]["approximate"] and "cut short" in err, err
    assert table(report)["short"] == expected(tally)["short"]


def test_entries_memcached_dropped_are_said_on_stderr_too() -> None:
    """docs/keytop.md: lost_entries in the JSON totals, and on stderr."""
    m = Memcached("-o", "watcher_logbuf_size=8")
    proc = subprocess.Popen(
        [*KEYTOP, "--server", m.address, "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: m.stats().get("log_watchers") == "1", what="keytop watching")
        # a watcher that reads nothing while the burst comes: memcached's 8 kB log buffer must
        # drop (a keytop fast enough on an idle machine once kept up, and the test saw no loss)
        proc.send_signal(signal.SIGSTOP)
        gets = 50_000
        with socket.create_connection(("127.0.0.1", m.port)) as s:
            s.sendall(b"".join(b"get burst%d\r\n" % (i % 1000) for i in range(gets)))
            got = b""
            while got.count(b"END\r\n") < gets:
                got += s.recv(1 << 20)

        def accounted() -> int:
            st = m.stats()
            return sum(int(st[k]) for k in ("log_watcher_sent", "log_watcher_skipped", "log_worker_dropped"))

        wait_until(lambda: accounted() >= gets, what="memcached done with the burst")
        wait_until(
            lambda: int(m.stats()["log_watcher_skipped"]) + int(m.stats()["log_worker_dropped"]) > 0,
            what="a loss",
        )
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        stop_process(proc)
        m.stop()
    lost = json.loads(out)["totals"]["lost_entries"]
    assert lost > 0
    assert f"memcached dropped {lost} log entries" in err, err


def tcpflow_text(pcap: Path, port: int) -> bytes:
    """What `tcpflow -c` prints for the capture: each segment's bytes after `SRC-DST: `, then a line
    end of tcpflow's own (tcpflow is not in Debian's minimal images; its format is)."""
    import dpkt

    def addr(ip: bytes, p: int) -> str:
        return ".".join(f"{b:03d}" for b in ip) + f".{p:05d}"

    out = b""
    with open(pcap, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data
            if isinstance(tcp, dpkt.tcp.TCP) and tcp.data and port in (tcp.sport, tcp.dport):
                prefix = f"{addr(ip.src, tcp.sport)}-{addr(ip.dst, tcp.dport)}: ".encode()
                out += prefix + bytes(tcp.data) + b"\n"
    return out


def fins_in(pcap: Path) -> int:
    import dpkt

    fins = 0
    with open(pcap, "rb") as f:
        try:
            for _, buf in dpkt.pcap.Reader(f):
                fins += bool(dpkt.ethernet.Ethernet(buf).data.data.flags & dpkt.tcp.TH_FIN)
        except (dpkt.NeedData, dpkt.UnpackError, ValueError):
            pass  # the packet being written
    return fins


def test_tcpflow_text_and_the_pcap_count_exactly_too(memcached, tmp_path: Path) -> None:
    port = memcached.port
    pcap = tmp_path / "lo.pcap"
    proc, _ = capture(tmp_path, "lo", port, "-w", str(pcap), "-U")
    try:
        tally: dict[str, Counter] = {}
        converse(port, tally)
        wait_until(lambda: fins_in(pcap) >= 4, timeout=60, what="the capture written to its end")
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    finally:
        stop_process(proc)
    want = expected(tally)
    report, err = keytop(tcpflow_text(pcap, port).decode("latin-1"), port)
    assert table(report) == want and not report["totals"]["approximate"], err
    r = subprocess.run(
        [*KEYTOP, "--pcap", str(pcap), "--port", str(port), "--format", "json", "--limit", "1000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table(json.loads(r.stdout)) == want, r.stderr
