"""The shell snippet that records a user's commands, and its idempotent install into start files.

One long-lived `logger` per shell (a process substitution fed through a file descriptor), not one
process per command; the DEBUG trap only formats a line with builtins. If the logger is gone, the
shell goes on: SIGPIPE is ignored around the write (a write to a closed pipe would kill the shell),
and logging stops there. Commands of the start files themselves are not logged.
"""

from __future__ import annotations

from pathlib import Path

from .records import TAG

FILE = ".webops-cmdlog.sh"
BEGIN = "# >>> webops cmdlog >>>"
END = "# <<< webops cmdlog <<<"
SNIPPET = r"""# webops cmdlog: every command of this bash goes to syslog, tag webops-cmdlog
# (webops cmdlog report reads it back; webops cmdlog uninstall removes this).
if [ -n "$BASH_VERSION" ] && [ -z "${__webops_cmdlog_pid-}" ]; then
  exec {__webops_cmdlog_fd}> >(exec logger -t webops-cmdlog \
    ${WEBOPS_CMDLOG_SOCKET:+--socket "$WEBOPS_CMDLOG_SOCKET"} 2>/dev/null)
  __webops_cmdlog_pid=$!
  __webops_cmdlog_user=${USER:-$(id -un 2>/dev/null)}  # once: no process per command
  __webops_cmdlog() {
    case ${BASH_SOURCE[1]-} in  # the start files themselves are not what the user ran
      */.bashrc|*/.profile|*/.bash_profile|*/.bash_login|/etc/*) return 0 ;;
    esac
    trap '' PIPE  # a logger that is gone must not take the shell with it (SIGPIPE)
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


def install(home: Path) -> list[Path]:
    """Write the snippet file and source it at the top of .bashrc (before the not-interactive
    guard); nothing changes if it is already there. Returns the files written."""
    snippet = home / FILE
    written = []
    if not snippet.exists() or snippet.read_text() != SNIPPET:
        snippet.write_text(SNIPPET)
        written.append(snippet)
    bashrc = home / ".bashrc"
    text = bashrc.read_text() if bashrc.exists() else ""
    if BEGIN not in text:
        block = f"{BEGIN}\n[ -f ~/{FILE} ] && . ~/{FILE}\n{END}\n"
        bashrc.write_text(block + text)
        written.append(bashrc)
    return written


def uninstall(home: Path) -> list[Path]:
    """Remove the block and the snippet file; .bashrc comes back as it was."""
    changed = []
    bashrc = home / ".bashrc"
    if bashrc.exists() and BEGIN in (text := bashrc.read_text()):
        start = text.index(BEGIN)
        end = text.index(END, start) + len(END) + 1
        bashrc.write_text(text[:start] + text[end:])
        changed.append(bashrc)
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
        "NRPE and anything run through /bin/sh (dash) never reads bash's files: only auditd sees those:",
        f"  auditctl -a always,exit -F arch=b64 -S execve -F uid={'UID' if uid is None else uid} -k {TAG}",
        "  (persistently: that line without 'auditctl ' in /etc/audit/rules.d/webops-cmdlog.rules)",
        f"  then: ausearch -i -k webops-cmdlog | webops cmdlog report --user {user}",
    ]
