"""The metric-kind table: every kind is complete, and a new metric type is one module.

The second test is the shape the issue asked for, checked for real: a copy of the package gets
one new module in kinds/ and nothing else, and the new type then parses, aggregates across
reader batches, has its config key, and reaches Graphite, the file and console backends,
/metrics and the management console.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import webops
from webops.statsd.aggregate import Aggregator, BatchAggregator
from webops.statsd.kinds import BY_CODE, CONFIG_KEYS, KINDS
from webops.statsd.kinds.base import Kind

MAXIMA = '''
"""A test-only metric type: the largest value of an interval (`name:7|mx`)."""

from __future__ import annotations

from typing import Any, ClassVar

from ..validate import Key, number
from . import register
from .base import Kind, Point, number_value


@register
class Maxima(Kind):
    table = "maxima"
    codes = ("mx",)
    order = 4
    graphite_name = "Maximum"
    legacy_namespace = "maxima"
    delete_doc = "drop idle maxima"
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {"maximaFloor": (0, number(), "smallest maximum sent")}

    @staticmethod
    def parse(raw, code, rate):
        value = number_value(raw, code, rate)
        return value if isinstance(value, tuple) else ("mx", value, rate, False)

    def add(self, key, value, rate, delta):
        if key in self.series or self.agg.admit():
            self.series[key] = max(self.series.get(key, value), value)

    def merge(self, table):
        for key, value in table.items():
            self.add(key, value, 1.0, False)

    def take(self, delete):
        table, self.series = self.series, {}
        return table

    @classmethod
    def combine(cls, first, second):
        return {k: max(first.get(k, v), v) for k, v in {**first, **second}.items()}

    @classmethod
    def summarize(cls, table, settings):
        floor = settings.options["maximaFloor"]
        return {k: max(v, floor) for k, v in table.items()}, []

    @classmethod
    def fields(cls, table, summary, full):
        return {"maxima": summary}

    @classmethod
    def graphite(cls, naming, key, raw, summary):
        yield Point(naming.path(naming.namespace(cls), key), summary, "max")  # its rollup, declared
'''

SCRIPT = """
import io
from webops.statsd import config
from webops.statsd.admin import HELP
from webops.statsd.aggregate import Aggregator, BatchAggregator
from webops.statsd.backends.console import ConsoleBackend
from webops.statsd.backends.file import FileBackend
from webops.statsd.backends.naming import GraphiteNaming
from webops.statsd.prometheus import PrometheusView
from webops.statsd.snapshot import summarize

graphite, file = {"legacyNamespace": False}, {"format": "json"}
cfg = config.build({"maximaFloor": 1, "deleteMaxima": True, "graphite": graphite, "file": file})
main, reader = Aggregator(cfg.aggregation()), BatchAggregator(cfg.aggregation())
main.ingest(b"peak:3|mx\\nlow:-5|mx")
reader.ingest(b"peak:7|mx\\npeak:2|mx")
main.merge(reader.take_batch())
snap = summarize(main.take(1700000000), cfg.summary())
print(GraphiteNaming(cfg).plaintext(snap))
out = io.StringIO()
ConsoleBackend(cfg, 0, stream=out).flush(snap)
print(out.getvalue())
print(FileBackend(cfg, 0).render(snap))
view = PrometheusView()
view.update(snap)
view.refresh()
print(view.render())
print(HELP)
print(cfg.aggregation().deletes)
"""


def test_every_kind_fills_in_the_whole_interface() -> None:
    assert [k.table for k in KINDS] == ["counters", "timers", "gauges", "sets"]  # Etsy's order
    assert sorted(BY_CODE) == ["c", "d", "g", "h", "ms", "s"]
    assert {"deleteCounters", "deleteTimers", "deleteGauges", "deleteSets"} <= CONFIG_KEYS.keys()
    assert {"percentThreshold", "histogram", "calculatedTimerMetrics", "gaugesMaxTTL"} <= CONFIG_KEYS.keys()
    for kind in KINDS:
        for method in ("parse", "add", "summarize", "fields", "graphite"):
            assert getattr(kind, method) is not getattr(Kind, method), (kind.table, method)
        # merging readers' tables and intervals: either the kind's own, or the defaults' hooks
        own_merge = kind.merge is not Kind.merge or kind.absorb is not Kind.absorb
        assert kind.record is not Kind.record if kind.ordered else own_merge, kind.table
        assert kind.combine is not Kind.combine or kind.copy is not Kind.copy, kind.table


def test_one_reader_batch_or_direct_intake_give_the_same_tables() -> None:
    lines = b"c:1|c\nc:2|c|@0.5\nt:5|ms\nh:3|h\ng:7|g\ng:+1|g\ns:a|s\ns:b|s"
    direct, reader, main = Aggregator(), BatchAggregator(), Aggregator()
    direct.ingest(lines)
    reader.ingest(lines)
    main.merge(reader.take_batch())
    for kind in KINDS:
        assert kind.console(main.table(kind.table)) == kind.console(direct.table(kind.table)), kind.table


def test_a_new_metric_type_is_one_module(tmp_path: Path) -> None:
    package = Path(webops.__file__).parent
    shutil.copytree(package, tmp_path / "webops", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "webops" / "statsd" / "kinds" / "maxima.py").write_text(MAXIMA)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "stats.maxima.peak 7 1700000000" in out  # Graphite (and the file backend's format)
    assert "stats.maxima.low 1 1700000000" in out  # the kind's own config key applied
    assert "maxima: { peak: 7, low: 1 }" in out  # console backend
    assert '"maxima":{"peak":7.0,"low":1}' in out  # file backend, JSON lines
    assert "\npeak 7\n" in out and "# TYPE peak gauge" in out  # /metrics
    assert "delmaxima" in out  # management console
    assert "maxima" in out.splitlines()[-1]  # deleteMaxima
