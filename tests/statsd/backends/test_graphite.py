"""The Graphite backend against a real carbon-cache: values read back from its whisper files."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.servers import Carbon


@pytest.fixture
def carbon(tmp_path: Path) -> Iterator[Carbon]:
    c = Carbon(tmp_path / "carbon").start()
    yield c
    c.stop()


def graphite_daemon(start_daemon, carbon: Carbon, **extra):
    config = {
        "flushInterval": 1000,
        "backends": ["./backends/graphite", "./backends/file"],
        "graphiteHost": "127.0.0.1",
        "graphitePort": carbon.port,
        "graphitePicklePort": carbon.pickle_port,
        **extra,
    }
    return start_daemon(**config)


def flush_with(d, kind: str, key: str) -> dict:
    """The first flush (from the file backend) where series `key` of `kind` has data."""
    for record in d.flushes():
        value = record[kind].get(key)
        if value not in (None, 0, {"count": 0, "count_ps": 0}):
            return record
    return {}


@pytest.mark.parametrize("protocol", ["text", "pickle"])
def test_carbon_stores_what_the_flush_computed(start_daemon, carbon: Carbon, protocol: str) -> None:
    d = graphite_daemon(start_daemon, carbon, graphiteProtocol=protocol)
    d.send(
        b"gr.count:3|c\ngr.count:2|c|@0.5\ngr.time:10|ms\ngr.time:30|ms\ngr.level:7|g\ngr.users:a|s\ngr.users:b|s"
    )
    record = wait_until(lambda: flush_with(d, "counters", "gr.count"), what="the flush with the counter")
    ts = record["timestamp"]
    timer = record["timer_data"]["gr.time"]
    expected = {
        "stats.gr.count": record["counter_rates"]["gr.count"],
        "stats_counts.gr.count": 7,
        "stats.timers.gr.time.mean": 20,
        "stats.timers.gr.time.upper_90": timer["upper_90"],
        "stats.timers.gr.time.std": timer["std"],
        "stats.timers.gr.time.count": 2,
        "stats.gauges.gr.level": 7,
        "stats.sets.gr.users.count": 2,
    }

    last: dict = {}

    def all_stored() -> dict | None:
        last.update({p: carbon.value(p, ts) for p in expected})
        return dict(last) if None not in last.values() else None

    def stuck() -> str:
        missing = [p for p, v in last.items() if v is None]
        return f"missing {missing} at {ts}; daemon: {d.console('stats')!r}; carbon: {carbon.log_tail()!r}"

    got = wait_until(all_stored, timeout=30, what="the datapoints in carbon's whisper files", detail=stuck)
    assert got == pytest.approx(expected)
    wait_until(
        lambda: carbon.value("stats.statsd.graphiteStats.last_flush", ts) is not None,
        what="graphiteStats in carbon",
    )


def test_nothing_is_lost_while_carbon_is_down(start_daemon, carbon: Carbon) -> None:
    d = graphite_daemon(start_daemon, carbon)
    carbon.stop()
    sent = []
    for i in range(1, 5):  # one value per flush, each flush while carbon is away
        d.send(b"outage.count:%d|c" % i)
        wait_until(
            lambda i=i: len([r for r in d.flushes() if r["counters"].get("outage.count")]) >= i,
            what=f"flush {i}",
        )
        sent.append(i)
    records = [r for r in d.flushes() if r["counters"].get("outage.count")]
    assert "buffering flushes and retrying" in d.logs()
    carbon.start()
    for r in records:
        wait_until(
            lambda r=r: (
                carbon.value("stats_counts.outage.count", r["timestamp"]) == r["counters"]["outage.count"]
            ),
            timeout=60,
            what=f"the datapoint of {r['timestamp']} after carbon came back",
        )
    assert sorted(r["counters"]["outage.count"] for r in records) == sent


def test_buffer_bound_drops_the_oldest_and_says_so(start_daemon, carbon: Carbon) -> None:
    carbon.stop()
    d = graphite_daemon(start_daemon, carbon, graphiteBufferSize=2048)
    d.send(b"bound:1|c")
    wait_until(lambda: "graphite.datapoints_dropped: 0" not in d.console("stats"), what="dropped datapoints")
    assert d.logs().count("buffer full") == 1


def test_unsent_flushes_wait_in_the_spool_file_across_a_restart(
    start_daemon, carbon: Carbon, tmp_path
) -> None:
    carbon.stop()
    spool = tmp_path / "graphite.spool"
    d = graphite_daemon(start_daemon, carbon, graphiteSpoolFile=str(spool), flushInterval=3_600_000)
    d.send(b"spooled:5|c")
    wait_until(lambda: d.total() == 1, what="the packet")
    d.signal(signal.SIGTERM)
    assert d.proc.wait(60) == 0
    (record,) = d.flushes()
    assert spool.exists()
    carbon.start()
    again = graphite_daemon(start_daemon, carbon, graphiteSpoolFile=str(spool))
    wait_until(
        lambda: carbon.value("stats_counts.spooled", record["timestamp"]) == 5,
        timeout=60,
        what="the spooled datapoint in carbon",
    )
    wait_until(lambda: not spool.exists(), what="the spool file to be consumed")
    assert again.proc.poll() is None


def test_reload_keeps_the_buffered_flushes(start_daemon, carbon: Carbon) -> None:
    carbon.stop()
    d = graphite_daemon(start_daemon, carbon)
    d.send(b"reloaded:9|c")
    record = wait_until(lambda: flush_with(d, "counters", "reloaded"), what="the flush")
    d.write_config({**d.config, "percentThreshold": [95]})
    d.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in d.logs(), what="the reload")
    carbon.start()
    wait_until(
        lambda: carbon.value("stats_counts.reloaded", record["timestamp"]) == 9,
        timeout=60,
        what="the datapoint buffered before the reload",
    )


# --- carbon failing in every way it does (issue 12) ------------------------------------------


def counted_flushes(d, key: str) -> list[dict]:
    return [r for r in d.flushes() if r["counters"].get(key)]


def send_one_per_flush(d, key: str, first: int, last: int) -> None:
    """Value i in flush i: each flush of the daemon carries exactly one known count."""
    for i in range(first, last + 1):
        d.send(b"%s:%d|c" % (key.encode(), i))
        wait_until(lambda i=i: len(counted_flushes(d, key)) >= i, what=f"flush {i} of {key}")


def assert_every_flush_stored(d, carbon: Carbon, key: str, count: int) -> None:
    records = counted_flushes(d, key)
    assert sorted(r["counters"][key] for r in records) == list(range(1, count + 1))

    def missing() -> list[int]:
        return [
            r["timestamp"]
            for r in records
            if carbon.value(f"stats_counts.{key}", r["timestamp"]) != r["counters"][key]
        ]

    wait_until(
        lambda: not missing(),
        timeout=90,
        what=f"every flush of {key} in carbon",
        detail=lambda: f"missing {missing()}; daemon: {d.console('stats')!r}; carbon: {carbon.log_tail()!r}",
    )


@pytest.mark.parametrize("how", ["killed", "restarted"])
def test_carbon_killed_or_restarted_between_flushes_loses_no_flush(start_daemon, carbon: Carbon, how) -> None:
    d = graphite_daemon(start_daemon, carbon)
    send_one_per_flush(d, "crash", 1, 3)
    if how == "killed":
        assert carbon.proc is not None
        carbon.proc.send_signal(signal.SIGKILL)  # whatever it held in memory is gone
        carbon.proc.wait()
        carbon.proc = None
        carbon.log.close()
        send_one_per_flush(d, "crash", 4, 6)
    else:
        # A graceful stop: carbon closes its connections, the old failure mode of the sender.
        # (carbon-cache drops what it has not yet written when it stops: wait for that first.)
        assert_every_flush_stored(d, carbon, "crash", 3)
        carbon.stop()
    carbon.start()
    send_one_per_flush(d, "crash", 7 if how == "killed" else 4, 9 if how == "killed" else 6)
    assert_every_flush_stored(d, carbon, "crash", 9 if how == "killed" else 6)
    # Every flush, those while carbon was away included, carries the daemon's own numStats.
    stamps = [r["timestamp"] for r in d.flushes()][:-1]  # the newest may still be on its way

    def missing_flushes() -> list[int]:
        return [ts for ts in stamps if carbon.value("statsd.numStats", ts) is None]

    wait_until(
        lambda: not missing_flushes(),
        timeout=90,
        what="every flush in carbon",
        detail=lambda: f"missing {missing_flushes()} of {stamps}",
    )


def test_a_stopped_carbon_loses_no_flush(start_daemon, carbon: Carbon) -> None:
    d = graphite_daemon(start_daemon, carbon)
    send_one_per_flush(d, "frozen", 1, 2)
    assert carbon.proc is not None
    carbon.proc.send_signal(signal.SIGSTOP)
    try:
        send_one_per_flush(d, "frozen", 3, 5)
    finally:
        carbon.proc.send_signal(signal.SIGCONT)
    send_one_per_flush(d, "frozen", 6, 7)
    assert_every_flush_stored(d, carbon, "frozen", 7)


def test_a_port_that_accepts_and_never_reads_swallows_nothing(start_daemon, carbon: Carbon) -> None:
    carbon.stop()
    blackhole = socket.socket()
    blackhole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blackhole.bind(("127.0.0.1", carbon.port))
    blackhole.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_ignore() -> None:
        blackhole.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(blackhole.accept()[0])

    thread = threading.Thread(target=accept_and_ignore)
    thread.start()
    try:
        d = graphite_daemon(start_daemon, carbon)
        send_one_per_flush(d, "void", 1, 4)
        wait_until(lambda: accepted, what="the daemon to connect to the black hole")
    finally:
        stop.set()
        thread.join()
        for c in accepted:
            c.close()
        blackhole.close()
    carbon.start()
    assert_every_flush_stored(d, carbon, "void", 4)


def test_the_shutdown_flush_does_not_overwrite_the_last_interval(tmp_path, start_daemon) -> None:
    carbon = Carbon(tmp_path / "carbon2", retention="2s:1h").start()  # one slot per flush interval
    try:
        d = graphite_daemon(start_daemon, carbon, flushInterval=2000)
        d.send(b"slot:5|c")
        (record,) = wait_until(lambda: counted_flushes(d, "slot"), what="the flush with 5")
        d.send(b"slot:3|c")  # then stop within the same 2 s slot (or the next: the sum holds)
        wait_until(lambda: d.total() == 2, what="the second packet")
        d.signal(signal.SIGTERM)
        assert d.proc.wait(60) == 0
        ts = record["timestamp"]
        wait_until(
            lambda: sum(carbon.values("stats_counts.slot", ts - 10, ts + 10).values()) == 8,
            timeout=60,
            what="5 + 3 counted in carbon",
            detail=lambda: str(carbon.values("stats_counts.slot", ts - 10, ts + 10)),
        )
    finally:
        carbon.stop()


def test_graphite_stats_start_as_etsys() -> None:
    from webops.statsd import settings as statsd_config
    from webops.statsd.backends.graphite import GraphiteBackend

    backend = GraphiteBackend(statsd_config.build({}), 1_700_000_000)  # no graphiteHost: no sender
    assert backend.last_exception == 0 and backend.last_flush == 1_700_000_000


def test_close_returns_as_soon_as_everything_is_sent(monkeypatch) -> None:
    """Shutdown waits for the sender only while there is something to send: with the shutdown
    budget raised to an hour, close() after a flush must still return (the first release waited
    out its 10 s budget in about half the stops: the sender never woke it)."""
    import socket
    import threading
    import time

    from webops.statsd import settings as statsd_config
    from webops.statsd.aggregate import Aggregator
    from webops.statsd.backends import graphite
    from webops.statsd.snapshot import summarize

    sink = socket.create_server(("127.0.0.1", 0))

    def drain() -> None:
        while True:
            conn, _ = sink.accept()
            with conn:
                while conn.recv(65536):
                    pass

    threading.Thread(target=drain, daemon=True).start()
    monkeypatch.setattr(graphite, "SHUTDOWN_SEND", 3600.0)
    cfg = statsd_config.build({"graphiteHost": "127.0.0.1", "graphitePort": sink.getsockname()[1]})
    backend = graphite.GraphiteBackend(cfg, time.time())
    agg = Aggregator(cfg.aggregation())
    agg.ingest(b"shutdown.sent:1|c")
    backend.flush(summarize(agg.take(int(time.time())), cfg.summary()))
    closed = threading.Event()
    threading.Thread(target=lambda: (backend.close(), closed.set()), daemon=True).start()
    assert closed.wait(60), "close() is waiting out its shutdown budget with nothing left to send"
    sink.close()
