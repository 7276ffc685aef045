"""How a transaction is shown (the seed's two lines, headers, or JSON) and the exit summary."""

from __future__ import annotations

import json
import math
from collections import Counter

from .parse import Counts, Transaction

INDENT = " " * 12
RESET, RED, YELLOW, GREEN = "\033[0m", "\033[31m", "\033[33m", "\033[32m"


def text(t: Transaction, req_headers: bool, resp_headers: bool, color: bool, slow_ms: float) -> str:
    time_text = "-" if t.time_ms is None else f"{t.time_ms:.3f} ms"
    if color and t.time_ms is not None:
        shade = RED if t.time_ms >= slow_ms else YELLOW if t.time_ms >= slow_ms / 10 else GREEN
        time_text = f"{shade}{time_text}{RESET}"
    notes = []
    if t.esi_parent is not None:
        level = f", level {t.esi_level}" if t.esi_level else ""
        notes.append(f"(ESI of {t.esi_parent}{level})")
    if t.restarts:
        notes.append(f"(restarted {t.restarts}x as {t.url})")
    if t.backend is not None and t.backend.retries:
        notes.append(f"(fetch retried {t.backend.retries}x)")
    if t.bgfetch is not None:
        notes.append("(grace: refreshed in the background)")
    url = t.first_url or t.url
    # what the log does not say is `-`, as varnishncsa has it (a request refused as garbage has no
    # client, method or URL), so that the columns stay where a reader or `awk` expects them
    first = f"{t.client or '-'} => {t.method or '-'} {url or '-'} {t.protocol or '-'} {t.handling or '-'}"
    lines = [
        f"{first} {' '.join(notes)}".rstrip(),
        f"{INDENT}<= {t.status or '-'} {t.reason or '-'} {time_text}",
    ]
    if req_headers:
        lines += [f"   req.http.{name} = {value}" for name, value in t.req_headers]
    if resp_headers:
        if req_headers:
            lines.append(" ")
        if t.backend is not None:
            lines += [f"   beresp.http.{name} = {value}" for name, value in t.backend.resp_headers]
        lines += [f"   resp.http.{name} = {value}" for name, value in t.resp_headers]
    return "\n".join(lines) + "\n"


def as_json(t: Transaction) -> str:
    def headers(pairs: list[tuple[str, str]]) -> list[list[str]]:
        return [[n, v] for n, v in pairs]

    record = {
        "vxid": t.vxid,
        "client": t.client,
        "client_port": t.client_port,
        "method": t.method,
        "url": t.first_url or t.url,
        "protocol": t.protocol,
        "handling": t.handling,
        "status": t.status,
        "reason": t.reason,
        "time_ms": t.time_ms,
        "time_us": t.time_us,
        "start": t.start,
        "req_headers": headers(t.req_headers),
        "resp_headers": headers(t.resp_headers),
        "esi_parent": t.esi_parent,
        "esi_level": t.esi_level,
        "restarts": t.restarts,
        "restarted_as": t.url if t.restarts else None,
        "bgfetch": t.bgfetch,
        "backend": None,
    }
    if b := t.backend:
        record["backend"] = {
            "vxid": b.vxid,
            "method": b.method,
            "url": b.url,
            "status": b.status,
            "reason": b.reason,
            "time_ms": b.time_ms,
            "time_us": b.time_us,
            "retries": b.retries,
            "req_headers": headers(b.req_headers),
            "resp_headers": headers(b.resp_headers),
        }
    return json.dumps(record) + "\n"


class Summary:
    """What was seen and shown. Times go into log-spaced buckets (1 % wide), so percentiles cost
    constant memory however long it runs, within 1 % of the exact value."""

    GROWTH = math.log(1.01)

    def __init__(self) -> None:
        self.shown = 0
        self.esi = 0
        self.hits = self.misses = self.passes = 0
        self.status: Counter[str] = Counter()
        self.buckets: Counter[int] = Counter()
        self.timed = 0

    def add(self, t: Transaction) -> None:
        self.shown += 1
        if t.esi_parent is not None:  # a part of a page, not a client request: not in the ratios
            self.esi += 1
            return
        self.hits += t.handling == "HIT"
        self.misses += t.handling == "MISS"
        self.passes += t.handling == "PASS"
        self.status[t.status or "-"] += 1
        if t.time_ms is not None and math.isfinite(t.time_ms):
            self.buckets[math.floor(math.log(max(t.time_ms, 0.001)) / self.GROWTH)] += 1
            self.timed += 1

    def percentile(self, p: float) -> float | None:
        if not self.timed:
            return None
        rank = math.ceil(p / 100 * self.timed)
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                return math.exp((bucket + 0.5) * self.GROWTH)
        return None

    def render(self, counts: Counts) -> str:
        lookups = self.hits + self.misses
        ratio = f"{100 * self.hits / lookups:.1f}%" if lookups else "-"
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.status.items()))
        pcts = "  ".join(
            f"p{p} {v:.3f} ms" if (v := self.percentile(p)) is not None else f"p{p} -" for p in (50, 90, 99)
        )
        esi = f", {counts.esi} ESI subrequests ({self.esi} shown)" if counts.esi else ""
        return (
            f"vlogdump: {counts.transactions} transactions seen, {self.shown - self.esi} shown{esi}; "
            f"hit ratio {ratio} ({self.hits} hits, {self.misses} misses, {self.passes} passes); "
            f"status {statuses or '-'}; {pcts}; "
            f"{counts.unjoined} shown without their backend fetch, "
            f"{counts.fetches_dropped} backend fetches without their request, "
            f"{counts.incomplete} incomplete dropped, {counts.bad_lines} bad lines skipped"
            + (
                f", {counts.records_dropped} header records over a transaction's cap dropped"
                if counts.records_dropped
                else ""
            )
            + "\n"
        )
