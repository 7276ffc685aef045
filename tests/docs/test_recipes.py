"""The recipes' skeletons (docs/recipes/skeletons/) run for real: each is loaded by its path,
registered the way a module in the package would be (undone after the test, so the registries
other tests see are the shipped ones), and driven through the real code: the backend gets the
flushes of an in-process daemon, the kind parses, merges across a reader batch, summarizes and
reaches every output, the listener is bound by the daemon and fed over loopback."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests.conftest import free_port
from webops.statsd import admin, aggregate, backends, config, hotpath, kinds, listeners, protocol, settings
from webops.statsd import snapshot as snapshot_module
from webops.statsd.aggregate import Aggregator, BatchAggregator
from webops.statsd.backends import base, console, file, graphite, naming
from webops.statsd.prometheus import PROMETHEUS, PrometheusView
from webops.statsd.server import StatsdDaemon
from webops.statsd.validate import Key, string

SKELETONS = Path(__file__).parent.parent.parent / "docs" / "recipes" / "skeletons"


def load(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    """Import docs/recipes/skeletons/<name>.py as a module (registering whatever it registers)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", SKELETONS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def rewire(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the package computes once, at import, from the registries (the kinds' tables, the
    backends' keys, the wired schema), computed again from them as they are now."""
    found = tuple(sorted(kinds._REGISTERED, key=lambda k: k.order))
    by_code = {code: k for k in found for code in k.codes}
    by_table = {k.table: k for k in found}
    kind_keys = {name: key for k in found for name, key in k.config_keys().items()}
    for module, name, value in [
        (kinds, "KINDS", found),
        (kinds, "BY_TABLE", by_table),
        (kinds, "BY_CODE", by_code),
        (kinds, "CONFIG_KEYS", kind_keys),
        (aggregate, "KINDS", found),
        (aggregate, "BY_CODE", by_code),
        (snapshot_module, "KINDS", found),
        (protocol, "BY_CODE", by_code),
        (admin, "BY_TABLE", by_table),
    ]:
        monkeypatch.setattr(module, name, value)
    tables = ", ".join(by_table)
    dels = ", ".join("del" + t for t in by_table)
    monkeypatch.setattr(admin, "HELP", f"Commands: stats, {tables}, {dels}, health, config, quit\n\n")
    backend_keys = {k: v for cls in base.REGISTRY.values() for k, v in cls.CONFIG_KEYS.items()}
    backend_sections = {k: v for cls in base.REGISTRY.values() for k, v in cls.SECTIONS.items()}
    schema = config.assemble(
        {"port": listeners.CONFIG_KEYS, "readers": hotpath.CONFIG_KEYS}, kind_keys, backend_keys
    )
    sections = {**config.SECTIONS, **backend_sections}
    wired = config.Schema(schema, sections, tuple(base.REGISTRY), tuple(k.delete_key() for k in found))
    monkeypatch.setattr(backends, "CONFIG_KEYS", backend_keys)
    monkeypatch.setattr(backends, "SECTIONS", backend_sections)
    monkeypatch.setattr(settings, "SCHEMA", schema)
    monkeypatch.setattr(settings, "SECTIONS", sections)
    monkeypatch.setattr(settings, "WIRED", wired)


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Registries a skeleton may register into, restored after the test."""
    monkeypatch.setattr(kinds, "_REGISTERED", list(kinds._REGISTERED))
    monkeypatch.setattr(kinds, "_UNSHOWN", set())
    shipped = dict(base.REGISTRY)  # one dict, imported by name in backends/ and routes.py
    yield monkeypatch
    base.REGISTRY.clear()
    base.REGISTRY.update(shipped)


@pytest.fixture
def daemon_logging() -> Iterator[None]:
    """An in-process daemon sets up the `webops` logger (its handler, propagate=False): put it
    back, so caplog in later tests still sees the daemon's records."""
    logger = logging.getLogger("webops")
    saved = (list(logger.handlers), logger.propagate, logger.level, getattr(logger, "_webops_handler", None))
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]
    logger._webops_handler = saved[3]  # type: ignore[attr-defined]


async def until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """wait_until for code on the daemon's own event loop: poll, yielding to the loop between."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
    return result


def run_daemon(cfg: settings.Config, scenario: Callable[[StatsdDaemon], Awaitable[None]]) -> StatsdDaemon:
    """The real daemon on this thread's event loop (its signal handlers need the main thread):
    `scenario` runs once it is up, then it stops as on SIGTERM (drain, final flush, backends
    closed) and is returned stopped."""

    async def main() -> StatsdDaemon:
        daemon = StatsdDaemon(cfg)
        task = asyncio.create_task(daemon.run())
        try:
            await until(lambda: task.done() or daemon.mgmt is not None, "the daemon to start")
            if task.done():
                task.result()  # raises what stopped it
            await scenario(daemon)
        finally:
            daemon.stop()
            await task
        return daemon

    return asyncio.run(main())


def base_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Free loopback ports, no HTTP, UDP read in this process (python) or by one native receiver
    thread: no reader process, which would import the package without the test's registrations."""
    return {
        "port": free_port(),
        "mgmt_port": free_port(),
        "http": False,
        "readers": 0,
        "flushInterval": 3_600_000,  # the only flush is the shutdown's
        "automaticConfigReload": False,
        **extra,
    }


def send(port: int, *packets: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for packet in packets:
            s.sendto(packet, ("127.0.0.1", port))


# --- the backend ---------------------------------------------------------------------------


def test_backend_skeleton_gets_the_daemons_flush(registries, daemon_logging, tmp_path: Path) -> None:
    skeleton = load(registries, "example_backend")
    rewire(registries)
    assert base.REGISTRY["tsv"] is skeleton.TsvBackend
    out = tmp_path / "out.tsv"
    cfg = settings.build(
        base_config(tmp_path, backends=["./backends/tsv"], tsv={"path": str(out)}, flush_counts=True)
    )
    assert cfg.backends == ["tsv"] and cfg.section("tsv") == {"path": str(out), "fsync": False}

    async def scenario(daemon: StatsdDaemon) -> None:
        send(cfg["port"], b"hits:3|c\nhits:4|c", b"load:2.5|g", b"nonsense")
        await until(lambda: daemon.aggregator.totals.metrics_received >= 4, "the lines to be aggregated")

    daemon = run_daemon(cfg, scenario)
    lines = [line.split("\t") for line in out.read_text().splitlines()]
    values = {path: value for _, path, value in lines}
    assert values["stats_counts.hits"] == "7"  # the shutdown flush: nothing received is lost
    assert values["stats.gauges.load"] == "2.5"
    assert values["stats_counts.statsd.bad_lines_seen"] == "1"  # hostile input: counted
    assert {ts for ts, _, _ in lines} == {lines[0][0]} and lines[0][0].isdigit()
    ((name, status),) = daemon.backend_status()
    assert name == "tsv" and status["lines_written"] == len(lines) and status["flushes_dropped"] == 0


def test_backend_skeleton_keys_are_checked_and_documented(registries) -> None:
    load(registries, "example_backend")
    rewire(registries)
    with pytest.raises(settings.ConfigError, match="tsv: fsync: expected true or false, got 'maybe'"):
        settings.build({"backends": ["tsv"], "tsv": {"fsync": "maybe"}})
    assert settings.backend_name("./backends/Tsv") == "tsv"
    assert "tsv" in settings.SCHEMA and "fsync" in settings.SECTIONS["tsv"]


def test_backend_skeleton_path_that_cannot_be_opened_stops_the_start(
    registries, daemon_logging, tmp_path: Path
) -> None:
    load(registries, "example_backend")
    rewire(registries)
    cfg = settings.build(
        base_config(tmp_path, backends=["tsv"], tsv={"path": str(tmp_path / "missing" / "out.tsv")})
    )

    async def never(daemon: StatsdDaemon) -> None:
        raise AssertionError("the daemon started")

    with pytest.raises(settings.ConfigError, match="No such file or directory"):
        run_daemon(cfg, never)


# --- the metric kind ----------------------------------------------------------------------


@pytest.fixture
def maxima(registries) -> ModuleType:
    """The kind registered and the outputs' entries added (GRAPHITE's prefixMaximum key too,
    which graphite.py derives from GRAPHITE at import)."""
    skeleton = load(registries, "example_kind")
    rewire(registries)
    entries = load(registries, "example_kind_outputs").ENTRIES
    tables = {
        "GRAPHITE": naming.GRAPHITE,
        "PROMETHEUS": PROMETHEUS,
        "LIVE": console.LIVE,
        "CONSOLE": console.CONSOLE,
        "JSON_FIELDS": file.JSON_FIELDS,
    }
    assert set(entries) == set(tables)
    for name, entry in entries.items():
        registries.setitem(tables[name], "maxima", entry)
    registries.setitem(graphite.GRAPHITE_KEYS, "prefixMaximum", Key("maxima", string, "maximum prefix"))
    return skeleton


def test_kind_skeleton_parses_merges_and_summarizes(maxima: ModuleType) -> None:
    assert kinds.BY_CODE["mx"] is maxima.Maxima and kinds.KINDS[-1] is maxima.Maxima
    cfg = settings.build({"maximaIdle": -1})
    assert cfg.aggregation().options["maximaIdle"] == -1 and cfg["deleteMaxima"] is False
    with pytest.raises(settings.ConfigError, match="maximaIdle: expected a number"):
        settings.build({"maximaIdle": "high"})
    main, reader = Aggregator(cfg.aggregation()), BatchAggregator(cfg.aggregation())
    main.ingest(b"peak:3|mx\nlow:-5|mx\nidle:1|mx\npeak:x|mx")
    reader.ingest(b"peak:7|mx|@0.1\npeak:2|mx\nlow:-9|mx")
    main.merge(reader.take_batch())
    assert main.table("maxima") == {"peak": 7, "low": -5, "idle": 1}
    assert main.totals.bad_lines_seen == 1  # `x` is counted, not fatal
    first = snapshot_module.summarize(main.take(1700000000), cfg.summary())
    assert first.summaries["maxima"] == {"peak": 7, "low": -5, "idle": 1}
    main.ingest(b"peak:4|mx")
    second = snapshot_module.summarize(main.take(1700000010), cfg.summary())
    assert second.summaries["maxima"] == {"peak": 4, "low": -1, "idle": -1}  # idle: maximaIdle
    merged = snapshot_module.merge(first, second)  # the store catching up, the shutdown flush
    assert merged.summaries["maxima"] == {"peak": 7, "low": -5, "idle": 1}
    forgetting = Aggregator(settings.build({"deleteMaxima": True}).aggregation())
    forgetting.ingest(b"peak:3|mx")
    forgetting.take(1)
    assert forgetting.table("maxima") == {}


def test_kind_skeleton_reaches_every_output(maxima: ModuleType, tmp_path: Path) -> None:
    cfg = settings.build(
        {"graphite": {"legacyNamespace": False}, "file": {"path": str(tmp_path / "f"), "format": "json"}}
    )
    agg = Aggregator(cfg.aggregation())
    agg.ingest(b"peak:3|mx\npeak:7|mx\ngone:1|mx")
    mgmt = admin.Console(SimpleNamespace(aggregator=agg))  # the management console's commands
    assert "maxima, " in mgmt.execute("help")[0] and "delmaxima" in mgmt.execute("help")[0]
    assert mgmt.execute("delmaxima gone")[0] == "deleted: gone\nEND\n\n"
    assert mgmt.execute("maxima")[0] == "{ peak: 7 }\nEND\n\n"
    snap = snapshot_module.summarize(agg.take(1700000000), cfg.summary())
    assert "stats.maxima.peak 7 1700000000\n" in naming.GraphiteNaming(cfg).plaintext(snap)
    assert ("stats.maxima.peak", 7, "max") in list(naming.GraphiteNaming(cfg).points(snap))
    out = io.StringIO()
    console.ConsoleBackend(cfg, 0, stream=out).flush(snap)
    assert "maxima: { peak: 7 }" in out.getvalue()
    record = json.loads(file.FileBackend(cfg, 0).render(snap))
    assert record["maxima"] == {"peak": 7}
    view = PrometheusView()
    view.update(snap)
    view.refresh()
    assert "# TYPE peak gauge\npeak 7\n" in view.render()


# --- the listener --------------------------------------------------------------------------


@pytest.fixture
def reuseport(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    skeleton = load(monkeypatch, "example_listener")
    monkeypatch.setitem(listeners.SERVERS, skeleton.NAME, skeleton.UDP_REUSEPORT)
    return skeleton


def test_listener_skeleton_feeds_the_aggregator(reuseport, daemon_logging, tmp_path: Path) -> None:
    port = free_port()
    flushes = tmp_path / "flush.jsonl"
    cfg = settings.build(
        base_config(
            tmp_path,
            servers=[{"server": "./servers/udp_reuseport", "port": port}],
            backends=["file"],
            file={"path": str(flushes), "format": "json"},
        )
    )
    (spec,) = cfg.listeners
    assert spec.kind == "udp_reuseport" and spec.server is reuseport.UDP_REUSEPORT

    async def scenario(daemon: StatsdDaemon) -> None:
        assert list(daemon.sockets.bound().values()) == [spec]
        send(port, b"reuse.hits:5|c\n:|c", b"reuse.hits:1|c")
        await until(
            lambda: daemon.aggregator.totals.metrics_received >= 3, "the datagrams to reach aggregation"
        )
        assert daemon.aggregator.totals.bad_lines_seen == 1
        # what the listener is for: another process may bind the port while the daemon holds it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            other.bind(("127.0.0.1", port))

    run_daemon(cfg, scenario)
    (flush,) = [json.loads(line) for line in flushes.read_text().splitlines()]
    assert flush["counters"]["reuse.hits"] == 6  # read, aggregated and flushed at shutdown


def test_listener_skeleton_name_is_only_accepted_once_registered(reuseport, monkeypatch) -> None:
    conf = {"servers": [{"server": "./servers/udp_reuseport", "port": 9999}]}
    assert settings.build(conf).listeners[0].kind == "udp_reuseport"
    monkeypatch.delitem(listeners.SERVERS, "udp_reuseport")
    with pytest.raises(settings.ConfigError, match=r"expected one of \./servers/udp, \./servers/tcp, got"):
        settings.build(conf)
