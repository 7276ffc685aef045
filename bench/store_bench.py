"""What the embedded store costs, and how its answers compare with graphite-web's.

1. webops against graphite-web: N series (1,000 by default) of one value a minute over 24 h, the
   same values written into a webops store (through the Store API, then served by a real `webops
   statsd`) and into carbon's whisper files (Debian's python3-whisper, run by Debian's Python;
   carbon-cache running beside graphite-web, which asks its cache as deployed), with webops's
   default retentions (10s:6h,1m:7d,10m:1y: 24 h is read from the 1 min archive on both). Time
   to the full HTTP answer (median of --runs, after one warm-up), the servers' CPU, the answers'
   sizes, for the N-series wildcard over 24 h, one series over 24 h and /metrics/find of the
   N-leaf node; both answers must hold as many series and non-null points, or the comparison is
   void (exit 1).
2. The store alone at the default maxSeries and beyond: for N series (500,000 and 2,000,000 by
   default), the first flush (which creates them), then steady flushes: CPU and wall time each
   (does it keep up with a 10 s flush?), the writer's memory per series, the disk, and the time
   to render one series over 24 h and a 1,000-series wildcard (JSON, the HTTP aside).

Prints figures; asserts nothing but the comparison's fairness.
Usage: python bench/store_bench.py [--compare N] [--runs R] [--series N ...] [--flushes F] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from fleet_bench import machine
from statsd_bench import HOST, cpu_seconds, free_port
from statsd_bench import start as start_daemon

from webops.statsd.http import Request
from webops.statsd.store import graphite_api
from webops.statsd.store.db import Store
from webops.statsd.store.retention import Point, describe, schemas

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' graphite-web helper
from tests.graphite_web import GRAPHITE_WEB, SYSTEM_PYTHON, carbon_and_web

T0 = 1_795_467_600
FLUSH_MS = 10_000
DAY = 86_400
MINUTE = 60
RENDER_MAX_POINTS = 100_000_000
# both sides' files in memory when there is a tmpfs: the reads are timed, not the disk (other
# benchmarks on the machine made SQLite's checkpoints and whisper's writes wait on it)
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None

# --- 1. webops against graphite-web on the same data ----------------------------------------

# Run by Debian's Python (python3-whisper): one file per series, with the store's retentions,
# every point averaged into the coarser archives (xFilesFactor 0: one value a minute fills a
# minute, as it does in the store, where the 10 s archive holds one flush in six).
WRITE_WHISPER = """
import json, os, sys, whisper
job = json.load(sys.stdin)
for name, points in job["series"].items():
    path = os.path.join(job["dir"], *name.split(".")) + ".wsp"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    whisper.create(path, job["archives"], xFilesFactor=0, aggregationMethod="average")
    whisper.update_many(path, points, now=job["now"])
"""


def leaves(n: int) -> list[str]:
    """N leaves under one node: the wildcard and /metrics/find's N-leaf node."""
    return [f"stats.gauges.bench.api{i}" for i in range(n)]


def value(series: int, ts: int) -> float:
    """A series' value at `ts`: varied, with the long decimals an average has."""
    return (series * 7919 + ts // MINUTE) % 10_000 / 7


def minutes(since: int, until: int) -> range:
    """The whole minutes from `since` to `until` (epoch seconds), both included."""
    return range(since - since % MINUTE, until + 1, MINUTE)


def fill_store(path: Path, paths: list[str], slots: range) -> None:
    """One flush a minute into a webops store with the default retentions of a 10 s flush."""
    store = Store(path, schemas([], FLUSH_MS))
    try:
        for ts in slots:
            store.write(
                ts * 1000, MINUTE * 1000, (Point(p, value(i, ts), "average") for i, p in enumerate(paths))
            )
    finally:
        store.close()


def fill_whisper(whisper_dir: Path, paths: list[str], slots: range, now: int) -> None:
    archives = [(a.step // 1000, a.points) for a in schemas([], FLUSH_MS)[-1].archives]
    series = {p: [(ts, value(i, ts)) for ts in slots] for i, p in enumerate(paths)}
    job = {"dir": str(whisper_dir), "archives": archives, "series": series, "now": now}
    subprocess.run([SYSTEM_PYTHON, "-c", WRITE_WHISPER], input=json.dumps(job), text=True, check=True)


@dataclass
class Timed:
    """One query against one server: median wall and server CPU seconds, the answer's size, and
    what it holds (series or nodes, non-null points and their sum)."""

    wall: float
    cpu: float
    size: int
    series: int
    points: int
    total: float


def timed(port: int, pids: list[int], path: str, params: dict[str, str], runs: int) -> Timed:
    """The full HTTP answer (a new connection each time, as a dashboard's panels ask), once to warm
    up, then `runs` times: medians."""
    url = f"http://{HOST}:{port}{path}?{urlencode(params)}"
    walls, cpus, body = [], [], b""
    for run in range(runs + 1):
        cpu, started = cpu_seconds(pids), time.perf_counter()
        with urllib.request.urlopen(url, timeout=600) as r:
            body = r.read()
        if run:
            walls.append(time.perf_counter() - started)
            cpus.append(cpu_seconds(pids) - cpu)
    answer = json.loads(body)
    points = [p[0] for s in answer for p in s.get("datapoints", []) if p[0] is not None]
    return Timed(
        statistics.median(walls), statistics.median(cpus), len(body), len(answer), len(points), sum(points)
    )


@dataclass
class Query:
    label: str
    path: str
    params: dict[str, str]


def queries(paths: list[str], since: int, until: int) -> list[Query]:
    window = {"from": str(since), "until": str(until), "format": "json"}
    return [
        Query(f"/render {len(paths):,} series 24h", "/render", {"target": "stats.gauges.bench.*", **window}),
        Query("/render 1 series 24h", "/render", {"target": paths[0], **window}),
        Query(f"/metrics/find {len(paths):,} leaves", "/metrics/find", {"query": "stats.gauges.bench.*"}),
    ]


@contextmanager
def webops_daemon(store_dir: Path) -> Iterator[tuple[int, list[int]]]:
    """A real `webops statsd` serving `store_dir`'s history: (HTTP port, pids to charge CPU to)."""
    http_port = free_port()
    target = start_daemon(
        "webops",
        None,
        {
            "flushInterval": FLUSH_MS,
            "backends": ["store"],
            "store": {"dir": str(store_dir)},
            # the default 1,000,000 refuses 1,000 series over 24 h at 1 min (1,440,000 points)
            "http": {"address": HOST, "port": http_port, "renderMaxPoints": RENDER_MAX_POINTS},
        },
    )
    try:
        yield http_port, [target.proc.pid]
    finally:
        target.stop()


def compare(n: int, runs: int) -> bool:
    """Print the side-by-side table; False if the two answers differ in what they hold."""
    missing = [
        what
        for what, there in (
            ("graphite-web", GRAPHITE_WEB.exists()),
            ("carbon-cache", shutil.which("carbon-cache") is not None),
        )
        if not there
    ]
    if missing:
        print(
            f"webops vs graphite-web: skipped, {' and '.join(missing)} not installed"
            " (apt-get install graphite-web graphite-carbon)"
        )
        return True
    archives = schemas([], FLUSH_MS)[-1].archives
    until = (int(time.time()) - MINUTE // 2) // MINUTE * MINUTE
    # never on a whole minute: whisper's 10 s ring (6 h) would put the newest minute and the one
    # 6 h before it in one slot, and that older minute would never reach the 1 min archive
    now = until + MINUTE // 2
    since = until - DAY
    paths = leaves(n)
    slots = minutes(since - 10 * MINUTE, until)
    with tempfile.TemporaryDirectory(prefix="store-bench-", dir=SCRATCH) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        fill_store(root / "store" / "store.sqlite", paths, slots)
        filled = time.perf_counter() - started
        with carbon_and_web(root / "graphite", describe(archives)) as (carbon, web):
            started = time.perf_counter()
            fill_whisper(carbon.whisper_dir, paths, slots, now)
            print(
                f"webops vs graphite-web ({_version('graphite-web')}, carbon-cache beside it), {machine()}:\n"
                f"  {n:,} series, one value a minute over 24 h, retentions {describe(archives)}"
                " (24 h from the 1 min archive on both);"
                f" written in {filled:.1f} s (store), {time.perf_counter() - started:.1f} s (whisper)\n"
                f"  files in {SCRATCH or tempfile.gettempdir()};"
                f" webops's http.renderMaxPoints {RENDER_MAX_POINTS:,};"
                f" full HTTP answer, median of {runs} after one warm-up;"
                " CPU: the server's (graphite-web's with carbon-cache's)"
            )
            assert web.proc is not None and carbon.proc is not None
            theirs = [
                timed(web.port, [web.proc.pid, carbon.proc.pid], q.path, q.params, runs)
                for q in queries(paths, since, until)
            ]
        with webops_daemon(root / "store") as (port, pids):
            ours = [timed(port, pids, q.path, q.params, runs) for q in queries(paths, since, until)]
    head = ["", "webops ms", "graphite-web ms", "ratio", "webops CPU ms", "gw CPU ms", "webops KiB", "gw KiB"]
    widths = (26, 10, 16, 7, 14, 10, 11, 8)
    print(
        " ".join(
            f"{h:>{w}}" if i else f"  {h:<{w}}" for i, (h, w) in enumerate(zip(head, widths, strict=True))
        )
    )
    fair = True
    for q, a, b in zip(queries(paths, since, until), ours, theirs, strict=True):
        same = (a.series, a.points) == (b.series, b.points) and abs(a.total - b.total) <= 1e-6 * max(
            1.0, abs(b.total)
        )
        fair &= same
        print(
            f"  {q.label:<26} {a.wall * 1000:>10.1f} {b.wall * 1000:>16.1f} {b.wall / a.wall:>6.1f}x"
            f" {a.cpu * 1000:>14.0f} {b.cpu * 1000:>10.0f} {a.size / 1024:>11,.0f} {b.size / 1024:>8,.0f}"
            f"   series {a.series:,} / {b.series:,}, points {a.points:,} / {b.points:,}"
            + ("" if same else "  DIFFER")
        )
    print("  ratio: graphite-web's time over webops's (above 1: webops answers faster)")
    return fair


def _version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    return f"{package} {out.stdout}" if out.returncode == 0 else package


# --- 2. the store alone at scale --------------------------------------------------------------


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
    ap.add_argument("--compare", type=int, default=1000, help="series compared with graphite-web")
    ap.add_argument("--runs", type=int, default=5, help="timed answers per query and server")
    ap.add_argument(
        "--series", type=int, nargs="*", default=[500_000, 2_000_000], help="none: no scale table"
    )
    ap.add_argument("--flushes", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="the comparison alone, 20 series, 2 runs")
    args = ap.parse_args()
    if args.quick:
        args.compare, args.runs, args.series = 20, 2, []
    fair = compare(args.compare, args.runs)
    if args.series:
        print()
        scale(args.series, args.flushes)
    if not fair:
        raise SystemExit(
            "webops and graphite-web answered different series or points: the times do not compare"
        )


def scale(series: list[int], flushes: int) -> None:
    retentions = describe(schemas([], FLUSH_MS)[-1].archives)
    print(f"retentions {retentions}, {FLUSH_MS // 1000} s flushes, one value a series")
    head = ["series", "create s", "flush CPU s", "flush wall s", "keeps up", "MiB/1M series", "disk MiB"]
    head += ["1 series 24h", "1,000 series", "find host0.*"]
    widths = (10, 9, 12, 13, 9, 14, 9, 13, 13, 13)
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    for n in series:
        with tempfile.TemporaryDirectory() as tmp:
            gc.collect()
            before = rss_mib()
            store = Store(Path(tmp) / "store.sqlite", schemas([], FLUSH_MS))
            names = [f"stats.timers.host{i // 1000}.api{i % 1000}.mean" for i in range(n)]
            start = time.perf_counter()
            store.write(T0 * 1000, FLUSH_MS, (Point(name, 1.0, "average") for name in names))
            create = time.perf_counter() - start
            cpu, wall = [], []
            for f in range(1, flushes + 1):
                start, started = time.process_time(), time.perf_counter()
                store.write(
                    (T0 + 10 * f) * 1000, FLUSH_MS, (Point(name, float(f), "average") for name in names)
                )
                cpu.append(time.process_time() - start)
                wall.append(time.perf_counter() - started)
            del names
            gc.collect()
            memory = (rss_mib() - before) / n * 1_000_000
            now = T0 + 10 * flushes + 10
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
