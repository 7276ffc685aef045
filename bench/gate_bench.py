"""What the gate costs: the publisher on a million users, and requests/s and varnishd CPU per
request through Varnish with the gate against the same VCL without it, on the cache-hit path
(users without a profile: a lookup, then the cached generic object). wrk on loopback is the load.
Prints figures; asserts nothing.
Usage: python bench/gate_bench.py [--users N] [--seconds S] [--connections C] [--rounds R]
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

from webops.gate.config import load
from webops.gate.vcl import render
from webops.gate.vmod import build

WITHOUT = """sub webops_gate_recv {
    if (req.url ~ "^/api/") {
        unset req.http.Cookie;
    }
}
"""
MAIN = """vcl 4.1;
backend default {{ .host = "127.0.0.1"; .port = "{port}"; }}
include "{snippet}";
sub vcl_recv {{ call webops_gate_recv; }}
"""
# ids of users without a profile: half in the file below the threshold (every tenth user has a
# profile: those are skipped), half not in it at all
LUA = """math.randomseed(os.time())
request = function()
  local id = math.random(1, {n} - 2)
  if id % 10 == 0 then id = id + 1 end
  if id % 2 == 0 then id = id + 100000000 end
  return wrk.format("GET", "/api/recs", {{["Cookie"] = "theme=dark; userId=u" .. id}})
end
"""


class Generic(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"generic recommendations"
        self.send_response(200)
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def publish(top: Path, users: int) -> tuple[Path, float]:
    signals = top / "signals.jsonl"
    rng = random.Random(1)
    with signals.open("w") as f:
        for i in range(users):  # every tenth user has the history for a profile (5 events or more)
            events = rng.randint(5, 20) if i % 10 == 0 else rng.randint(0, 4)
            f.write(f'{{"user_id": "u{i}", "events": {events}}}\n')
    db = top / "user_profiles.db"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "webops", "gate", "build", "--db", str(db), str(signals)],
        check=True,
        stdout=sys.stderr,
    )
    return db, time.perf_counter() - start


class Site:
    """One varnishd running one VCL, with its child process for CPU readings."""

    def __init__(self, top: Path, name: str, snippet: str, backend: int) -> None:
        (top / f"{name}.vcl").write_text(snippet)
        (top / f"{name}-main.vcl").write_text(MAIN.format(port=backend, snippet=top / f"{name}.vcl"))
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                *("varnishd", "-F", "-a", f"127.0.0.1:{self.port}", "-f", str(top / f"{name}-main.vcl")),
                *("-n", str(top / name), "-s", "malloc,64m", "-T", "127.0.0.1:0"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.child = psutil.Process(self.proc.pid).children()[0]

    def load(self, top: Path, args: argparse.Namespace, seconds: int) -> tuple[float, float]:
        """wrk for `seconds`: requests/s and the child's CPU microseconds per request."""
        url = f"http://127.0.0.1:{self.port}/api/recs"
        wrk = ["wrk", "-t2", f"-c{args.connections}", f"-d{seconds}s", "-s", str(top / "ids.lua"), url]
        before = self.child.cpu_times()
        out = subprocess.run(wrk, check=True, capture_output=True, text=True).stdout
        after = self.child.cpu_times()
        requests = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
        cpu = (after.user - before.user) + (after.system - before.system)
        return requests / seconds, cpu / requests * 1e6

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    for tool in ("varnishd", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"gate_bench: {tool} not found (apt-get install varnish wrk)")
    top = Path(tempfile.mkdtemp(prefix="webops-gate-bench-"))
    top.chmod(0o755)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Generic)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        db, seconds = publish(top, args.users)
        print(f"publisher: {args.users:,} users in {seconds:.1f} s ({args.users / seconds:,.0f} users/s)")
        vmod = build(top / "vmod")
        (top / "ids.lua").write_text(LUA.format(n=args.users))
        cfg = load(None, {"db": str(db), "vmod": str(vmod), "url": "^/api/"})
        backend = server.server_address[1]
        sites = {
            "without the gate": Site(top, "without", WITHOUT, backend),
            "with the gate": Site(top, "with", render(cfg), backend),
        }
        try:
            for site in sites.values():
                site.load(top, args, 2)  # warm: the generic object cached, threads started
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in sites}
            for _ in range(args.rounds):  # interleaved: both see the same machine, wrk sharing it
                for name, site in sites.items():
                    runs[name].append(site.load(top, args, args.seconds))
        finally:
            for site in sites.values():
                site.stop()
        title = f"VCL (median of {args.rounds} runs)"
        print(f"{title:28} {'requests/s':>11} {'varnishd CPU us/request':>24}")
        medians = {}
        for name, got in runs.items():
            medians[name] = (statistics.median(r for r, _ in got), statistics.median(c for _, c in got))
            print(f"{name:28} {medians[name][0]:>11,.0f} {medians[name][1]:>24.1f}")
        cost = 1 - medians["with the gate"][0] / medians["without the gate"][0]
        print(
            f"the gate costs {cost:.1%} of throughput on the cache-hit path ({args.connections} connections)"
        )
    finally:
        server.shutdown()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
