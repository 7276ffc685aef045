"""The real daemon over real sockets: listeners, console, flushes, signals."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, has_ipv6, need, wait_until

READERS = pytest.mark.parametrize("readers", [0, 2], ids=["in-process", "2-readers"])


@READERS
def test_udp_metrics_reach_the_console_and_the_flush(start_daemon, readers: int) -> None:
    d = start_daemon(flushInterval=300, readers=readers)
    d.send(b"foo:1|c", b"foo:2|c|@0.5\nglork:320|ms", b"gaugor:5|g\ngaugor:+3|g", b"uniq:a|s\nuniq:b|s")
    wait_until(lambda: d.total("metrics_received") == 7, what="7 metrics received")
    wait_until(lambda: d.summed("counters", "foo") == 5, what="foo=5 in a flush")
    flushes = d.flushes()
    assert any(f["gauges"].get("gaugor") == 8 for f in flushes)
    assert any(f["sets"].get("uniq") == 2 for f in flushes)
    assert any(f["timer_data"].get("glork", {}).get("upper_90") == 320 for f in flushes)


def test_tcp_unix_and_udp_listeners_together(start_daemon, tmp_path) -> None:
    port = free_port()
    sock_path = str(tmp_path / "statsd.sock")
    d = start_daemon(
        servers=[
            {"server": "./servers/udp", "port": port},
            {"server": "./servers/tcp", "port": port},
            {"server": "./servers/tcp", "socket": sock_path, "socket_mod": 0o660},
        ]
    )
    d.send(b"via.udp:1|c", port=port)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"via.tcp:1|c\nvia.tcp:2|c\nvia.tcp:")  # the last line arrives in two pieces
        s.sendall(b"4|c\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sock_path)
        s.sendall(b"via.unix:7|c")  # no newline: the line still counts when the client closes

    def all_arrived() -> bool:
        c = d.console("counters")
        return "'via.unix': 7" in c and "'via.tcp': 7" in c and "'via.udp': 1" in c

    wait_until(all_arrived, what="udp, tcp and unix counters")


def test_ipv6_listener(start_daemon) -> None:
    need(has_ipv6(), "IPv6 loopback (::1) is not available")
    port = free_port(socket.AF_INET6, "::1")
    d = start_daemon(servers=[{"address": "::1", "address_ipv6": True, "port": port}])
    d.send(b"v6:3|c", host="::1", port=port)
    wait_until(lambda: "v6: 3" in d.console("counters"), what="counter sent over IPv6")


def test_console_commands_keep_etsy_reply_layout(start_daemon) -> None:
    d = start_daemon()
    d.send(b"a.b.c:1|c\na.b.d:2|c\nt:5|ms\ng:1|g\ns:x|s")
    wait_until(lambda: d.total("metrics_received") == 5, what="5 metrics")
    assert d.console("help", until=b"\n\n").startswith("Commands: stats, counters, timers, gauges")
    assert d.console("health", until=b"\n") == "health: up\n"
    assert d.console("health down", until=b"\n") == "health: down\n"
    assert d.console("health", until=b"\n") == "health: down\n"
    assert d.console("health up", until=b"\n") == "health: up\n"
    stats = d.console("stats")
    assert (
        stats.startswith("uptime: ") and "messages.bad_lines_seen: 0\n" in stats and stats.endswith("END\n\n")
    )
    assert "file.last_flush: " in stats
    assert d.console("timers") == "{ t: [ 5 ] }\nEND\n\n"
    assert d.console("gauges") == "{ g: 1 }\nEND\n\n"
    assert d.console("sets") == "{ s: [ 'x' ] }\nEND\n\n"
    reply = d.console("delcounters a.b.* nothere")
    assert reply == "deleted: a.b.c\ndeleted: a.b.d\nmetric nothere not found\nEND\n\n"
    assert d.console("deltimers t") == "deleted: t\nEND\n\n"
    assert d.console("delgauges g") == "deleted: g\nEND\n\n"
    assert d.console("delsets s") == "deleted: s\nEND\n\n"
    assert "'a.b.c'" not in d.console("counters")
    assert d.console("bogus", until=b"\n") == "ERROR\n"
    config = config_reply(d.mgmt_port)  # Etsy's config reply has no END: read until quit closes
    assert config.startswith("\n")
    assert f"mgmt_port: {d.mgmt_port}\n" in config
    assert "backends > 0: ./backends/file\n" in config


@READERS
def test_bad_packets_are_counted_and_logged_with_a_rate_limit(start_daemon, readers: int) -> None:
    d = start_daemon(readers=readers)
    d.send(*[b"garbage line %d" % i for i in range(50)], b"\x00\xff\xfe|||:::", b"ok:1|c")
    wait_until(lambda: d.total("packets_received") == 52, what="52 packets")
    assert d.total("bad_lines_seen") == 53  # 50 lines, plus 3 empty values after the :::
    assert "ok: 1" in d.console("counters")
    assert d.logs().count("bad line:") == 5  # the rest is summed up once the minute is over
    assert d.proc.poll() is None


@READERS
def test_sigterm_drains_and_flushes_everything_accepted(start_daemon, readers: int) -> None:
    d = start_daemon(flushInterval=3_600_000, readers=readers)  # no periodic flush: only the final one
    tcp = socket.create_connection(("127.0.0.1", d.mgmt_port))  # a console client left open
    n = 2000
    d.send(*[b"drain:1|c\ndrain.t:%d|ms" % i for i in range(n)])
    d.signal(signal.SIGTERM)
    assert d.proc.wait(60) == 0
    tcp.close()
    (final,) = d.flushes()
    assert final["counters"]["drain"] == n
    assert final["timer_data"]["drain.t"]["count"] == n


def test_sigterm_keeps_lines_of_open_tcp_connections(start_daemon) -> None:
    port = free_port()
    d = start_daemon(servers=[{"server": "./servers/tcp", "port": port}], flushInterval=3_600_000)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"open.conn:5|c\n")
    wait_until(lambda: d.total("packets_received") == 1, what="the tcp line")
    d.signal(signal.SIGTERM)
    assert d.proc.wait(60) == 0
    s.close()
    assert d.flushes()[-1]["counters"]["open.conn"] == 5


def test_sighup_reload_rebinds_changed_listeners(start_daemon) -> None:
    d = start_daemon()
    old_port, old_mgmt = d.port, d.mgmt_port
    new_port, new_mgmt = free_port(), free_port()
    d.write_config({**d.config, "port": new_port, "mgmt_port": new_mgmt, "percentThreshold": [50]})
    d.signal(signal.SIGHUP)
    wait_until(lambda: _answers(new_mgmt), what="console on the new port")
    d.mgmt_port = new_mgmt
    d.send(b"after.reload:1|c", port=new_port)
    wait_until(lambda: "'after.reload': 1" in d.console("counters"), what="metric on the new port")
    wait_until(lambda: not _answers(old_mgmt), what="old console port closed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", old_port))  # the old UDP port was released
    assert "percentThreshold > 0: 50\n" in config_reply(d.mgmt_port)


def test_reload_with_a_broken_config_keeps_running(start_daemon) -> None:
    d = start_daemon()
    d.config_path.write_text("{ port: 'x' }")
    d.signal(signal.SIGHUP)
    wait_until(lambda: "keeping the running configuration" in d.logs(), what="the reload error")
    d.send(b"still:1|c")
    wait_until(lambda: "still: 1" in d.console("counters"), what="metric after the failed reload")


def config_reply(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"config\nquit\n")
        data = b""
        while chunk := s.recv(65536):  # quit closes the connection
            data += chunk
    return data.decode()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"health\n")
            return s.recv(100).startswith(b"health:")
    except OSError:
        return False


def test_flushes_stay_on_the_interval_grid(start_daemon) -> None:
    d = start_daemon(flushInterval=2000)
    wait_until(lambda: len(d.flushes()) >= 3, what="3 flushes")
    stamps = [r["timestamp"] for r in d.flushes()]
    assert all(ts % 2 == 0 for ts in stamps), stamps  # on the grid of the interval: no drift
    assert stamps == sorted(set(stamps))
    assert all("statsd.timestamp_lag" in r["gauges"] for r in d.flushes()[1:])


def test_file_backend_reopens_after_logrotate(start_daemon) -> None:
    d = start_daemon(flushInterval=500)
    wait_until(lambda: d.flush_file.exists(), what="first flush")
    rotated = d.flush_file.with_suffix(".1")
    d.flush_file.rename(rotated)
    d.send(b"after.rotate:1|c")
    wait_until(lambda: d.summed("counters", "after.rotate") == 1, what="a flush in the new file")
    assert rotated.stat().st_size > 0


def test_unbindable_port_is_a_clear_error(tmp_path) -> None:
    import subprocess
    import sys

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "webops", "statsd", "--port", str(port), "--mgmt-port", str(free_port())],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert r.returncode == 2
    assert f"cannot listen on udp://127.0.0.1:{port}" in r.stderr


def test_a_blocked_backend_holds_up_neither_intake_nor_other_backends(start_daemon, tmp_path) -> None:
    fifo = tmp_path / "blocked.fifo"
    os.mkfifo(fifo)  # nobody reads it: the file backend blocks opening it
    d = start_daemon(
        flushInterval=200, backends=["./backends/file", "./backends/console"], file={"path": str(fifo)}
    )
    d.send(b"during.block:1|c")
    wait_until(lambda: "'during.block': 1" in d.logs(), what="the console backend's flush")
    d.send(b"more:2|c")
    wait_until(lambda: "more: 2" in d.logs(), what="intake and flushes going on")
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # unblock it so the daemon can stop

    def read_some() -> bytes:
        try:
            return os.read(fd, 1 << 20)
        except BlockingIOError:
            return b""

    try:
        wait_until(read_some, what="the file backend writing once unblocked")
    finally:
        os.close(fd)


def test_key_flush_logs_the_most_frequent_keys(start_daemon, tmp_path) -> None:
    log = tmp_path / "keys.log"
    d = start_daemon(keyFlush={"interval": 200, "percent": 50, "log": str(log)})
    d.send(b"hot:1|c\nhot:1|c\nhot:1|c\nwarm:1|c\nwarm:1|c\ncold:1|c\nnone:1|c\nnone:1|c")
    text = wait_until(lambda: log.exists() and log.read_text(), what="the top keys log")
    assert "count=3 key=hot" in text and "count=2 key=warm" in text
    assert "key=cold" not in text


def test_dump_messages_logs_every_packet(start_daemon) -> None:
    d = start_daemon(dumpMessages=True)
    d.send(b"dumped.metric:1|c")
    wait_until(lambda: "dumped.metric:1|c" in d.logs(), what="the dumped packet")


def test_config_file_change_is_picked_up_without_a_signal(start_daemon) -> None:
    d = start_daemon(flushInterval=200)
    new_mgmt = free_port()
    d.write_config({**d.config, "mgmt_port": new_mgmt})
    os.utime(d.config_path, (1, 1))  # a different mtime, whatever the clock's resolution
    wait_until(lambda: _answers(new_mgmt), what="the console on the port from the changed file")


def test_a_64k_packet_is_read_whole(start_daemon) -> None:
    d = start_daemon()
    lines = b"\n".join(b"big.c%05d:1|c" % i for i in range(4300))  # ~64 KiB in one datagram
    assert 60_000 < len(lines) <= 65_507
    d.send(lines)
    wait_until(lambda: d.total("metrics_received") == 4300, what="4300 lines from one datagram")
    assert d.total("bad_lines_seen") == 0


def test_top_level_server_key_selects_tcp(start_daemon) -> None:
    d = start_daemon(server="./servers/tcp")
    with socket.create_connection(("127.0.0.1", d.port)) as s:
        s.sendall(b"over.tcp:4|c\n")
    wait_until(lambda: "'over.tcp': 4" in d.console("counters"), what="the tcp line")


@pytest.mark.parametrize("hot_path", ["native", "python"])
def test_gauges_keep_the_order_sent_with_several_readers(start_daemon, hot_path: str) -> None:
    """One client's `g:100|g` then `g:+1|g`: 101 every time, whichever reader reads which (two
    native receiver threads, or two reader processes, on one socket)."""
    d = start_daemon(readers=2, hotPath=hot_path)
    if hot_path == "native":
        threads = {p.read_text().strip() for p in Path(f"/proc/{d.proc.pid}/task").glob("*/comm")}
        assert {"statsd-recv-0", "statsd-recv-1"} <= threads, threads
    done = threading.Event()
    background = {"n": 0}

    def keep_both_readers_busy() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not done.is_set() and background["n"] < 200_000:
                s.sendto(b"busy:1|c\n" * 40, ("127.0.0.1", d.port))
                background["n"] += 1
                if background["n"] % 50 == 0:
                    time.sleep(0.005)  # ~400k lines/s: busy readers, no kernel drops

    busy = threading.Thread(target=keep_both_readers_busy)
    busy.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(40):
                for packet in (b"g%d:100|g" % i, b"g%d:+1|g" % i, b"g%d:+1|g" % i):
                    s.sendto(packet, ("127.0.0.1", d.port))
                    time.sleep(0.002)  # paced: consecutive packets go to different readers
    finally:
        done.set()
        busy.join()
    wait_until(lambda: d.total() == 120 + background["n"], timeout=60, what="every packet")
    gauges = d.console("gauges")
    wrong = [i for i in range(40) if f"g{i}: 102" not in gauges]
    assert not wrong, gauges


@pytest.mark.parametrize("hot_path", ["python", "native"])
def test_sigterm_to_the_process_group_loses_nothing(start_daemon, hot_path: str) -> None:
    """systemd and `timeout` signal every process of the group: readers too."""
    d = start_daemon(flushInterval=3_600_000, readers=2, hotPath=hot_path, _popen={"start_new_session": True})
    if hot_path == "python":
        wait_until(lambda: len(d.children()) == 2, what="two readers")
    n = 20_000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(n // 50):
            s.sendto(b"\n".join([b"grp:1|c"] * 50), ("127.0.0.1", d.port))
    os.killpg(d.proc.pid, signal.SIGTERM)
    assert d.proc.wait(60) == 0
    (final,) = d.flushes()
    assert final["counters"]["grp"] == n
    assert d.logs().count("stopping") == 1


def test_the_console_answers_a_command_without_a_newline_as_etsy_does(start_daemon) -> None:
    d = start_daemon()
    with socket.create_connection(("127.0.0.1", d.mgmt_port), timeout=10) as s:
        s.sendall(b"health")  # printf health | nc: no newline
        assert s.recv(100) == b"health: up\n"
        s.sendall(b"gauges\r\n")
        assert s.recv(100) == b"{}\nEND\n\n"


def test_timestamp_lag_as_etsy_from_the_second_flush_on(start_daemon) -> None:
    d = start_daemon(flushInterval=1000)
    wait_until(lambda: len(d.flushes()) >= 2, what="two flushes")
    first, second = d.flushes()[:2]
    assert "statsd.timestamp_lag" not in first["gauges"]  # Etsy: no lag before a previous flush
    assert abs(second["gauges"]["statsd.timestamp_lag"]) <= 1  # seconds between flushes - interval


def test_key_flush_says_when_it_cannot_write_and_recovers(start_daemon, tmp_path) -> None:
    folder = tmp_path / "not-yet"
    log = folder / "keys.log"
    d = start_daemon(keyFlush={"interval": 100, "log": str(log)})
    d.send(b"early:1|c")
    wait_until(lambda: f"keyFlush: cannot write {log}" in d.logs(), what="the write error in the log")
    folder.mkdir()  # the cause fixed: a later interval writes again, without a restart
    d.send(b"later:1|c")
    wait_until(lambda: log.exists() and "key=later" in log.read_text(), what="the top keys log again")
    assert "keyFlush: writing" in d.logs()


def test_a_crash_leaves_every_threads_stack_in_the_log(start_daemon) -> None:
    """A fault in the native extension (SIGSEGV, here sent) says where each thread was, on
    stderr, instead of a daemon gone without a word."""
    d = start_daemon()
    d.signal(signal.SIGSEGV)
    assert d.proc.wait(30) == -signal.SIGSEGV
    logs = d.logs()
    assert "Fatal Python error: Segmentation fault" in logs and "Current thread" in logs
