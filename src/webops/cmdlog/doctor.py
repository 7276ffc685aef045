"""`webops cmdlog doctor`: what will and will not be logged for a user on this host, and why.

Facts are gathered at the edge (`gather`: passwd, start files, the syslog socket, /bin/sh, NRPE's
config, audit rules); `checks` is pure and turns them into lines, each with its fix. A line is
`ok`, a `gap` (some ways of running commands are not logged) or a `fail` (nothing is).
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import snippet
from .records import TAG


@dataclass(frozen=True)
class Check:
    state: str  # ok, gap, fail
    what: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Nrpe:
    path: str
    user: str
    keep_env_vars: tuple[str, ...]


@dataclass(frozen=True)
class Facts:
    user: str
    uid: int
    home: Path
    shell: str  # the login shell in the password database
    socket: str
    socket_problem: str | None  # None: the socket takes a datagram
    sh: str  # what /bin/sh is
    perl: bool  # the snippet's relay runs on it
    files: Mapping[str, str | None]  # start file name -> its text (None: absent)
    nrpe: Nrpe | None
    audit_files: tuple[str, ...]  # rule lines of the rules directory
    audit_loaded: tuple[str, ...] | None  # `auditctl -l`, None when it cannot be asked


def checks(f: Facts) -> list[Check]:
    """Every check, in the order an SRE would read them."""
    audit = _audit(f)
    complete = audit.state == "ok"
    out = [_socket(f), *_snippet(f), _login(f), _shell(f, complete), _sh(f, complete)]
    out += [_non_interactive(f), _nrpe(f, complete), audit]
    return out


def _socket(f: Facts) -> Check:
    if f.socket_problem is None:
        return Check("ok", "syslog socket", f"{f.socket} takes records")
    return Check(
        "fail",
        "syslog socket",
        f"{f.socket}: {f.socket_problem}: logger drops every record and still exits 0",
        "apt-get install rsyslog (or run systemd-journald, whose socket is /dev/log)",
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
    rule = snippet.audit_rule(f.uid)
    in_files = any(_covers(r, f) for r in f.audit_files)
    if f.audit_loaded is not None and any(_covers(r, f) for r in f.audit_loaded):
        return Check("ok", "auditd", "a loaded execve rule covers the user: every command is seen")
    if in_files and f.audit_loaded is None:
        return Check(
            "ok", "auditd", "an execve rule for the user is in the rules files (not asked if loaded)"
        )
    if in_files:
        return Check("gap", "auditd", "the rule is in the files but not loaded", "augenrules --load")
    return Check(
        "gap",
        "auditd",
        "no execve rule for the user: what does not run through bash is not logged",
        f"apt-get install auditd; echo '{rule}' > /etc/audit/rules.d/{TAG}.rules; augenrules --load",
    )


# ---------------------------------------------------------------- the edge: reading this host


def gather(user: str, sock: str, nrpe_config: Path, audit_rules: Path, crontabs: Path) -> Facts:
    """Read what the checks need; raises KeyError for an unknown user."""
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
        socket=sock,
        socket_problem=_probe(sock),
        sh=os.path.realpath("/bin/sh"),
        perl=shutil.which("perl", path="/usr/bin:/bin") is not None,
        files=files,
        nrpe=_nrpe_config(nrpe_config),
        audit_files=tuple(_rule_lines(audit_rules)),
        audit_loaded=_loaded_rules(),
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _probe(path: str) -> str | None:
    """Why a datagram cannot be sent to the socket, or None when it can (an empty datagram, which
    syslog daemons drop)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(path)
        except FileNotFoundError:
            return "missing"
        except OSError as e:
            return e.strerror or str(e)
    return None


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


def _loaded_rules() -> tuple[str, ...] | None:
    if os.geteuid() != 0 or not (auditctl := shutil.which("auditctl")):
        return None
    try:
        r = subprocess.run([auditctl, "-l"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return tuple(r.stdout.splitlines()) if r.returncode == 0 else None
