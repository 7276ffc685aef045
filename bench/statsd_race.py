"""webops statsd side by side with the statsd daemons that run here, counted exactly.

One C sender (udpblast.c, sendmmsg, loopback only) sends counters only, 25 metrics a packet, so
what each daemon counted is exactly what it absorbed: offered = counted + what the kernel
dropped at the daemon's socket (/proc/net/udp), checked every run ("unexplained" must be 0).
Every daemon gets an 8 MiB receive buffer (webops sets its own; for the peers, which keep the
system default, net.core.rmem_default is raised for the run and put back after). Each
daemon/scenario runs REPEAT times on a fresh daemon; medians are printed.

Peers: collectd's statsd plugin (Debian's collectd-core, C) and Etsy's statsd (npm, node), each
when installed; brubeck and statsite are not packaged anywhere this project installs from.

    python bench/statsd_race.py --sender PATH [--etsy STATS_JS] [--seconds 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from statsd_bench import HOST, console, cpu_seconds, family, free_port, proc_mib, stop_daemon

from webops.statsd.hotpath import NATIVE_AUTO

RCVBUF = 8 * 1024 * 1024
LINES = 25
KEYS = 100
RMEM_DEFAULT = Path("/proc/sys/net/core/rmem_default")
RMEM_MAX = Path("/proc/sys/net/core/rmem_max")


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
        for scenario, rate in (("capacity", 0), ("steady", args.steady)):
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
