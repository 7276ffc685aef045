"""Numbers and tables printed as node prints them (Graphite values, console replies)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webops.common.jsnumber import _general
from webops.statsd.jsfmt import inspect, number


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.1, "0.1"),
        (-0.5, "-0.5"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (1e21, "1e+21"),
        (1.2345e22, "1.2345e+22"),
        (123456789012345680000.0, "123456789012345680000"),
        (81.64965809277261, "81.64965809277261"),
        (-0.0, "0"),
        (3, "3"),
        (2.0**53, "9007199254740992"),
        (9.5e15, "9500000000000000"),
        (1e16, "10000000000000000"),
        (0.0001, "0.0001"),
        (0.00001, "0.00001"),
        (float("inf"), "Infinity"),
    ],
)
def test_number_matches_javascript(value: float, text: str) -> None:
    assert number(value) == text


@given(st.floats() | st.floats(-1e17, 1e17) | st.integers(-(2**60), 2**60).map(float))
def test_the_repr_shortcut_writes_what_the_general_path_writes(value: float) -> None:
    """number() takes repr's text where it is JS's; everywhere, it is what JS's rules give
    from the digits (whole numbers up to 1e16 too: 2**53 is `9007199254740992`, no `.0`)."""
    assert number(value) == _general(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_round_trips(value: float) -> None:
    assert float(number(value)) == value


def test_inspect_short_table_on_one_line() -> None:
    assert inspect({"foo": 1, "a.b": 2.5}) == "{ foo: 1, 'a.b': 2.5 }"
    assert inspect({}) == "{}"
    assert inspect({"t": [1, 2], "s": ["it's"]}) == "{ t: [ 1, 2 ], s: [ 'it\\'s' ] }"


def test_inspect_long_table_one_entry_a_line() -> None:
    table = {f"statsd.metric_{i}": i for i in range(5)}
    assert inspect(table) == "{\n" + ",\n".join(f"  'statsd.metric_{i}': {i}" for i in range(5)) + "\n}"


def test_inspect_caps_arrays_like_node() -> None:
    assert inspect(list(range(102))).endswith("... 2 more items\n]")
