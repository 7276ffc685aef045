"""Benchmark a statsd daemon the way the Perl port measured statsd: count what arrives.

Senders fire packets over loopback UDP (127.0.0.1 only, bounded loops); the target's own
management console says how many packets and metrics it received, so any daemon with Etsy's
console can be measured, Etsy's node daemon included (`--etsy`, see docs/statsd.md: Speed). Prints figures,
asserts nothing.

    python bench/statsd_bench.py                 # webops, every scenario
    python bench/statsd_bench.py --etsy PATH     # also Etsy's stats.js, for the ratio
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
MAX_PACKET = 1432


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --- what the senders send ----------------------------------------------------------------


def seed_lines(n: int, seed: int = 1) -> list[bytes]:
    """The seed benchmark's pattern: counter, timer, gauge, set, sampled counter, with varied values."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        app = i % 50
        kind = i % 5
        if kind == 0:
            out.append(b"bench.app%d.requests:1|c" % app)
        elif kind == 1:
            out.append(b"bench.app%d.latency:%d|ms" % (app, rnd.randint(1, 999)))
        elif kind == 2:
            out.append(b"bench.app%d.queue:%d|g" % (app, rnd.randint(0, 100)))
        elif kind == 3:
            out.append(b"bench.app%d.users:%d|s" % (app, rnd.randint(0, 10_000)))
        else:
            out.append(b"bench.app%d.sampled:1|c|@0.1" % app)
    return out


def pack(lines: list[bytes], per_packet: int) -> list[bytes]:
    """Join lines into packets of `per_packet` metrics, never over MAX_PACKET bytes."""
    packets, current, size = [], [], 0
    for line in lines:
        if current and (len(current) == per_packet or size + len(line) + 1 > MAX_PACKET):
            packets.append(b"\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        packets.append(b"\n".join(current))
    return packets


def sender(port: int, packets: list[bytes], count: int, pps: float, result) -> None:
    """Send `count` packets (cycling through `packets`) at `pps` per second (0: as fast as possible)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sendto, addr, k = sock.sendto, (HOST, port), len(packets)
    start = time.perf_counter()
    chunk = 200
    sent = 0
    while sent < count:
        n = min(chunk, count - sent)
        for i in range(sent, sent + n):
            with contextlib.suppress(OSError):  # ENOBUFS: lost on the sending side, counted as sent
                sendto(packets[i % k], addr)
        sent += n
        if pps:
            ahead = sent / pps - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)
    result.put((sent, time.perf_counter() - start))


# --- reading the target ---------------------------------------------------------------------


def console(port: int, command: str) -> str:
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(command.encode() + b"\n")
        data = b""
        while not data.endswith(b"END\n\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    return data.decode()


def received(mgmt_port: int) -> tuple[int, int]:
    """Packets and metrics received so far, from the target's console.

    webops' `stats` carries totals since start (`statsd.packets_received: N`); Etsy's only has them
    per flush interval in `counters`, which is why Etsy is run with a one-hour flushInterval.
    """
    text = console(mgmt_port, "stats")
    if "statsd.packets_received: " not in text:
        text = console(mgmt_port, "counters")

    def get(name: str) -> int:
        m = re.search(r"'?statsd\." + name + r"'?: (\d+)", text)
        return int(m.group(1)) if m else 0

    return get("packets_received"), get("metrics_received")


def settle(mgmt_port: int, timeout: float = 60) -> tuple[int, int]:
    """Wait until the received counts stop moving (the daemon worked through its backlog)."""
    last, still_since, deadline = None, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = received(mgmt_port)
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > 1.0:
            break
        time.sleep(0.1)
    assert last is not None
    return last


def family(pid: int) -> list[int]:
    """The daemon and its reader processes."""
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(entry))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def proc_mib(pids: list[int], file: str, field: str) -> float:
    """A memory figure in kB of /proc/PID/<file> (`Pss:` of smaps_rollup, `VmHWM:` of status),
    summed over the processes, in MiB."""
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/{file}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def pss_mib(pids: list[int]) -> float:
    """Proportional set size: shared pages counted once across the processes (RSS overcounts)."""
    return proc_mib(pids, "smaps_rollup", "Pss:")


# --- targets --------------------------------------------------------------------------------


def stop_daemon(proc: subprocess.Popen, workdir: str) -> None:
    """SIGTERM, then SIGKILL after 30 s; its working directory goes too."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Target:
    name: str
    proc: subprocess.Popen
    port: int
    mgmt_port: int
    workdir: str

    def stop(self) -> None:
        stop_daemon(self.proc, self.workdir)


def start(kind: str, etsy_js: str | None, extra: dict | None = None) -> Target:
    port, mgmt_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix=f"bench-{kind}-")
    config = {
        "port": port,
        "mgmt_port": mgmt_port,
        "mgmt_address": HOST,
        "address": HOST,
        "flushInterval": 3_600_000,
        "backends": [],
        "http": {"address": HOST, "port": free_port()},
        **(extra or {}),
    }
    path = Path(workdir) / "config.js"
    path.write_text(json.dumps(config))
    if kind == "etsy":
        cmd = ["node", str(Path(etsy_js).resolve()), str(path)]
    else:
        cmd = [sys.executable, "-m", "webops", "statsd", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    deadline = time.monotonic() + 30
    while True:
        try:
            received(mgmt_port)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{kind} did not start") from None
            time.sleep(0.1)
    time.sleep(1.0)  # readers are separate processes: let them finish starting
    return Target(kind, proc, port, mgmt_port, workdir)


# --- scenarios ------------------------------------------------------------------------------


def run_load(target: Target, packets: list[bytes], count: int, pps: float, senders: int = 1) -> dict:
    pids = family(target.proc.pid)
    base_packets, base_metrics = received(target.mgmt_port)
    cpu0 = cpu_seconds(pids)
    q: multiprocessing.Queue = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(
            target=sender, args=(target.port, packets, count // senders, pps / senders, q)
        )
        for _ in range(senders)
    ]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    got_packets, got_metrics = settle(target.mgmt_port)
    sent = sum(r[0] for r in results)
    elapsed = max(r[1] for r in results)
    per_packet = sum(p.count(b"\n") + 1 for p in packets) / len(packets)
    return {
        "sent": sent,
        "received": got_packets - base_packets,
        "metrics_sent": round(sent * per_packet),
        "metrics_received": got_metrics - base_metrics,
        "seconds": elapsed,
        "cpu": cpu_seconds(pids) - cpu0,
        "pss_mib": pss_mib(pids),
    }


def report(title: str, r: dict) -> None:
    loss = 100 * (1 - r["received"] / r["sent"]) if r["sent"] else 0
    print(f"  {title}")
    print(
        f"    sent {r['sent']:,} packets ({r['metrics_sent']:,} metrics) in {r['seconds']:.2f} s;"
        f" received {r['received']:,} packets ({r['metrics_received']:,} metrics); loss {loss:.3f} %"
    )
    print(
        f"    offered {r['sent'] / r['seconds']:,.0f} packets/s"
        f" = {r['metrics_sent'] / r['seconds']:,.0f} metrics/s;"
        f" absorbed {r['metrics_received'] / r['seconds']:,.0f} metrics/s"
    )
    print(f"    daemon CPU {r['cpu']:.2f} s, PSS {r['pss_mib']:.0f} MiB (daemon and its readers)")


def scenario_single(target: Target, count: int) -> dict:
    r = run_load(target, pack(seed_lines(10_000), 1), count, 0)
    report(f"{count:,} single-metric packets, one sender at full speed", r)
    return r


def scenario_multi(target: Target, rate: int, seconds: float) -> dict:
    packets = pack(seed_lines(50_000), 25)
    pps = rate / 25
    r = run_load(target, packets, int(pps * seconds), pps)
    report(f"25 metrics a packet at {rate:,} metrics/s for {seconds:.0f} s", r)
    return r


def scenario_capacity(target: Target, rate: int, seconds: float) -> dict:
    r = run_load(target, pack(seed_lines(50_000), 25), int(rate / 25 * seconds), rate / 25)
    report(f"capacity: 25 metrics a packet offered at {rate:,} metrics/s for {seconds:.0f} s", r)
    return r


def scenario_flush(timers: int, values: int) -> None:
    """Flush cost of many keys: in-process timing, then in the daemon with traffic flowing."""
    from webops.statsd import settings as statsd_config
    from webops.statsd.aggregate import Aggregator
    from webops.statsd.kinds.timers import Timers
    from webops.statsd.snapshot import summarize

    rnd = random.Random(2)
    lines = [b"flush.timer%d:%d|ms" % (k, rnd.randint(1, 1000)) for _ in range(values) for k in range(timers)]
    cfg = statsd_config.build({})
    agg = Aggregator(cfg.aggregation())
    for packet in pack(lines, 25):
        agg.ingest(packet)
    t0 = time.perf_counter()
    interval = agg.take(int(time.time()))
    t1 = time.perf_counter()
    unsorted = {k: Timers.copy(t) for k, t in interval.tables["timers"].items()}
    took = {}
    for native in (False, True):  # each on the samples as they came (the statistics sort them)
        interval.tables["timers"] = {k: Timers.copy(t) for k, t in unsorted.items()}
        started = time.perf_counter()
        summarize(interval, dataclasses.replace(cfg.summary(), native_timers=native))
        took[native] = time.perf_counter() - started
    print(
        f"  {timers:,} timers x {values} values, in-process: detach {1000 * (t1 - t0):.0f} ms (event loop),"
        f" statistics {1000 * took[True]:.0f} ms native, {1000 * took[False]:.0f} ms Python reference"
        " (flusher thread)"
    )

    flushes = Path(tempfile.mkdtemp(prefix="bench-flush-")) / "flush.jsonl"
    target = start(
        "webops",
        None,
        {
            "flushInterval": 10_000,
            "backends": ["./backends/file"],
            "file": {"path": str(flushes), "format": "json"},
        },
    )
    try:
        loaded = run_load(target, pack(lines, 25), len(lines) // 25, 1_000_000 / 25)
        steady = run_load(target, pack(seed_lines(50_000), 25), int(500_000 / 25 * 12), 500_000 / 25)
        wait = time.monotonic() + 15
        while time.monotonic() < wait and len(flushes.read_text().splitlines()) < 2:
            time.sleep(0.2)
        records = [json.loads(line) for line in flushes.read_text().splitlines()]
        big = max(records, key=lambda r: len(r["timer_data"]))
        print(
            f"  in the daemon: {len(big['timer_data']):,} timers flushed, processing_time"
            f" {big['statsd_metrics']['processing_time']} ms; during the 12 s of 500,000 metrics/s around it,"
            f" {steady['received']:,} of {steady['sent']:,} packets received"
            f" (loss while loading the timers: {loaded['sent'] - loaded['received']:,} packets)"
        )
    finally:
        target.stop()
        shutil.rmtree(flushes.parent, ignore_errors=True)


def scenario_memory(keys: int) -> None:
    target = start("webops", None)
    try:
        pids = family(target.proc.pid)
        before = pss_mib(pids)
        lines = [b"mem.counter%d:1|c" % k for k in range(keys // 2)]
        lines += [b"mem.timer%d:%d|ms" % (k, k % 100) for k in range(keys // 2)]
        packets = pack(lines, 25)
        run_load(target, packets, len(packets), 20_000)
        after = pss_mib(family(target.proc.pid))
        print(
            f"  memory: PSS {before:.0f} MiB idle, {after:.0f} MiB with {keys:,} keys"
            f" ({keys // 2:,} counters + {keys // 2:,} timers):"
            f" {(after - before) * 100_000 / keys:.0f} MiB per 100k keys"
        )
    finally:
        target.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--etsy", metavar="STATS_JS", help="Etsy statsd's stats.js, to measure it in the same run"
    )
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets in the single-metric run")
    ap.add_argument("--rate", type=int, default=1_000_000, help="metrics/s offered in the multi-metric run")
    ap.add_argument("--seconds", type=float, default=10, help="length of the multi-metric run")
    ap.add_argument("--readers", help="webops `readers` setting (default: the daemon's own default)")
    ap.add_argument("--rcvbuf", type=int, help="webops `rcvbuf` setting in bytes (default 8 MiB)")
    ap.add_argument("--capacity", type=int, default=6_000_000, help="metrics/s offered in the capacity run")
    ap.add_argument("--only", choices=["single", "multi", "capacity", "flush", "memory"], action="append")
    args = ap.parse_args()
    only = set(args.only or ["single", "multi", "capacity", "flush", "memory"])
    print(
        f"statsd benchmark on {os.cpu_count()} CPUs, loopback UDP;"
        f" net.core.rmem_max={Path('/proc/sys/net/core/rmem_max').read_text().strip()}"
    )
    results: dict[str, dict[str, dict]] = {}
    for kind in ["webops"] + (["etsy"] if args.etsy else []):
        if not only & {"single", "multi", "capacity"}:
            break
        print(f"\n{kind}:")
        extra = {}
        if kind == "webops" and args.readers is not None:
            extra["readers"] = args.readers if args.readers == "auto" else int(args.readers)
        if kind == "webops" and args.rcvbuf:
            extra["rcvbuf"] = args.rcvbuf
        target = start(kind, args.etsy, extra)
        try:
            if "single" in only:
                results.setdefault(kind, {})["single"] = scenario_single(target, args.packets)
            if "multi" in only:
                results.setdefault(kind, {})["multi"] = scenario_multi(target, args.rate, args.seconds)
            if "capacity" in only:
                results.setdefault(kind, {})["capacity"] = scenario_capacity(target, args.capacity, 5)
        finally:
            target.stop()
    if "etsy" in results:
        print(
            "\nwebops / Etsy (metrics received; in the capacity run this is the ratio of metrics/s absorbed):"
        )
        for name in results["etsy"]:
            w, e = results["webops"][name]["metrics_received"], results["etsy"][name]["metrics_received"]
            print(f"  {name}: {w:,} / {e:,} = {w / e:.2f}x" if e else f"  {name}: Etsy received nothing")
    if "flush" in only:
        print("\nflush:")
        scenario_flush(100_000, 10)
    if "memory" in only:
        print()
        scenario_memory(200_000)


if __name__ == "__main__":
    main()
