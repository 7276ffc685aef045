"""`webops cmdlog doctor` tells the truth: a test record sent to a real rsyslogd and read back (or
not: killed with its socket left behind, stopped, a socket nobody reads filled up, nowhere to
look), auditd missing with only a rules file, and each state of auditd, pure."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.cmdlog.test_host import CMDLOG, start_rsyslog, stop
from tests.conftest import need
from webops.cmdlog import doctor, snippet
from webops.cmdlog.doctor import Audit, Facts, Syslog

ME = pwd.getpwuid(os.geteuid()).pw_name  # whose start files doctor reads does not matter here


def run_doctor(top: Path, *extra: str, root: Path | None = None) -> tuple[int, dict[str, dict]]:
    """doctor on the test's socket and files, as JSON: its exit status and each check by name."""
    env = {**os.environ, "WEBOPS_CMDLOG_ROOT": str(root or top / "root")}
    r = subprocess.run(
        [
            *CMDLOG,
            "doctor",
            "--user",
            ME,
            "--socket",
            str(top / "log.sock"),
            "--nrpe-config",
            str(top / "nrpe.cfg"),
            "--audit-rules",
            str(top / "rules.d"),
            "--crontabs",
            str(top / "crontabs"),
            "--format",
            "json",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, {c["what"]: c for c in map(json.loads, r.stdout.splitlines())}


@pytest.fixture
def top() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="webops-doctor-"))
    (path / "root").mkdir()  # the host's / for doctor's default places: empty unless a test fills it
    (path / "rules.d").mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def rsyslogd(top: Path) -> Iterator[subprocess.Popen]:
    need(shutil.which("rsyslogd") is not None, "rsyslogd (Debian's rsyslog)")
    daemon = start_rsyslog(top)
    try:
        yield daemon
    finally:
        stop(daemon)


def test_a_running_syslog_writes_the_test_record_where_doctor_reads_it(
    top: Path, rsyslogd: subprocess.Popen
) -> None:
    _, found = run_doctor(top, "--log", str(top / "messages"))
    check = found["syslog socket"]
    assert check["state"] == "ok" and str(top / "messages") in check["detail"], check
    assert "doctor test record" in (top / "messages").read_text()
    r = subprocess.run([*CMDLOG, "report", str(top / "messages")], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, ""), r  # not a command anyone ran
    # with no --log: the file Debian's rsyslog writes authpriv to, /var/log/auth.log
    (top / "root/var/log").mkdir(parents=True)
    (top / "root/var/log/auth.log").symlink_to(top / "messages")
    _, found = run_doctor(top)
    check = found["syslog socket"]
    assert check["state"] == "ok" and f"{top}/root/var/log/auth.log" in check["detail"], check


def test_a_killed_syslog_that_left_its_socket_behind(top: Path, rsyslogd: subprocess.Popen) -> None:
    rsyslogd.kill()
    rsyslogd.wait(30)
    assert (top / "log.sock").exists()  # SIGKILL: rsyslogd could not remove it
    code, found = run_doctor(top, "--log", str(top / "messages"))
    check = found["syslog socket"]
    assert code == 1 and check["state"] == "fail", check
    assert "nothing reads it" in check["detail"] and "systemctl restart rsyslog" in check["fix"]


def test_a_stopped_syslog_takes_the_record_but_never_writes_it(top: Path, rsyslogd: subprocess.Popen) -> None:
    rsyslogd.send_signal(signal.SIGSTOP)  # as stalled as on a full disk: its socket still takes a few
    code, found = run_doctor(top, "--log", str(top / "messages"))
    check = found["syslog socket"]
    assert code == 1 and check["state"] == "fail", check
    assert f"not in {top / 'messages'} after" in check["detail"] and "df -h /var/log" in check["fix"]


def test_a_full_socket_that_nobody_reads(top: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(top / "log.sock"))  # bound, never read: a syslog daemon that hangs
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
            while True:
                try:
                    filler.sendto(b"<86>filler", socket.MSG_DONTWAIT, str(top / "log.sock"))
                except BlockingIOError:
                    break
        code, found = run_doctor(top, "--log", str(top / "messages"))
    check = found["syslog socket"]
    assert code == 1 and check["state"] == "fail", check
    assert "full" in check["detail"] and "dropped N" in check["detail"], check


def test_a_syslog_that_takes_the_record_but_nowhere_to_read_it_back(
    top: Path, rsyslogd: subprocess.Popen
) -> None:
    code, found = run_doctor(top)  # the test's / has no auth.log, no secure, no journal
    check = found["syslog socket"]
    assert code == 1 and check["state"] == "unknown", check
    assert f"{top}/root/var/log/auth.log: No such file or directory" in check["detail"]
    assert "--log FILE" in check["fix"]


def test_auditd_missing_but_a_rules_file_holds_the_rule(top: Path) -> None:
    # CI installs no auditd: there this case must run (need fails under CI=true)
    need(not shutil.which("auditctl", path="/usr/sbin:/sbin:/usr/bin:/bin"), "a host without auditd")
    uid = os.geteuid()
    (top / "rules.d" / "webops-cmdlog.rules").write_text(snippet.audit_rule(uid) + "\n")
    code, found = run_doctor(top)
    check = found["auditd"]
    assert code == 1 and check["state"] == "gap", check
    assert "not installed" in check["detail"] and check["fix"] == "apt-get install auditd; augenrules --load"
    assert found["/bin/sh"]["state"] == ("ok" if os.path.realpath("/bin/sh").endswith("bash") else "gap")


def test_exit_status_is_documented_and_usage_errors_exit_2(top: Path) -> None:
    r = subprocess.run([*CMDLOG, "doctor", "--help"], capture_output=True, text=True)
    assert (
        "exit status: 0 every check is ok; 1 at least one is a gap, a fail or unknown; 2 a usage"
        in " ".join(r.stdout.split())
    )
    r = subprocess.run([*CMDLOG, "doctor", "--user", "wo-nobody-here"], capture_output=True, text=True)
    assert r.returncode == 2 and "no user" in r.stderr
    r = subprocess.run([*CMDLOG, "doctor", "--user", ME, "--no-such-option"], capture_output=True, text=True)
    assert r.returncode == 2


# ---------------------------------------------------------------- pure: each state of auditd

RULE = snippet.audit_rule(110)
ALL_OK = Facts(
    user="nagios",
    uid=110,
    home=Path("/var/lib/nagios"),
    shell="/bin/bash",
    syslog=Syslog("/dev/log", None, "/var/log/auth.log", True),
    sh="/bin/dash",
    perl=True,
    files={
        snippet.FILE: snippet.SNIPPET,
        ".bashrc": snippet.BLOCK + "case $- in\n",
        ".profile": snippet.BLOCK,
        "crontab": f"BASH_ENV=/var/lib/nagios/{snippet.FILE}\n",
    },
    nrpe=None,
    audit=Audit(installed=True, files=(RULE,), loaded=(RULE,), enabled=1, pid=4321),
)


def audit_says(**change: object) -> tuple[str, str, str]:
    found = doctor.checks(replace(ALL_OK, audit=replace(ALL_OK.audit, **change)))  # type: ignore[arg-type]
    c = next(c for c in found if c.what == "auditd")
    return c.state, c.detail, c.fix


def test_all_ok_exits_0_and_each_state_of_auditd_is_told() -> None:
    found = doctor.checks(ALL_OK)
    assert {c.state for c in found} == {"ok"} and doctor.exit_status(found) == 0, found
    state, detail, fix = audit_says(installed=False, loaded=None, enabled=None, pid=None)
    assert (state, fix) == ("gap", "apt-get install auditd; augenrules --load") and "not installed" in detail
    state, detail, fix = audit_says(installed=False, files=(), loaded=None, enabled=None, pid=None)
    assert state == "gap" and fix.startswith("apt-get install auditd; echo '-a always,exit")
    state, detail, fix = audit_says(loaded=None, enabled=None, pid=None, why="not root")
    assert state == "unknown" and "not root" in detail and "as root" in fix
    assert audit_says(pid=0)[::2] == ("gap", "systemctl start auditd")
    assert audit_says(enabled=0)[::2] == ("gap", "auditctl -e 1")
    assert audit_says(loaded=())[::2] == ("gap", "augenrules --load")
    state, detail, fix = audit_says(files=())
    assert state == "gap" and "next boot" in detail and "/etc/audit/rules.d/webops-cmdlog.rules" in fix
    other = ("-a always,exit -F arch=b64 -S execve -F uid=999 -k other",)
    assert audit_says(files=other, loaded=other)[0] == "gap"

    unknown = replace(ALL_OK, syslog=Syslog("/dev/log", None, "", None, "no auth.log"))
    found = doctor.checks(unknown)
    assert [c.state for c in found if c.state != "ok"] == ["unknown"] and doctor.exit_status(found) == 1
