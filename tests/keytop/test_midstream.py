"""A capture that starts in the middle of a value whose text is all commands (`get inside` lines):
keytop must not count that text as requests nor credit the replies after it to a phantom key.

Real memcached, real tcpdump (-A text and -w pcap), a client sending the value slowly in chunks,
the capture started between them."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import need, stop_process, wait_until
from tests.servers import Memcached

from .test_tcpdump_text import KEYTOP, Client, capture, expected, keytop, stop_capture, table

LINE = b"get inside\r\n"


@pytest.fixture
def memcached():
    m = Memcached()
    yield m
    m.stop()


def fins_in_pcap(path: Path, port: int) -> int:
    """FIN packets written so far (tcpdump -U writes each packet as it comes; a last record may
    be half written)."""
    import dpkt

    fins = 0
    try:
        with open(path, "rb") as f:
            reader = dpkt.pcap.Reader(f)
            for _, buf in reader:
                try:
                    ip = dpkt.ethernet.Ethernet(buf).data if reader.datalink() == 1 else None
                except (dpkt.UnpackError, dpkt.NeedData):
                    continue
                tcp = getattr(ip, "data", None)
                if isinstance(tcp, dpkt.tcp.TCP) and port in (tcp.sport, tcp.dport):
                    fins += bool(tcp.flags & dpkt.tcp.TH_FIN)
    except (ValueError, dpkt.NeedData, dpkt.UnpackError):
        pass
    return fins


def test_a_capture_started_inside_a_value_of_commands_invents_no_key(memcached, tmp_path: Path) -> None:
    need(shutil.which("tcpdump") is not None, "tcpdump not found (apt-get install tcpdump)")
    port = memcached.port
    tally: dict[str, Counter] = {}
    value = LINE * 10_000  # 120 kB of `get inside` lines
    old = Client(port, {})  # open before the capture, in the middle of its value when it starts
    old.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    old.sock.sendall(f"set midkey 0 0 {len(value)}\r\n".encode() + value[: 100 * len(LINE)])
    pcap, pcap_err = tmp_path / "lo.pcap", tmp_path / "pcap.err"
    pcap_proc = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-U", "-B", "65536", "-w", str(pcap), f"tcp port {port}"],
        stdout=subprocess.DEVNULL,
        stderr=pcap_err.open("w"),
    )
    try:
        wait_until(lambda: "listening on" in pcap_err.read_text(), what="tcpdump -w listening")
        proc, out = capture(tmp_path, "lo", port)
        try:
            step = 1000 * len(LINE)  # each chunk a packet that starts with `get inside`
            for at in range(100 * len(LINE), len(value), step):
                old.sock.sendall(value[at : at + step])
            old.sock.sendall(b"\r\n")
            assert old._line() == b"STORED"
            old.tally = tally  # from here on what it does is seen
            old.store("set", "nextkey", b"next value")
            assert old.get("midkey")["midkey"] == value
            old.get("nextkey", "nothere")
            new = Client(port, tally)  # seen from its SYN: exact
            new.store("set", "fresh", LINE * 3)
            new.get("fresh", "midkey")
            new.close()
            old.close()
            text = stop_capture(proc, out, 4)
        finally:
            stop_process(proc)
        wait_until(lambda: fins_in_pcap(pcap, port) >= 4, timeout=60, what="the FINs in the pcap")
        pcap_proc.send_signal(signal.SIGINT)
        pcap_proc.wait(10)
    finally:
        stop_process(pcap_proc)
    want = expected(tally)
    from_text, _ = keytop(text, port)
    r = subprocess.run(
        [*KEYTOP, "--pcap", str(pcap), "--port", str(port), "--format", "json", "--limit", "1000"],
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    from_pcap = json.loads(r.stdout)
    for source, report in (("stdin", from_text), ("pcap", from_pcap)):
        got = table(report)
        assert "inside" not in got, (source, got.get("inside"))  # nothing read from the value
        assert report["totals"]["approximate"], (source, report["totals"])
        assert got == want, (source, {k: (got.get(k), want.get(k)) for k in set(got) | set(want)})
