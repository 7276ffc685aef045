"""What an outside attacker or operator can do to the real server: kill its master, stop it under
load, send what the HTTP parser rejects, hold every connection with a request that never ends.
No timings are asserted beyond generous liveness bounds: only what happens, polled."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import signal
import socket
import threading

from tests.cluster.conftest import Served
from tests.conftest import need, wait_until

SMALL = ["The Art of Dog Walking", "Learn The Art of Public Speaking", "The Joy of Dog Walking"]


def _worker_pid(s: Served) -> int:
    status, _, body = s.request("GET", "/health", timeout=10)
    assert status == 200
    return int(json.loads(body)["pid"])


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"  # a zombie holds nothing
    except FileNotFoundError:
        return True
    except OSError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            return False
        return True


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a listener
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_workers_die_with_a_killed_master(serve) -> None:
    s = serve("--workers", "1")
    worker = _worker_pid(s)
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait(30)
    try:
        wait_until(lambda: _gone(worker), timeout=60, what=f"the orphaned worker {worker} to exit")
        wait_until(lambda: _port_free(s.port), timeout=30, what="the port to be free")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)


WORDS = "the dog cat house tree car road water light small big red blue green old new".split()  # noqa: SIM905


def _large(n: int, words: int) -> list[str]:
    """n distinct sentences of `words` common words (one word piece each: words + 2 a sentence)."""
    return [
        " ".join(WORDS[(i * 7 + j * (i % 5 + 1)) % len(WORDS)] for j in range(words)) + f" {i}"
        for i in range(n)
    ]


def _queue_depth(s: Served) -> float:
    text = s.request("GET", "/metrics", timeout=10)[2]
    for line in text.decode().splitlines():
        if line.startswith("webops_cluster_queue_depth "):
            return float(line.split()[1])
    return 0.0


def test_a_stop_under_load_answers_every_admitted_request(serve) -> None:
    # One worker holding two requests of ~70,000 word pieces (~20 s of a core each: together more
    # than gunicorn's default 30 s graceful timeout, which SIGKILLed the worker mid-request);
    # SIGTERM to the master once both are admitted: both are answered, then the master exits.
    s = serve(*("--workers", "1", "--max-tokens", "72000", "--timeout", "80", "--max-queue", "150000"))
    sentences = _large(1000, 66)
    results: list[object] = []

    def send() -> None:
        try:
            results.append(s.cluster(sentences, timeout=600)[0])
        except (OSError, http.client.HTTPException) as e:
            results.append(repr(e))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: _queue_depth(s) >= 2 or results, timeout=120, what="both requests admitted")
    s.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(600)
    assert results == [200, 200], results
    wait_until(lambda: s.proc.poll() is not None, timeout=120, what="the master to exit")


def _metric(s: Served, route: str, status: int) -> float:
    _, _, text = s.request("GET", "/metrics", timeout=10)
    prefix = f'webops_cluster_requests_total{{route="{route}",status="{status}"}} '
    for line in text.decode().splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


REJECTED = [
    bytes.fromhex("160301020001000200030378") + os.urandom(200),  # the start of a TLS ClientHello
    b"GET /health HTTP/1.1\r\n\r\n",  # no Host header
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",  # a 200 KB header
    b"\x00" * 64 + b"\r\n\r\n",  # NUL garbage
    b"POST /cluster HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
]


def _send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        reply = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                reply += chunk
        return reply


def test_what_the_parser_rejects_is_counted_access_logged_and_its_log_line_rate_limited(
    serve, tmp_path
) -> None:
    access = tmp_path / "access.log"
    s = serve("--workers", "1", "--access-log", str(access))
    for data in REJECTED:
        assert _send_raw(s.port, data).startswith(b"HTTP/1.1 400 "), data[:40]
    for _ in range(60):
        _send_raw(s.port, REJECTED[0])
    total = len(REJECTED) + 60
    wait_until(lambda: _metric(s, "unparsed", 400) >= total, timeout=30, what="the 400s counted")
    lines = [line for line in access.read_text().splitlines() if '"-" 400 ' in line]
    assert len(lines) == total, access.read_text()[-2000:]
    errors = s.log.read_text(errors="replace")
    assert errors.count("Invalid HTTP request") <= 10, errors[-2000:]


STALLED = (
    b"POST /cluster HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
)


def _attack(port: int, count: int, socks: list[socket.socket], stop: threading.Event) -> None:
    """`count` connections that send headers and one byte of a 100-byte body, then nothing."""
    for _ in range(count):
        if stop.is_set():
            return
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(STALLED)
        except OSError:
            continue
        socks.append(sock)


def _health_answers(s: Served) -> bool:
    try:
        return s.request("GET", "/health", timeout=3)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def _stalled_requests_do_not_take_the_service_down(s: Served, count: int) -> None:
    socks: list[socket.socket] = []
    stop = threading.Event()
    attacker = threading.Thread(target=_attack, args=(s.port, count, socks, stop))
    attacker.start()
    try:
        wait_until(lambda: len(socks) >= count or not attacker.is_alive(), timeout=120, what="the attack")
        # Every connection is held by a request that will never be whole (--request-timeout: 30 s):
        # the service must answer all the same, well within that.
        wait_until(lambda: _health_answers(s), timeout=15, what="/health during the attack")
        assert s.cluster(SMALL, timeout=15)[0] == 200
    finally:
        stop.set()
        attacker.join(60)
        for sock in socks:
            sock.close()
    lines = s.log.read_text(errors="replace")
    assert "Traceback" not in lines and len(lines.splitlines()) < 100, lines[-3000:]


def test_requests_that_never_arrive_whole_do_not_hold_every_connection(serve) -> None:
    s = serve("--workers", "1", "--max-connections", "5")
    _stalled_requests_do_not_take_the_service_down(s, 50)


def test_thousands_of_stalled_requests_do_not_take_the_service_down(serve) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3500
    if hard != resource.RLIM_INFINITY and hard < wanted:
        need(False, f"the open-file hard limit ({hard}) is below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        s = serve("--workers", "2", "--max-connections", "1000")
        _stalled_requests_do_not_take_the_service_down(s, 3000)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_ready_and_retry_after_say_what_cluster_admission_says(serve) -> None:
    # One worker taking 30,000 word pieces, requests of 20,000 at most: with one large request
    # admitted, a maximum-size request gets a 503, so /ready says not ready, and both say the same
    # Retry-After (the queued work over the measured rate).
    s = serve(*("--workers", "1", "--max-tokens", "20000", "--max-queue", "30000"))
    assert s.request("GET", "/ready", timeout=10)[0] == 200
    large = _large(1000, 16)  # ~19,000 word pieces: seconds of a core
    results: list[object] = []

    def send() -> None:
        try:
            results.append(s.cluster(large, timeout=600)[0])
        except (OSError, http.client.HTTPException) as e:
            results.append(repr(e))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_until(lambda: _queue_depth(s) >= 1 or results, timeout=120, what="the large request admitted")
        ready_status, ready_headers, _ = s.request("GET", "/ready", timeout=30)
        status, headers, _ = s.cluster(large, timeout=30)  # as large: over what is left
        assert not results, "the large request ended before the checks: make it larger"
        assert (ready_status, status) == (503, 503), (ready_status, status)
        ready_after, cluster_after = int(ready_headers["retry-after"]), int(headers["retry-after"])
        assert ready_after > 1 and abs(ready_after - cluster_after) <= max(2, cluster_after // 4), (
            ready_after,
            cluster_after,
        )
    finally:
        sender.join(600)
    assert results == [200]
    assert s.request("GET", "/ready", timeout=10)[0] == 200  # the queue empty: ready again
