"""Timer maths, value by value, against Etsy's process_metrics semantics; and the extension's
(native/src/stats.rs) against this reference, float for float, for any interval (hypothesis)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import need
from webops.statsd import hotpath, timerstats
from webops.statsd import settings as statsd_config
from webops.statsd.kinds.timers import TimerSeries
from webops.statsd.snapshot import SummarySettings
from webops.statsd.timerstats import (
    filter_stats,
    histogram_bins,
    js_round,
    pct_suffix,
    summarize_reference,
    summarize_timers,
    timer_stats,
)


def test_one_to_ten_with_positive_negative_and_fractional_thresholds() -> None:
    d = timer_stats([float(v) for v in range(10, 0, -1)], 10, [90, -10, 99.9, 1], 10000)
    assert d["count_90"] == 9
    assert d["upper_90"] == 9
    assert d["sum_90"] == 45
    assert d["mean_90"] == 5
    assert d["sum_squares_90"] == 285
    assert d["count_top10"] == 1
    assert d["lower_top10"] == 10
    assert d["sum_top10"] == 10
    assert d["mean_top10"] == 10
    assert d["sum_squares_top10"] == 100
    assert d["count_99_9"] == 10
    assert d["upper_99_9"] == 10
    assert d["mean_99_9"] == 5.5
    assert "count_1" not in d  # round(0.1) == 0 values: Etsy skips the threshold
    assert d["std"] == pytest.approx(math.sqrt(8.25))
    assert (d["upper"], d["lower"], d["sum"], d["sum_squares"]) == (10, 1, 55, 385)
    assert d["mean"] == 5.5
    assert d["median"] == 5.5
    assert d["count"] == 10
    assert d["count_ps"] == 1


def test_top_threshold_covering_every_value() -> None:
    d = timer_stats([1.0, 2.0, 3.0], 3, [-100], 1000)
    assert (d["count_top100"], d["sum_top100"], d["lower_top100"]) == (3, 6, 1)


def test_rounding_is_javascript_math_round() -> None:
    assert js_round(4.5) == 5 and js_round(2.5) == 3 and js_round(-0.5) == 0
    d = timer_stats([1.0, 2.0, 3.0, 4.0, 5.0], 5, [90], 10000)
    assert d["count_90"] == 5  # 0.9 * 5 = 4.5 rounds up, as in JS
    assert d["upper_90"] == 5


def test_single_value() -> None:
    d = timer_stats([7.0], 1, [90], 10000)
    assert (d["count_90"], d["mean_90"], d["upper_90"], d["sum_90"], d["sum_squares_90"]) == (1, 7, 7, 7, 49)
    assert d["median"] == 7 and d["std"] == 0


def test_sample_rate_weighs_count_but_not_the_statistics() -> None:
    d = timer_stats([10.0, 20.0], 4, [90], 2000)
    assert d["count"] == 4
    assert d["count_ps"] == 2
    assert d["mean"] == 15


def test_idle_timer() -> None:
    assert timer_stats([], 0, [90], 10000) == {"count": 0, "count_ps": 0}


def test_histogram_bins() -> None:
    values = [float(v) for v in range(1, 11)]
    d = timer_stats(values, 10, [90], 10000, [3, 7.5, "inf"])
    assert d["histogram"] == {"bin_3": 2, "bin_7_5": 5, "bin_inf": 3}
    d = timer_stats(values, 10, [90], 10000, [5])
    assert d["histogram"] == {"bin_5": 4}  # values past the last bin are left out, by design


def test_histogram_first_matching_entry_wins() -> None:
    conf = [{"metric": "foo", "bins": []}, {"metric": "", "bins": [50, "inf"]}]
    assert histogram_bins("api.foo.time", conf) == []
    assert histogram_bins("api.bar.time", conf) == [50, "inf"]


def test_percentile_names() -> None:
    assert [pct_suffix(p) for p in (90, 99.9, -10, 50.5)] == ["90", "99_9", "top10", "50_5"]


def test_calculated_timer_metrics_filter() -> None:
    d = timer_stats([1.0, 2.0, 3.0], 3, [90, -50, 99.9], 10000)
    kept = filter_stats(d, ["count", "upper_percent", "mean_percent", "sum_squares_percent"])
    # Etsy's rule, to the letter: mean_top50 is a mean_percent; 99.9's names end in _99_9 -> _99_percent
    assert set(kept) == {"count", "upper_90", "mean_90", "mean_top50", "sum_squares_90", "sum_squares_top50"}
    assert set(filter_stats(d, ["upper_99_percent"])) == {"upper_99_9"}
    assert filter_stats(d, []) is d


# --- the extension against the reference ----------------------------------------------------

samples = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),  # 1e308s whose sums overflow, subnormals, -0.0
    st.integers(0, 20).map(float),  # duplicates, and every percentile's rounding
    st.sampled_from([0.0, -0.0, 0.5, 1e308, -1e308, 1.7976931348623157e308, 5e-324]),
)
pcts = st.lists(
    st.one_of(
        st.sampled_from([90, 99.9, -10, 50, 100, -100, 1, -0.5, 99.99, 50.5]),
        st.floats(-100, 100).filter(lambda p: p != 0),
    ),
    max_size=4,
)
bins = st.lists(
    st.one_of(
        st.just("inf"), st.integers(-5, 25), st.floats(-5, 25), st.sampled_from(["5", "7.5", "1e1", "0"])
    ),
    max_size=5,
)
histograms = st.lists(
    st.fixed_dictionaries({"metric": st.sampled_from(["", "t", "b.", "zz"]), "bins": bins}), max_size=3
)
wanted = st.lists(
    st.sampled_from(
        [
            "count",
            "count_ps",
            "std",
            "median",
            "histogram",
            "sum",
            "upper_percent",
            "mean_percent",
            "mean_top_percent",
            "lower_top_percent",
            "sum_squares_percent",
            "count_percent",
            "upper_99_percent",
        ]
    ),
    max_size=4,
)
tables = st.dictionaries(
    st.sampled_from(["t", "t2", "a.b.t", "x", "b.c"]),
    st.tuples(
        st.lists(samples, max_size=25), st.one_of(st.floats(0, 1e6), st.sampled_from([0, 3, 1e308, math.inf]))
    ),
)
PROPERTY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def exact(v: Any) -> Any:
    """A value as only an identical one compares: type, and floats by their bits (repr keeps -0.0)."""
    if isinstance(v, dict):
        return [(k, exact(x)) for k, x in v.items()]  # key order too
    if isinstance(v, list):
        return [exact(x) for x in v]
    return (type(v).__name__, repr(v))


def both(table: dict, *config: Any) -> tuple[Any, Any]:
    """(reference, native) over copies of the same table, with the samples each left behind."""
    out = []
    for native in (False, True):
        copy = {k: TimerSeries(list(samples), count) for k, (samples, count) in table.items()}
        got = summarize_timers(copy, *config, native=True) if native else summarize_reference(copy, *config)
        out.append(exact([got[0], got[1], [t.samples for t in copy.values()]]))
    return out[0], out[1]


def need_native() -> None:
    need(timerstats.TimerPlan is not None, f"the native extension is not built: {hotpath.NATIVE_MISSING}")


@PROPERTY
@given(tables, pcts, st.sampled_from([1000, 10000, 1, 3_600_000, 2500]), histograms, wanted)
def test_native_statistics_are_the_references(
    table: dict, pct: list, interval: int, histogram: list, keep: list
) -> None:
    need_native()
    reference, native = both(table, pct, interval, histogram, keep)
    assert native == reference


def test_native_edge_cases_are_the_references() -> None:
    """The cases the property must keep drawing: one value, overflow, top and fractional percentiles,
    bins as strings, a count that overflows, an idle timer, a filter that keeps nothing."""
    need_native()
    table = {
        "one": ([7.0], 1.0),
        "idle": ([], 0),
        "big": ([1e308, 1e308, 1.0], 3.0),
        "squares": ([1e200, 1.0], 2.0),
        "many": ([float(v % 7) for v in range(100)] + [-0.0, 0.0], 102.0),
        "count": ([1.0], math.inf),
    }
    for config in (
        ([90, -10, 99.9, 1], 10000, [{"metric": "", "bins": [3, "7.5", 7.5, "inf"]}], []),
        (
            [50],
            1000,
            [{"metric": "zz", "bins": [1]}, {"metric": "m", "bins": []}],
            ["count", "std", "histogram"],
        ),
        ([-100, 100], 1, [], ["nothing_of_this"]),
    ):
        reference, native = both(table, *config)
        assert native == reference


def test_a_sample_that_is_not_a_float_is_left_to_the_reference() -> None:
    """An int sample (a test's, a third-party kind's) gives int statistics in the reference."""
    need_native()
    table = {"t": TimerSeries([3, 1, 2], 3)}
    out, left_out = summarize_timers(table, [90], 10000, [], [], native=True)
    assert out["t"]["upper"] == 3 and isinstance(out["t"]["upper"], int) and left_out == []
    assert table["t"].samples == [1, 2, 3]


def test_the_flusher_computes_natively_where_the_hot_path_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    need_native()
    assert statsd_config.build({"hotPath": "native"}).summary().native_timers
    assert not statsd_config.build({"hotPath": "python"}).summary().native_timers
    monkeypatch.setenv("WEBOPS_STATSD_HOTPATH", "python")
    assert not SummarySettings().native_timers
    monkeypatch.delenv("WEBOPS_STATSD_HOTPATH")
    assert SummarySettings().native_timers
