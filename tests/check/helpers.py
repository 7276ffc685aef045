"""Running `webops check` as a monitoring system does: a process, its exit status and its line."""

from __future__ import annotations

import subprocess
import sys


def run_check(*args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "webops", "check", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.count("\n") == 1, (proc.stdout, proc.stderr)  # one status line, on stdout
    return proc.returncode, proc.stdout.strip()
