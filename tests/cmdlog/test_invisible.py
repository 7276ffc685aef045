"""The snippet is invisible to the shell it watches: each script below, run by bash with the
snippet and without it, prints the same on stdout and stderr, leaves the same files and exits the
same, and its commands still reach the socket. `bash -c` and `bash FILE` read the snippet from
BASH_ENV (what `install` prints for non-interactive bash); `bash -i` reads it from ~/.bashrc, the
script on stdin.

Not covered, because no snippet can help it: at the end of a `bash -c` string bash gives
$BASH_COMMAND back the last command of the BASH_ENV file, any BASH_ENV file (so an EXIT trap of
`bash -c` shows that; a script file's does not); `set -v` echoes every trap's text."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need
from webops.cmdlog.records import Record, read
from webops.cmdlog.snippet import BLOCK, FILE, SNIPPET

# bash started with descriptor 10 already open when asked (a service's inherited descriptor: bash's
# {var} then hands out 11 and up), BASH_ENV set only with the snippet, then the shell under test
LAUNCH = (
    'if [ -n "$1" ]; then exec 10</dev/null; fi; if [ -n "$2" ]; then export BASH_ENV="$2"; fi; '
    'shift 2; exec bash "$@"'
)


@dataclass
class Place:
    root: Path
    socket: socket.socket
    path: str
    lines: list[str]

    def home(self, snippet: bool) -> Path:
        return self.root / ("home" if snippet else "plain")


@dataclass
class Run:
    out: str
    err: str
    code: int
    files: dict[str, bytes]
    pid: int | None  # the shell's (under script(1): not known, the socket is the test's anyway)


@pytest.fixture
def place(tmp_path: Path) -> Place:
    need(shutil.which("bash") is not None and shutil.which("perl") is not None, "bash and perl")
    for name, snippet in (("home", True), ("plain", False)):
        home = tmp_path / name
        home.mkdir()
        (home / ".bashrc").write_text(BLOCK)  # the same start file; only one has the snippet to read
        if snippet:
            (home / FILE).write_text(SNIPPET)
    path = str(tmp_path / "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield Place(tmp_path, sock, path, [])
    sock.close()


def run(
    place: Place,
    script: str,
    snippet: bool,
    interactive: bool = False,
    pty: bool = False,
    file: bool = False,
    opts: tuple = (),
    fd10: bool = False,
) -> Run:
    work = place.root / "work"  # the same directory for both runs: what prints it prints the same
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    home = place.home(snippet)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TERM": "dumb", "LC_ALL": "C.UTF-8"}
    env |= {"HISTFILE": "/dev/null", "WEBOPS_CMDLOG_SOCKET": place.path}
    bash_env = str(home / FILE) if snippet and not interactive else ""
    args = ["bash", "--norc", "-c", LAUNCH, "launch", "1" if fd10 else "", bash_env, *opts]
    if file:
        (place.root / "script.sh").write_text(script)
    args += ["-i"] if interactive else [str(place.root / "script.sh")] if file else ["-c", script]
    if pty:  # a terminal, and so job control: script(1) types the script in
        need(shutil.which("script") is not None, "script (util-linux)")
        args, interactive = ["script", "-q", "-c", "bash -i", "/dev/null"], True
    p = subprocess.Popen(
        args,
        env=env,
        cwd=work,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # no terminal to take: `bash -i` reads the script from stdin
    )
    try:
        out, err = p.communicate(script.encode() if interactive else b"", timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail(f"the shell {'with' if snippet else 'without'} the snippet hangs: {script!r}")
    files = {str(f.relative_to(work)): f.read_bytes() for f in sorted(work.rglob("*")) if f.is_file()}
    text = [s.decode(errors="replace") for s in (out, err)]
    if interactive:  # pids, and bash's complaint about the terminal it has not (when a job ends)
        text = [re.sub(r"\d{3,}", "N", re.sub(r"(?m)^bash: \[.*tcsetattr: .*\n", "", t)) for t in text]
    return Run(text[0], text[1], p.returncode, files, None if pty else p.pid)


def records(place: Place, pid: int | None, want: tuple[str, ...]) -> list[Record]:
    """The records of the shell `pid` once those of the commands `want` (or any) have arrived."""
    deadline = time.monotonic() + 10
    place.socket.settimeout(0.1)
    while True:
        got = [r for r in read(place.lines) if pid in (None, r.pid)]
        commands = [r.command for r in got]
        if (got and all(w in commands for w in want)) or time.monotonic() > deadline:
            return got
        with contextlib.suppress(TimeoutError):
            place.lines.append(place.socket.recv(65536).decode() + "\n")


BATTERY = [
    # bash waits for no relay, lists none, and $! stays the script's
    ("wait", "sleep 0.1 & wait; echo $?", {}),
    ("wait -n", "sleep 0.3 & sleep 0.1 & wait -n; echo $?; wait; echo $?", {}),
    ("jobs", "sleep 2 & jobs; kill %1; wait $!; echo $?; jobs", {}),
    ("$!", 'echo "[$!]"; sleep 0.1 & [ -n "$!" ] && echo set; wait', {}),
    # what the last command left
    (
        "$_",
        'echo "[$_]"; mkdir -p d/e && cd "$_" && echo "${PWD##*/}"; true a b; echo "$_"; x=1; echo "[$_]"',
        {},
    ),
    ("$?", "false; echo $?; (exit 7); echo $?; ! true; echo $?", {}),
    (
        "PIPESTATUS",
        'true | false | (exit 3); echo "${PIPESTATUS[@]}"; set -o pipefail; true | false; echo $?',
        {},
    ),
    ("LINENO", "echo $LINENO\nf() {\n  echo $LINENO\n}\nf; echo $LINENO", {}),
    # traces
    ("set -x", 'set -x; echo a; x=$(echo sub); f() { echo "in $1"; }; f "$x"; set +x; echo done', {}),
    ("bash -x", "echo a; true b", {"opts": ("-x",)}),
    # errors that end the script
    ("set -e", "set -e; true; echo one; false; echo never", {}),
    (
        "set -e in a function",
        "set -e; f() { false; echo in-f; }; f || echo caught; echo after; f; echo never",
        {},
    ),
    ("set -u", 'set -u; echo one; echo "$nope"; echo never', {}),
    ("bash -eu", 'echo one; [ -z "${x-}" ]; false; echo never', {"opts": ("-e", "-u")}),
    # the script's own traps
    ("trap '' PIPE", "trap '' PIPE; yes | head -1; echo \"${PIPESTATUS[@]}\"", {}),
    ("default SIGPIPE", 'yes | head -1; echo "${PIPESTATUS[@]}"', {}),
    ("own PIPE trap", "trap 'echo pipe' PIPE; true; trap -p PIPE", {}),
    ("own DEBUG trap", "trap 'echo \"dbg: $BASH_COMMAND\"' DEBUG; echo one; true two", {}),
    ("own ERR trap", "trap 'echo \"err $? at $BASH_COMMAND\"' ERR; false x; echo after", {}),
    (
        "own RETURN trap",
        "set -T; trap 'echo \"ret ${FUNCNAME[0]-main}\"' RETURN; f() { return 2; }; f; echo $?",
        {},
    ),
    ("own EXIT trap", "trap 'echo \"exit $?\"' EXIT; true x; exit 3", {}),
    ("extdebug", "shopt -s extdebug; f() { echo in-f; }; f; echo after", {}),
    # descriptors and exec
    ("exec 11>file", "exec 11>f11; echo hi >&11; echo there; true; exec 11>&-; cat f11", {"fd10": True}),
    ("exec 10>file", "exec 10>f10; echo hi >&10; echo there; true; exec 10>&-; cat f10", {}),
    ("exec {fd}>file", 'exec {fd}>dyn; echo "fd=$fd"; echo hi >&$fd; exec {fd}>&-; cat dyn', {}),
    ("exec {fd} with 10 open", 'exec {fd}>dyn; echo "fd=$fd"; echo hi >&$fd; cat dyn', {"fd10": True}),
    ("exec >file", "exec 3>&1 >out; echo hidden; true; exec >&3 3>&-; cat out", {}),
    ("exec a command", "echo before; exec echo replaced", {}),
    # functions, caller, subshells, options
    ("caller", "f() { caller; return 3; }; f; echo $?; g() { f; }; g", {}),
    (
        "subshells",
        '(cd /; echo "$PWD"; exit 4); echo $?; echo "$(echo sub; exit 5)" $?; x=$(true); echo "[$x]"',
        {},
    ),
    ("set -T", 'set -T; f() { echo "in f"; }; x=$(f); echo "$x"; (f); f', {}),
    ("set -a", "set -a; x=1; true; env | grep -c '^__webops'", {}),
    ("IFS", "IFS=/; x=a/b; echo $x; set -- $x; echo $#", {}),
    # a script file (`bash FILE`, what cron and units run)
    ("file wait", "sleep 0.1 & wait; echo $?\n", {"file": True}),
    ("file $_ LINENO", 'echo a b\necho "$_ $LINENO"\nf() { caller; }\nf\n', {"file": True}),
    ("file EXIT trap", "trap 'echo \"exit $? after $BASH_COMMAND\"' EXIT\ntrue x\nexit 3\n", {"file": True}),
    ("file set -x", "set -x\necho a\nf() { true; }\nf\n", {"file": True}),
    # interactive: the snippet from ~/.bashrc, the script typed on stdin
    ("-i wait", "sleep 0.1 & wait; echo $?\n", {"interactive": True}),
    ("-i jobs", "sleep 2 &\njobs\nkill %1\nwait\necho $?\n", {"interactive": True}),
    ("-i $_ $?", 'echo a b\necho "$_"\nfalse\necho $?\n', {"interactive": True}),
    ("-i history", "echo a\nhistory 2\n", {"interactive": True}),
    ("-i set -x", "set -x\necho a\nf() { true; }\nf\n", {"interactive": True}),
    ("-i trap '' PIPE", "trap '' PIPE\nyes | head -1\necho ${PIPESTATUS[@]}\n", {"interactive": True}),
    ("terminal fg", 'sleep 0.3 &\nfg\necho "rc=$?"\njobs\nexit\n', {"pty": True}),
    ("terminal wait", "sleep 0.2 & wait\necho $?\nexit\n", {"pty": True}),
]


@pytest.mark.parametrize(("script", "how"), [(s, h) for _, s, h in BATTERY], ids=[n for n, _, _ in BATTERY])
def test_the_shell_cannot_tell(place: Place, script: str, how: dict) -> None:
    plain = run(place, script, snippet=False, **how)
    logged = run(place, script, snippet=True, **how)
    assert (logged.out, logged.err, logged.code) == (plain.out, plain.err, plain.code)
    assert logged.files == plain.files
    got = records(place, logged.pid, ())
    assert got, "no record of the shell with the snippet"
    assert {r.user for r in got} == {pwd.getpwuid(os.getuid()).pw_name}
    assert got[0].cwd == str(place.root / "work")


def test_a_descriptor_the_script_reuses_gets_no_record(place: Place) -> None:
    """The relay's descriptor is high up; a script that takes that very number for a file of its own
    gets its file as it wrote it: the snippet sees the descriptor is no longer its pipe, and stops."""
    probe = run(place, "ls /proc/$$/fd", snippet=True)
    high = max(int(n) for n in probe.out.split())
    assert high > 100  # the relay's, where scripts do not go
    script = f"exec {high}>mine; echo hi >&{high}; true two; echo there >&{high}; exec {high}>&-; cat mine"
    plain, logged = run(place, script, snippet=False), run(place, script, snippet=True)
    assert logged.out == plain.out == "hi\nthere\n" and logged.files == plain.files
    got = [x.command for x in records(place, logged.pid, (f"exec {high}> mine",))]
    assert got == [f"exec {high}> mine"]  # what came after went nowhere, and not into the file


def test_the_snippet_parses_and_does_nothing_in_dash(place: Place) -> None:
    """A `sh` login reads ~/.profile, and so the snippet: it must neither fail nor leave anything."""
    need(shutil.which("dash") is not None, "dash")
    snippet = place.home(True) / FILE
    r = subprocess.run(
        ["dash", "-c", f'. {snippet}; echo "ok $?"; set | grep -c webops_cmdlog'],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(place.home(True))},
    )
    assert (r.stdout, r.stderr) == ("ok 0\n0\n", "")
