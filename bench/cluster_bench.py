"""What preloading the model saves: the clustering service with and without preload_app.

For each mode: start gunicorn (3 workers, no recycling), send the same requests, then read
/proc/PID/smaps_rollup of the master and every worker: total PSS (shared pages counted once, as
the machine pays for them) and each worker's USS (pages only it has). Summed RSS would count the
shared model once per worker and mislead.

    python bench/cluster_bench.py [--requests 60] [--workers 3]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
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
    args = ap.parse_args()
    print(f"cluster service, {args.workers} workers, {args.requests} requests of {len(SENTENCES)} sentences:")
    for preload in (True, False):
        measure(preload, args.workers, args.requests)


if __name__ == "__main__":
    main()
