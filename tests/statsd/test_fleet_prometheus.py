"""A fleet of three webops statsd daemons ("hosts") scraped by a real Prometheus (Debian's).

What a fleet's owner reads off Prometheus must add up: counter totals summed across instances
equal what was sent, a daemon restart is a counter reset Prometheus accounts for (less what was
flushed after its last scrape), a fleet-wide p99 comes from summed histogram buckets, and the
scrape itself is clean (every target up, nothing Prometheus rejects). The figures of
docs/fleet.md come from here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.conftest import wait_until
from tests.servers import Prometheus
from tests.statsd.conftest import Daemon

FLUSH_MS = 500  # several flushes per test, and more than one between two scrapes (1 s)


class Fleet(NamedTuple):
    hosts: list[Daemon]
    prometheus: Prometheus

    def instance(self, d: Daemon) -> str:
        return f"127.0.0.1:{d.http_port}"

    def by_instance(self, expr: str) -> dict[str, float]:
        """An instant query's values by their `instance` label."""
        return {dict(labels)["instance"]: v for labels, v in self.prometheus.query(expr).items()}

    def per_host(self, values: list[float]) -> dict[str, float]:
        return {self.instance(d): v for d, v in zip(self.hosts, values, strict=True)}


@pytest.fixture
def start_fleet(start_daemon, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """Three daemons with `config`, then a Prometheus scraping their /metrics every second;
    returns once Prometheus has scraped every one of them."""
    started: list[Prometheus] = []

    def start(**config: Any) -> Fleet:
        hosts = [start_daemon(flushInterval=FLUSH_MS, **config) for _ in range(3)]
        prometheus = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{d.http_port}" for d in hosts])
        started.append(prometheus)
        fleet = Fleet(hosts, prometheus)
        # Prometheus hands new targets to its scrapers every 5 s: the first scrape comes then
        wait_until(
            lambda: fleet.by_instance("up") == fleet.per_host([1, 1, 1]),
            timeout=30,
            what="Prometheus to scrape all three daemons",
            detail=prometheus.log_tail,
        )
        return fleet

    yield start
    for p in started:
        p.stop()


def flushed(d: Daemon, kind: str, key: str, field: str | None = None) -> list[float]:
    """What each of the daemon's flushes (its file backend) held for `key`, in order."""
    values = [f[kind].get(key, 0) for f in d.flushes()]
    return [v.get(field, 0) if isinstance(v, dict) else v for v in values] if field else values


def test_counter_gauge_and_set_sums_across_the_fleet_are_exact(start_fleet) -> None:
    fleet = start_fleet()
    p = fleet.prometheus
    # per host, per round (one or more flushes apart): counter amounts, one of them sampled
    rounds = [[5, 7, 11], [100, 1, 2], [0, 40, 3]]
    sent = []
    for d, amounts in zip(fleet.hosts, rounds, strict=True):
        total = 0
        for amount in amounts:
            d.send(f"fleet.requests:{amount}|c\nfleet.requests:1|c|@0.25".encode())
            total += amount + 4  # 1 sampled at 0.25 counts 4
            wait_until(
                lambda d=d, total=total: sum(flushed(d, "counters", "fleet.requests")) == total,
                what="the round's flush",
            )
        sent.append(total)
    for d, value in zip(fleet.hosts, [10, 20, 30], strict=True):
        d.send(f"fleet.queue:{value}|g".encode())
    fleet.hosts[0].send(b"fleet.queue:+3|g")
    fleet.hosts[2].send(b"fleet.queue:-7|g")

    wait_until(
        lambda: (
            fleet.by_instance("sum by (instance) (fleet_requests_total)") == fleet.per_host(sent)
            and fleet.by_instance("fleet_queue") == fleet.per_host([13, 20, 23])
        ),
        timeout=20,
        what="Prometheus to scrape every host's final totals",
        detail=lambda: str(p.query('{__name__=~"fleet_.*"}')),
    )
    assert p.query("sum(fleet_requests_total)") == {(): sum(sent)}
    assert p.query("sum(fleet_queue)") == {(): 13 + 20 + 23}

    # A set's size is the last flush's count of distinct members, per host: summed across
    # hosts it counts a member seen on two hosts twice, and the fleet's distinct count is lost.
    members = [{"u1", "u2", "u3"}, {"u2", "u3", "u4", "u5"}, {"u5"}]

    def sizes_scraped() -> bool:
        for d, names in zip(fleet.hosts, members, strict=True):  # again each flush until scraped
            d.send("\n".join(f"fleet.users:{m}|s" for m in sorted(names)).encode())
        return fleet.by_instance("max_over_time(fleet_users[1m])") == fleet.per_host(
            [len(m) for m in members]
        )

    wait_until(sizes_scraped, timeout=20, what="Prometheus to scrape each host's set size")
    assert p.query("sum(max_over_time(fleet_users[1m]))") == {(): 8}
    assert len(set().union(*members)) == 5


def exact_increase(values: list[float]) -> tuple[float, int]:
    """A counter's increase over raw samples of a series that starts at zero, as Prometheus
    reads resets (a drop means the counter restarted from zero), without extrapolation; and the
    number of resets."""
    total, resets, previous = 0.0, 0, 0.0
    for value in values:
        if value < previous:
            total, resets = total + value, resets + 1
        else:
            total += value - previous
        previous = value
    return total, resets


@pytest.mark.parametrize("state_file", [False, True], ids=["no_state_file", "state_file"])
def test_a_restart_is_a_counter_reset_that_loses_only_what_was_flushed_after_the_last_scrape(
    start_fleet, start_daemon, state_file: bool
) -> None:
    """Without `prometheus.stateFile`, a restart is a counter reset that loses what was flushed
    after Prometheus' last scrape; with it, the new process goes on from the old one's final
    flush: nothing lost, no reset."""
    # relative: in each daemon's own directory (one daemon per file)
    fleet = start_fleet(**({"prometheus": {"stateFile": "prometheus.json"}} if state_file else {}))
    p = fleet.prometheus
    hosts = list(fleet.hosts)
    old = hosts[1]
    key, selector = "fleet.restarts;az=b", f'{{__name__=~"fleet_.*", instance="{fleet.instance(old)}"}}'
    stop = threading.Event()

    def traffic() -> None:  # 1 count per host every 5 ms, through the restart
        while not stop.wait(0.005):
            for d in list(hosts):
                d.send(b"fleet.restarts:1|c|#az:b")

    # far above what the new process's first scrape shows, so that Prometheus sees a drop
    old.send(b"fleet.restarts:2000|c|#az:b")
    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        wait_until(
            lambda: [len(s) >= 3 for s in p.samples("fleet_restarts_total").values()] == [True] * 3,
            timeout=20,
            what="three scrapes of the counter on every host",
        )
        series_before = p.api("series", **{"match[]": selector})
        # The last counts the old process reads come after its last flush: its final flush, at
        # SIGTERM, gives them to its backends, but /metrics is closed by then.
        last_words = 777
        old.send(f"fleet.restarts:{last_words}|c|#az:b".encode())
        assert old.stop() == 0
        # the same ports (the same target for Prometheus), its own flush file
        config = {k: v for k, v in old.config.items() if k != "file"}
        if state_file:  # the old process's file
            config["prometheus"] = {"stateFile": str(old.tmp / "prometheus.json")}
        hosts[1] = new = start_daemon(**config)
        wait_until(lambda: sum(flushed(new, "counters", key)) >= 200, what="traffic to the new process")
    finally:
        stop.set()
        sender.join()
    flushes = [len(d.flushes()) for d in hosts]  # two flushes later, each holds all it read
    wait_until(
        lambda: all(len(d.flushes()) >= n + 2 for d, n in zip(hosts, flushes, strict=True)),
        what="two more flushes",
    )
    totals = [sum(flushed(d, "counters", key)) for d in hosts]
    old_flushes = flushed(old, "counters", key)
    exposed = list(totals)
    if state_file:  # the new process's totals go on from the old one's final flush
        exposed[1] += sum(old_flushes)
    wait_until(
        lambda: fleet.by_instance("fleet_restarts_total") == fleet.per_host(exposed),
        timeout=20,
        what="Prometheus to scrape every host's final total",
        detail=lambda: f"{fleet.by_instance('fleet_restarts_total')} != {exposed}",
    )

    # The same series go on: no new name, no new label set, on the restarted instance.
    assert sorted(map(str, p.api("series", **{"match[]": selector}))) == sorted(map(str, series_before))
    resets = 0 if state_file else 1
    assert fleet.by_instance("resets(fleet_restarts_total[10m])") == fleet.per_host([0, resets, 0])
    scraped = {dict(k)["instance"]: [v for _, v in s] for k, s in p.samples("fleet_restarts_total").items()}
    for d, total in zip(hosts, totals, strict=True):  # never stopped: every count is in Prometheus
        if d is not new:
            assert exact_increase(scraped[fleet.instance(d)]) == (total, 0)

    values = scraped[fleet.instance(new)]
    prefix = [sum(old_flushes[: i + 1]) for i in range(len(old_flushes))]
    if state_file:
        # every count of both processes, the old one's final flush included, is in Prometheus
        assert exact_increase(values) == (sum(old_flushes) + totals[1], 0)
        last_before, lost = max(v for v in values if v <= sum(old_flushes)), 0.0
    else:
        # The restarted host: the old process's last scraped total, then the new one's from zero.
        last_before = values[next(i for i in range(1, len(values)) if values[i] < values[i - 1]) - 1]
        assert exact_increase(values) == (last_before + totals[1], 1)
        # What was scraped is the sum of the old process's first flushes; the ones after it, its
        # final one (at SIGTERM) included, reached its backends but not Prometheus.
        lost = sum(old_flushes) - last_before
        assert lost >= last_words
    assert last_before in prefix
    # increase() extrapolates, and cannot count a series' first sample (it knows no start at 0)
    extrapolated = fleet.per_host(
        [fleet.by_instance("increase(fleet_restarts_total[10m])")[fleet.instance(d)] for d in hosts]
    )
    print(
        f"restarted host: flushed {sum(old_flushes):.0f} before the stop ({len(old_flushes)} "
        f"flushes, {len(old_flushes) - prefix.index(last_before) - 1} after the last scrape, the "
        f"final one {old_flushes[-1]:.0f}), last scraped {last_before:.0f}, lost to Prometheus "
        f"{lost:.0f}; after: {totals[1]:.0f}; exact increase {exact_increase(values)[0]:.0f}; "
        f"first samples {[scraped[fleet.instance(d)][0] for d in hosts]}, flushed totals {totals}, "
        f"increase() {[round(v, 1) for v in extrapolated.values()]}, state file {state_file}"
    )


BUCKETS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000]  # ms


def nearest_rank(values: list[float], q: float) -> float:
    return sorted(values)[math.ceil(q * len(values)) - 1]


def bucket_of(value: float) -> tuple[float, float]:
    """The (lower, upper] bounds of the histogram bucket that holds `value`."""
    upper = next(b for b in BUCKETS if value <= b)
    return float(([0, *BUCKETS])[BUCKETS.index(upper)]), float(upper)


def test_fleet_p99_from_summed_histogram_buckets(start_fleet) -> None:
    fleet = start_fleet(prometheus={"timers": "histogram", "buckets": BUCKETS})
    p = fleet.prometheus
    # three distributions: fast, medium, and a host whose 10 % tail is the fleet's 1 %
    sent = [
        [float(i % 40 + 1) for i in range(2000)],
        [float(20 + i % 181) for i in range(1000)],
        [float(50 + i % 91) for i in range(450)] + [float(1500 + 10 * i) for i in range(50)],
    ]
    for d, values in zip(fleet.hosts, sent, strict=True):
        lines = [f"fleet.latency:{v:g}|ms" for v in values]
        for i in range(0, len(lines), 100):
            d.send("\n".join(lines[i : i + 100]).encode())
    wait_until(
        lambda: fleet.by_instance("fleet_latency_count") == fleet.per_host([len(v) for v in sent]),
        timeout=20,
        what="Prometheus to scrape every timer value",
        detail=lambda: str(p.query('{__name__=~"fleet_latency.*"}')),
    )
    le = {float(dict(k)["le"]) for k in p.query("fleet_latency_bucket")}
    assert le == {*map(float, BUCKETS), math.inf}

    everything = [v for values in sent for v in values]
    true_p99 = nearest_rank(everything, 0.99)
    lower, upper = bucket_of(true_p99)
    fleet_p99 = p.query("histogram_quantile(0.99, sum by (le) (fleet_latency_bucket))")[()]
    assert lower <= fleet_p99 <= upper, (true_p99, fleet_p99)
    # the pitfall: the mean of each host's p99 is not the fleet's p99 (not even its bucket)
    per_host = fleet.by_instance("histogram_quantile(0.99, sum by (instance, le) (fleet_latency_bucket))")
    mean_of_p99s = sum(per_host.values()) / 3
    assert not lower <= mean_of_p99s <= upper, (mean_of_p99s, lower, upper)
    print(
        f"true p99 {true_p99}, fleet histogram_quantile {fleet_p99:.1f}, mean of host p99s {mean_of_p99s:.1f}"
    )


def test_every_target_is_up_and_its_exposition_clean(start_fleet) -> None:
    fleet = start_fleet(percentThreshold=[90, 99])
    p = fleet.prometheus
    # the awkward parts of the surface: tags, a tag named as Prometheus' own target label, names
    # that meet (timer and gauge `fleet.x`; `fleet.get-user` beside `fleet.get_user`)
    for d in fleet.hosts:
        d.send(
            b"fleet.hits:1|c|#env:prod,instance:web1\nfleet.x:5|ms\nfleet.x:3|g\n"
            b"fleet.get-user:1|c\nfleet.get_user:2|c\nfleet.seen:a|s"
        )
    names = {"fleet_hits_total", "fleet_x", "fleet_x_sum", "fleet_x_count", "fleet_x_gauge"}
    names |= {"fleet_get_user_total", "fleet_seen"}

    def stored() -> set[tuple[str, str]]:  # every series scraped so far (an idle timer's
        # quantiles leave /metrics after its flush, and an instant query then misses them)
        return {
            (s["__name__"], s["instance"]) for s in p.api("series", **{"match[]": '{__name__=~"fleet_.*"}'})
        }

    def all_stored() -> bool:
        # A summary's quantiles are the last flush's: with no new values, the next flush drops
        # them, and a scrape between two flushes may never see them. Send until each is seen.
        for d in fleet.hosts:
            d.send(b"fleet.x:5|ms")
        return stored() == {(n, fleet.instance(d)) for n in names for d in fleet.hosts}

    wait_until(
        all_stored,
        timeout=20,
        what="Prometheus to store every family from every host",
        detail=lambda: str(sorted(stored())),
    )
    # a tag named `instance` does not replace the target's: Prometheus keeps it as exported_instance
    hits = {
        tuple(sorted((k, v) for k, v in labels if k != "__name__")) for labels in p.query("fleet_hits_total")
    }
    assert hits == {
        (("env", "prod"), ("exported_instance", "web1"), ("instance", fleet.instance(d)), ("job", "statsd"))
        for d in fleet.hosts
    }
    assert len(p.query("fleet_get_user_total")) == 6  # two per host, told apart by statsd_name

    assert fleet.by_instance("up") == fleet.per_host([1, 1, 1])
    for target in p.api("targets")["activeTargets"]:
        assert (target["health"], target["lastError"]) == ("up", ""), target
    assert fleet.by_instance("scrape_samples_scraped - scrape_samples_post_metric_relabeling") == (
        fleet.per_host([0, 0, 0])
    )
    own = p.own()
    for rejected in (
        "prometheus_target_scrapes_sample_duplicate_timestamp_total",
        "prometheus_target_scrapes_sample_out_of_order_total",
        "prometheus_target_scrapes_sample_out_of_bounds_total",
        "prometheus_target_scrapes_exceeded_sample_limit_total",
        "prometheus_target_scrapes_exemplar_out_of_order_total",
    ):
        assert own[rejected] == 0, rejected
    log = p.log_tail(1_000_000)
    assert "level=warn" not in log and "level=error" not in log, log
