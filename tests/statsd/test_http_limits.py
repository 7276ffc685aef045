"""The HTTP endpoint of a real daemon under hostile clients (issue 26): every request gets an
answer, /health keeps answering under a slowloris, renders are bounded in size, number and time,
and SIGTERM exits within docs/statsd.md's bound whatever HTTP is doing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlencode

from tests.conftest import free_port, wait_until
from tests.statsd.conftest import under_1024_descriptors
from webops.statsd.http import Endpoint, Limits

SHUTDOWN_BOUND = 10  # seconds: docs/statsd.md, Lifecycle
GAUGE = "stats.gauges.g"


def http_config(**limits: object) -> dict:
    return {"address": "127.0.0.1", "port": free_port(), **limits}


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """What the daemon answers to `data` sent as is, up to its close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


def status_of(reply: bytes) -> int | None:
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", reply)
    return int(m[1]) if m else None


def get_request(path: str, **params: str | list[str]) -> bytes:
    return f"GET {path}?{urlencode(params, doseq=True)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def metric(d, name: str) -> float:
    text = d.http("/metrics")[1]
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m[1]) if m else 0.0


def half_open(port: int) -> socket.socket:
    """A slowloris: a request line, and never the blank line that ends the head."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /health HTTP/1.1\r\n")
    return s


def store_daemon(start_daemon, tmp_path: Path, retentions: str, **http: object):
    """A daemon with the store backend, holding a gauge, and Graphite's API on it."""
    store = {"dir": str(tmp_path / "data"), "retentions": [[".", retentions]]}
    d = start_daemon(backends=["store"], store=store, flushInterval=1000, http=http_config(**http))
    d.send(b"g:7|g")

    def stored() -> bool:
        status, body = d.http(f"/render?target={GAUGE}&from=-5min")
        return status == 200 and any(p[0] is not None for s in json.loads(body) for p in s["datapoints"])

    wait_until(stored, what="the gauge in the store")
    return d


def heavy_form(targets: int) -> bytes:
    """A render of `targets` targets of an hour each: about a millisecond apiece to evaluate."""
    return urlencode({"target": [f'summarize({GAUGE},"1h")'] * targets, "from": "-1h"}, doseq=True).encode()


def post(port: int, body: bytes, timeout: float = 60) -> tuple[int, str]:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/render", data=body, headers=form)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def post_until_closed(port: int, body: bytes) -> None:
    """A render whose answer never comes: the daemon closes the connection as it stops."""
    with contextlib.suppress(OSError):
        post(port, body)


DEEP = "scale(" * 3000 + GAUGE + ",2)" * 3000
HOSTILE_RENDERS = [
    ({"target": f'summarize({GAUGE},"0s")'}, 400),  # looped forever
    (
        {"target": f'summarize({GAUGE},"1s")', "from": "-1y"},
        422,
    ),  # a year in 1 s buckets: a core until restart
    ({"target": f"summarize({GAUGE},5)"}, 400),
    ({"target": f'highestCurrent({GAUGE},"abc")'}, 400),
    ({"target": f'scale({GAUGE},"abc")'}, 400),
    ({"target": f'asPercent({GAUGE},"abc")'}, 400),
    ({"target": f'keepLastValue({GAUGE},"abc")'}, 400),
    ({"target": f'nonNegativeDerivative({GAUGE},"abc")'}, 400),
    ({"target": f"limit({GAUGE},1e400)"}, 400),
    ({"target": f"movingAverage({GAUGE},-1000000000)"}, 400),
    ({"target": f"movingAverage({GAUGE},1e400)"}, 400),
    ({"target": 'sumSeries(stats.gauges.*,"abc")'}, 400),
    ({"target": 'scale("abc",2)'}, 400),
    ({"target": "stats.[z-a]"}, 200),  # an empty range: no name (graphite-web, fnmatch)
    ({"target": "stats." + "{a,b,c,d}" * 6}, 400),  # braces standing for 4,096 paths
    ({"target": "*a" * 14 + "*b"}, 200),  # built to backtrack: a naive regex never returns
    ({"target": "sumSeries("}, 400),
    ({"target": DEEP}, 400),
    ({"target": [GAUGE, "stats.gauges.{g,h}"]}, 422),  # more than renderMaxSeries (a repeat is free)
    ({"target": [GAUGE, GAUGE]}, 200),  # the same path twice: read once
    ({"target": GAUGE, "from": "1" * 5000}, 400),
    ({"target": GAUGE, "until": "-" + "9" * 5000 + "s"}, 400),
    ({"target": GAUGE, "maxDataPoints": "9" * 5000}, 400),
    ({"target": GAUGE, "maxDataPoints": "-5"}, 200),
    ({"target": GAUGE, "maxDataPoints": "1"}, 200),
    ({"target": GAUGE, "maxDataPoints": "9" * 30}, 200),
    ({"target": f"scale({GAUGE},1e308)", "format": "csv"}, 200),
    ({"target": f"aliasByNode(alias({GAUGE},5),0)"}, 200),
]


def test_every_hostile_request_gets_an_answer_and_none_is_a_500(start_daemon, tmp_path: Path) -> None:
    d = store_daemon(start_daemon, tmp_path, "1s:1h,1h:1y", renderMaxSeries=1)
    requests = [(get_request("/render", **params), want) for params, want in HOSTILE_RENDERS]
    requests += [
        (get_request("/metrics/find", query="stats.[z-a]"), 200),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nno colon\r\n\r\n", 400),
        (b"DELETE /health HTTP/1.1\r\n\r\n", 405),
        (b"GET /health HTTP/1.1\r\nX-Long: " + b"x" * 66_000, 431),  # all read: no reset
        (b"POST /render HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
        (b"POST /render HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413),
        (b"GET /health HTTP/1.1\r\n\r\n", 200),
    ]
    got = [(request[:70], status_of(raw(d.http_port, request)), want) for request, want in requests]
    assert [(r, s) for r, s, want in got if s != want] == [], got
    status, body = d.http(f"/render?target={quote(DEEP)}")
    assert body.count("\n") == 1  # one line, as every refusal
    status, body = d.http(f"/render?target=scale({GAUGE},1e308)&from=-5min")
    assert status == 200 and "Infinity" not in body and json.loads(body)[0]["datapoints"][-1][0] is None
    status, body = d.http(f'/render?target=summarize({GAUGE},"1s")&from=-1y')
    assert status == 422 and "(http.renderMaxPoints)" in body
    assert "Traceback" not in d.logs()


def test_health_answers_under_a_slowloris(start_daemon) -> None:
    d = start_daemon()
    attackers = [half_open(d.http_port) for _ in range(300)]
    try:
        assert [d.http("/health")[0] for _ in range(24)] == [200] * 24
    finally:
        for s in attackers:
            s.close()


def test_a_slowloris_past_the_cap_under_1024_descriptors(start_daemon) -> None:
    d = start_daemon(_popen=under_1024_descriptors())
    attackers = []
    try:
        for _ in range(1100):
            attackers.append(half_open(d.http_port))
        wait_until(lambda: metric(d, "statsd_http_connections_evicted_total") >= 1100 - 512, what="evictions")
        assert [d.http("/health")[0] for _ in range(24)] == [200] * 24
    finally:
        for s in attackers:
            s.close()
    assert "Traceback" not in d.logs()


def test_a_reload_applies_the_limits_to_the_running_endpoint(start_daemon) -> None:
    d = start_daemon()
    d.write_config({**d.config, "http": {**d.config["http"], "maxConnections": 2, "renderThreads": 3}})
    d.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in d.logs(), what="the reload")
    attackers = [half_open(d.http_port) for _ in range(3)]
    try:
        assert [d.http("/health")[0] for _ in range(3)] == [200] * 3
        assert metric(d, "statsd_http_connections_evicted_total") >= 2  # the third, then for the probe
    finally:
        for s in attackers:
            s.close()


def test_a_connection_that_does_not_finish_its_request_is_closed(start_daemon) -> None:
    d = start_daemon(http=http_config(headerTimeout=1))
    with half_open(d.http_port) as s:
        s.settimeout(5)
        assert s.recv(10) == b""
    assert metric(d, "statsd_http_timeouts_total") >= 1


def test_renders_are_bounded_in_number_and_time(start_daemon, tmp_path: Path) -> None:
    limits = {"renderThreads": 1, "renderTimeout": 2, "renderMaxSeries": 10**9, "renderMaxPoints": 10**12}
    d = store_daemon(start_daemon, tmp_path, "1s:1h", **limits)
    body = heavy_form(5_000)  # 5 s of work each
    answers: list[tuple[int, str]] = []
    clients = [threading.Thread(target=lambda: answers.append(post(d.http_port, body))) for _ in range(45)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    statuses = {status for status, _ in answers}
    assert statuses == {503, 504}, answers[:3]
    assert all("http.renderThreads" in text for status, text in answers if status == 503)
    assert all(
        "abandoned after 2 s (http.renderTimeout)" in text for status, text in answers if status == 504
    )
    # the thread noticed and stopped: a small render is answered at once, not behind the work
    wait_until(
        lambda: d.http(f"/render?target={GAUGE}&from=-1min")[0] == 200, timeout=5, what="a free thread"
    )


def test_sigterm_exits_within_the_bound_whatever_http_is_doing(start_daemon, tmp_path: Path) -> None:
    limits = {"renderThreads": 2, "renderTimeout": 300, "renderMaxSeries": 10**9, "renderMaxPoints": 10**12}
    d = store_daemon(start_daemon, tmp_path, "1s:1h", **limits)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", d.http_port))
    stalled.sendall(get_request("/render", target=[GAUGE] * 300, **{"from": "-1h"}))
    stalled.settimeout(30)
    assert stalled.recv(1) == b"H"  # 20 MB of reply on the way, and never read
    slow = half_open(d.http_port)
    console = socket.create_connection(("127.0.0.1", d.mgmt_port))  # an operator's open session
    body = heavy_form(20_000)
    renders = [threading.Thread(target=post_until_closed, args=(d.http_port, body)) for _ in range(3)]
    try:
        for r in renders:
            r.start()
        wait_until(lambda: metric(d, "statsd_http_renders") == 3, what="three renders in flight")
        d.signal(signal.SIGTERM)
        wait_until(lambda: d.proc.poll() is not None, timeout=SHUTDOWN_BOUND, what="the daemon to exit")
        assert d.proc.returncode == 0 and "stopped" in d.logs()
        assert "Exception in callback" not in d.logs()  # each handler ended, none reported as a crash
    finally:
        stalled.close()
        slow.close()
        console.close()
        for r in renders:
            r.join()


def test_a_route_that_fails_is_a_500_of_one_line_logged_at_a_bounded_rate(caplog) -> None:
    def broken(request) -> tuple[int, str, str]:
        raise RuntimeError("a bug")

    async def ask_often() -> list[bytes]:
        endpoint = Endpoint({"/broken": broken}, Limits())
        server = await endpoint.start("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        replies = []
        for _ in range(8):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /broken HTTP/1.1\r\n\r\n")
            replies.append(await reader.read())
            writer.close()
        server.close()
        return replies

    replies = asyncio.run(ask_often())
    assert all(
        r.startswith(b"HTTP/1.1 500 ") and r.endswith(b"\r\n\r\ninternal error (RuntimeError), logged\n")
        for r in replies
    )
    assert len([r for r in caplog.records if "a bug" in r.getMessage()]) == 5  # then held back


def client_hello() -> bytes:
    """The first bytes a TLS client sends (Python's own ClientHello)."""
    import ssl

    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="x")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_what_is_not_http_gets_its_400_without_waiting_for_the_header_timeout(start_daemon) -> None:
    """The console's `stats`, HTTP/0.9 and TLS sent to the HTTP port: answered and closed once the
    first line cannot be HTTP/1.x, not held for headerTimeout (60 s here; the socket gives up after
    10, which fails the test)."""
    d = start_daemon(http=http_config(headerTimeout=60))
    for data in (b"stats\r\n", b"GET /health\r\n", b"GET /health HTTP/2.0\r\n", client_hello()):
        reply = raw(d.http_port, data, timeout=10)  # read up to the daemon's close
        assert status_of(reply) == 400 and b"not an HTTP/1.x request" in reply, (data[:20], reply)
    assert status_of(raw(d.http_port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")) == 200
    assert metric(d, "statsd_http_timeouts_total") == 0
