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

import re
from collections import deque
from dataclasses import dataclass, field

from .events import Event

RETRIEVAL = {"get", "gets"}
RETRIEVAL_TOUCH = {"gat", "gats"}  # gat <exptime> <key>*
STORAGE = {"set", "add", "replace", "append", "prepend", "cas"}
LOOKUPS = {"delete", "incr", "decr", "touch"}
META = {"mg", "ms", "md", "ma"}
MAX_PENDING = 1000  # per connection: captures without replies must not grow memory

REPLIES = (
    "VALUE ", "END", "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED",
    "VA ", "HD", "EN", "NF", "NS", "EX", "MN", "ERROR", "CLIENT_ERROR", "SERVER_ERROR", "OK",
)  # fmt: skip
COMMANDS = RETRIEVAL | RETRIEVAL_TOUCH | STORAGE | LOOKUPS | META | {"mn", "stats", "version", "flush_all"}

_TCPFLOW = re.compile(r"^([0-9A-Fa-f.:]+\.\d+)-([0-9A-Fa-f.:]+\.\d+): ?(.*)$", re.S)
# `tcpdump -A`, and with `-i any` the interface and direction before the protocol
_TCPDUMP = re.compile(
    r"^\d\d:\d\d:\d\d\.\d+ (?:\S+\s+(?:In|Out|M|B|P)\s+)?IP6? (\S+) > (\S+): .*?length (\d+)"
)


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
    """Protocol state of one client connection: pending requests and data blocks to skip."""

    def __init__(self, cr_dropped: bool = False) -> None:
        self.pending: deque[Pending] = deque()
        self.skip = {"req": 0, "resp": 0}  # value bytes still to skip, per direction
        self.terminator = {"req": False, "resp": False}  # a data block's line end comes next
        self.partial: dict[str | None, str] = {}
        self.last = "req"  # direction of the previous line (undirected input)
        # tcpdump -A drops the CR of every CRLF: a line end inside a value then counts as one byte
        self.cr_dropped = cr_dropped

    def feed(self, data: str, direction: str | None = None) -> list[Event]:
        """Payload bytes (latin-1 text) of one direction; None: guess each line's direction."""
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
            if self.terminator[d]:  # the value's CRLF (LF alone in tcpdump -A text, or bare text)
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
        return out

    def expects_data(self, direction: str) -> bool:
        return bool(self.skip[direction] or self.terminator[direction])

    def line(self, raw: str, direction: str | None) -> list[Event]:
        d = direction or ("resp" if _is_reply(raw) else "req")
        self.last = d
        words = raw.strip().split()
        if not words:
            return []
        return self.reply(words) if d == "resp" else self.request(words)

    def _data(self, d: str, size: int) -> None:
        self.skip[d], self.terminator[d] = max(0, size), True

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
            size, key = _int(w[4]), text(w[1])
            self._data("req", size)
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
                size = _int(w[2]) if len(w) >= 3 else 0
                self._data("req", size)
            quiet, opaque = _meta_flags(w[2:])
            self._expect(Pending(cmd, [key], size, quiet, opaque))
            return [Event(key)]
        if cmd == "mn":
            self._expect(Pending("mn", []))
        return []

    def reply(self, w: list[str]) -> list[Event]:
        token = w[0]
        if token == "VALUE" and len(w) >= 4:
            size = _int(w[3])
            self._data("resp", size)
            p = self.pending[0] if self.pending and self.pending[0].kind == "get" else None
            key = text(w[1])
            if p is not None:
                p.hits.add(key)
            return [Event(key, call=False, hit=True, read=size)]
        if token == "END":
            p, out = self._pop("get")
            if p is None:
                return out
            return out + [Event(k, call=False, miss=True) for k in p.keys if k not in p.hits]
        if token in ("STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED") or token.isdigit():
            p, out = self._pop()
            if p is None or not p.keys:
                return out
            key = p.keys[0]
            if token == "STORED":
                return [*out, Event(key, call=False, set=True, written=p.size)]
            if p.kind == "lookup":
                found = token != "NOT_FOUND"
                return [*out, Event(key, call=False, hit=found, miss=not found)]
            return out
        if token in ("VA", "HD", "EN", "NF", "NS", "EX", "MN"):
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
        flags = w[2:] if token == "VA" else w[1:]
        opaque = next((f[1:] for f in flags if f[:1] == "O"), None)
        key = next((text(f[1:]) for f in flags if f[:1] == "k"), None)
        if token == "VA":
            self._data("resp", _int(w[1]) if len(w) > 1 else 0)
        out: list[Event] = []
        if token == "MN":  # every quiet request before the mn succeeded (or missed) silently
            while self.pending and self.pending[0].kind != "mn":
                out.extend(self._silent(self.pending.popleft()))
            if self.pending:
                self.pending.popleft()
            return out
        match = None
        for i, p in enumerate(self.pending):
            if (opaque is not None and p.opaque == opaque) or (
                opaque is None and key is not None and key in p.keys
            ):
                match = i
                break
            if opaque is None and key is None and (not p.quiet or _fits(token, p)):
                match = i
                break
        if match is None:
            return out
        for _ in range(match):  # quiet requests answered by silence
            out.extend(self._silent(self.pending.popleft()))
        p = self.pending.popleft()
        return out + self._meta_outcome(token, p, w)

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


def _is_reply(raw: str) -> bool:
    head = raw.lstrip()[:13]
    return head.startswith(REPLIES) or head[:1].isdigit()


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


class TextDecoder:
    """Lines of captured text (tcpflow, tcpdump -A or bare protocol) -> events."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port
        self.conns: dict[frozenset[str] | None, Connection] = {}
        self.current: tuple[frozenset[str] | None, str | None] = (None, None)
        self.tcpdump_left = 0  # payload bytes of the current tcpdump packet still to come
        self.tcpdump_lines: list[str] = []
        self.tcpdump = False  # the input is tcpdump -A: CRs before LFs are not in the text

    def _direction(self, src: str, dst: str) -> str | None:
        if self.port is None:
            return None
        if dst.endswith(f".{self.port}") or dst.endswith(f":{self.port}"):
            return "req"
        if src.endswith(f".{self.port}") or src.endswith(f":{self.port}"):
            return "resp"
        return None

    def _conn(self, flow: frozenset[str] | None) -> Connection:
        conn = self.conns.get(flow)
        if conn is None:
            conn = self.conns[flow] = Connection(cr_dropped=self.tcpdump)
        return conn

    def feed(self, line: str) -> list[Event]:
        if m := _TCPDUMP.match(line):
            self.tcpdump = True
            out = self.idle()
            src, dst, length = m.group(1), m.group(2), int(m.group(3))
            self.current = (frozenset((src, dst)), self._direction(src, dst) or _guess(src, dst))
            self.tcpdump_left = length
            self.tcpdump_lines = []
            return out
        if self.tcpdump_left:
            self.tcpdump_lines.append(line)
            return []
        if m := _TCPFLOW.match(line):
            src, dst, rest = m.group(1), m.group(2), m.group(3)
            self.current = (frozenset((src, dst)), self._direction(src, dst))
            line = rest
        flow, direction = self.current
        return self._conn(flow).feed(line, direction)

    def idle(self) -> list[Event]:
        """The end of the current tcpdump packet (its next header, the end of input, or a pause
        in the input: nothing more of the packet is coming)."""
        if not self.tcpdump_left:
            return []
        dump = "".join(self.tcpdump_lines).removesuffix("\n")  # tcpdump's own line end
        flow, direction = self.current
        conn = self._conn(flow)
        d = direction or "req"
        payload = _tail_of_length(dump, self.tcpdump_left, conn.expects_data(d))
        self.tcpdump_left, self.tcpdump_lines = 0, []
        return conn.feed(payload, direction)

    def finish(self) -> list[Event]:
        out = self.idle()
        for conn in self.conns.values():
            out.extend(conn.finish())
        return out


def _tail_of_length(dump: str, length: int, mid_value: bool) -> str:
    """The payload at the end of a `tcpdump -A` packet dump whose payload is `length` bytes.

    tcpdump prints every byte but the CR of a CRLF, so a printed line end stands for two bytes,
    except a bare LF inside a value (one byte): walk back from the end counting two, then, if that
    start is not the start of a command or reply, back over as many characters as there were line
    ends, to the nearest start of one."""
    cost = 0
    i = len(dump)
    while i > 0 and cost < length:
        i -= 1
        cost += 2 if dump[i] == "\n" else 1
    if not mid_value:
        for j in range(dump.count("\n", i) + 1):
            start = i - j
            if start < 0:
                break
            rest = dump[start:]
            word = rest.split(None, 1)[0] if rest.strip() else ""
            if word.lower() in COMMANDS or rest.startswith(REPLIES):
                return rest
    return dump[i:]


def _guess(src: str, dst: str) -> str | None:
    """tcpdump names ports (localhost.11211, or a service name); memcached's is the server side."""
    if dst.endswith((".11211", ".memcache")):
        return "req"
    if src.endswith((".11211", ".memcache")):
        return "resp"
    return None
