"""Per-key counts with bounded memory, sliding-window rates and a distinct-key estimate.

Memory stays bounded with millions of distinct keys: at most `max_keys` keys are tracked. When a
new key would pass that, the least-called quarter is forgotten at once (amortized O(1) a key),
and the calls each forgotten key had are added to a count-min sketch (1 MiB). A key that comes
back starts from zero and is marked approximate, its calls possibly short by what the sketch
holds for it: an upper bound of what it had before (a sketch never underestimates), usually
exact, rather than the largest count ever forgotten. Keys called more often than anything
forgotten are never touched, so the top of the table is exact. Distinct keys are counted exactly
until the first forgetting, and estimated with a HyperLogLog (about 1 % error) after.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from .events import Event

WINDOW = 10  # seconds of the sliding window for calls/s and bytes/s
MAX_SERVERS_PER_KEY = 8


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
    ring_bytes: list[int] = field(default_factory=lambda: [0] * WINDOW)
    ring_sec: list[int] = field(default_factory=lambda: [0] * WINDOW)
    servers: set[str] = field(default_factory=set)

    def window(self, now: float, started: float) -> tuple[float, float]:
        """(calls/s, bytes/s) over the last WINDOW seconds, or since `started` if that is later
        (so the first seconds are not under-reported)."""
        sec = int(now)
        span = max(1.0, min(WINDOW, now - started))
        calls = sum(n for n, s in zip(self.ring, self.ring_sec, strict=True) if sec - s < WINDOW)
        volume = sum(n for n, s in zip(self.ring_bytes, self.ring_sec, strict=True) if sec - s < WINDOW)
        return calls / span, volume / span

    @property
    def value_size(self) -> float:
        """Average value size: bytes read per hit and written per set."""
        n = self.hits + self.sets
        return (self.read + self.written) / n if n else 0.0


def _tick(e: Entry, sec: int, calls: int, volume: int) -> None:
    i = sec % WINDOW
    if e.ring_sec[i] != sec:
        e.ring_sec[i] = sec
        e.ring[i] = e.ring_bytes[i] = 0
    e.ring[i] += calls
    e.ring_bytes[i] += volume


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


class CountMinSketch:
    """Upper bounds of the calls of forgotten keys: 4 rows of 65,536 counters (1 MiB)."""

    DEPTH, WIDTH = 4, 1 << 16

    def __init__(self) -> None:
        self.rows = [[0] * self.WIDTH for _ in range(self.DEPTH)]

    def _cells(self, key: str) -> list[int]:
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        h1, h2 = int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:], "little") | 1
        return [(h1 + i * h2) % self.WIDTH for i in range(self.DEPTH)]

    def add(self, key: str, count: int) -> None:
        for row, cell in zip(self.rows, self._cells(key), strict=True):
            row[cell] += count

    def estimate(self, key: str) -> int:
        return min(row[cell] for row, cell in zip(self.rows, self._cells(key), strict=True))


class KeyTable:
    def __init__(self, max_keys: int = 100_000, started: float = 0.0) -> None:
        self.max_keys = max_keys
        self.started = started  # the wall-clock time the counting began (for the first window)
        self.entries: dict[str, Entry] = {}
        self.forgotten = 0
        self.evicted = CountMinSketch()
        self.distinct = HyperLogLog()
        self.total = Entry("")

    def add(self, ev: Event, now: float) -> None:
        if not self.started:
            self.started = now
        entry = self.entries.get(ev.key)
        if entry is None:
            if len(self.entries) >= self.max_keys:
                self._forget()
            error = self.evicted.estimate(ev.key) if self.forgotten else 0
            entry = self.entries[ev.key] = Entry(ev.key, error=error)
            self.distinct.add(ev.key)
        sec = int(now)
        for e in (entry, self.total):
            if ev.call or ev.read or ev.written:
                _tick(e, sec, int(ev.call), ev.read + ev.written)
            e.calls += ev.call
            e.hits += ev.hit
            e.misses += ev.miss
            e.sets += ev.set
            e.read += ev.read
            e.written += ev.written
        if ev.server and len(entry.servers) < MAX_SERVERS_PER_KEY:
            entry.servers.add(ev.server)

    def _forget(self) -> None:
        ranked = sorted(self.entries.values(), key=lambda e: e.calls, reverse=True)
        keep, gone = ranked[: self.max_keys * 3 // 4], ranked[self.max_keys * 3 // 4 :]
        for e in gone:
            self.evicted.add(e.key, e.calls)
        self.forgotten += len(gone)
        self.entries = {e.key: e for e in keep}

    @property
    def distinct_keys(self) -> int:
        return len(self.entries) if not self.forgotten else self.distinct.estimate()

    SORTS = {
        "calls": lambda e, now, t0: e.calls,
        "hits": lambda e, now, t0: e.hits,
        "misses": lambda e, now, t0: e.misses,
        "sets": lambda e, now, t0: e.sets,
        "bytes": lambda e, now, t0: e.read + e.written,
        "rate": lambda e, now, t0: e.window(now, t0)[0],
        "bandwidth": lambda e, now, t0: e.window(now, t0)[1],
        "size": lambda e, now, t0: e.value_size,
        "key": lambda e, now, t0: e.key,
    }

    def rows(
        self, sort: str = "calls", limit: int = 40, now: float = 0.0, reverse: bool = False
    ) -> list[dict]:
        """The top `limit` keys by `sort`, largest first (the key sort: alphabetical); `reverse`
        turns the order round."""
        keyfn = self.SORTS[sort]
        descending = (sort != "key") != reverse
        started = self.started or now
        top = sorted(self.entries.values(), key=lambda e: keyfn(e, now, started), reverse=descending)[:limit]
        total_calls = self.total.calls or 1
        out = []
        for e in top:
            rate, bandwidth = e.window(now, started)
            out.append(
                {
                    "key": e.key,
                    "calls": e.calls,
                    "hits": e.hits,
                    "misses": e.misses,
                    "sets": e.sets,
                    "bytes_read": e.read,
                    "bytes_written": e.written,
                    "value_size": round(e.value_size, 1),
                    "calls_per_s": round(rate, 3),
                    "bytes_per_s": round(bandwidth, 1),
                    "share": round(e.calls / total_calls, 6),
                    "servers": sorted(e.servers),
                    "approximate": e.error > 0,
                    "max_error": e.error,
                }
            )
        return out

    def totals(self, now: float) -> dict:
        t = self.total
        lookups = t.hits + t.misses
        rate, bandwidth = t.window(now, self.started or now)
        return {
            "calls": t.calls,
            "hits": t.hits,
            "misses": t.misses,
            "sets": t.sets,
            "bytes_read": t.read,
            "bytes_written": t.written,
            "calls_per_s": round(rate, 3),
            "bytes_per_s": round(bandwidth, 1),
            "hit_ratio": t.hits / lookups if lookups else None,
            "distinct_keys": self.distinct_keys,
            "distinct_exact": not self.forgotten,
            "tracked_keys": len(self.entries),
            "forgotten_keys": self.forgotten,
            "max_error": max((e.error for e in self.entries.values()), default=0),
        }
