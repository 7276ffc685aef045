"""The shell snippet that records a user's commands, and its idempotent install into start files.

One long-lived relay per shell (a process substitution fed through a file descriptor), not one
process per command; the DEBUG trap only formats a line with builtins. The relay is a few lines of
perl (Debian's perl-base is essential) rather than `logger`, because logger blocks when the syslog
daemon stalls (rsyslog on a full disk): its pipe fills and every shell of the user hangs on its
next command. The relay waits a second at most for a slow syslog, then sends without waiting
until the socket takes a record again, and counts what it could not send. If the relay is gone,
the shell goes on: SIGPIPE is ignored around the write (a write to a closed pipe would kill
the shell), and logging stops there. Commands of the start files themselves are not logged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from .records import TAG

FILE = ".webops-cmdlog.sh"
BEGIN = "# >>> webops cmdlog >>>"
END = "# <<< webops cmdlog <<<"
SNIPPET = r"""# webops cmdlog: every command of this bash goes to syslog (authpriv), tag webops-cmdlog
# (webops cmdlog report reads it back; webops cmdlog uninstall removes this).
if [ -n "$BASH_VERSION" ] && [ -z "${__webops_cmdlog_pid-}" ]; then
  # one relay per shell (perl-base is in every Debian). It waits up to a second for a slow
  # syslog, then stops waiting until the socket takes a record again: what it refuses meanwhile
  # is counted and said in the next record that gets through, and the shell never hangs on it
  exec {__webops_cmdlog_fd}> >(exec perl -MSocket -e '
    my ($path, $tag, $dropped, $s) = (@ARGV, 0);
    my @mon = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);
    sub line {  # what logger sends: <authpriv.info>Mmm dd hh:mm:ss tag[pid]: text
      my @t = localtime;
      sprintf("<86>%s %2d %02d:%02d:%02d %s[%d]: %s", $mon[$t[4]], @t[3, 2, 1, 0], $tag, $$, @_);
    }
    socket($s, PF_UNIX, SOCK_DGRAM, 0) or exit 1;
    setsockopt($s, SOL_SOCKET, SO_SNDTIMEO, pack("l!l!", 1, 0));
    my $to = pack_sockaddr_un($path);
    my $lost = "records: the syslog socket was full or missing";
    while (my $text = <STDIN>) {
      chomp $text;
      my $wait = $dropped ? MSG_DONTWAIT : 0;
      $dropped = 0 if $dropped && send($s, line("dropped $dropped $lost"), MSG_DONTWAIT, $to);
      send($s, line($text), $wait, $to) or $dropped++;
    }
    send($s, line("dropped $dropped $lost"), 0, $to) if $dropped;' \
    "${WEBOPS_CMDLOG_SOCKET:-/dev/log}" webops-cmdlog >/dev/null 2>&1)  # none of the shell's output
  __webops_cmdlog_pid=$!
  __webops_cmdlog_user=${USER:-$(id -un 2>/dev/null)}  # once: no process per command
  __webops_cmdlog() {
    case ${BASH_SOURCE[1]-} in  # the start files themselves are not what the user ran
      */.bashrc|*/.profile|*/.bash_profile|*/.bash_login|/etc/*) return 0 ;;
    esac
    trap '' PIPE  # a relay that is gone must not take the shell with it (SIGPIPE)
    printf 'user=%s uid=%s pid=%s cwd=%s cmd=%s\n' "$__webops_cmdlog_user" "$UID" "$$" \
      "${PWD// /%20}" "${BASH_COMMAND//$'\n'/ }" >&"$__webops_cmdlog_fd" 2>/dev/null \
      || trap - DEBUG  # and then nothing more is tried
    trap - PIPE
    return 0
  }
  trap '__webops_cmdlog' DEBUG
fi
"""
# Debian's .bashrc returns early when the shell is not interactive: the snippet goes above that
GUARDS = ("case $- in", '[ -z "$PS1" ] && return')
# a login bash reads the first of these that exists, and not .bashrc (Debian's .profile reads it)
LOGIN_FILES = (".bash_profile", ".bash_login", ".profile")
BLOCK = f"{BEGIN}\n[ -f ~/{FILE} ] && . ~/{FILE}\n{END}\n"
_READS_BASHRC = re.compile(r"""(^|[\s;])(\.|source)\s+["']?(\$HOME|\$\{HOME\}|~)/\.bashrc""", re.M)


def above_guard(bashrc: str) -> bool:
    """Whether the block comes before Debian's not-interactive guard (if there is one)."""
    guards = [i for g in GUARDS if (i := bashrc.find(g)) >= 0]
    return BEGIN in bashrc and (not guards or bashrc.index(BEGIN) < min(guards))


def login_file(files: Mapping[str, str | None]) -> str | None:
    """The start file a login bash reads, by name, from the texts of those that exist."""
    return next((n for n in LOGIN_FILES if files.get(n) is not None), None)


def reads_snippet(text: str) -> bool:
    return BEGIN in text or _READS_BASHRC.search(text) is not None


def audit_rule(uid: int | None) -> str:
    """The audit rule that sees every command of the user, whatever runs it."""
    return f"-a always,exit -F arch=b64 -S execve -F uid={'UID' if uid is None else uid} -k {TAG}"


def _without_block(text: str) -> str:
    start = text.index(BEGIN)
    return text[:start] + text[text.index(END, start) + len(END) + 1 :]


def install(home: Path) -> list[Path]:
    """Write the snippet file and source it at the top of .bashrc (before the not-interactive
    guard, moving a block found below it) and of the login file if that reads neither; nothing
    changes when all is in place. Returns the files written."""
    written = []
    snippet = home / FILE
    if not snippet.exists() or snippet.read_text() != SNIPPET:
        snippet.write_text(SNIPPET)
        written.append(snippet)
    bashrc = home / ".bashrc"
    text = bashrc.read_text() if bashrc.exists() else ""
    if not above_guard(text):
        bashrc.write_text(BLOCK + (_without_block(text) if BEGIN in text else text))
        written.append(bashrc)
    texts = {n: (home / n).read_text() if (home / n).exists() else None for n in LOGIN_FILES}
    login = home / (login_file(texts) or ".profile")  # none: a .profile of the block alone
    if not reads_snippet(texts.get(login.name) or ""):
        login.write_text(BLOCK + (texts.get(login.name) or ""))
        written.append(login)
    return written


def uninstall(home: Path) -> list[Path]:
    """Remove the blocks and the snippet file: the start files come back as they were (a login
    file that held the block alone, because install made it, goes)."""
    changed = []
    for name in (".bashrc", *LOGIN_FILES):
        path = home / name
        if path.exists() and BEGIN in (text := path.read_text()):
            rest = _without_block(text)
            if rest or name == ".bashrc":
                path.write_text(rest)
            else:
                path.unlink()
            changed.append(path)
    snippet = home / FILE
    if snippet.exists():
        snippet.unlink()
        changed.append(snippet)
    return changed


def instructions(home: Path, user: str, uid: int | None) -> list[str]:
    """What each other way of running commands needs, printed, never applied."""
    path = home / FILE
    return [
        f"non-interactive bash (bash -c, scripts): export BASH_ENV={path} in the service's environment",
        f"  (systemd: Environment=BASH_ENV={path}; cron: BASH_ENV={path} at the top of the crontab)",
        f"NRPE: keep_env_vars=BASH_ENV in nrpe.cfg (NRPE 4), with BASH_ENV={path} in its unit's Environment=",
        "  (bash plugins then log; what it runs through /bin/sh (dash) never reads bash's files)",
        "everything else, and complete coverage, only auditd sees:",
        f"  auditctl {audit_rule(uid)}",
        f"  (persistently: that line without 'auditctl ' in /etc/audit/rules.d/{TAG}.rules)",
        f"  then: ausearch -i -k {TAG} | webops cmdlog report --user {user}",
        f"check what will be logged: webops cmdlog doctor --user {user}",
    ]
