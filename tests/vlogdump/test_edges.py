"""What Varnish does to one request, on a real Varnish: retries, restarts, grace, ESI nested
four levels deep, pipe; and a stream without the backend fetches (`varnishlog -q`), read live."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import stop_process, wait_until
from tests.servers import Varnish

VLOGDUMP = [sys.executable, "-m", "webops", "vlogdump"]
VCL = """vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "%d"; }
sub vcl_recv {
  if (req.url ~ "^/pipe") { return (pipe); }
}
sub vcl_backend_response {
  if (bereq.url ~ "^/esi") { set beresp.do_esi = true; }
  if (beresp.status == 500 && bereq.retries == 0) { return (retry); }
  if (bereq.url ~ "^/grace") { set beresp.ttl = 0.2s; set beresp.grace = 60s; }
}
sub vcl_deliver {
  if (req.url ~ "^/restart" && req.restarts == 0) { set req.url = "/cache/restarted"; return (restart); }
}
"""
ESI_DEPTH = 5  # /esi/5 includes /esi/4 ... /esi/0: six requests, nested five deep


class Backend(BaseHTTPRequestHandler):
    seen: collections.Counter = collections.Counter()

    def do_GET(self) -> None:
        Backend.seen[self.path] += 1
        if self.path.startswith("/flaky") and Backend.seen[self.path] == 1:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = f"page {self.path}".encode()
        if self.path.startswith("/esi/"):
            n = int(self.path.rsplit("/", 1)[1])
            body = (f"<p>{n}</p>" + (f'<esi:include src="/esi/{n - 1}"/>' if n else "")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def get(varnish: Varnish, path: str) -> None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{varnish.port}{path}", timeout=30) as r:
            r.read()
    except urllib.error.HTTPError:
        pass


@pytest.fixture(scope="module")
def varnish() -> Iterator[Varnish]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    v = Varnish(server.server_address[1], VCL, "max_esi_depth=10")
    yield v
    v.stop()
    server.shutdown()


@pytest.fixture(scope="module")
def logs(varnish: Varnish) -> dict[str, str]:
    for path in ("/flaky/1", "/restart/1", "/pipe/1", f"/esi/{ESI_DEPTH}", "/grace/1"):
        get(varnish, path)

    def grace_hit() -> bool:  # the object is stale after 0.2 s: a hit then refreshes it in the background
        get(varnish, "/grace/1")
        return "bgfetch" in varnish.log()

    wait_until(grace_hit, what="a grace hit")
    return {"vxid": varnish.log(), "request": varnish.log("-g", "request")}


def run(log: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*VLOGDUMP, "--format", "json", *args], input=log, capture_output=True, text=True)


def records(log: str) -> list[dict]:
    r = run(log)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


@pytest.mark.parametrize("grouping", ["vxid", "request"])
def test_one_record_per_client_request_whatever_varnish_did(logs, grouping: str) -> None:
    got = records(logs[grouping])
    by_url = collections.defaultdict(list)
    for rec in got:
        by_url[rec["url"]].append(rec)
    (flaky,) = by_url["/flaky/1"]  # retried fetch: the response the client got
    assert flaky["backend"]["status"] == "200" and flaky["backend"]["retries"] == 1
    (restart,) = by_url["/restart/1"]  # one record, not two
    assert restart["restarts"] == 1 and restart["restarted_as"] == "/cache/restarted"
    assert restart["status"] == "200" and restart["backend"]["url"] == "/cache/restarted"
    (pipe,) = by_url["/pipe/1"]
    assert pipe["handling"] == "PIPE" and pipe["backend"] is not None
    grace = [r for r in by_url["/grace/1"] if r["bgfetch"] is not None]
    assert grace and all(r["handling"] == "HIT" and r["backend"] is None for r in grace)
    esi = [r for r in got if r["esi_parent"] is not None]
    assert sorted(r["url"] for r in esi) == [f"/esi/{n}" for n in range(ESI_DEPTH)]
    if grouping == "request":  # the nesting tells the depth: four levels and more read
        assert sorted(r["esi_level"] for r in esi) == list(range(1, ESI_DEPTH + 1))
    assert not [
        r for r in got if r["esi_parent"] is None and r["url"].startswith("/esi/") and r["url"] != "/esi/5"
    ]
    for rec in got:  # times as Varnish logged them: microseconds, no float noise
        assert rec["time_ms"] is None or rec["time_ms"] == round(rec["time_ms"], 3)
        assert len(repr(rec["time_ms"]).split(".")[-1]) <= 3 or rec["time_ms"] is None


def test_the_summary_counts_client_requests_apart_from_esi(logs) -> None:
    r = subprocess.run([*VLOGDUMP, "--no-color"], input=logs["request"], capture_output=True, text=True)
    assert f"{ESI_DEPTH} ESI subrequests" in r.stderr
    assert "0 shown without their backend fetch" in r.stderr
    assert "0 backend fetches without their request" in r.stderr
    assert "(fetch retried 1x)" in r.stdout and "(restarted 1x as /cache/restarted)" in r.stdout


def test_requests_are_shown_live_without_a_fetch_the_stream_lacks(varnish, logs) -> None:
    only_requests = varnish.log("-q", 'ReqURL ~ "^/flaky"')  # what -q lets through: no BeReq
    assert "<< Request" in only_requests and "<< BeReq" not in only_requests
    proc = subprocess.Popen(
        [*VLOGDUMP, "--no-color", "--join-wait", "0.5"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(only_requests)
        proc.stdin.flush()  # and the pipe stays open, as with varnishlog running
        first = proc.stdout.readline()  # comes out once it waited for the fetch long enough
        assert " => GET /flaky/1 " in first
    finally:
        proc.stdin.close()
        stop_process(proc)


def test_flags_set_to_false_are_off(logs) -> None:
    r = subprocess.run(
        [*VLOGDUMP, "--no-color", "-v", "show_req_headers=false", "-v", "show_resp_headers=0"],
        input=logs["vxid"],
        capture_output=True,
        text=True,
    )
    assert "req.http." not in r.stdout and "resp.http." not in r.stdout
    r = subprocess.run(
        [*VLOGDUMP, "--no-color", "-v", "show_req_headers=true"],
        input=logs["vxid"],
        capture_output=True,
        text=True,
    )
    assert "req.http." in r.stdout
