"""/render's JSON, written a series at a time as text (formats.json_chunks), is byte for byte what
json.dumps writes for graphite-web's structure: [{"target", "tags", "datapoints": [[value, epoch
seconds], ...]}], null for a gap and for what JSON cannot carry, noNullPoints leaving those out.
CSV and raw, written a series at a time too (the endpoint sends each part as it is made), are
what they were when written whole."""

from __future__ import annotations

import csv
import io
import json
import math
import struct

from hypothesis import example, given
from hypothesis import strategies as st

from tests.conftest import need
from webops.statsd import hotpath
from webops.statsd.store.formats import RENDER, Options, datapoints, finite, local_time, seconds
from webops.statsd.store.functions import Series

VALUES = st.one_of(
    st.none(), st.floats(), st.integers(-(2**70), 2**70), st.booleans(), st.sampled_from([0.0, -0.0, 1e16])
)
SERIES = st.builds(
    Series,
    name=st.text(max_size=8),
    start=st.integers(0, 2**41) | st.integers(0, 2**31).map(lambda s: s * 1000),
    step=st.sampled_from([100, 250, 1000, 10_000, 60_000, 1500]),
    values=st.lists(VALUES, max_size=30),
)


def reference(series: list[Series], no_null_points: bool) -> str:
    """What the JSON writer wrote before it wrote text itself: json.dumps of the whole answer."""
    out = []
    for s in series:
        points = [[finite(v), seconds(s.start + i * s.step)] for i, v in enumerate(s.values)]
        if no_null_points:
            points = [p for p in points if p[0] is not None]
            if not points:
                continue
        out.append({"target": s.name, "tags": {"name": s.name}, "datapoints": points})
    return json.dumps(out)


@given(st.lists(SERIES, max_size=5), st.booleans())
def test_json_is_what_json_dumps_writes(series: list[Series], no_null_points: bool) -> None:
    written = RENDER["json"].write(series, Options(no_null_points=no_null_points))
    assert not isinstance(written, bytes) and "".join(written) == reference(series, no_null_points)


def csv_reference(series: list[Series]) -> str:
    """The CSV writer before it wrote a series at a time: one csv.writer over the whole answer."""
    buf = io.StringIO()
    writer = csv.writer(buf, dialect="excel")
    for s in series:
        for i, v in enumerate(s.values):
            writer.writerow([s.name, local_time(s.start + i * s.step, None), "" if finite(v) is None else v])
    return buf.getvalue()


def raw_reference(series: list[Series]) -> str:
    lines = [
        f"{s.name},{seconds(s.start)},{seconds(s.end)},{seconds(s.step)}|{','.join(map(repr, s.values))}\n"
        for s in series
    ]
    return "".join(lines)


@given(st.lists(SERIES, max_size=5))
def test_csv_and_raw_a_series_at_a_time_are_what_they_were_whole(series: list[Series]) -> None:
    for name, reference_of in (("csv", csv_reference), ("raw", raw_reference)):
        written = RENDER[name].write(series, Options())
        assert not isinstance(written, bytes) and "".join(written) == reference_of(series), name


# Floats of every kind: any bit pattern (subnormals, -0.0, NaN, huge), whole numbers, and short
# dyadic fractions whose exact decimal lies halfway between two shortest candidates (Python
# rounds those to even: 1223383794756801.25 is written 1223383794756801.2).
FLOATS = st.one_of(
    st.floats(),
    st.integers(0, 2**64 - 1).map(lambda b: struct.unpack("<d", b.to_bytes(8, "little"))[0]),
    st.integers(-(2**63), 2**63).map(float),
    st.builds(math.ldexp, st.integers(1, 2**53), st.integers(-40, 10)),
)
POINTS = st.lists(st.none() | FLOATS | st.integers(-(2**63), 2**63 - 1), max_size=40)


@given(
    POINTS,
    st.integers(0, 2**41) | st.integers(0, 2**31).map(lambda s: s * 1000),
    st.sampled_from([1, 100, 250, 1000, 1500, 60_000]),
    st.booleans(),
)
@example([1223383794756801.25, 2.98023223876953125e-08, 1e16, 1e-05, 0.0001, -0.0, 5e-324], 0, 1000, False)
def test_the_native_writer_writes_what_the_python_writer_writes(
    values: list[float | None], start: int, step: int, skip_null: bool
) -> None:
    """_native.json_points (Rust) against formats.datapoints (the reference): the same text for
    floats, ints and gaps, so which one writes a render never shows in its bytes."""
    need(hotpath._native is not None, f"the native extension is not built: {hotpath.NATIVE_MISSING}")
    native = hotpath._native.json_points(values, start, step, skip_null)
    assert native == datapoints(Series("s", start, step, values), skip_null)


def test_the_native_writer_leaves_what_it_does_not_write_to_python() -> None:
    """A bool (json.dumps writes true) or an int past 64 bits: the whole series is Python's."""
    need(hotpath._native is not None, f"the native extension is not built: {hotpath.NATIVE_MISSING}")
    assert hotpath._native.json_points([1.0, True], 0, 1000, False) is None
    assert hotpath._native.json_points([2**64], 0, 1000, False) is None
    series = [Series("s", 0, 1000, [1.5, True, 2**70, None])]  # type: ignore[list-item]
    assert "".join(RENDER["json"].write(series, Options())) == reference(series, False)
