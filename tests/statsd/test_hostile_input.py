"""Hostile input at the pure core: nothing raises, work per bad line is bounded, sums stay finite,
memory stays bounded (issue 12). The daemon-level scenarios are in test_hostile_daemon.py."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webops.statsd import settings as statsd_config
from webops.statsd.aggregate import CACHE_TEXT_MAX, AggregationSettings, Aggregator, BatchAggregator
from webops.statsd.jsfmt import inspect
from webops.statsd.listeners import printable
from webops.statsd.persist import load_gauges, save_gauges
from webops.statsd.protocol import BadLine, parse_line
from webops.statsd.snapshot import SummarySettings, summarize

HUGE_HEX = "0x" + "f" * 300


@pytest.mark.parametrize(
    "line",
    [f"x:{HUGE_HEX}|c", f"x:1|c|@{HUGE_HEX}", f"x:{HUGE_HEX}|g", f"x:{HUGE_HEX}|ms", "x:1e308|c|@1e-300"],
)
def test_numbers_too_large_for_a_float_are_bad_lines_not_exceptions(line: str) -> None:
    (result,) = parse_line(line)
    assert isinstance(result, BadLine)


def test_a_hostile_line_costs_only_itself_in_a_packet() -> None:
    agg = Aggregator()
    agg.ingest(f"before:1|c\nx:{HUGE_HEX}|c\ny:1|c|@{HUGE_HEX}\nafter:1|c".encode())
    assert agg.counters["before"] == agg.counters["after"] == 1
    assert agg.totals.bad_lines_seen == 2


def test_a_line_of_colons_is_one_bad_line() -> None:
    agg = Aggregator()
    agg.ingest(b"p:" + b":" * 65_000)
    assert agg.totals.bad_lines_seen == 1


@given(st.text(alphabet=st.sampled_from(list("x:|@#0123456789abcdefxXoObB.e+-gcmsh")), max_size=400))
def test_no_protocol_text_makes_ingest_raise(text: str) -> None:
    agg = Aggregator()
    agg.ingest(text.encode())
    batch = BatchAggregator()
    batch.ingest(text.encode())


def test_parse_caches_hold_no_long_texts() -> None:
    agg = Aggregator()
    for i in range(200):
        agg.ingest(b"n%d%s:1|c|#%s" % (i, b"a" * 300, b"t" * 300))
        agg.ingest(b"m%s:%d|c" % (b"b" * 1000, i))
    assert all(len(k) <= CACHE_TEXT_MAX for k in agg._keys)
    assert all(len(k) <= CACHE_TEXT_MAX for k in agg._values)


def test_deleting_the_daemons_own_counters_does_not_break_intake() -> None:
    agg = Aggregator()
    agg.delete("counters", ["statsd.*"])
    agg.ingest(b"a:1|c\nbad")
    assert agg.counters["a"] == 1
    assert agg.counters["statsd.packets_received"] == 1
    assert agg.counters["statsd.bad_lines_seen"] == 1


def test_series_past_max_series_are_refused_and_counted() -> None:
    agg = Aggregator(AggregationSettings(max_series=10))
    agg.ingest(b"\n".join(b"s%d:1|%s" % (i, t) for i in range(20) for t in (b"c", b"ms", b"g", b"s")))
    assert agg.series_count() <= 10
    assert agg.totals.metrics_refused > 0
    kept = next(k for k in agg.counters if k[1:].isdigit())
    before = agg.counters[kept]
    agg.ingest(f"{kept}:5|c".encode())  # existing series go on
    assert agg.counters[kept] == before + 5


def test_a_reader_batch_refuses_no_series_and_says_when_it_is_full() -> None:
    """A reader cannot tell a new series from one the main process holds, so it keeps them all
    (the main process decides as it merges) and `full` has it hand the batch over before it
    reads on: a batch holds maxSeries series and one read at most (issue 26)."""
    batch = BatchAggregator(AggregationSettings(max_series=10))
    batch.ingest(b"\n".join(b"c%d:1|c" % i for i in range(8)))
    batch.seal(0)
    assert not batch.full()
    batch.ingest(b"g:1|g\ns:x|s\nt:1|ms")
    assert batch.full()
    assert (batch.series_count(), batch.totals.metrics_refused) == (11, 0)
    batch.take_batch()
    assert not batch.full()


def test_a_set_keeps_max_set_members_and_counts_the_members_it_refuses() -> None:
    """A set fed unique ids must not take the daemon's memory (issue 26): past maxSetMembers new
    members are refused and counted, members held go on, whether lines come to the main process
    or in a reader's batch, which holds the same limit."""
    settings = AggregationSettings(max_set_members=3)
    main = Aggregator(settings)
    main.ingest(b"\n".join(b"users:u%d|s" % i for i in range(10)) + b"\nusers:u1|s")
    assert main.table("sets") == {"users": {"u0", "u1", "u2"}}
    assert main.totals.set_members_refused == main.counters["statsd.set_members_refused"] == 7
    reader = BatchAggregator(settings)
    reader.ingest(b"users:u2|s\nusers:z|s\nusers:a|s\nother:x|s\nother:y|s\nother:z|s\nother:w|s")
    main.merge(reader.take_batch())  # other: its batch refused w; users: no room for a or z
    assert main.table("sets") == {"users": {"u0", "u1", "u2"}, "other": {"x", "y", "z"}}
    assert main.totals.set_members_refused == main.counters["statsd.set_members_refused"] == 10
    assert main.series_count() == 2  # the refusal counter is the daemon's, not a series

    main = Aggregator(settings)
    main.ingest(b"users:u0|s")
    reader.ingest(b"users:c|s\nusers:b|s\nusers:a|s")
    main.merge(reader.take_batch())  # room for two: the smallest, whatever order the set has
    assert main.table("sets") == {"users": {"u0", "a", "b"}}
    assert main.totals.set_members_refused == 1


def test_merge_respects_max_series() -> None:
    main = Aggregator(AggregationSettings(max_series=8))
    reader = BatchAggregator()
    reader.ingest(b"\n".join(b"r%d:1|c" % i for i in range(20)))
    main.merge(reader.take_batch())
    assert main.series_count() <= 8
    assert main.totals.metrics_refused > 0


def test_overflowing_sums_never_reach_a_backend() -> None:
    agg = Aggregator()
    agg.ingest(b"c:1e308|c\nc:1e308|c\nt:1e308|ms\nt:1e308|ms\ng:1e308|g\ng:+1e308|g\nok:1|c")
    assert agg.gauges["g"] == 1e308  # the overflowing delta was refused
    snap = summarize(agg.take(1), SummarySettings())
    assert sorted(snap.non_finite) == ["c", "t"]
    assert snap.counters["ok"] == 1
    numbers = [*snap.counters.values(), *snap.counter_rates.values(), *snap.gauges.values()]
    assert all(math.isfinite(v) for v in numbers)


def test_persisted_gauges_are_valid_json_and_private(tmp_path) -> None:
    path = tmp_path / "g.json"
    old = os.umask(0)
    try:
        save_gauges(str(path), {"a": 1.5, "b": math.inf})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"a": 1.5}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_gauge_file_with_a_huge_number_loads_the_rest(tmp_path) -> None:
    path = tmp_path / "g.json"
    path.write_text('{"huge": ' + "9" * 400 + ', "ok": 3, "nan": NaN}')
    assert load_gauges(str(path)) == {"ok": 3}


def test_control_characters_never_reach_a_terminal_raw() -> None:
    name = "a\x1b]0;pwned\x07\x9b2J\nb"
    shown = inspect({name: 1})
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in shown)
    assert "\\x1B" in shown and "\\n" in shown
    assert printable("x\nFAKE LOG LINE\x1b") == "x\\nFAKE LOG LINE\\x1b"


def test_new_limits_are_config_keys() -> None:
    cfg = statsd_config.build({"maxSeries": 100, "tcpMaxConnections": 5, "mgmtIdleTimeout": 0})
    assert cfg.aggregation().max_series == 100
    with pytest.raises(statsd_config.ConfigError, match="maxSeries"):
        statsd_config.build({"maxSeries": 0})
    assert statsd_config.build({}).aggregation().max_set_members == 100_000
    assert statsd_config.build({"maxSetMembers": 5}).aggregation().max_set_members == 5
    for wrong in (0, 2.5, "many"):
        with pytest.raises(statsd_config.ConfigError, match="maxSetMembers"):
            statsd_config.build({"maxSetMembers": wrong})


def test_a_backend_slower_than_the_flushes_holds_a_bounded_queue() -> None:
    import threading

    from webops.statsd.backends.base import Backend, BackendRunner

    release = threading.Event()
    seen: list[int] = []

    class Stuck(Backend):
        name = "stuck"

        def flush(self, snapshot) -> None:
            release.wait(30)
            seen.append(snapshot.timestamp)

    runner = BackendRunner(Stuck(None, 0))
    agg = Aggregator()
    for ts in range(30):
        runner.submit(summarize(agg.take(ts), SummarySettings()))
    assert len(runner.queue) <= BackendRunner.MAX_QUEUED
    assert runner.status()["flushes_dropped"] >= 30 - BackendRunner.MAX_QUEUED - 1
    release.set()
    assert runner.stop(30)
    assert seen == sorted(seen) and seen[-1] == 29  # in order, the newest kept


def test_one_wake_up_reads_a_bounded_slice_of_one_connection_and_hands_lines_over() -> None:
    """A client that has sent megabytes ahead: one read callback takes at most STREAM_SLICES x 64
    KiB, in whole lines as they come, and returns so the event loop serves everyone else."""
    import asyncio
    import socket

    from webops.statsd.listeners import MAX_PACKET, STREAM_SLICES, Listener, StreamListener

    async def scenario() -> list[int]:
        server, client = socket.socketpair()
        for s in (server, client):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        client.setblocking(False)
        line = b"flood:1|c\n"
        sent = 0
        for _ in range(2000):  # as much as the kernel takes, up to 20 MB
            try:
                sent += client.send(line * 1000)
            except BlockingIOError:
                break
        chunks: list[int] = []
        with socket.socket() as listening:
            listening.bind(("127.0.0.1", 0))
            listening.listen()
            listener = StreamListener(
                Listener("tcp", "127.0.0.1", 0), listening, lambda d: chunks.append(len(d[0])), 10, 0
            )
            server.setblocking(False)
            listener.conns[server.fileno()] = (server, bytearray())
            listener.last_seen[server.fileno()] = 0.0
            listener.read(server.fileno())
            listener.loop.remove_reader(listening.fileno())
        client.close()
        server.close()
        assert sent > STREAM_SLICES * MAX_PACKET * 2, "the kernel took too little to show anything"
        return chunks

    chunks = asyncio.run(scenario())
    assert sum(chunks) <= STREAM_SLICES * MAX_PACKET
    assert len(chunks) > 1


def test_a_flush_slower_than_the_interval_holds_one_flush_and_the_next_covers_both() -> None:
    """The flusher keeps at most one interval in processing; while it is busy the data stays in
    the aggregator and the next flush carries it, rates over the real length (nothing lost)."""
    import asyncio
    import threading

    from webops.statsd.flush import Flusher

    release = threading.Event()
    delivered: list = []
    agg = Aggregator()

    def deliver(snapshot, _slot) -> None:
        release.wait(30)
        delivered.append(snapshot)

    flusher = Flusher(agg, deliver)
    most_pending = 0

    async def scenario() -> None:
        nonlocal most_pending

        async def tick() -> None:
            nonlocal most_pending
            most_pending = max(most_pending, flusher.pending)
            agg.ingest(b"c:1|c")

        task = asyncio.create_task(
            flusher.run(lambda: 50, lambda: SummarySettings(flush_interval_ms=50), tick)
        )
        while flusher.log.logged == 0:  # until a flush was delayed
            await asyncio.sleep(0.01)
        release.set()
        while sum(s.counters.get("c", 0) for s in delivered) < 3:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(scenario())
    flusher.close()
    assert most_pending <= 1
    assert any(s.flush_interval_ms > 50 for s in delivered)  # a flush that covered the delayed one


def _reader_with_small_forward_bound(sock, conn, settings, turn, counter) -> None:
    from webops.statsd import readers

    readers.FORWARD_MAX = 10
    readers.reader_main([sock], conn, settings, turn, counter)


def test_a_reader_holds_a_bounded_number_of_packets_for_the_repeater() -> None:
    """While the main process does not take batches, a reader keeps at most FORWARD_MAX raw
    datagrams for the repeater; the rest are still counted, and reported as not forwarded."""
    import logging
    import multiprocessing
    import socket

    from webops.statsd.readers import READY, STOP, ReaderSettings

    ctx = multiprocessing.get_context("fork")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    parent, child = ctx.Pipe()
    settings = ReaderSettings(1, AggregationSettings(), True, False, logging.WARNING)
    proc = ctx.Process(
        target=_reader_with_small_forward_bound,
        args=(sock, child, settings, ctx.Lock(), ctx.Value("Q", 0, lock=False)),
    )
    proc.start()
    try:
        assert parent.poll(30) and parent.recv() == READY
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(50):
                s.sendto(b"fwd:1|c", sock.getsockname())
        parent.send(STOP)
        batches = []
        while (message := parent.recv()) is not None:
            batches.append(message)
    finally:
        proc.join(30)
        sock.close()
    assert sum(b.totals.packets_received for b in batches) == 50  # every datagram counted
    assert all(len(b.packets) <= 10 for b in batches)
    assert sum(len(b.packets) + b.packets_dropped for b in batches) == 50
    assert sum(b.packets_dropped for b in batches) > 0
