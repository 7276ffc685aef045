"""The Monitoring Plugins range syntax, each form at its ends (which are inclusive)."""

from __future__ import annotations

import pytest

from webops.check.ranges import parse, parse_change

CASES = [
    # (range, value, alerts)
    ("10", -0.1, True),
    ("10", 0, False),
    ("10", 10, False),
    ("10", 10.1, True),
    ("10:", 9.9, True),
    ("10:", 10, False),
    ("10:", 1e9, False),
    ("~:10", -1e9, False),
    ("~:10", 10, False),
    ("~:10", 10.5, True),
    ("10:20", 9, True),
    ("10:20", 10, False),
    ("10:20", 20, False),
    ("10:20", 21, True),
    ("@10:20", 9, False),
    ("@10:20", 10, True),
    ("@10:20", 20, True),
    ("@10:20", 21, False),
    ("-5:-1", -3, False),
    ("-5:-1", 0, True),
]


@pytest.mark.parametrize(("text", "value", "alerts"), CASES)
def test_each_form_alerts_as_the_guidelines_say(text: str, value: float, alerts: bool) -> None:
    assert parse(text).alerts(value) is alerts


@pytest.mark.parametrize("text", ["", "@", "abc", "20:10", "1:x", "nan", "inf"])
def test_a_bad_range_is_refused_with_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"range|empty"):
        parse(text)


def test_a_change_threshold_is_relative_with_percent_and_a_lone_number_is_either_way() -> None:
    r, relative = parse_change("20%")
    assert relative and r.text == "-20:20"
    assert r.alerts(20.5) and r.alerts(-20.5) and not r.alerts(-20) and not r.alerts(20)
    r, relative = parse_change("~:5")
    assert not relative and r.alerts(6) and not r.alerts(-100)


@pytest.mark.parametrize("text", ["-5", "@-5", "-0.5"])
def test_a_lone_negative_number_is_0_to_n_which_is_refused_with_the_reason(text: str) -> None:
    """`-5` is 0..-5 by the guidelines: a start above its end, said so (not a crash)."""
    with pytest.raises(ValueError, match="above end"):
        parse(text)


def test_negative_ends_in_their_natural_form() -> None:
    assert parse("-10:-1").alerts(0) and not parse("-10:-1").alerts(-5)
    assert parse("-0:0").alerts(0.5) and not parse("-0:0").alerts(0)
    r, relative = parse_change("-10:")
    assert not relative and r.alerts(-11) and not r.alerts(1000)
