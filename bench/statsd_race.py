"""webops statsd side by side with the statsd daemons that run here, counted exactly.

One C sender (udpblast.c, sendmmsg, loopback only) sends counters only, 25 metrics a packet, so
what each daemon counted is exactly what it absorbed: offered = counted + what the kernel
dropped at the daemon's socket (/proc/net/udp), checked every run ("unexplained" must be 0).
Every daemon gets an 8 MiB receive buffer (webops sets its own; for the peers, which keep the
system default, net.core.rmem_default is raised for the run and put back after). Each
daemon/scenario runs REPEAT times on a fresh daemon; medians are printed.

Peers: collectd's statsd plugin (Debian's collectd-core, C) and Etsy's statsd (npm, node), each
when installed; brubeck and statsite are not packaged anywhere this project installs from.

Then the timer flush: TIMERS timers with TIMER_VALUES values in one interval, sent (paced, no loss)
early in an interval; each daemon writes to a Graphite plaintext receiver the bench runs, and
"due to last line" is the time from the flush's due time to the last line of that flush arriving
there, with the daemon's CPU seconds over the same span. webops flushes on the wall-clock grid;
Etsy and collectd keep the phase of their start, which the bench reads off an idle flush's arrival
(so their figure is short by that idle flush's own latency, a few ms).

    python bench/statsd_race.py --sender PATH [--etsy STATS_JS] [--seconds 5] [--repeat 3]
                                [--timers 10000 --timer-values 500000 --timer-interval 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from statsd_bench import HOST, console, cpu_seconds, family, free_port, pack, proc_mib, stop_daemon

from webops.statsd.hotpath import NATIVE_AUTO

RCVBUF = 8 * 1024 * 1024
LINES = 25
KEYS = 100
RMEM_DEFAULT = Path("/proc/sys/net/core/rmem_default")
RMEM_MAX = Path("/proc/sys/net/core/rmem_max")
BEATS = 60  # counters of the timer scenario's idle flushes
FULL_BUFFER = 1000  # at least this much of collectd's write_graphite buffer (1428 bytes) goes out at once


@dataclass
class Daemon:
    proc: subprocess.Popen
    port: int
    count: Callable[[], int]  # metrics counted so far: the sum of its race.* counters
    workdir: str

    def stop(self) -> None:
        stop_daemon(self.proc, self.workdir)


def console_count(mgmt_port: int) -> Callable[[], int]:
    def count() -> int:
        text = console(mgmt_port, "counters")
        return sum(int(float(v)) for v in re.findall(r"'?race\.k\d+'?: ([0-9.e+]+)", text))

    return count


def start_statsd(cmd: list[str], config: dict, workdir: str) -> tuple[subprocess.Popen, int, int]:
    port, mgmt = free_port(), free_port()
    config = {
        "port": port,
        "address": HOST,
        "mgmt_port": mgmt,
        "mgmt_address": HOST,
        "flushInterval": 3_600_000,
        "backends": [],
        **config,
    }
    path = Path(workdir) / "config.js"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [*cmd, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir
    )
    return proc, port, mgmt


def start_webops(options: dict) -> Callable[[], Daemon]:
    def start() -> Daemon:
        workdir = tempfile.mkdtemp(prefix="race-webops-")
        config = {"rcvbuf": RCVBUF, "http": False, **options}
        proc, port, mgmt = start_statsd([sys.executable, "-m", "webops", "statsd"], config, workdir)
        return Daemon(proc, port, console_count(mgmt), workdir)

    return start


def start_etsy(stats_js: str) -> Callable[[], Daemon]:
    def start() -> Daemon:
        workdir = tempfile.mkdtemp(prefix="race-etsy-")
        proc, port, mgmt = start_statsd(["node", str(Path(stats_js).resolve())], {}, workdir)
        return Daemon(proc, port, console_count(mgmt), workdir)

    return start


def start_collectd() -> Daemon:
    """collectd with its statsd plugin, writing every second to CSV: counters are collectd
    `derive` values (totals since start), so the last line of each file is that counter's count."""
    workdir = tempfile.mkdtemp(prefix="race-collectd-")
    port = free_port()
    conf = Path(workdir) / "collectd.conf"
    conf.write_text(
        f"""Hostname "race"
Interval 1
BaseDir "{workdir}"
PIDFile "{workdir}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin statsd
LoadPlugin csv
<Plugin statsd>
  Host "{HOST}"
  Port "{port}"
</Plugin>
<Plugin csv>
  DataDir "{workdir}/csv"
  StoreRates false
</Plugin>
"""
    )
    proc = subprocess.Popen(
        ["collectd", "-f", "-C", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def count() -> int:
        total = 0
        for f in Path(workdir, "csv").glob("*/statsd/derive-race.k*"):
            rows = f.read_text().strip().splitlines()
            if len(rows) > 1:
                total += int(float(rows[-1].split(",")[1]))
        return total

    return Daemon(proc, port, count, workdir)


def socket_drops(port: int) -> int:
    """Datagrams the kernel dropped at the daemon's socket(s) on `port` (its receive buffer was
    full): the `drops` column of /proc/net/udp, per socket, so nothing else on the machine counts."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            total += int(fields[-1])
    return total


def ready(d: Daemon) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            d.count()
            if d.proc.poll() is None:
                time.sleep(1.0)  # reader processes / receiver threads finish starting
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline or d.proc.poll() is not None:
            raise SystemExit("a daemon did not start") from None
        time.sleep(0.1)


def settle(d: Daemon, still: float) -> int:
    """The count once it stopped moving for `still` seconds (the daemon is through its backlog)."""
    last, since, deadline = -1, time.monotonic(), time.monotonic() + 120
    while time.monotonic() < deadline:
        now = d.count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= still:
            break
        time.sleep(0.2)
    return last


def one_run(start: Callable[[], Daemon], sender: str, seconds: float, rate: int, still: float) -> dict:
    d = start()
    try:
        ready(d)
        pids = family(d.proc.pid)
        cpu0 = cpu_seconds(pids)
        out = subprocess.run(
            [sender, str(d.port), str(seconds), str(rate), str(LINES), str(KEYS)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        packets, metrics, elapsed = int(out[0]), int(out[1]), float(out[2])
        counted = settle(d, still)
        pids = family(d.proc.pid)
        drops = socket_drops(d.port)
        return {
            "offered": metrics,
            "counted": counted,
            "seconds": elapsed,
            "cpu": cpu_seconds(pids) - cpu0,
            "rss": proc_mib(pids, "status", "VmHWM:"),  # peak RSS
            "unexplained": metrics - counted - LINES * drops,
            "packets": packets,
        }
    finally:
        d.stop()


def summary(runs: list[dict]) -> dict:
    med = statistics.median
    return {
        "absorbed": med(r["counted"] / r["seconds"] for r in runs),
        "offered": med(r["offered"] / r["seconds"] for r in runs),
        "loss": med(100 * (1 - r["counted"] / r["offered"]) for r in runs),
        "cpu_per_m": med(r["cpu"] / (r["counted"] / 1e6) for r in runs if r["counted"]),
        "rss": med(r["rss"] for r in runs),
        "unexplained": max(abs(r["unexplained"]) for r in runs),
    }


class Receiver:
    """A Graphite plaintext receiver (TCP, loopback): every chunk kept with its arrival time."""

    def __init__(self) -> None:
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.chunks: list[tuple[float, bytes]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1 << 16):
                with self.lock:
                    self.chunks.append((time.time(), data))

    def since(self, t: float) -> list[tuple[float, bytes]]:
        with self.lock:
            return [c for c in self.chunks if c[0] >= t]

    def close(self) -> None:
        self.sock.close()


@dataclass
class Flusher:
    """A daemon of the timer scenario: its process, UDP port, and the phase of its flushes
    (None: the wall-clock grid, as webops flushes)."""

    proc: subprocess.Popen
    port: int
    workdir: str
    grid: bool


def start_timer_webops(options: dict) -> Callable[[int, int], Flusher]:
    def start(graphite: int, interval: int) -> Flusher:
        workdir = tempfile.mkdtemp(prefix="race-timers-webops-")
        config = {
            "rcvbuf": RCVBUF,
            "http": False,
            "flushInterval": interval * 1000,
            "backends": ["./backends/graphite"],
            "graphiteHost": HOST,
            "graphitePort": graphite,
            **options,
        }
        proc, port, _ = start_statsd([sys.executable, "-m", "webops", "statsd"], config, workdir)
        return Flusher(proc, port, workdir, grid=True)

    return start


def start_timer_etsy(stats_js: str) -> Callable[[int, int], Flusher]:
    def start(graphite: int, interval: int) -> Flusher:
        workdir = tempfile.mkdtemp(prefix="race-timers-etsy-")
        config = {
            "flushInterval": interval * 1000,
            "backends": ["./backends/graphite"],
            "graphiteHost": HOST,
            "graphitePort": graphite,
        }
        proc, port, _ = start_statsd(["node", str(Path(stats_js).resolve())], config, workdir)
        return Flusher(proc, port, workdir, grid=False)

    return start


def start_timer_collectd(graphite: int, interval: int) -> Flusher:
    """collectd's statsd plugin with Etsy's timer statistics it has (mean, lower, upper, sum,
    count, 90th percentile), written by write_graphite over TCP. write_graphite sends a full
    buffer (1428 bytes) at once and the last, partial one at its next flush callback (every
    second here): `burst` leaves that one out, in collectd's favour."""
    workdir = tempfile.mkdtemp(prefix="race-timers-collectd-")
    port = free_port()
    conf = Path(workdir) / "collectd.conf"
    conf.write_text(
        f"""Hostname "race"
Interval {interval}
BaseDir "{workdir}"
PIDFile "{workdir}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin statsd
<LoadPlugin write_graphite>
  FlushInterval 1
</LoadPlugin>
<Plugin statsd>
  Host "{HOST}"
  Port "{port}"
  TimerPercentile 90
  TimerLower true
  TimerUpper true
  TimerSum true
  TimerCount true
</Plugin>
<Plugin write_graphite>
  <Node "race">
    Host "{HOST}"
    Port "{graphite}"
    Protocol "tcp"
  </Node>
</Plugin>
"""
    )
    proc = subprocess.Popen(
        ["collectd", "-f", "-C", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return Flusher(proc, port, workdir, grid=False)


def quiet_after(receiver: Receiver, start: float, still: float, deadline: float) -> list[tuple[float, bytes]]:
    """The chunks from `start` on, once nothing more came for `still` seconds (or at deadline)."""
    while time.time() < deadline:
        got = receiver.since(start)
        if got and time.time() - got[-1][0] >= still:
            return got
        time.sleep(0.05)
    return receiver.since(start)


def burst(chunks: list[tuple[float, bytes]], gap: float = 0.25) -> list[tuple[float, bytes]]:
    """The chunks up to the first pause of `gap` seconds: one flush's lines."""
    for i in range(1, len(chunks)):
        if chunks[i][0] - chunks[i - 1][0] >= gap:
            return chunks[:i]
    return chunks


def timer_run(start: Callable[[int, int], Flusher], timers: int, values: int, interval: int) -> dict:
    """One daemon, one loaded interval: due-to-last-line and the flush's CPU seconds."""
    receiver = Receiver()
    d = start(receiver.port, interval)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        time.sleep(1.0)  # bound and started
        # idle flushes with more than one send buffer of lines (collectd writes a full one at once)
        out.sendto(b"\n".join(b"race.beat%d:1|c" % i for i in range(BEATS)), (HOST, d.port))
        if d.grid:
            due0 = math.ceil(time.time() / interval) * interval
        else:  # the phase of its own timer: an idle flush's first full send buffer
            deadline = time.time() + 3 * interval
            while not (full := [t for t, c in receiver.since(0) if len(c) >= FULL_BUFFER]):
                if time.time() > deadline:
                    raise SystemExit("a daemon sent no flush to the Graphite receiver")
                time.sleep(0.05)
            due0 = full[0]
        while due0 < time.time() + 0.2:
            due0 += interval
        time.sleep(max(0.0, due0 + 0.2 - time.time()))
        rnd = random.Random(3)
        lines = [b"race.t%d:%d|ms" % (i % timers, rnd.randint(1, 1000)) for i in range(values)]
        packets = pack(lines, LINES)
        window = interval * 0.7  # the load ends well before the flush that carries it
        began = time.monotonic()
        for n, packet in enumerate(packets):
            out.sendto(packet, (HOST, d.port))
            if n % 64 == 63 and (ahead := began + window * n / len(packets) - time.monotonic()) > 0:
                time.sleep(ahead)
        due = due0 + interval
        time.sleep(max(0.0, due - 0.3 - time.time()))
        pids = family(d.proc.pid)
        cpu0 = cpu_seconds(pids)
        got = quiet_after(receiver, due - 0.3, 1.5, due + interval - 0.5)
        cpu = cpu_seconds(pids) - cpu0
        flush = burst([c for c in got if c[0] < due + interval - 0.5])
        text = b"".join(c for _, c in flush).decode(errors="replace")
        counted = sum(float(m.group(1)) for m in re.finditer(r"race[._]t\d+[._-]count (\S+)", text))
        return {
            "latency": flush[-1][0] - due if flush else math.nan,
            "cpu": cpu,
            "lines": text.count("\n"),
            "counted": counted,
        }
    finally:
        out.close()
        stop_daemon(d.proc, d.workdir)
        receiver.close()


def timer_race(
    targets: dict[str, Callable[[int, int], Flusher]], timers: int, values: int, interval: int, repeat: int
) -> None:
    print(
        f"\ntimer flush: {timers:,} timers, {values:,} values in one {interval} s interval,"
        f" {repeat} runs each"
        " (medians): due to last line at a Graphite receiver"
    )
    print(f"  {'daemon':34} {'due->last':>10} {'CPU s':>7} {'lines':>8} {'values counted':>15}")
    for name, start in targets.items():
        runs = [timer_run(start, timers, values, interval) for _ in range(repeat)]
        med = statistics.median
        each = ", ".join(f"{r['latency']:.3f}" for r in runs)
        print(
            f"  {name:34} {med(r['latency'] for r in runs):>9.3f}s {med(r['cpu'] for r in runs):>7.2f}"
            f" {med(r['lines'] for r in runs):>8,.0f} {med(r['counted'] for r in runs):>15,.0f}"
            f"  (runs: {each})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sender", required=True, help="the udpblast binary (make bench builds it)")
    ap.add_argument("--etsy", metavar="STATS_JS", help="Etsy statsd's stats.js (npm), as a peer")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steady", type=int, default=1_000_000, help="metrics/s of the no-loss run")
    ap.add_argument(
        "--native-receivers", default="auto,2", help="webops native receiver threads to try (readers)"
    )
    ap.add_argument("--timers", type=int, default=10_000, help="timers of the timer flush (0: skip it)")
    ap.add_argument("--timer-values", type=int, default=500_000, help="values in its interval")
    ap.add_argument("--timer-interval", type=int, default=10, help="flush interval (s) of the timer flush")
    ap.add_argument("--skip-intake", action="store_true", help="only the timer flush")
    args = ap.parse_args()

    targets: dict[str, tuple[Callable[[], Daemon], float]] = {}
    for n in args.native_receivers.split(","):
        label = f"auto: {NATIVE_AUTO}" if n == "auto" else n
        targets[f"webops native ({label} receivers)"] = (
            start_webops({"hotPath": "native", "readers": n if n == "auto" else int(n)}),
            1.5,
        )
    targets["webops python (reference)"] = (start_webops({"hotPath": "python"}), 1.5)
    if shutil.which("collectd"):
        targets["collectd 5 statsd plugin (C)"] = (start_collectd, 2.5)
    else:
        print("collectd: not installed (apt-get install collectd-core), left out")
    if args.etsy and shutil.which("node"):
        targets["Etsy statsd 0.9 (node)"] = (start_etsy(args.etsy), 1.5)
    if args.skip_intake:
        targets = {}

    saved = RMEM_DEFAULT.read_text(), RMEM_MAX.read_text()
    print(
        f"statsd race: {LINES} counters a packet over {KEYS} keys, {args.seconds:g} s a run,"
        f" {args.repeat} runs each (medians); receive buffers {RCVBUF >> 20} MiB"
    )
    results: dict[str, dict[str, dict]] = {}
    try:
        try:  # the peers' buffers; webops asks for its own
            RMEM_DEFAULT.write_text(str(RCVBUF))
            RMEM_MAX.write_text(str(max(RCVBUF, int(saved[1]))))
        except OSError as e:
            print(f"  (receive buffers left at the system's: {e}; run as root for equal buffers)")
        for scenario, rate in (("capacity", 0), ("steady", args.steady)) if targets else ():
            what = "the sender's full speed" if not rate else f"{rate:,} metrics/s"
            print(f"\n{scenario}: offered at {what}")
            print(f"  {'daemon':34} {'absorbed/s':>12} {'loss':>8} {'CPU s/M':>8} {'RSS MiB':>8}  check")
            for name, (start, still) in targets.items():
                runs = [one_run(start, args.sender, args.seconds, rate, still) for _ in range(args.repeat)]
                s = results.setdefault(name, {})[scenario] = summary(runs)
                print(
                    f"  {name:34} {s['absorbed']:>12,.0f} {s['loss']:>7.2f}% {s['cpu_per_m']:>8.3f}"
                    f" {s['rss']:>8.0f}  offered {s['offered']:,.0f}/s;"
                    f" unexplained {s['unexplained']:,} metrics"
                )
    finally:
        with contextlib.suppress(OSError):
            RMEM_DEFAULT.write_text(saved[0])
            RMEM_MAX.write_text(saved[1])
    if results:
        ratios(results)
    if args.timers:
        timer_targets: dict[str, Callable[[int, int], Flusher]] = {
            "webops native": start_timer_webops({"hotPath": "native"}),
            "webops python (reference)": start_timer_webops({"hotPath": "python"}),
        }
        if shutil.which("collectd"):
            timer_targets["collectd 5 statsd plugin (C)"] = start_timer_collectd
        if args.etsy and shutil.which("node"):
            timer_targets["Etsy statsd 0.9 (node)"] = start_timer_etsy(args.etsy)
        timer_race(timer_targets, args.timers, args.timer_values, args.timer_interval, args.repeat)


def ratios(results: dict[str, dict[str, dict]]) -> None:
    best = next(n for n in results if n.startswith("webops native"))  # the first: the default
    print(f"\nratios, {best} / peer (absorbed metrics/s at capacity; metrics per CPU second at capacity):")
    for name, r in results.items():
        if name.startswith("webops"):
            continue
        absorbed = results[best]["capacity"]["absorbed"] / r["capacity"]["absorbed"]
        per_cpu = r["capacity"]["cpu_per_m"] / results[best]["capacity"]["cpu_per_m"]
        print(f"  {name:34} {absorbed:5.2f}x absorbed, {per_cpu:5.2f}x metrics per CPU second")


if __name__ == "__main__":
    main()
