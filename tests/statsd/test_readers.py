"""A Python reader process behind on lines slow for its parser: what it keeps and what it sheds."""

from __future__ import annotations

from itertools import zip_longest

from webops.statsd.aggregate import BatchAggregator
from webops.statsd.readers import triage

FAST = [
    b"a.b:2|c|@0.5",
    b"t:3|ms",
    b"g:-1|g",
    b"g:+5.|g|@.1|#t",
    b"s:|s",
    b"s:a#b c|s",
    b"x:1e3|h",
    b"x:.5|d|@+1",
    b"r:1|c|#env:prod,canary",
    b"r:1|c|#a;b:c,",
    b"r:1|c|#,",
    b":1|c",
    b"a:1|c:2|c",  # several values
    b"a:1|c:2|c|#t",
    b"a:1|c|#t:v|c:x",  # DogStatsD's fields
    b"a:1|c|c:xyz",
    b"a:1|c|T1700000000|e:x",
    b"a:1:2|c",  # DogStatsD's packed values
    b"a:1:2:3|ms|@0.5|#env:prod|c:xyz",
    b"a:0x10|c",  # JavaScript's numbers
    b"a: 1 |ms|@ 0x1",
    b"a:1|c\r",  # a `\r\n` ending
]
SLOW = [  # lines the native parser leaves to Python
    b"a b:1|c",
    b"a:1|x",
    b"a:1",
    b"a:1\r|c",
    b"_e{1,1}:a|b",
    b"x",
    "é:1|c".encode(),
    b"a:inf|c",
    b"a:1:x|c",
]
# kept, though bad (a little more than the native parser takes): a:1|c|@-1, a:1|c|@, a:1|c:x|c,
# a:1:2|c:3|ms


def test_triage_keeps_the_fast_path_lines_in_order_and_counts_the_others() -> None:
    lines = [line for pair in zip_longest(SLOW, FAST) for line in pair if line is not None]
    data = b"\n".join([b"", *lines, b"", b""]) + b"\n"  # empty lines are no lines
    assert triage(data) == (FAST, len(SLOW))
    assert triage(b"x\n" * 32_000 + b"good:1|c") == ([b"good:1|c"], 32_000)
    assert triage(b"") == ([], 0)


def test_what_triage_keeps_is_what_the_reference_makes_of_those_lines() -> None:
    kept, shed = triage(b"\n".join(SLOW + FAST))
    reader, alone = BatchAggregator(), BatchAggregator()
    reader.ingest(b"\n".join(kept), 0.0, 2)
    reader.shed(shed)
    alone.ingest(b"\n".join(FAST), 0.0, 2)
    assert reader.totals.bad_lines_seen == 0 and reader.totals.lines_shed == len(SLOW)
    assert reader.counters.pop("statsd.lines_shed") == len(SLOW)
    assert reader.ops == alone.ops  # gauges, recorded in order
    tables = {t: k.take(True) for t, k in reader.kinds.items()}
    assert tables == {t: k.take(True) for t, k in alone.kinds.items()}
