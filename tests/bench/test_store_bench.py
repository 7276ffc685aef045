"""`make bench-store`'s comparison itself, tiny (--quick: 20 series, 2 runs): a real `webops
statsd` and a real graphite-web (with carbon-cache) answer the same three queries over the same
24 h of values, the table prints a time, a ratio and a size for each, and both answers hold the
same series and non-null points (what makes the times comparable)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import need
from tests.graphite_web import GRAPHITE_WEB

ROOT = Path(__file__).parents[2]

ROW = re.compile(
    r"^  (/render 20 series 24h|/render 1 series 24h|/metrics/find 20 leaves)\s+"
    r"([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+\d+\s+\d+\s+([\d,]+)\s+([\d,]+)"
    r"\s+series ([\d,]+) / ([\d,]+), points ([\d,]+) / ([\d,]+)$",
    re.M,
)


def test_the_store_bench_compares_webops_with_graphite_web_on_the_same_answers() -> None:
    need(GRAPHITE_WEB.exists(), "graphite-web (apt-get install graphite-web)")
    need(shutil.which("carbon-cache") is not None, "carbon-cache (apt-get install graphite-carbon)")
    # the bench starts its daemon in a temp dir: this checkout's sources by an absolute path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "store_bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT / "bench",
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert re.search(r"^webops vs graphite-web \(graphite-web [^,]+, carbon-cache beside it\)", out, re.M), (
        out
    )
    rows = {m[1]: m.groups()[1:] for m in ROW.finditer(out)}
    assert list(rows) == ["/render 20 series 24h", "/render 1 series 24h", "/metrics/find 20 leaves"], out
    for label, (ours, theirs, ratio, our_kib, their_kib, *held) in rows.items():
        assert float(ours) > 0 and float(theirs) > 0 and float(ratio) > 0, label
        assert int(our_kib.replace(",", "")) > 0 and int(their_kib.replace(",", "")) > 0, label
        our_series, their_series, our_points, their_points = (int(h.replace(",", "")) for h in held)
        assert our_series == their_series and our_points == their_points, (label, out)
    # filled, not empty: a day of one value a minute in every series
    assert rows["/render 20 series 24h"][5:] == ("20", "20", "28,800", "28,800"), out
    assert rows["/render 1 series 24h"][5:] == ("1", "1", "1,440", "1,440"), out
    assert rows["/metrics/find 20 leaves"][5:7] == ("20", "20"), out
