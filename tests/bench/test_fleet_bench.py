"""`make bench-fleet` itself, tiny (--quick): every scenario runs on the real parts and prints its
figures, and every metric sent is accounted for: stored in the caches' whisper files behind each
relay, received by the central daemon through the repeater, received by the daemons flushing
aggregates."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import need

BENCH = Path(__file__).parents[2] / "bench"


def test_the_fleet_bench_prints_its_figures_and_loses_nothing(tmp_path: Path) -> None:
    need(shutil.which("gcc") is not None, "gcc not found")
    for exe in ("carbon-cache", "carbon-relay", "carbon-c-relay"):
        need(
            shutil.which(exe) is not None, f"{exe} not found (apt-get install graphite-carbon carbon-c-relay)"
        )
    sender = tmp_path / "udpblast"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Werror", "-o", str(sender), str(BENCH / "udpblast.c")], check=True
    )
    run = subprocess.run(
        [sys.executable, str(BENCH / "fleet_bench.py"), "--sender", str(sender), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert re.search(r"fleet benchmark on \d+ CPUs \(.+\), \d{4}-\d\d-\d\d", out), out

    relays = re.findall(
        r"^  (carbon-c-relay \(C\)|carbon-relay \(Python\))\s+([\d,]+)\s+([\d,]+)\s.*"
        r"sent ([\d,]+), received ([\d,]+) \(kernel drops 0 packets\), stored ([\d,]+),"
        r" lost 0; relay dropped 0 datapoints$",
        out,
        re.M,
    )
    assert [r[0] for r in relays] == ["carbon-c-relay (C)", "carbon-relay (Python)"], out
    for _name, written, _e2e, sent, got, stored in relays:
        assert int(written.replace(",", "")) > 0
        assert sent == got == stored and int(sent.replace(",", "")) > 0, out

    repeater = re.search(
        r"sent ([\d,]+), locals received ([\d,]+), central received ([\d,]+), lost 0 "
        r"\(repeater buffers dropped 0 packets\)",
        out,
    )
    assert repeater and len(set(repeater.groups())) == 1, out
    aggregates = re.search(r"aggregates: .* wire ([\d.]+) MB .* sent ([\d,]+), received ([\d,]+)$", out, re.M)
    assert aggregates and aggregates[2] == aggregates[3] and float(aggregates[1]) > 0, out
    assert re.search(r"raw packets / aggregates on the wire: [\d.]+x", out), out

    scrape = re.search(r"^\s+1,000\s+\d+ ms\s+\d+ ms\s+[\d.]+ ms\s+([\d.]+) MB$", out, re.M)
    assert scrape and float(scrape[1]) > 0, out
