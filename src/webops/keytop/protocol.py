"""memcached's text protocol (classic and meta commands) read from captured traffic.

Input is what people already pipe around: `tcpflow -c` output (each chunk prefixed with
`SRC-DST: `), `tcpdump -A` output (a header line per packet, payload at its end), or bare
protocol text. Requests count calls on every key they name (all keys of a multi-get); replies,
when the capture has them, turn pending retrievals into hits and misses. Value data blocks are
skipped by their announced length, so a value that looks like a command is not counted.
"""

from __future__ import annotations

import re
from collections import deque

from .events import Event

RETRIEVAL = {"get", "gets"}
RETRIEVAL_TOUCH = {"gat", "gats"}  # gat <exptime> <key>*
STORAGE = {"set", "add", "replace", "append", "prepend", "cas"}
OTHER_KEYED = {"delete", "incr", "decr", "touch", "md", "ma"}
MAX_PENDING = 1000  # per connection: captures without replies must not grow memory

_TCPFLOW = re.compile(r"^([0-9A-Fa-f.:]+\.\d+)-([0-9A-Fa-f.:]+\.\d+): ?(.*)$", re.S)
_TCPDUMP = re.compile(r"^\d\d:\d\d:\d\d\.\d+ IP6? (\S+) > (\S+): .*?length (\d+)")


class Connection:
    """Protocol state of one client connection: pending retrievals and data blocks to skip."""

    def __init__(self) -> None:
        self.gets: deque[list[str]] = deque()  # keys of each get awaiting END, oldest first
        self.metas: deque[str] = deque()  # keys of mg awaiting VA/HD/EN
        self.skip = {"req": 0, "resp": 0}  # data bytes still to skip, per direction
        self.partial = {"req": "", "resp": ""}
        self.hits_in_reply: set[str] = set()
        self.last = "req"  # direction of the previous line

    def feed(self, text: str, direction: str | None = None) -> list[Event]:
        """Payload bytes (as text) of one direction; None: guess each line's direction."""
        key = direction or "req"
        data = self.partial[key] + text
        *complete, self.partial[key] = data.split("\n")
        out: list[Event] = []
        for line in complete:
            out.extend(self.line(line + "\n", direction))
        return out

    def finish(self) -> list[Event]:
        out = []
        for d in ("req", "resp"):
            if self.partial[d]:
                out.extend(self.line(self.partial[d], d if self.partial[d] else None))
                self.partial[d] = ""
        return out

    def line(self, raw: str, direction: str | None) -> list[Event]:
        if direction is None and self.skip[self.last]:
            d = self.last  # inside a data block announced by the previous line
        else:
            d = direction or ("resp" if _is_reply(raw) else "req")
        self.last = d
        if self.skip[d] > 0:  # a data block: its lines end in CRLF on the wire, whatever the capture kept
            self.skip[d] -= len(raw.rstrip("\r\n").encode("utf-8", "surrogateescape")) + 2
            return []
        words = raw.strip().split()
        if not words:
            return []
        return self.reply(words) if d == "resp" else self.request(words)

    def request(self, w: list[str]) -> list[Event]:
        cmd = w[0].lower()
        if cmd in RETRIEVAL or cmd in RETRIEVAL_TOUCH:
            keys = w[1:] if cmd in RETRIEVAL else w[2:]
            if len(self.gets) < MAX_PENDING:
                self.gets.append(keys)
            return [Event(k) for k in keys]
        if cmd in STORAGE and len(w) >= 5:
            size = _int(w[4])
            self.skip["req"] = size + 2
            return [Event(w[1], set=True, written=size)]
        if cmd == "mg" and len(w) >= 2:
            if len(self.metas) < MAX_PENDING:
                self.metas.append(w[1])
            return [Event(w[1])]
        if cmd == "ms" and len(w) >= 3:
            size = _int(w[2])
            self.skip["req"] = size + 2
            return [Event(w[1], set=True, written=size)]
        if cmd in OTHER_KEYED and len(w) >= 2:
            return [Event(w[1])]
        return []

    def reply(self, w: list[str]) -> list[Event]:
        token = w[0]
        if token == "VALUE" and len(w) >= 4:
            size = _int(w[3])
            self.skip["resp"] = size + 2
            self.hits_in_reply.add(w[1])
            return [Event(w[1], call=False, hit=True, read=size)]
        if token == "END":
            keys = self.gets.popleft() if self.gets else []
            misses = [Event(k, call=False, miss=True) for k in keys if k not in self.hits_in_reply]
            self.hits_in_reply.clear()
            return misses
        if token in ("VA", "HD", "EN") and self.metas:
            key = self.metas.popleft()
            if token == "EN":
                return [Event(key, call=False, miss=True)]
            size = _int(w[1]) if token == "VA" and len(w) > 1 else 0
            if token == "VA":
                self.skip["resp"] = size + 2
            return [Event(key, call=False, hit=True, read=size)]
        return []


def _is_reply(raw: str) -> bool:
    head = raw.lstrip()[:10]
    return (
        head.startswith(
            (
                "VALUE ",
                "END",
                "STORED",
                "NOT_STORED",
                "EXISTS",
                "NOT_FOUND",
                "DELETED",
                "TOUCHED",
                "VA ",
                "HD",
                "EN",
                "NF",
                "NS",
                "EX",
                "MN",
                "ERROR",
                "CLIENT_ERROR",
                "SERVER_ERROR",
                "OK",
            )
        )
        or head[:1].isdigit()
    )


def _int(text: str) -> int:
    try:
        return int(text)
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
            conn = self.conns[flow] = Connection()
        return conn

    def feed(self, line: str) -> list[Event]:
        if m := _TCPDUMP.match(line):
            out = self._end_tcpdump_packet()
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
        return self._conn(flow).feed(line if line.endswith("\n") else line + "\n", direction)

    def _end_tcpdump_packet(self) -> list[Event]:
        if not self.tcpdump_left:
            return []
        dump = "".join(self.tcpdump_lines).removesuffix("\n")
        payload = _tail_of_length(dump, self.tcpdump_left)
        self.tcpdump_left, self.tcpdump_lines = 0, []
        flow, direction = self.current
        return self._conn(flow).feed(payload, direction)

    def finish(self) -> list[Event]:
        out = self._end_tcpdump_packet()
        for conn in self.conns.values():
            out.extend(conn.finish())
        return out


def _tail_of_length(dump: str, length: int) -> str:
    """The payload at the end of a `tcpdump -A` packet dump whose payload is `length` bytes.

    tcpdump prints every byte but CR, so each printed line end stands for CRLF (2 bytes): walk back
    from the end until the bytes add up."""
    cost = 0
    i = len(dump)
    while i > 0 and cost < length:
        i -= 1
        cost += 2 if dump[i] == "\n" else 1
    return dump[i:] + "\n"


def _guess(src: str, dst: str) -> str | None:
    """tcpdump names ports (localhost.11211, or a service name); memcached's is the server side."""
    if dst.endswith((".11211", ".memcache")):
        return "req"
    if src.endswith((".11211", ".memcache")):
        return "resp"
    return None
