"""The native hot path against the Python reference: the same aggregates, bad lines (counted and
said, in order), flushes and totals for any input (hypothesis), and the daemon saying which runs.

The reference is `Aggregator.ingest`, one datagram at a time, as `readers: 0` runs it, and, where
limits make how lines are batched matter (maxSeries, maxSetMembers), a Python reader's
`BatchAggregator` merged the same way. The native side is the extension's own batch code
(`Intake.feed`: a read without a socket) merged into an Aggregator exactly as the daemon merges
what its receiver threads take.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import need, wait_until
from webops.statsd import hotpath
from webops.statsd import settings as statsd_config
from webops.statsd.aggregate import AggregationSettings, Aggregator, BatchAggregator, Totals
from webops.statsd.protocol import BadLine, Sample, parse_line, sanitize_key
from webops.statsd.readers import FAST_LINE, triage
from webops.statsd.snapshot import summarize

need(hotpath._native is not None, f"the native extension is not built: {hotpath.NATIVE_MISSING}")
native: Any = hotpath._native

NOW = 1_700_000_000.5
SUMMARY = statsd_config.build({}).summary()

# --- what clients send, and what they get wrong ---------------------------------------------

names = st.one_of(
    st.sampled_from(["a", "b.c", "api.req-ok", "x;env=prod", "t_1"]),
    st.sampled_from(["a b", "a/b", "é", "", "_e{1,1}", "_sc|x", "a:b", "a|b"]),
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=6),
)
# values whose sums come out the same in any order (integers, halves): see test_float_sums
values = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.integers(-40, 40).map(lambda i: str(i / 2)),
    st.sampled_from(["+3", "-2", "+0.5", ".5", "5.", "1e3", "1E+2", "-0", "1.e1", "-.5e1", "1e-400"]),
    # JavaScript's radix literals and blanks around a number (Number() trims them)
    st.sampled_from(["0x10", "0X1f", "0o17", "0b101", " 5", "5 ", "\t7\x0b", "\x1c0x3\x1f", "\x1c3"]),
    st.sampled_from(["", "abc", "1e400", "-1e400", "NaN", "Infinity", "1e308", "+1e308", "\u0661"]),
    st.sampled_from(["1_0", "+0x1", "0x", "1e"]),
)
# numbers whose sums depend on the order they are added in: for single lines only
any_values = st.one_of(
    values,
    st.floats(allow_nan=False).map(repr),
    st.sampled_from(["0x" + "f" * 200, "0x" + "f" * 260, "0x20000000000001", "0b" + "1" * 60, "4.9e-324"]),
)
types = st.sampled_from(["c", "ms", "g", "s", "h", "d", "x", " c", "ms\t", "", "C"])
rates = st.sampled_from(
    [
        "",
        "|@0.5",
        "|@0.25",
        "|@1",
        "|@-1",
        "|@0",
        "|@abc",
        "|@+0.5",
        "|@1e-320",
        "|0.5",
        "|@ .5",
        "|@0x1",
        "|@",
    ],
)
tag = st.text(st.sampled_from("ab:;=,._-é| "), max_size=6)
tags = st.one_of(
    st.sampled_from(["|#env:prod,role", "|#", "|#t", "|#a:b:c"]),
    st.lists(tag, max_size=3).map(lambda tags: "|#" + ",".join(tags)),
)
# DogStatsD's fields webops ignores (container id, cardinality, external data, timestamp), and
# fields after a rate (Etsy ignores them)
dogstatsd = st.sampled_from(["|c:abc", "|c:ci:with:colons", "|card:low", "|e:it-1", "|T1700000000", "|T1"])
ignored = st.sampled_from(["|x", "|x|y", "|Tx", "|é"])


def parts(value: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A `value|type[|@rate]` part, or DogStatsD's packed values (`1:2:3|ms[|@rate]`), now and
    then with fields after the rate."""
    raw = st.one_of(value, value, st.lists(value, min_size=2, max_size=4).map(":".join))
    return st.builds("{}|{}{}{}".format, raw, types, rates, st.one_of(st.just(""), ignored))


@st.composite
def lines(draw: st.DrawFn, value: st.SearchStrategy[str] = values) -> bytes:
    """A line as clients send it (or get it wrong): one or several parts (Etsy's several values,
    DogStatsD's packed ones, or both), then tags and DogStatsD's fields in any order; now and
    then bytes at random."""
    kind = draw(st.integers(0, 9))
    if kind == 0:  # anything at all
        return draw(st.binary(max_size=30)).replace(b"\n", b"")
    line = draw(names) + ":" + ":".join(draw(st.lists(parts(value), min_size=1, max_size=3)))
    line += "".join(draw(st.lists(st.one_of(tags, dogstatsd, dogstatsd), max_size=3)))
    if kind == 1:
        line += draw(st.sampled_from(["\r", "\r\r", ":" * 100]))
    return line.encode("utf-8", "surrogatepass")


datagrams = st.lists(st.lists(lines(), min_size=1, max_size=4).map(b"\n".join), min_size=1, max_size=8)


# --- both sides -----------------------------------------------------------------------------


def main_process(agg_settings: AggregationSettings, held: bytes, bad: list[BadLine]) -> Aggregator:
    """The daemon's aggregator, already holding what `held` wrote this interval (its totals
    start at 0, so they count what comes next)."""
    agg = Aggregator(agg_settings, on_bad_line=bad.append)
    if held:
        agg.ingest(held, NOW)
        agg.totals = Totals()
        bad.clear()
    return agg


def reference(
    packets: list[bytes], agg_settings: AggregationSettings, held: bytes = b""
) -> tuple[Aggregator, list[BadLine]]:
    bad: list[BadLine] = []
    agg = main_process(agg_settings, held, bad)
    for p in packets:
        agg.ingest(p, NOW)
    return agg, bad


def intake(agg_settings: AggregationSettings) -> Any:
    s = agg_settings
    return native.Intake([], 1, s.max_series, s.max_set_members, s.key_flush)


def through_native(
    packets: list[bytes], agg_settings: AggregationSettings, per_read: int = 1, held: bytes = b""
) -> tuple[Aggregator, list[BadLine]]:
    bad: list[BadLine] = []
    agg = main_process(agg_settings, held, bad)
    receiver = intake(agg_settings)
    for i in range(0, len(packets), per_read):
        receiver.feed(packets[i : i + per_read], NOW)
    for taken in receiver.take():
        agg.merge(hotpath.to_batch(taken, agg_settings))
    agg.advance(force=True)
    return agg, bad


def through_reader(
    packets: list[bytes], agg_settings: AggregationSettings, per_read: int = 1, held: bytes = b""
) -> tuple[Aggregator, list[BadLine]]:
    """The Python hot path: a reader process's batch (the same reads) merged the same way."""
    bad: list[BadLine] = []
    agg = main_process(agg_settings, held, bad)
    reader = BatchAggregator(agg_settings)
    for seq, i in enumerate(range(0, len(packets), per_read)):
        reader.ingest(b"\n".join(packets[i : i + per_read]), NOW, len(packets[i : i + per_read]))
        reader.seal(seq)
    batch = reader.take_batch()
    agg.merge(batch)
    for item in batch.bad_lines:  # the daemon logs a batch's bad lines as it merges it
        bad.append(item)
    agg.advance(force=True)
    return agg, bad


def comparable(agg: Aggregator) -> dict[str, Any]:
    """A flush of `agg` (tables and the summaries backends get) and its totals, with timer samples
    sorted: the reference appends them as lines come, the native path per batch."""
    interval = agg.take(1_700_000_000)
    snap = summarize(interval, SUMMARY)
    tables = dict(interval.tables)
    tables["timers"] = {k: (sorted(t.samples), t.count) for k, t in tables["timers"].items()}
    return {
        "tables": tables,
        "summaries": snap.summaries,
        "totals": vars(agg.totals) | {"series": agg.series_count()},
        "key_counts": agg.take_key_counts(),
    }


def same(left: Any, right: Any) -> bool:
    """Equal, NaN included (a gauge can be NaN in neither; -0.0 and 0.0 told apart)."""
    if isinstance(left, float) and isinstance(right, float):
        return math.copysign(1, left) == math.copysign(1, right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


# --- the properties -------------------------------------------------------------------------

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_whole(line: bytes) -> list[Sample] | None:
    """The reference's samples of a line it reads without a bad part, and whose key
    keyNameSanitize leaves as it is (None otherwise): every such line the native parser must take
    (a `\\r` it leaves to the reference, which drops them from the whole packet first)."""
    try:
        text = line.decode()
    except UnicodeDecodeError:
        return None
    parsed = parse_line(text, sanitize=False)
    if b"\r" in line or not all(isinstance(s, Sample) and sanitize_key(s.key) == s.key for s in parsed):
        return None
    return parsed  # type: ignore[return-value]


@PROPERTY
@given(lines(any_values))
@example(b"a:1:2:3|ms")  # DogStatsD's packed values
@example(b"a:1:2:3|ms|@0.5|#env:prod")
@example(b"c:1:2|c|#env:prod|c:abc|T1700000000")
@example(b"g:5:+1:-2|g")
@example(b"s:u1::u1|s|@0.1")
@example(b"a:1:2|d|#env:prod|c:abc")
@example(b"a:1:2|ms|T1|@0.5|c:a:b")
def test_the_native_parser_takes_every_whole_line_and_reads_it_as_the_reference(line: bytes) -> None:
    """Several values a line, packed values, tags, DogStatsD's fields, JavaScript's numbers:
    whatever the reference reads whole, the native parser takes, to the same key and samples;
    what it leaves to the reference has a bad part (counted there), a key to sanitize or a `\\r`."""
    fast = native.parse_line(line)
    want = read_whole(line)
    if want is None:
        assert fast is None, (line, fast)
        return
    assert fast is not None, (line, want)
    assert len(fast["samples"]) == len(want)
    for got, sample in zip(fast["samples"], want, strict=True):
        assert fast["key"] == sample.key
        match got:
            case {"kind": "c", "value": value}:
                assert sample.kind == "c" and same(value, sample.value / sample.rate)  # type: ignore[operator]
            case {"kind": "ms", "value": value, "count": count}:
                assert sample.kind == "ms" and same([value, count], [sample.value, 1 / sample.rate])
            case {"kind": "g", "value": value, "delta": delta}:
                assert sample.kind == "g" and same([value, delta], [sample.value, sample.delta])
            case {"kind": "s", "member": member}:
                assert sample.kind == "s" and member == sample.value
            case _:
                raise AssertionError(got)


@PROPERTY
@given(st.lists(lines(), max_size=8))
def test_a_python_reader_behind_never_sheds_a_line_the_fast_path_takes(batch: list[bytes]) -> None:
    kept, shed = triage(b"\n".join(batch))
    assert kept == [line for line in batch if FAST_LINE.fullmatch(line)]
    assert [line for line in batch if native.parse_line(line) is not None] == [
        line for line in kept if native.parse_line(line) is not None
    ]
    assert shed == sum(1 for line in batch if line) - len(kept)


@PROPERTY
@given(datagrams, st.integers(1, 4), st.booleans(), st.booleans())
def test_same_flushes_bad_lines_and_totals_for_any_input(
    packets: list[bytes], per_read: int, key_flush: bool, sanitize: bool
) -> None:
    agg_settings = AggregationSettings(key_flush=key_flush, sanitize=sanitize)
    ref, ref_bad = reference(packets, agg_settings)
    nat, nat_bad = through_native(packets, agg_settings, per_read)
    want, got = comparable(ref), comparable(nat)
    assert same(got, want), (got, want)
    assert nat_bad == ref_bad
    # and the interval after: what a flush reset (idle counters at 0, gauges kept) is the same
    ref.ingest(b"after:1|c\ngone:+1|g", NOW)
    receiver = intake(agg_settings)
    receiver.feed([b"after:1|c\ngone:+1|g"], NOW)
    for taken in receiver.take():
        nat.merge(hotpath.to_batch(taken, agg_settings))
    nat.advance(force=True)
    assert same(comparable(nat), comparable(ref))


@PROPERTY
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=30))
def test_float_sums_differ_at_most_in_the_last_digits(numbers: list[float]) -> None:
    """Counters of any value: the native path sums per batch then merges, the reference line by
    line; as with reader processes, sums may differ by rounding, never by more."""
    packets = [f"f:{x!r}|c\ng:{x!r}|g\ng:+{abs(x)!r}|g".encode() for x in numbers]
    want = comparable(reference(packets, AggregationSettings())[0])
    got = comparable(through_native(packets, AggregationSettings(), per_read=3)[0])
    assert got["tables"]["gauges"] == want["tables"]["gauges"]  # gauges: exactly, order kept
    assert math.isclose(got["tables"]["counters"]["f"], want["tables"]["counters"]["f"], abs_tol=1e-6)


def all_paths(
    packets: list[bytes], agg_settings: AggregationSettings, per_read: int = 1, held: bytes = b""
) -> list[dict[str, Any]]:
    """What the reference, the native path and a Python reader keep, in that order."""
    return [
        comparable(reference(packets, agg_settings, held)[0]),
        comparable(through_native(packets, agg_settings, per_read, held)[0]),
        comparable(through_reader(packets, agg_settings, per_read, held)[0]),
    ]


def test_at_max_series_held_series_go_on_and_only_new_ones_are_refused() -> None:
    """The daemon holds maxSeries series; a batch brings new names first, then the held ones: a
    batch cannot tell which names are new, so it refuses none, and the main process refuses the
    new ones only (issue 26: the batches used to count their own series against maxSeries)."""
    agg_settings = AggregationSettings(max_series=3)
    held = b"a:1|c\nb:1|ms\ng:1|g"
    packets = [b"n1:1|c\nn2:1|ms\nn3:x|s\nn4:1|g\na:1|c\nb:2|ms\ng:+1|g", b"n5:1|c\na:1|c"]
    for got in all_paths(packets, agg_settings, held=held):
        tables = got["tables"]
        assert {k: v for k, v in tables["counters"].items() if not k.startswith("statsd.")} == {"a": 3}
        assert (tables["timers"], tables["gauges"], tables["sets"]) == ({"b": ([1, 2], 2)}, {"g": 2}, {})
        assert got["totals"]["metrics_refused"] == tables["counters"]["statsd.metrics_refused"] == 5
        assert got["totals"]["series"] == 3


pool = st.sampled_from(["a", "b", "c", "d", "e", "f"])  # the series held and the new ones alike
pooled = st.builds(
    "{}:{}|{}{}".format,
    pool,
    st.sampled_from(["1", "2", "-1", "+3", "0x1", "1e308", "+1e308", "1:+2"]),
    st.sampled_from(["c", "ms", "g", "s"]),
    st.sampled_from(["", "", "|@0.5", "|#t:v", ":2|c", ":x|c"]),  # :x|c: a bad part, for the reference
).map(str.encode)
mixed = st.lists(
    st.lists(st.one_of(pooled, pooled, lines()), min_size=1, max_size=5).map(b"\n".join),
    min_size=1,
    max_size=8,
)


def client_series(tables: Mapping[str, Any]) -> dict[str, set[str]]:
    """Each table's series but the daemon's own (`statsd.*`)."""
    return {t: {k for k in table if not k.startswith("statsd.")} for t, table in tables.items()}


@PROPERTY
@given(st.lists(pooled, max_size=8).map(b"\n".join), mixed, st.integers(1, 8), st.integers(1, 3))
def test_max_series_is_decided_against_every_series_the_daemon_holds(
    held: bytes, packets: list[bytes], max_series: int, per_read: int
) -> None:
    """The main process already holds some series (up to maxSeries) and batches bring old names
    and new ones. Each path may admit different new series at the limit (it depends on how lines
    are batched), but every update of a held series counts, the number of series kept is the
    same, a series kept anywhere has the same data, and below the limit everything is equal."""
    agg_settings = AggregationSettings(max_series=max_series)
    main = main_process(agg_settings, held, [])
    held_keys = client_series({t: main.table(t) for t in main.kinds})
    want, nat, py = all_paths(packets, agg_settings, per_read, held)
    if want["totals"]["metrics_refused"] == 0:  # nothing new past the limit
        assert same(nat, want), (nat, want)
        assert same(py, want), (py, want)
        return
    for got in (nat, py):
        assert got["totals"]["metrics_refused"] > 0
        assert got["totals"]["series"] == want["totals"]["series"] <= max_series
        for field in ("packets_received", "metrics_received"):
            assert got["totals"][field] == want["totals"][field]
        kept, theirs = client_series(got["tables"]), client_series(want["tables"])
        for table, keys in held_keys.items():
            assert kept[table] & keys == theirs[table] & keys, table  # (a sum past 1.8e308 is not sent)
            both = kept[table] & theirs[table]
            mine, ref = got["tables"][table], want["tables"][table]
            assert same({k: mine[k] for k in both}, {k: ref[k] for k in both}), table


set_lines = st.builds(
    "{}:{}|s{}".format,
    st.sampled_from(["s", "t"]),
    st.sampled_from(["a", "b", "c", "d", "e", "0x1"]),
    st.sampled_from(["", "", "|#t:v"]),
).map(str.encode)
set_packets = st.lists(st.lists(set_lines, min_size=1, max_size=6).map(b"\n".join), min_size=1, max_size=8)


@PROPERTY
@given(st.lists(set_lines, max_size=6).map(b"\n".join), set_packets, st.integers(1, 4), st.integers(1, 3))
def test_set_members_past_max_set_members_are_refused_alike(
    held: bytes, packets: list[bytes], limit: int, per_read: int
) -> None:
    """Sets the main process holds, batches adding members: no set ever holds more than
    maxSetMembers, members held go on, refusals are counted; the native and the Python batches
    refuse and keep the same members (which ones at the limit depends on batching, as the size
    does not), and the reference, line by line, agrees on every size."""
    agg_settings = AggregationSettings(max_set_members=limit)
    held_sets = main_process(agg_settings, held, []).table("sets")
    held_sets = {k: set(v) for k, v in held_sets.items()}
    want, nat, py = all_paths(packets, agg_settings, per_read, held)
    assert same(nat, py), (nat, py)
    sizes = {k: len(v) for k, v in want["tables"]["sets"].items()}
    for got in (nat, want):
        assert {k: len(v) for k, v in got["tables"]["sets"].items()} == sizes
        assert all(len(v) <= limit for v in got["tables"]["sets"].values())
        assert all(held_sets[k] <= got["tables"]["sets"][k] for k in held_sets)
        assert (got["totals"]["set_members_refused"] > 0) == (want["totals"]["set_members_refused"] > 0)
    if want["totals"]["set_members_refused"] == 0:
        assert same(nat, want), (nat, want)


def test_gauges_keep_their_order_across_fast_and_slow_lines() -> None:
    """`g;t=v:1|g` (fast), then a write of the same series the reference parses (`g!` is `g`
    once sanitized), then `g;t=v:+1|g`: the last write wins in the order sent, not in the order
    each path saw it."""
    packets = [b"g;t=v:1|g\ng!:5|g|#t:v\ng;t=v:+1|g", b"h:1|g", b"h!:16|g\nh:+1|g"]
    nat = comparable(through_native(packets, AggregationSettings(), per_read=3)[0])
    assert nat["tables"]["gauges"] == {"g;t=v": 6, "h": 17}
    assert same(nat, comparable(reference(packets, AggregationSettings())[0]))


def test_events_and_hostile_bytes_count_as_the_reference_counts() -> None:
    packets = [b"_e{5,4}:title|text", b"\xff\xfe:1|c\n\x00\n\r\n", b"a:1|c|#" + b"x" * 5000, b":" * 5000]
    ref, ref_bad = reference(packets, AggregationSettings())
    nat, nat_bad = through_native(packets, AggregationSettings())
    assert same(comparable(nat), comparable(ref))
    assert nat_bad == ref_bad
    assert [b.reason for b in nat_bad] == ["no value", "more than 100 values on one line"]
    assert nat.totals.events_seen == 1


def test_the_fast_path_takes_what_real_clients_send() -> None:
    """Not a correctness property: most real traffic must not need the reference parser, or
    the native path would be no faster."""
    for line in [
        b"api.requests:1|c",
        b"api.latency:12.5|ms|@0.1",
        b"queue.depth:+3|g",
        b"users:u42|s",
        b"api.requests:1|c|#env:prod,route:home,canary",  # DogStatsD tags
    ]:
        assert native.parse_line(line) is not None, line


@pytest.mark.parametrize("wanted", ["auto", "python", "native"])
def test_the_config_key_chooses_and_refuses_clearly(wanted: str, monkeypatch) -> None:
    cfg = statsd_config.build({"hotPath": wanted})
    assert cfg.hot_path == ("python" if wanted == "python" else "native")
    assert cfg.readers_for("native") >= 1
    monkeypatch.setattr(hotpath, "_native", None)
    monkeypatch.setattr(hotpath, "NATIVE_MISSING", "No module named 'webops.statsd._native'")
    assert statsd_config.build({"hotPath": "auto"}).hot_path == "python"
    with pytest.raises(statsd_config.ConfigError, match="native hot path is not built here"):
        statsd_config.build({"hotPath": "native"})
    with pytest.raises(statsd_config.ConfigError, match="hotPath"):
        statsd_config.build({"hotPath": "rust"})


# --- the daemon -----------------------------------------------------------------------------


@pytest.mark.parametrize("hot_path", ["native", "python"])
def test_the_daemon_says_which_hot_path_runs(start_daemon, hot_path: str) -> None:
    d = start_daemon(hotPath=hot_path, readers=1)
    assert f"hot path: {hot_path} (" in d.logs()
    assert f"\nhot_path: {hot_path}\n" in d.console("stats")
    assert re.search(rf'^statsd_hot_path_info\{{hot_path="{hot_path}"\}} 1', d.http("/metrics")[1], re.M)
    d.send(b"a:1|c\ng:5|g\ng:+1|g\nt:3|ms|#env:prod")
    wait_until(lambda: "a: 1" in d.console("counters") and "g: 6" in d.console("gauges"), what="intake")


def test_without_the_extension_auto_runs_the_reference_and_says_why(start_daemon, tmp_path: Path) -> None:
    """A tree where the extension was not built (no cargo): the install works, the daemon runs."""
    src = Path(hotpath.__file__).parents[1]
    shutil.copytree(
        src, tmp_path / "src" / "webops", ignore=shutil.ignore_patterns("*.so", "target", "__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if k != "WEBOPS_STATSD_HOTPATH"}
    d = start_daemon(_popen={"env": {**env, "PYTHONPATH": str(tmp_path / "src")}})
    assert "hot path: python (reference; native extension not built: " in d.logs()
    assert "\nhot_path: python\n" in d.console("stats")
    d.send(b"a:1|c")
    wait_until(lambda: "a: 1" in d.console("counters"), what="intake")
    with pytest.raises(
        pytest.fail.Exception, match=r"exited with 2: .*hotPath: the native hot path is not built here"
    ):
        start_daemon(hotPath="native", _popen={"env": {**env, "PYTHONPATH": str(tmp_path / "src")}})


def test_a_full_batch_waits_in_the_socket_instead_of_growing() -> None:
    """Lines left to Python pile up while Python is busy: past `max_backlog` a receiver stops
    reading (the datagrams wait in the socket buffer, the kernel counts what overflows it), and
    reads on once Python takes the batch. Nothing read is lost."""
    packet = b"\n".join(b"t%d!:1|ms" % i for i in range(40))  # a key to sanitize: for the reference
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        intake = native.Intake([rx.fileno()], 1, 500_000, 100_000, max_backlog=8192)
        try:
            for _ in range(200):
                tx.sendto(packet, rx.getsockname())
            wait_until(lambda: intake.held_back() > 0, what="the receiver to hold back")
            first = intake.take()
            slow = sum(len(lines) for taken in first for _, _, lines in taken.reads)
            assert 8192 <= slow < 8192 + native.VLEN * len(packet)  # one read past the limit at most
            read = [sum(taken.packets for taken in first)]

            def all_read() -> bool:  # taking frees the receiver: it reads the rest
                read[0] += sum(taken.packets for taken in intake.take())
                return read[0] == 200

            wait_until(all_read, what="every datagram, once the batches are taken")
        finally:
            intake.stop()


def test_a_batch_at_max_series_waits_in_the_socket_instead_of_refusing() -> None:
    """A batch cannot tell a new series from one the daemon holds, so past `max_series` series
    it refuses none: its receiver stops reading until Python takes it, as for max_backlog, and
    every series reaches the main process, which decides."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        intake = native.Intake([rx.fileno()], 1, 4, 100_000)
        try:
            for i in range(200):
                tx.sendto(b"n%d:1|c" % i, rx.getsockname())
            wait_until(lambda: intake.held_back() > 0, what="the receiver to hold back")
            seen: dict[str, float] = {}

            def all_read() -> bool:
                for taken in intake.take():
                    assert len(taken.counters) <= 4 + native.VLEN  # one read past the limit at most
                    seen.update(taken.counters)
                return len(seen) == 200

            wait_until(all_read, what="every series, once the batches are taken")
            assert seen == {f"n{i}": 1 for i in range(200)}
        finally:
            intake.stop()


def test_a_taken_batch_is_read_by_name() -> None:
    """What crosses from Rust is a typed object (`_native.pyi`), not a positional tuple."""
    receiver = native.Intake([], 1, 10, 2, True, 5)
    receiver.feed([b"c:1|c\nc:2|c|@0.5\nt:3|ms\ns:a|s\ns:b|s\ns:c|s\ng:1|g\ng:+2|g", b"x!:1|c"], NOW)
    receiver.feed([b"c:1|c"], NOW + 1)
    (taken,) = receiver.take()
    assert taken.counters == {"c": 6}
    assert taken.timers == {"t": ([3], 1)}
    assert taken.sets == {"s": {"a", "b"}}
    assert taken.set_members_refused == 1
    assert taken.reads == [(0, {"g": (1, [2])}, b"x!:1|c\n")]
    assert taken.seqs == [0, 1]
    assert (taken.packets, taken.metrics, taken.last_seen) == (3, 9, NOW + 1)
    assert taken.key_counts == {"c": 3, "t": 1, "s": 3, "g": 2}
    assert (taken.raw, taken.raw_dropped) == (
        [b"c:1|c\nc:2|c|@0.5\nt:3|ms\ns:a|s\ns:b|s\ns:c|s\ng:1|g\ng:+2|g", b"x!:1|c", b"c:1|c"],
        0,
    )
    with pytest.raises(AttributeError):
        taken.counters = {}
    assert receiver.take() == []


def test_the_stub_says_what_the_extension_is() -> None:
    """mypy checks hotpath.py against `_native.pyi`; stubtest holds the stub to the built module
    (every class, property, method and parameter name), so the two cannot drift apart."""
    src = Path(hotpath.__file__).parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "webops.statsd._native"],
        env={**os.environ, "MYPYPATH": str(src)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_reload_keeps_the_hot_path_and_says_when_it_changes(start_daemon) -> None:
    d = start_daemon(hotPath="native")
    d.write_config({**d.config, "hotPath": "python", "percentThreshold": [95]})
    d.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in d.logs(), what="the reload")
    assert "hotPath: python takes effect at the next restart" in d.logs()
    assert "\nhot_path: native\n" in d.console("stats")
    d.send(b"after:1|c")
    wait_until(lambda: "after: 1" in d.console("counters"), what="intake after the reload")
