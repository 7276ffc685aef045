"""A real `webops statsd` process on free loopback ports, driven over real sockets."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, stop_process, wait_until


def under_1024_descriptors() -> dict[str, Any]:
    """Popen arguments for a daemon whose descriptor limit is 1024 (soft and hard, as `ulimit -n
    1024`), with this process's own limit raised so that it can open more connections than that."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    return {"preexec_fn": lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))}


class Daemon:
    def __init__(self, tmp_path: Path, config: dict[str, Any], popen: dict[str, Any] | None = None) -> None:
        self.tmp = tmp_path
        self.port = config.setdefault("port", free_port())
        self.mgmt_port = config.setdefault("mgmt_port", free_port())
        self.http_port = (
            config.setdefault("http", {"address": "127.0.0.1", "port": free_port()})
            and (config["http"]["port"])
        )
        self.flush_file = tmp_path / "flush.jsonl"
        config.setdefault("backends", ["./backends/file"])
        config.setdefault("file", {"path": str(self.flush_file), "format": "json"})
        config.setdefault("flushInterval", 3_600_000)  # no flush mid-test unless a test asks for one
        self.config_path = tmp_path / "config.js"
        self.write_config(config)
        self.log_path = tmp_path / "daemon.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        popen = dict(popen or {})
        command = [*popen.pop("prefix", []), sys.executable, "-m", "webops", "statsd", str(self.config_path)]
        command += popen.pop("args", [])  # flags after the config file
        self.proc = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp_path, **popen
        )
        try:
            wait_until(self._console_up, what="the management console to answer")
        except BaseException:  # a failed start must not leave a daemon behind
            self.stop()
            raise

    def write_config(self, config: dict[str, Any]) -> None:
        self.config = config
        self.config_path.write_text(json.dumps(config))

    def _console_up(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"daemon exited with {self.proc.returncode}: {self.log_path.read_text()}")
        try:
            self.console("health", until=b"\n")
            return True
        except OSError:
            return False

    def http(self, path: str) -> tuple[int, str]:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def children(self) -> set[int]:
        """The pids of the daemon's UDP reader processes (multiprocessing's resource tracker aside)."""
        out = set()
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for pid in (task / "children").read_text().split():
                    with contextlib.suppress(OSError):
                        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                            out.add(int(pid))
        return out

    def send(self, *packets: bytes, port: int | None = None, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            for p in packets:
                s.sendto(p, (host, port or self.port))

    def console(self, command: str, until: bytes = b"END\n\n", port: int | None = None) -> str:
        with socket.create_connection(("127.0.0.1", port or self.mgmt_port), timeout=5) as s:
            s.sendall(command.encode() + b"\n")
            data = b""
            while not data.endswith(until):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data.decode()

    def total(self, counter: str = "packets_received") -> int:
        for line in self.console("stats").splitlines():
            if line.startswith(f"statsd.{counter}: "):
                return int(line.split(": ")[1])
        raise AssertionError("no statsd totals in the stats reply")

    def flushes(self) -> list[dict]:
        if not self.flush_file.exists():
            return []
        text = self.flush_file.read_text()
        complete = text[: text.rfind("\n") + 1]  # the backend may be writing the last line right now
        return [json.loads(line) for line in complete.splitlines() if line]

    def summed(self, kind: str, key: str) -> float:
        return sum(f[kind].get(key, 0) for f in self.flushes())

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int:
        code = stop_process(self.proc)
        self.log.close()
        return code

    def logs(self) -> str:
        return self.log_path.read_text()


def finest(path: Path, name: str, aggregate: str) -> float:
    """`aggregate` over a series' points in its store's finest archive, read as another process
    would (`coalesce(sum(p.value), 0)`: the history's total)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute(
            f"SELECT {aggregate} FROM points p JOIN series s ON s.id = p.series "
            "WHERE s.name = ? AND p.archive = 0",
            (name,),
        ).fetchone()
    db.close()
    return float(row[0])


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator:
    started: list[Daemon] = []

    def start(_popen: dict[str, Any] | None = None, **config: Any) -> Daemon:
        workdir = tmp_path / f"d{len(started)}"
        workdir.mkdir()
        d = Daemon(workdir, config, _popen)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
