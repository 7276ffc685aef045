"""The maths: aggregations with nulls, graphite-web's percentile, changes, and the Holt-Winters
port against graphite-web's own functions (Debian's package, imported in its Python)."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
from pathlib import Path

import pytest

from tests.conftest import need
from tests.graphite_web import GRAPHITE_WEB
from webops.check import evaluate

POINTS = [None, 3.0, None, 1.0, 7.0, 5.0, None]


@pytest.mark.parametrize(
    ("agg", "want"),
    [("avg", 4.0), ("max", 7.0), ("min", 1.0), ("sum", 16.0), ("last", 5.0), ("p50", 5.0), ("p95", 7.0)],
)
def test_nulls_are_ignored_by_every_aggregation(agg: str, want: float) -> None:
    assert evaluate.aggregate(POINTS, agg) == want


def test_a_window_of_nulls_or_no_points_has_no_value() -> None:
    assert evaluate.aggregate([None, None], "avg") is None
    assert evaluate.aggregate([], "max") is None


def test_percentiles_are_graphite_webs_nearest_rank() -> None:
    values = list(range(1, 11))  # rank: int(0.9 * 11) + 1 = 10
    assert evaluate.percentile(values, 90) == 10
    assert evaluate.percentile(values, 50) == 6
    assert evaluate.percentile(values, 100) == 10
    assert evaluate.percentile(values, 1) == 1


@pytest.mark.parametrize("bad", ["median", "p-1", "p101", "pxx", ""])
def test_an_unknown_aggregation_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        evaluate.check_agg(bad)


def test_changes_absolute_and_relative() -> None:
    assert evaluate.change(15, 10, relative=False) == 5
    assert evaluate.change(15, 10, relative=True) == 50
    assert evaluate.change(5, -10, relative=True) == 150
    assert evaluate.change(0, 0, relative=True) == 0
    assert evaluate.change(1, 0, relative=True) == math.inf


GRAPHITE_SIDE = """
import json, sys
import django
django.setup()
from graphite.render.datalib import TimeSeries
from graphite.render.functions import holtWintersAnalysis
data = json.load(sys.stdin)
s = TimeSeries("x", 0, len(data["values"]) * data["step"], data["step"], data["values"])
s.pathExpression = "x"
a = holtWintersAnalysis(s, data["season"])
print(json.dumps({"predictions": list(a["predictions"]), "deviations": list(a["deviations"])}))
"""


def test_holt_winters_is_graphite_webs_analysis(tmp_path: Path) -> None:
    need(GRAPHITE_WEB.exists(), "graphite-web (apt-get install graphite-web)")
    rng = random.Random(34)
    step, season = 60, 3600  # a season of 60 points, four seasons, a spike and nulls
    values: list[float | None] = [
        50 + 20 * math.sin(2 * math.pi * i / 60) + rng.uniform(-3, 3) for i in range(240)
    ]
    for i in (5, 6, 77, 150):
        values[i] = None
    values[200] = 400.0
    (tmp_path / "gw_settings.py").write_text(f'SECRET_KEY = "x"\nLOG_DIR = "{tmp_path}"\n')
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "graphite.settings",
        "GRAPHITE_SETTINGS_MODULE": "gw_settings",
        "PYTHONPATH": str(tmp_path),
    }
    out = subprocess.run(
        ["/usr/bin/python3", "-c", GRAPHITE_SIDE],
        input=json.dumps({"values": values, "step": step, "season": "1h"}),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    theirs = json.loads(out.stdout)
    predictions, deviations = evaluate.holt_winters(values, step, season)
    assert len(predictions) == len(theirs["predictions"]) == 240
    for ours, want in ((predictions, theirs["predictions"]), (deviations, theirs["deviations"])):
        for i, (a, b) in enumerate(zip(ours, want, strict=True)):
            assert (a is None) == (b is None), i
            assert a is None or a == pytest.approx(b, rel=1e-12, abs=1e-9), i
    lower, upper = evaluate.confidence_bands(values, step, 180 * step, 3, season)
    assert len(lower) == 60 and upper[20] is not None and lower[20] is not None
    assert not lower[20] <= values[200] <= upper[20]  # type: ignore[operator]  # the spike is outside


def test_p0_is_a_percentile_the_lowest_value() -> None:
    """The docs say any percentile, 0..100: p0 is accepted and is the minimum."""
    assert evaluate.check_agg("p0") == "p0"
    assert evaluate.aggregate(POINTS, "p0") == 1.0
