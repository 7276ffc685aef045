"""`webops cmdlog report`: every record format, real bash + logger into a real socket, filters."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import need
from webops.cmdlog.records import read

CMDLOG = [sys.executable, "-m", "webops", "cmdlog", "report"]

SEED = "Mar 30 10:48:05 big1 nagios: Running /usr/lib/nagios/plugins/check_cpu -i 5 -w 90 -c 98\n"
OWN = (
    "2026-11-23T19:40:00.123456+00:00 web1 webops-cmdlog[4242]: user=nagios uid=110 pid=4300 "
    'cwd=/var/lib/my%20dir cmd=/usr/lib/nagios/plugins/check_disk -w 20 -c 10 -r "^/(ssd|store[1-3])?$"\n'
)
SNOOPY = (
    "Nov 23 19:41:02 web1 snoopy[5151]: [uid:110 sid:5100 tty:(none) cwd:/tmp filename:/usr/bin/ls]: "
    "ls -la /tmp\n"
)
JOURNAL = json.dumps(
    {
        "__REALTIME_TIMESTAMP": "1795462920000000",
        "_HOSTNAME": "web2",
        "SYSLOG_IDENTIFIER": "webops-cmdlog",
        "SYSLOG_PID": "77",
        "MESSAGE": "user=deploy uid=1001 pid=78 cwd=/srv cmd=git pull",
    }
)
AUDIT = """----
type=PROCTITLE msg=audit(11/23/2026 19:43:10.120:812) : proctitle=check_load -w 5
type=CWD msg=audit(11/23/2026 19:43:10.120:812) : cwd=/var/lib/nagios
type=EXECVE msg=audit(11/23/2026 19:43:10.120:812) : argc=3 a0=check_load a1=-w a2=5
type=SYSCALL msg=audit(11/23/2026 19:43:10.120:812) : arch=x86_64 syscall=execve success=yes exit=0 \
ppid=900 pid=901 auid=unset uid=nagios gid=nagios comm=check_load exe=/usr/lib/nagios/plugins/check_load \
key=webops-cmdlog
"""


def test_every_format_comes_out_in_one_shape() -> None:
    records = list(read([SEED, OWN, SNOOPY, JOURNAL + "\n", "unrelated: line\n", *AUDIT.splitlines(True)]))
    got = [(r.source, r.host, r.user, r.pid, r.cwd, r.command) for r in records]
    assert got == [
        ("seed", "big1", "nagios", None, "", "/usr/lib/nagios/plugins/check_cpu -i 5 -w 90 -c 98"),
        (
            "webops",
            "web1",
            "nagios",
            4300,
            "/var/lib/my dir",
            '/usr/lib/nagios/plugins/check_disk -w 20 -c 10 -r "^/(ssd|store[1-3])?$"',
        ),
        ("snoopy", "web1", "110", 5151, "/tmp", "ls -la /tmp"),
        ("webops", "web2", "deploy", 78, "/srv", "git pull"),
        ("audit", "", "nagios", 901, "/var/lib/nagios", "check_load -w 5"),
    ]


def test_real_bash_and_logger_into_a_real_socket(tmp_path: Path) -> None:
    need(shutil.which("logger") is not None, "logger not found (bsdutils)")
    path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    trap = f"trap 'logger --socket {path} -t nagios \"Running $BASH_COMMAND\"' DEBUG"  # the seed's recipe
    subprocess.run(["bash", "-c", f"{trap}; echo hi >/dev/null; cd /tmp && true"], check=True)
    received = [sock.recv(4096).decode() for _ in range(3)]
    sock.close()
    r = subprocess.run(
        [*CMDLOG, "--format", "json"], input="\n".join(received) + "\n", capture_output=True, text=True
    )
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(row["user"], row["command"]) for row in rows] == [
        ("nagios", "echo hi > /dev/null"),
        ("nagios", "cd /tmp"),
        ("nagios", "true"),
    ]


def test_filters_and_text_output(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(SEED + OWN + SNOOPY + AUDIT)
    r = subprocess.run(
        [*CMDLOG, str(log), "--user", "nagios", "--grep", "check_(disk|load)"], capture_output=True, text=True
    )
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 2
    assert lines[0].split("  ")[:5] == ["2026-11-23 19:40:00", "web1", "nagios", "4300", "/var/lib/my dir"]
    r = subprocess.run([*CMDLOG, str(log), "--since", "2026-11-23T19:42"], capture_output=True, text=True)
    assert [line.split("  ")[-1] for line in r.stdout.splitlines()] == ["check_load -w 5"]
    r = subprocess.run([*CMDLOG, str(tmp_path / "missing.log")], capture_output=True, text=True)
    assert r.returncode == 2 and "missing.log" in r.stderr and r.stderr.count("\n") == 1
    r = subprocess.run([*CMDLOG, "--since", "yesterday"], capture_output=True, text=True, input="")
    assert r.returncode == 2 and "ISO 8601" in r.stderr
    assert os.listdir(tmp_path) == ["auth.log"]  # report only reads


DATA = Path(__file__).parent / "data"
# What a throwaway user ran (by `runuser -u nagioscap -- bash -c ...`) on a Debian 12 host with
# Debian's snoopy 2.5.1 preloaded, and then with Debian's auditd 3.0.9 and the rule `webops cmdlog
# install` prints: audit.log as auditd wrote it (ENRICHED), ausearch-i.txt is `ausearch -i` of it.
CAPTURED = [
    ("/tmp", "bash -c cd /var/tmp; ls -la /tmp/cap >/dev/null; sh -c "),
    ("/var/tmp", "ls -la /tmp/cap"),
    ("/var/tmp", 'sh -c id -u; /bin/echo "quoted arg" "x=1"'),
    ("/var/tmp", "id -u"),
    ("/var/tmp", "/bin/echo quoted arg x=1"),  # one argument with a space: hex-encoded in the raw log
    ("/var/tmp", "/usr/bin/printf %s\\n tab"),
]


def test_real_audit_events_raw_and_interpreted_come_out_the_same() -> None:
    for name in ("audit.log", "ausearch-i.txt"):
        with open(DATA / name, encoding="utf-8") as f:
            got = list(read(f))
        # runuser's failed execve attempts along PATH ran nothing: they are not commands
        assert [(r.cwd, r.command[: len(c)]) for r, (_, c) in zip(got, CAPTURED, strict=True)] == CAPTURED
        assert {(r.user, r.source) for r in got} == {("nagioscap", "audit")}
        assert [r.pid for r in got] == list(range(5692, 5698))
        assert got[0].time is not None and got[0].time.strftime("%m-%d %H:%M:%S") == "11-23 20:39:04"


def test_real_snoopy_lines() -> None:
    with open(DATA / "snoopy-2.5.1.syslog", encoding="utf-8") as f:
        got = list(read(f))
    assert [(r.host, r.user, r.pid, r.cwd, r.command) for r in got][-2:] == [
        ("vm", "nagioscap", 5579, "/var/tmp", "id -u"),
        ("vm", "nagioscap", 5580, "/var/tmp", "/bin/echo quoted arg"),
    ]
    assert len(got) == 6 and {r.source for r in got} == {"snoopy"}


def test_control_characters_of_a_command_do_not_reach_the_terminal() -> None:
    hostile = OWN.replace("cmd=", "cmd=printf '\x1b[2J\x1b]0;owned\x07' #")
    r = subprocess.run(CMDLOG, input=hostile, capture_output=True, text=True)
    assert r.returncode == 0 and "\x1b" not in r.stdout and "\\x1b[2J" in r.stdout
    r = subprocess.run([*CMDLOG, "--format", "json"], input=hostile, capture_output=True, text=True)
    assert json.loads(r.stdout)["command"].startswith("printf '\x1b[2J")  # JSON keeps it, escaped


JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"


def test_the_journal(tmp_path: Path) -> None:
    """A real journal file (systemd-journal-remote writes it from the export format journald
    itself uses), read through journalctl: the snippet's, snoopy's and the seed's records only."""
    need(shutil.which("journalctl") is not None and os.path.exists(JOURNAL_REMOTE), "systemd-journal-remote")
    entries = [
        ("webops-cmdlog", 4242, "user=nagios uid=110 pid=4300 cwd=/var/lib/my%20dir cmd=check_disk -w 20"),
        ("sshd", 77, "Accepted publickey for nagios"),
        ("nagios", 4301, "Running check_load -w 5"),
        ("webops-cmdlog", 4242, "user=deploy uid=1001 pid=4302 cwd=/srv cmd=git pull"),
    ]
    export = "".join(
        f"__REALTIME_TIMESTAMP={1795462920000000 + i * 1000000}\n__MONOTONIC_TIMESTAMP={i + 1}\n"
        f"_BOOT_ID={'0' * 31}1\n_HOSTNAME=web1\nSYSLOG_IDENTIFIER={tag}\n_PID={pid}\nMESSAGE={msg}\n\n"
        for i, (tag, pid, msg) in enumerate(entries)
    )
    journal = tmp_path / "remote.journal"
    subprocess.run([JOURNAL_REMOTE, "-o", str(journal), "-"], input=export, text=True, check=True)
    r = subprocess.run(
        [*CMDLOG, "--journal", str(journal), "--format", "json"], capture_output=True, text=True
    )
    got = [
        (row["user"], row["host"], row["cwd"], row["command"])
        for row in map(json.loads, r.stdout.splitlines())
    ]
    assert got == [
        ("nagios", "web1", "/var/lib/my dir", "check_disk -w 20"),
        ("deploy", "web1", "/srv", "git pull"),
    ]
    r = subprocess.run(
        [*CMDLOG, "--journal", str(journal), "--user", "nagios"], capture_output=True, text=True
    )
    assert [line.split("  ")[-1] for line in r.stdout.splitlines()] == ["check_disk -w 20", "check_load -w 5"]
    r = subprocess.run([*CMDLOG, "--journal", str(tmp_path / "none.journal")], capture_output=True, text=True)
    assert (
        r.returncode == 2 and r.stderr.startswith("webops cmdlog: journalctl: ") and r.stderr.count("\n") == 1
    )


V2 = "Nov 23 19:40:00 web1 webops-cmdlog[4242]: "


def test_v2_records_decode_every_byte_and_the_first_format_still_reads() -> None:
    lines = [
        V2 + "v2 user=nagios uid=110 pid=4300 cwd=/srv/a%20b%2541%0Ac%FF "
        "cmd=printf '%25s\\n' 'x%0Ay' $'\\t' é%C2%9B%FF%20%20\n",
        V2 + "v2 user=54321 uid=54321 pid=4301 cwd=/ cmd=\n",  # a uid with no name; an empty command
        OWN,  # the first format: cwd with %20 only, the command raw
    ]
    got = [(r.user, r.pid, r.cwd, r.command, r.source) for r in read(lines)]
    assert got == [
        ("nagios", 4300, "/srv/a b%41\nc\\xff", "printf '%s\\n' 'x\ny' $'\\t' é\x9b\\xff  ", "webops"),
        ("54321", 4301, "/", "", "webops"),
        (
            "nagios",
            4300,
            "/var/lib/my dir",
            '/usr/lib/nagios/plugins/check_disk -w 20 -c 10 -r "^/(ssd|store[1-3])?$"',
            "webops",
        ),
    ]


def test_a_record_in_parts_is_joined_back_and_one_missing_a_part_is_counted_dropped() -> None:
    whole = "v2 user=deploy uid=1001 pid=77 cwd=/srv%20x cmd=" + "echo " + "a" * 2500 + " end"
    parts = [whole[:900], whole[900:1800], whole[1800:]]
    other = "Nov 23 19:40:00 web1 webops-cmdlog[5000]: "  # another relay's, on the same host
    lines = [
        V2 + f"v2 part=1:1/3 {parts[0]}\n",
        other + f"v2 part=1:1/3 {parts[0]}\n",  # its parts 2 and 3 never arrive
        "Nov 23 19:40:00 web2 webops-cmdlog[4242]: v2 part=1:2/3 x\n",  # another host's
        V2 + f"v2 part=1:2/3 {parts[1]}\n",
        V2 + "v2 user=deploy uid=1001 pid=77 cwd=/ cmd=true between\n",
        V2 + f"v2 part=1:3/3 {parts[2]}\n",
        V2 + f"v2 part=2:2/2 {parts[2]}\n",  # its first part never arrives
    ]
    got = [(r.source, r.host, r.user, r.pid, r.cwd, r.command, r.dropped) for r in read(lines)]
    assert got[:2] == [
        ("webops", "web1", "deploy", 77, "/", "true between", 0),
        ("webops", "web1", "deploy", 77, "/srv x", "echo " + "a" * 2500 + " end", 0),
    ]
    assert sorted(got[2:]) == [
        (
            "dropped",
            "web1",
            "",
            4242,
            "",
            "dropped 1 records: a command too long for one record arrived in part (parts 2 of 2)",
            1,
        ),
        (
            "dropped",
            "web1",
            "deploy",
            77,
            "/srv x",
            "dropped 1 records: a command too long for one record arrived in part (parts 1 of 3)",
            1,
        ),
        (
            "dropped",
            "web2",
            "",
            4242,
            "",
            "dropped 1 records: a command too long for one record arrived in part (parts 2 of 3)",
            1,
        ),
    ]
    r = subprocess.run([*CMDLOG, "--user", "nobody"], input="".join(lines), capture_output=True, text=True)
    assert r.stdout.count("dropped 1 records") == 3 and "3 records were dropped" in r.stderr
