"""`tcpdump -A` text read back byte for byte (pure functions: no I/O).

tcpdump -A prints each packet as a header line (`12:00:00.1 IP a.1 > b.2: Flags [P.], seq 1:26,
..., length 25`) and then the whole IP packet, IP and TCP headers included, one character a byte:
non-printing bytes as '.', a LF as a real line end, and a CR not at all when a LF follows it (nor
when it is one of the packet's last two bytes: tcpdump's own rule). So the text loses exactly one
thing, which line ends were CRLF and which bare LFs, and every value holding line ends is
ambiguous on its own: `VALUE k 0 12` followed by `x\\ny\\nEND\\nz.` may be twelve bytes or fewer.

What makes it exact again: the header line gives the packet's payload length (and its TCP
options, hence where the payload starts in the dump), and memcached's framing is strict (every
protocol line ends in CRLF, a value is followed by CRLF, a reply or request line starts with a known
word). `solve` finds the byte strings of that length whose rendering is the text and which parse as
memcached protocol from the connection's state: normally exactly one. None: the packet cannot be
followed (cut short, mangled); two: a guess (both are reported as approximate by the caller).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

from .framing import data_size, plausible_line

HEADER = re.compile(
    r"^(\d\d):(\d\d):(\d\d)\.\d+ (?:\S+\s+(?:In|Out|M|B|P)\s+)?(IP6?) (\S+) > (\S+): (.*)$", re.S
)
_FLAGS = re.compile(r"Flags \[([^\]]*)\]")
_SEQ = re.compile(r"\bseq (\d+)(?::(\d+))?")
_NEWLINE = re.compile("\n")
_ACK = re.compile(r"\back (\d+)")
_OPTIONS = re.compile(r"\boptions \[([^\]]*)\]")
_LENGTH = re.compile(r".*\blength (\d+)", re.S)
TCP_OPTION_BYTES = {"nop": 1, "eol": 1, "mss": 4, "wscale": 3, "sackOK": 2, "TS": 10, "md5": 18}
MAX_STEPS = 200_000  # search nodes a packet: beyond, the first answer found is a guess


@dataclass(frozen=True)
class Header:
    """One `tcpdump -A` packet header line (TCP only)."""

    seconds: int  # of the day, for telling a real header from one quoted in a value
    src: str
    dst: str
    flags: str
    seq: int | None  # first sequence number (as printed: absolute or relative)
    end: int | None  # sequence number after the payload
    ack: int | None
    length: int  # TCP payload bytes
    ipv6: bool
    tcp_bytes: int | None  # TCP header with options; None when an option is not understood


def parse_header(line: str) -> Header | None:
    m = HEADER.match(line)
    if m is None:
        return None
    rest = m.group(7)
    flags, length = _FLAGS.search(rest), _LENGTH.match(rest)
    if flags is None or length is None:  # not TCP (UDP, ICMP ...)
        return None
    seq, ack = _SEQ.search(rest), _ACK.search(rest)
    first = int(seq.group(1)) if seq else None
    end = int(seq.group(2)) if seq and seq.group(2) else first
    options = _OPTIONS.search(rest)
    tcp_bytes = 20 + _options_bytes(options.group(1)) if options else 20
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3))
    return Header(
        h * 3600 + mi * 60 + s,
        m.group(5),
        m.group(6),
        flags.group(1),
        first,
        end,
        int(ack.group(1)) if ack else None,
        int(length.group(1)),
        m.group(4) == "IP6",
        tcp_bytes if tcp_bytes >= 20 else None,
    )


def _options_bytes(options: str) -> int:
    """Bytes of the TCP options tcpdump printed (padded to 4); -1000 when one is unknown."""
    total = 0
    for part in options.split(","):
        words = part.split()
        if not words:
            continue
        if words[0] == "sack" and len(words) > 1 and words[1].isdigit():
            total += 2 + 8 * int(words[1])
        elif words[0] in TCP_OPTION_BYTES:
            total += TCP_OPTION_BYTES[words[0]]
        elif words[0].startswith(("val", "ecr")) or "{" in words[0]:
            continue
        else:
            return -1000
    return (total + 3) // 4 * 4


def header_bytes(h: Header, dump: str) -> int | None:
    """IP + TCP header bytes at the start of the dump, when they can be told."""
    if h.tcp_bytes is None or not dump:
        return None
    if h.ipv6:
        return 40 + h.tcp_bytes if 0x60 <= ord(dump[0]) <= 0x6F else None
    if 0x45 <= ord(dump[0]) <= 0x4F:  # version 4, header length in 32-bit words
        return (ord(dump[0]) - 0x40) * 4 + h.tcp_bytes
    return None


def could_be_complete(dump: str, total: int) -> bool:
    """Can `dump` be the rendering of `total` bytes? (a character a byte, a line end one or two
    bytes, up to two hidden CRs at the end)"""
    return len(dump) <= total <= len(dump) + dump.count("\n") + 2


def payload_starts(dump: str, h: Header) -> list[int]:
    """Where in the dump the payload may start, the likeliest first."""
    n = h.length
    hb = header_bytes(h, dump)
    if hb is not None:  # each CRLF in the headers prints one character fewer
        starts = [s for s in range(hb, hb - dump.count("\n", 0, hb) - 1, -1) if 0 <= s <= len(dump)]
    else:
        first = max(0, len(dump) - n)
        starts = list(range(first, min(len(dump), first + dump.count("\n", first) + 2) + 1))
    return [s for s in starts if could_be_complete(dump[s:], n)]


@dataclass(frozen=True)
class Side:
    """Where one direction of a connection is in memcached's framing."""

    skip: int = 0  # value bytes still to come
    terminator: bool = False  # the CRLF after a value comes next
    partial: str = ""  # an unfinished line (may end in the CR of its CRLF)


@dataclass
class Solved:
    payload: str  # the packet's bytes (latin-1 text; non-printing bytes as '.')
    ambiguous: bool  # another reading fits as well: the first was taken


def solve(text: str, n: int, side: Side, direction: str | None) -> Solved | None:
    """The payload of `n` bytes that tcpdump -A rendered as `text`, read from `side`: protocol lines
    ending in CRLF, as memcached and its clients send them, or else (a hand-typed command) in LF."""
    return _solve(text, n, side, direction, False) or (
        _solve(text, n, side, direction, True) if direction != "resp" else None
    )


def _solve(text: str, n: int, side: Side, direction: str | None, bare_lf: bool) -> Solved | None:
    size = len(text)
    ends = [m.start() for m in _NEWLINE.finditer(text)]  # where the line ends are

    def nl(i: int) -> int:  # line ends in text[:i]
        return bisect_left(ends, i)

    total = len(ends)
    found: list[str] = []
    steps = 0
    # a node: (position, bytes so far, state kind, state value, pieces so far as a linked list)
    Node = tuple[int, int, str, object, object]
    if side.skip:
        start: Node = (0, 0, "data", side.skip, None)
    elif side.terminator:
        start = (0, 0, "term", side.partial == "\r", None)
    else:
        start = (0, 0, "line", side.partial, None)
    stack: list[Node] = [start]
    while stack and len(found) < 2 and steps < MAX_STEPS:
        steps += 1
        i, b, kind, val, pieces = stack.pop()
        rem = n - b
        if rem < size - i or rem > size - i + total - nl(i) + 2:
            continue  # the rest cannot be this many bytes
        children: list[Node] = []
        if i == size:  # what is left: hidden CRs at the very end (tcpdump's last-two-bytes rule)
            if rem == 0 or (rem == 1 and ((kind == "term" and val is False) or (kind == "line" and val))):
                found.append(_join(("\r" * rem, pieces)))
            continue
        if kind == "data":
            r = int(val)  # type: ignore[call-overload]
            if r >= rem:  # the packet ends inside the value (or with it): the rest is value
                children.append((size, n, "data", r - rem, (_cr(text[i:], rem - (size - i)), pieces)))
            else:  # the value ends here, then its CRLF: each line end inside is one or two bytes
                cands = []
                q = min(i + r, size)
                inside = nl(q) - nl(i)  # line ends in text[i:q]
                while q >= i and (q - i) + inside + (2 if q == size else 0) >= r:
                    if q == size or text[q] == "\n":
                        cands.append(q)
                    q -= 1
                    inside -= q >= i and text[q] == "\n"
                for q in reversed(cands):  # the most CRLFs first (cached HTTP, text)
                    children.append((q, b + r, "term", False, (_cr(text[i:q], r - (q - i)), pieces)))
        elif kind == "term":
            if text[i] == "\n":
                children.append((i + 1, b + (1 if val else 2), "line", "", ("\n" if val else "\r\n", pieces)))
        else:
            partial = str(val)
            j = text.find("\n", i)
            if j < 0:
                content = partial + text[i:]
                if plausible_line(content, direction, complete=False):
                    children.append((size, b + size - i, "line", content, (text[i:], pieces)))
            else:
                content = partial + text[i:j]
                if partial.endswith("\r"):
                    if j == i:
                        children.append(_after_line(content[:-1], i + 1, b + 1, "\n", pieces, direction))
                elif plausible_line(content, direction, complete=True):
                    children.append(
                        _after_line(content, j + 1, b + j - i + 2, text[i:j] + "\r\n", pieces, direction)
                    )
                    if bare_lf:  # memcached takes a bare LF after a command
                        children.append(
                            _after_line(content, j + 1, b + j - i + 1, text[i:j] + "\n", pieces, direction)
                        )
        stack.extend(reversed(children))
    if not found:
        return None
    return Solved(found[0], len(set(found)) > 1 or steps >= MAX_STEPS)


def _after_line(content: str, i: int, b: int, piece: str, pieces: object, direction: str | None):
    size = data_size(content.split(), direction)
    if size is None:
        return (i, b, "line", "", (piece, pieces))
    if size == 0:
        return (i, b, "term", False, (piece, pieces))
    return (i, b, "data", size, (piece, pieces))


def _cr(span: str, hidden: int) -> str:
    """A value's bytes: `hidden` CRs put back before its first line ends (then at its end)."""
    if hidden <= 0:
        return span
    out = span.replace("\n", "\r\n", hidden)
    return out + "\r" * (hidden - span.count("\n")) if hidden > span.count("\n") else out


def _join(linked: object) -> str:
    parts: list[str] = []
    while isinstance(linked, tuple):
        parts.append(linked[0])
        linked = linked[1]
    return "".join(reversed(parts))
