"""Every source on recorded real traffic: the same conversation, the same exact counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from webops.keytop import tcpdump
from webops.keytop.events import Event
from webops.keytop.pcap import read_pcap
from webops.keytop.protocol import Connection, TextDecoder
from webops.keytop.watch import WatchDecoder, parse_line

DATA = Path(__file__).parent / "data"

# tests/keytop/data holds one session against a real memcached 1.6 on port 22211, captured with
# tcpdump -w (memcached.pcap), tcpdump -A (tcpdump-A.txt) and tcpflow -c (tcpflow.txt):
#   set user:1, set user:2, get user:1, get user:1 user:2 user:3, gets user:2, get nothere,
#   mg user:1 v, mg ghost v, ms sess:9 4, delete user:2, incr hits 1, md sess:9, get user:1
# Every column means what it means in the watch stream: delete, incr and md are lookups (found:
# a hit, not found: a miss), a set counts once memcached said STORED / HD.
EXPECTED = {
    "user:1": {"call": 5, "hit": 4, "set": 1, "read": 20, "written": 5},
    "user:2": {"call": 4, "hit": 3, "set": 1, "read": 6, "written": 3},
    "user:3": {"call": 1, "miss": 1},
    "nothere": {"call": 1, "miss": 1},
    "ghost": {"call": 1, "miss": 1},
    "sess:9": {"call": 2, "hit": 1, "set": 1, "written": 4},
    "hits": {"call": 1, "miss": 1},
}


def tally(events) -> dict[str, dict[str, int]]:
    out: dict[str, Counter] = {}
    for e in events:
        c = out.setdefault(e.key, Counter())
        for name in ("call", "hit", "miss", "set", "read", "written"):
            c[name] += int(getattr(e, name))
    return {k: {n: v for n, v in c.items() if v} for k, c in out.items()}


def decode_text(path: Path, port: int | None = None) -> dict:
    decoder = TextDecoder(port)
    events: list[Event] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            events += decoder.feed(line)
    return tally(events + decoder.finish())


@pytest.mark.parametrize("name", ["tcpflow.txt", "tcpdump-A.txt"])
@pytest.mark.parametrize("port", [None, 22211])
def test_recorded_text_captures(name: str, port: int | None) -> None:
    assert decode_text(DATA / name, port) == EXPECTED


def test_recorded_pcap() -> None:
    assert tally(read_pcap(str(DATA / "memcached.pcap"), 22211)) == EXPECTED


def test_requests_only_count_calls_of_every_multiget_key() -> None:
    decoder = TextDecoder()
    events = [
        e
        for line in ["get a b c\r\n", "gets a\r\n", "gat 60 b\r\n", "mg c v\r\n"]
        for e in decoder.feed(line)
    ]
    assert tally(events) == {"a": {"call": 2}, "b": {"call": 2}, "c": {"call": 2}}


def test_a_value_that_looks_like_a_command_is_not_counted() -> None:
    decoder = TextDecoder()
    lines = ["set k 0 0 10\r\n", "get evil\r\n", "\r\n", "STORED\r\n", "get k\r\n", "VALUE k 0 9\r\n"]
    lines += ["set x y\r\n", "\r\n", "END\r\n"]
    events = [e for line in lines for e in decoder.feed(line)]
    assert tally(events) == {"k": {"call": 2, "set": 1, "written": 10, "hit": 1, "read": 9}}


@pytest.mark.parametrize("end", ["\r\n", "\n"])
def test_values_with_bare_line_feeds_are_skipped_byte_for_byte(end: str) -> None:
    """A value of LFs and command text (`a\\nget x\\nb`, 9 bytes), in protocol lines ending in CRLF
    or (typed by hand) in LF."""
    conn = Connection()
    events = conn.feed(f"set lf 0 0 9{end}a\nget x\nb{end}get lf{end}", "req")
    events += conn.feed(f"STORED{end}VALUE lf 0 9{end}a\nget x\nb{end}END{end}", "resp")
    assert tally(events) == {"lf": {"call": 2, "set": 1, "written": 9, "hit": 1, "read": 9}}


def test_meta_replies_are_matched_in_order_with_quiet_mode_and_opaques() -> None:
    conn = Connection()
    requests = "ms a 1\r\nx\r\nmg a v q\r\nmg gone v q\r\nmd gone q\r\nmg a v O7\r\nmg b v k\r\nmn\r\n"
    events = conn.feed(requests, "req")
    # HD for ms; mg a (quiet hit): VA; mg gone (quiet miss): nothing; md gone q: NF (a failure shows);
    # mg a O7: VA with the opaque; mg b k: EN; mn: MN
    events += conn.feed("HD\r\nVA 1\r\nx\r\nNF\r\nVA 1 O7\r\nx\r\nEN\r\nMN\r\n", "resp")
    assert tally(events) == {
        "a": {"call": 3, "set": 1, "written": 1, "hit": 2, "read": 2},
        "gone": {"call": 2, "miss": 2},
        "b": {"call": 1, "miss": 1},
    }


def test_garbage_never_raises() -> None:
    decoder = TextDecoder()
    for line in ["\x00\xff garbage", "VALUE", "set", "set k 0 0 notanumber", "END", "mg", "VA x", ""]:
        decoder.feed(line)
    decoder.finish()


def test_watch_stream_pairs_stores_with_their_internal_fetch() -> None:
    decoder = WatchDecoder()
    events: list[Event] = []
    for line in (DATA / "watch.txt").read_text().splitlines():
        events += decoder.feed(line, now=0)
    events += decoder.expire(older_than=0, now=1)
    assert tally(events) == {
        "foo": {"call": 4, "hit": 3, "set": 1, "read": 9, "written": 3},  # set, get, gets, delete
        "nokey": {"call": 1, "miss": 1},
        "cnt": {"call": 6, "hit": 4, "miss": 1, "set": 1, "read": 4, "written": 1},
        "missing": {"call": 1, "miss": 1},
        "mkey": {"call": 2, "hit": 1, "set": 1, "read": 2, "written": 2},
        "a\ufffdb": {"call": 1, "miss": 1},
    }


def test_watch_parse_line() -> None:
    assert parse_line("OK") is None
    fields = parse_line("ts=1.5 gid=2 type=item_get key=foo status=found clsid=1 cfd=25 size=3")
    assert fields is not None and fields["key"] == "foo" and fields["size"] == "3"


def test_tcpdump_text_is_read_back_byte_for_byte() -> None:
    """What tcpdump 4.99 printed for `VALUE a 0 12\\r\\n` + `x\\r\\ny\\nEND\\r\\nz\\r` + `\\r\\nEND\\r\\n`
    (33 bytes): no CR before a LF, the CR before a CR as '.'. Only the payload length tells
    where the value ends."""
    header = tcpdump.parse_header(
        "04:01:19.113607 IP 127.0.0.1.49377 > 127.0.0.1.40658: Flags [P.], seq 9:42, ack 38, win 64,"
        " options [nop,nop,TS val 3619326352 ecr 3617656109], length 33\n"
    )
    assert header is not None and (header.length, header.tcp_bytes, header.seq, header.end) == (33, 32, 9, 42)
    dump = "E..U^.@.@.................V..wt....@.I.....\n.......-VALUE a 0 12\nx\ny\nEND\nz.\nEND\n"
    assert tcpdump.payload_starts(dump, header)[0] == 52  # 20 bytes of IP, 32 of TCP
    solved = tcpdump.solve(dump[52:], 33, tcpdump.Side(), "resp")
    assert solved is not None and not solved.ambiguous and len(solved.payload) == 33
    conn = Connection()
    conn.feed("get a b\r\n", "req")
    events = conn.feed(solved.payload, "resp")
    assert tally(events) == {"a": {"hit": 1, "read": 12}, "b": {"miss": 1}}
