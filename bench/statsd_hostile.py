"""What hostile input costs the statsd core, and what the series limit holds (prints, asserts nothing).

    python bench/statsd_hostile.py

1. Work per line: good lines against the packets that used to be expensive (a 64 KiB line of
   colons, numbers too large for a float), through `Aggregator.ingest`, the code every reader runs.
2. The series limit: memory and flush time at the default `maxSeries` (500,000 counters), and
   what happens past it (refused updates, counted; memory flat).
3. Parse caches under 64 KiB distinct lines: memory stays flat.
4. The real daemon fed 5,000,000 distinct counters over loopback UDP with a 1 s flush: what it
   keeps, what it refuses, its memory, and how long it takes to stop.
5. Shutdown with the graphite backend: SIGTERM to the process group (what systemd and `timeout`
   send) at a random moment of traffic and flushes, 26 times; how long each stop takes.
6. Floods of lines the native fast path leaves to Python (bad lines, several values a line), on
   both hot paths, with a 1 s flush: how late each flush is written, how long the console takes
   to answer, what was shed, what the kernel dropped, and how many good lines sent alongside
   were counted; then Python readers under four times that flood, past what they can parse.
7. CPU per million lines through the native intake (`_native.Intake.feed`, then what the daemon
   does with a batch: to_batch, merge, the slow lane) for the forms real clients send beyond
   `name:value|type`: several values a line, DogStatsD's packed values and extra fields,
   JavaScript's numbers.
   `python bench/statsd_hostile.py forms` runs it alone (PYTHONPATH at another tree's src: its
   extension, for a before/after figure).
"""

from __future__ import annotations

import re
import resource
import socket
import tempfile
import time

from webops.statsd.aggregate import AggregationSettings, Aggregator
from webops.statsd.snapshot import SummarySettings, summarize


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def per_line_cost() -> None:
    good = b"\n".join(b"app%d.requests:1|c" % (i % 50) for i in range(1000))
    cases = {
        "good lines (1,000 a packet)": (good, 1000),
        "p: + 65,000 colons": (b"p:" + b":" * 65_000, 1),
        "hex value of 300 digits": (b"x:0x" + b"f" * 300 + b"|c", 1),
        "sample rate of 300 hex digits": (b"x:1|c|@0x" + b"f" * 300, 1),
    }
    print("1. work per line (Aggregator.ingest, one process)")
    for name, (packet, lines) in cases.items():
        agg = Aggregator()
        rounds = max(1, 200_000 // lines)
        started = time.perf_counter()
        for _ in range(rounds):
            agg.ingest(packet)
        took = time.perf_counter() - started
        cost = took / (rounds * lines) * 1e6
        print(f"   {name:32s} {cost:8.2f} us/line  bad lines: {agg.totals.bad_lines_seen}")


def series_limit() -> None:
    print("2. series limit (maxSeries 500,000 counters)")
    before = rss_mib()
    agg = Aggregator(AggregationSettings(max_series=500_000))
    for start in range(0, 600_000, 1000):
        agg.ingest(b"\n".join(b"series.%d:1|c" % i for i in range(start, start + 1000)))
    at_limit = rss_mib()
    for start in range(600_000, 1_000_000, 1000):
        agg.ingest(b"\n".join(b"series.%d:1|c" % i for i in range(start, start + 1000)))
    print(f"   series kept {agg.series_count():,}, updates refused {agg.totals.metrics_refused:,}")
    print(f"   RSS +{at_limit - before:.0f} MiB at the limit, +{rss_mib() - before:.0f} MiB after 400k more")
    started = time.perf_counter()
    summarize(agg.take(int(time.time())), SummarySettings())
    print(f"   take + summarize of 500k counters: {time.perf_counter() - started:.2f} s")


def cache_memory() -> None:
    print("3. parse caches under 64 KiB distinct lines")
    agg = Aggregator()
    before = rss_mib()
    for i in range(500):  # 500 x 64 KiB = 31 MiB of distinct text
        agg.ingest(b"k%d:" % i + b"1" * 65_000 + b"|c")
    print(f"   RSS +{rss_mib() - before:.0f} MiB after 31 MiB of distinct 64 KiB lines")


def five_million_series() -> None:
    from statsd_bench import HOST, family, pss_mib, settle, start

    print("4. the daemon, 5,000,000 distinct counters at ~250k metrics/s, flushInterval 1000 ms")
    target = start("webops", None, {"flushInterval": 1000})
    pids = family(target.proc.pid)
    base = pss_mib(pids)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        started = time.monotonic()
        for first in range(0, 5_000_000, 25):  # bounded: 200,000 packets to loopback
            s.sendto(
                b"\n".join(b"flood.series.%d:1|c" % i for i in range(first, first + 25)), (HOST, target.port)
            )
            if first % 25_000 == 0:  # pace at ~250k metrics/s
                ahead = started + first / 250_000 - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    settle(target.mgmt_port)
    from statsd_bench import console

    stats = console(target.mgmt_port, "stats")

    def stat(name: str) -> int:
        m = re.search(r"statsd\." + name + r": (\d+)", stats)
        return int(m.group(1)) if m else -1

    print(
        f"   received {stat('metrics_received'):,} metrics; series kept {stat('series'):,}; "
        f"updates refused {stat('metrics_refused'):,}"
    )
    print(f"   PSS {base:.0f} MiB at start, {pss_mib(family(target.proc.pid)):.0f} MiB after")
    stopping = time.monotonic()
    target.stop()
    print(f"   SIGTERM to exit: {time.monotonic() - stopping:.1f} s")


def graphite_shutdowns(runs: int = 26) -> None:
    import json
    import os
    import random
    import signal
    import subprocess
    import sys
    import tempfile
    import threading

    from statsd_bench import HOST, free_port, received

    carbon = socket.create_server((HOST, 0))  # reads everything, closes when the sender does

    def drain(conn: socket.socket) -> None:
        with conn:
            while conn.recv(65536):
                pass

    def accept() -> None:
        while True:
            threading.Thread(target=drain, args=(carbon.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print(f"5. SIGTERM to the process group with the graphite backend, {runs} runs")
    stops = []
    for _ in range(runs):
        port, mgmt_port = free_port(), free_port()
        config = {"port": port, "mgmt_port": mgmt_port, "http": False, "flushInterval": 1000}
        config |= {"backends": ["./backends/graphite"], "graphiteHost": HOST}
        config["graphitePort"] = carbon.getsockname()[1]
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(config, f)
            f.flush()
            cmd = [sys.executable, "-m", "webops", "statsd", f.name]
            proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            while True:
                try:
                    received(mgmt_port)
                    break
                except OSError:
                    time.sleep(0.05)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                until = time.monotonic() + random.uniform(1.0, 3.0)
                while time.monotonic() < until:  # bounded by time: ~500 packets/s to loopback
                    s.sendto(b"a:1|c\nb:2|ms\ng:3|g", (HOST, port))
                    time.sleep(0.002)
            stopping = time.monotonic()
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
            stops.append(time.monotonic() - stopping)
    stops.sort()
    print(
        f"   stop: median {stops[len(stops) // 2]:.2f} s, max {stops[-1]:.2f} s; "
        f"{sum(s > 5 for s in stops)} of {runs} over 5 s"
    )


def _percentiles(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "none"
    mid, p99 = values[len(values) // 2], values[int(len(values) * 0.99)]
    return f"median {mid:.0f}, p99 {p99:.0f}, max {values[-1]:.0f}"


def _watch_flushes(flush_file, late: list[float], done) -> None:
    """When each flush line appears, in ms after its grid second (a 1 s flush is due at :00)."""
    seen = 0
    while not done.is_set():
        lines = flush_file.read_text().splitlines() if flush_file.exists() else []
        now = time.time()
        late.extend((now - int(now)) * 1000 for _ in lines[seen:])
        seen = len(lines)
        time.sleep(0.005)


def _flood(hot_path: str, flood: bytes, seconds: float, rate: int = 50) -> None:
    import json
    import threading
    from pathlib import Path

    from statsd_bench import console, start

    flush_file = Path(tempfile.mkdtemp(prefix="bench-flood-")) / "flush.jsonl"
    extra = {"hotPath": hot_path, "flushInterval": 1000, "backends": ["./backends/file"]}
    target = start("webops", None, extra | {"file": {"path": str(flush_file), "format": "json"}})
    late: list[float] = []
    latency: list[float] = []
    done = threading.Event()
    watcher = threading.Thread(target=_watch_flushes, args=(flush_file, late, done))
    watcher.start()
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        started = time.monotonic()
        while time.monotonic() - started < seconds:  # bounded by time, to loopback
            s.sendto(flood, ("127.0.0.1", target.port))
            s.sendto(b"good:1|c", ("127.0.0.1", target.port))
            sent += 1
            t = time.perf_counter()
            console(target.mgmt_port, "stats")
            latency.append((time.perf_counter() - t) * 1000)
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    time.sleep(2.5)  # the last flushes
    done.set()
    watcher.join()
    stats = console(target.mgmt_port, "stats")
    target.stop()
    flushes = [json.loads(line) for line in flush_file.read_text().splitlines()]
    counted = sum(f["counters"].get("good", 0) for f in flushes)

    def stat(key: str) -> str:
        m = re.search(r"statsd\." + key + r": (\d+)", stats)
        return f"{int(m.group(1)):,}" if m else "?"

    print(f"      flush written ms after its second: {_percentiles(late)}")
    print(f"      console `stats` ms: {_percentiles(latency)}")
    print(
        f"      good lines counted {int(counted):,} of {sent:,}; lines shed {stat('lines_shed')}, "
        f"bad lines parsed {stat('bad_lines_seen')}, kernel drops {stat('udp_kernel_drops')}"
    )


FORMS = {
    "plain: t:12|ms|#env:prod": b"bench.t%d:12|ms|#env:prod",
    "several values: t:1|ms:2|ms:3|ms|@0.5|#env:prod": b"bench.t%d:1|ms:2|ms:3|ms|@0.5|#env:prod",
    "packed values: t:1:2:3|ms": b"bench.t%d:1:2:3|ms",
    "packed, datadog's fields: t:1:2:3|d|@0.5|#env:prod|c:abc": b"bench.t%d:1:2:3|d|@0.5|#env:prod|c:abc",
    "container id: x:1|c|#t:1|c:abc": b"bench.x%d:1|c|#t:1|c:abc",
    "timestamp, external data: g:+2|g|T1700000000|e:it": b"bench.g%d:+2|g|T1700000000|e:it",
    "JS numbers: h:0x1f|h|@ .5": b"bench.h%d:0x1f|h|@ .5",
    "sampled set with tags: s:u1|s|@0.1|#env:prod": b"bench.s%d:u1|s|@0.1|#env:prod",
}


def line_forms(lines: int = 1_000_000) -> None:
    """The daemon's native path minus the socket: datagrams of 30 lines (50 series) fed to an
    intake, taken every 20,000 lines and merged as hotpath.NativePool does. Lines the native
    parser leaves to Python are parsed in the merge's slow lane, as the daemon's event loop would."""
    from webops.statsd import hotpath

    if hotpath._native is None:
        print(f"7. line forms: the native extension is not built ({hotpath.NATIVE_MISSING})")
        return
    settings = AggregationSettings()
    print(f"7. CPU seconds per million lines through the native intake ({hotpath._native.__file__})")
    for name, pattern in FORMS.items():
        packets = [b"\n".join(pattern % ((i + j) % 50) for j in range(30)) for i in range(0, 20_010, 30)]
        agg, intake = Aggregator(settings), hotpath._native.Intake([], 1, 500_000, 100_000)
        fed = 0
        started = time.process_time()
        while fed < lines:
            for p in range(0, len(packets), 64):  # reads of 64 datagrams, as recvmmsg brings them
                intake.feed(packets[p : p + 64], 1.0)
            fed += 30 * len(packets)
            for taken in intake.take():
                agg.merge(hotpath.to_batch(taken, settings))
            agg.advance(force=True)
        cpu = time.process_time() - started
        bad = agg.totals.bad_lines_seen
        print(f"   {name:58s} {cpu / fed * 1e6:6.2f} CPU s / 1M lines  bad lines: {bad}")


def slow_line_floods(seconds: float = 8.0) -> None:
    floods = {
        "bad lines (32,000 a datagram)": b"x\n" * 32_000,
        "several values a line (2,000 lines of 5)": b"m:1|c:2|c:3|ms:4|g:+1|g\n" * 2_000,
    }
    print(f"6. slow-path floods, 50 datagrams/s of 64 KB for {seconds:.0f} s, flushInterval 1000 ms")
    for hot_path in ("native", "python"):
        for name, flood in floods.items():
            print(f"   {hot_path:6s} {name}")
            _flood(hot_path, flood, seconds)
    # past what the reader processes parse (~20 of these datagrams a second each): they shed
    print("   python bad lines (32,000 a datagram) at 200 datagrams/s (each with a good line)")
    _flood("python", floods["bad lines (32,000 a datagram)"], seconds, rate=200)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["floods"]:
        slow_line_floods()
        raise SystemExit(0)
    if sys.argv[1:] == ["forms"]:
        line_forms()
        raise SystemExit(0)
    per_line_cost()
    series_limit()
    cache_memory()
    five_million_series()
    graphite_shutdowns()
    slow_line_floods()
    line_forms()
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
