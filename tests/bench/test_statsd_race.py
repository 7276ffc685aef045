"""The race of `make bench` itself, short: it must build its sender, run webops (both hot paths)
and collectd, and account for every metric (offered = counted + the socket's kernel drops)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import need

BENCH = Path(__file__).parents[2] / "bench"


def test_the_race_counts_every_metric_of_every_daemon(tmp_path: Path) -> None:
    need(shutil.which("gcc") is not None, "gcc not found")
    need(shutil.which("collectd") is not None, "collectd not found (apt-get install collectd-core)")
    sender = tmp_path / "udpblast"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Werror", "-o", str(sender), str(BENCH / "udpblast.c")], check=True
    )
    short = ["--seconds", "0.5", "--repeat", "1", "--native-receivers", "auto", "--steady", "200000"]
    run = subprocess.run(
        [sys.executable, str(BENCH / "statsd_race.py"), "--sender", str(sender), *short],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line for line in run.stdout.splitlines() if "offered" in line and "unexplained" in line]
    names = [re.split(r"\s{2,}", row.strip())[0] for row in rows]
    expected = [
        "webops native (auto: 1 receivers)",
        "webops python (reference)",
        "collectd 5 statsd plugin (C)",
    ]
    assert names == expected * 2, run.stdout  # capacity, then steady
    assert all(row.endswith("unexplained 0 metrics") for row in rows), run.stdout
    assert "collectd 5 statsd plugin (C)" in run.stdout.split("ratios")[1]
