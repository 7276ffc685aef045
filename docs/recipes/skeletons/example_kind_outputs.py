"""Where the maxima kind (example_kind.py) shows: one entry per output, keyed by its table name.

A kind without an entry in an output is left out of that output (kinds.outputs logs it once),
and tests/statsd/test_kinds.py fails until every output has one. Each block below goes into the
module its comment names, beside that output's entries for counters, timers, gauges and sets;
those modules already import what the block uses. `ENTRIES` at the end is for the recipe's test,
which registers them from here. See docs/recipes/kind.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from webops.statsd.backends.console import as_held
from webops.statsd.backends.naming import GraphiteKind, GraphiteNaming
from webops.statsd.prometheus import Exposed
from webops.statsd.store.retention import Point


# --- backends/naming.py: what carbon, the file backend's plaintext and the store get ----------
def maximum_points(
    naming: GraphiteNaming, ns: list[str], key: str, raw: float | None, summary: float
) -> Iterator[Point]:
    """One path per series; its rollup says how the store (and a flush merged with another)
    combines several flushes' values: the largest of several maxima is theirs."""
    yield Point(naming.path(ns, key), summary, "max")


# in GRAPHITE: `prefixMaximum` (graphite.prefixMaximum, default "maxima", is then a config key of
# its own), and `stats.maxima.<key>` under legacyNamespace
GRAPHITE_ENTRY = GraphiteKind("Maximum", "maxima", maximum_points)

# --- prometheus.py, in PROMETHEUS: each summary value as a gauge (the default Exposed) ---------
PROMETHEUS_ENTRY = Exposed()

# --- backends/console.py, in LIVE: the management console's `maxima` command shows the table ---
LIVE_ENTRY = as_held


# --- backends/console.py, in CONSOLE: the console backend's dump (Etsy's names, node's format) --
def console_fields(table: dict[str, Any], summary: dict[str, float]) -> dict[str, Any]:
    return {"maxima": summary}


# --- backends/file.py, in JSON_FIELDS: the file backend's `json` format -------------------------
def json_fields(table: dict[str, Any], summary: dict[str, float]) -> dict[str, Any]:
    return {"maxima": summary}


# Output table name -> the entry (the test sets GRAPHITE["maxima"] = GRAPHITE_ENTRY, and so on).
ENTRIES: dict[str, object] = {
    "GRAPHITE": GRAPHITE_ENTRY,
    "PROMETHEUS": PROMETHEUS_ENTRY,
    "LIVE": LIVE_ENTRY,
    "CONSOLE": console_fields,
    "JSON_FIELDS": json_fields,
}
