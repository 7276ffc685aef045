"""What a fleet of webops statsd daemons costs, end to end (prints figures, asserts nothing).

1. relay: N local daemons (one a host, each with its own counters under `fleet.h<N>`) flush to a
   relay that hashes over M carbon-caches (`carbon_ch`, carbon-relay's consistent hashing), once
   with carbon-c-relay (C), once with graphite-carbon's carbon-relay (Python). Figures: datapoints
   the caches wrote per second (their own `committedPoints`), the intake that arrived end to end
   (the counts summed back from the whisper files, exactly: stored = received, or the loss), the
   relay's and the caches' CPU, each daemon's CPU per flush.
2. repeater: the same daemons forward every packet (`repeaterProtocol: tcp`) to one central webops
   that aggregates, against the same daemons flushing their own aggregates: lines/s the central
   absorbs and its loss, the CPU of each side and the bytes on the wire per flush interval.
3. scrape: GET /metrics of one daemon holding 10k and 100k series (half counters, half timers):
   the first scrape after a flush renders the text, the next ones get it as rendered; times, size
   and the daemon's CPU per render.

Everything runs on loopback, on free ports, in temp dirs removed at the end; the senders are
udpblast (C, counters only, so what a daemon counted is exactly what it absorbed).

    python bench/fleet_bench.py --sender PATH [--hosts 3] [--caches 2] [--counters 10000]
                                [--flush 1000] [--seconds 10] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from statsd_bench import HOST, Target, console, cpu_seconds, family, free_port, pack, received, settle, start

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' carbon-cache helper
from tests.servers import Carbon

LINES = 25  # counters a packet


@dataclass
class Args:
    sender: str
    hosts: int
    caches: int
    counters: int
    flush: int  # ms
    seconds: float
    rate: int  # metrics/s offered to each local daemon
    series: list[int]
    drain: float  # seconds the pipeline gets to write everything after the load
    timers: str = "summary"  # how /metrics shows timers (`prometheus.timers`)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs ({model}), {datetime.date.today().isoformat()}"


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) == 0


def blast(sender: str, ports: list[int], seconds: float, rate: int, keys: int) -> list[int]:
    """One udpblast a port, all at once; the metrics each one sent."""
    procs = [
        subprocess.Popen(
            [sender, str(p), str(seconds), str(rate), str(LINES), str(keys)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in ports
    ]
    return [int(p.communicate()[0].split()[1]) for p in procs]


def total(mgmt_port: int, name: str) -> int:
    m = re.search(rf"^{re.escape(name)}: (\d+)", console(mgmt_port, "stats"), re.M)
    return int(m.group(1)) if m else 0


def at_once(calls: list[Callable[[], object]]) -> None:
    """Run the calls in threads (stopping daemons: each waits for its process)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        for f in [pool.submit(call) for call in calls]:
            f.result()


def daemons(stack: ExitStack, configs: list[dict]) -> list[Target]:
    """webops daemons started at once (each takes a second or two), stopped with `stack`."""
    with ThreadPoolExecutor(len(configs)) as pool:
        started = list(pool.map(lambda config: start("webops", None, config), configs))
    stack.callback(at_once, [t.stop for t in started])
    return started


def settled(targets: list[Target]) -> list[int]:
    """The metrics each daemon received, once its count stood still (all at once)."""
    with ThreadPoolExecutor(len(targets)) as pool:
        return list(pool.map(lambda t: settle(t.mgmt_port)[1], targets))


class Cpu:
    """CPU seconds of processes (and their children) since this was made."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(family(pid)) for name, pid in pids.items()}

    def used(self) -> dict[str, float]:
        return {name: cpu_seconds(family(pid)) - self.start[name] for name, pid in self.pids.items()}


# --- 1. local daemons -> relay -> carbon-caches ---------------------------------------------------


def make_caches(count: int, root: Path) -> list[Carbon]:
    """`count` carbon-caches (not started) that report their own figures every second
    (`carbon.agents.*`)."""
    made = [Carbon(root / f"cache{i}", retention="1s:10m") for i in range(count)]
    for c in made:
        with c.conf.open("a") as f:
            f.write("CARBON_METRIC_INTERVAL = 1\n")
    return made


@dataclass
class Relay:
    proc: subprocess.Popen
    ports: list[int]  # it listens once these are open
    settings: dict  # the daemons' graphite settings to send to it
    dropped: str  # its own metric of datapoints dropped, under carbon/relays/<host>/


def c_relay(stores: list[Carbon], root: Path) -> Relay:
    """carbon-c-relay on loopback only (TCP line mode); its own figures every second, into the
    caches (`carbon.relays.*.metricsDropped`: what its full queues threw away)."""
    port = free_port()
    conf = root / "relay.conf"
    members = " ".join(f"{HOST}:{c.port}={chr(97 + i)}" for i, c in enumerate(stores))
    conf.write_text(
        f"listen type linemode transport plain {HOST}:{port} proto tcp;\n"
        f"cluster c carbon_ch {members};\nmatch * send to c;\n"
        "statistics submit every 1 seconds reset counters after interval send to c;\n"
    )
    proc = subprocess.Popen(
        ["carbon-c-relay", "-f", str(conf), "-l", str(root / "relay.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Relay(proc, [port], {"graphiteHost": HOST, "graphitePort": port}, "metricsDropped")


def py_relay(stores: list[Carbon], root: Path) -> Relay:
    """graphite-carbon's carbon-relay, consistent hashing over the caches' pickle ports, its
    defaults otherwise (MAX_QUEUE_SIZE 10000, flow control on); the daemons send it pickle. Its own
    figures go to the caches every second (`carbon.relays.*.destinations.*.fullQueueDrops`)."""
    line, pickle = free_port(), free_port()
    (root / "log").mkdir(parents=True, exist_ok=True)
    conf = root / "carbon.conf"
    destinations = ", ".join(f"{HOST}:{c.pickle_port}:{chr(97 + i)}" for i, c in enumerate(stores))
    conf.write_text(
        f"[cache]\nSTORAGE_DIR = {root}/storage\nLOG_DIR = {root}/log\nPID_DIR = {root}\nUSER =\n"
        "ENABLE_LOGROTATION = False\nCARBON_METRIC_INTERVAL = 1\n"
        f"[relay]\nLINE_RECEIVER_INTERFACE = {HOST}\nLINE_RECEIVER_PORT = {line}\n"
        f"PICKLE_RECEIVER_INTERFACE = {HOST}\nPICKLE_RECEIVER_PORT = {pickle}\n"
        f"RELAY_METHOD = consistent-hashing\nREPLICATION_FACTOR = 1\nDESTINATIONS = {destinations}\n"
    )
    shutil.copy(stores[0].root / "storage-schemas.conf", root)  # carbon reads it even as a relay
    with (root / "relay.out").open("wb") as out:
        proc = subprocess.Popen(
            [
                "carbon-relay",
                f"--config={conf}",
                f"--pidfile={root}/relay.pid",
                "--nodaemon",
                "--logfile=-",
                "start",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    settings = {"graphiteHost": HOST, "graphiteProtocol": "pickle", "graphitePicklePort": pickle}
    return Relay(proc, [line, pickle], settings, "destinations/*/fullQueueDrops")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stored_counts(stores: list[Carbon], hosts: int, since: int) -> list[int]:
    """Each host's counts summed over every flush in the caches' whisper files."""
    per_host: dict[str, float] = {}
    for c in stores:
        for wsp in c.whisper_dir.glob("fleet/*/counters/race/*/count.wsp"):
            name = ".".join(wsp.relative_to(c.whisper_dir).with_suffix("").parts)
            host = name.split(".")[1]
            per_host[host] = per_host.get(host, 0) + sum(c.values(name, since, int(time.time()) + 1).values())
    return [round(per_host.get(f"h{i}", 0)) for i in range(hosts)]


def self_metric(stores: list[Carbon], pattern: str, since: int) -> float:
    """Carbon's own figure (`carbon/agents/*/committedPoints`: a glob of whisper paths) summed
    over the caches and over its per-second points."""
    out = 0.0
    for c in stores:
        for wsp in c.whisper_dir.glob(f"{pattern}.wsp"):
            path = ".".join(wsp.relative_to(c.whisper_dir).with_suffix("").parts)
            out += sum(c.values(path, since, int(time.time()) + 1).values())
    return out


def relay_run(
    args: Args, relay_name: str, make_relay: Callable[[list[Carbon], Path], Relay], root: Path
) -> dict:
    with ExitStack() as stack:
        stores = make_caches(args.caches, root / "caches")
        stack.callback(at_once, [c.stop for c in stores])
        (root / "relay").mkdir()
        relay = make_relay(stores, root / "relay")
        stack.callback(stop, relay.proc)
        proc = relay.proc
        configs = [
            {
                "flushInterval": args.flush,
                "backends": ["./backends/graphite"],
                "graphite": {"legacyNamespace": False, "globalPrefix": f"fleet.h{i}"},
                "deleteCounters": True,  # after the load, nothing more to write: the drain shows
                **relay.settings,
            }
            for i in range(args.hosts)
        ]
        with ThreadPoolExecutor(len(stores) + 2) as pool:  # all at once: each takes seconds to start
            started = [pool.submit(c.start) for c in stores]
            started.append(
                pool.submit(wait_for, lambda: all(map(port_open, relay.ports)), 60, f"{relay_name} to listen")
            )
            locals_ = pool.submit(daemons, stack, configs).result()
            for f in started:
                f.result()
        since = int(time.time()) - 1
        cpu = Cpu(
            {"relay": proc.pid}
            | {f"cache{i}": c.proc.pid for i, c in enumerate(stores) if c.proc}
            | {f"daemon{i}": t.proc.pid for i, t in enumerate(locals_)}
        )
        t0 = time.monotonic()
        sent = blast(args.sender, [t.port for t in locals_], args.seconds, args.rate, args.counters)
        load_end = time.monotonic()
        got = settled(locals_)
        # written: every count the daemons received is in a whisper file, or nothing moved for a while
        deadline, last, since_change = load_end + args.drain, None, time.monotonic()
        while True:
            stored = stored_counts(stores, args.hosts, since)
            if stored == got:
                break
            if stored != last:
                last, since_change = stored, time.monotonic()
            if time.monotonic() > deadline or time.monotonic() - since_change > max(
                10, 5 * args.flush / 1000
            ):
                break
            time.sleep(0.2)
        done = time.monotonic()
        used = cpu.used()
        flushes = (done - t0) / (args.flush / 1000)
        time.sleep(2.5)  # carbon's own figures of the last seconds, written a second later
        return {
            "relay": relay_name,
            "sent": sum(sent),
            "received": sum(got),
            "stored": sum(stored),
            "complete": stored == got,
            "committed": self_metric(stores, "carbon/agents/*/committedPoints", since),
            "relay_dropped": self_metric(stores, f"carbon/relays/*/{relay.dropped}", since),
            "load": load_end - t0,
            "elapsed": done - t0,
            "relay_cpu": used["relay"],
            "caches_cpu": sum(v for k, v in used.items() if k.startswith("cache")),
            "daemon_cpu_per_flush": max(v for k, v in used.items() if k.startswith("daemon")) / flushes,
            "drops": sum(total(t.mgmt_port, "statsd.udp_kernel_drops") for t in locals_),
        }


def scenario_relays(args: Args, root: Path) -> None:
    for exe in ("carbon-cache", "carbon-c-relay", "carbon-relay"):
        if not shutil.which(exe):
            print(
                f"  {exe}: not installed (apt-get install carbon-c-relay graphite-carbon), scenario left out"
            )
            return
    per_flush = 2 * args.counters * args.hosts  # rate and count of every counter
    print(
        f"\n1. {args.hosts} webops -> relay -> {args.caches} carbon-caches:"
        f" {args.counters:,} counters a host,"
        f" {args.rate:,} metrics/s into each daemon for {args.seconds:g} s, flushInterval {args.flush} ms"
        f" ({per_flush:,} datapoints a flush, {per_flush * 1000 / args.flush:,.0f}/s)"
    )
    print(
        f"  {'relay':22} {'written dp/s':>12} {'intake e2e/s':>13} {'drain s':>8} {'relay CPU':>10}"
        f" {'caches CPU':>11} {'daemon CPU/flush':>17}  accounting"
    )
    for name, relay in (("carbon-c-relay (C)", c_relay), ("carbon-relay (Python)", py_relay)):
        sub = root / re.sub(r"\W+", "_", name)
        sub.mkdir()
        r = relay_run(args, name, relay, sub)
        lost = r["received"] - r["stored"]
        print(
            f"  {name:22} {r['committed'] / r['elapsed']:>12,.0f} {r['stored'] / r['elapsed']:>13,.0f}"
            f" {r['elapsed'] - r['load']:>8.1f} {r['relay_cpu'] / r['elapsed']:>9.2f}c"
            f" {r['caches_cpu'] / r['elapsed']:>10.2f}c {1000 * r['daemon_cpu_per_flush']:>14.1f} ms "
            f" sent {r['sent']:,}, received {r['received']:,} (kernel drops {r['drops']:,} packets),"
            f" stored {r['stored']:,}, lost {lost:,}; relay dropped {r['relay_dropped']:,.0f} datapoints"
            + ("" if r["complete"] else "; the rest not written by the end")
        )
        shutil.rmtree(sub, ignore_errors=True)
    print(
        "  (c: cores, CPU seconds per second of the run; dp: datapoints;"
        " e2e: counts summed back from whisper)"
    )


# --- 2. repeater to a central daemon vs. aggregates from each -------------------------------------


def tcp_bytes_received(port: int) -> int:
    """Bytes the established TCP connections to `port` received (ss's tcp_info)."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True
    ).stdout
    return sum(int(n) for n in re.findall(r"bytes_received:(\d+)", out))


def file_bytes(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def repeater_run(args: Args, root: Path) -> dict:
    with ExitStack() as stack:
        tcp = free_port()
        central_out = root / "central.txt"
        central, *locals_ = daemons(
            stack,
            [
                {
                    "servers": [{"server": "./servers/tcp", "address": HOST, "port": tcp}],
                    "flushInterval": args.flush,
                    "backends": ["./backends/file"],
                    "file": {"path": str(central_out), "format": "graphite"},
                }
            ]
            + [
                {
                    "backends": ["./backends/repeater"],
                    "repeater": [{"host": HOST, "port": tcp}],
                    "repeaterProtocol": "tcp",
                }
            ]
            * args.hosts,
        )
        cpu = Cpu({"central": central.proc.pid} | {f"local{i}": t.proc.pid for i, t in enumerate(locals_)})
        wire0, out0 = tcp_bytes_received(tcp), file_bytes(central_out)
        t0 = time.monotonic()
        sent = blast(args.sender, [t.port for t in locals_], args.seconds, args.rate, args.counters)
        load_end = time.monotonic()
        # the central is through the backlog once its count stood still for 2 s
        last, since_change = received(central.mgmt_port)[1], load_end
        while time.monotonic() - max(since_change, load_end) < 2 and time.monotonic() < load_end + args.drain:
            time.sleep(0.2)
            now = received(central.mgmt_port)[1]
            if now != last:
                last, since_change = now, time.monotonic()
        got = sum(settled(locals_))
        wire = tcp_bytes_received(tcp) - wire0
        used = cpu.used()
        elapsed = since_change - t0
        return {
            "sent": sum(sent),
            "received": got,
            "central": last,
            "elapsed": elapsed,
            "load": load_end - t0,
            "central_cpu": used["central"],
            "local_cpu": max(v for k, v in used.items() if k.startswith("local")),
            "wire_per_interval": wire / (load_end - t0) * args.flush / 1000,
            "central_out_per_flush": (file_bytes(central_out) - out0) / (elapsed / (args.flush / 1000)),
            "dropped": sum(total(t.mgmt_port, "repeater.packets_dropped") for t in locals_),
        }


def aggregates_run(args: Args, root: Path) -> dict:
    with ExitStack() as stack:
        outs = [root / f"local{i}.txt" for i in range(args.hosts)]
        locals_ = daemons(
            stack,
            [
                {
                    "flushInterval": args.flush,
                    "backends": ["./backends/file"],
                    "file": {"path": str(out), "format": "graphite"},
                    "graphite": {"legacyNamespace": False, "globalPrefix": f"fleet.h{i}"},
                    "deleteCounters": True,
                }
                for i, out in enumerate(outs)
            ],
        )
        cpu = Cpu({f"local{i}": t.proc.pid for i, t in enumerate(locals_)})
        before = sum(file_bytes(o) for o in outs)
        t0 = time.monotonic()
        sent = blast(args.sender, [t.port for t in locals_], args.seconds, args.rate, args.counters)
        load = time.monotonic() - t0
        time.sleep(args.flush / 1000 * 1.5)  # the last flush of the load
        got = sum(settled(locals_))
        used = cpu.used()
        flushes = (time.monotonic() - t0) / (args.flush / 1000)
        return {
            "sent": sum(sent),
            "received": got,
            "local_cpu": max(used.values()),
            "load": load,
            "wire_per_interval": (sum(file_bytes(o) for o in outs) - before) / flushes,
            "local_cpu_per_flush": max(used.values()) / flushes,
        }


def scenario_repeater(args: Args, root: Path) -> None:
    print(
        f"\n2. {args.hosts} local webops -> one central webops (repeater, TCP) vs. each flushing its"
        f" own aggregates: {args.counters:,} counters a host, {args.rate:,} metrics/s into each for"
        f" {args.seconds:g} s, flushInterval {args.flush} ms"
    )
    r = repeater_run(args, root)
    lost = r["received"] - r["central"]
    print(
        f"  repeater:   central absorbed {r['central'] / r['elapsed']:,.0f} lines/s"
        f" (offered {r['sent'] / r['load']:,.0f}/s;"
        f" backlog drained {r['elapsed'] - r['load']:.1f} s after the load);"
        f" central CPU {r['central_cpu'] / r['elapsed']:.2f}c,"
        f" each local {r['local_cpu'] / r['elapsed']:.2f}c;"
        f" wire {r['wire_per_interval'] / 1e6:,.2f} MB a flush interval (raw packets, all locals),"
        f" central's aggregates {r['central_out_per_flush'] / 1e3:,.0f} kB a flush;"
        f" sent {r['sent']:,}, locals received {r['received']:,}, central received {r['central']:,},"
        f" lost {lost:,} (repeater buffers dropped {r['dropped']:,} packets)"
    )
    a = aggregates_run(args, root)
    print(
        f"  aggregates: each local {a['local_cpu'] / a['load']:.2f}c,"
        f" {1000 * a['local_cpu_per_flush']:.1f} ms CPU a flush;"
        f" wire {a['wire_per_interval'] / 1e6:,.2f} MB a flush interval (Graphite plaintext, all locals,"
        f" as the file backend writes what carbon would get); sent {a['sent']:,}, received {a['received']:,}"
    )
    if a["wire_per_interval"]:
        print(
            f"  raw packets / aggregates on the wire: {r['wire_per_interval'] / a['wire_per_interval']:.1f}x"
        )


# --- 3. the cost of a Prometheus scrape ------------------------------------------------------------


def scrape(http_port: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://{HOST}:{http_port}/metrics", timeout=120) as r:
        size = len(r.read())
    return time.perf_counter() - t0, size


def last_flush(http_port: int) -> float:
    """When the daemon last flushed (the dashboard's status)."""
    with urllib.request.urlopen(f"http://{HOST}:{http_port}/dashboard/status", timeout=60) as r:
        return float(json.load(r)["last_flush"])


def scrape_run(series: int, rounds: int, timers: str) -> dict:
    http_port = free_port()
    t = start(
        "webops",
        None,
        {
            "flushInterval": max(1000, series // 50),
            "rcvbuf": 32 << 20,
            "http": {"address": HOST, "port": http_port},
            "prometheus": {"timers": timers},
        },
    )
    try:
        half = series // 2
        lines = [b"scrape.c%d:1|c" % k for k in range(half)] + [
            b"scrape.t%d:%d|ms" % (k, k % 997) for k in range(half)
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i, p in enumerate(pack(lines, LINES)):
                s.sendto(p, (HOST, t.port))
                if i % 200 == 199:
                    time.sleep(0.002)
        wait_for(lambda: received(t.mgmt_port)[1] >= series, 30, "every series at the daemon")
        renders, cached, cpus, size = [], [], [], 0
        for _ in range(rounds):
            before = last_flush(http_port)
            wait_for(lambda before=before: last_flush(http_port) != before, 30, "a flush")
            pids = family(t.proc.pid)
            c0 = cpu_seconds(pids)
            took, size = scrape(http_port)
            cpus.append(cpu_seconds(pids) - c0)
            renders.append(took)
            cached.append(scrape(http_port)[0])
        return {
            "render": statistics.median(renders),
            "cached": statistics.median(cached),
            "cpu": statistics.median(cpus),
            "size": size,
        }
    finally:
        t.stop()


def scenario_scrape(args: Args) -> None:
    shown = "summaries" if args.timers == "summary" else "histograms"
    print(f"\n3. GET /metrics of one daemon (half counters, half timers as {shown}), medians of 3 flushes")
    print(f"  {'series':>8} {'first scrape':>13} {'CPU':>8} {'next scrape':>12} {'size':>10}")
    for n in args.series:
        r = scrape_run(n, 3, args.timers)
        print(
            f"  {n:>8,} {1000 * r['render']:>10.0f} ms {1000 * r['cpu']:>5.0f} ms"
            f" {1000 * r['cached']:>9.1f} ms {r['size'] / 1e6:>7.2f} MB"
        )
    print(
        "  (first: rendered after the flush; next: the same text again; CPU: the daemon's during the first)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sender", required=True, help="the udpblast binary (make bench-fleet builds it)")
    ap.add_argument("--hosts", type=int, default=3, help="local webops daemons")
    ap.add_argument("--caches", type=int, default=2, help="carbon-caches behind the relay")
    ap.add_argument("--counters", type=int, default=10_000, help="distinct counters a host")
    ap.add_argument("--flush", type=int, default=1000, help="flushInterval of the daemons, ms")
    ap.add_argument("--seconds", type=float, default=10, help="length of each load")
    ap.add_argument("--rate", type=int, default=100_000, help="metrics/s offered to each local daemon")
    ap.add_argument("--series", default="10000,100000", help="series held by the scraped daemon")
    ap.add_argument(
        "--timers",
        choices=["summary", "histogram"],
        default="summary",
        help="timers in /metrics: summaries, or histograms (prometheus: {timers: histogram})",
    )
    ap.add_argument("--only", choices=["relay", "repeater", "scrape"], action="append")
    ap.add_argument("--quick", action="store_true", help="a tiny run of everything (the smoke test's)")
    ns = ap.parse_args()
    args = Args(
        ns.sender,
        ns.hosts,
        ns.caches,
        ns.counters,
        ns.flush,
        ns.seconds,
        ns.rate,
        [int(n) for n in ns.series.split(",")],
        drain=90,
        timers=ns.timers,
    )
    if ns.quick:
        args = Args(ns.sender, 2, 2, 200, 1000, 1, 5_000, [1000], drain=20, timers=ns.timers)
    only = set(ns.only or ["relay", "repeater", "scrape"])
    print(f"fleet benchmark on {machine()}, loopback only")
    root = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    try:
        if "relay" in only:
            scenario_relays(args, root)
        if "repeater" in only:
            scenario_repeater(args, root)
        if "scrape" in only:
            scenario_scrape(args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
