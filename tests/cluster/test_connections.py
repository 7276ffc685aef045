"""Connections: spread across workers, none lost when workers recycle (keep-alive clients too),
idle and slow clients cut off, and the service reachable under thousands of idle connections at
an open-file limit of 1024. No timings are asserted: only what happens, polled."""

from __future__ import annotations

import contextlib
import http.client
import resource
import shutil
import socket
import threading

import pytest

from tests.conftest import need, wait_until

SMALL = ["The Art of Dog Walking", "Learn The Art of Public Speaking", "The Joy of Dog Walking"]


def test_a_keepalive_connection_is_moved_between_workers(serve) -> None:
    # A keep-alive client stays on the worker that accepted it; after --keepalive-requests
    # requests it is told `Connection: close`, reconnects, and lands on whichever worker is idle.
    s = serve("--workers", "2", "--keepalive-requests", "3")
    conn = s.connection()
    pids, closes = set(), 0
    for _ in range(40):
        status, headers, _ = s.cluster(SMALL, conn=conn)  # http.client reconnects by itself
        assert status == 200
        pids.add(headers["x-worker-pid"])
        closes += headers.get("connection") == "close"
    assert closes >= 10
    assert len(pids) == 2, pids


def _http_client_worker(port: int, n: int, failures: list[str], pids: set[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = b'{"sentences": ["The Art of Dog Walking", "The Joy of Dog Walking"]}'
    for _ in range(n):
        try:
            conn.request("POST", "/cluster", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                failures.append(f"status {r.status}")
            pids.add(r.getheader("X-Worker-Pid") or "")
        except (OSError, http.client.HTTPException) as e:
            failures.append(repr(e))
            conn.close()  # and go on: the next request opens a new connection


def _httpx_worker(port: int, n: int, failures: list[str], pids: set[str]) -> None:
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        for _ in range(n):
            try:
                r = client.post("/cluster", json={"sentences": SMALL[:2]})
                if r.status_code != 200:
                    failures.append(f"status {r.status_code}")
                pids.add(r.headers.get("x-worker-pid", ""))
            except httpx.HTTPError as e:
                failures.append(repr(e))


@pytest.mark.parametrize("client", ["http.client", "httpx"])
def test_recycling_loses_no_keepalive_request(serve, client: str) -> None:
    if client == "httpx":
        try:
            import httpx  # noqa: F401
        except ImportError:
            need(False, "httpx is not installed")
    run = _http_client_worker if client == "http.client" else _httpx_worker
    # 2 workers replaced every 3 requests; 4 keep-alive clients, 30 requests each: ~40 recycles.
    s = serve("--workers", "2", "--max-requests", "3", "--max-requests-jitter", "0")
    failures: list[str] = []
    pids: set[str] = set()
    threads = [threading.Thread(target=run, args=(s.port, 30, failures, pids)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert failures == [], failures
    assert len(pids) >= 6, pids  # workers were recycled while the clients kept their connections


def _closed(sock: socket.socket) -> bool:
    """True once the server has closed the connection (end of file or a reset)."""
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_idle_and_slow_clients_are_cut_off(serve) -> None:
    s = serve("--workers", "1", "--keep-alive", "1", "--request-timeout", "2")
    head = (
        b"POST /cluster HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    idle = socket.create_connection(("127.0.0.1", s.port))  # never says anything
    headers = socket.create_connection(("127.0.0.1", s.port))  # headers, a byte at a time
    body = socket.create_connection(("127.0.0.1", s.port))  # whole headers, then a trickled body
    body.sendall(head)
    for sock in (idle, headers, body):
        sock.setblocking(False)
    polls = {"n": 0}

    def trickle() -> bool:
        n = polls["n"] = polls["n"] + 1
        byte = n // 10  # a header byte every 10th poll: the headers would take 20 s and more
        for sock, data in ((headers, head[byte : byte + 1] if n % 10 == 0 else b""), (body, b" ")):
            if data:
                with contextlib.suppress(OSError):
                    sock.send(data)
        return all(_closed(sock) for sock in (idle, headers, body))

    try:
        wait_until(trickle, timeout=60, what="the server to close idle and trickling connections")
    finally:
        for sock in (idle, headers, body):
            sock.close()
    assert s.cluster(SMALL)[0] == 200  # and it serves on


def test_thousands_of_idle_connections_at_an_open_file_limit_of_1024(serve) -> None:
    # The service under systemd's default limit (prlimit: only its own process tree), then 2,500
    # connections that send nothing, opened by the test (its own soft limit raised, nothing
    # system-wide): a normal request must still be answered, and the log must stay short.
    prlimit = shutil.which("prlimit")
    prefix = (prlimit, "--nofile=1024") if prlimit else ("sh", "-c", 'ulimit -n 1024 && exec "$@"', "sh")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3000
    if hard != resource.RLIM_INFINITY and hard < wanted:
        need(False, f"the open-file hard limit ({hard}) is below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    socks: list[socket.socket] = []
    try:
        s = serve("--workers", "2", prefix=prefix)
        for _ in range(2500):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", s.port))
            socks.append(sock)

        def answered() -> bool:
            try:
                return s.cluster(SMALL, timeout=5)[0] == 200
            except OSError:
                return False

        wait_until(answered, timeout=90, what="an answer while thousands of connections sit idle")
        lines = s.log.read_text(errors="replace").splitlines()
        assert len(lines) < 100 and "Traceback" not in "\n".join(lines), lines[:20]
    finally:
        for sock in socks:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
