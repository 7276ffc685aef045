"""What logging costs a shell per command: no logging, webops cmdlog's snippet, the seed's recipe.

Each run is one bash doing a loop of the builtin `true` (the worst case: the command costs nothing,
so the DEBUG trap is all there is; a loop iteration is three commands: the test, `true`, the
increment) or of the program /bin/true (a fork and exec, what most commands cost at least). Records
go to a datagram socket this script drains (what syslog does), and are counted: none may be lost.
Prints figures; asserts nothing.
Usage: python bench/cmdlog_bench.py [--commands N] [--seed-commands N]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from webops.cmdlog.snippet import SNIPPET


def drain(sock: socket.socket, got: list[int], stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            sock.recv(65536)
            got[0] += 1
        except TimeoutError:
            continue


def run(setup: str, body: str, n: int, env: dict[str, str], path: str) -> tuple[float, int]:
    """Seconds for n loop iterations, and records received."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    got, stop = [0], threading.Event()
    t = threading.Thread(target=drain, args=(sock, got, stop))
    t.start()
    script = f"{setup}\nfor ((i = 0; i < {n}; i++)); do {body}; done\n"
    start = time.perf_counter()
    subprocess.run(["bash", "-c", script], env=env, check=True)
    took = time.perf_counter() - start
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and setup and got[0] < 3 * n:  # the logger may still be sending
        time.sleep(0.05)
    stop.set()
    t.join()
    sock.close()
    Path(path).unlink()
    return took, got[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", type=int, default=20000, help="loop iterations (a tenth for /bin/true)")
    ap.add_argument("--seed-commands", type=int, default=1000, help="fewer: one process a command")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        snippet = Path(tmp) / "snippet.sh"
        snippet.write_text(SNIPPET)
        path = f"{tmp}/log.sock"
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "USER": "bench", "WEBOPS_CMDLOG_SOCKET": path}
        seed = f"trap 'logger --socket {path} -t nagios \"Running $BASH_COMMAND\"' DEBUG"
        ways = [("no logging", "", 1), ("webops cmdlog snippet", f". {snippet}", 1), ("seed recipe", seed, 0)]
        print(
            f"{'loop of':10} {'logging':22} {'commands':>9} {'records':>9} {'us/command':>11} {'x none':>7}"
        )
        for body, n in (("true", args.commands), ("/bin/true", args.commands // 10)):
            base = None
            for name, setup, full in ways:
                count = n if full else min(n, args.seed_commands)
                took, got = run(setup, body, count, env, path)
                per = took / (3 * count) * 1e6
                base = base or per
                records = str(got) if setup else "-"
                print(f"{body:10} {name:22} {3 * count:>9} {records:>9} {per:>11.1f} {per / base:>7.1f}")


if __name__ == "__main__":
    main()
