"""The console against its narrow view of the daemon (ConsoleSource), without sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

from webops.statsd import settings as statsd_config
from webops.statsd.admin import Console
from webops.statsd.aggregate import Aggregator


@dataclass
class Source:
    startup_time: float = 1000.0
    health: str = "up"
    aggregator: Aggregator = field(default_factory=Aggregator)
    config: statsd_config.StatsdConfig = field(default_factory=lambda: statsd_config.build({}))
    readers_ok: bool = True
    hot_path: str = "python"

    def kernel_drops(self) -> int:
        return 7

    def health_state(self) -> str:
        return self.health if self.readers_ok else "down (reader processes: 1 of 2 running)"

    def backend_status(self) -> list[tuple[str, dict[str, float]]]:
        return [("graphite", {"last_flush": 1040, "datapoints_dropped": 3})]


def test_stats_health_and_tables_through_the_narrow_view() -> None:
    source = Source()
    source.aggregator.ingest(b"a:1|c\n_e{1,1}:t|x\nbad", now=1030)
    console = Console(source, clock=lambda: 1042.0)
    stats, _ = console.execute("stats")
    assert stats.startswith("uptime: 42\nmessages.last_msg_seen: 12\nmessages.bad_lines_seen: 1\n")
    own = ["metrics_refused: 0", "set_members_refused: 0", "events_seen: 1", "lines_shed: 0", "series: 1"]
    assert "".join(f"statsd.{line}\n" for line in own) in stats
    assert "statsd.udp_kernel_drops: 7\n" in stats
    assert "graphite.last_flush: 2\ngraphite.datapoints_dropped: 3\nEND\n\n" in stats
    assert console.execute("health down") == ("health: down\n", False)
    source.health, source.readers_ok = "up", False
    assert console.execute("health")[0] == "health: down (reader processes: 1 of 2 running)\n"
    assert console.execute("delcounters a")[0] == "deleted: a\nEND\n\n"


def test_a_line_of_http_closes_the_connection_and_runs_nothing() -> None:
    source = Source()
    source.aggregator.ingest(b"a:1|c", now=1030)
    console = Console(source)
    for line in ("POST / HTTP/1.1", "GET /health HTTP/1.0", "Host: 127.0.0.1:8126", "PUT /x"):
        assert console.execute(line) == ("", True)
    assert console.http_refused == 4
    assert "statsd.console_http_refused: 4\n" in console.execute("stats")[0]
    assert source.health == "up" and "a" in source.aggregator.counters
