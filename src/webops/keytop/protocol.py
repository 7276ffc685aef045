"""memcached's text protocol (classic and meta commands) read from captured traffic.

Input is what people already pipe around: `tcpflow -c` output (each chunk prefixed with
`SRC-DST: `), `tcpdump -A` output (a header line per packet, payload at its end; `-i any` too),
or bare protocol text; and the payloads of a pcap (pcap.py).

What each column means is the same for every source, captures and memcached's watch stream:
- calls: requests naming the key (every key of a multi-get; get, set, delete, incr, touch, mg, ...);
- hits / misses: the key was found or not, by any command that looks it up (get, gets, gat, mg,
  delete, incr/decr, touch, md, ma): counted from the replies, so a capture needs both directions;
- sets: stores that succeeded (STORED, a meta HD, or a quiet ms that got no failure back;
  NOT_STORED, EXISTS and NOT_FOUND are calls, not sets); `noreply` stores count as sets.

Replies are matched to requests as memcached sends them: in request order per connection, with
quiet meta requests (`q`) that succeed silently skipped, and by opaque (`O...`) or returned key
(`k`) when the reply carries one. Value data blocks are skipped by their announced length, byte
for byte, so a value that holds newlines or looks like a command is never read as one. Text is
handled as latin-1 (one character a byte) so that counting stays exact; keys are shown as UTF-8.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections import deque
from dataclasses import dataclass, field

from . import tcpdump
from .events import Event
from .framing import (
    COMMANDS,
    LOOKUPS,
    META,
    RETRIEVAL,
    RETRIEVAL_TOUCH,
    STORAGE,
    data_size,
    is_reply,
    plausible_line,
)

__all__ = ["COMMANDS", "Connection", "TextDecoder", "text"]
MAX_PENDING = 1000  # per connection: captures without replies must not grow memory
META_REPLIES = ("VA", "HD", "EN", "NF", "NS", "EX", "MN")
MAX_HELD = 10_000  # events of a connection not confirmed yet (see Connection): more are dropped
# the replies a request can get, by its kind (a connection not confirmed yet is held to them)
ANSWERS = {
    "get": {"VALUE", "END"},
    "store": {"STORED", "NOT_STORED", "EXISTS", "NOT_FOUND"},
    "lookup": {"DELETED", "NOT_FOUND", "TOUCHED"},  # and a number: incr/decr
    "mg": {"VA", "HD", "EN"},
    "ms": {"HD", "NS", "EX", "NF"},
    "md": {"HD", "NF", "EX"},
    "ma": {"VA", "HD", "NF", "NS", "EX", "EN"},
    "mn": {"MN"},
}
ANY_ANSWER: frozenset[str] = frozenset().union(*ANSWERS.values())

# `tcpflow -c`: each chunk (a TCP segment) as `SRC-DST: ` and its bytes, then a line end of its own;
# addresses as tcpflow writes them (127.000.000.001.49204)
_ADDR = r"(?:\d{3}\.\d{3}\.\d{3}\.\d{3}|[0-9A-Fa-f:]+)\.\d{5}"
_TCPFLOW = re.compile(rf"^({_ADDR})-({_ADDR}): (.*)$", re.S)


def text(key: str) -> str:
    """A key as read (latin-1, a byte a character) shown as the UTF-8 it was sent as."""
    return key.encode("latin-1", "replace").decode("utf-8", "replace")


@dataclass
class Pending:
    """A request waiting for its reply."""

    kind: str  # get, store, lookup (delete/incr/touch), mg, ms, md, ma, mn
    keys: list[str]
    size: int = 0  # bytes stored (store, ms)
    quiet: bool = False
    opaque: str | None = None
    hits: set[str] = field(default_factory=set)  # get: keys a VALUE came back for


def _meta_flags(words: list[str]) -> tuple[bool, str | None]:
    quiet = any(w == "q" for w in words)
    opaque = next((w[1:] for w in words if w[:1] == "O" and len(w) > 1), None)
    return quiet, opaque


class Connection:
    """Protocol state of one client connection: pending requests and data blocks to skip.

    A connection whose start was not seen (a capture begun mid-conversation, or bytes lost) is
    picked up per direction at the first packet that starts with a request or reply line; what came
    before is skipped and counted (`skipped`), as are replies to requests that were not seen
    (`unmatched`). Such a packet may be the middle of a value that holds command text, so the
    connection is not trusted until it is confirmed: a reply of the right shape (a `get`'s VALUE or
    END, a store's STORED, ...) answers the oldest request read. Until then what it reads is held,
    not counted; a reply that cannot answer that request means the requests read so far were value
    text: they are dropped and counted (`unconfirmed`). A connection seen from its SYN is trusted
    from the start: its counts are exact."""

    def __init__(self, synced: bool = True) -> None:
        self.pending: deque[Pending] = deque()
        self.skip = {"req": 0, "resp": 0}  # value bytes still to skip, per direction
        self.terminator = {"req": False, "resp": False}  # a data block's line end comes next
        self.partial: dict[str | None, str] = {}
        self.last = "req"  # direction of the previous line (undirected input)
        self.synced = {"req": synced, "resp": synced}
        self.skipped = 0  # bytes not read (before the connection was picked up, after a loss)
        self.unmatched = 0  # replies to requests that were not seen
        self.closing: set[str] = set()  # the sides that sent a FIN
        self.trusted = synced  # confirmed (or seen from its start): events go out as they come
        self.held: list[Event] = []  # the events read while not trusted, in order
        self.unconfirmed = 0  # requests dropped: read while not trusted and never confirmed

    def side(self, direction: str) -> tcpdump.Side:
        """Where this direction is in memcached's framing (for reading tcpdump -A text back)."""
        return tcpdump.Side(self.skip[direction], self.terminator[direction], self.partial.get(direction, ""))

    def lose(self, direction: str) -> None:
        """Bytes of `direction` were lost: forget what was pending, pick it up again at the next
        packet that starts a request or reply."""
        self.pending.clear()
        self.skip[direction], self.terminator[direction] = 0, False
        self.partial.pop(direction, None)
        self.synced[direction] = False
        self._distrust()

    def _distrust(self) -> None:
        """What was read while not trusted is dropped (counted): it may never be confirmed now."""
        self.unconfirmed += sum(e.call for e in self.held)
        self.held.clear()
        self.trusted = False

    def pick_up(self, direction: str) -> None:
        self.skip[direction], self.terminator[direction] = 0, False
        self.partial.pop(direction, None)
        self.synced[direction] = True

    def feed(self, data: str, direction: str | None = None, boundary: bool = False) -> list[Event]:
        """Payload bytes (latin-1 text) of one direction; None: guess each line's direction.
        `boundary`: `data` starts a packet (where a direction not yet picked up may be)."""
        if direction is not None and not self.synced[direction]:
            line = data.split("\n", 1)[0]
            if not (boundary and plausible_line(line, direction, complete="\n" in data)):
                self.skipped += len(data)
                return []
            self.pick_up(direction)
        data = self.partial.pop(direction, "") + data
        out: list[Event] = []
        pos = 0
        while pos < len(data):
            d = direction or self.last
            if self.skip[d]:  # inside a value: its bytes, whatever they hold
                n = min(self.skip[d], len(data) - pos)
                pos += n
                self.skip[d] -= n
                continue
            if self.terminator[d]:  # the value's CRLF (a LF alone in hand-made text)
                if data[pos] == "\r" and pos + 1 == len(data):
                    break  # wait for what follows the CR
                pos += 2 if data.startswith("\r\n", pos) else 1 if data[pos] == "\n" else 0
                self.terminator[d] = False
                continue
            end = data.find("\n", pos)
            if end < 0:
                break
            out.extend(self.line(data[pos : end + 1], direction))
            pos = end + 1
        if pos < len(data):
            self.partial[direction] = data[pos:]
        return out

    def finish(self) -> list[Event]:
        out = []
        for d, rest in list(self.partial.items()):
            out.extend(self.line(rest, d))
        self.partial.clear()
        if not self.trusted:  # never confirmed: nothing it read is counted
            self._distrust()
        return out

    def expects_data(self, direction: str) -> bool:
        return bool(self.skip[direction] or self.terminator[direction])

    def line(self, raw: str, direction: str | None) -> list[Event]:
        d = direction or ("resp" if is_reply(raw) else "req")
        self.last = d
        words = raw.strip().split()
        if not words:
            return []
        if self.trusted:
            return self.reply(words) if d == "resp" else self.request(words)
        if d == "req":
            self._hold(self.request(words))
            return []
        return self._confirm(words)

    def _hold(self, events: list[Event]) -> None:
        self.held.extend(events)
        if len(self.held) > MAX_HELD:  # no reply confirms so much: not requests
            self._distrust()

    def _confirm(self, w: list[str]) -> list[Event]:
        """A reply on a connection not trusted yet: if it can answer the oldest request read (or
        the quiet ones before it), the connection is in step: what was held goes out, and it is
        trusted from now on. If not, the requests read so far were not requests: dropped."""
        token = w[0]
        if not (token.isdigit() or token in ANY_ANSWER):  # ERROR, STAT, ...: tells nothing
            return []
        head: Pending | None
        if token == "MN":
            head = next((p for p in self.pending if p.kind == "mn"), None)
        elif token in META_REPLIES:
            i = self._meta_match(token, w)
            head = self.pending[i] if i is not None else None
        else:
            head = next((p for p in self.pending if not p.quiet), None)
        fits = head is not None and (
            (token.isdigit() and head.kind == "lookup")
            or (
                token in ANSWERS.get(head.kind, ())
                and (token != "VALUE" or (len(w) > 1 and text(w[1]) in head.keys))
            )
        )
        if not fits:
            self.unmatched += 1  # the answer to a request the capture did not show
            self.pending.clear()
            self._distrust()
            if token in ("VALUE", "VA"):  # its value is skipped all the same
                self._data("resp", w)
            return []
        events = self.reply(w)
        self.trusted = True
        out, self.held = self.held + events, []
        return out

    def _data(self, d: str, words: list[str]) -> int:
        size = data_size(words, d)
        if size is not None:
            self.skip[d], self.terminator[d] = size, True
        return size or 0

    def _expect(self, p: Pending) -> None:
        if len(self.pending) < MAX_PENDING:
            self.pending.append(p)

    def request(self, w: list[str]) -> list[Event]:
        cmd = w[0].lower()
        if cmd in RETRIEVAL or cmd in RETRIEVAL_TOUCH:
            keys = [text(k) for k in (w[1:] if cmd in RETRIEVAL else w[2:])]
            self._expect(Pending("get", keys))
            return [Event(k) for k in keys]
        if cmd in STORAGE and len(w) >= 5:
            size, key = self._data("req", w), text(w[1])
            if w[-1] == "noreply":
                return [Event(key), Event(key, call=False, set=True, written=size)]
            self._expect(Pending("store", [key], size))
            return [Event(key)]
        if cmd in LOOKUPS and len(w) >= 2:
            key = text(w[1])
            if w[-1] != "noreply":
                self._expect(Pending("lookup", [key]))
            return [Event(key)]
        if cmd in META and len(w) >= 2:
            key, size = text(w[1]), 0
            if cmd == "ms":
                size = self._data("req", w)
            quiet, opaque = _meta_flags(w[2:])
            self._expect(Pending(cmd, [key], size, quiet, opaque))
            return [Event(key)]
        if cmd == "mn":
            self._expect(Pending("mn", []))
        return []

    def reply(self, w: list[str]) -> list[Event]:
        token = w[0]
        if token == "VALUE" and len(w) >= 4:
            size = self._data("resp", w)
            p = next((p for p in self.pending if not p.quiet), None)
            key = text(w[1])
            if p is None or p.kind != "get" or key not in p.keys:
                self.unmatched += 1  # the answer to a request the capture did not show
                return []
            p.hits.add(key)
            return [Event(key, call=False, hit=True, read=size)]
        if token == "END":
            p, out = self._pop("get")
            if p is None:
                self.unmatched += 1
                return out
            return out + [Event(k, call=False, miss=True) for k in p.keys if k not in p.hits]
        if token in ("STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED") or token.isdigit():
            p, out = self._pop()
            if p is None:
                self.unmatched += 1
                return out
            if not p.keys:
                return out
            key = p.keys[0]
            if token == "STORED":
                return [*out, Event(key, call=False, set=True, written=p.size)]
            if p.kind == "lookup":
                found = token != "NOT_FOUND"
                return [*out, Event(key, call=False, hit=found, miss=not found)]
            return out
        if token in META_REPLIES:
            return self._meta_reply(token, w)
        return []

    def _pop(self, kind: str | None = None) -> tuple[Pending | None, list[Event]]:
        """The oldest pending classic request, and what the silence of the quiet meta requests
        before it meant."""
        out: list[Event] = []
        while self.pending and self.pending[0].quiet:
            out.extend(self._silent(self.pending.popleft()))
        if not self.pending or (kind is not None and self.pending[0].kind != kind):
            return None, out
        return self.pending.popleft(), out

    def _meta_reply(self, token: str, w: list[str]) -> list[Event]:
        if token == "VA":
            self._data("resp", w)
        out: list[Event] = []
        if token == "MN":  # every quiet request before the mn succeeded (or missed) silently
            while self.pending and self.pending[0].kind != "mn":
                out.extend(self._silent(self.pending.popleft()))
            if self.pending:
                self.pending.popleft()
            return out
        match = self._meta_match(token, w)
        if match is None:
            self.unmatched += 1
            return out
        for _ in range(match):  # quiet requests answered by silence
            out.extend(self._silent(self.pending.popleft()))
        p = self.pending.popleft()
        return out + self._meta_outcome(token, p, w)

    def _meta_match(self, token: str, w: list[str]) -> int | None:
        """Which pending request a meta reply answers (by opaque, returned key, or in order)."""
        flags = w[2:] if token == "VA" else w[1:]
        opaque = next((f[1:] for f in flags if f[:1] == "O"), None)
        key = next((text(f[1:]) for f in flags if f[:1] == "k"), None)
        for i, p in enumerate(self.pending):
            if (opaque is not None and p.opaque == opaque) or (
                opaque is None and key is not None and key in p.keys
            ):
                return i
            if opaque is None and key is None and (not p.quiet or _fits(token, p)):
                return i
        return None

    @staticmethod
    def _meta_outcome(token: str, p: Pending, w: list[str]) -> list[Event]:
        if not p.keys:
            return []
        key = p.keys[0]
        if p.kind == "ms":
            return [Event(key, call=False, set=True, written=p.size)] if token == "HD" else []
        if token in ("EN", "NF"):
            return [Event(key, call=False, miss=True)]
        if token in ("VA", "HD"):
            read = _int(w[1]) if token == "VA" and len(w) > 1 else 0
            return [Event(key, call=False, hit=True, read=read)]
        return []

    @staticmethod
    def _silent(p: Pending) -> list[Event]:
        """A quiet meta request that got no reply: what its silence means."""
        if not p.keys:
            return []
        key = p.keys[0]
        if p.kind == "mg":
            return [Event(key, call=False, miss=True)]  # q hides misses (EN)
        if p.kind == "ms":
            return [Event(key, call=False, set=True, written=p.size)]  # q hides success (HD)
        if p.kind in ("md", "ma"):
            return [Event(key, call=False, hit=True)]
        return []


def _fits(token: str, p: Pending) -> bool:
    """Could a quiet request have sent this reply? (q suppresses EN for mg, HD for ms/md/ma)."""
    if p.kind == "mg":
        return token in ("VA", "HD")
    return token in ("NS", "EX", "NF")


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


@dataclass
class _Packet:
    """A `tcpdump -A` packet being read: its header line and the lines of its dump."""

    header: tcpdump.Header
    lines: list[str] = field(default_factory=list)
    chars: int = 0

    def dump(self) -> str:
        return "".join(self.lines).removesuffix("\n")  # tcpdump's own line end after the packet


@dataclass
class _Seq:
    """Sequence numbers of one direction as tcpdump prints them (the first absolute, then
    relative to the first one)."""

    first: int
    expected: int
    checked: bool = False


@dataclass
class CaptureStats:
    """What a text capture did not let keytop see (or made it guess)."""

    joined: int = 0  # connections already open when the capture began
    cut_short: int = 0  # packets printed shorter than their length (tcpdump -s)
    missing_bytes: int = 0  # sequence gaps: packets the capture lost
    unfollowed: int = 0  # packets that could not be read as memcached protocol
    guessed: int = 0  # packets with more than one reading
    retransmitted: int = 0  # packets seen twice (not counted twice)
    skipped: int = 0  # bytes skipped, unmatched replies, unconfirmed requests: of connections that ended
    unmatched: int = 0
    unconfirmed: int = 0


class TextDecoder:
    """Lines of captured text (tcpflow -c, tcpdump -A or bare protocol) -> events.

    tcpdump -A: each packet's payload is read back byte for byte from its length (tcpdump.solve),
    per connection and direction, sequence numbers checked for gaps and retransmissions. tcpflow -c:
    each chunk's bytes as they are, less the line end tcpflow writes after it. Bare text: lines as
    they come, their direction guessed from what they start with."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port
        self.names = {str(port)} if port is not None else set()
        if port is not None:
            with contextlib.suppress(OSError):  # tcpdump prints a port's service name without -n
                self.names.add(socket.getservbyport(port, "tcp"))
        self.conns: dict[frozenset[str] | None, Connection] = {}
        self.current: tuple[frozenset[str] | None, str | None] = (None, None)
        self.packet: _Packet | None = None
        self.seqs: dict[tuple[str, str], _Seq] = {}
        self.closed: dict[frozenset[str], None] = {}  # connections seen to their end, lately
        self.held = False  # tcpflow: a line end that may be the one tcpflow adds after a chunk
        self.tcpdump = False  # the input is tcpdump -A
        self.stats = CaptureStats()

    def _direction(self, src: str, dst: str) -> str | None:
        if any(dst.endswith((f".{n}", f":{n}")) for n in self.names):
            return "req"
        if any(src.endswith((f".{n}", f":{n}")) for n in self.names):
            return "resp"
        return _guess(src, dst)

    def _conn(self, flow: frozenset[str] | None) -> Connection:
        conn = self.conns.get(flow)
        if conn is None:
            conn = self.conns[flow] = Connection()
        return conn

    def feed(self, line: str) -> list[Event]:
        # the first packet header or tcpflow prefix tells which the input is, for good: a value
        # quoting the other's framing is then only a value
        header = (
            tcpdump.parse_header(line)
            if line[2:3] == ":" and line[:1].isdigit() and self.current[0] is None
            else None
        )
        if self.packet is not None:
            if header is None or not self._next_packet(header, line):
                self.packet.lines.append(line)
                self.packet.chars += len(line)
                return []
            out = self._packet_done()
        else:
            out = []
        if header is not None:
            self.held, self.tcpdump = False, True
            self.packet = _Packet(header)
            return out
        if not self.tcpdump and (m := _TCPFLOW.match(line)):
            src, dst, line = m.group(1), m.group(2), m.group(3)
            self.current = (frozenset((src, dst)), self._direction(src, dst))
            self.held = False  # the line end before this chunk was tcpflow's
        elif self.current[0] is None:  # bare protocol text
            return out + self._conn(None).feed(line, None)
        if self.held:
            line = "\n" + line
        self.held = line.endswith("\n")
        flow, direction = self.current
        return out + self._conn(flow).feed(line[:-1] if self.held else line, direction)

    def _next_packet(self, header: tcpdump.Header, line: str) -> bool:
        """Is this header-like line the next packet, or a line of the current one's payload?"""
        assert self.packet is not None
        current = self.packet.header
        dump = self.packet.dump()
        hb = tcpdump.header_bytes(current, dump)
        most = (hb or 120) + current.length
        if self.packet.chars + len(line) > most + 1:  # the payload cannot hold it
            return True
        if any(tcpdump.could_be_complete(dump, h + current.length) for h in ([hb] if hb else range(40, 121))):
            return True
        # the dump is not complete: a packet cut short (tcpdump -s), or a header line quoted in a
        # value. A real one comes after the packet before it and goes on from where its
        # connection is (a new connection starts with a SYN)
        if not 0 <= (header.seconds - current.seconds) % 86400 < 3600:
            return False
        if "S" in header.flags:
            return True
        if (header.src, header.dst) == (current.src, current.dst):
            if header.seq is None or current.end is None:
                return header.seq is None
            return header.seq in (current.end, current.end - (current.seq or 0))  # absolute, relative
        seq = self.seqs.get((header.src, header.dst))
        if seq is not None and header.seq is not None:
            return header.seq == seq.expected
        back = self.seqs.get((header.dst, header.src))
        return (
            header.seq is None and header.ack is not None and back is not None and header.ack <= back.expected
        )

    def _packet_done(self) -> list[Event]:
        assert self.packet is not None
        h, dump = self.packet.header, self.packet.dump()
        self.packet = None
        flow = frozenset((h.src, h.dst))
        d = self._direction(h.src, h.dst)
        syn = "S" in h.flags
        conn = self.conns.get(flow)
        if syn and ("." not in h.flags or conn is None):  # a connection that starts now
            self.closed.pop(flow, None)
            conn = self.conns[flow] = Connection()
            for key in ((h.src, h.dst), (h.dst, h.src)):
                self.seqs.pop(key, None)
        elif conn is None:  # already open when the capture began
            if h.length == 0 or flow in self.closed:  # (no data: nothing to pick up yet)
                return []
            conn = self.conns[flow] = Connection(synced=False)
            self.stats.joined += 1
        out = self._payload(h, dump, conn, d) if self._in_sequence(h, conn, d) and h.length else []
        if "R" in h.flags or "F" in h.flags:  # the end: forget the connection once both sides closed
            conn.closing.add(h.src)
            if "R" in h.flags or len(conn.closing) == 2:
                out += self._forget(flow)
        return out

    def _forget(self, flow: frozenset[str]) -> list[Event]:
        conn = self.conns.pop(flow)
        self.stats.skipped += conn.skipped
        self.stats.unmatched += conn.unmatched
        events = conn.finish()  # (a connection never confirmed: its requests are counted here)
        self.stats.unconfirmed += conn.unconfirmed
        for src in flow:
            for dst in flow:
                self.seqs.pop((src, dst), None)
        self.closed[flow] = None  # its last ACKs are not a connection already open
        while len(self.closed) > 10_000:
            del self.closed[next(iter(self.closed))]
        return events

    def _payload(self, h: tcpdump.Header, dump: str, conn: Connection, d: str | None) -> list[Event]:
        """The events of one packet's payload, read back from its dump."""
        starts = tcpdump.payload_starts(dump, h)
        directions = [d] if d else ["req", "resp"]
        for direction in directions:
            side = conn.side(direction) if conn.synced[direction] else tcpdump.Side()
            for start in starts:
                solved = tcpdump.solve(dump[start:], h.length, side, direction)
                if solved is not None:
                    self.stats.guessed += solved.ambiguous
                    if not conn.synced[direction]:
                        conn.pick_up(direction)
                    return conn.feed(solved.payload, direction)
        d = d or "req"
        if not starts and len(dump) + dump.count("\n") + 2 < h.length + 40:
            self.stats.cut_short += 1
        elif conn.synced[d]:
            self.stats.unfollowed += 1
        else:
            conn.skipped += h.length  # not picked up yet: the middle of something
        conn.lose(d)
        return []

    def _in_sequence(self, h: tcpdump.Header, conn: Connection, d: str | None) -> bool:
        """Check the packet's sequence numbers: False for a retransmission (its bytes were read);
        a gap is counted and the direction picked up again after it."""
        if h.seq is None or h.end is None:
            return True
        key = (h.src, h.dst)
        end = h.end + ("S" in h.flags)
        seq = self.seqs.get(key)
        if seq is None:
            self.seqs[key] = _Seq(h.seq, end)
            return True
        if not seq.checked:  # the first packet printed absolute numbers, the next ones relative
            seq.checked = True
            if h.seq != seq.expected and h.seq == seq.expected - seq.first:
                seq.expected = h.seq
        if h.length == 0:
            seq.expected = max(seq.expected, end)
            return True
        if h.seq == seq.expected:
            seq.expected = end
            return True
        if h.seq < seq.expected and end <= seq.expected:
            self.stats.retransmitted += 1
            return False
        if h.seq > seq.expected:
            self.stats.missing_bytes += h.seq - seq.expected
        else:
            self.stats.unfollowed += 1
        seq.expected = end
        if d is not None:
            conn.lose(d)
        return True

    def idle(self) -> list[Event]:
        """A pause in the input: the current tcpdump packet is complete if its dump can be."""
        if self.packet is None:
            return []
        h, dump = self.packet.header, self.packet.dump()
        hb = tcpdump.header_bytes(h, dump)
        if hb is not None and not tcpdump.could_be_complete(dump, hb + h.length):
            return []
        return self._packet_done()

    def finish(self) -> list[Event]:
        out = self._packet_done() if self.packet is not None else []
        for conn in self.conns.values():
            out.extend(conn.finish())
        return out

    def notes(self) -> list[str]:
        """What the capture did not show, one line each (none: the counts are exact)."""
        st = self.stats
        skipped = st.skipped + sum(c.skipped for c in self.conns.values())
        unmatched = st.unmatched + sum(c.unmatched for c in self.conns.values())
        unconfirmed = st.unconfirmed + sum(c.unconfirmed for c in self.conns.values())
        out = []
        if st.joined:
            out.append(
                f"{st.joined} connection(s) already open when the capture began: read from their first"
                " packet that starts a command or reply"
            )
        if st.missing_bytes:
            out.append(f"{st.missing_bytes} bytes of the conversations were not captured (sequence gaps)")
        if st.cut_short:
            out.append(f"{st.cut_short} packet(s) cut short (tcpdump -s): what they held is not counted")
        if st.unfollowed:
            out.append(f"{st.unfollowed} packet(s) could not be followed as memcached protocol")
        if st.guessed:
            out.append(
                f"{st.guessed} packet(s) could be read more than one way (line ends in values): guessed"
            )
        if skipped:
            out.append(f"{skipped} bytes skipped (the middle of a value or of a lost conversation)")
        if unmatched:
            out.append(f"{unmatched} reply(ies) to requests the capture did not show were not counted")
        if unconfirmed:
            out.append(unconfirmed_note(unconfirmed))
        return out


def unconfirmed_note(n: int) -> str:
    return (
        f"{n} request(s) of connections picked up mid-stream were not counted: no reply confirmed them"
        " (the middle of a value that reads like commands)"
    )


def _guess(src: str, dst: str) -> str | None:
    """tcpdump names ports (localhost.11211, or a service name); memcached's is the server side."""
    if dst.endswith((".11211", ".memcache")):
        return "req"
    if src.endswith((".11211", ".memcache")):
        return "resp"
    return None
