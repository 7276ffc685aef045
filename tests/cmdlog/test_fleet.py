"""cmdlog on a fleet: each host's rsyslog forwards authpriv over TCP to a central rsyslog, which
goes away for a while; `report --host` reads one host's records out of the central file, and the
gaps are said per host."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cmdlog.test_host import stop
from tests.conftest import free_port, need, wait_until
from webops.cmdlog.snippet import FILE, SNIPPET

CMDLOG = [sys.executable, "-m", "webops", "cmdlog"]

CENTRAL = """\
global(workDirectory="{dir}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}")
*.* action(type="omfile" file="{dir}/messages" template="RSYSLOG_FileFormat")
"""

HOST = """\
global(workDirectory="{dir}" localHostname="{name}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{dir}/log.sock")
authpriv.* action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
                  queue.type="LinkedList" action.resumeRetryCount="-1" action.resumeInterval="1")
"""


def rsyslogd(where: Path, conf: str, ready: Path) -> subprocess.Popen:
    (where / "rsyslog.conf").write_text(conf)
    cmd = ["rsyslogd", "-n", "-f", str(where / "rsyslog.conf"), "-i", str(where / "rsyslog.pid")]
    daemon = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ready.exists() or daemon.poll() is not None, what=f"rsyslogd in {where}")
        assert daemon.poll() is None, f"rsyslogd in {where} exited {daemon.returncode}"
    except BaseException:
        stop(daemon)
        raise
    return daemon


def listening(port: int) -> bool:
    return f":{port:04X} " in Path("/proc/net/tcp").read_text() and any(
        line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
    )


class Fleet:
    def __init__(self, top: Path) -> None:
        self.top, self.port = top, free_port()
        self.central_dir = top / "central"
        self.central_dir.mkdir()
        self.messages = self.central_dir / "messages"
        self.daemons: dict[str, subprocess.Popen] = {}
        self.home = top / "home"
        self.home.mkdir()
        (self.home / FILE).write_text(SNIPPET)

    def start_central(self) -> None:
        conf = CENTRAL.format(dir=self.central_dir, port=self.port)
        self.daemons["central"] = rsyslogd(self.central_dir, conf, self.central_dir / "rsyslog.pid")
        wait_until(lambda: listening(self.port), what="the central rsyslogd listening")

    def stop_central(self) -> None:
        stop(self.daemons.pop("central"))
        wait_until(lambda: not listening(self.port), what="the central rsyslogd gone")

    def start_host(self, name: str) -> None:
        where = self.top / name
        where.mkdir()
        conf = HOST.format(dir=where, name=name, port=self.port)
        self.daemons[name] = rsyslogd(where, conf, where / "log.sock")

    def run(self, name: str, commands: list[str]) -> None:
        """Commands in a non-interactive bash on host NAME, logged by the snippet's relay."""
        env = {
            "HOME": str(self.home),
            "PATH": "/usr/bin:/bin",
            "BASH_ENV": str(self.home / FILE),
            "WEBOPS_CMDLOG_SOCKET": str(self.top / name / "log.sock"),
        }
        subprocess.run(["bash", "-c", "; ".join(commands)], env=env, check=True, timeout=60)

    def report(self, *extra: str) -> tuple[list[dict], str]:
        cmd = [*CMDLOG, "report", str(self.messages), "--format", "json", *extra]
        r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()], r.stderr

    def central_text(self) -> str:
        return self.messages.read_text(errors="replace") if self.messages.exists() else ""


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    need(shutil.which("rsyslogd") is not None, "rsyslogd (Debian's rsyslog)")
    need(shutil.which("bash") is not None and shutil.which("perl") is not None, "bash and perl")
    f = Fleet(tmp_path)
    try:
        yield f
    finally:
        for daemon in f.daemons.values():
            stop(daemon)


def test_report_host_accounts_for_every_command_across_a_central_restart(fleet: Fleet) -> None:
    fleet.start_central()
    for name in ("web1", "web2"):
        fleet.start_host(name)
    ran: dict[str, list[str]] = {"web1": [], "web2": []}

    def run(phase: str) -> None:
        for name in ran:
            commands = [f"true {name}-{phase}-{i}" for i in range(5)]
            fleet.run(name, commands)
            ran[name] += commands

    def arrived(name: str) -> bool:
        rows, _ = fleet.report("--host", name)
        got = {r["command"] for r in rows}
        lost = sum(r["dropped"] for r in rows)
        return len(set(ran[name]) - got) <= lost

    run("before")
    for name in ran:
        wait_until(lambda n=name: arrived(n), what=f"{name}'s first records", detail=fleet.central_text)
    fleet.stop_central()
    run("down")  # queued by each host's rsyslogd while the central one is gone
    fleet.start_central()
    run("after")
    for name in ran:
        wait_until(
            lambda n=name: arrived(n), timeout=30, what=f"all of {name}'s records", detail=fleet.central_text
        )

    for name, other in (("web1", "web2"), ("web2", "web1")):
        rows, _ = fleet.report("--host", name)
        assert {r["host"] for r in rows} == {name}
        commands = [r["command"] for r in rows if r["source"] == "webops"]
        mine = [c for c in commands if c in ran[name]]
        assert len(mine) == len(set(mine)), "a command reported twice"
        assert not any(c in ran[other] for c in commands)
        missing = set(ran[name]) - set(mine)
        assert len(missing) <= sum(r["dropped"] for r in rows), (name, sorted(missing))
    both, _ = fleet.report("--host", "web1", "--host", "WEB2")
    assert {r["host"] for r in both} == {"web1", "web2"}


def test_dropped_records_are_said_per_host_and_filtered_by_host() -> None:
    lines = (
        "2026-11-23T19:40:00+00:00 web1 webops-cmdlog[7]: dropped 3 records: the socket was full\n"
        "2026-11-23T19:40:01+00:00 web2 webops-cmdlog[8]: dropped 2 records: the socket was full\n"
        "2026-11-23T19:40:02+00:00 web1 webops-cmdlog[7]: v2 user=nagios uid=110 pid=9 cwd=/ cmd=true a\n"
        "2026-11-23T19:40:03+00:00 web2 webops-cmdlog[8]: v2 user=nagios uid=110 pid=9 cwd=/ cmd=true b\n"
    )

    def report(*extra: str) -> subprocess.CompletedProcess:
        cmd = [*CMDLOG, "report", "-", *extra]
        return subprocess.run(cmd, input=lines, capture_output=True, text=True)

    r = report()
    assert "5 records were dropped" in r.stderr
    assert "host web1: 3 records dropped (the socket was full)" in r.stderr
    assert "host web2: 2 records dropped (the socket was full)" in r.stderr
    r = report("--host", "web1")
    assert r.returncode == 0 and [line.split("  ")[1] for line in r.stdout.splitlines()] == ["web1", "web1"]
    assert "host web1: 3 records dropped" in r.stderr and "web2" not in r.stderr
    assert "3 records were dropped" in r.stderr
