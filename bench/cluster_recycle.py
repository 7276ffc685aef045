"""Requests lost across worker recycles (prints figures, asserts nothing).

    python bench/cluster_recycle.py [--workers 3] [--max-requests 8] [--requests 300] [--runs 3]

Serves the real model with recycling on, sends `--requests` requests 6 at a time (a new
connection each, as most HTTP clients' POSTs), and counts failures and distinct worker pids.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from webops.cluster import EXAMPLE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(workers: int, max_requests: int, requests: int) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "webops", "cluster", "serve", "--port", str(port), "--log-level", "warning"]
    cmd += ["--workers", str(workers), "--max-requests", str(max_requests)]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):  # bounded: up to two minutes for the model to load
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        body = json.dumps({"sentences": EXAMPLE[:3]}).encode()
        failures: list[str] = []
        pids: set[str] = set()

        def one(_: int) -> None:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/cluster", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    pids.add(r.headers["X-Worker-Pid"])
            except OSError as e:
                failures.append(repr(e))

        started = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(one, range(requests)))
        print(
            f"  {requests} requests in {time.monotonic() - started:.1f} s: {len(failures)} failed, "
            f"{len(pids)} worker pids ({len(pids) - workers} recycles)"
        )
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--max-requests", type=int, default=8)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    print(f"{a.workers} workers recycled every ~{a.max_requests} requests:")
    for _ in range(a.runs):
        run(a.workers, a.max_requests, a.requests)


if __name__ == "__main__":
    main()
