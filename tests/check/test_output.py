"""The status line and perfdata, by the Monitoring Plugins guidelines."""

from __future__ import annotations

from webops.check import output
from webops.check.output import CRITICAL, OK, UNKNOWN, WARNING, Perf, Verdict


def test_labels_are_quoted_quotes_doubled_and_equals_replaced() -> None:
    assert str(Perf("stats.gauges.x", 25, "", "10", "20")) == "'stats.gauges.x'=25;10;20"
    assert str(Perf("it's a=b", 1.5, "ms")) == "'it''s a_b'=1.5ms"
    assert str(Perf("x", 1e-7)) == "'x'=0.0000001"


def test_the_worst_series_decides_and_each_problem_is_named() -> None:
    verdicts = [
        Verdict("a", OK, "avg 1", [Perf("a", 1)]),
        Verdict("b", WARNING, "avg 12", [Perf("b", 12)]),
        Verdict("c", CRITICAL, "avg 25", [Perf("c", 25)]),
    ]
    state, line = output.status(verdicts)
    assert state == CRITICAL
    assert line == "WEBOPS CHECK CRITICAL - c avg 25; b avg 12; 1 of 3 series OK | 'a'=1 'b'=12 'c'=25"


def test_no_series_is_unknown_and_a_pipe_cannot_start_perfdata() -> None:
    assert output.status([])[0] == UNKNOWN
    assert output.line(OK, "a|b") == "WEBOPS CHECK OK - a/b"
