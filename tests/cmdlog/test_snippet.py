"""The snippet in real bash: installed idempotently, logging through one logger into a real
socket, harmless when the logger is gone, and removed without a trace."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need
from webops.cmdlog.records import read
from webops.cmdlog.snippet import FILE

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
    assert {(r.user, r.cwd) for r in got} == {("nagios-test", str(work))}


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
