"""Read a saved capture (pcap or pcapng, e.g. `tcpdump -w`, `-i any` too) with dpkt: no
privileges needed.

TCP payloads are put back in order per direction: retransmitted bytes are skipped, segments that
arrive early wait (up to REORDER_MAX bytes a direction) for the ones before them. What a capture
does not hold (a gap that never fills, the end of a truncated file) is counted and said, and
everything before it is still read.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

from .events import Event
from .protocol import Connection, unconfirmed_note

REORDER_MAX = 1 << 20  # bytes of early segments held per direction
LINKTYPE_LINUX_SLL2 = 276  # tcpdump -i any on Linux (libpcap >= 1.10)


@dataclass
class CaptureReport:
    """What the capture did not let keytop see."""

    packets: int = 0
    cut_short: int = 0  # packets whose bytes end before their headers say (truncated file, snaplen)
    missing_bytes: int = 0  # stream bytes never captured (gaps), or held past REORDER_MAX
    truncated: str = ""  # why reading stopped before the end of the file
    joined: int = 0  # connections already open when the capture began
    notes: list[str] = field(default_factory=list)


def _packets(path: str, report: CaptureReport) -> Iterator[tuple[bytes, int]]:
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        try:
            reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        except (dpkt.NeedData, dpkt.UnpackError, ValueError) as e:
            raise ValueError(f"{path}: not a readable pcap/pcapng capture ({e})") from e
        link = reader.datalink()
        it = iter(reader)
        while True:
            try:
                _ts, buf = next(it)
            except StopIteration:
                return
            except (dpkt.NeedData, dpkt.UnpackError, ValueError, EOFError) as e:
                report.truncated = f"the file ends inside a packet ({type(e).__name__})"
                return
            report.packets += 1
            yield buf, link


def _ip(buf: bytes, link: int):
    if link == dpkt.pcap.DLT_EN10MB:
        return dpkt.ethernet.Ethernet(buf).data
    if link == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(buf).data
    if link == LINKTYPE_LINUX_SLL2:
        return dpkt.sll2.SLL2(buf).data
    if link in (dpkt.pcap.DLT_RAW, 101):
        return dpkt.ip.IP(buf) if buf[:1] and buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
    if link == dpkt.pcap.DLT_NULL:
        return dpkt.loopback.Loopback(buf).data
    raise ValueError(f"unsupported link type {link}")


def _addr(ip, raw: bytes) -> str:
    family = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
    return socket.inet_ntop(family, raw)


class Stream:
    """One direction of a TCP connection, put back in order."""

    def __init__(self) -> None:
        self.next: int | None = None  # the sequence number of the next byte to deliver
        self.early: dict[int, bytes] = {}  # segments past a gap, by sequence number
        self.held = 0

    def add(self, seq: int, data: bytes, report: CaptureReport) -> bytes:
        """The bytes that can be delivered in order now."""
        if self.next is None:
            self.next = seq
        out = b""
        offset = (seq - self.next) % 2**32
        if offset >= 2**31:  # starts before what was delivered: keep only the new part
            data = data[(self.next - seq) % 2**32 :]
            offset = 0
        if offset > 0:  # a gap before it: hold it
            if seq not in self.early:
                self.early[seq] = data
                self.held += len(data)
            if self.held > REORDER_MAX:  # the gap will not fill: skip it, say so
                out += self._skip_gap(report)
            return out + self._drain(report)
        out += data
        self.next = (self.next + len(data)) % 2**32
        return out + self._drain(report)

    def _drain(self, report: CaptureReport) -> bytes:
        out = b""
        progress = True
        while progress and self.early:
            progress = False
            for seq in list(self.early):
                assert self.next is not None
                offset = (seq - self.next) % 2**32
                if offset == 0 or offset >= 2**31:
                    data = self.early.pop(seq)
                    self.held -= len(data)
                    if offset >= 2**31:
                        data = data[(self.next - seq) % 2**32 :]
                    out += data
                    self.next = (self.next + len(data)) % 2**32
                    progress = True
        return out

    def _skip_gap(self, report: CaptureReport) -> bytes:
        assert self.next is not None
        nearest = min(self.early, key=lambda s: (s - self.next) % 2**32)  # type: ignore[operator]
        report.missing_bytes += (nearest - self.next) % 2**32
        self.next = nearest
        return b""

    def close(self, report: CaptureReport) -> bytes:
        """End of capture: deliver what waits behind gaps, counting the gaps."""
        out = b""
        while self.early:
            self._skip_gap(report)
            out += self._drain(report)
        return out


def read_pcap(path: str, port: int, report: CaptureReport | None = None) -> Iterator[Event]:
    """Events of every memcached conversation on `port` in the capture file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such capture file")
    report = report if report is not None else CaptureReport()
    conns: dict[frozenset[tuple[str, int]], Connection] = {}
    streams: dict[tuple[tuple[str, int], tuple[str, int]], Stream] = {}
    for buf, link in _packets(path, report):
        try:
            ip = _ip(buf, link)
        except (dpkt.UnpackError, dpkt.NeedData):
            report.cut_short += 1
            continue
        if isinstance(ip, dpkt.ip.IP) and len(bytes(ip)) < ip.len:
            report.cut_short += 1
        tcp = getattr(ip, "data", None)
        if not isinstance(tcp, dpkt.tcp.TCP) or port not in (tcp.sport, tcp.dport):
            continue
        src, dst = (_addr(ip, ip.src), tcp.sport), (_addr(ip, ip.dst), tcp.dport)
        stream = streams.setdefault((src, dst), Stream())
        flow = frozenset((src, dst))
        if tcp.flags & dpkt.tcp.TH_SYN:
            stream.next = (tcp.seq + 1) % 2**32
            if not tcp.flags & dpkt.tcp.TH_ACK or flow not in conns:  # a connection that starts now
                conns[flow] = Connection()
            continue
        if flow not in conns:  # already open when the capture began: picked up at a command
            conns[flow] = Connection(synced=False)
            report.joined += 1
        if not tcp.data:
            continue
        data = stream.add(tcp.seq, bytes(tcp.data), report)
        if data:
            direction = "req" if tcp.dport == port else "resp"
            yield from conns[flow].feed(data.decode("latin-1"), direction, boundary=True)
    for (src, dst), stream in streams.items():
        rest = stream.close(report)
        if rest:
            conn = conns.setdefault(frozenset((src, dst)), Connection())
            yield from conn.feed(rest.decode("latin-1"), "req" if dst[1] == port else "resp", boundary=True)
    for conn in conns.values():
        yield from conn.finish()
    skipped = sum(c.skipped for c in conns.values())
    unmatched = sum(c.unmatched for c in conns.values())
    if unconfirmed := sum(c.unconfirmed for c in conns.values()):
        report.notes.append(f"{path}: {unconfirmed_note(unconfirmed)}")
    if report.joined:
        report.notes.append(
            f"{path}: {report.joined} connection(s) already open when the capture began: read from their"
            " first packet that starts a command or reply"
        )
    if skipped:
        report.notes.append(f"{path}: {skipped} bytes skipped (the middle of a value)")
    if unmatched:
        report.notes.append(
            f"{path}: {unmatched} reply(ies) to requests the capture did not show were not counted"
        )
    if report.truncated:
        report.notes.append(f"{path}: truncated: {report.truncated}; read {report.packets} packets before it")
    if report.cut_short:
        report.notes.append(
            f"{path}: {report.cut_short} packet(s) cut short (a truncated file or a small snaplen):"
            " what they held is not counted"
        )
    if report.missing_bytes:
        report.notes.append(f"{path}: {report.missing_bytes} bytes of the conversations were not captured")
