"""varnishlog text (Varnish 6.x/7.x, `-g vxid`, `-g request` or `-g session`) -> one joined
record per client request.

Only transactions still being read are kept: a transaction is handed on at its `End` record and
forgotten. A client request is handed on as soon as it ends, joined with its backend fetch when
that is already read; otherwise it waits for it at most `join_wait` seconds (of log time, or of
wall time with nothing to read: `expire`), then goes out without it, counted. What Varnish does
to one request is shown as one record: a retried fetch joins with its last attempt (the one whose
response the client got), a restart merges into the request it restarted, a grace hit is shown at
once (its background fetch is not its response), and an ESI subrequest is marked with its parent
and level. Every holding area is capped (oldest dropped and counted), and so is what one
transaction keeps (`MAX_HEADERS` header records, `MAX_HEADER_BYTES` of them: a transaction that
never ends cannot grow without bound; the excess is dropped and counted), so memory stays flat on
an endless pipe. Nesting of any depth is read (`**`, `***`, `*4*`, `-4-`, ...).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

NOTHING: list = []  # shared empty result; never appended to
MAX_LEVEL = 1000  # deeper nesting than any Varnish writes (max_esi_depth) is junk
CLOCK_SLACK = 0.01  # seconds; a fetch starts while its request runs (same clock, logged to the µs)
JOIN_WAIT = 2.0  # seconds a request waits for a backend fetch that is not in the stream yet
# Headers one transaction keeps: Varnish holds at most http_max_hdr (64 by default, 65,535 at most)
# in a workspace of some KiB, so more is not a real transaction; the excess records are dropped
MAX_HEADERS = 10_000
MAX_HEADER_BYTES = 1 << 20
HEADER_TAGS = frozenset({"ReqHeader", "BereqHeader", "RespHeader", "BerespHeader"})

HANDLINGS = {"HIT": "HIT", "MISS": "MISS", "PASS": "PASS", "PIPE": "PIPE", "SYNTH": "SYNTH"}
END_LABELS = frozenset({"Resp", "PipeSess", "BerespBody"})  # varnishncsa's end of a transaction
JOINED_LINKS = frozenset({"fetch", "pass", "pipe"})  # a bgfetch is not the response the client got
RECORDS = frozenset(
    {  # the tags Transaction.record uses; the others are skipped unparsed
        "Begin",
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


def _number(text: str) -> int | None:
    """A vxid or a level: ASCII digits only, at most 20 (a 64-bit number). Binary junk has other
    digits (`²`, `٣`) that str.isdigit() accepts and int() refuses, or thousands of them."""
    return int(text) if 0 < len(text) <= 20 and text.isascii() and text.isdigit() else None


def _seconds(text: str) -> float | None:
    """A Timestamp field (epoch seconds), or None when it is not a finite number."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _level(marker: str) -> int | None:
    """`*`, `**`, `---` -> 1, 2, 3; `*4*`, `-12-` -> 4, 12 (Varnish's notation from level 4 on)."""
    inner = marker[1:-1]
    level = _number(inner) if inner.isdigit() else len(marker) if marker.strip(marker[0]) == "" else None
    return level if level is not None and level <= MAX_LEVEL else None  # junk: no endless level table


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
    time_ms: float | None = None  # time_us / 1000
    time_us: int | None = None  # varnishncsa's %D (see `settle_time`)
    start: float | None = None  # the first `Timestamp Start` (with restarts: the client's arrival)
    ended: float | None = None  # the first `Timestamp Resp`, `PipeSess` or `BerespBody`
    req_headers: list[tuple[str, str]] = field(default_factory=list)
    resp_headers: list[tuple[str, str]] = field(default_factory=list)
    link: int | None = None  # the backend fetch of a client request (fetch, pass, pipe)
    backend: Transaction | None = None
    parent: int | None = None  # Begin: the transaction this one was started for
    begun: str = ""  # why it began (Begin): rxreq, restart, esi, fetch, bgfetch, retry, ...
    bgfetch: int | None = None  # a grace hit's background fetch (not joined)
    restart_to: int | None = None  # the request this one restarted as
    retry_to: int | None = None  # the fetch attempt after this one
    restarts: int = 0  # how many times the client request was restarted before this
    asked_url: str = ""  # the first ReqURL: what the client asked for (VCL may change it)
    first_url: str = ""  # with restarts: the URL the client asked for
    retries: int = 0  # fetch attempts before the one shown
    esi_level: int | None = 0  # 0: a client request; n: an ESI subrequest n includes deep (None: unknown)
    last_ts: float = 0.0  # the latest log time seen in it (epoch seconds)
    header_records: int = 0  # header records read (kept or not): capped at MAX_HEADERS
    header_bytes: int = 0  # and their length: capped at MAX_HEADER_BYTES

    @property
    def esi_parent(self) -> int | None:
        return self.parent if self.begun == "esi" else None

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
            self.asked_url = self.asked_url or value
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
            self._link(value.split())
        elif tag == "Begin":
            parts = value.split()
            if len(parts) >= 3 and (parent := _number(parts[1])) is not None:
                self.parent, self.begun = parent, parts[2]
        elif tag == "Timestamp":
            self._timestamp(value)

    def _link(self, parts: list[str]) -> None:
        vxid = _number(parts[1]) if len(parts) >= 3 else None
        if vxid is None:
            return
        kind, reason = parts[0], parts[2]
        if kind == "bereq" and reason in JOINED_LINKS:
            self.link = vxid
        elif kind == "bereq" and reason == "bgfetch":
            self.bgfetch = vxid
        elif kind == "bereq" and reason == "retry":
            self.retry_to = vxid
        elif kind == "req" and reason == "restart":
            self.restart_to = vxid

    def _timestamp(self, value: str) -> None:
        """`Timestamp Label: absolute since-start since-previous`. Only the absolute time is used,
        as varnishncsa uses it: the first `Start` and the first `Resp` (client), `PipeSess` (pipe)
        or `BerespBody` (backend fetch) of the transaction."""
        label, _, rest = value.partition(":")
        parts = rest.split(None, 1)
        at = _seconds(parts[0]) if parts else None
        if at is None:
            return
        self.last_ts = max(self.last_ts, at)
        if label == "Start":
            if self.start is None:
                self.start = at
        elif label in END_LABELS and self.ended is None:
            self.ended = at

    def settle_time(self) -> None:
        """At `End`: the time as varnishncsa's `%D` has it, to the microsecond: the end timestamp
        minus the start one, truncated; 0 when the transaction never got to an end timestamp (a
        request refused as garbage, a fetch that failed); none without a start."""
        if self.start is None:
            return
        took = ((self.ended if self.ended is not None else self.start) - self.start) * 1e6
        if math.isfinite(took):
            self.time_us = int(took)
            self.time_ms = self.time_us / 1000


def _fetched_for(request: Transaction, fetch: Transaction) -> bool:
    """Whether `fetch` can be the backend fetch of `request`, by the clock: it starts while the
    request runs. Vxids start over when varnishd restarts, so a vxid alone can join a request
    with a fetch left over from before the restart (or the other way round)."""
    if request.start is None or fetch.start is None:
        return True  # nothing to tell by
    return request.start - CLOCK_SLACK <= fetch.start <= request.last_ts + CLOCK_SLACK


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
    transactions: int = 0  # client requests completed (restarts merged, ESI subrequests apart)
    esi: int = 0  # ESI subrequests completed
    incomplete: int = 0  # transactions dropped before their End (cap, or end of input)
    records_dropped: int = 0  # header records over one transaction's cap (MAX_HEADERS, MAX_HEADER_BYTES)
    bad_lines: int = 0
    unjoined: int = 0  # requests shown without their backend fetch (it never came in time)
    fetches_dropped: int = 0  # backend fetches whose request never came (--max-pending, end of input)


@dataclass
class Waiting:
    txn: Transaction
    log_deadline: float  # log time after which it goes out without its fetch
    wall_deadline: float


class LogParser:
    """Feed varnishlog lines; get back completed client requests, joined with their backend fetch."""

    def __init__(self, max_pending: int = 10_000, join_wait: float = JOIN_WAIT) -> None:
        self.max_pending = max_pending
        self.join_wait = join_wait
        self.open: OrderedDict[int, Transaction] = OrderedDict()  # read, not ended yet
        self.levels: dict[int, int] = {}  # nesting level -> vxid (-g request nests with ** / --)
        self.waiting: OrderedDict[int, Waiting] = OrderedDict()  # requests awaiting their bereq vxid
        self.fetched: OrderedDict[int, Transaction] = OrderedDict()  # bereqs ended before their request
        self.retried: OrderedDict[int, tuple[int, int]] = OrderedDict()  # next attempt -> (first, tries)
        self.restarted: OrderedDict[int, Transaction] = OrderedDict()  # restart vxid -> the request
        self.depth: OrderedDict[int, int] = OrderedDict()  # ESI depth of requests ended or open
        self.unwanted: OrderedDict[int, None] = OrderedDict()  # fetches of restarted requests
        self.clock = 0.0  # the latest log time read
        self.counts = Counts()

    def feed(self, line: str) -> list[Transaction]:
        """One line of varnishlog output; returns the requests it completed (usually none)."""
        first = line[:1]
        if first == "-":  # a record: the hot path, kept free of regular expressions
            if line[1:2] == " ":  # level 1, the usual case
                level: int | None = 1
                body = line[2:]
            else:
                marker, _, body = line.partition(" ")
                level = _level(marker)
            vxid = self.levels.get(level) if level is not None else None
            txn = self.open.get(vxid) if vxid is not None else None
            parts = body.split(None, 1)
            if txn is None or not parts:
                self.counts.bad_lines += 1  # garbled, or a record of a transaction we never saw start
                return NOTHING
            tag = parts[0]
            if tag == "End":
                del self.open[txn.vxid]
                txn.settle_time()
                return self._ended(txn)
            if tag in HEADER_TAGS:
                txn.header_records += 1
                txn.header_bytes += len(body)
                if txn.header_records > MAX_HEADERS or txn.header_bytes > MAX_HEADER_BYTES:
                    self.counts.records_dropped += 1
                    return NOTHING
            if tag in RECORDS:
                txn.record(tag, parts[1].rstrip() if len(parts) > 1 else "")
                if tag == "Begin" and txn.begun == "esi":  # one level below its parent, if known
                    parent = self.depth.get(txn.parent) if txn.parent is not None else None
                    txn.esi_level = parent + 1 if parent is not None else None
            return NOTHING
        if first == "*":
            words = line.split()
            # `*   << Request  >> 12`: marker, <<, kind, >>, vxid
            if len(words) >= 5 and words[1] == "<<" and words[3] == ">>":
                level = _level(words[0])
                vxid = _number(words[4])
                if level is not None and vxid is not None:
                    self.levels[level] = vxid
                    self._open(Transaction(vxid, words[2]))
                    return NOTHING
        if line.strip():
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
        out = self._expired_by_log(txn.last_ts) if txn.last_ts > self.clock else []
        if txn.kind == "BeReq":
            return out + self._fetch_ended(txn)
        if txn.kind == "Request":
            return out + self._request_ended(txn)
        return out

    def _fetch_ended(self, txn: Transaction) -> list[Transaction]:
        first, tries = self.retried.pop(txn.vxid, (txn.vxid, 0))
        txn.retries = tries
        if txn.retry_to is not None:  # not the response the client got: wait for the next attempt
            self._cap(self.retried, txn.retry_to, (first, tries + 1))
            return NOTHING
        if first in self.unwanted:  # the fetch of a request that restarted: not what was delivered
            del self.unwanted[first]
            return NOTHING
        if txn.begun == "bgfetch":
            return NOTHING  # a grace hit's refresh: the hit was shown already
        waiting = self.waiting.pop(first, None)
        stale: list[Transaction] = []
        if waiting is not None and _fetched_for(waiting.txn, txn):
            waiting.txn.backend = txn
            return [waiting.txn]
        if waiting is not None:  # a request from before a varnishd restart (vxids start over)
            self.counts.unjoined += 1
            stale = [waiting.txn]
        if self._cap(self.fetched, first, txn):
            self.counts.fetches_dropped += 1
        return stale or NOTHING

    def _request_ended(self, txn: Transaction) -> list[Transaction]:
        if txn.begun == "restart" and (before := self.restarted.pop(txn.vxid, None)) is not None:
            txn.restarts = before.restarts + 1
            txn.first_url = before.first_url or before.asked_url
            txn.client, txn.client_port = txn.client or before.client, txn.client_port or before.client_port
            txn.start = before.start if before.start is not None else txn.start
        if txn.restart_to is not None:  # what the client gets comes from the restarted request
            if txn.link is not None and self.fetched.pop(txn.link, None) is None:
                self._cap(self.unwanted, txn.link, None)
            if self._cap(self.restarted, txn.restart_to, txn):
                self.counts.incomplete += 1
            return NOTHING
        self._cap(self.depth, txn.vxid, txn.esi_level if txn.esi_level is not None else 1)
        if txn.begun == "esi":
            self.counts.esi += 1
        else:
            self.counts.transactions += 1
        if txn.link is None:
            return [txn]
        backend = self.fetched.pop(txn.link, None)
        if backend is not None and _fetched_for(txn, backend):
            txn.backend = backend
            return [txn]
        if backend is not None:  # a fetch from before a varnishd restart: its own request never came
            self.counts.fetches_dropped += 1
        late = []
        if (stale := self.waiting.pop(txn.link, None)) is not None:  # from before a varnishd restart
            late.append(stale.txn)
            self.counts.unjoined += 1
        self.waiting[txn.link] = Waiting(txn, txn.last_ts + self.join_wait, time.monotonic() + self.join_wait)
        while len(self.waiting) > self.max_pending:
            late.append(self.waiting.popitem(last=False)[1].txn)
            self.counts.unjoined += 1
        return late

    def _cap(self, area: OrderedDict, key: int, value) -> bool:
        """Hold `value`; True if the area was full and its oldest entry was dropped."""
        area[key] = value
        if len(area) > self.max_pending:
            area.popitem(last=False)
            return True
        return False

    def _expired_by_log(self, now: float) -> list[Transaction]:
        self.clock = now
        late = [k for k, w in self.waiting.items() if w.log_deadline < now]
        return self._give_up(late)

    def expire(self, now: float | None = None) -> list[Transaction]:
        """Requests that waited `join_wait` seconds of wall time for a fetch (call it when the input
        is quiet: log time does not move then)."""
        now = time.monotonic() if now is None else now
        return self._give_up([k for k, w in self.waiting.items() if w.wall_deadline <= now])

    def _give_up(self, keys: list[int]) -> list[Transaction]:
        out = [self.waiting.pop(k).txn for k in keys]
        self.counts.unjoined += len(out)
        return out

    def finish(self) -> Iterator[Transaction]:
        """End of input: requests still waiting for a fetch are shown; unfinished ones are dropped."""
        self.counts.incomplete += len(self.open) + len(self.restarted)
        self.open.clear()
        for waiting in self.waiting.values():
            self.counts.unjoined += 1
            yield waiting.txn
        self.counts.fetches_dropped += len(self.fetched)
        self.waiting.clear()
        self.fetched.clear()
        self.retried.clear()
        self.restarted.clear()
        self.unwanted.clear()
