"""Running `webops check` as a monitoring system does: a process, its exit status and its output."""

from __future__ import annotations

import subprocess
import sys


def run_plugin(*args: str) -> tuple[int, str]:
    """The exit status and the whole of stdout (status line, long output, perfdata lines)."""
    proc = subprocess.run(
        [sys.executable, "-m", "webops", "check", *args], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout


def run_check(*args: str) -> tuple[int, str]:
    """A check whose output is one status line (a few series): its status and that line."""
    rc, out = run_plugin(*args)
    assert out.count("\n") == 1, out  # one status line, on stdout
    return rc, out.strip()
