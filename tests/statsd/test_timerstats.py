"""Timer maths, value by value, against Etsy's process_metrics semantics."""

from __future__ import annotations

import math

import pytest

from webops.statsd.timerstats import filter_stats, histogram_bins, js_round, pct_suffix, timer_stats


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
