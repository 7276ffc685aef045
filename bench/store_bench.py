"""What the embedded store costs at the default maxSeries and beyond: for N series (500,000 and
2,000,000 by default), the first flush (which creates them), then steady flushes: CPU and wall
time each (does it keep up with a 10 s flush?), the writer's memory per series, the disk, and
the time to render one series over 24 h and a 1,000-series wildcard (JSON, the HTTP aside).
Prints figures; asserts nothing.
Usage: python bench/store_bench.py [--series N ...] [--flushes F]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import tempfile
import time
from pathlib import Path

from webops.statsd.http import Request
from webops.statsd.store import graphite_api
from webops.statsd.store.db import Store
from webops.statsd.store.retention import Point, describe, schemas

T0 = 1_795_467_600
FLUSH_MS = 10_000


def render(store: Store, target: str, now: int) -> float:
    """Seconds for /render's answer (JSON, 24 h), without the HTTP around it."""
    request = Request("GET", "/render", {"target": [target], "from": ["-24h"]})
    start = time.perf_counter()
    status, _, body = graphite_api.render(store, request, now)
    assert status == 200, body
    return time.perf_counter() - start


def find(store: Store, query: str, now: int) -> float:
    """Seconds for /metrics/find's answer (treejson), without the HTTP around it."""
    request = Request("GET", "/metrics/find", {"query": [query]})
    start = time.perf_counter()
    status, _, body = graphite_api.find_nodes(store, request, now)
    assert status == 200, body
    return time.perf_counter() - start


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, nargs="+", default=[500_000, 2_000_000])
    ap.add_argument("--flushes", type=int, default=3)
    args = ap.parse_args()
    retentions = describe(schemas([], FLUSH_MS)[-1].archives)
    print(f"retentions {retentions}, {FLUSH_MS // 1000} s flushes, one value a series")
    head = ["series", "create s", "flush CPU s", "flush wall s", "keeps up", "MiB/1M series", "disk MiB"]
    head += ["1 series 24h", "1,000 series", "find host0.*"]
    widths = (10, 9, 12, 13, 9, 14, 9, 13, 13, 13)
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    for n in args.series:
        with tempfile.TemporaryDirectory() as tmp:
            gc.collect()
            before = rss_mib()
            store = Store(Path(tmp) / "store.sqlite", schemas([], FLUSH_MS))
            names = [f"stats.timers.host{i // 1000}.api{i % 1000}.mean" for i in range(n)]
            start = time.perf_counter()
            store.write(T0 * 1000, FLUSH_MS, (Point(name, 1.0, "average") for name in names))
            create = time.perf_counter() - start
            cpu, wall = [], []
            for f in range(1, args.flushes + 1):
                start, started = time.process_time(), time.perf_counter()
                store.write(
                    (T0 + 10 * f) * 1000, FLUSH_MS, (Point(name, float(f), "average") for name in names)
                )
                cpu.append(time.process_time() - start)
                wall.append(time.perf_counter() - started)
            del names
            gc.collect()
            memory = (rss_mib() - before) / n * 1_000_000
            now = T0 + 10 * args.flushes + 10
            one = render(store, "stats.timers.host0.api0.mean", now)
            wide = statistics.median(render(store, "stats.timers.host0.*.mean", now) for _ in range(3))
            found = statistics.median(find(store, "stats.timers.host0.*", now) for _ in range(5))
            per, took = statistics.median(cpu), statistics.median(wall)
            keeps_up = "yes" if took < FLUSH_MS / 1000 else "no"
            disk = store.disk_bytes() / 2**20
            print(
                f"{n:>10,} {create:>9.1f} {per:>12.2f} {took:>13.2f} {keeps_up:>9} {memory:>14.0f} "
                f"{disk:>9.0f} {one * 1000:>10.1f} ms {wide * 1000:>10.0f} ms {found * 1000:>10.1f} ms"
            )
            store.close()


if __name__ == "__main__":
    main()
