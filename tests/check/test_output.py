"""The status line, long output and perfdata, by the Monitoring Plugins guidelines."""

from __future__ import annotations

import math

from webops.check import output
from webops.check.output import CRITICAL, OK, UNKNOWN, WARNING, Perf, Verdict


def test_labels_are_quoted_quotes_doubled_and_equals_replaced() -> None:
    assert str(Perf("stats.gauges.x", 25, "", "10", "20")) == "'stats.gauges.x'=25;10;20"
    assert str(Perf("it's a=b", 1.5, "ms")) == "'it''s a_b'=1.5ms"
    assert str(Perf("x", 1e-7)) == "'x'=0.0000001"


def test_a_value_that_is_no_number_is_u_and_a_label_cannot_break_the_line() -> None:
    """A change from 0 is infinite, a stale series has no value: perfdata says `U`, never `inf`;
    a newline or `|` in a series name would end the line or start perfdata."""
    assert str(Perf("x change", math.inf, "%", "-10:10")) == "'x change'=U;-10:10"
    assert str(Perf("x", None, "", "", "10")) == "'x'=U;;10"
    assert str(Perf("a|b\nc\x1bd", 1)) == "'a_b_c_d'=1"


def test_the_worst_series_decides_and_each_problem_is_named() -> None:
    verdicts = [
        Verdict("a", OK, "avg 1", [Perf("a", 1)]),
        Verdict("b", WARNING, "avg 12", [Perf("b", 12)]),
        Verdict("c", CRITICAL, "avg 25", [Perf("c", 25)]),
    ]
    state, line = output.status(verdicts)
    assert state == CRITICAL
    assert line == "WEBOPS CHECK CRITICAL - c avg 25; b avg 12; 1 of 3 series OK | 'a'=1 'b'=12 'c'=25"


def test_critical_and_warning_outrank_unknown_as_max_state_alt() -> None:
    """A stale series (UNKNOWN, 3) must not hide another's CRITICAL (2) or WARNING (1)."""
    for problem in (CRITICAL, WARNING):
        state, _ = output.status([Verdict("a", UNKNOWN, "stale"), Verdict("b", problem, "avg 9")])
        assert state == problem
    assert output.worst(OK, UNKNOWN) == UNKNOWN
    assert output.status([Verdict("a", UNKNOWN, "stale"), Verdict("b", OK, "avg 1")])[0] == UNKNOWN


def test_the_tally_is_always_said() -> None:
    assert output.status([Verdict("a", CRITICAL, "avg 9")])[1].endswith("a avg 9; 0 of 1 series OK")
    assert output.status([Verdict("a", OK, "avg 1")])[1].endswith("a avg 1; 1 of 1 series OK")


def test_a_thousand_series_give_a_short_first_line_then_bounded_long_output_and_perfdata() -> None:
    """NRPE v2 keeps 1 KiB: the verdict and tally come first; every other line is bounded."""
    verdicts = [
        Verdict(f"app.{i:04}.requests", CRITICAL if i % 2 else OK, f"avg {i}", [Perf(f"app.{i:04}", i)])
        for i in range(1200)
    ]
    state, text = output.status(verdicts)
    first, *rest = text.split("\n")
    assert state == CRITICAL
    assert first.startswith("WEBOPS CHECK CRITICAL - app.0001.requests avg 1;"), first
    head = first.partition(" | ")[0]
    assert len(head) < 240 and "600 of 1200 series OK" in head, head
    assert len(first.encode()) <= 1000
    assert rest[output.MAX_LONG] == "and 550 more series not OK", rest[output.MAX_LONG]
    assert "perfdata left out for 1100 series" in text
    labels = [p for p in text.replace("\n", " ").split() if p.startswith("'app.")]
    assert len(labels) == output.MAX_PERF_SERIES
    assert " | " in rest[output.MAX_LONG + 1]  # the second `|` starts the later perfdata
    assert all(len(r.encode()) < 300 for r in rest)


def test_no_series_is_unknown_and_a_pipe_cannot_start_perfdata() -> None:
    assert output.status([])[0] == UNKNOWN
    assert output.line(OK, "a|b") == "WEBOPS CHECK OK - a/b"
