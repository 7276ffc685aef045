"""Aggregation and flush: a table of packets with the flush output Etsy's semantics give for them."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webops.statsd import settings as statsd_config
from webops.statsd.aggregate import Aggregator, Batch, BatchAggregator, Totals
from webops.statsd.backends.naming import GraphiteNaming
from webops.statsd.snapshot import summarize

TS = 1_700_000_000


def flush(packets: list[bytes], **overrides) -> dict[str, str]:
    """Feed packets to a fresh aggregator and return the Graphite lines of one flush, by path."""
    cfg = statsd_config.build(overrides)
    agg = Aggregator(cfg.aggregation())
    for p in packets:
        agg.ingest(p)
    snap = summarize(agg.take(TS), cfg.summary())
    lines = GraphiteNaming(cfg).plaintext(snap).splitlines()
    out = {}
    for line in lines:
        path, value, ts = line.split(" ")
        assert ts == str(TS)
        out[path] = value
    return out


def subset(lines: dict[str, str], expected: dict[str, str]) -> dict[str, str | None]:
    return {k: lines.get(k) for k in expected}


TABLE = [
    # (packets, expected graphite lines (legacy namespace, flushInterval 10 s))
    ([b"foo:1|c", b"foo:2|c|@0.5"], {"stats.foo": "0.5", "stats_counts.foo": "5"}),
    ([b"foo:1|c:2|c\nfoo:3|c\r\n"], {"stats.foo": "0.6", "stats_counts.foo": "6"}),
    ([b"g:5|g", b"g:+3|g", b"g:-10|g"], {"stats.gauges.g": "-2"}),
    ([b"g:+3|g"], {"stats.gauges.g": "3"}),
    ([b"g:-3|g\ng:4|g"], {"stats.gauges.g": "4"}),
    ([b"s:a|s\ns:b|s", b"s:a|s"], {"stats.sets.s.count": "2"}),
    (
        [b"t:100|ms", b"t:200|ms\nt:300|ms"],
        {
            "stats.timers.t.count": "3",
            "stats.timers.t.count_ps": "0.3",
            "stats.timers.t.lower": "100",
            "stats.timers.t.upper": "300",
            "stats.timers.t.mean": "200",
            "stats.timers.t.median": "200",
            "stats.timers.t.std": "81.64965809277261",
            "stats.timers.t.sum": "600",
            "stats.timers.t.sum_squares": "140000",
            "stats.timers.t.count_90": "3",
            "stats.timers.t.upper_90": "300",
            "stats.timers.t.mean_90": "200",
        },
    ),
    ([b"t:10|ms|@0.1"], {"stats.timers.t.count": "10", "stats.timers.t.count_ps": "1"}),
    ([b"h:5|h\nd:7|d"], {"stats.timers.h.mean": "5", "stats.timers.d.upper": "7"}),
    ([b"req:1|c|#env:prod,az:b"], {"stats.req;env=prod;az=b": "0.1", "stats_counts.req;env=prod;az=b": "1"}),
    ([b"req:1|c|#env:prod", b"req:1|c"], {"stats.req;env=prod": "0.1", "stats.req": "0.1"}),
    ([b"bad", b"x:1|c"], {"stats.statsd.bad_lines_seen": "0.1", "stats_counts.statsd.packets_received": "2"}),
    ([b"a:1|c\nb:2|c\n"], {"stats_counts.statsd.metrics_received": "2", "statsd.numStats": "5"}),
]


@pytest.mark.parametrize(("packets", "expected"), TABLE)
def test_flush_table(packets: list[bytes], expected: dict[str, str]) -> None:
    assert subset(flush(packets), expected) == expected


def test_non_legacy_namespace_with_suffix() -> None:
    graphite = {"legacyNamespace": False, "globalPrefix": "app", "globalSuffix": "web1", "prefixGauge": "g"}
    lines = flush(
        [b"c:2|c", b"t:4|ms", b"g:1|g", b"s:x|s", b"c:1|c|#k:v"], graphite=graphite, flush_counts=True
    )
    expected = {
        "app.counters.c.rate.web1": "0.2",
        "app.counters.c.count.web1": "2",
        "app.timers.t.mean.web1": "4",
        "app.g.g.web1": "1",
        "app.sets.s.count.web1": "1",
        "app.counters.c.rate.web1;k=v": "0.1",
        "app.statsd.numStats.web1": "8",
    }
    assert subset(lines, expected) == expected


def test_flush_counts_off() -> None:
    lines = flush([b"c:2|c"], flush_counts=False)
    assert "stats.c" in lines and "stats_counts.c" not in lines


def test_percent_threshold_and_histogram_from_config() -> None:
    lines = flush(
        [b"t:1|ms\nt:2|ms\nt:3|ms\nt:4|ms"],
        percentThreshold=[50, -25],
        histogram=[{"metric": "t", "bins": [2, "inf"]}],
    )
    expected = {
        "stats.timers.t.upper_50": "2",
        "stats.timers.t.lower_top25": "4",
        "stats.timers.t.histogram.bin_2": "1",
        "stats.timers.t.histogram.bin_inf": "3",
    }
    assert subset(lines, expected) == expected


def test_idle_series_are_sent_as_zero_by_default_and_gauges_persist() -> None:
    cfg = statsd_config.build({})
    agg = Aggregator(cfg.aggregation())
    agg.ingest(b"c:1|c\nt:1|ms\ng:5|g\ns:a|s")
    agg.take(TS)
    snap = summarize(agg.take(TS + 10), cfg.summary())
    assert snap.counters["c"] == 0
    assert snap.timer_data["t"] == {"count": 0, "count_ps": 0}
    assert snap.gauges["g"] == 5
    assert snap.sets["s"] == set()


def test_delete_idle_stats_forgets_idle_series_but_keeps_own_counters() -> None:
    cfg = statsd_config.build({"deleteIdleStats": True})
    agg = Aggregator(cfg.aggregation())
    agg.ingest(b"c:1|c\nt:1|ms\ng:5|g\ns:a|s")
    first = agg.take(TS)
    assert first.tables["gauges"]["g"] == 5
    second = agg.take(TS + 10)
    assert second.tables["counters"] == {
        "statsd.packets_received": 0,
        "statsd.metrics_received": 0,
        "statsd.bad_lines_seen": 0,
    }
    assert (second.tables["timers"], second.tables["sets"], second.tables["gauges"]) == ({}, {}, {})


def test_individual_delete_option_overrides_delete_idle_stats() -> None:
    cfg = statsd_config.build({"deleteIdleStats": True, "deleteGauges": False})
    agg = Aggregator(cfg.aggregation())
    agg.ingest(b"g:5|g")
    agg.take(TS)
    assert agg.take(TS + 10).tables["gauges"] == {"g": 5}


def test_gauges_max_ttl() -> None:
    cfg = statsd_config.build({"deleteGauges": True, "gaugesMaxTTL": 2})
    agg = Aggregator(cfg.aggregation())
    agg.ingest(b"g:5|g")
    assert agg.take(TS).tables["gauges"] == {"g": 5}
    assert agg.take(TS + 10).tables["gauges"] == {"g": 5}
    assert agg.take(TS + 20).tables["gauges"] == {}


def test_timestamp_lag_is_a_gauge_under_prefix_stats() -> None:
    cfg = statsd_config.build({"prefixStats": "mystatsd"})
    agg = Aggregator(cfg.aggregation())
    assert agg.take(TS, lag=0.5).tables["gauges"]["mystatsd.timestamp_lag"] == 0.5
    assert "mystatsd.packets_received" in agg.counters


def test_console_delete_patterns() -> None:
    agg = Aggregator()
    agg.ingest(b"a.b.c:1|c\na.b.d:1|c\na.x:1|c\nt.one:1|ms")
    result = dict(agg.delete("counters", ["a.b.*", "nope", "a.x"]))
    assert sorted(result["a.b.*"]) == ["a.b.c", "a.b.d"]
    assert result["nope"] == []
    assert result["a.x"] == ["a.x"]
    assert "a.b.c" not in agg.counters
    agg.delete("timers", ["t.one"])
    assert "t.one" not in agg.table("timers")


names = st.sampled_from(["a", "b.c", "d-e", "f;k=v"])


@given(st.lists(st.tuples(names, st.integers(-1000, 1000)), max_size=50), st.data())
def test_counter_sums_are_conserved_across_any_split_into_packets(samples, data) -> None:
    lines = [f"{n.split(';')[0]}:{v}|c" + ("|#k:v" if ";" in n else "") for n, v in samples]
    cuts = sorted(data.draw(st.sets(st.integers(0, len(lines)))) | {0, len(lines)})
    packets = ["\n".join(lines[a:b]).encode() for a, b in itertools.pairwise(cuts)]
    agg = Aggregator()
    for p in packets:
        agg.ingest(p)
    expected: dict[str, int] = {}
    for n, v in samples:
        expected[n] = expected.get(n, 0) + v
    assert {k: agg.counters.get(k) for k in expected} == expected
    assert agg.totals.metrics_received == len(lines)


def test_batches_merged_in_order_equal_direct_ingest_for_gauges() -> None:
    direct = Aggregator()
    main = Aggregator()
    reader = BatchAggregator()
    for packet in [b"g:5|g", b"g:+3|g\nh:-2|g", b"g:-1|g"]:
        direct.ingest(packet)
        reader.ingest(packet)
        main.merge(reader.take_batch())
    reader.ingest(b"g:10|g\ng:+1|g\nfresh:+4|g")
    direct.ingest(b"g:10|g\ng:+1|g\nfresh:+4|g")
    main.merge(reader.take_batch())
    assert main.gauges == direct.gauges == {"g": 11, "h": -2, "fresh": 4}


def test_merge_carries_totals_key_counts_and_first_bad_lines() -> None:
    settings = statsd_config.build({"keyFlush": {"interval": 1000}}).aggregation()
    reader = BatchAggregator(settings)
    reader.ingest(b"a:1|c\na:1|c\n" + b"\n".join(b"bad%d" % i for i in range(20)), now=123.0, packets=3)
    batch = reader.take_batch()
    assert len(batch.bad_lines) == 10 and batch.totals.bad_lines_seen == 20
    main = Aggregator(settings)
    main.merge(batch)
    assert (main.totals.packets_received, main.totals.metrics_received) == (3, 22)
    assert main.totals.last_msg_seen == 123.0
    assert main.counters["statsd.bad_lines_seen"] == 20
    assert main.key_counts["a"] == 2
    assert reader.take_batch().totals.packets_received == 0  # handed over: nothing twice


lines_strategy = st.lists(
    st.sampled_from([b"c:1|c", b"c:3|c|@0.5", b"t:5|ms", b"t:7|ms|@0.1", b"s:x|s", b"s:y|s", b"x|bad"]),
    max_size=40,
)


@given(lines_strategy, st.lists(st.integers(0, 2), max_size=40))
def test_any_spread_over_readers_merges_to_the_same_interval(lines, assignment) -> None:
    direct = Aggregator()
    readers = [BatchAggregator() for _ in range(3)]
    for i, line in enumerate(lines):
        direct.ingest(line)
        readers[assignment[i] if i < len(assignment) else 0].ingest(line)
    main = Aggregator()
    for r in readers:
        main.merge(r.take_batch())
    assert main.counters == direct.counters
    timers = [{k: (sorted(t.samples), t.count) for k, t in a.table("timers").items()} for a in (main, direct)]
    assert timers[0].keys() == timers[1].keys()
    for key, (samples, count) in timers[0].items():
        assert samples == timers[1][key][0] and count == pytest.approx(timers[1][key][1])
    assert main.table("sets") == direct.table("sets")


gauge_lines = st.sampled_from([b"g:100|g", b"g:+1|g", b"g:-2|g", b"g:7|g", b"h:+5|g", b"h:3|g"])


@given(
    st.lists(gauge_lines, min_size=1, max_size=40),
    st.lists(st.integers(0, 2), max_size=40),
    st.randoms(use_true_random=False),
)
def test_gauges_end_as_with_one_reader_whatever_reader_hands_over_first(lines, assignment, rnd) -> None:
    """Each datagram is read (numbered in queue order) by one of three readers; the readers hand
    their batches over in any order and at any time: the gauges are those of one reader."""
    direct = Aggregator()
    readers = [BatchAggregator() for _ in range(3)]
    main = Aggregator()
    handed: list = []
    for seq, line in enumerate(lines):
        direct.ingest(line)
        reader = readers[assignment[seq] if seq < len(assignment) else 0]
        reader.ingest(line)
        reader.seal(seq)
        if rnd.random() < 0.3:  # this reader hands over now; the main process gets it later
            handed.append(reader.take_batch())
    handed += [r.take_batch() for r in readers]
    rnd.shuffle(handed)
    for batch in handed:
        main.merge(batch)
    assert main.gauges == direct.gauges


def test_a_read_lost_with_its_reader_holds_gauges_back_only_for_a_while() -> None:
    reader = BatchAggregator()
    reader.ingest(b"g:5|g")
    reader.seal(1)  # read 0 was taken by a reader that died before handing it over
    main = Aggregator()
    main.merge(reader.take_batch())
    assert "g" not in main.gauges
    main.advance(now=main.gap_since + 3.0)
    assert main.gauges == {"g": 5}


def test_graphite_names_are_cleaned_even_with_key_name_sanitize_off() -> None:
    lines = flush([b"my key/with*stuff:1|c|#env:prod"], keyNameSanitize=False)
    assert "stats_counts.my_key-withstuff;env=prod" in lines
    assert not any(" " in path for path in lines)


# --- the slow lane: lines the native fast path leaves to the reference parser ------------------


def _read(gauges: dict[str, float], lines: bytes, seq: int | None = None) -> Batch:
    """One read as a native receiver hands it over (gauge writes, then slow lines)."""
    ops = {"gauges": {k: (v, []) for k, v in gauges.items()}} if gauges else {}
    return Batch({}, [(seq, ops, lines)], Totals(), Counter(), [] if seq is None else [seq])


def test_slow_lines_are_parsed_a_slice_at_a_time_and_keep_gauge_order() -> None:
    from webops.statsd.aggregate import SLOW_SLICE_BYTES

    main = Aggregator()
    slow = b"".join(b"multi:1|c:2|c\n" for _ in range(2000))  # ~28 KiB the fast path leaves
    main.merge(_read({"g": 1.0}, slow + b"g:+1|g\n", seq=0))
    main.merge(_read({"g": 10.0}, b"", seq=1))  # a later read's gauge write waits behind them
    assert "g" not in main.gauges and main.slow
    slices, parsed = 0, 0
    while main.work_slow(0):  # a budget of 0: one slice per call
        slices += 1
        assert main.totals.metrics_received - parsed <= SLOW_SLICE_BYTES // 14 + 1  # lines a slice
        parsed = main.totals.metrics_received
    assert slices >= len(slow) // SLOW_SLICE_BYTES - 1
    assert main.counters["multi"] == 6000
    assert main.gauges == {"g": 10.0}  # 1, +1, then the later read's 10: read order held


def test_slow_lines_past_the_limit_are_shed_counted_and_gauges_still_apply(monkeypatch) -> None:
    from webops.statsd import aggregate

    monkeypatch.setattr(aggregate, "SLOW_MAX_BYTES", 100)
    main = Aggregator()
    main.merge(_read({}, b"a:1|c:1|c\n" * 8))  # 80 bytes wait
    main.merge(_read({"g": 5.0}, b"b:1|c:1|c\n" * 3))  # 30 more would pass 100: shed
    assert main.totals.lines_shed == 3 and main.counters["statsd.lines_shed"] == 3
    main.advance(force=True)
    assert main.counters["a"] == 16 and "b" not in main.counters
    assert main.gauges["g"] == 5.0
    assert main.series_count() == 2  # the daemon's own counters are not client series
