"""The clustering service: small-request latency under load, and what preloading the model saves.

Latency: 3 workers; small requests (the seed's 9 titles) sent by `--clients` new-connection
clients and as many keep-alive clients at the same time, for `--seconds`, first alone, then with
`--large-clients` clients sending large requests (`--large` sentences, ~17 word pieces each)
all along. Printed: small-request p50/p99 per client kind, requests per worker of the keep-alive
clients, and the large requests' count and 503s.

Memory: for each mode, start gunicorn (3 workers, no recycling), send the same requests, then read
/proc/PID/smaps_rollup of the master and every worker: total PSS (shared pages counted once, as
the machine pays for them) and each worker's USS (pages only it has). Summed RSS would count the
shared model once per worker and mislead.

    python bench/cluster_bench.py [--only latency|memory] [--requests 60] [--workers 3]
        [--seconds 30] [--clients 4] [--large-clients 2] [--large 1000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

from webops.cluster import EXAMPLE

SENTENCES = EXAMPLE  # the seed's nine titles


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rollup(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0])
    return out


def children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def post(port: int) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/cluster",
        data=json.dumps({"sentences": SENTENCES}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()


def start(port: int, workers: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "webops", "cluster", "serve", "--port", str(port)]
    cmd += ["--workers", str(workers), "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while True:
        try:
            post(port)
            return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.terminate()
                raise SystemExit("the service did not start") from None
            time.sleep(0.5)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def load_phase(port: int, seconds: float, clients: int, large_clients: int, large: int) -> None:
    small = json.dumps({"sentences": SENTENCES}).encode()
    big = json.dumps(
        {"sentences": [f"line {i} of a large request about dogs, parks and speaking" for i in range(large)]}
    ).encode()
    headers = {"Content-Type": "application/json"}
    stop = time.monotonic() + seconds
    lat: dict[str, list[float]] = {"new-connection": [], "keep-alive": []}
    errors: Counter[str] = Counter()
    pids: Counter[str] = Counter()
    large_status: Counter[int] = Counter()

    def one(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, str]:
        conn.request("POST", "/cluster", body, headers)
        r = conn.getresponse()
        r.read()
        return r.status, r.getheader("X-Worker-Pid") or "?"

    def small_client(kind: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while time.monotonic() < stop:
            if kind == "new-connection":
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            started = time.perf_counter()
            try:
                status, pid = one(conn, small)
            except (OSError, http.client.HTTPException) as e:
                errors[type(e).__name__] += 1
                conn.close()
                continue
            if status == 200:
                lat[kind].append(time.perf_counter() - started)
                if kind == "keep-alive":
                    pids[pid] += 1
            else:
                errors[str(status)] += 1
            if kind == "new-connection":
                conn.close()

    def large_client() -> None:
        while time.monotonic() < stop:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            try:
                large_status[one(conn, big)[0]] += 1
            except (OSError, http.client.HTTPException) as e:
                errors[type(e).__name__] += 1
            conn.close()

    threads = [threading.Thread(target=small_client, args=(kind,)) for kind in lat for _ in range(clients)]
    threads += [threading.Thread(target=large_client) for _ in range(large_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    what = f"with {large_clients} clients sending {large}-sentence requests" if large_clients else "alone"
    print(f"  small requests, {what}:")
    for kind, values in lat.items():
        print(
            f"    {kind:14}: {len(values):5} answered, {len(values) / seconds:5.1f}/s, "
            f"p50 {statistics.median(values) if values else float('nan'):.3f} s, "
            f"p99 {percentile(values, 99):.3f} s, max {max(values, default=float('nan')):.3f} s"
        )
    print(f"    keep-alive requests per worker: {sorted(pids.values(), reverse=True)}")
    if large_clients:
        print(f"    large requests: {dict(large_status)}")
    if errors:
        print(f"    errors: {dict(errors)}")


def latency(workers: int, seconds: float, clients: int, large_clients: int, large: int) -> None:
    port = free_port()
    proc = start(port, workers)
    try:
        print(
            f"latency, {workers} workers, {clients} new-connection and {clients} keep-alive clients, "
            f"{seconds:g} s a phase:"
        )
        load_phase(port, seconds, clients, 0, large)
        load_phase(port, seconds, clients, large_clients, large)
    finally:
        proc.terminate()
        proc.wait(60)


def measure(preload: bool, workers: int, requests: int) -> None:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "webops",
        "cluster",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--max-requests",
        "0",
        "--log-level",
        "warning",
    ]
    if not preload:
        cmd.append("--no-preload")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                post(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the service did not start") from None
                time.sleep(0.5)
        for _ in range(workers * 3):  # warm every worker up
            post(port)
        started = time.monotonic()
        for _ in range(requests):
            post(port)
        elapsed = time.monotonic() - started
        workers_pids = children(proc.pid)
        master = rollup(proc.pid)
        per_worker = [rollup(p) for p in workers_pids]
        pss = (master["Pss"] + sum(w["Pss"] for w in per_worker)) / 1024
        uss = [(w["Private_Clean"] + w["Private_Dirty"]) / 1024 for w in per_worker]
        rss = (master["Rss"] + sum(w["Rss"] for w in per_worker)) / 1024
        print(
            f"  {'preload   ' if preload else 'no preload'}: total PSS {pss:7.0f} MiB"
            f"  (summed RSS {rss:.0f} MiB)"
            f"  worker USS {', '.join(f'{u:.0f}' for u in uss)} MiB"
            f"  {requests * len(SENTENCES) / elapsed:.0f} sentences/s"
        )
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--only", choices=["latency", "memory"])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=4, help="small-request clients of each kind")
    ap.add_argument("--large-clients", type=int, default=2)
    ap.add_argument("--large", type=int, default=1000, help="sentences in a large request")
    args = ap.parse_args()
    if args.only != "memory":
        latency(args.workers, args.seconds, args.clients, args.large_clients, args.large)
    if args.only == "latency":
        return
    print(f"memory, {args.workers} workers, {args.requests} requests of {len(SENTENCES)} sentences:")
    for preload in (True, False):
        measure(preload, args.workers, args.requests)


if __name__ == "__main__":
    main()
