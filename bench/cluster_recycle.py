"""Requests lost across worker recycles (prints figures, asserts nothing).

    python bench/cluster_recycle.py [--workers 3] [--max-requests 8] [--requests 300] [--runs 3]
        [--clients new,http.client,httpx]

Serves the real model with recycling on and sends `--requests` requests from 6 clients at a
time, for each kind of client: `new` (a new connection per request, urllib), `http.client` (one
keep-alive connection per client thread, reconnecting when told `Connection: close`) and `httpx`
(a keep-alive pool per client thread). Counts failures and distinct worker pids.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable

from webops.cluster import EXAMPLE

CLIENTS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_connections(port: int, body: bytes, n: int, failures: list[str], pids: set[str]) -> None:
    for _ in range(n):
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/cluster", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                pids.add(r.headers["X-Worker-Pid"])
        except OSError as e:
            failures.append(repr(e))


def http_client(port: int, body: bytes, n: int, failures: list[str], pids: set[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(n):
        try:
            conn.request("POST", "/cluster", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            pids.add(r.getheader("X-Worker-Pid") or "")
            if r.status != 200:
                failures.append(f"status {r.status}")
        except (OSError, http.client.HTTPException) as e:
            failures.append(repr(e))
            conn.close()


def httpx_client(port: int, body: bytes, n: int, failures: list[str], pids: set[str]) -> None:
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        for _ in range(n):
            try:
                r = client.post("/cluster", content=body, headers={"Content-Type": "application/json"})
                pids.add(r.headers.get("x-worker-pid", ""))
                if r.status_code != 200:
                    failures.append(f"status {r.status_code}")
            except httpx.HTTPError as e:
                failures.append(repr(e))


KINDS: dict[str, Callable[[int, bytes, int, list[str], set[str]], None]] = {
    "new": new_connections,
    "http.client": http_client,
    "httpx": httpx_client,
}


def run(kind: str, workers: int, max_requests: int, requests: int) -> None:
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
        started = time.monotonic()
        each = requests // CLIENTS
        work = KINDS[kind]
        args = (port, body, each, failures, pids)
        threads = [threading.Thread(target=work, args=args) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(
            f"  {kind:12} {each * CLIENTS} requests in {time.monotonic() - started:5.1f} s: "
            f"{len(failures)} failed, {len(pids)} worker pids ({len(pids) - workers} recycles)"
            + (f"  e.g. {failures[0][:100]}" if failures else "")
        )
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--max-requests", type=int, default=8)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", default=",".join(KINDS), help="kinds of client, comma-separated")
    a = ap.parse_args()
    print(f"{a.workers} workers recycled every ~{a.max_requests} requests, {CLIENTS} clients at a time:")
    for kind in a.clients.split(","):
        for _ in range(a.runs):
            run(kind, a.workers, a.max_requests, a.requests)


if __name__ == "__main__":
    main()
