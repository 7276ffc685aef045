"""varnishlog text (Varnish 6.x/7.x, `-g vxid` or `-g request`) -> one joined record per request.

Only transactions still being read are kept: a transaction is handed on at its `End` record and
forgotten, client requests are joined with their backend fetch through `Link`, and every holding
area is capped (oldest dropped and counted), so memory stays flat on an endless pipe.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

_HEADER = re.compile(r"^(\*+)\s+<<\s+(\w+)\s+>>\s+(\d+)")
NOTHING: list = []  # shared empty result; never appended to

HANDLINGS = {"HIT": "HIT", "MISS": "MISS", "PASS": "PASS", "PIPE": "PIPE", "SYNTH": "SYNTH"}
RECORDS = frozenset(
    {  # the tags Transaction.record uses; the others are skipped unparsed
        "ReqHeader",
        "BereqHeader",
        "RespHeader",
        "BerespHeader",
        "ReqUnset",
        "BereqUnset",
        "RespUnset",
        "BerespUnset",
        "ReqMethod",
        "BereqMethod",
        "ReqURL",
        "BereqURL",
        "ReqProtocol",
        "BereqProtocol",
        "RespStatus",
        "BerespStatus",
        "RespReason",
        "BerespReason",
        "ReqStart",
        "VCL_call",
        "Link",
        "Timestamp",
    }
)


@dataclass
class Transaction:
    vxid: int
    kind: str  # Request, BeReq, Session, ...
    client: str = ""
    client_port: str = ""
    method: str = ""
    url: str = ""
    protocol: str = ""
    status: str = ""
    reason: str = ""
    handling: str = ""
    time_ms: float | None = None
    start: float | None = None
    req_headers: list[tuple[str, str]] = field(default_factory=list)
    resp_headers: list[tuple[str, str]] = field(default_factory=list)
    link: int | None = None  # the backend fetch of a client request
    backend: Transaction | None = None

    def record(self, tag: str, value: str) -> None:
        """Apply one log record. Unknown tags are ignored (there are many, and more each release)."""
        if tag in ("ReqHeader", "BereqHeader"):
            self.req_headers.append(_header(value))
        elif tag in ("RespHeader", "BerespHeader"):
            self.resp_headers.append(_header(value))
        elif tag in ("ReqUnset", "BereqUnset"):
            _unset(self.req_headers, value)
        elif tag in ("RespUnset", "BerespUnset"):
            _unset(self.resp_headers, value)
        elif tag in ("ReqMethod", "BereqMethod"):
            self.method = value
        elif tag in ("ReqURL", "BereqURL"):
            self.url = value
        elif tag in ("ReqProtocol", "BereqProtocol"):
            self.protocol = value
        elif tag in ("RespStatus", "BerespStatus"):
            self.status = value
        elif tag in ("RespReason", "BerespReason"):
            self.reason = value
        elif tag == "ReqStart":
            parts = value.split()
            if len(parts) >= 2:
                self.client, self.client_port = parts[0], parts[1]
        elif tag == "VCL_call" and value in HANDLINGS:
            self.handling = HANDLINGS[value]
        elif tag == "Link":
            parts = value.split()
            if len(parts) >= 2 and parts[0] == "bereq" and parts[1].isdigit():
                self.link = int(parts[1])
        elif tag == "Timestamp":
            self._timestamp(value)

    def _timestamp(self, value: str) -> None:
        label, _, rest = value.partition(":")
        parts = rest.split()
        try:
            if label == "Start" and parts:
                self.start = float(parts[0])
            elif label in ("Resp", "BerespBody", "Retry", "Error") and len(parts) >= 2:
                self.time_ms = float(parts[1]) * 1000
        except ValueError:
            pass


def _header(value: str) -> tuple[str, str]:
    name, _, v = value.partition(":")
    return name.strip(), v.strip()


def _unset(headers: list[tuple[str, str]], value: str) -> None:
    pair = _header(value)
    for i in range(len(headers) - 1, -1, -1):
        if headers[i] == pair:
            del headers[i]
            return


@dataclass
class Counts:
    transactions: int = 0  # client requests completed
    incomplete: int = 0  # transactions dropped before their End (cap, or end of input)
    bad_lines: int = 0
    unjoined: int = 0  # requests shown without their backend fetch (it never came)


class LogParser:
    """Feed varnishlog lines; get back completed client requests, joined with their backend fetch."""

    def __init__(self, max_pending: int = 10_000) -> None:
        self.max_pending = max_pending
        self.open: OrderedDict[int, Transaction] = OrderedDict()  # read, not ended yet
        self.levels: dict[int, int] = {}  # nesting level -> vxid (-g request nests with ** / --)
        self.waiting: OrderedDict[int, Transaction] = (
            OrderedDict()
        )  # requests awaiting their bereq, by bereq vxid
        self.fetched: OrderedDict[int, Transaction] = OrderedDict()  # bereqs that ended before their request
        self.counts = Counts()

    def feed(self, line: str) -> list[Transaction]:
        """One line of varnishlog output; returns the requests it completed (usually none)."""
        first = line[:1]
        if first == "-":  # a record: the hot path, kept free of regular expressions
            body = line.lstrip("-")
            vxid = self.levels.get(len(line) - len(body))
            txn = self.open.get(vxid) if vxid is not None else None
            parts = body.split(None, 1)
            if txn is None or not parts:
                self.counts.bad_lines += 1  # garbled, or a record of a transaction we never saw start
                return NOTHING
            tag = parts[0]
            if tag == "End":
                del self.open[txn.vxid]
                return self._ended(txn)
            if tag in RECORDS:
                txn.record(tag, parts[1].rstrip() if len(parts) > 1 else "")
            return NOTHING
        if first == "*" and (m := _HEADER.match(line)):
            vxid = int(m.group(3))
            self.levels[len(m.group(1))] = vxid
            self._open(Transaction(vxid, m.group(2)))
        elif line.strip():
            self.counts.bad_lines += 1
        return NOTHING

    def _open(self, txn: Transaction) -> None:
        if txn.vxid in self.open:
            self.counts.incomplete += 1  # the same vxid again: the first one never ended
        self.open[txn.vxid] = txn
        while len(self.open) > self.max_pending:
            self.open.popitem(last=False)
            self.counts.incomplete += 1

    def _ended(self, txn: Transaction) -> list[Transaction]:
        if txn.kind == "BeReq":
            request = self.waiting.pop(txn.vxid, None)
            if request is not None:
                request.backend = txn
                return [request]
            self._hold(self.fetched, txn.vxid, txn)
            return NOTHING
        if txn.kind != "Request":
            return NOTHING
        self.counts.transactions += 1
        if txn.link is None:
            return [txn]
        backend = self.fetched.pop(txn.link, None)
        if backend is not None:
            txn.backend = backend
            return [txn]
        late = self._hold(self.waiting, txn.link, txn)
        self.counts.unjoined += len(late)
        return late

    def _hold(self, area: OrderedDict[int, Transaction], key: int, txn: Transaction) -> list[Transaction]:
        area[key] = txn
        evicted = []
        while len(area) > self.max_pending:
            evicted.append(area.popitem(last=False)[1])
        return evicted if area is self.waiting else []

    def finish(self) -> Iterator[Transaction]:
        """End of input: requests still waiting for a fetch are shown; unfinished ones are dropped."""
        self.counts.incomplete += len(self.open)
        self.open.clear()
        for txn in self.waiting.values():
            self.counts.unjoined += 1
            yield txn
        self.waiting.clear()
        self.fetched.clear()
