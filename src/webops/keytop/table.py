"""Per-key counts with bounded memory, sliding-window rates and a distinct-key estimate.

Memory stays bounded with millions of distinct keys: at most `max_keys` keys are tracked. When a
new key would pass that, the least-called quarter is forgotten at once (amortized O(1) a key).
Keys called more often than anything ever forgotten are never touched, so the top of the table
is exact; a key that is forgotten and comes back restarts from zero, and every key tracked since
the first forgetting is marked approximate, its call count possibly short by at most the largest
count forgotten so far (`floor`). Distinct keys are counted exactly until then, and estimated
with a HyperLogLog (about 1 % error) after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .events import Event

WINDOW = 10  # seconds of the sliding window for calls/s


@dataclass
class Entry:
    key: str
    calls: int = 0
    hits: int = 0
    misses: int = 0
    sets: int = 0
    read: int = 0
    written: int = 0
    error: int = 0  # calls this key may have had while it was not tracked
    ring: list[int] = field(default_factory=lambda: [0] * WINDOW)
    ring_sec: list[int] = field(default_factory=lambda: [0] * WINDOW)

    def rate(self, now: float) -> float:
        sec = int(now)
        return sum(n for n, s in zip(self.ring, self.ring_sec, strict=True) if sec - s < WINDOW) / WINDOW


def _tick(entry_ring: list[int], entry_sec: list[int], sec: int) -> None:
    i = sec % WINDOW
    if entry_sec[i] != sec:
        entry_sec[i] = sec
        entry_ring[i] = 0
    entry_ring[i] += 1


class HyperLogLog:
    """Distinct count in 16 KiB whatever the number of keys (Flajolet et al., 2007)."""

    P = 14
    M = 1 << P

    def __init__(self) -> None:
        self.registers = bytearray(self.M)

    def add(self, item: str) -> None:
        h = hash(item) & 0xFFFFFFFFFFFFFFFF
        index = h >> (64 - self.P)
        rest = (h << self.P) & 0xFFFFFFFFFFFFFFFF
        rank = 64 - self.P + 1 if rest == 0 else (64 - rest.bit_length()) + 1
        if rank > self.registers[index]:
            self.registers[index] = rank

    def estimate(self) -> int:
        m = self.M
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / sum(2.0**-r for r in self.registers)
        zeros = self.registers.count(0)
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))
        return round(raw)


class KeyTable:
    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self.entries: dict[str, Entry] = {}
        self.floor = 0  # the largest call count ever forgotten
        self.forgotten = 0
        self.distinct = HyperLogLog()
        self.total = Entry("")

    def add(self, ev: Event, now: float) -> None:
        entry = self.entries.get(ev.key)
        if entry is None:
            if len(self.entries) >= self.max_keys:
                self._forget()
            entry = self.entries[ev.key] = Entry(ev.key, error=self.floor)
            self.distinct.add(ev.key)
        for e in (entry, self.total):
            if ev.call:
                e.calls += 1
                _tick(e.ring, e.ring_sec, int(now))
            e.hits += ev.hit
            e.misses += ev.miss
            e.sets += ev.set
            e.read += ev.read
            e.written += ev.written

    def _forget(self) -> None:
        ranked = sorted(self.entries.values(), key=lambda e: e.calls, reverse=True)
        keep, gone = ranked[: self.max_keys * 3 // 4], ranked[self.max_keys * 3 // 4 :]
        if gone:
            self.floor = max(self.floor, gone[0].calls + gone[0].error)
            self.forgotten += len(gone)
            self.entries = {e.key: e for e in keep}

    @property
    def distinct_keys(self) -> int:
        return len(self.entries) if not self.forgotten else self.distinct.estimate()

    SORTS = {
        "calls": lambda e, now: e.calls,
        "hits": lambda e, now: e.hits,
        "misses": lambda e, now: e.misses,
        "bytes": lambda e, now: e.read + e.written,
        "rate": lambda e, now: e.rate(now),
        "key": lambda e, now: e.key,
    }

    def rows(self, sort: str = "calls", limit: int = 40, now: float = 0.0) -> list[dict]:
        keyfn = self.SORTS[sort]
        top = sorted(self.entries.values(), key=lambda e: keyfn(e, now), reverse=sort != "key")[:limit]
        total_calls = self.total.calls or 1
        return [
            {
                "key": e.key,
                "calls": e.calls,
                "hits": e.hits,
                "misses": e.misses,
                "sets": e.sets,
                "bytes_read": e.read,
                "bytes_written": e.written,
                "calls_per_s": e.rate(now),
                "share": e.calls / total_calls,
                "approximate": e.error > 0,
            }
            for e in top
        ]

    def totals(self, now: float) -> dict:
        t = self.total
        lookups = t.hits + t.misses
        return {
            "calls": t.calls,
            "hits": t.hits,
            "misses": t.misses,
            "sets": t.sets,
            "bytes_read": t.read,
            "bytes_written": t.written,
            "calls_per_s": t.rate(now),
            "hit_ratio": t.hits / lookups if lookups else None,
            "distinct_keys": self.distinct_keys,
            "distinct_exact": not self.forgotten,
            "tracked_keys": len(self.entries),
            "forgotten_keys": self.forgotten,
            "max_error": self.floor,
        }
