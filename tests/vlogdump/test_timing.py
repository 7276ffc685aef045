"""vlogdump times every request as varnishncsa's `%D` does, to the microsecond, on a real Varnish:
hit, miss, pass, pipe, synth (in vcl_recv and in vcl_deliver), restart, ESI subrequests, a
retried fetch, fetch failures, a client that hangs up, a request refused as garbage, a long URL;
read live from varnishlog, from a saved log, and grouped by request. Stopped live by SIGTERM or
SIGINT it prints its summary as at the end of input."""

from __future__ import annotations

import collections
import json
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import free_port, need, wait_until
from tests.servers import Varnish

from .live import BACKEND, CLIENT, VLOGDUMP, Live, get, ncsa, send_raw

VCL = """vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "%d"; }
backend down { .host = "127.0.0.1"; .port = "DOWN"; }
sub vcl_recv {
  if (req.url ~ "^/pipe") { return (pipe); }
  if (req.url ~ "^/pass") { return (pass); }
  if (req.url ~ "^/synth") { return (synth(403, "Forbidden here")); }
  if (req.url ~ "^/down") { set req.backend_hint = down; }
}
sub vcl_backend_response {
  if (bereq.url ~ "^/esi") { set beresp.do_esi = true; }
  if (beresp.status == 500 && bereq.retries == 0) { return (retry); }
}
sub vcl_deliver {
  if (req.url ~ "^/restart" && req.restarts == 0) { set req.url = "/cache/restarted"; return (restart); }
  if (req.url ~ "^/dsynth") { return (synth(404, "Gone in deliver")); }
}
"""
LONG = "/cache/long-" + "x" * 6000  # longer than a log record (vsl_reclen): varnishlog cuts it
# (what the client sends, the URL varnishncsa prints for it: where they differ, a prefix)
TRAFFIC = [
    "/cache/a",  # miss
    "/cache/a",  # hit
    "/pass/x",
    "/pipe/1",
    "/synth/1",
    "/dsynth/1",  # synth from vcl_deliver, after a fetch
    "/restart/1",  # shown as /cache/restarted by varnishncsa, the request after the restart
    "/esi/2",  # and its subrequests /esi/1, /esi/0
    "/flaky/1",  # a 500, retried
    "/down/1",  # fetch failed: nothing listens
    "/bad/1",  # fetch failed: the backend answers garbage
    LONG,
]
RAW = [  # (bytes, read the answer?)
    (b"GET /huge/" + b"y" * 40_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", True),  # over http_req_size
    (b"GET /slow/closed HTTP/1.1\r\nHost: x\r\n\r\n", False),  # the client hangs up at once
    (b"POST /pass/body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", False),
    (b"\x00\x01junk junk\r\n\r\n", True),  # refused: 400, no URL
]
NCSA_URLS = [  # what varnishncsa prints for them all (%U): every one must be logged first
    "/cache/a",
    "/pass/x",
    "/pipe/1",
    "/synth/1",
    "/dsynth/1",
    "/cache/restarted",
    "/esi/2",
    "/esi/1",
    "/esi/0",
    "/flaky/1",
    "/down/1",
    "/bad/1",
    "/cache/long-xxx",
    "/slow/closed",
    "/pass/body",
    "-",
]
need(shutil.which("varnishncsa") is not None, "varnishncsa not found (apt-get install varnish)")


class Backend(BaseHTTPRequestHandler):
    seen: collections.Counter = collections.Counter()

    def do_GET(self) -> None:
        Backend.seen[self.path] += 1
        if self.path.startswith("/bad"):
            self.wfile.write(b"this is not HTTP\r\n\r\n")
            return
        if self.path.startswith("/flaky") and Backend.seen[self.path] == 1:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/slow"):
            threading.Event().wait(0.3)  # a slow backend, not a wait in the test
        body = f"page {self.path}".encode()
        if self.path.startswith("/esi/"):
            n = int(self.path.rsplit("/", 1)[1])
            body = (f"<p>{n}</p>" + (f'<esi:include src="/esi/{n - 1}"/>' if n else "")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # clients of the test that hang up on purpose


@pytest.fixture(scope="module")
def timed() -> Iterator[tuple[Varnish, Live]]:
    server = QuietServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    v = Varnish(server.server_address[1], VCL.replace("DOWN", str(free_port())))
    live = Live(v)
    try:
        live.attach()
        for path in TRAFFIC:
            get(v, path)
        for data, read in RAW:
            send_raw(v, data, read)

        def all_logged() -> bool:
            urls = [u for _, _, _, u in ncsa(v, *CLIENT)]
            return all(any(u.startswith(want) for u in urls) for want in NCSA_URLS)

        wait_until(all_logged, timeout=60, what="varnishncsa to show every request")
        yield v, live
    finally:
        live.stop()
        v.stop()
        server.shutdown()


def us(record: dict) -> int | None:
    """The time vlogdump shows (ms, 3 decimals), in µs: what varnishncsa's %D says."""
    return None if record["time_ms"] is None else round(record["time_ms"] * 1000)


def times(records: list[dict]) -> dict[int, int | None]:
    return {r["vxid"]: us(r) for r in records}


def reference(varnish: Varnish) -> dict[int, int]:
    return {int(vxid): int(d) for vxid, d, _, _ in ncsa(varnish, *CLIENT)}


def dump(log: str, *args: str) -> list[dict]:
    r = subprocess.run(
        [*VLOGDUMP, "--format", "json", *args], input=log, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


@pytest.mark.parametrize("grouping", ["vxid", "request"])
def test_saved_log_times_are_varnishncsas_to_the_microsecond(timed, grouping, tmp_path) -> None:
    varnish, _ = timed
    expected = reference(varnish)
    saved = tmp_path / "varnishlog.txt"
    saved.write_text(varnish.log("-g", grouping))
    got = dump("", str(saved))
    assert len(expected) > len(NCSA_URLS)
    assert times(got) == expected  # every request varnishncsa shows, each with the same %D
    assert all(r["time_us"] == us(r) for r in got)  # and JSON has it as an integer too
    handling = {int(vxid): h for vxid, _, h, _ in ncsa(varnish, *CLIENT)}
    assert {r["vxid"]: (r["handling"] or "-").lower() for r in got} == handling
    pipe = next(r for r in got if r["url"] == "/pipe/1")
    assert pipe["handling"] == "PIPE" and us(pipe) == expected[pipe["vxid"]] > 0
    backend = {int(vxid): int(d) for vxid, d, _, _ in ncsa(varnish, *BACKEND)}
    fetches = {r["backend"]["vxid"]: us(r["backend"]) for r in got if r["backend"]}
    assert fetches and fetches == {vxid: backend[vxid] for vxid in fetches}  # varnishncsa -b's %D


def test_text_shows_the_same_time(timed) -> None:
    varnish, _ = timed
    expected = reference(varnish)
    r = subprocess.run(
        [*VLOGDUMP, "--no-color", "--url-match", "^/pipe"],
        input=varnish.log(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    (pipe_vxid,) = [int(v) for v, _, _, u in ncsa(varnish, *CLIENT) if u == "/pipe/1"]
    assert f"{expected[pipe_vxid] / 1000:.3f} ms" in r.stdout.splitlines()[1]


def test_live_times_are_varnishncsas_and_sigterm_prints_the_summary(timed) -> None:
    varnish, live = timed
    expected = reference(varnish)
    traffic = {int(v) for v, _, _, u in ncsa(varnish, *CLIENT) if not u.startswith("/probe/")}
    wait_until(lambda: traffic <= set(times(live.records)), what="every request out of vlogdump live")
    got = times(live.records)
    assert got == {vxid: expected[vxid] for vxid in got}
    live.proc.send_signal(signal.SIGTERM)
    assert live.finished() == -signal.SIGTERM  # ended by it, after the summary: a shell sees 143
    assert "transactions seen" in live.err and "Traceback" not in live.err


def test_sigint_on_a_live_run_prints_the_summary(timed) -> None:
    varnish, _ = timed
    live = Live(varnish)
    try:
        live.attach("/probe-int")
        live.proc.send_signal(signal.SIGINT)
        assert live.finished() == -signal.SIGINT  # a shell sees 130
        assert "transactions seen" in live.err and "Traceback" not in live.err
    finally:
        live.stop()
