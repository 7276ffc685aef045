"""vlogdump on real Varnish 7 output: varnishd in front of a local backend, read with varnishlog."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.conftest import wait_until
from tests.servers import Varnish

from .conftest import SLOW_SECONDS

VLOGDUMP = [sys.executable, "-m", "webops", "vlogdump"]
TRAFFIC = [  # (path, user agent, expected status)
    ("/cache/a", "curl/8", 200),
    ("/cache/a", "Mozilla/5.0 (Linux; Android 13)", 200),
    ("/pass/x", "curl/8", 200),
    ("/missing", "curl/8", 404),
    ("/slow", "curl/8", 200),
    ("/synth", "curl/8", 403),
]


@pytest.fixture(scope="module")
def logs(varnish: Varnish) -> dict[str, str]:
    for path, agent, status in TRAFFIC:
        req = urllib.request.Request(f"http://127.0.0.1:{varnish.port}{path}", headers={"User-Agent": agent})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == status
        except urllib.error.HTTPError as e:
            assert e.code == status
    wait_until(
        lambda: varnish.log().count("<< Request") >= len(TRAFFIC), what="varnishlog to have every request"
    )
    return {"vxid": varnish.log(), "request": varnish.log("-g", "request")}


def vlogdump(log: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*VLOGDUMP, *args], input=log, capture_output=True, text=True, timeout=60)


def firsts(out: str) -> list[str]:
    return [line for line in out.splitlines() if " => " in line]


@pytest.mark.parametrize("grouping", ["vxid", "request"])
def test_every_request_with_its_handling_status_and_time(logs, grouping: str) -> None:
    r = vlogdump(logs[grouping], "--no-color")
    assert r.returncode == 0, r.stderr
    # in the order they ended, with their fetch: with -g vxid a miss whose fetch Varnish logs
    # after the next request (it finishes its bookkeeping after the client has the answer)
    # comes out after that one, so the order of the two /cache/a is not fixed
    lines = r.stdout.splitlines()
    pairs = sorted(zip(lines[::2], lines[1::2], strict=True), key=lambda p: p[0].split()[3])
    assert sorted(firsts(r.stdout)) == sorted(
        [
            "127.0.0.1 => GET /cache/a HTTP/1.1 MISS",
            "127.0.0.1 => GET /cache/a HTTP/1.1 HIT",
            "127.0.0.1 => GET /pass/x HTTP/1.1 PASS",
            "127.0.0.1 => GET /missing HTTP/1.1 MISS",
            "127.0.0.1 => GET /slow HTTP/1.1 MISS",
            "127.0.0.1 => GET /synth HTTP/1.1 SYNTH",
        ]
    )
    status = {first.split()[3] + " " + first.split()[-1]: second.split()[1] for first, second in pairs}
    assert status == {
        "/cache/a MISS": "200",
        "/cache/a HIT": "200",
        "/pass/x PASS": "200",
        "/missing MISS": "404",
        "/slow MISS": "200",
        "/synth SYNTH": "403",
    }
    (slow,) = [second for first, second in pairs if " /slow " in first]
    slow_ms = float(slow.split()[-2])
    assert slow_ms >= SLOW_SECONDS * 1000
    assert "6 transactions seen, 6 shown" in r.stderr and "hit ratio 25.0%" in r.stderr


def test_filters_by_their_awk_names_and_as_flags(logs) -> None:
    log = logs["vxid"]
    cases = {
        ("-v", "only_misses=1"): ["/cache/a", "/missing", "/slow"],
        ("--only-misses",): ["/cache/a", "/missing", "/slow"],
        ("-v", "only_hits=1"): ["/cache/a"],
        ("--only-pass",): ["/pass/x"],
        ("-v", f"only_slow={SLOW_SECONDS * 1000}"): ["/slow"],
        ("-v", "only_status=^4"): ["/missing", "/synth"],
        ("-v", "url_match=^/cache"): ["/cache/a", "/cache/a"],
        ("-v", "url_match=!^/cache"): ["/pass/x", "/missing", "/slow", "/synth"],
        ("--url-match", "!^/cache"): ["/pass/x", "/missing", "/slow", "/synth"],
        ("-v", "client_match=^10\\."): [],
        ("-v", "req_method=GET", "-v", "only_hits=1"): ["/cache/a"],
        ("-v", "req_headers_match=Android"): ["/cache/a"],
        ("-v", "resp_headers_match=X-Backend: webops-test", "-v", "only_misses=1"): ["/cache/a", "/slow"],
    }
    for args, urls in cases.items():
        r = vlogdump(log, "--no-color", *args)
        assert r.returncode == 0, (args, r.stderr)
        assert sorted(line.split()[3] for line in firsts(r.stdout)) == sorted(urls), args  # order: as above


def test_headers_as_in_the_seed(logs) -> None:
    r = vlogdump(
        logs["vxid"],
        "-v",
        "show_req_headers=1",
        "-v",
        "show_resp_headers=1",
        "-v",
        "req_headers_match=Android",
        "-v",
        "only_hits=1",
    )
    lines = r.stdout.splitlines()
    assert "   req.http.User-Agent = Mozilla/5.0 (Linux; Android 13)" in lines
    assert "   resp.http.X-Backend = webops-test" in lines
    r = vlogdump(logs["vxid"], "--show-resp-headers", "-v", "url_match=^/slow")
    assert "   beresp.http.X-Backend = webops-test" in r.stdout.splitlines()


def test_json_has_every_field_and_the_backend_fetch(logs) -> None:
    r = vlogdump(logs["request"], "--format", "json", "-v", "url_match=^/slow")
    (record,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert (record["method"], record["url"], record["status"], record["handling"]) == (
        "GET",
        "/slow",
        "200",
        "MISS",
    )
    assert record["time_ms"] >= SLOW_SECONDS * 1000
    assert record["backend"]["url"] == "/slow" and record["backend"]["status"] == "200"
    assert ["X-Backend", "webops-test"] in record["backend"]["resp_headers"]


def test_reads_a_file_too(logs, tmp_path) -> None:
    saved = tmp_path / "varnishlog.txt"
    saved.write_text(logs["vxid"])
    r = subprocess.run([*VLOGDUMP, str(saved), "--no-summary"], capture_output=True, text=True, timeout=60)
    assert len(firsts(r.stdout)) == 6 and r.stderr == ""


def test_colour_only_on_request() -> None:
    from webops.vlogdump.output import RED, text
    from webops.vlogdump.parse import Transaction

    t = Transaction(
        1,
        "Request",
        client="1.2.3.4",
        method="GET",
        url="/",
        protocol="HTTP/1.1",
        status="200",
        reason="OK",
        handling="MISS",
        time_ms=1500.0,
    )
    assert RED in text(t, False, False, color=True, slow_ms=1000)
    assert "\033" not in text(t, False, False, color=False, slow_ms=1000)


def test_bad_options_are_one_line_errors() -> None:
    r = vlogdump("", "-v", "only_mises=1")
    assert r.returncode == 2 and "only_mises" in r.stderr and r.stderr.count("\n") == 1
    r = vlogdump("", "-v", "url_match=(")
    assert r.returncode == 2 and "url_match" in r.stderr


def test_ctrl_c_prints_the_summary(logs) -> None:
    import signal

    from .live import default_signals

    proc = subprocess.Popen(
        [*VLOGDUMP, "--no-color"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(logs["vxid"])
    proc.stdin.flush()  # the pipe stays open, as with varnishlog running
    first = proc.stdout.readline()  # shown as soon as it is complete
    assert " => GET /" in first
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGINT  # after the summary, ended by it: a shell sees 130
    assert "transactions seen" in err
