"""cmdlog on a real host: a throwaway user, Debian's start files, Debian's rsyslog on a socket of
the test's, and each way commands get run (a terminal, `ssh host CMD`, `bash -c`, `sh -c`); what
the report reads back and what doctor says in each setup."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need, wait_until
from webops.cmdlog.snippet import BLOCK, FILE

CMDLOG = [sys.executable, "-m", "webops", "cmdlog"]


@dataclass
class Host:
    user: str
    uid: int
    home: Path
    socket: str
    messages: Path
    etc: Path  # the test's own /etc/nagios, /etc/audit/rules.d and crontabs

    def as_user(
        self, *cmd: str, extra_env: dict[str, str] | None = None, **kw
    ) -> subprocess.CompletedProcess:
        """Run as the user with the scrubbed environment a daemon or sshd gives."""
        env = {"HOME": str(self.home), "USER": self.user, "PATH": "/usr/bin:/bin", "TERM": "dumb"}
        env |= {"WEBOPS_CMDLOG_SOCKET": self.socket, **(extra_env or {})}
        setpriv = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--init-groups"]
        pairs = [f"{k}={v}" for k, v in env.items()]
        return subprocess.run([*setpriv, "env", "-i", *pairs, *cmd], cwd=self.home, timeout=60, **kw)

    def doctor(self, *extra: str) -> tuple[int, dict[str, dict]]:
        r = subprocess.run(
            [
                *CMDLOG,
                "doctor",
                "--user",
                self.user,
                "--socket",
                self.socket,
                "--log",
                str(self.messages),
                "--nrpe-config",
                str(self.etc / "nrpe.cfg"),
                "--audit-rules",
                str(self.etc / "rules.d"),
                "--crontabs",
                str(self.etc / "crontabs"),
                "--format",
                "json",
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode in (0, 1), r.stderr
        return r.returncode, {c["what"]: c for c in map(json.loads, r.stdout.splitlines())}


@pytest.fixture
def host() -> Iterator[Host]:
    need(os.geteuid() == 0, "root, to add a throwaway user")
    need(shutil.which("rsyslogd") is not None, "rsyslogd (Debian's rsyslog)")
    need(shutil.which("useradd") is not None and shutil.which("setpriv") is not None, "useradd, setpriv")
    top = Path(tempfile.mkdtemp(prefix="webops-cmdlog-"))
    top.chmod(0o755)  # the user must reach the socket and its home
    user, home = f"wo-{secrets.token_hex(4)}", top / "home"
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/bash", user], check=True)
    shutil.copytree("/etc/skel", home)  # Debian's .bashrc (with its not-interactive guard), .profile
    shutil.chown(home, user, user)
    for p in home.iterdir():
        shutil.chown(p, user, user)
    for d in ("etc/rules.d", "etc/crontabs"):
        (top / d).mkdir(parents=True)
    daemon = start_rsyslog(top)
    try:
        yield Host(user, pwd_uid(user), home, str(top / "log.sock"), top / "messages", top / "etc")
    finally:
        stop(daemon)
        subprocess.run(["userdel", user], check=False)
        shutil.rmtree(top)


def start_rsyslog(top: Path) -> subprocess.Popen:
    """Debian's rsyslogd on TOP/log.sock, writing every record to TOP/messages."""
    conf = top / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{top}")\n'
        'module(load="imuxsock" SysSock.Use="off")\n'
        f'input(type="imuxsock" Socket="{top}/log.sock")\n'
        f'*.* action(type="omfile" file="{top}/messages" template="RSYSLOG_FileFormat")\n'
    )
    daemon = subprocess.Popen(["rsyslogd", "-n", "-f", str(conf), "-i", str(top / "rsyslog.pid")])
    try:
        wait_until(lambda: (top / "log.sock").exists(), what="rsyslog's socket")
    except BaseException:
        stop(daemon)
        raise
    return daemon


def stop(daemon: subprocess.Popen) -> None:
    """End a daemon the test started (stopped or not)."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGCONT)
        daemon.terminate()
    daemon.wait(30)


def pwd_uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def report(host: Host, *extra: str) -> list[dict]:
    r = subprocess.run(
        [*CMDLOG, "report", str(host.messages), "--format", "json", *extra], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_each_way_of_running_commands_as_a_real_user(host: Host) -> None:
    r = subprocess.run([*CMDLOG, "install", "--user", host.user], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # in a terminal: an interactive bash, typed into through script(1)'s pty
    typed = "cd /tmp\ntrue typed-in-a-terminal\nexit\n"
    host.as_user("script", "-q", "-c", "bash -i", "/dev/null", input=typed.encode(), capture_output=True)
    # `ssh host CMD`: sshd runs the login shell with -c, stdin a socket, SSH_CLIENT set; bash then
    # reads ~/.bashrc but Debian's guard returns at once: only a snippet above it is read
    ssh_env = {"SSH_CLIENT": "127.0.0.1 50000 22", "SSH_CONNECTION": "127.0.0.1 50000 127.0.0.1 22"}
    a, b = socket.socketpair()
    with a, b:
        host.as_user("/bin/bash", "-c", "true over-ssh", extra_env=ssh_env, stdin=a, check=True)
    # non-interactive bash: logged with the BASH_ENV install prints, not without
    bash_env = {"BASH_ENV": str(host.home / FILE)}
    host.as_user("bash", "-c", "true bash-c-with-bash-env", extra_env=bash_env, check=True)
    host.as_user("bash", "-c", "true bash-c-plain; :", check=True)
    # dash reads no bash file: what doctor says (/bin/sh: gap)
    host.as_user("sh", "-c", "true via-sh; /bin/true via-sh-exec", extra_env=bash_env, check=True)

    wanted = ["cd /tmp", "true typed-in-a-terminal", "true over-ssh", "true bash-c-with-bash-env"]

    def logged() -> list[dict]:
        return [r for r in report(host, "--user", host.user) if r["command"] != "exit"]

    wait_until(lambda: len(logged()) >= len(wanted), what="the records in rsyslog's file")
    got = logged()  # each shell's relay sends on its own: in order within a shell only
    cwds = [str(host.home), "/tmp", str(host.home), str(host.home)]
    assert sorted((r["command"], r["cwd"]) for r in got) == sorted(zip(wanted, cwds, strict=True))
    assert {(r["user"], r["source"], r["host"]) for r in got} == {(host.user, "webops", socket.gethostname())}
    assert all(r["pid"] and r["time"] for r in got)
    code, found = host.doctor()
    assert code == 1 and found["/bin/sh"]["state"] == "gap" and "sh -c" in found["/bin/sh"]["detail"]
    # uninstall: the start files are Debian's again, byte for byte
    subprocess.run([*CMDLOG, "uninstall", "--user", host.user], check=True, capture_output=True)
    for name in (".bashrc", ".profile"):
        assert (host.home / name).read_bytes() == Path("/etc/skel", name).read_bytes()
    assert not (host.home / FILE).exists()


def test_what_doctor_says_in_each_setup(host: Host) -> None:
    code, found = host.doctor()
    assert code == 1 and found["syslog socket"]["state"] == "ok" and found["snippet"]["state"] == "fail"
    assert str(host.messages) in found["syslog socket"]["detail"]
    assert found["snippet"]["fix"] == f"webops cmdlog install --user {host.user}"
    code, found = host.doctor("--socket", str(host.etc / "nothing.sock"))
    assert found["syslog socket"]["state"] == "fail" and "rsyslog" in found["syslog socket"]["fix"]

    subprocess.run([*CMDLOG, "install", "--user", host.user], check=True, capture_output=True)
    code, found = host.doctor()
    states = {k: c["state"] for k, c in found.items()}
    assert states == {
        "syslog socket": "ok",
        "snippet": "ok",
        "snippet position": "ok",
        "login shells": "ok",
        "login shell": "ok",
        "/bin/sh": "gap" if os.path.realpath("/bin/sh").endswith("dash") else "ok",
        "bash -c, bash scripts": "gap",
        "NRPE": "ok",
        "auditd": "gap",
    }
    assert f"uid={host.uid} -k webops-cmdlog" in found["auditd"]["fix"]

    # the seed's mistake: the snippet below Debian's guard; install moves it back up
    bashrc = host.home / ".bashrc"
    bashrc.write_text(bashrc.read_text().replace(BLOCK, "") + BLOCK)
    assert host.doctor()[1]["snippet position"]["state"] == "gap"
    subprocess.run([*CMDLOG, "install", "--user", host.user], check=True, capture_output=True)
    assert host.doctor()[1]["snippet position"]["state"] == "ok"

    subprocess.run(["usermod", "-s", "/bin/sh", host.user], check=True)
    assert host.doctor()[1]["login shell"]["state"] == "gap"
    subprocess.run(["usermod", "-s", "/bin/bash", host.user], check=True)

    (host.etc / "nrpe.cfg").write_text(f"nrpe_user={host.user}\ninclude_dir={host.etc}/nrpe.d\n")
    assert host.doctor()[1]["NRPE"]["state"] == "gap"
    (host.etc / "nrpe.d").mkdir()
    (host.etc / "nrpe.d" / "env.cfg").write_text("keep_env_vars=LANG,BASH_ENV\n")
    (host.etc / "rules.d" / "webops-cmdlog.rules").write_text(
        f"-a always,exit -F arch=b64 -S execve -F uid={host.uid} -k webops-cmdlog\n"
    )
    (host.etc / "crontabs" / host.user).write_text(f"BASH_ENV={host.home / FILE}\n* * * * * true\n")
    code, found = host.doctor()
    assert found["bash -c, bash scripts"]["state"] == "ok"
    # the rule in a file is not enough: all is ok (exit 0) only with auditd running it (test_doctor)
    assert code == 1 and found["auditd"]["state"] != "ok", found
    assert found["NRPE"]["fix"] == "the audit rule below"


# ---------------------------------------------------------------- report: where this host's records are

OWN = "webops-cmdlog[4242]: user=nagios uid=110 pid=4300 cwd=/var/lib/nagios cmd=check_disk -w 20"


def report_in(
    root: Path, *args: str, stdin: object = subprocess.DEVNULL, **kw
) -> subprocess.CompletedProcess:
    env = {**os.environ, "WEBOPS_CMDLOG_ROOT": str(root)}
    return subprocess.run(
        [*CMDLOG, "report", "--format", "json", *args],
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        **kw,
    )


def commands(r: subprocess.CompletedProcess) -> list[str]:
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["command"] for line in r.stdout.splitlines()]


def test_report_reads_debians_auth_log_when_no_file_is_named(tmp_path: Path) -> None:
    # Debian's rsyslog writes authpriv (the snippet's facility) to auth.log, not to syslog
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "var/log/syslog").write_text(f"Nov 23 19:40:00 web1 {OWN} in-syslog\n")
    (tmp_path / "var/log/auth.log").write_text(f"Nov 23 19:40:00 web1 {OWN}\n")
    r = report_in(tmp_path)
    assert commands(r) == ["check_disk -w 20"]
    assert f"reading {tmp_path}/var/log/auth.log" in r.stderr
    # named files and stdin (piped, or -) are read as before, whatever the host has
    assert commands(report_in(tmp_path, str(tmp_path / "var/log/syslog"))) == ["check_disk -w 20 in-syslog"]
    piped = f"Nov 23 19:41:00 web1 {OWN} piped\n"
    assert commands(report_in(tmp_path, stdin=None, input=piped)) == ["check_disk -w 20 piped"]
    assert commands(report_in(tmp_path, "-", stdin=None, input=piped)) == ["check_disk -w 20 piped"]


def test_report_reads_the_journal_when_there_is_no_auth_log(tmp_path: Path) -> None:
    remote = Path("/lib/systemd/systemd-journal-remote")
    need(remote.exists() and shutil.which("journalctl") is not None, "systemd-journal-remote, journalctl")
    machine = secrets.token_hex(16)  # journalctl --root reads the journal of the root's machine id
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/machine-id").write_text(machine + "\n")
    (tmp_path / "var/log/journal" / machine).mkdir(parents=True)
    entry = {
        "__REALTIME_TIMESTAMP": "1795462920000000",
        "__MONOTONIC_TIMESTAMP": "1",
        "_BOOT_ID": secrets.token_hex(16),
        "_HOSTNAME": "web2",
        "SYSLOG_IDENTIFIER": "webops-cmdlog",
        "SYSLOG_PID": "77",
        "MESSAGE": "user=deploy uid=1001 pid=78 cwd=/srv cmd=git pull",
    }
    export = "".join(f"{k}={v}\n" for k, v in entry.items()) + "\n"  # journalctl -o export's format
    journal = tmp_path / "var/log/journal" / machine / "system.journal"
    subprocess.run(
        [remote, f"--output={journal}", "-"], input=export.encode(), check=True, capture_output=True
    )
    r = report_in(tmp_path)
    assert commands(r) == ["git pull"]
    assert "reading the journal" in r.stderr and "auth.log: No such file or directory" in r.stderr


def test_report_says_where_it_looked_when_it_finds_no_records(tmp_path: Path) -> None:
    r = report_in(tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    for looked in ("var/log/auth.log", "var/log/secure", "var/log/journal", "run/log/journal"):
        assert f"{tmp_path}/{looked}" in r.stderr, r.stderr


# ---------------------------------------------------------------- start files that are not UTF-8


def test_install_and_uninstall_keep_a_latin1_bashrc_byte_for_byte(tmp_path: Path) -> None:
    original = (
        b"# caf\xe9 cr\xe8me: written by an editor in Latin-1\n" + Path("/etc/skel/.bashrc").read_bytes()
    )
    (tmp_path / ".bashrc").write_bytes(original)
    (tmp_path / ".profile").write_bytes(b"# \xe9t\xe9\n")  # reads neither: the block goes on top
    args = ["--user", f"wo-none-{secrets.token_hex(4)}", "--home", str(tmp_path)]
    r = subprocess.run([*CMDLOG, "install", *args], capture_output=True, text=True)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    bashrc = (tmp_path / ".bashrc").read_bytes()
    assert bashrc.startswith(BLOCK.encode()) and bashrc.endswith(original)
    r = subprocess.run([*CMDLOG, "uninstall", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / ".bashrc").read_bytes() == original
    assert (tmp_path / ".profile").read_bytes() == b"# \xe9t\xe9\n"
