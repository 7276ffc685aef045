"""A real graphite-web (Debian's 1.1.8) with CLUSTER_SERVERS pointing at two webops daemons, each
with its own store and its own series: one query through graphite-web answers from both, as it
federates other graphite-webs (its RemoteFinder asks /metrics/find/?local=1&format=pickle, its
RemoteReader /render/?format=pickle&local=1&noCache=1&from=&until=&now=)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import wait_until
from tests.graphite_web import get


def test_graphite_web_federates_two_webops_daemons(start_daemon, start_graphite_web, tmp_path: Path) -> None:
    daemons = []
    for i, (host, cpu) in enumerate((("east", 3), ("west", 5))):
        d = start_daemon(backends=["store"], store={"dir": str(tmp_path / f"data{i}")}, flushInterval=1000)
        d.send(f"fed.{host}.cpu:{cpu}|g\nfed.{host}.only_{host}:1|g".encode())
        daemons.append(d)

    def stored(d, host: str) -> bool:
        got = get(d.http_port, "/render", target=f"stats.gauges.fed.{host}.cpu", **{"from": "-5min"})
        return any(p[0] is not None for s in got for p in s["datapoints"])  # type: ignore[union-attr,index]

    for d, host in zip(daemons, ("east", "west"), strict=True):
        wait_until(lambda d=d, host=host: stored(d, host), what=f"{host}'s gauge in its store")

    servers = ", ".join(f'"127.0.0.1:{d.http_port}"' for d in daemons)
    port = start_graphite_web(
        tmp_path / "no-whisper",
        f"CLUSTER_SERVERS = [{servers}]\nREMOTE_RETRY_DELAY = 0\nFIND_CACHE_DURATION = 0\n"
        "DEFAULT_CACHE_DURATION = 0\n",
    )

    def through_graphite_web(target: str) -> dict[str, list]:
        got = get(port, "/render", target=target, format="json", **{"from": "-5min"})
        return {s["target"]: [p[0] for p in s["datapoints"] if p[0] is not None] for s in got}  # type: ignore[union-attr,index]

    # a wildcard across both daemons: each series from the daemon that has it
    both = wait_until(
        lambda: (r := through_graphite_web("stats.gauges.fed.*.cpu")) and len(r) == 2 and r,
        what="both daemons' series through graphite-web",
    )
    assert sorted(both) == ["stats.gauges.fed.east.cpu", "stats.gauges.fed.west.cpu"]
    assert set(both["stats.gauges.fed.east.cpu"]) == {3.0} and set(both["stats.gauges.fed.west.cpu"]) == {5.0}
    # graphite-web's own functions over the federated series
    summed = through_graphite_web("sumSeries(stats.gauges.fed.*.cpu)")
    assert (
        list(summed) == ["sumSeries(stats.gauges.fed.*.cpu)"]
        and 8.0 in summed["sumSeries(stats.gauges.fed.*.cpu)"]
    )
    # and its tree: each daemon's own branches, under one root
    found = get(port, "/metrics/find", query="stats.gauges.fed.*.*")
    assert sorted(n["text"] for n in found) == ["cpu", "only_east", "only_west"]  # type: ignore[union-attr,index]
    expanded = get(port, "/metrics/expand", query="stats.gauges.fed.*")
    assert expanded == {"results": ["stats.gauges.fed.east", "stats.gauges.fed.west"]}
