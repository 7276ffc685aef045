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
    short = [
        "--seconds",
        "0.5",
        "--repeat",
        "1",
        "--native-receivers",
        "auto",
        "--steady",
        "200000",
        "--timers",
        "0",
    ]
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


def test_the_timer_flush_reaches_the_graphite_receiver_whole(tmp_path: Path) -> None:
    """The timer scenario, small: every daemon's flush arrives at the bench's Graphite receiver
    with every value counted (collectd's last partial send buffer is left out by design)."""
    need(shutil.which("collectd") is not None, "collectd not found (apt-get install collectd-core)")
    small = [
        "--skip-intake",
        "--timers",
        "50",
        "--timer-values",
        "1000",
        "--timer-interval",
        "1",
        "--repeat",
        "1",
    ]
    run = subprocess.run(
        [sys.executable, str(BENCH / "statsd_race.py"), "--sender", "/bin/true", *small],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {
        name: cells.split() for name, cells in re.findall(r"^  (\S.*?)\s{2,}(\d.*s .*)$", run.stdout, re.M)
    }
    assert list(rows) == ["webops native", "webops python (reference)", "collectd 5 statsd plugin (C)"], (
        run.stdout
    )
    for name in ("webops native", "webops python (reference)"):
        assert rows[name][3] == "1,000", run.stdout  # the flush that carried them, whole
    assert 900 <= int(rows["collectd 5 statsd plugin (C)"][3].replace(",", "")) <= 1000, run.stdout
