"""The wire protocol: what Etsy statsd 0.10 accepts, with the same meaning."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webops.statsd.protocol import BadLine, Sample, parse_line, sanitize_key, split_packet, to_number


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("gorets:1|c", [Sample("gorets", "c", 1.0)]),
        ("gorets:1|c|@0.1", [Sample("gorets", "c", 1.0, 0.1)]),
        ("glork:320|ms", [Sample("glork", "ms", 320.0)]),
        ("glork:320|ms|@0.5", [Sample("glork", "ms", 320.0, 0.5)]),
        ("hist:3|h", [Sample("hist", "ms", 3.0)]),
        ("dist:-3.5|d", [Sample("dist", "ms", -3.5)]),
        ("gaugor:333|g", [Sample("gaugor", "g", 333.0)]),
        ("gaugor:-10|g", [Sample("gaugor", "g", -10.0, 1.0, True)]),
        ("gaugor:+4|g", [Sample("gaugor", "g", 4.0, 1.0, True)]),
        ("uniques:765|s", [Sample("uniques", "s", "765")]),
        ("uniques:|s", [Sample("uniques", "s", "0")]),
        ("a:1|c:2|c", [Sample("a", "c", 1.0), Sample("a", "c", 2.0)]),
        ("a:1|c:2|ms", [Sample("a", "c", 1.0), Sample("a", "ms", 2.0)]),
        ("hex:0x10|c", [Sample("hex", "c", 16.0)]),
        ("exp:1e3|c", [Sample("exp", "c", 1000.0)]),
        ("type:1|c ", [Sample("type", "c", 1.0)]),
        ("req:1|c|#route:/a,env:prod", [Sample("req;route=-a;env=prod", "c", 1.0)]),
        ("req:1|c|#flag", [Sample("req;flag", "c", 1.0)]),
        ("req:1|c|@0.5|#b:2,a:1", [Sample("req;b=2;a=1", "c", 1.0, 0.5)]),
        ("req:1|c|#a:1|@0.5", [Sample("req;a=1", "c", 1.0, 0.5)]),
        ("my key/with:1|c", [Sample("my_key-with", "c", 1.0)]),
        ("wei®d*name:1|c", [Sample("weidname", "c", 1.0)]),
    ],
)
def test_valid_lines(line: str, expected: list[Sample]) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("justakey", "no value"),
        ("a:1", "no metric type"),
        ("a:x|c", "bad value"),
        ("a:|c", "bad value"),
        ("a:nan|c", "bad value"),
        ("a:inf|g", "bad value"),
        ("a:1_000|c", "bad value"),
        ("a:1|c|0.1", "bad sample rate"),
        ("a:1|c|@-0.1", "bad sample rate"),
        ("a:1|c|@0", "bad sample rate"),
        ("a:1|c|@x", "bad sample rate"),
        ("a:-1|ms", "negative timer value"),
        ("a:1|zz", "unknown metric type"),
        ("a:1|m", "unknown metric type"),
        # 101 counter values: each `|c:N` also reads as DogStatsD's container id, which must not
        # turn the line into two values
        ("v:" + ":".join(f"{i}|c" for i in range(1, 102)), "more than 100 values on one line"),
        ("v:" + ":".join(f"{i}|g" for i in range(1, 102)), "more than 100 values on one line"),
    ],
)
def test_bad_lines(line: str, reason: str) -> None:
    (result,) = parse_line(line)
    assert isinstance(result, BadLine)
    assert result.reason.startswith(reason)


def test_one_bad_value_does_not_spoil_the_others_on_the_line() -> None:
    good, bad = parse_line("a:1|c:x|c")
    assert good == Sample("a", "c", 1.0)
    assert isinstance(bad, BadLine)


def test_sanitize_can_be_turned_off() -> None:
    assert parse_line("my key:1|c", sanitize=False) == [Sample("my key", "c", 1.0)]


def test_sanitize_matches_etsy() -> None:
    assert sanitize_key("a b\tc/d:e$f.g-h_i;j=k") == "a_b_c-def.g-h_i;j=k"


def test_split_packet_tolerates_crlf_and_trailing_newlines() -> None:
    assert split_packet(b"a:1|c\r\nb:2|c\n\n") == ["a:1|c", "b:2|c"]
    assert split_packet(b"") == []
    assert split_packet(b"\xff\xfe:1|c") == ["\ufffd\ufffd:1|c"]


def test_to_number_follows_javascript() -> None:
    assert to_number(" 12 ") == 12
    assert to_number("0b11") == 3
    assert to_number("-0x10") is None  # Number("-0x10") is NaN in JS
    assert to_number("Infinity") is None
    assert to_number("١٢") is None
    assert to_number(".5") == 0.5


@given(st.binary(max_size=2000))
def test_no_bytes_make_the_parser_raise(data: bytes) -> None:
    for line in split_packet(data):
        for item in parse_line(line):
            assert isinstance(item, Sample | BadLine)


@given(st.text(alphabet=st.sampled_from(list("ab:|@#,.-+0123456789cmsgdh \t")), max_size=60))
def test_no_line_of_protocol_characters_makes_the_parser_raise(line: str) -> None:
    assert all(isinstance(i, Sample | BadLine) for i in parse_line(line))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("req:1|c|#b:2,a:1", [Sample("req;b=2;a=1", "c", 1.0)]),  # Etsy keeps the order sent
        ("req:1|c|#a;x:1;y", [Sample("req;a_x=1;y", "c", 1.0)]),  # first ; and first : only
        ("req:1|c|#env:prod|c:3f2a9b", [Sample("req;env=prod", "c", 1.0)]),  # datadog in containers
        ("req:1|c|c:3f2a9b|T1700000000", [Sample("req", "c", 1.0)]),
        ("req:2|d|@0.5|card:high|e:it-0", [Sample("req", "ms", 2.0, 0.5)]),
        ("m:1|c:2|c:3|c", [Sample("m", "c", 1.0), Sample("m", "c", 2.0), Sample("m", "c", 3.0)]),
    ],
)
def test_dogstatsd_lines_as_clients_send_them(line: str, expected: list[Sample]) -> None:
    assert parse_line(line) == expected


def timers(key: str, *values: float, rate: float = 1.0) -> list[Sample]:
    return [Sample(key, "ms", v, rate) for v in values]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("a:1:2:3|ms", timers("a", 1.0, 2.0, 3.0)),
        ("a:1:2:3|ms|@0.5", timers("a", 1.0, 2.0, 3.0, rate=0.5)),
        ("a:1:2:3|d|@0.5|#env:prod", timers("a;env=prod", 1.0, 2.0, 3.0, rate=0.5)),
        ("a:-1:2|h", timers("a", -1.0, 2.0)),
        ("c:1:2|c", [Sample("c", "c", 1.0), Sample("c", "c", 2.0)]),
        (
            "g:5:+1:-2|g",
            [Sample("g", "g", 5.0), Sample("g", "g", 1.0, 1.0, True), Sample("g", "g", -2.0, 1.0, True)],
        ),
        ("s:u1:u2:u1|s", [Sample("s", "s", "u1"), Sample("s", "s", "u2"), Sample("s", "s", "u1")]),
        ("s::x|s", [Sample("s", "s", "0"), Sample("s", "s", "x")]),
        ("a: 0x10:1e1 |c", [Sample("a", "c", 16.0), Sample("a", "c", 10.0)]),
        # with DogStatsD's extra fields, before or after the tags and the rate
        ("a:1:2|d|#env:prod|c:abc", timers("a;env=prod", 1.0, 2.0)),
        ("a:1:2|d|c:ci:with:colons|#env:prod", timers("a;env=prod", 1.0, 2.0)),
        ("a:1:2|ms|T1700000000|@0.5|card:low", timers("a", 1.0, 2.0, rate=0.5)),
        ("a:1:2|ms|@0.5|T1700000000|e:it-1", timers("a", 1.0, 2.0, rate=0.5)),
    ],
)
def test_dogstatsd_packed_values_take_the_last_type_and_rate(line: str, expected: list[Sample]) -> None:
    """DogStatsD v1.1's `name:v1:v2:v3|type[|@rate]`, as datadog's clients send aggregated
    values. Etsy counts each bare value as a bad line (no type) and keeps only the last."""
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "reasons", "kept"),
    [
        ("a:1:x|ms", ["no metric type", "bad value"], []),  # all values whole, or Etsy's reading
        ("a:1:-2|ms", ["no metric type", "negative timer value"], []),
        ("a:1:2|zz", ["no metric type", "unknown metric type"], []),
        ("a:1:2|c|@0", ["no metric type", "bad sample rate"], []),
        ("a:1:2", ["no metric type", "no metric type"], []),
        ("a:1:2|c:3|ms", ["no metric type"], [Sample("a", "c", 2.0), Sample("a", "ms", 3.0)]),  # one type
        ("a:1|c:2:3|c", ["no metric type"], [Sample("a", "c", 1.0), Sample("a", "c", 3.0)]),
        ("a:" + "1:" * 100 + "1|c", ["more than 100 values on one line"], []),
    ],
)
def test_what_is_not_packed_values_keeps_etsys_reading(
    line: str, reasons: list[str], kept: list[Sample]
) -> None:
    parsed = parse_line(line)
    bad = [item.reason for item in parsed if isinstance(item, BadLine)]
    assert len(bad) == len(reasons) and all(
        r.startswith(want) for r, want in zip(bad, reasons, strict=True)
    ), bad
    assert [item for item in parsed if isinstance(item, Sample)] == kept


etsy_parts = st.builds(
    "{}|{}{}".format,
    st.sampled_from(["1", "-2", "+3", "0x1", "x", ""]),
    st.sampled_from(["c", "ms", "g", "s", "h", "d"]),
    st.sampled_from(["", "|@0.5", "|@1", "|@x"]),
)


@given(st.lists(etsy_parts, min_size=1, max_size=4))
def test_packed_values_change_no_line_etsy_reads_whole(parts: list[str]) -> None:
    """Several values as Etsy sends them, each one whole on its own: together they read as each
    alone, whatever another reading would make of them (`1|c:2|c`: not the packed `1|c:2` and
    `|c`). The packed reading only takes lines Etsy counts bad lines in."""
    alone = [parse_line("a:" + part) for part in parts]
    if all(isinstance(item, Sample) for items in alone for item in items):
        assert parse_line("a:" + ":".join(parts)) == [item for items in alone for item in items]


@pytest.mark.parametrize("values", [99, 100])
def test_packed_values_are_held_to_max_values_per_line(values: int) -> None:
    parsed = parse_line("a:" + "1:" * (values - 1) + "1|ms")
    assert parsed == timers("a", *[1.0] * values)


def test_events_and_service_checks_are_counted_not_bad_lines() -> None:
    from webops.statsd.aggregate import Aggregator

    agg = Aggregator()
    agg.ingest(b"_e{5,4}:title|text|#a:b\n_sc|db.up|0|#env:prod\nok:1|c")
    assert agg.totals.events_seen == 2 and agg.totals.bad_lines_seen == 0
    assert agg.counters["ok"] == 1
