"""`webops cmdlog doctor`: what will and will not be logged for a user on this host, and why.

Facts are gathered at the edge (`gather`: passwd, start files, the syslog socket and where its
records land, /bin/sh, NRPE's config, auditd); `checks` is pure and turns them into lines, each
with its fix. A line is `ok`, a `gap` (some ways of running commands are not logged), a `fail`
(nothing is) or `unknown` (this run could not find out, e.g. not as root; the fix says how to).

The syslog check sends a real record, as the snippet's relay does (authpriv.info, tag
webops-cmdlog, without waiting on a full socket), `doctor test record TOKEN` (report skips it),
then looks for it for a few seconds where the host's syslog writes authpriv: `--log FILE`, else
/var/log/auth.log (Debian) or /var/log/secure (Red Hat) when readable, else the journal. The
auditd check asks auditctl whether auditd runs (-s) and has the rule loaded (-l), as root.

Exit status (`exit_status`): 0 every check is ok; 1 at least one is a gap, a fail or unknown;
2 a usage error (an unknown user, a bad option).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import snippet
from .records import TAG

# where a distribution's rsyslog writes authpriv (Debian and Ubuntu; Red Hat and Fedora), under a root
AUTH_LOGS = ("var/log/auth.log", "var/log/secure")
JOURNALS = ("var/log/journal", "run/log/journal")  # systemd-journald's, persistent and volatile
FULL_WAIT = 1.0  # seconds a full socket may take to take the test record (the relay waits as long)
SEEN_WAIT = 3.0  # seconds the test record may take to appear where syslog writes


@dataclass(frozen=True)
class Check:
    state: str  # ok, gap, fail, unknown
    what: str
    detail: str
    fix: str = ""


def exit_status(found: list[Check]) -> int:
    """0 when every check is ok, else 1 (2, a usage error, is the command line's)."""
    return 0 if all(c.state == "ok" for c in found) else 1


@dataclass(frozen=True)
class Nrpe:
    path: str
    user: str
    keep_env_vars: tuple[str, ...]


@dataclass(frozen=True)
class Syslog:
    """What became of a test record sent to the socket."""

    socket: str
    refused: str | None  # missing, refused (nothing reads it), full, or an error; None: it took it
    place: str  # where it was looked for: a file or "the journal"; "" when there was nowhere
    seen: bool | None  # it appeared there in time; None: it could not be looked for (why says)
    why: str = ""


@dataclass(frozen=True)
class Audit:
    installed: bool  # auditctl is on this host
    files: tuple[str, ...]  # rule lines of the rules directory
    loaded: tuple[str, ...] | None  # `auditctl -l`; None when it could not be asked (why says)
    enabled: int | None  # `auditctl -s`: 0 auditing off, 1 on, 2 on and locked
    pid: int | None  # `auditctl -s`: auditd's pid, 0 when no auditd takes the kernel's records
    why: str = ""


@dataclass(frozen=True)
class Facts:
    user: str
    uid: int
    home: Path
    shell: str  # the login shell in the password database
    syslog: Syslog
    sh: str  # what /bin/sh is
    perl: bool  # the snippet's relay runs on it
    files: Mapping[str, str | None]  # start file name -> its text (None: absent)
    nrpe: Nrpe | None
    audit: Audit


def checks(f: Facts) -> list[Check]:
    """Every check, in the order an SRE would read them."""
    audit = _audit(f)
    complete = audit.state == "ok"
    out = [_socket(f), *_snippet(f), _login(f), _shell(f, complete), _sh(f, complete)]
    out += [_non_interactive(f), _nrpe(f, complete), audit]
    return out


def _socket(f: Facts) -> Check:
    g, what = f.syslog, "syslog socket"
    start = "systemctl restart rsyslog (or systemd-journald, when /dev/log is its)"
    if g.refused == "missing":
        return Check(
            "fail",
            what,
            f"{g.socket}: missing: every record is dropped (and logger still exits 0)",
            "apt-get install rsyslog (or run systemd-journald, whose socket is /dev/log)",
        )
    if g.refused == "refused":
        return Check(
            "fail",
            what,
            f"{g.socket}: nothing reads it (the syslog daemon is stopped; its socket was left "
            "behind): every record is dropped",
            start,
        )
    if g.refused == "full":
        return Check(
            "fail",
            what,
            f"{g.socket}: full: it took no record for {FULL_WAIT:g} s (the syslog daemon is stopped or "
            "stalled, e.g. on a full disk): records are dropped, counted in `dropped N` lines",
            f"systemctl status rsyslog; df -h /var/log; {start}",
        )
    if g.refused is not None:
        return Check(
            "fail",
            what,
            f"{g.socket}: {g.refused}: no record can be sent",
            "apt-get install rsyslog (or run systemd-journald, whose socket is /dev/log)",
        )
    if g.seen:
        return Check("ok", what, f"{g.socket} took a test record and syslog wrote it to {g.place}")
    if g.seen is None:
        return Check(
            "unknown",
            what,
            f"{g.socket} took a test record; where syslog writes could not be read ({g.why})",
            "run as root, or name the file syslog writes authpriv to: --log FILE",
        )
    return Check(
        "fail",
        what,
        f"{g.socket} took a test record, but it was not in {g.place} after {SEEN_WAIT:g} s: the syslog "
        "daemon is stalled (stopped, a full disk) or writes authpriv elsewhere",
        f"systemctl status rsyslog; df -h /var/log; {start}; or --log FILE, where authpriv goes",
    )


def _snippet(f: Facts) -> list[Check]:
    install = f"webops cmdlog install --user {f.user}"
    text = f.files.get(snippet.FILE)
    if text is None:
        return [Check("fail", "snippet", f"~/{snippet.FILE} is missing: bash logs nothing", install)]
    if not f.perl:
        first = Check("fail", "snippet", "no perl: the snippet's relay cannot start", "apt-get install perl")
    elif text != snippet.SNIPPET:
        first = Check("gap", "snippet", f"~/{snippet.FILE} is not this version's (edited?)", install)
    else:
        first = Check("ok", "snippet", f"~/{snippet.FILE} is this version's")
    bashrc = f.files.get(".bashrc") or ""
    if snippet.BEGIN not in bashrc:
        return [first, Check("fail", "snippet position", "~/.bashrc does not read the snippet", install)]
    if not snippet.above_guard(bashrc):
        return [
            first,
            Check(
                "gap",
                "snippet position",
                "~/.bashrc reads it below the not-interactive guard: `ssh host CMD` is not logged",
                install + " (moves it to the top)",
            ),
        ]
    return [first, Check("ok", "snippet position", "top of ~/.bashrc: interactive shells and `ssh host CMD`")]


def _login(f: Facts) -> Check:
    name = snippet.login_file(f.files)
    if name is None:
        return Check(
            "gap",
            "login shells",
            "no ~/.bash_profile, ~/.bash_login or ~/.profile: a login bash reads no file of the user",
            f"webops cmdlog install --user {f.user} (it writes a ~/.profile that reads the snippet)",
        )
    if snippet.reads_snippet(f.files[name] or ""):
        return Check("ok", "login shells", f"~/{name} (what a login bash reads) reads the snippet")
    return Check(
        "gap",
        "login shells",
        f"~/{name} is what a login bash reads and it reads neither ~/.bashrc nor the snippet",
        f"webops cmdlog install --user {f.user}",
    )


def _shell(f: Facts, complete: bool) -> Check:
    name = os.path.basename(f.shell)
    if name == "bash":
        return Check("ok", "login shell", f"{f.shell}: logins and `ssh host CMD` run bash")
    if name in ("nologin", "false"):
        return Check("ok", "login shell", f"{f.shell}: no logins; commands come from services (below)")
    if complete:
        return Check("ok", "login shell", f"{f.shell} reads no bash file, but the audit rule sees all")
    return Check(
        "gap",
        "login shell",
        f"{f.shell} is not bash: its logins and `ssh host CMD` never read the snippet",
        f"usermod -s /bin/bash {f.user}, or the audit rule below",
    )


def _sh(f: Facts, complete: bool) -> Check:
    name = os.path.basename(f.sh)
    if name == "bash":
        return Check("ok", "/bin/sh", "is bash, in sh mode: it reads BASH_ENV only as bash; see below")
    if complete:
        return Check("ok", "/bin/sh", f"is {name}: `sh -c`, cron and NRPE are seen by the audit rule")
    return Check(
        "gap",
        "/bin/sh",
        f"is {name}, which reads no bash file: `sh -c`, system(), popen(), cron jobs and NRPE "
        "commands are not logged",
        "the audit rule below (auditd sees every execve)",
    )


def _non_interactive(f: Facts) -> Check:
    crontab = f.files.get("crontab")
    env = f"BASH_ENV={f.home / snippet.FILE}"
    if crontab is not None and env in crontab:
        return Check("ok", "bash -c, bash scripts", f"the crontab sets {env}; services must too")
    return Check(
        "gap",
        "bash -c, bash scripts",
        "non-interactive bash reads the snippet only where BASH_ENV names it"
        + (" (the user's crontab does not)" if crontab is not None else ""),
        f"{env} in each service's environment (crontab line, systemd Environment=)",
    )


def _nrpe(f: Facts, complete: bool) -> Check:
    if f.nrpe is None:
        return Check("ok", "NRPE", "no NRPE configuration found")
    if f.nrpe.user != f.user:
        return Check(
            "ok", "NRPE", f"{f.nrpe.path}: runs as {f.nrpe.user or 'its default user'}, not {f.user}"
        )
    fixes = []
    if "BASH_ENV" not in f.nrpe.keep_env_vars:
        fixes.append(f"keep_env_vars=BASH_ENV in {f.nrpe.path} and BASH_ENV in NRPE's environment")
    if not complete:
        fixes.append("the audit rule below")
    if not fixes:
        return Check("ok", "NRPE", f"{f.nrpe.path}: bash plugins read BASH_ENV; auditd sees the rest")
    return Check(
        "gap",
        "NRPE",
        f"{f.nrpe.path}: commands run through /bin/sh with a scrubbed environment",
        "; ".join(fixes),
    )


def _covers(rule: str, f: Facts) -> bool:
    """An execve rule with no user filter, or one for this user (by uid or name)."""
    words = rule.split()
    syscalls = {
        call for flag, value in itertools.pairwise(words) if flag == "-S" for call in value.split(",")
    }
    if "execve" not in syscalls:
        return False
    users = [w.split("=", 1)[1] for w in words if re.match(r"^(uid|euid|auid)=", w)]
    return not users or any(u in (str(f.uid), f.user) for u in users)


def _audit(f: Facts) -> Check:
    a, what = f.audit, "auditd"
    rule = snippet.audit_rule(f.uid)
    persist = f"echo '{rule}' > /etc/audit/rules.d/{TAG}.rules"
    in_files = any(_covers(r, f) for r in a.files)
    unseen = "what does not run through bash is not logged"
    if not a.installed:
        if in_files:
            detail = f"not installed: the rule in the rules files does nothing; {unseen}"
            return Check("gap", what, detail, "apt-get install auditd; augenrules --load")
        fix = f"apt-get install auditd; {persist}; augenrules --load"
        return Check("gap", what, f"not installed, and no execve rule for the user: {unseen}", fix)
    if a.loaded is None:
        if not in_files:
            fix = f"{persist}; augenrules --load"
            return Check("gap", what, f"no execve rule for the user in the rules files: {unseen}", fix)
        return Check(
            "unknown",
            what,
            f"the rules files hold the rule; whether auditd runs and has it loaded is unknown ({a.why})",
            "run doctor as root (it asks auditctl -s and auditctl -l)",
        )
    if a.enabled == 0:
        return Check("gap", what, f"auditing is off (auditctl -s: enabled 0): {unseen}", "auditctl -e 1")
    if a.pid == 0:
        detail = f"auditd is not running (auditctl -s: pid 0): no audit.log gets the records; {unseen}"
        return Check("gap", what, detail, "systemctl start auditd")
    if any(_covers(r, f) for r in a.loaded):
        if not in_files:
            detail = "a loaded execve rule covers the user, but no rules file holds it: gone at the next boot"
            return Check("gap", what, detail, persist)
        detail = "auditd runs and a loaded execve rule covers the user: every command is seen"
        return Check("ok", what, detail)
    if in_files:
        detail = f"the rule is in the rules files but not loaded: {unseen}"
        return Check("gap", what, detail, "augenrules --load")
    fix = f"{persist}; augenrules --load"
    return Check("gap", what, f"no execve rule for the user: {unseen}", fix)


# ---------------------------------------------------------------- the edge: reading this host


@dataclass(frozen=True)
class Where:
    """Where this host's syslog puts the records: a file it writes authpriv to, or the journal."""

    file: Path | None
    journal: bool
    looked: tuple[str, ...]  # each place passed over, and why


def where_records_are(root: Path = Path("/")) -> Where:
    """The first readable authpriv file (auth.log, secure) under root, else the journal when it has
    files there, else neither, with what was looked at."""
    looked: list[str] = []
    for rel in AUTH_LOGS:
        path = root / rel
        try:
            with path.open("rb"):
                return Where(path, False, tuple(looked))
        except OSError as e:
            looked.append(f"{path}: {e.strerror}")
    dirs = [root / d for d in JOURNALS]
    if shutil.which("journalctl") is None:
        looked.append("the journal: no journalctl")
    elif any(_has_journal_files(d) for d in dirs):
        return Where(None, True, tuple(looked))
    else:
        looked.append(f"the journal: no journal files in {' or '.join(map(str, dirs))}")
    return Where(None, False, tuple(looked))


def _has_journal_files(directory: Path) -> bool:
    try:
        return directory.is_dir() and next(directory.rglob("*.journal"), None) is not None
    except OSError:
        return False


def journalctl(root: Path = Path("/")) -> list[str]:
    """journalctl, on the journal under root (a test's; / is the host's)."""
    return ["journalctl", "--no-pager", *([f"--root={root}"] if root != Path("/") else [])]


def gather(
    user: str,
    sock: str,
    nrpe_config: Path,
    audit_rules: Path,
    crontabs: Path,
    log: Path | None = None,
    root: Path = Path("/"),
) -> Facts:
    """Read what the checks need (sending the syslog socket a test record; `log`: the file to look
    for it in, else where `where_records_are`); raises KeyError for an unknown user."""
    entry = pwd.getpwnam(user)
    home = Path(entry.pw_dir)
    names = [snippet.FILE, ".bashrc", *snippet.LOGIN_FILES]
    files: dict[str, str | None] = {n: _read(home / n) for n in names}
    files["crontab"] = _read(crontabs / user)
    return Facts(
        user=user,
        uid=entry.pw_uid,
        home=home,
        shell=entry.pw_shell,
        syslog=_syslog(sock, log, root),
        sh=os.path.realpath("/bin/sh"),
        perl=shutil.which("perl", path="/usr/bin:/bin") is not None,
        files=files,
        nrpe=_nrpe_config(nrpe_config),
        audit=_auditd(audit_rules),
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _record(text: str) -> bytes:
    """What the snippet's relay sends: <authpriv.info>Mmm dd hh:mm:ss tag[pid]: text."""
    t = time.localtime()
    stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"<86>{stamp} {TAG}[{os.getpid()}]: {text}".encode()


def _send(path: str, record: bytes) -> str | None:
    """Send without blocking, as the relay does (retrying a full socket for FULL_WAIT): why it
    could not be sent, or None."""
    deadline = time.monotonic() + FULL_WAIT
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        while True:
            try:
                s.sendto(record, socket.MSG_DONTWAIT, path)
                return None
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return "full"
                time.sleep(0.05)
            except FileNotFoundError:
                return "missing"
            except ConnectionRefusedError:
                return "refused"
            except OSError as e:
                return e.strerror or str(e)


def _syslog(sock: str, log: Path | None, root: Path) -> Syslog:
    token = f"doctor test record {secrets.token_hex(8)}"
    where = Where(log, False, ()) if log is not None else where_records_are(root)
    offset = 0
    if where.file is not None:
        with contextlib.suppress(OSError):
            offset = where.file.stat().st_size
    since = time.time() - 1
    if (refused := _send(sock, _record(token))) is not None:
        return Syslog(sock, refused, "", None)
    if where.file is not None:
        return _look(sock, where.file, offset, token)
    if where.journal:
        cmd = [*journalctl(root), "-t", TAG, "-o", "cat", f"--since=@{since:.0f}"]

        def in_journal() -> bool | None:
            try:
                r = subprocess.run(cmd, capture_output=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                return None
            return token.encode() in r.stdout

        seen = _poll(in_journal)
        return Syslog(sock, None, "the journal", seen, "journalctl failed" if seen is None else "")
    return Syslog(sock, None, "", None, "; ".join(where.looked))


def _look(sock: str, path: Path, offset: int, token: str) -> Syslog:
    why = ""

    def in_file() -> bool | None:
        nonlocal why
        try:
            with path.open("rb") as f:
                if f.seek(0, os.SEEK_END) >= offset:  # else rotated since: read it all
                    f.seek(offset)
                else:
                    f.seek(0)
                return token.encode() in f.read()
        except FileNotFoundError:
            return False  # not written yet
        except OSError as e:
            why = f"{path}: {e.strerror}"
            return None

    return Syslog(sock, None, str(path), _poll(in_file), why)


def _poll(look: Callable[[], bool | None]) -> bool | None:
    """Look every 50 ms until found (True), unreadable (None) or SEEN_WAIT is over (False)."""
    deadline = time.monotonic() + SEEN_WAIT
    while True:
        found = look()
        if found is not False or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _nrpe_config(path: Path) -> Nrpe | None:
    """nrpe.cfg and what it includes (include=, include_dir=): the last value of a key wins."""
    values: dict[str, str] = {}
    seen: set[Path] = set()

    def load(p: Path) -> bool:
        if p in seen or (text := _read(p)) is None:
            return False
        seen.add(p)
        for line in text.splitlines():
            key, _, value = line.strip().partition("=")
            if key == "include":
                load(Path(value))
            elif key == "include_dir" and Path(value).is_dir():
                for q in sorted(Path(value).rglob("*.cfg")):
                    load(q)
            elif key in ("nrpe_user", "keep_env_vars"):
                values[key] = value.strip()
        return True

    if not load(path):
        return None
    keep = tuple(v.strip() for v in values.get("keep_env_vars", "").split(",") if v.strip())
    return Nrpe(str(path), values.get("nrpe_user", ""), keep)


def _rule_lines(directory: Path) -> list[str]:
    paths = sorted(directory.glob("*.rules")) if directory.is_dir() else []
    return [line for p in paths for line in (_read(p) or "").splitlines() if line.startswith("-a")]


def _auditd(rules: Path) -> Audit:
    """The rules files, and, as root, what auditctl says runs (-s) and is loaded (-l)."""
    files = tuple(_rule_lines(rules))
    auditctl = shutil.which("auditctl", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if auditctl is None:
        return Audit(False, files, None, None, None, "auditctl is not installed")
    if os.geteuid() != 0:
        return Audit(True, files, None, None, None, "not root")
    try:
        status = subprocess.run([auditctl, "-s"], capture_output=True, text=True, timeout=10)
        listed = subprocess.run([auditctl, "-l"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Audit(True, files, None, None, None, f"auditctl: {e}")
    if listed.returncode != 0 or status.returncode != 0:
        why = " ".join((listed.stderr or status.stderr).split()) or "auditctl failed"
        return Audit(True, files, None, None, None, f"auditctl: {why}")
    values = dict(line.split(" ", 1) for line in status.stdout.splitlines() if " " in line)
    enabled, pid = values.get("enabled", ""), values.get("pid", "")
    return Audit(
        True,
        files,
        tuple(listed.stdout.splitlines()),
        int(enabled) if enabled.strip().isdigit() else None,
        int(pid) if pid.strip().isdigit() else None,
    )
