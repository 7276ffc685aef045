"""Bounded memory with millions of keys: the top stays exact, the tail is forgotten, and says so."""

from __future__ import annotations

import random

from webops.keytop.events import Event
from webops.keytop.table import HyperLogLog, KeyTable


def test_counts_and_totals() -> None:
    t = KeyTable()
    for ev in [
        Event("a"),
        Event("a", call=False, hit=True, read=10),
        Event("b", set=True, written=4),
        Event("b"),
    ]:
        t.add(ev, now=100.0)
    rows = {r["key"]: r for r in t.rows("calls", 10, now=100.0)}
    assert (rows["a"]["calls"], rows["a"]["hits"], rows["a"]["bytes_read"]) == (1, 1, 10)
    assert (rows["b"]["calls"], rows["b"]["sets"], rows["b"]["bytes_written"]) == (2, 1, 4)
    assert rows["b"]["share"] == round(2 / 3, 6)
    totals = t.totals(now=100.0)
    assert totals["calls"] == 3 and totals["hit_ratio"] == 1.0 and totals["distinct_keys"] == 2


def test_rate_is_calls_over_the_sliding_window() -> None:
    t = KeyTable()
    for second in range(100, 120):
        t.add(Event("k"), now=second + 0.5)
    (row,) = t.rows("calls", 1, now=119.9)
    assert row["calls_per_s"] == 1.0  # the last 10 seconds, one call each
    (row,) = t.rows("calls", 1, now=200.0)
    assert row["calls_per_s"] == 0.0


def test_sorting() -> None:
    t = KeyTable()
    t.add(Event("many"), 1)
    t.add(Event("many"), 1)
    t.add(Event("missed", call=True), 1)
    t.add(Event("missed", call=False, miss=True), 1)
    assert [r["key"] for r in t.rows("calls", 5, 1)] == ["many", "missed"]
    assert next(r["key"] for r in t.rows("misses", 5, 1)) == "missed"
    assert [r["key"] for r in t.rows("key", 5, 1)] == ["many", "missed"]


def test_memory_stays_bounded_and_hot_keys_stay_exact() -> None:
    t = KeyTable(max_keys=1000)
    hot = {f"hot{i}": 200 + i for i in range(20)}
    for key, n in hot.items():  # hot keys are hot from the start, as in real traffic
        for _ in range(n // 2):
            t.add(Event(key), 1.0)
    rnd = random.Random(1)
    stream = [k for k, n in hot.items() for _ in range(n - n // 2)] + [f"tail{i}" for i in range(200_000)]
    rnd.shuffle(stream)
    for key in stream:
        t.add(Event(key), 1.0)
    assert len(t.entries) <= 1000
    top = {r["key"]: r for r in t.rows("calls", 20, 1.0)}
    assert {k: r["calls"] for k, r in top.items()} == hot
    assert not any(r["approximate"] for r in top.values())
    totals = t.totals(1.0)
    assert totals["forgotten_keys"] > 0 and not totals["distinct_exact"]
    assert abs(totals["distinct_keys"] - 200_020) / 200_020 < 0.03


def test_a_forgotten_key_is_marked_and_its_error_bound_is_tight() -> None:
    t = KeyTable(max_keys=100)
    rnd = random.Random(2)
    truth = {f"k{i}": rnd.randint(1, 50) for i in range(1000)}
    stream = [k for k, n in truth.items() for _ in range(n)]
    rnd.shuffle(stream)
    for key in stream:
        t.add(Event(key), 1.0)
    assert len(t.entries) <= 100
    rows = t.rows("calls", 100, 1.0)
    for r in rows:
        assert r["calls"] <= truth[r["key"]] <= r["calls"] + r["max_error"]  # a bound, never wrong
    # and a useful one: what each key really lost, not the largest count ever forgotten
    lost = [truth[r["key"]] - r["calls"] for r in rows if r["approximate"]]
    slack = [r["max_error"] - (truth[r["key"]] - r["calls"]) for r in rows if r["approximate"]]
    assert lost and sum(slack) <= sum(lost) * 0.1, (sum(slack), sum(lost))


def test_rates_cover_the_time_since_the_start_in_the_first_window() -> None:
    t = KeyTable(started=100.0)
    for _ in range(30):
        t.add(Event("k", read=100), now=102.5)
    (row,) = t.rows("calls", 1, now=103.0)
    assert row["calls_per_s"] == 10.0 and row["bytes_per_s"] == 1000.0  # 30 calls in 3 s, not in 10


def test_value_size_and_reverse_order() -> None:
    t = KeyTable()
    t.add(Event("big", set=True, written=1000), 1)
    t.add(Event("small", set=True, written=10), 1)
    t.add(Event("small"), 1)
    assert [r["key"] for r in t.rows("size", 5, 1)] == ["big", "small"]
    assert [r["key"] for r in t.rows("size", 5, 1, reverse=True)] == ["small", "big"]
    assert [r["key"] for r in t.rows("calls", 5, 1, reverse=True)] == ["big", "small"]


def test_hyperloglog_estimate() -> None:
    h = HyperLogLog()
    for i in range(50_000):
        h.add(f"key{i}")
        h.add(f"key{i}")
    assert abs(h.estimate() - 50_000) / 50_000 < 0.03
    small = HyperLogLog()
    for i in range(100):
        small.add(str(i))
    assert abs(small.estimate() - 100) <= 2
