"""A binary log (`varnishlog -w FILE`) is not varnishlog's text: vlogdump says so and how to read
it, instead of skipping it as a few bad lines."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import wait_until
from tests.servers import Varnish

VLOGDUMP = [sys.executable, "-m", "webops", "vlogdump"]


def test_a_binary_varnishlog_file_is_refused_with_how_to_read_it(varnish: Varnish, tmp_path: Path) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{varnish.port}/cache/binary", timeout=30) as r:
        assert r.status == 200
    wait_until(lambda: "/cache/binary" in varnish.log(), what="varnishlog to have the request")
    binary = tmp_path / "varnish.vsl"
    subprocess.run(
        ["varnishlog", "-d", "-n", str(varnish.workdir), "-w", str(binary)], check=True, timeout=60
    )
    assert binary.stat().st_size > 0
    for args, stdin, name in (([str(binary)], None, str(binary)), ([], binary.read_bytes(), "FILE")):
        r = subprocess.run([*VLOGDUMP, *args], input=stdin, capture_output=True, timeout=60)
        err = r.stderr.decode()
        assert r.returncode == 2, err
        assert err.count("\n") == 1 and err.startswith("webops vlogdump: "), err
        assert "binary varnishlog file" in err and f"varnishlog -r {name} | webops vlogdump" in err, err
        assert r.stdout == b""
    # what it says works: the same file read back as text is read whole
    text = subprocess.run(["varnishlog", "-r", str(binary)], capture_output=True, check=True, timeout=60)
    r = subprocess.run([*VLOGDUMP, "--no-color"], input=text.stdout, capture_output=True, timeout=60)
    assert r.returncode == 0 and b"/cache/binary" in r.stdout, r.stderr
