"""Real captures of a real conversation: `tcpdump -i any` (Linux cooked v2) as pcap and as `-A`
text, and memcached's own watch stream, all counting the same thing the same way."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dpkt
import pytest

from tests.conftest import need, wait_until
from tests.servers import Memcached

KEYTOP = [sys.executable, "-m", "webops", "keytop"]


def converse(port: int) -> None:
    """Classic and meta commands, quiet mode, opaques, NOT_STORED, lookups that miss, and values
    holding bare LFs and command text, each request waiting for its reply."""
    exchanges = [
        b"set page 0 0 5\r\nhello\r\n",
        b"set lf 0 0 9\r\na\nget x\nb\r\n",  # a value of LFs and command text
        b"add page 0 0 1\r\nz\r\n",  # NOT_STORED: a call, not a set
        b"get page lf nothere\r\n",
        b"gets lf\r\n",
        b"delete page\r\n",
        b"delete page\r\n",  # NOT_FOUND
        b"incr counter 1\r\n",  # NOT_FOUND
        b"set counter 0 0 1\r\n5\r\n",
        b"incr counter 2\r\n",
        b"touch lf 60\r\n",
        b"ms sess 2 q\r\nhi\r\nmg sess v q\r\nmg ghost v q\r\nmd ghost q\r\n"
        b"mg lf v O42\r\nmg sess v k\r\nmn\r\n",
    ]
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        for request in exchanges:
            s.sendall(request)
            reply = b""
            while (
                not reply.endswith((b"END\r\n", b"STORED\r\n", b"DELETED\r\n", b"NOT_FOUND\r\n", b"MN\r\n"))
                and not (reply.endswith(b"\r\n") and reply.strip().isdigit())
                and not reply.endswith(b"TOUCHED\r\n")
            ):
                reply += s.recv(65536)


EXPECTED = {  # key: (calls, hits, misses, sets)
    "page": (5, 2, 1, 1),  # set, add (NOT_STORED), get (hit), delete (hit), delete (miss)
    "lf": (5, 4, 0, 1),  # set; get, gets, touch, mg O42: hits
    "nothere": (1, 0, 1, 0),
    "counter": (3, 1, 1, 1),
    "sess": (3, 2, 0, 1),  # ms q (silent success), mg q (hit), mg k (hit)
    "ghost": (2, 0, 2, 0),  # mg q (silent miss), md q (NF)
}


def counts(report: dict) -> dict[str, tuple[int, int, int, int]]:
    return {r["key"]: (r["calls"], r["hits"], r["misses"], r["sets"]) for r in report["keys"]}


def tcpdump(args: list[str], out, err: Path) -> subprocess.Popen:
    need(shutil.which("tcpdump") is not None, "tcpdump not found (apt-get install tcpdump)")
    proc = subprocess.Popen(["tcpdump", "-i", "any", "-U", *args], stdout=out, stderr=err.open("w"))
    wait_until(lambda: "listening on" in err.read_text(), what="tcpdump listening")
    return proc


@pytest.fixture
def recorded(tmp_path: Path):
    """One conversation, captured three ways at once: pcap, -A text, and keytop on the watch stream."""
    m = Memcached()
    pcap, text = tmp_path / "any.pcap", tmp_path / "any.txt"
    try:
        dumps = [
            tcpdump(["-w", str(pcap), f"tcp port {m.port}"], subprocess.DEVNULL, tmp_path / "e1"),
            tcpdump(["-A", "-l", f"tcp port {m.port}"], text.open("w"), tmp_path / "e2"),
        ]
        watcher = subprocess.Popen(
            [*KEYTOP, "--server", m.address, "--format", "json", "--limit", "100"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: m.stats().get("log_watchers") == "1", what="keytop watching")
        converse(m.port)
        time.sleep(0.5)  # tcpdump -U writes each packet as it comes: let the last ones land
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
        assert watcher.returncode == 0, err
        for d in dumps:
            d.send_signal(signal.SIGINT)
            d.wait(10)
        yield m.port, pcap, text, json.loads(out)
    finally:
        m.stop()


def keytop(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*KEYTOP, *args, "--format", "json", "--limit", "100"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        errors="surrogateescape",
    )


def test_every_source_counts_the_same_conversation_the_same_way(recorded) -> None:
    port, pcap, text, watched = recorded
    assert counts(watched) == EXPECTED  # memcached's own view
    with open(pcap, "rb") as f:
        assert dpkt.pcap.Reader(f).datalink() == 276  # -i any: Linux cooked v2
    r = keytop("--pcap", str(pcap), "--port", str(port))
    assert r.returncode == 0 and counts(json.loads(r.stdout)) == EXPECTED, r.stderr
    assert " In  IP " in text.read_text()  # -i any text carries interface and direction
    r = keytop("--stdin", "--port", str(port), stdin=text.read_bytes().decode("latin-1"))
    assert r.returncode == 0 and counts(json.loads(r.stdout)) == EXPECTED, r.stderr


def test_a_truncated_capture_gives_what_it_holds_and_says_so(recorded, tmp_path: Path) -> None:
    port, pcap, _, _ = recorded
    data = pcap.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 30])  # the file ends inside the last packet
    r = keytop("--pcap", str(cut), "--port", str(port))
    report = json.loads(r.stdout)
    assert counts(report)["page"][0] == EXPECTED["page"][0]  # what it holds
    assert report["totals"]["approximate"] and "cut short" in r.stderr, r.stderr


def test_segments_out_of_order_are_put_back_in_order(recorded, tmp_path: Path) -> None:
    port, pcap, _, _ = recorded
    with open(pcap, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        packets = list(reader)
        link = reader.datalink()
    data = [i for i, (_, buf) in enumerate(packets) if len(dpkt.sll2.SLL2(buf).data.data.data) > 0]
    requests = [i for i in data if dpkt.sll2.SLL2(packets[i][1]).data.data.dport == port]
    first, second = requests[0], requests[1]  # the client's first two data segments, swapped
    packets[first], packets[second] = packets[second], packets[first]
    swapped = tmp_path / "swapped.pcap"
    with open(swapped, "wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=link, snaplen=262144)
        for ts, buf in packets:
            writer.writepkt(buf, ts)
    r = keytop("--pcap", str(swapped), "--port", str(port))
    assert counts(json.loads(r.stdout)) == EXPECTED, r.stderr
