"""The real daemon under hostile traffic, floods, dying readers and bad reloads (issue 12)."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import free_port, wait_until
from tests.statsd.conftest import under_1024_descriptors

READERS = pytest.mark.parametrize("readers", [0, 2], ids=["in-process", "2-readers"])
HUGE_HEX = b"0x" + b"f" * 300


@READERS
def test_packets_that_used_to_kill_a_reader_cost_one_line(start_daemon, readers: int) -> None:
    d = start_daemon(readers=readers)
    hostile = [b"x:" + HUGE_HEX + b"|c", b"y:1|c|@" + HUGE_HEX, b"p:" + b":" * 65_000] * 3
    d.send(*hostile, b"good:1|c\nx:" + HUGE_HEX + b"|c\ngood:1|c")
    wait_until(lambda: d.total() == 10, what="all ten packets")
    assert "good: 2" in d.console("counters")
    assert d.total("bad_lines_seen") == 10
    assert "died" not in d.logs() and "Traceback" not in d.logs()


def test_a_hostile_tcp_line_is_counted_once(start_daemon) -> None:
    port = free_port()
    d = start_daemon(servers=[{"server": "./servers/tcp", "port": port}])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"a:1|c\nx:" + HUGE_HEX + b"|c\nb:1|c\n")
        wait_until(lambda: d.total("metrics_received") == 3, what="three lines")
        s.sendall(b"a:1|c\n")
        wait_until(lambda: d.total("metrics_received") == 4, what="the fourth line")
    counters = d.console("counters")
    assert "a: 2" in counters and "b: 1" in counters


def test_a_killed_reader_is_replaced_and_health_says_so_meanwhile(start_daemon) -> None:
    d = start_daemon(readers=2, hotPath="python")  # reader processes
    wait_until(lambda: len(d.children()) == 2, what="two reader processes")
    victim = min(d.children())
    os.kill(victim, signal.SIGKILL)
    seen_down = wait_until(lambda: d.http("/health")[0] == 503, timeout=10, what="/health to say down")
    assert seen_down
    assert "reader processes: 1 of 2" in d.console("health", until=b"\n")
    wait_until(lambda: d.http("/health")[0] == 200, timeout=60, what="/health to be up again")
    assert victim not in d.children() and len(d.children()) == 2
    assert "died (exit code -9); starting a replacement" in d.logs()
    assert "statsd_reader_restarts 1" in d.http("/metrics")[1]
    d.send(*[b"after:1|c"] * 50)
    wait_until(lambda: "after: 50" in d.console("counters"), what="intake after the restart")


def test_a_fast_tcp_client_does_not_freeze_the_console(start_daemon) -> None:
    port = free_port()
    d = start_daemon(servers=[{"server": "./servers/tcp", "port": port}], readers=0)
    stop = threading.Event()
    chunk = b"flood:1|c\n" * 10_000

    def flood() -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            for _ in range(5_000):  # at most 500 MB, stopped long before
                if stop.is_set():
                    return
                s.sendall(chunk)

    sender = threading.Thread(target=flood)
    sender.start()
    try:
        wait_until(lambda: d.total() > 0, what="the flood to arrive")
        for _ in range(3):  # while the flood goes on, the console answers
            assert d.console("health", until=b"\n") == "health: up\n"
        assert sender.is_alive(), "the flood ended before the console was asked"
    finally:
        stop.set()
        sender.join()


def test_a_connection_flood_under_1024_descriptors(start_daemon) -> None:
    port = free_port()
    d = start_daemon(
        _popen=under_1024_descriptors(),
        servers=[{"server": "./servers/tcp", "port": port}],
        tcpIdleTimeout=2,
        mgmtIdleTimeout=2,
    )
    conns = []
    try:
        for i in range(1100):
            conns.append(socket.create_connection(("127.0.0.1", port if i % 2 else d.mgmt_port)))
        wait_until(lambda: d.http("/health") == (200, "health: up\n"), what="/health during the flood")
        logs = d.logs()
        assert "Traceback" not in logs
        assert len(logs.splitlines()) < 40  # refusals are counted, logged at a bounded rate
        # idle connections are closed by the daemon
        for c in conns[:10]:
            c.settimeout(30)
            assert c.recv(10) == b""
    finally:
        for c in conns:
            c.close()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"still:1|c\n")
        wait_until(lambda: "still: 1" in d.console("counters"), what="the daemon to still count")


def test_max_series_refuses_new_series_counts_and_says_so(start_daemon) -> None:
    d = start_daemon(maxSeries=50, flushInterval=300)
    d.send(*[b"series%d:1|c" % i for i in range(100)])
    wait_until(
        lambda: d.summed("counters", "statsd.metrics_refused") >= 50,
        what="refusals in a flush",
        detail=lambda: d.console("counters") + d.logs(),
    )
    assert "maxSeries (50) reached" in d.logs()
    counters = d.console("counters")
    assert counters.count("  series") == 50  # the first fifty kept, and they go on counting
    kept = next(line.split(":")[0].strip() for line in counters.splitlines() if line.startswith("  series"))
    d.send(b"%s:7|c" % kept.encode())
    wait_until(lambda: f"{kept}: 7" in d.console("counters"), what="an existing series to go on")


def console_table(d, table: str) -> dict[str, str]:
    """A table as the console shows it ({ name: value, 'dotted.name': value }), values as text."""
    return dict(re.findall(r"'?([\w.;=-]+)'?: ([^,{}\n]+?)(?:,|\s*})", d.console(table)))


def test_at_max_series_held_series_go_on_and_only_new_ones_are_refused(start_daemon) -> None:
    """The daemon holds maxSeries series; datagrams bring new names, then the held ones. Every
    held update counts and only the new names are refused (issue 26: batches counted their own
    series against maxSeries, so the held names behind the new ones were refused too)."""
    d = start_daemon(maxSeries=20)
    held = b"\n".join(b"held%d:1|c" % i for i in range(20))
    d.send(held)
    wait_until(lambda: d.total("metrics_received") == 20, what="the held series")
    for r in range(5):
        d.send(b"\n".join(b"new%d_%d:1|c" % (r, i) for i in range(20)) + b"\n" + held)

    def counted() -> bool:
        counters = console_table(d, "counters")
        return all(counters.get(f"held{i}") == "6" for i in range(20))

    wait_until(counted, what="every update of the held series", detail=lambda: d.console("counters"))
    wait_until(lambda: d.total("metrics_refused") == 100, what="each new name refused once")
    assert not any(k.startswith("new") for k in console_table(d, "counters"))
    assert d.total("metrics_received") == 220


def test_a_set_keeps_max_set_members_and_counts_the_rest(start_daemon) -> None:
    """One set fed unique ids must not take the daemon's memory (issue 26): past maxSetMembers
    new members are refused and counted, in the batch that brings them or as it is merged."""
    d = start_daemon(maxSetMembers=5)  # no flush: the cap is per interval
    d.send(b"\n".join(b"users:m%d|s" % i for i in range(10)))  # one batch: it refuses m5..m9
    wait_until(lambda: d.total("set_members_refused") == 5, what="5 members refused")
    d.send(b"users:m3|s\nusers:m10|s")  # the next batch: m10 is refused as it is merged
    wait_until(lambda: d.total("set_members_refused") == 6, what="the 6th refused")
    assert re.findall(r"'(m\d+)'", d.console("sets")) == ["m0", "m1", "m2", "m3", "m4"]


def test_set_members_refused_are_said_after_the_flush(start_daemon) -> None:
    d = start_daemon(maxSetMembers=5, flushInterval=200)
    d.send(b"\n".join(b"users:m%d|s" % i for i in range(10)))
    wait_until(lambda: "maxSetMembers (5) reached: 5 new members" in d.logs(), what="the refusals in the log")
    flushed = wait_until(lambda: [f for f in d.flushes() if f["sets"].get("users")], what="the flush")
    assert flushed[0]["sets"]["users"] == 5  # a full set counts the limit


def test_reload_to_busy_ports_keeps_the_running_listeners(start_daemon) -> None:
    d = start_daemon()
    busy_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy_udp.bind(("127.0.0.1", 0))
    busy_tcp = socket.socket()
    busy_tcp.bind(("127.0.0.1", 0))
    busy_tcp.listen()
    try:
        d.write_config(
            {**d.config, "port": busy_udp.getsockname()[1], "mgmt_port": busy_tcp.getsockname()[1]}
        )
        d.signal(signal.SIGHUP)
        wait_until(lambda: d.logs().count("keeping the running one") == 2, what="both failures said")
        assert "configuration reloaded" not in d.logs()
        d.send(b"kept:1|c")  # the old UDP port still listens
        wait_until(lambda: "kept: 1" in d.console("counters"), what="the old port and console to work")
    finally:
        busy_udp.close()
        busy_tcp.close()


def test_reload_restarts_readers_only_when_their_settings_change(start_daemon) -> None:
    d = start_daemon(readers=2, hotPath="python")  # reader processes
    wait_until(lambda: len(d.children()) == 2, what="two readers")
    before = d.children()
    d.write_config({**d.config, "percentThreshold": [95]})
    d.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in d.logs(), what="the reload")
    assert d.children() == before
    seen: list[tuple[int, int]] = []  # (readers, /health) sampled through the switch: no gap
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.append((len(d.children()), d.http("/health")[0]))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        d.write_config({**d.config, "readers": 3})
        d.signal(signal.SIGHUP)
        wait_until(lambda: d.logs().count("configuration reloaded") == 2, what="the second reload")
    finally:
        done.set()
        sampler.join()
    assert seen and all(readers >= 2 and health == 200 for readers, health in seen), seen
    wait_until(lambda: len(d.children()) == 3 and not d.children() & before, what="three new readers")
    d.send(*[b"r:1|c"] * 30)
    wait_until(lambda: "r: 30" in d.console("counters"), what="intake through the new readers")


def _umask_zero() -> None:
    os.umask(0)


def test_sockets_and_state_files_are_private_from_the_start(start_daemon, tmp_path) -> None:
    private, shared = str(tmp_path / "p.sock"), str(tmp_path / "g.sock")
    state = tmp_path / "gauges.json"
    d = start_daemon(
        _popen={"preexec_fn": _umask_zero},
        servers=[
            {"server": "./servers/tcp", "socket": private},
            {"server": "./servers/tcp", "socket": shared, "socket_mod": 0o660},
        ],
        persistGauges=str(state),
        flushInterval=200,
    )
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o660
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(private)
        s.sendall(b"g:1|g\n")
    wait_until(state.exists, what="the gauges file")
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".statsd-")]
    d.stop()


def test_socket_activation_keeps_what_was_sent_before_the_daemon_started(start_daemon) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(20):
            s.sendto(b"early:1|c", ("127.0.0.1", port))
    wrapper = 'exec 3<&"$FD"; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"'
    d = start_daemon(
        _popen={
            "prefix": ["bash", "-c", wrapper, "bash"],
            "pass_fds": (sock.fileno(),),
            "env": {**os.environ, "FD": str(sock.fileno())},
        },
        port=port,
    )
    sock.close()
    wait_until(lambda: "early: 20" in d.console("counters"), what="the packets sent before the start")
    assert "socket activation" in d.logs()


def test_dump_messages_cannot_forge_a_log_line(start_daemon) -> None:
    d = start_daemon(dumpMessages=True)
    d.send(b"a:1|c\n01 Jan 00:00:00 - ERROR - forged\x1b[2J")
    wait_until(lambda: "forged" in d.logs(), what="the dumped packet")
    line = next(x for x in d.logs().splitlines() if "forged" in x)
    assert "a:1|c\\n01 Jan" in line and "\\x1b[2J" in line
    assert not any(x.startswith("01 Jan 00:00:00 - ERROR") for x in d.logs().splitlines())


def test_bad_spool_files_are_set_aside_and_never_unpickled(tmp_path, caplog) -> None:
    import pickle

    from webops.statsd import settings as statsd_config
    from webops.statsd.backends.graphite import GraphiteBackend

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    spool = tmp_path / "spool"
    spool.write_bytes(pickle.dumps({"protocol": "text", "chunks": [Exploit()]}))
    cfg = statsd_config.build(
        {"graphiteHost": "127.0.0.1", "graphitePort": free_port(), "graphiteSpoolFile": str(spool)}
    )
    backend = GraphiteBackend(cfg, 0)
    backend.close()
    assert not marker.exists()
    assert not spool.exists() and [p for p in os.listdir(tmp_path) if p.startswith("spool.bad-")]
    assert "is not usable" in caplog.text


def test_hostile_lines_fuzzed_through_the_real_daemon(start_daemon) -> None:
    """Random bytes and mutated statsd lines over UDP: the daemon keeps counting good lines."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    d = start_daemon(readers=2)
    sent = {"n": 0}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.binary(max_size=2048) | st.text("x:|@#0123456789abcdefxXoObBe.+-gcmsh\n").map(str.encode))
    def fuzz(packet: bytes) -> None:
        if packet:
            d.send(packet)
            sent["n"] += 1

    fuzz()
    d.send(b"canary:1|c")
    wait_until(lambda: "canary: 1" in d.console("counters"), what="the canary after the fuzzing")
    wait_until(lambda: d.total() == sent["n"] + 1, what="every fuzzed packet counted")
    assert "died" not in d.logs() and d.proc.poll() is None


if sys.platform != "linux":  # /proc, SO_RCVBUFFORCE, unix sockets as used here
    pytestmark = pytest.mark.skip("Linux only")
_ = subprocess


def test_ready_is_notified_once_intake_works(start_daemon, tmp_path) -> None:
    """systemd's Type=notify: READY=1 only when every reader reads, STOPPING=1 on SIGTERM."""
    notify_path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(60)
    try:
        env = {**os.environ, "NOTIFY_SOCKET": notify_path}
        d = start_daemon(readers=2, hotPath="python", _popen={"env": env})
        assert listener.recv(100) == b"READY=1"
        assert d.http("/health") == (200, "health: up\n") and len(d.children()) == 2
        d.send(b"at.once:1|c")
        wait_until(lambda: "'at.once': 1" in d.console("counters"), what="the packet sent at READY")
        d.signal(signal.SIGTERM)
        assert listener.recv(100) == b"STOPPING=1"
    finally:
        listener.close()


@pytest.mark.parametrize("hot_path", ["native", "python"])
def test_what_the_kernel_drops_while_intake_is_behind_is_counted_and_said(
    start_daemon, hot_path: str
) -> None:
    """A stopped daemon (as good as a very slow one) with a tiny receive buffer: the kernel drops
    most of what is sent meanwhile; every datagram is then either received or counted dropped."""
    d = start_daemon(hotPath=hot_path, readers=0, rcvbuf=4096)
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        d.send(*[b"behind:1|c"] * 300)
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    drops = wait_until(lambda: d.total("udp_kernel_drops"), what="the drops to be counted")
    wait_until(lambda: d.total() + drops == 300, what="every datagram received or counted dropped")
    assert f"statsd_udp_kernel_drops_total {drops}" in d.http("/metrics")[1]
    assert f"behind: {300 - drops}\n" in d.console("counters")


def test_a_browser_post_to_the_console_runs_nothing(start_daemon) -> None:
    """What a web page can make an operator's browser send to 127.0.0.1:8126 (a form posted as
    text/plain): the body would be console commands, and none of them may run."""
    import http.client

    d = start_daemon()
    d.send(b"kept:1|c")
    wait_until(lambda: "kept: 1" in d.console("counters"), what="the counter")
    conn = http.client.HTTPConnection("127.0.0.1", d.mgmt_port, timeout=5)
    body = b"health down\ndelcounters *\nquit\n"
    try:
        conn.request("POST", "/", body=body, headers={"Content-Type": "text/plain"})
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            conn.getresponse().read()  # closed without a reply: no HTTP answer, no command run
    finally:
        conn.close()
    assert d.console("health", until=b"\n") == "health: up\n"
    assert "kept: 1" in d.console("counters")
    wait_until(lambda: "statsd.console_http_refused: 1\n" in d.console("stats"), what="the refusal counted")
    assert "closing a connection that sent HTTP ('POST / HTTP/1.1')" in d.logs()


def test_a_python_reader_behind_on_slow_lines_sheds_them_and_keeps_every_good_line(start_daemon) -> None:
    """A burst the reader cannot parse in time (about 2 s of bad lines for the Python parser),
    sent at once: once the reader knows what such lines cost it (the first datagram, parsed), the
    reads that find the burst waiting are behind, so the reader sheds their bad lines instead of
    parsing them, and every good line sent in between is counted. The burst fits in the socket
    buffer: the kernel drops nothing."""
    d = start_daemon(readers=1, hotPath="python", rcvbuf=8 << 20)
    flood = b"x\n" * 32_000  # 64,000 bytes: 32,000 bad lines a datagram
    d.send(flood)
    wait_until(lambda: d.total() == 1, what="the first datagram parsed")
    d.send(*[b"good:1|c", flood] * 49, b"good:1|c")  # 3.1 MB
    wait_until(lambda: d.total() == 100, what="the whole burst read", timeout=60)
    assert d.total("udp_kernel_drops") == 0
    wait_until(lambda: "good: 50" in d.console("counters"), what="every good line")
    assert d.total("lines_shed") > 0
    assert d.total("lines_shed") + d.total("bad_lines_seen") == 50 * 32_000


def test_a_flood_of_slow_lines_stalls_neither_console_health_nor_flushes(start_daemon) -> None:
    """Datagrams full of lines the native fast path leaves to Python (bad lines here): the event
    loop parses them a slice at a time, sheds what waits past its limit, and answers meanwhile.
    On the Python path the reader processes take the cost; the main process answers the same."""
    d = start_daemon(flushInterval=500)
    native = "hot_path: native" in d.console("stats")
    flood = b"x\n" * 32_000  # 64,000 bytes: 32,000 bad lines a datagram
    datagrams = 300 if native else 40  # native: ~19 MB, tens of seconds of Python parsing
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(datagrams // 20):  # paced by what the daemon read: the kernel drops nothing
            for _ in range(20):
                s.sendto(flood, ("127.0.0.1", d.port))
            s.sendto(b"good:1|c", ("127.0.0.1", d.port))
            sent += 21
            wait_until(lambda n=sent: d.total() >= n, what="the daemon to read the burst", timeout=60)
    flushes = len(d.flushes())
    for _ in range(5):  # while the slow lines wait, every probe is answered (5 s socket timeout)
        assert d.console("health", until=b"\n") == "health: up\n"
        assert d.http("/health") == (200, "health: up\n")
    wait_until(lambda: len(d.flushes()) >= flushes + 2, what="flushes to go on during the flood")
    wait_until(lambda: d.summed("counters", "good") == datagrams // 20, what="every good line")
    if native:
        assert d.total("lines_shed") > 0
        wait_until(
            lambda: d.total("lines_shed") + d.total("bad_lines_seen") == datagrams * 32_000,
            what="every slow line parsed or shed",
            timeout=60,
        )
        assert "shed unparsed" in d.logs()


def test_sigterm_during_a_flood_that_goes_on_stops_readers_without_killing_them(start_daemon) -> None:
    """A sender that does not stop at SIGTERM: a reader drains for a bounded time and hands its
    batch over, instead of draining until the main process kills it and its batch with it."""
    d = start_daemon(hotPath="python", readers=1)
    stop = threading.Event()
    flood = b"good.in:1|c\n" + b"x\n" * 30_000

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:  # bounded by time
                s.sendto(flood, ("127.0.0.1", d.port))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_until(lambda: d.total() > 10, what="the flood to arrive", timeout=30)
        d.signal(signal.SIGTERM)
        assert d.proc.wait(timeout=30) == 0
    finally:
        stop.set()
        sender.join()
    assert "did not stop; killing it" not in d.logs()
    assert d.summed("counters", "good.in") > 10  # what the reader held reached the final flush


def test_idle_console_connections_cannot_lock_an_operator_out(start_daemon) -> None:
    """A local user holding every console slot, each sending a byte now and then: the one quiet
    the longest makes room, so the operator's new session is answered."""
    d = start_daemon(mgmtMaxConnections=5)
    held = [socket.create_connection(("127.0.0.1", d.mgmt_port)) for _ in range(5)]
    try:
        for s in held:
            s.sendall(b"\n")  # active, not idle: the idle timeout would not close them
        wait_until(lambda: d.console("health", until=b"\n") == "health: up\n", what="the operator's session")
        assert "statsd.console_evicted: 1\n" in d.console("stats")
        closed = wait_until(lambda: select.select(held, [], [], 0)[0], what="a held connection closed")
        assert len(closed) == 1  # the quietest one, and only it
    finally:
        for s in held:
            s.close()
