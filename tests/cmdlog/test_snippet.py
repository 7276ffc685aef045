"""The snippet in real bash: installed idempotently, logging through one logger into a real
socket, harmless when the logger is gone, and removed without a trace."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import need
from webops.cmdlog.records import read
from webops.cmdlog.snippet import DROPPED, FILE, SNIPPET

DEBIAN_BASHRC = '# ~/.bashrc\ncase $- in\n    *i*) ;;\n      *) return;;\nesac\nalias ll="ls -l"\n'


def cmdlog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webops", "cmdlog", *args], capture_output=True, text=True)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    need(
        shutil.which("bash") is not None and shutil.which("logger") is not None, "bash and logger (bsdutils)"
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text(DEBIAN_BASHRC)
    return home


def records(sock: socket.socket) -> list:
    sock.settimeout(2)
    lines = []
    try:
        while True:
            lines.append(sock.recv(8192).decode() + "\n")
    except TimeoutError:
        pass
    return list(read(lines))


def test_install_is_idempotent_goes_above_the_guard_and_uninstall_restores(home: Path) -> None:
    r = cmdlog("install", "--user", "nagios-test", "--home", str(home))
    assert r.returncode == 0 and "BASH_ENV=" in r.stdout and "auditctl" in r.stdout
    assert "keep_env_vars=BASH_ENV" in r.stdout  # what NRPE needs
    assert cmdlog("install", "--user", "nagios-test", "--home", str(home)).stdout.startswith(
        "install: nothing to change"
    )
    text = (home / ".bashrc").read_text()
    assert text.count(f". ~/{FILE}") == 1 and text.index(f". ~/{FILE}") < text.index("case $- in")
    assert cmdlog("uninstall", "--user", "nagios-test", "--home", str(home)).returncode == 0
    assert (home / ".bashrc").read_text() == DEBIAN_BASHRC and not (home / FILE).exists()


def test_commands_of_interactive_and_non_interactive_bash_are_logged(home: Path, tmp_path: Path) -> None:
    cmdlog("install", "--user", "nagios-test", "--home", str(home))
    path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "USER": "nagios-test", "WEBOPS_CMDLOG_SOCKET": path}
    work = tmp_path / "my dir"
    work.mkdir()
    bash_env = {**env, "BASH_ENV": str(home / FILE)}  # what install says non-interactive bash needs
    subprocess.run(["bash", "-c", "true one; echo two >/dev/null"], env=bash_env, cwd=work, check=True)
    subprocess.run(["bash", "-i", "-c", "true three"], env=env, cwd=work, capture_output=True, check=True)
    subprocess.run(["bash", "-c", "true not-logged"], env=env, cwd=work, check=True)  # no BASH_ENV
    got = records(sock)
    sock.close()
    # each shell's relay sends on its own: in order within a shell, not across shells
    by_shell: dict[int | None, list[str]] = {}
    for r in got:
        by_shell.setdefault(r.pid, []).append(r.command)
    assert sorted(by_shell.values()) == [["true one", "echo two > /dev/null"], ["true three"]]
    # the user is the real uid's, whatever USER says
    assert {(r.user, r.cwd) for r in got} == {(pwd.getpwuid(os.getuid()).pw_name, str(work))}


def test_the_shell_goes_on_when_the_logger_is_gone(home: Path, tmp_path: Path) -> None:
    cmdlog("install", "--user", "nagios-test", "--home", str(home))
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "WEBOPS_CMDLOG_SOCKET": str(tmp_path / "nobody.sock")}
    script = "kill $__webops_cmdlog_pid; wait $__webops_cmdlog_pid 2>/dev/null; echo still; echo here"
    r = subprocess.run(["bash", "-i", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "still\nhere\n"


def test_a_stalled_syslog_never_hangs_the_shell_and_the_loss_is_counted(home: Path, tmp_path: Path) -> None:
    """A syslog daemon that stops reading (rsyslog on a full disk): logger would block, its pipe
    fill, and the shell hang on its next command. The relay stops waiting, counts and says it."""
    cmdlog("install", "--user", "nagios-test", "--home", str(home))
    path = str(tmp_path / "stalled.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)  # and nothing read until the shell is done
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "BASH_ENV": str(home / FILE),
        "WEBOPS_CMDLOG_SOCKET": path,
    }
    loop = "for ((i = 0; i < 3000; i++)); do true; done; echo finished"
    r = subprocess.run(["bash", "-c", loop], env=env, capture_output=True, text=True, timeout=120)
    assert r.stdout == "finished\n"  # and the relay holds none of the shell's output open
    got = records(sock)  # now read: what was queued, and the count of the rest
    sock.close()
    commands = [r for r in got if r.source == "webops"]
    dropped = sum(r.dropped for r in got)
    assert dropped > 0 and len(commands) + dropped == 3 * 3000 + 3, got[-3:]  # set, 3 a turn, test, echo
    r = subprocess.run(
        [sys.executable, "-m", "webops", "cmdlog", "report", "--user", "nobody-else"],
        input=f"<86>Nov 23 20:51:16 webops-cmdlog[1]: dropped {dropped} records: the socket was full\n",
        capture_output=True,
        text=True,
    )
    assert f"dropped {dropped} records" in r.stdout and f"{dropped} records were dropped" in r.stderr


def test_one_relay_per_shell_not_a_process_per_command(home: Path, tmp_path: Path) -> None:
    cmdlog("install", "--user", "nagios-test", "--home", str(home))
    path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "BASH_ENV": str(home / FILE),
        "WEBOPS_CMDLOG_SOCKET": path,
    }
    subprocess.run(["bash", "-c", "for i in 1 2 3 4 5 6 7 8; do true; done"], env=env, check=True)
    sock.settimeout(2)
    senders = []
    try:
        while True:
            senders += re.findall(r"webops-cmdlog\[(\d+)\]", sock.recv(8192).decode())
    except TimeoutError:
        pass
    sock.close()
    assert len(senders) >= 8 and len(set(senders)) == 1  # every record from the same process


def datagrams(sock: socket.socket, until: str, timeout: float = 10) -> list[bytes]:
    """What the socket receives until a datagram holds `until` and then a quiet half second."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(1 << 17))
        except TimeoutError:
            if any(until.encode() in d for d in got):
                break
    return got


def report_json(got: list[bytes]) -> list[dict]:
    lines = b"".join(d + b"\n" for d in got)
    r = subprocess.run(
        [sys.executable, "-m", "webops", "cmdlog", "report", "--format", "json"],
        input=lines,
        capture_output=True,
    )
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_the_user_is_the_real_uid_whatever_USER_says(tmp_path: Path) -> None:
    need(os.geteuid() == 0 and shutil.which("setpriv") is not None, "root (to run shells as other uids)")
    place = Path(tempfile.mkdtemp(dir="/tmp"))  # where the other uids can reach
    try:
        place.chmod(0o755)
        (place / FILE).write_text(SNIPPET)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(place / "log.sock"))
        (place / "log.sock").chmod(0o777)
        env = [f"HOME={place}", "PATH=/usr/bin:/bin", "USER=root", f"BASH_ENV={place / FILE}"]
        env.append(f"WEBOPS_CMDLOG_SOCKET={place / 'log.sock'}")
        for uid in (pwd.getpwnam("nobody").pw_uid, 54321):  # one with a name, one with none
            ids = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
            cmd = ["setpriv", *ids, "env", "-i", *env, "bash", "-c", f"true as-{uid}"]
            subprocess.run(cmd, cwd=place, check=True, timeout=30)
        got = report_json(datagrams(sock, "as-54321"))
        sock.close()
    finally:
        shutil.rmtree(place)
    assert sorted((r["user"], r["command"]) for r in got) == [
        ("54321", "true as-54321"),
        ("nobody", "true as-65534"),
    ]


def test_any_command_and_any_directory_come_back_exactly(home: Path, tmp_path: Path) -> None:
    """Bytes syslog would mangle or a parser would take for its own (spaces, %41, newlines, tabs,
    bytes of no UTF-8 character), and a command longer than any syslog datagram: in parts of about
    1 KB, joined back by report."""
    (home / FILE).write_text(SNIPPET)
    path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    work = os.path.join(os.fsencode(tmp_path), b"a b%41\nc\xff\xc3\xa9  ")
    os.mkdir(work)
    words = b"true 'p%41q' 'line1\nline2' '\xff\xfe' '\xc3\xa9t\xc3\xa9' 'tab\there' \"\xc2\x9b[2J\" x%"
    long = b"true " + b"%20 \xc3\xa9\xff" * 3000 + b" end"  # 21 KB, of characters syslog cuts in two
    script = words + b"; " + long + b"; true last"
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "BASH_ENV": str(home / FILE),
        "WEBOPS_CMDLOG_SOCKET": path,
    }
    subprocess.run([b"bash", b"-c", script], env=env, cwd=work, check=True, timeout=30)
    got = datagrams(sock, "true last")
    sock.close()
    assert max(map(len, got)) <= 1024  # what any syslog takes whole
    rows = report_json(got)
    text = lambda b: b.decode("utf-8", "backslashreplace")  # noqa: E731
    assert [(r["command"], r["cwd"]) for r in rows] == [
        (text(c), text(work)) for c in (words, long, b"true last")
    ]


def test_a_short_shell_counts_what_an_outage_lost(home: Path, tmp_path: Path) -> None:
    """Syslog gone while a shell runs: its relay says so when the socket is back (it tries for a
    few seconds after the shell ends), or, stopped before that, leaves the count in ~/.webops-cmdlog.dropped
    for the next relay to send."""
    (home / FILE).write_text(SNIPPET)
    path = str(tmp_path / "log.sock")
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "BASH_ENV": str(home / FILE),
        "WEBOPS_CMDLOG_SOCKET": path,
    }
    subprocess.run(["bash", "-c", "true one; true two"], env=env, check=True, timeout=30)
    time.sleep(0.5)  # the relay has tried to send them by now
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)  # back after the shell is gone
    got = report_json(datagrams(sock, "dropped"))
    assert [(r["source"], r["dropped"]) for r in got] == [("dropped", 2)]
    sock.close()
    os.unlink(path)
    r = subprocess.run(
        ["bash", "-c", 'true three; echo "$__webops_cmdlog_pid"'], env=env, capture_output=True, text=True
    )
    time.sleep(0.5)  # the relay has read the shell's records, and tries to say it could not send them
    os.kill(int(r.stdout), signal.SIGTERM)  # stopped (systemd stopping the unit, a reboot) before it could
    deadline = time.monotonic() + 10
    while not (home / DROPPED).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (home / DROPPED).read_text() == "2\n"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    subprocess.run(["bash", "-c", "true four"], env=env, check=True, timeout=30)
    got = report_json(datagrams(sock, "true four"))
    sock.close()
    assert [(r["source"], r["dropped"], r["command"][:10]) for r in got] == [
        ("dropped", 2, "dropped 2 "),
        ("webops", 0, "true four"),
    ]
    assert not (home / DROPPED).exists()
