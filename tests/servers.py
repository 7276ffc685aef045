"""Real servers from Debian's packages, started on free loopback ports for one test.

A test that needs one and cannot find it fails under CI=true and skips elsewhere (tests.conftest.need).
"""

from __future__ import annotations

import contextlib
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import free_port, need, stop_process, wait_until


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Logged:
    """A server process of a test writing its output to `root/<OUT>`: stopped and read alike."""

    OUT = "server.out"
    root: Path
    proc: subprocess.Popen | None
    log: Any

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 30)
            self.log.close()
        self.proc = None

    def log_tail(self, size: int = 1500) -> str:
        out = self.root / self.OUT
        return out.read_text(errors="replace")[-size:] if out.exists() else ""


class Carbon(Logged):
    """A carbon-cache (Debian's graphite-carbon) writing whisper files under `root`."""

    OUT = "carbon.out"

    def __init__(self, root: Path, retention: str = "1s:1h") -> None:
        need(
            shutil.which("carbon-cache") is not None,
            "carbon-cache not found (apt-get install graphite-carbon)",
        )
        self.root = root
        self.whisper_dir = root / "storage" / "whisper"
        self.port, self.pickle_port, self.query_port = free_port(), free_port(), free_port()
        (root / "log").mkdir(parents=True, exist_ok=True)
        self.conf = root / "carbon.conf"
        self.conf.write_text(
            "[cache]\n"
            f"STORAGE_DIR = {root}/storage\nLOCAL_DATA_DIR = {self.whisper_dir}\n"
            f"WHISPER_DIR = {self.whisper_dir}\n"
            f"LOG_DIR = {root}/log\nPID_DIR = {root}\nUSER =\nENABLE_LOGROTATION = False\n"
            f"LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {self.port}\n"
            f"PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {self.pickle_port}\n"
            f"CACHE_QUERY_INTERFACE = 127.0.0.1\nCACHE_QUERY_PORT = {self.query_port}\n"
            "ENABLE_UDP_LISTENER = False\nMAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = 100000\n"
            "MAX_CREATES_PER_MINUTE = inf\nCACHE_WRITE_STRATEGY = sorted\nENABLE_TAGS = False\n"
        )
        (root / "storage-schemas.conf").write_text(f"[everything]\npattern = .*\nretentions = {retention}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Carbon:
        self.log = open(self.root / self.OUT, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                "carbon-cache",
                f"--config={self.conf}",
                f"--pidfile={self.root}/carbon.pid",
                "--nodaemon",
                "--logfile=-",
                "start",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                lambda: _port_open(self.port) and _port_open(self.pickle_port),
                timeout=60,
                what="carbon-cache to listen",
            )
        except BaseException:  # never leave a half-started server behind
            self.stop()
            raise
        return self

    def value(self, path: str, ts: int) -> float | None:
        """The datapoint stored for metric `path` at `ts`, read from its whisper file."""
        return self.values(path, ts, ts).get(ts)

    def values(self, path: str, start_ts: int, end_ts: int) -> dict[int, float]:
        """Every datapoint stored for `path` from `start_ts` to `end_ts` (slot time -> value)."""
        import whisper

        wsp = self.whisper_dir / (path.replace(".", "/") + ".wsp")
        if not wsp.exists():
            return {}
        try:
            fetched = whisper.fetch(str(wsp), start_ts - 1, end_ts + 1)
        except (whisper.WhisperException, OSError, ValueError, struct.error):
            return {}  # carbon is still creating the file: its header is not all there yet
        if fetched is None:
            return {}
        (start, _end, step), values = fetched
        return {start + i * step: v for i, v in enumerate(values) if v is not None}


class Memcached:
    """A memcached (Debian's package) on a free loopback port; `restart` keeps the port."""

    def __init__(self, *extra: str) -> None:
        need(shutil.which("memcached") is not None, "memcached not found (apt-get install memcached)")
        self.port = free_port()
        self.extra = extra
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "memcached",
                "-u",
                "nobody",
                "-l",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "0",
                "-t",
                "2",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: _port_open(self.port), what="memcached to listen")
        except BaseException:
            self.stop()
            raise

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> dict[str, str]:
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"stats\r\n")
            data = b""
            while not data.endswith(b"END\r\n"):
                data += s.recv(65536)
        return dict(line.split(" ", 2)[1:] for line in data.decode().splitlines() if line.startswith("STAT "))

    def stop(self) -> None:
        stop_process(self.proc, 10)


class Varnish:
    """varnishd (Debian's varnish) on a free loopback port, in front of `backend_port`.

    Its working directory (-n) lives under a world-traversable temp dir: varnishd's worker runs as
    an unprivileged user and pytest's own temp dirs are private."""

    VCL = """vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "%d"; }
sub vcl_recv {
  if (req.url ~ "^/pass") { return (pass); }
  if (req.url ~ "^/synth") { return (synth(403, "Forbidden here")); }
}
"""

    def __init__(self, backend_port: int, vcl: str | None = None, *params: str) -> None:
        import os
        import tempfile

        need(
            shutil.which("varnishd") is not None and shutil.which("varnishlog") is not None,
            "varnishd/varnishlog not found (apt-get install varnish)",
        )
        self.root = Path(tempfile.mkdtemp(prefix="webops-varnish-"))
        os.chmod(self.root, 0o755)
        vcl_file = self.root / "test.vcl"
        vcl_file.write_text((vcl or self.VCL) % backend_port)
        vcl_file.chmod(0o644)
        self.workdir = self.root / "work"
        self.port = free_port()
        self.out = open(self.root / "varnishd.out", "wb")  # noqa: SIM115 - closed in stop()
        self.command = [
            "varnishd",
            "-F",
            "-a",
            f"127.0.0.1:{self.port}",
            "-f",
            str(vcl_file),
            "-n",
            str(self.workdir),
            "-s",
            "malloc,32m",
            "-T",
            "127.0.0.1:0",
            *(arg for p in params for arg in ("-p", p)),
        ]
        self.proc = subprocess.Popen(self.command, stdout=self.out, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: _port_open(self.port), timeout=60, what="varnishd to listen")
        except BaseException:
            self.stop()
            raise

    def restart(self) -> None:
        """Stop varnishd and start it again on the same port, VCL and working directory."""
        stop_process(self.proc, 30)
        self.proc = subprocess.Popen(self.command, stdout=self.out, stderr=subprocess.STDOUT)
        wait_until(lambda: _port_open(self.port), timeout=60, what="varnishd to listen again")

    def log(self, *args: str) -> str:
        """What varnishlog -d (the shared memory log, dumped) prints, with extra varnishlog args."""
        return subprocess.run(
            ["varnishlog", "-d", "-n", str(self.workdir), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    def stop(self) -> None:
        stop_process(self.proc, 30)
        self.out.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _pg_bin(name: str) -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


class Postgres:
    """A PostgreSQL (Debian's package) initdb'ed into a temp dir, on loopback and a free port.

    initdb refuses to run as root, so as root it runs as `postgres` (runuser), in a directory that
    user owns."""

    def __init__(self) -> None:
        import os
        import tempfile

        self.initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        need(
            self.initdb is not None and self.pg_ctl is not None,
            "PostgreSQL server binaries not found (apt-get install postgresql)",
        )
        self.root = Path(tempfile.mkdtemp(prefix="webops-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            [self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
        )
        self.start()

    def start(self) -> None:
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c fsync=off"
        )
        self._run(
            [self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start"]
        )

    def halt(self) -> None:
        """Stop the server but keep its data (start() brings it back)."""
        self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def _run(self, cmd: list) -> None:
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def connect(self, **kwargs):
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, **kwargs)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)


class Prometheus:
    """A Prometheus server (Debian's package) scraping `targets` (host:port of /metrics) every
    `interval`, its TSDB and config under `root`, its HTTP API on a free loopback port.

    One job, `statsd`, one instance per target, as a fleet of daemons is scraped. `query` and
    `query_range` read back through its HTTP API, as Grafana or an alert rule would."""

    def __init__(self, root: Path, targets: list[str], interval: str = "1s") -> None:
        need(shutil.which("prometheus") is not None, "prometheus not found (apt-get install prometheus)")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = root / "prometheus.yml"
        self.config.write_text(
            f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n"
            "scrape_configs:\n  - job_name: statsd\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        self.out = open(root / "prometheus.out", "wb")  # noqa: SIM115 - closed in stop()
        # cwd=root: whatever it writes by a relative default stays out of the checkout
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.config}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=info",
            ],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
        try:
            wait_until(self._ready, timeout=60, what="prometheus to be ready", detail=self.log_tail)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        import urllib.error
        import urllib.request

        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def api(self, path: str, **params: str) -> Any:
        """The `data` of an /api/v1 answer (an error status fails the test with Prometheus' words)."""
        import json
        import urllib.error
        import urllib.parse
        import urllib.request

        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                answer = json.load(r)
        except urllib.error.HTTPError as e:
            answer = json.load(e)
        assert answer["status"] == "success", f"{path} {params}: {answer}"
        return answer["data"]

    def query(self, expr: str, **params: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant vector as {sorted labels: value} (a scalar as {(): value})."""
        data = self.api("query", query=expr, **params)
        if data["resultType"] == "scalar":
            return {(): float(data["result"][1])}
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in data["result"]}

    def samples(self, selector: str, window: str = "10m") -> dict[tuple[tuple[str, str], ...], list]:
        """The raw samples scraped in the last `window` ((timestamp, value), oldest first) per
        series: what Prometheus stored, without its functions' extrapolation."""
        data = self.api("query", query=f"{selector}[{window}]")
        return {
            tuple(sorted(r["metric"].items())): [(float(t), float(v)) for t, v in r["values"]]
            for r in data["result"]
        }

    def own(self) -> dict[str, float]:
        """Prometheus' own /metrics, unlabelled samples and label-summed ones by name."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[s.name] = out.get(s.name, 0.0) + s.value
        return out

    def log_tail(self, size: int = 3000) -> str:
        out = self.root / "prometheus.out"
        return out.read_text(errors="replace")[-size:] if out.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 30)
            self.out.close()
        self.proc = None
