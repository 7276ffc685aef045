"""A fleet on this machine with Debian's real engines: three webops statsd daemons as three hosts
(each with its own `globalPrefix`, `stats.hostN`, so no two write the same series), flushing every
second through a relay (carbon-c-relay's `carbon_ch` or graphite-carbon's carbon-relay) to three
carbon-caches. Counters, a gauge and timers with known totals go in over TCP (nothing lost before
the daemons); the caches' whisper files, read directly and through graphite-web, must hold every
count exactly once, each name on the one cache carbon's consistent hashing picks, across a cache,
the relay and a daemon restarted while traffic flows. Then the aggregation tier: three daemons
repeating to one central webops, whose p99 is the fleet's true p99."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, wait_until
from tests.fleet import INSTANCES, CarbonCRelay, CarbonRelay, Relay, carbon_placement
from tests.graphite_web import get
from tests.servers import Carbon
from tests.statsd.conftest import Daemon

HOSTS = 3
COUNTERS = 50
BINS: list[float | str] = [100, 250, 500, 900, 990, "inf"]
WINDOW = 900  # seconds of 1 s datapoints kept by the caches: the whole module runs well inside it


def etsy_p99(values: list[float]) -> float:
    """Etsy's upper_99: the value at Math.round(0.99 * n) in the sorted values (1-based)."""
    ordered = sorted(values)
    return ordered[int(0.99 * len(ordered) + 0.5) - 1]


def tcp_send(port: int, lines: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall("".join(line + "\n" for line in lines).encode())


def host_config(tcp_port: int, **extra: Any) -> dict[str, Any]:
    return {
        "flushInterval": 1000,
        "servers": [{"server": "./servers/tcp", "address": "127.0.0.1", "port": tcp_port}],
        "deleteCounters": True,  # an idle counter sends nothing, rather than zeros, every second
        "percentThreshold": [99],
        "histogram": [{"metric": "api", "bins": BINS}],
        **extra,
    }


class Fleet:
    """The running topology and a ledger of everything sent to it."""

    def __init__(self, root: Path, kind: str) -> None:
        self.root = root
        self.caches = [Carbon(root / f"cache_{i}", retention=f"1s:{WINDOW}s").start() for i in INSTANCES]
        relay_class: type[Relay] = CarbonCRelay if kind == "carbon-c-relay" else CarbonRelay
        self.relay = relay_class(root / "relay", self.caches).start()
        if isinstance(self.relay, CarbonRelay):  # carbon-relay takes pickle, cheaper for it to parse
            to_relay = {"graphiteProtocol": "pickle", "graphitePicklePort": self.relay.pickle_port}
        else:
            to_relay = {"graphitePort": self.relay.port}
        self.configs = [
            host_config(
                free_port(),
                backends=["./backends/graphite", "./backends/file"],  # file: each flush, as JSON
                graphiteHost="127.0.0.1",
                graphite={"legacyNamespace": False, "globalPrefix": f"stats.host{h}"},
                **to_relay,
            )
            for h in range(HOSTS)
        ]
        self.runs = Counter[int]()
        self.hosts = [self.start_host(h) for h in range(HOSTS)]
        self.sent = Counter[str]()  # whisper name -> total sent
        self.timer_values: dict[str, list[float]] = {}  # phase -> every value, all hosts
        self.lock = threading.Lock()

    def start_host(self, h: int) -> Daemon:
        self.runs[h] += 1
        workdir = self.root / f"host{h}_run{self.runs[h]}"
        workdir.mkdir()
        self.configs[h]["file"] = {"path": str(workdir / "flush.jsonl"), "format": "json"}
        return Daemon(workdir, self.configs[h])

    def send_round(self, phase: str, r: int, hosts: range = range(HOSTS)) -> None:
        """Round `r` of `phase` to each host: every counter once (increments 1 to 7, by name and
        host), a gauge, and 20 api timings spread over 0-999 ms."""
        for h in hosts:
            counts = {f"fleet.{phase}.c{k:02d}": 1 + (k + h + r) % 7 for k in range(COUNTERS)}
            timings = [float((r * 389 + h * 151 + j * 53) % 1000) for j in range(20)]
            lines = [f"{name}:{n}|c" for name, n in counts.items()]
            lines += [f"fleet.{phase}.api:{v:g}|ms" for v in timings]
            lines.append(f"fleet.{phase}.level:{r}|g")
            tcp_send(self.configs[h]["servers"][0]["port"], lines)
            with self.lock:
                for name, n in counts.items():
                    self.sent[f"stats.host{h}.counters.{name}.count"] += n
                self.sent[f"stats.host{h}.timers.fleet.{phase}.api.count"] += len(timings)
                self.timer_values.setdefault(phase, []).extend(timings)

    def stored(self, name: str) -> dict[str, float]:
        """{instance: the sum of every datapoint of `name` in that cache's whisper file}."""
        out = {}
        for cache, instance in zip(self.caches, INSTANCES, strict=True):
            points = cache.values(name, 0, 2**31)
            if points or (cache.whisper_dir / (name.replace(".", "/") + ".wsp")).exists():
                out[instance] = sum(points.values())
        return out

    def wrong_totals(self, phase: str) -> dict[str, tuple[float, dict[str, float]]]:
        """The names of `phase` whose stored total is not what was sent (sent, stored by cache)."""
        wrong = {}
        for name, total in self.sent.items():
            if f".fleet.{phase}." in name:
                where = self.stored(name)
                if sum(where.values()) != total:
                    wrong[name] = (total, where)
        return wrong

    def assert_exact(self, phase: str, timeout: float = 60) -> None:
        """Every count of `phase` stored exactly once (sent twice would show as too many)."""
        wait_until(
            lambda: not self.wrong_totals(phase),
            timeout=timeout,
            what=f"every count of {phase} in the caches",
            detail=lambda: (
                f"{dict(list(self.wrong_totals(phase).items())[:5])}; relay: {self.relay.log_tail()}"
            ),
        )

    def all_flushed(self, phase: str) -> bool:
        """Whether every count of `phase` sent to a host is in its flushes (its file backend's)."""
        for h, d in enumerate(self.hosts):
            flushed = sum(
                n for r in d.flushes() for k, n in r["counters"].items() if k.startswith(f"fleet.{phase}.")
            )
            sent = sum(
                n for k, n in self.sent.items() if k.startswith(f"stats.host{h}.counters.fleet.{phase}.")
            )
            if flushed != sent:
                return False
        return True

    def unstored_flushes(self, phase: str) -> dict[str, list[int]]:
        """{name: the timestamps of the flushes of `phase` (by the hosts' file backends) whose
        count is not the one in the caches}: which datapoints are missing, not only how many."""
        out: dict[str, list[int]] = {}
        for h, d in enumerate(self.hosts):
            flushed: dict[str, dict[int, float]] = {}
            for record in d.flushes():
                for key, n in record["counters"].items():
                    if key.startswith(f"fleet.{phase}.") and n:
                        flushed.setdefault(f"stats.host{h}.counters.{key}.count", {})[record["timestamp"]] = n
            for name, points in flushed.items():
                stored: dict[int, float] = {}
                for cache in self.caches:
                    stored.update(cache.values(name, 0, 2**31))
                if wrong := sorted(ts for ts, n in points.items() if stored.get(ts) != n):
                    out[name] = wrong
        return out

    def placement(self) -> dict[str, list[str]]:
        """{name: the instances whose whisper files hold it} for every name the daemons wrote."""
        out: dict[str, list[str]] = {}
        for cache, instance in zip(self.caches, INSTANCES, strict=True):
            for wsp in (cache.whisper_dir / "stats").rglob("*.wsp"):
                name = ".".join(wsp.relative_to(cache.whisper_dir).with_suffix("").parts)
                out.setdefault(name, []).append(instance)
        return out

    def stop(self) -> None:
        for d in self.hosts:
            d.stop()
        self.relay.stop()
        for c in self.caches:
            c.stop()


@pytest.fixture(scope="module", params=["carbon-c-relay", "carbon-relay"])
def fleet(request, tmp_path_factory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp(request.param), request.param)
    try:
        yield f
    finally:
        f.stop()


class Traffic:
    """Rounds of `phase` sent every 0.1 s from a thread, for the length of a `with` block."""

    def __init__(self, fleet: Fleet, phase: str) -> None:
        self.fleet, self.phase, self.rounds = fleet, phase, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.fleet.send_round(self.phase, self.rounds)
            self.rounds += 1

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def test_every_count_is_stored_once_on_the_cache_carbon_hashing_picks(
    fleet: Fleet, start_graphite_web
) -> None:
    for r in range(5):
        fleet.send_round("base", r)
    fleet.assert_exact("base")

    # each name on exactly one cache, and the one graphite-carbon's own ConsistentHashRing picks
    where = fleet.placement()
    ring = carbon_placement(sorted(where))
    assert {n: i for n, i in where.items() if i != [ring[n]]} == {}
    assert len(set(ring.values())) == 3  # the names are spread: each cache holds some

    # through graphite-web over the three caches: the fleet total is sumSeries over the hosts, and
    # the api timings' histogram bins summed over the hosts place the fleet p99 in the right bin
    dirs = ", ".join(f'"{c.whisper_dir}"' for c in fleet.caches)
    carbonlink = ", ".join(
        f'"127.0.0.1:{c.query_port}:{i}"' for c, i in zip(fleet.caches, INSTANCES, strict=True)
    )
    port = start_graphite_web(
        fleet.caches[0].whisper_dir, f"STANDARD_DIRS = [{dirs}]\nCARBONLINK_HOSTS = [{carbonlink}]\n"
    )

    def totals(target: str) -> dict[str, float]:
        got = get(port, "/render", target=target, format="json", **{"from": f"-{WINDOW}s"})
        return {s["target"]: sum(p[0] for p in s["datapoints"] if p[0] is not None) for s in got}  # type: ignore[union-attr,index]

    fleet_total = sum(fleet.sent[f"stats.host{h}.counters.fleet.base.c07.count"] for h in range(HOSTS))
    assert totals("sumSeries(stats.host*.counters.fleet.base.c07.count)") == {
        "sumSeries(stats.host*.counters.fleet.base.c07.count)": fleet_total
    }
    bins = totals('groupByNode(stats.host*.timers.fleet.base.api.histogram.*, 7, "sumSeries")')
    values = fleet.timer_values["base"]
    assert sum(bins.values()) == len(values)  # the last bin is `inf`: every value is in a bin
    needed, seen = int(0.99 * len(values) + 0.5), 0
    lower = 0.0
    for bound in BINS:
        seen += bins[f"bin_{bound}"]
        if seen >= needed:
            break
        lower = float(bound)
    assert lower <= etsy_p99(values) < float(bound), (bins, etsy_p99(values))


def test_a_cache_restarted_while_traffic_flows_loses_only_what_it_had_not_written(fleet: Fleet) -> None:
    """While a cache is down the relay queues its share and delivers all of it on its return. What
    a carbon-cache (1.1.7) loses is its own: at SIGTERM its writer thread ends after its 1 s sleep
    without writing what arrived meanwhile, and what the relay had written into the closing
    socket goes too; nobody is told (the relay's round succeeded, so webops sends nothing again).
    Those are the only datapoints missing: of names on that cache, flushed just before the stop."""
    cache = fleet.caches[1]
    with Traffic(fleet, "cache") as traffic:
        wait_until(lambda: traffic.rounds >= 5, what="traffic before the stop")
        stopped_at = time.time()
        cache.stop()
        sent_while_down = traffic.rounds
        wait_until(lambda: traffic.rounds >= sent_while_down + 20, what="traffic while the cache is down")
        cache.start()
        wait_until(lambda: traffic.rounds >= sent_while_down + 40, what="traffic after the restart")
    wait_until(lambda: fleet.all_flushed("cache"), what="the hosts to flush every count they were sent")
    ring = carbon_placement(sorted(n for n in fleet.sent if ".fleet.cache." in n))

    def lost_elsewhere() -> dict[str, list[int]]:
        """What is missing besides the restarted cache's last second: must come to nothing."""
        return {
            name: late
            for name, stamps in fleet.unstored_flushes("cache").items()
            if (
                late := [
                    ts for ts in stamps if ring[name] != "b" or not stopped_at - 3 <= ts <= stopped_at + 1
                ]
            )
        }

    wait_until(
        lambda: not lost_elsewhere(),
        timeout=60,
        what="every flush but the cache's last second",
        detail=lambda: str(lost_elsewhere()),
    )


def test_a_relay_restarted_while_a_cache_is_down_loses_no_count(fleet: Fleet) -> None:
    """Both relays hold what a down cache should get in memory only (carbon-c-relay's queue,
    carbon-relay's per-destination queue): restarted meanwhile, they lose it. The daemons' rounds
    fail while the relay is away, so each sends again what the relay confirmed in the last 60 s."""
    cache = fleet.caches[1]
    with Traffic(fleet, "relay") as traffic:
        wait_until(lambda: traffic.rounds >= 5, what="traffic before the stop")
        cache.stop()
        wait_until(lambda: traffic.rounds >= 20, what="traffic queued in the relay for the cache")
        fleet.relay.stop()  # what it queued for the cache is gone with it
        down_at = traffic.rounds
        wait_until(lambda: traffic.rounds >= down_at + 15, what="traffic while the relay is down")
        fleet.relay.start()
        wait_until(lambda: traffic.rounds >= down_at + 25, what="traffic after the relay's restart")
        cache.start()
        wait_until(lambda: traffic.rounds >= down_at + 35, what="traffic after the cache's restart")
    fleet.assert_exact("relay")
    resent = [int(d.console("stats").split("datapoints_resent: ")[1].split()[0]) for d in fleet.hosts]
    assert all(resent), resent  # the daemons did send again (the restart is what this exercises)


def test_a_daemon_restarted_loses_no_count(fleet: Fleet) -> None:
    for r in range(3):
        fleet.send_round("daemon", r)
    old = fleet.hosts[1]
    lines = 3 * (COUNTERS + 20 + 1)
    wait_until(lambda: old.total("metrics_received") >= lines, what="host1 to read what it was sent")
    old.signal(signal.SIGTERM)  # its final flush carries what it has not flushed yet
    assert old.proc.wait(60) == 0
    old.log.close()
    fleet.hosts[1] = fleet.start_host(1)
    for r in range(3, 6):
        fleet.send_round("daemon", r)
    fleet.assert_exact("daemon")


def test_a_central_webops_behind_repeaters_computes_the_fleet_p99(tmp_path: Path, start_daemon) -> None:
    """The aggregation tier: three daemons repeat every packet over TCP to one central daemon,
    which alone writes to carbon. Its counts are the fleet's, and its upper_99 is the p99 of every
    value sent to any host (Etsy's rule over all of them), which no mean of per-host p99s gives.
    The central flushes once, at SIGTERM (its interval is an hour), so all values are in one
    flush whatever the timing."""
    carbon = Carbon(tmp_path / "carbon", retention=f"1s:{WINDOW}s").start()
    try:
        central_port = free_port()
        central = start_daemon(
            servers=[{"server": "./servers/tcp", "address": "127.0.0.1", "port": central_port}],
            backends=["./backends/graphite"],
            graphiteHost="127.0.0.1",
            graphitePort=carbon.port,
            percentThreshold=[99],
        )
        local_ports = [free_port() for _ in range(HOSTS)]
        for port in local_ports:
            start_daemon(
                **host_config(
                    port,
                    backends=["./backends/repeater"],
                    repeater=[{"host": "127.0.0.1", "port": central_port}],
                    repeaterProtocol="tcp",
                )
            )
        # hosts with different loads and latencies: 500 fast, 300 middling and 200 slow values
        values = {0: [float(v % 50) for v in range(500)], 1: [float(100 + v) for v in range(300)]}
        values[2] = [float(1000 + 7 * v) for v in range(200)]
        sent = Counter[str]()
        for h, port in enumerate(local_ports):
            lines = [f"fleet.api:{v:g}|ms" for v in values[h]]
            for k in range(COUNTERS):
                lines.append(f"fleet.c{k:02d}:{1 + (k + h) % 7}|c")
                sent[f"stats_counts.fleet.c{k:02d}"] += 1 + (k + h) % 7
            tcp_send(port, lines)
        every = [v for h in range(HOSTS) for v in values[h]]
        wait_until(
            lambda: central.total("metrics_received") == len(every) + HOSTS * COUNTERS,
            what="every line at the central daemon",
            detail=lambda: central.console("stats"),
        )
        central.signal(signal.SIGTERM)
        assert central.proc.wait(60) == 0

        def stored(name: str) -> list[float]:
            return list(carbon.values(name, 0, 2**31).values())

        def wrong() -> dict[str, tuple[float, list[float]]]:
            return {n: (total, stored(n)) for n, total in sent.items() if sum(stored(n)) != total}

        wait_until(
            lambda: not wrong(), timeout=60, what="the fleet's counts in carbon", detail=lambda: str(wrong())
        )
        assert stored("stats.timers.fleet.api.count") == [len(every)]
        assert stored("stats.timers.fleet.api.upper_99") == [etsy_p99(every)]
        per_host_mean = sum(etsy_p99(values[h]) for h in range(HOSTS)) / HOSTS
        assert per_host_mean != etsy_p99(every)  # what averaging the hosts' p99s would have said
    finally:
        carbon.stop()
