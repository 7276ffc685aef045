"""The native hot path against the Python reference: the same aggregates, bad lines (counted and
said, in order), flushes and totals for any input (hypothesis), and the daemon saying which runs.

The reference is `Aggregator.ingest`, one datagram at a time, as `readers: 0` runs it. The native
side is the extension's own batch code (`Intake.feed`: a read without a socket) merged into an
Aggregator exactly as the daemon merges what its receiver threads take.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import need, wait_until
from webops.statsd import config as statsd_config
from webops.statsd import hotpath
from webops.statsd.aggregate import AggregationSettings, Aggregator
from webops.statsd.protocol import BadLine, Sample, parse_line
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
    st.sampled_from(["+3", "-2", "+0.5", ".5", "5.", "1e3", "1E+2", "-0", "0x10", " 5", "5 ", "1_0"]),
    st.sampled_from(["", "abc", "1e400", "-1e400", "NaN", "Infinity", "1e308", "+1e308", "\u0661"]),
)
types = st.sampled_from(["c", "ms", "g", "s", "h", "d", "x", " c", "", "C"])
rates = st.sampled_from(["", "|@0.5", "|@0.25", "|@1", "|@-1", "|@0", "|@abc", "|@+0.5", "|@1e-320", "|0.5"])
tag = st.text(st.sampled_from("ab:;=,._-é| "), max_size=6)
extras = st.one_of(
    st.sampled_from(["", "", "", "|#env:prod,role", "|c:abc", "|T1700000000", "|#", "|x|y", "|#t|c:x"]),
    st.lists(tag, max_size=3).map(lambda tags: "|#" + ",".join(tags)),
)


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:  # anything at all
        return draw(st.binary(max_size=30)).replace(b"\n", b"")
    line = f"{draw(names)}:{draw(values)}|{draw(types)}{draw(rates)}{draw(extras)}"
    if kind == 1:  # several values on one line
        line += f":{draw(values)}|{draw(types)}"
    if kind == 2:
        line += "\r"
    return line.encode("utf-8", "surrogatepass")


datagrams = st.lists(st.lists(lines(), min_size=1, max_size=5).map(b"\n".join), min_size=1, max_size=12)


# --- both sides -----------------------------------------------------------------------------


def reference(packets: list[bytes], agg_settings: AggregationSettings) -> tuple[Aggregator, list[BadLine]]:
    bad: list[BadLine] = []
    agg = Aggregator(agg_settings, on_bad_line=bad.append)
    for p in packets:
        agg.ingest(p, NOW)
    return agg, bad


def through_native(
    packets: list[bytes], agg_settings: AggregationSettings, per_read: int = 1
) -> tuple[Aggregator, list[BadLine]]:
    bad: list[BadLine] = []
    agg = Aggregator(agg_settings, on_bad_line=bad.append)
    intake = native.Intake([], 1, agg_settings.max_series, agg_settings.key_flush)
    for i in range(0, len(packets), per_read):
        intake.feed(packets[i : i + per_read], NOW)
    for taken in intake.take():
        agg.merge(hotpath.to_batch(taken, agg_settings))
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


@PROPERTY
@given(lines())
def test_a_line_the_fast_path_takes_means_what_the_reference_says(line: bytes) -> None:
    fast = native.parse_line(line)
    if fast is None:
        return  # left to the reference
    (sample,) = parse_line(line.decode())
    assert isinstance(sample, Sample), sample
    code, key, *rest = fast
    assert key == sample.key and code == ("ms" if sample.kind == "ms" else sample.kind)
    if code == "c":
        assert same(rest[0], sample.value / sample.rate)
    elif code == "ms":
        assert same(rest, [sample.value, 1 / sample.rate])
    elif code == "g":
        assert same(rest, [sample.value, sample.delta])
    else:
        assert rest == [sample.value]


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
    intake = native.Intake([], 1, agg_settings.max_series, key_flush)
    intake.feed([b"after:1|c\ngone:+1|g"], NOW)
    for taken in intake.take():
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


def test_max_series_refuses_and_counts_as_the_reference_does() -> None:
    agg_settings = AggregationSettings(max_series=3)
    packets = [b"a:1|c\nb:1|ms\nc:x|s\nd:1|c\ne:1|g", b"a:1|c\nf:2|c"]
    want = comparable(reference(packets, agg_settings)[0])
    got = comparable(through_native(packets, agg_settings)[0])
    assert (
        got["tables"]["counters"]
        == want["tables"]["counters"]
        == {
            "statsd.packets_received": 2,
            "statsd.metrics_received": 7,
            "statsd.bad_lines_seen": 0,
            "a": 2,
            "statsd.metrics_refused": 3,
        }
    )
    assert got["totals"]["metrics_refused"] == want["totals"]["metrics_refused"] == 3


def test_gauges_keep_their_order_across_fast_and_slow_lines() -> None:
    """`g:1|g` (fast), then a tagged write of the same series (the reference parses it), then
    `g;t=v:+1|g`: the last write wins in the order sent, not in the order each path saw it."""
    packets = [b"g;t=v:1|g\ng:5|g|#t:v\ng;t=v:+1|g", b"h:1|g", b"h:0x10|g\nh:+1|g"]
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
    packet = b"\n".join(b"t%d:0x1|ms" % i for i in range(40))  # a JS number: for the reference parser
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        intake = native.Intake([rx.fileno()], 1, 500_000, False, 0, None, 8192)
        try:
            for _ in range(200):
                tx.sendto(packet, rx.getsockname())
            wait_until(lambda: intake.held_back() > 0, what="the receiver to hold back")
            first = intake.take()
            slow = sum(len(lines) for taken in first for _, _, lines in taken[3])
            assert 8192 <= slow < 8192 + native.VLEN * len(packet)  # one read past the limit at most
            read = [sum(taken[5] for taken in first)]

            def all_read() -> bool:  # taking frees the receiver: it reads the rest
                read[0] += sum(taken[5] for taken in intake.take())
                return read[0] == 200

            wait_until(all_read, what="every datagram, once the batches are taken")
        finally:
            intake.stop()


def test_a_reload_keeps_the_hot_path_and_says_when_it_changes(start_daemon) -> None:
    d = start_daemon(hotPath="native")
    d.write_config({**d.config, "hotPath": "python", "percentThreshold": [95]})
    d.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in d.logs(), what="the reload")
    assert "hotPath: python takes effect at the next restart" in d.logs()
    assert "\nhot_path: native\n" in d.console("stats")
    d.send(b"after:1|c")
    wait_until(lambda: "after: 1" in d.console("counters"), what="intake after the reload")
