"""/render's text answers sent as they are made (HTTP/1.1 chunked, HTTP/1.0 ended by the close;
http.py): the same bytes either way and as HEAD's Content-Length says, a client that goes away
mid-answer or never reads harms nobody else, and an answer begun is never turned into an error."""

from __future__ import annotations

import asyncio
import http.client
import json
import pickle
import socket
import struct
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import free_port, wait_until
from tests.statsd.test_http_limits import metric, status_of
from webops.statsd.http import Endpoint, Limits

SERIES = 100
WINDOW = 600  # seconds: 100 series x 600 points of JSON is ~1.2 MB, about 20 parts


def many_gauges(start_daemon, tmp_path: Path, **http: object):
    """A daemon whose store holds SERIES gauges; the absolute window of the answers asked about."""
    store = {"dir": str(tmp_path / "data"), "retentions": [[".", "1s:1h"]]}
    d = start_daemon(
        backends=["store"],
        store=store,
        flushInterval=1000,
        http={"address": "127.0.0.1", "port": free_port(), **http},
    )
    d.send(b"\n".join(b"g%d:%d|g" % (i, i) for i in range(SERIES)))

    def stored() -> bool:
        status, body = d.http("/render?target=stats.gauges.*&from=-1min&format=raw")
        lines = body.splitlines()
        return status == 200 and len(lines) == SERIES and all(not line.endswith("None") for line in lines)

    wait_until(stored, what="the gauges in the store")
    until = int(time.time()) - 3  # the past only: every answer below is the same bytes
    return d, {"target": "stats.gauges.*", "from": str(until - WINDOW), "until": str(until)}


def http11(port: int, query: dict[str, object], method: str = "GET") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, f"/render?{urlencode(query, doseq=True)}")
    return conn.getresponse()


def raw_reply(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        reply = b""
        while chunk := s.recv(1 << 16):
            reply += chunk
    return reply


def chunks(body: bytes) -> list[bytes]:
    """A chunked body's chunks, as sent (the last, empty one included); it must be whole."""
    out = []
    while True:
        size, _, body = body.partition(b"\r\n")
        n = int(size, 16)
        out.append(body[:n])
        assert body[n : n + 2] == b"\r\n"
        body = body[n + 2 :]
        if n == 0:
            assert body == b""
            return out


@pytest.mark.parametrize(
    ("fmt", "extra"),
    [
        ("json", {}),
        ("json", {"jsonp": "cb.draw"}),
        ("json", {"maxDataPoints": "50"}),
        ("csv", {}),
        ("raw", {}),
    ],
)
def test_a_text_answer_is_sent_in_parts_and_is_the_whole_answer(
    start_daemon, tmp_path: Path, fmt: str, extra: dict[str, str]
) -> None:
    d, window = many_gauges(start_daemon, tmp_path)
    query = {**window, "format": fmt, **extra}
    head = f"GET /render?{urlencode(query)} HTTP/1.0\r\n\r\n".encode()
    whole_head, _, whole = raw_reply(d.http_port, head).partition(b"\r\n\r\n")
    # HTTP/1.0 knows no chunks: the parts go out as made too, the close ends the answer (held
    # whole for its Content-Length, a client's slow reading made the daemon hold it whole)
    assert status_of(whole_head) == 200
    assert b"Content-Length" not in whole_head and b"chunked" not in whole_head
    r = http11(d.http_port, query)
    assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked"
    assert r.read() == whole  # http.client's chunked reader: the same bytes
    _, _, sent = raw_reply(d.http_port, head.replace(b"HTTP/1.0", b"HTTP/1.1")).partition(b"\r\n\r\n")
    parts = chunks(sent)
    assert b"".join(parts) == whole and len(parts) >= 3  # two parts at least, and the last, empty one
    if "jsonp" in extra:
        assert whole.startswith(b"cb.draw([{") and whole.endswith(b"])")
    elif fmt == "json":
        assert len(json.loads(whole)) == SERIES
    assert http11(d.http_port, query, "HEAD").getheader("Content-Length") == str(len(whole))


def test_pickle_and_refusals_are_whole_answers(start_daemon, tmp_path: Path) -> None:
    """What graphite-web's federation reads (pickle) and every refusal keep their Content-Length."""
    d, window = many_gauges(start_daemon, tmp_path, renderMaxSeries=SERIES)
    r = http11(d.http_port, {**window, "format": "pickle"})
    assert r.getheader("Content-Length") and len(pickle.loads(r.read())) == SERIES
    for query, status in (
        ({**window, "target": "sumSeries("}, 400),
        ({**window, "target": ["stats.gauges.*", "stats.gauges.g1*"]}, 422),
        ({**window, "jsonp": "alert(1)"}, 400),
    ):
        r = http11(d.http_port, query)
        assert (r.status, r.getheader("Transfer-Encoding")) == (status, None) and r.read().count(b"\n") == 1


def big(window: dict[str, str]) -> dict[str, object]:
    """An answer of some 6 MB (the path five times: read once, written five times), more than
    the sockets' buffers hold, so the daemon is still sending when the client goes."""
    return {**window, "target": [window["target"]] * 5}


def abandon(port: int, query: dict[str, object], read: int) -> None:
    """Ask, take the head and `read` bytes, and reset the connection (SO_LINGER 0)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.settimeout(30)
    s.sendall(f"GET /render?{urlencode(query, doseq=True)} HTTP/1.1\r\n\r\n".encode())
    got = b""
    while len(got) < read:
        got += s.recv(4096)
    assert status_of(got) == 200
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_a_client_that_goes_away_mid_answer_harms_nothing(start_daemon, tmp_path: Path) -> None:
    d, window = many_gauges(start_daemon, tmp_path, renderThreads=1)
    query = big(window)
    expected = http11(d.http_port, query).read()
    for _ in range(3):
        abandon(d.http_port, query, read=5000)
    wait_until(lambda: metric(d, "statsd_http_replies_cut_total") >= 3, what="the cut answers counted")
    assert http11(d.http_port, query).read() == expected  # the thread is free, the next answer whole
    assert "Traceback" not in d.logs()


def test_a_reader_that_never_reads_holds_no_render_thread(start_daemon, tmp_path: Path) -> None:
    """A part is made while the client takes the one before: a client that stops reading stops
    the making, not the one render thread, and is cut after bodyTimeout, as before streaming."""
    d, window = many_gauges(start_daemon, tmp_path, renderThreads=1, bodyTimeout=3)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", d.http_port))
    stalled.sendall(f"GET /render?{urlencode(big(window), doseq=True)} HTTP/1.1\r\n\r\n".encode())
    stalled.settimeout(30)
    try:
        assert stalled.recv(1) == b"H"  # begun, and never read further
        answered = [http11(d.http_port, {**window, "target": f"stats.gauges.g{i}"}).status for i in range(5)]
        assert answered == [200] * 5
        wait_until(lambda: metric(d, "statsd_http_timeouts_total") >= 1, what="the stalled reader cut")
        assert metric(d, "statsd_http_replies_cut_total") >= 1
    finally:
        stalled.close()


def test_a_part_that_fails_is_a_500_before_the_answer_begins_and_a_cut_after(caplog) -> None:
    async def parts(fail_after: int):
        for _ in range(fail_after):
            yield b"x" * 10
        raise RuntimeError("a bug")

    async def ask(port: int, path: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\n\r\n".encode())
        reply = await reader.read()
        writer.close()
        return reply

    async def main() -> list[bytes]:
        routes = {f"/{n}": (lambda r, n=n: (200, "text/plain", parts(n))) for n in (0, 2)}
        endpoint = Endpoint(routes, Limits())
        server = await endpoint.start("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        replies = [await ask(port, "/0"), await ask(port, "/2"), await ask(port, "/0")]
        server.close()
        assert endpoint.counts["cut"] == 1
        return replies

    before, after, again = asyncio.run(main())
    assert before.startswith(b"HTTP/1.1 500 ") and before.endswith(b"internal error (RuntimeError), logged\n")
    assert after.startswith(b"HTTP/1.1 200 ") and after.endswith(b"a\r\nxxxxxxxxxx\r\n")  # no last chunk
    assert again == before
    assert sum("a bug" in r.getMessage() for r in caplog.records) == 3
