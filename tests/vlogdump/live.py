"""Helpers for the tests that run vlogdump live: `varnishlog -n DIR | webops vlogdump`, its
output gathered by a thread so that a test can poll it."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

from tests.conftest import stop_process, wait_until
from tests.servers import Varnish

VLOGDUMP = [sys.executable, "-m", "webops", "vlogdump"]


def ncsa(varnish: Varnish, *args: str) -> list[list[str]]:
    """varnishncsa over the whole log: vxid, %D, handling, URL per line."""
    out = subprocess.run(
        ["varnishncsa", "-d", "-n", str(varnish.workdir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [line.split(" ", 3) for line in out.splitlines()]


CLIENT = ("-E", "-F", "%{Varnish:vxid}x %D %{Varnish:handling}x %U")  # -E: ESI subrequests too
BACKEND = ("-b", "-F", "%{Varnish:vxid}x %D - %U")


def default_signals() -> None:
    """In the child: SIGINT as in a terminal, even when the test runner was started with it
    ignored (a background job); vlogdump leaves an ignored signal ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def get(varnish: Varnish, path: str, timeout: float = 30) -> None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{varnish.port}{path}", timeout=timeout) as r:
            r.read()
    except urllib.error.HTTPError:
        pass


def send_raw(varnish: Varnish, data: bytes, read: bool = True) -> None:
    """Bytes straight on a new connection; read the answer (to the close) or hang up at once."""
    # Varnish may reset or close what it refuses, mid-way
    with socket.create_connection(("127.0.0.1", varnish.port), timeout=30) as s, contextlib.suppress(OSError):
        s.sendall(data)
        if read:
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass


class Live:
    """`varnishlog -n DIR | webops vlogdump --format json ...`, as an operator runs it."""

    def __init__(self, varnish: Varnish, *args: str) -> None:
        self.varnish = varnish
        self.log = subprocess.Popen(["varnishlog", "-n", str(varnish.workdir)], stdout=subprocess.PIPE)
        self.proc = subprocess.Popen(
            [*VLOGDUMP, "--format", "json", "--join-wait", "0.5", *args],
            stdin=self.log.stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_signals,
        )
        assert self.log.stdout is not None
        self.log.stdout.close()  # vlogdump's now: it sees the end of input if varnishlog goes
        self.records: list[dict] = []
        self.lines: list[str] = []
        self.err = ""
        self.readers = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for t in self.readers:
            t.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            with contextlib.suppress(ValueError):
                self.records.append(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.err = self.proc.stderr.read()

    def urls(self) -> set[str]:
        return {r["url"] for r in self.records}

    def attach(self, prefix: str = "/probe") -> None:
        """Wait until varnishlog reads the log: requests until one comes out of vlogdump."""
        n = [0]

        def seen() -> bool:
            n[0] += 1
            get(self.varnish, f"{prefix}/{n[0]}")
            return any(url.startswith(prefix + "/") for url in self.urls())

        wait_until(seen, timeout=60, what=f"a {prefix} request out of a live vlogdump", detail=self.detail)

    def detail(self) -> str:
        return f"rc={self.proc.poll()} out={self.lines[-5:]} err={self.err[-500:]}"

    def finished(self, timeout: float = 30) -> int:
        self.proc.wait(timeout)
        for t in self.readers:
            t.join(timeout)
        return self.proc.returncode

    def stop(self) -> None:
        stop_process(self.proc)
        stop_process(self.log)
        for t in self.readers:
            t.join(10)
