"""What the embedded store costs a flush: CPU per flush and disk for N series, and the time
to render one series over 24 h and a 1,000-series wildcard (JSON, the HTTP aside).
Prints figures; asserts nothing.
Usage: python bench/store_bench.py [--series N ...] [--flushes F]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from webops.statsd.http import Request
from webops.statsd.store import graphite_api
from webops.statsd.store.db import Store
from webops.statsd.store.retention import DEFAULT_RETENTIONS, schemas

T0 = 1_795_467_600


def render(store: Store, target: str, now: int) -> float:
    """Seconds for /render's answer (JSON, 24 h), without the HTTP around it."""
    request = Request("GET", "/render", {"target": [target], "from": ["-24h"]})
    start = time.perf_counter()
    status, _, body = graphite_api.render(store, request, now)
    assert status == 200, body
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--flushes", type=int, default=12)
    args = ap.parse_args()
    print(f"retentions {DEFAULT_RETENTIONS}, 10 s flushes")
    head = ["series", "CPU ms/flush", "% of a core", "disk MiB", "1 series, 24 h", "1,000 series"]
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (8, 13, 12, 9, 15, 13), strict=True)))
    for n in args.series:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "store.sqlite", schemas([]))
            names = [f"stats.timers.host{i // 1000}.api{i % 1000}.mean" for i in range(n)]
            store.write(T0, ((name, 1.0) for name in names))  # the series are created
            cpu = []
            for f in range(1, args.flushes + 1):
                start = time.process_time()
                store.write(T0 + 10 * f, ((name, float(f)) for name in names))
                cpu.append(time.process_time() - start)
            now = T0 + 10 * args.flushes + 10

            one = render(store, names[0], now)
            wide = render(store, "stats.timers.host0.*.mean", now)  # 1,000 series
            per = statistics.median(cpu)
            mib = store.disk_bytes() / 2**20
            print(
                f"{n:>8,} {per * 1000:>13.0f} {per / 10 * 100:>11.2f}% {mib:>9.0f} "
                f"{one * 1000:>12.1f} ms {wide * 1000:>10.0f} ms"
            )
            store.close()


if __name__ == "__main__":
    main()
