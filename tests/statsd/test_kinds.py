"""The metric-kind table: every kind is complete, every output has an entry for every kind, and
a new metric type is one module plus one entry in each output's table.

The last test is that shape checked for real: a copy of the package gets one new module in
kinds/ and one entry appended to each output's table, and the new type then parses, aggregates
across reader batches, has its config key, and reaches Graphite, the file and console backends,
/metrics and the management console.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import webops
from webops.statsd.aggregate import Aggregator, BatchAggregator
from webops.statsd.backends.console import CONSOLE, LIVE
from webops.statsd.backends.file import JSON_FIELDS
from webops.statsd.backends.naming import GRAPHITE
from webops.statsd.kinds import BY_CODE, CONFIG_KEYS, KINDS
from webops.statsd.kinds.base import Kind
from webops.statsd.prometheus import PROMETHEUS

# Every output's per-kind table (docs/development.md: Adding a metric kind).
OUTPUTS = {
    "graphite naming (carbon, file plaintext, store)": GRAPHITE,
    "prometheus": PROMETHEUS,
    "console backend": CONSOLE,
    "management console": LIVE,
    "file backend json": JSON_FIELDS,
}

MAXIMA = '''
"""A test-only metric type: the largest value of an interval (`name:7|mx`)."""

from __future__ import annotations

from typing import Any, ClassVar

from ..validate import Key, number
from . import register
from .base import Kind, number_value


@register
class Maxima(Kind):
    table = "maxima"
    codes = ("mx",)
    order = 4
    delete_doc = "drop idle maxima"
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {"maximaFloor": Key(0, number(), "smallest maximum sent")}

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
'''

# One entry appended to each output's module: (file under webops/statsd, the lines).
ENTRIES = {
    "backends/naming.py": """
def maximum_points(naming, ns, key, raw, summary):
    yield Point(naming.path(ns, key), summary, "max")  # its rollup, declared


GRAPHITE["maxima"] = GraphiteKind("Maximum", "maxima", maximum_points)
""",
    "prometheus.py": 'PROMETHEUS["maxima"] = Exposed()\n',
    "backends/console.py": """
LIVE["maxima"] = as_held
CONSOLE["maxima"] = lambda table, summary: {"maxima": summary}
""",
    "backends/file.py": 'JSON_FIELDS["maxima"] = lambda table, summary: {"maxima": summary}\n',
}

SCRIPT = """
import io
from webops.statsd import settings as config
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
        for method in ("parse", "add", "summarize"):
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
        live = LIVE[kind.table]
        assert live(main.table(kind.table)) == live(direct.table(kind.table)), kind.table


@pytest.mark.parametrize("output", OUTPUTS)
def test_every_output_has_an_entry_for_every_kind(output: str) -> None:
    """A kind an output has no entry for would be left out of it (logged once): say so here."""
    missing = [kind.table for kind in KINDS if kind.table not in OUTPUTS[output]]
    assert not missing, f"{output} has no entry for {missing}"
    assert set(OUTPUTS[output]) <= {kind.table for kind in KINDS}, output  # no entry for a gone kind


def imported(path: Path) -> set[str]:
    """The modules of webops.statsd a file imports when it is loaded or type-checked (module
    level and `if TYPE_CHECKING:` blocks; not a function's own lazy import)."""
    out: set[str] = set()
    nodes = list(ast.parse(path.read_text()).body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If):
            nodes += node.body + node.orelse
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = path.parent.relative_to(Path(webops.__file__).parent / "statsd").parts
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out |= {module} if node.module else {f"{module}.{a.name}".lstrip(".") for a in node.names}
    return out


def test_kinds_know_no_output() -> None:
    """kinds/ imports neither the aggregator, the snapshot nor any output, not even for type
    checking, and config.py none of the hot path, aggregation, listeners, snapshot or plug-ins."""
    package = Path(webops.__file__).parent / "statsd"
    for path in sorted((package / "kinds").glob("*.py")):
        for module in imported(path):
            assert module.split(".")[0] in ("kinds", "jsfmt", "validate", "timerstats"), (path.name, module)
    for module in imported(package / "config.py"):
        assert module.split(".")[0] in ("validate", "common"), module


def test_a_new_metric_type_is_one_module_and_an_entry_per_output(tmp_path: Path) -> None:
    package = Path(webops.__file__).parent
    shutil.copytree(package, tmp_path / "webops", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "webops" / "statsd" / "kinds" / "maxima.py").write_text(MAXIMA)
    for name, lines in ENTRIES.items():
        with (tmp_path / "webops" / "statsd" / name).open("a") as f:
            f.write("\n" + lines)
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
