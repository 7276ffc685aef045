"""pgtop's client CPU per refresh against pg_activity's, on the same server, in the same run
(prints figures, asserts nothing).

    python bench/pgtop_bench.py [--seconds 30] [--sessions 30]

Both run in a private tmux at 200x50 with a 1 s refresh against a throwaway PostgreSQL (Debian's
package, as in the tests) with `--sessions` client sessions running queries; each tool's own
CPU time (user + system, from /proc) over `--seconds` is divided by the refreshes in that time.
pg_activity comes from PyPI (`make bench-pgtop` installs it into the project's venv).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' PostgreSQL helper
import tests.conftest  # noqa: F401 - first: it imports tests.servers through tests.graphite_web, which
from tests.servers import Postgres  # needs servers whole (servers first is a circular import)

TMUX = ["tmux", "-L", f"webops-bench-{os.getpid()}"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, command: list[str], seconds: float) -> float:
    """CPU seconds per refresh of `command` (a 1 s refresh) after a 5 s warm-up."""
    env = {**os.environ, "XDG_STATE_HOME": "/tmp/webops-bench-state"}
    subprocess.run(
        [*TMUX, "new-session", "-d", "-s", name, "-x", "200", "-y", "50", "exec " + " ".join(command)],
        check=True,
        env=env,
    )
    pid = int(
        subprocess.run(
            [*TMUX, "display", "-p", "-t", name, "#{pane_pid}"], capture_output=True, text=True
        ).stdout
    )
    time.sleep(5)
    start = cpu_seconds(pid)
    time.sleep(seconds)
    used = cpu_seconds(pid) - start
    screen = subprocess.run([*TMUX, "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
    subprocess.run([*TMUX, "kill-session", "-t", name], check=False)
    if "bench session" not in screen and "--sessions 0" not in " ".join(sys.argv):
        print(f"   ({name}'s screen did not show the sessions: {screen[:200]!r})")
    return used / seconds


def sleep_in(conn, i: int) -> None:
    with contextlib.suppress(Exception):  # the server stops under it at the end
        conn.execute(f"SELECT pg_sleep(600) /* bench session {i} */")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--sessions", type=int, default=30)
    args = parser.parse_args()
    pg_activity = shutil.which("pg_activity", path=str(Path(sys.executable).parent))
    if pg_activity is None:
        raise SystemExit("pg_activity not found next to this python (make bench-pgtop installs it)")
    pg = Postgres()
    conns = [pg.connect() for _ in range(args.sessions)]
    for i, conn in enumerate(conns):  # bounded: one query per session, ended with the server
        threading.Thread(target=sleep_in, args=(conn, i), daemon=True).start()
    try:
        host = ["-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", "postgres"]
        pgtop = [
            sys.executable,
            "-m",
            "webops",
            "pgtop",
            "-H",
            "127.0.0.1",
            "-p",
            str(pg.port),
            "-U",
            "postgres",
        ]
        print(f"{args.sessions} sessions, refresh 1 s, 200x50, {args.seconds:g} s each")
        figures = {
            "pgtop": measure(
                "pgtop", [*pgtop, "-d", "postgres", "--refresh", "1", "--log-file", "''"], args.seconds
            ),
            "pg_activity": measure("pgact", [pg_activity, *host, "--refresh", "1"], args.seconds),
        }
        for name, per_refresh in figures.items():
            print(f"   {name:12s} {per_refresh * 1000:6.1f} ms of CPU per refresh")
        print(f"   pgtop / pg_activity: {figures['pgtop'] / figures['pg_activity']:.2f}")
    finally:
        subprocess.run([*TMUX, "kill-server"], check=False, capture_output=True)
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        pg.stop()


if __name__ == "__main__":
    main()
