"""The shell snippet that records a user's commands, and its idempotent install into start files.

One long-lived relay per shell, not one process per command; the DEBUG trap only formats a line
with builtins. The relay is a few lines of perl (Debian's perl-base is essential) rather than
`logger`, because logger blocks when the syslog daemon stalls (rsyslog on a full disk): its pipe
fills and every shell of the user hangs on its next command. The relay waits a second at most for
a slow syslog, then sends without waiting until the socket takes a record again, and counts what
it could not send; a count it cannot send when the shell is gone is retried, then kept in
~/.webops-cmdlog.dropped for the next relay to send.

The snippet is invisible to the shell it watches: the relay is not the shell's child (a double
fork: `wait`, `jobs` and `$!` never see it); the shell reaches it through a descriptor high up
(where scripts do not go) opened read-write on the relay's pipe (never SIGPIPE, whatever the
script's PIPE trap), and checks before each write that the descriptor is still that pipe and the
relay alive, else writes nothing; the trap restores `$_`, runs under `2>/dev/null` (no `set -x`
lines), calls no function (no RETURN trap, FUNCNAME or `caller` frame) and fails no command that
`set -e` or an ERR trap would see. Each record is NUL-separated fields (any bytes but NUL), which
the relay escapes (`v2 user=... uid=... pid=... cwd=... cmd=...`, see records.py) and splits into
parts when too long for one datagram. The file parses in dash (a `sh` login reads .profile) and
does nothing there. Commands of the start files themselves are not logged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from .records import TAG

FILE = ".webops-cmdlog.sh"
DROPPED = ".webops-cmdlog.dropped"  # the count a relay could not send before it ended
BEGIN = "# >>> webops cmdlog >>>"
END = "# <<< webops cmdlog <<<"
SNIPPET = r"""# webops cmdlog: every command of this bash goes to syslog (authpriv), tag webops-cmdlog
# (webops cmdlog report reads it back; webops cmdlog uninstall removes this).
{ __webops_cmdlog_last=$_  # given back at the end: the shell's $_ is what it was
if [ -z "${BASH_VERSION-}" ]; then
  unset __webops_cmdlog_last  # not bash (dash reading .profile): nothing to do
elif [ -z "${__webops_cmdlog_pid-}" ]; then
  # one relay per shell (perl-base is in every Debian), started by a double fork so that it is no
  # child of the shell. It prints its pid and a descriptor the shell has free; it waits up to a
  # second for a slow syslog, then stops waiting until the socket takes a record again: what it
  # refuses meanwhile is counted and said in the next record that gets through
  __webops_cmdlog_pid=$(exec perl -e '
    use strict;  # and no module until the fork: the shell waits for this part only
    my ($path, $tag, $shell) = @ARGV;
    my ($fd, $limits) = (1024);  # below the soft limit of open files (the shell has the same)
    open($limits, "<", "/proc/self/limits") and (join "", <$limits>) =~ /^Max open files +(\d+)/m
      and $fd = $1;
    $fd = ($fd > 1024 ? 1024 : $fd) - 9;  # high up: scripts use 3 to 9, bash {var} 10 and up
    $fd-- while $fd > 10 && ($fd == 255 || -l "/proc/$shell/fd/$fd");
    exit 1 if $fd <= 10 || ! -d "/proc/$shell/fd";
    pipe(my $r, my $w) or exit 1;
    open(STDIN, "<&", $r) or exit 1;  # before the fork: the pid printed has the pipe as its stdin
    close $r;
    defined(my $pid = fork) or exit 1;
    if ($pid) { print "$pid $fd\n"; exit 0 }
    open(STDOUT, ">", "/dev/null"); open(STDERR, ">&", \*STDOUT);  # none of the shell output
    require POSIX; require Socket; require Fcntl;
    POSIX::setsid();  # in no job, process group or terminal of the shell
    chdir "/";
    my $dir;
    opendir($dir, "/proc/self/fd") or POSIX::_exit(1);  # nor any other of its descriptors
    POSIX::close($_) for grep { /^\d+$/ && $_ > 2 && $_ != fileno $w } readdir $dir;
    my $spool = ($ENV{HOME} // "") =~ m{^/} ? "$ENV{HOME}/.webops-cmdlog.dropped" : "";
    sub same { my ($f) = @_; my @a = stat $f; my @b = stat $spool; @b && $a[0] == $b[0] && $a[1] == $b[1] }
    sub take {  # the count relays before could not send
      my $f;
      open($f, "+<", $spool) && flock($f, Fcntl::LOCK_EX()) && same($f) or return 0;
      local $/ = "\n"; my $n = <$f> // ""; unlink $spool;
      return $n =~ /^(\d+)/ ? $1 : 0;
    }
    sub keep {  # for the next relay to send
      my ($n) = @_;
      for (1 .. 3) {
        my $f;
        sysopen($f, $spool, Fcntl::O_RDWR() | Fcntl::O_CREAT(), 0600) or return;
        flock($f, Fcntl::LOCK_EX()) or return;
        same($f) or next;  # taken meanwhile: a new file
        local $/ = "\n"; my $old = <$f> // ""; $n += $1 if $old =~ /^(\d+)/;
        seek($f, 0, 0); truncate($f, 0); print $f "$n\n"; close $f; return;
      }
    }
    my $dropped = take();
    $SIG{$_} = sub { keep($dropped) if $dropped; POSIX::_exit(0) } for qw(TERM HUP INT);
    socket(my $s, Socket::PF_UNIX(), Socket::SOCK_DGRAM(), 0) or POSIX::_exit(1);
    setsockopt($s, Socket::SOL_SOCKET(), Socket::SO_SNDTIMEO(), pack("l!l!", 1, 0));
    my ($to, $nowait) = (Socket::pack_sockaddr_un($path), Socket::MSG_DONTWAIT());
    my @mon = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);
    sub line {  # what logger sends: <authpriv.info>Mmm dd hh:mm:ss tag[pid]: text
      my @t = localtime;
      sprintf("<86>%s %2d %02d:%02d:%02d %s[%d]: %s", $mon[$t[4]], @t[3, 2, 1, 0], $tag, $$, @_);
    }
    my $u8 = qr/[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}
      |\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}/x;
    sub esc {  # printable UTF-8 as it is; %XX for %, controls and bytes that are not UTF-8; in
      my ($t, $field) = @_;  # a field, spaces too, and at the end of a command (syslog trims)
      $t =~ s{(\xc2[\x80-\x9f])|($u8)|([^\x20-\x24\x26-\x7e])}{
        defined $2 ? $2 : join "", map { sprintf "%%%02X", ord } split //, $1 // $3}ge;
      $field ? $t =~ s/ /%20/g : $t =~ s/( +)$/"%20" x length $1/e;
      return $t;
    }
    my $user = getpwuid($<);  # the real uid name, not $USER
    my $head = "v2 user=" . esc(defined $user && length $user ? $user : $<, 1) . " uid=$< pid=$shell";
    my $lost = "records: the syslog socket was full or missing";
    my $seq = 0;
    $/ = "\0";
    $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm 30;
    defined(<STDIN>) or POSIX::_exit(0);  # the shell says it holds the pipe: let go of ours
    alarm 0;
    close $w;
    while (defined(my $cwd = <STDIN>) && defined(my $cmd = <STDIN>)) {
      chomp $cwd; chomp $cmd;
      my @parts = ("$head cwd=" . esc($cwd, 1) . " cmd=" . esc($cmd));
      if (length $parts[0] > 960) {  # a datagram of about 1 KB goes through any syslog
        my $text = "$head cwd=" . esc($cwd, 1) . " cmd=" . esc($cmd, 1);  # no part ends in a space
        @parts = ();
        while (length $text) {
          my $n = length $text > 900 ? 900 : length $text;
          # not inside a UTF-8 character, nor after a space (syslog trims a part that ends in one)
          $n-- while $n < length $text
            && (substr($text, $n, 1) =~ /[\x80-\xbf]/ || substr($text, $n - 1, 1) eq " ");
          push @parts, substr($text, 0, $n, "");
        }
        $seq++;
        my $k = 0;
        @parts = map { "v2 part=$seq:" . ++$k . "/" . @parts . " $_" } @parts;
      }
      my $wait = $dropped ? $nowait : 0;
      $dropped = 0 if $dropped && send($s, line("dropped $dropped $lost"), $nowait, $to);
      for my $i (0 .. $#parts) {
        next if send($s, line($parts[$i]), $wait, $to);
        $dropped++ unless $i;  # one cut short after its first part: report counts it
        last;
      }
    }
    for (1 .. 5) {  # the shell is gone: the count still has to get out
      last unless $dropped;
      send($s, line("dropped $dropped $lost"), 0, $to) ? ($dropped = 0) : sleep 1;
    }
    keep($dropped) if $dropped;' "${WEBOPS_CMDLOG_SOCKET:-/dev/log}" webops-cmdlog "$$") ||
    __webops_cmdlog_pid=
  __webops_cmdlog_fd=${__webops_cmdlog_pid#* } __webops_cmdlog_pid=${__webops_cmdlog_pid%% *}
  if [ -n "$__webops_cmdlog_pid" ] && eval "exec $__webops_cmdlog_fd<>/proc/$__webops_cmdlog_pid/fd/0" &&
    eval "printf '\0' >&$__webops_cmdlog_fd"; then  # held read-write: a write never gets SIGPIPE
    __webops_cmdlog_src=  # this file: its own last command is not logged either
    [ -n "${BASH_SOURCE[0]-}" ] && printf -v __webops_cmdlog_src '%q|' "${BASH_SOURCE[0]}"
    trap '{ __webops_cmdlog_last[1]=$_; case ${BASH_SOURCE[0]-} in
  '"$__webops_cmdlog_src"'*/.bashrc|*/.profile|*/.bash_profile|*/.bash_login|/etc/*) ;;
  *) [[ /proc/self/fd/'"$__webops_cmdlog_fd"' -ef /proc/'"$__webops_cmdlog_pid"'/fd/0 ]] &&
    \builtin printf "%s\0%s\0" "${PWD-}" "$BASH_COMMAND" >&'"$__webops_cmdlog_fd"' || \builtin : ;;
esac; \builtin : "${__webops_cmdlog_last[1]}"; } 2>/dev/null' DEBUG
  else
    __webops_cmdlog_pid=
  fi
  unset -v __webops_cmdlog_src __webops_cmdlog_fd
fi
: "${__webops_cmdlog_last-}"; } 2>/dev/null
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
    """Remove the blocks and the snippet file (and ~/.webops-cmdlog.dropped): the start files come
    back as they were (a login file that held the block alone, because install made it, goes)."""
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
    for name in (FILE, DROPPED):  # and a count of lost records no relay will send now
        path = home / name
        if path.exists():
            path.unlink()
            changed.append(path)
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
