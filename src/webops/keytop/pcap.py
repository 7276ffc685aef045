"""Read a saved capture (pcap or pcapng, e.g. `tcpdump -w`) with dpkt: no privileges needed.

TCP payloads are put back in order per direction (retransmitted bytes are skipped) and handed to
the same protocol decoder as captured text.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import dpkt

from .events import Event
from .protocol import Connection


def _packets(path: str) -> Iterator[tuple[float, bytes, int]]:
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        link = reader.datalink()
        for ts, buf in reader:
            yield ts, buf, link


def _ip(buf: bytes, link: int):
    if link == dpkt.pcap.DLT_EN10MB:
        return dpkt.ethernet.Ethernet(buf).data
    if link == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL(buf).data
    if link in (dpkt.pcap.DLT_RAW, 101):
        return dpkt.ip.IP(buf) if buf[:1] and buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
    if link == dpkt.pcap.DLT_NULL:
        return dpkt.loopback.Loopback(buf).data
    raise ValueError(f"unsupported link type {link}")


def _addr(ip, raw: bytes) -> str:
    family = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
    return socket.inet_ntop(family, raw)


def read_pcap(path: str, port: int) -> Iterator[Event]:
    """Events of every memcached conversation on `port` in the capture file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such capture file")
    conns: dict[frozenset[tuple[str, int]], Connection] = {}
    next_seq: dict[tuple[tuple[str, int], tuple[str, int]], int] = {}
    try:
        for _ts, buf, link in _packets(path):
            try:
                ip = _ip(buf, link)
            except (dpkt.UnpackError, ValueError):
                continue
            tcp = getattr(ip, "data", None)
            if not isinstance(tcp, dpkt.tcp.TCP) or not tcp.data or port not in (tcp.sport, tcp.dport):
                continue
            src, dst = (_addr(ip, ip.src), tcp.sport), (_addr(ip, ip.dst), tcp.dport)
            data = bytes(tcp.data)
            expected = next_seq.get((src, dst))
            if expected is not None:
                overlap = (expected - tcp.seq) % 2**32
                if overlap < 2**31:  # retransmitted bytes: keep only the new part
                    data = data[overlap:] if overlap < len(data) else b""
            next_seq[(src, dst)] = (tcp.seq + len(tcp.data)) % 2**32
            if not data:
                continue
            conn = conns.setdefault(frozenset((src, dst)), Connection())
            direction = "req" if tcp.dport == port else "resp"
            yield from conn.feed(data.decode("utf-8", "surrogateescape"), direction)
    except (dpkt.NeedData, dpkt.UnpackError, ValueError) as e:
        raise ValueError(f"{path}: not a readable pcap/pcapng capture ({e})") from e
    for conn in conns.values():
        yield from conn.finish()
