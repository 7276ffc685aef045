"""`webops check` against Debian's graphite-web reading carbon's whisper files: thresholds, a bad
expression's error, and Holt-Winters bands from graphite-web's own holtWintersConfidenceBands."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from urllib.parse import urlencode

from tests.check.helpers import run_check
from tests.conftest import wait_until


def feed(port: int, lines: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(lines.encode())


def known(web_port: int, target: str) -> list:
    q = urlencode({"target": target, "from": "-10min", "format": "json"})
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/render?{q}", timeout=30) as r:
        return [p for s in json.loads(r.read()) for p in s["datapoints"] if p[0] is not None]


def test_thresholds_errors_and_holt_winters_on_graphite_web(graphite) -> None:
    carbon, web_port = graphite
    now = int(time.time())
    steady = "".join(f"gw.hw {7 + i % 3} {now - 200 + i}\n" for i in range(195))  # to now - 6
    feed(carbon.port, steady + f"gw.hw 70 {now - 5}\ngw.a 5 {now - 3}\ngw.b 50 {now - 3}\n")
    wait_until(
        lambda: len(known(web_port, "gw.hw")) >= 191 and known(web_port, "gw.b"), timeout=60, what="carbon"
    )
    url = f"http://127.0.0.1:{web_port}"
    rc, line = run_check(
        "-u", url, "-t", "gw.{a,b}", "--agg", "max", "--from", "-1min", "-w", "10", "-c", "40"
    )
    assert rc == 2 and "gw.b max 50" in line and "'gw.a'=5;10;40" in line, line
    rc, line = run_check(
        "-u", url, "-t", "sumSeries(gw.{a,b})", "--agg", "max", "--from", "-1min", "-c", "55:"
    )
    assert rc == 0 and "'sumSeries(gw.{a,b})'=55;;55:" in line, line
    rc, line = run_check("-u", url, "-t", "gw.never", "--from", "-1min", "-c", "1")
    assert rc == 2 and "no series" in line, line
    rc, line = run_check("-u", url, "-t", "nosuchfunction(gw.a)", "-c", "1")
    assert rc == 3 and url in line, line
    hw = ["-u", url, "-t", "gw.hw", "--agg", "max", "--holt-winters", "--hw-source", "server"]
    hw += ["--bootstrap", "60s", "--seasonality", "20s"]
    rc, line = run_check(*hw, "--from", str(now - 30), "--until", str(now - 10))
    assert rc == 0 and "within the Holt-Winters band" in line, line
    rc, line = run_check(*hw, "--from", str(now - 10), "--until", str(now))
    assert rc == 2 and "outside the Holt-Winters band" in line, line
    # the same bands computed here from the history graphite-web serves: its maths, ported
    hw[hw.index("server")] = "client"
    rc, ours = run_check(*hw, "--from", str(now - 10), "--until", str(now))
    assert rc == 2 and ours.split("|")[1] == line.split("|")[1], (ours, line)
