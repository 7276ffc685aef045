"""The gate's test site: the VMOD built on this host, a backend that counts what reaches it,
and a real varnishd running the generated VCL in front of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import need
from tests.servers import Varnish

GATE = [sys.executable, "-m", "webops", "gate"]


@pytest.fixture(scope="session")
def vmod() -> Iterator[Path]:
    """libvmod_gate.so, built by `webops gate vmod` as an SRE would, into a temp dir."""
    need(shutil.which("varnishd") is not None, "varnishd (apt-get install varnish)")
    need(
        subprocess.run(["pkg-config", "--exists", "varnishapi", "sqlite3"], check=False).returncode == 0,
        "libvarnishapi-dev and libsqlite3-dev (pkg-config varnishapi sqlite3)",
    )
    out = Path(tempfile.mkdtemp(prefix="webops-vmod-"))
    out.chmod(0o755)
    r = subprocess.run([*GATE, "vmod", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    yield out / "libvmod_gate.so"
    shutil.rmtree(out)


class Counting(BaseHTTPRequestHandler):
    """Generic answers are cacheable; personalized ones name the cookie they got."""

    seen: Counter[tuple[str, str]] = Counter()  # (path, X-Webops-Gate) -> requests
    cookies: list[str] = []

    def do_GET(self) -> None:
        decision = self.headers.get("X-Webops-Gate", "")
        cookie = self.headers.get("Cookie", "")
        type(self).seen[(self.path, decision)] += 1
        type(self).cookies.append(cookie)
        body = (f"personalized for {cookie}" if decision == "personalized" else "generic").encode()
        self.send_response(200)
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Backend(ThreadingHTTPServer):
    request_queue_size = 128  # bursts of passed requests: no SYN dropped (a 1 s retransmit)


@dataclass
class Site:
    varnish: Varnish
    db: Path
    config: Path
    backend: type[Counting]

    def build(self, users: dict[str, int], *extra: str) -> subprocess.CompletedProcess:
        """Publish {user: events} the way the batch job would."""
        lines = "".join(f'{{"user_id": "{u}", "events": {n}}}\n' for u, n in users.items())
        return subprocess.run(
            [*GATE, "build", "--config", str(self.config), *extra],
            input=lines,
            capture_output=True,
            text=True,
        )

    def adm(self, *cmd: str) -> str:
        r = subprocess.run(
            ["varnishadm", "-n", str(self.varnish.workdir), *cmd], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def child_starts(self) -> int:
        return self.counter("MGT.child_start")

    def counter(self, name: str) -> int:
        """One of varnishstat's counters (MGT.child_start, MGT.child_panic, ...)."""
        out = subprocess.run(
            ["varnishstat", "-1", "-n", str(self.varnish.workdir), "-f", name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return int(out.split()[1])

    def panic(self) -> str:
        """What `varnishadm panic.show` says: '' when the child never panicked."""
        r = subprocess.run(
            ["varnishadm", "-n", str(self.varnish.workdir), "panic.show"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return "" if "has not panicked" in r.stdout else r.stdout + r.stderr


MAIN_VCL = """vcl 4.1;
import std;
backend default { .host = "127.0.0.1"; .port = "%%d"; }
include "%s";
sub vcl_recv { call webops_gate_recv; }
sub vcl_deliver {
  set resp.http.X-Gate = req.http.X-Webops-Gate;
  set resp.http.X-Gate-Errors = webops_gate.errors();
}
"""


def make_site(vmod: Path, settings: str, *params: str, interval: float = 0.5) -> Iterator[Site]:
    Counting.seen, Counting.cookies = Counter(), []
    server = Backend(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = Path(tempfile.mkdtemp(prefix="webops-gate-"))
    root.chmod(0o755)  # varnishd's worker user reads the profiles file in it
    db = root / "user_profiles.db"
    config = root / "gate.toml"
    config.write_text(
        f'db = "{db}"\nvmod = "{vmod}"\ncheck_interval = {interval}\nurl = "^/api/"\n{settings}'
    )
    snippet = root / "webops-gate.vcl"
    r = subprocess.run([*GATE, "vcl", "--config", str(config)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    snippet.write_text(r.stdout)
    varnish = Varnish(server.server_address[1], MAIN_VCL % snippet, *params)
    try:
        yield Site(varnish, db, config, Counting)
    finally:
        varnish.stop()
        server.shutdown()
        server.server_close()
        shutil.rmtree(root)


@pytest.fixture
def site(vmod: Path) -> Iterator[Site]:
    yield from make_site(vmod, "")


def child_pid(site: Site) -> int:
    import psutil

    (child,) = psutil.Process(site.varnish.proc.pid).children()
    return child.pid


def open_files(site: Site, path: Path) -> int:
    """The varnishd child's descriptors on the profiles file."""
    pid = child_pid(site)
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
        except OSError:
            continue
    return count


def deleted_files(site: Site) -> dict[int, int]:
    """The varnishd child's descriptors on deleted *.db files beside the profiles file (replaced
    by a rename, or removed): {inode: descriptors}, one inode per version still held."""
    pid = child_pid(site)
    held: dict[int, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(f"{site.db.parent}/") and target.endswith(".db (deleted)"):
                ino = os.stat(f"/proc/{pid}/fd/{fd}").st_ino
                held[ino] = held.get(ino, 0) + 1
        except OSError:
            continue
    return held
