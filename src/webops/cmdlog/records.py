"""Command records, from every place they end up, into one shape. Pure: lines in, records out.

Understood, whatever the syslog front (`Mar 30 10:48:05 host tag[pid]: ...`, rsyslog's
`2026-11-23T19:40:00.123456+00:00 host tag[pid]: ...`, `journalctl -o short-iso`, or
`journalctl -o json` lines):
- webops cmdlog's own records: tag `webops-cmdlog`, `v2 user=... uid=... pid=... cwd=... cmd=...`:
  every byte that is not printable UTF-8 (controls, newlines, bytes of no UTF-8 character) and `%`
  as %XX, spaces too except inside the command (and at its end); the user is the real uid's name
  (the uid where it has none). A record too long for one datagram comes in parts, `v2
  part=SEQ:K/N TEXT`, whose TEXTs joined are the record: joined back here, and one that never
  arrives whole is counted as dropped. The first format (`user=... uid=... pid=... cwd=...
  cmd=...` without `v2`: only the cwd's spaces escaped, the command raw) is still read;
- the seed's recipe (`logger -t nagios "Running $BASH_COMMAND"`): the tag taken as the user;
- snoopy's default format: `[uid:1000 sid:12 tty:/dev/pts/0 cwd:/tmp filename:/bin/ls]: ls -la`;
- `ausearch -i` output: events (SYSCALL + EXECVE + CWD + PROCTITLE, grouped by event id).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, unquote_to_bytes

TAG = "webops-cmdlog"

_RFC3164 = re.compile(  # the host is missing in what logger sends to a local socket
    r"^(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?:(?P<host>\S+) )?"
    r"(?P<tag>[^\s:\[]+)(?:\[(?P<pid>\d+)\])?: ?(?P<msg>.*)$"
)
_PRI = re.compile(r"^<\d{1,3}>")  # as received on the socket, before a syslog daemon writes it
_ISO = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) (?P<host>\S+) "
    r"(?P<tag>[^\s:\[]+)(?:\[(?P<pid>\d+)\])?: ?(?P<msg>.*)$"
)
_OWN = re.compile(r"^user=(?P<user>\S*) uid=(?P<uid>\S*) pid=(?P<pid>\d+) cwd=(?P<cwd>\S*) cmd=(?P<cmd>.*)$")
_HEAD = r"^v2 user=(?P<user>\S*) uid=(?P<uid>\d*) pid=(?P<pid>\d+) cwd=(?P<cwd>\S*) cmd="
_V2 = re.compile(_HEAD + r"(?P<cmd>.*)$")
_V2_HEAD = re.compile(_HEAD)
_PART = re.compile(r"^v2 part=(?P<seq>\d+):(?P<k>\d+)/(?P<n>\d+) (?P<text>.*)$")
_SNOOPY = re.compile(r"^\[(?P<fields>[^\]]*)\]: (?P<cmd>.*)$")
_SEED = re.compile(r"^Running (?P<cmd>.*)$")
_DROPPED = re.compile(r"^dropped (?P<n>\d+) records: ")  # the snippet's relay, after a stalled syslog
_AUDIT = re.compile(
    r"^(?:node=(?P<node>\S+) )?type=(?P<type>\w+) msg=audit\((?P<when>[^)]*):(?P<id>\d+)\) ?: ?(?P<rest>.*)$"
)


@dataclass
class Record:
    time: datetime | None
    host: str
    user: str
    pid: int | None
    cwd: str
    command: str
    source: str  # webops, seed, snoopy, audit; dropped: a relay's count of records syslog refused
    dropped: int = 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["time"] = self.time.isoformat() if self.time else None
        return d


def _time(text: str, year: int | None = None) -> datetime | None:
    try:
        if text[:1].isdigit():
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        stamp = datetime.strptime(f"{year or datetime.now().year} {text}", "%Y %b %d %H:%M:%S")
        return stamp
    except ValueError:
        return None


@dataclass
class _Part:
    """One part of a record too long for one datagram (`v2 part=SEQ:K/N TEXT`)."""

    time: datetime | None
    host: str
    pid: int | None  # the relay's: parts of one record come from one relay, one after another
    seq: int
    k: int
    n: int
    text: str


@dataclass
class _Parts:
    n: int
    got: dict[int, _Part] = field(default_factory=dict)


def _decode(text: str) -> str:
    """A v2 field: %XX escapes back to bytes, then UTF-8 (a byte of no UTF-8 character as \\xNN)."""
    return unquote_to_bytes(text).decode("utf-8", "backslashreplace")


def from_syslog(line: str) -> Record | None:
    """One syslog line (or a `journalctl -o json` line) as a record, if it carries a command (the
    part of a record split in several carries none: `read` joins them)."""
    r = _line(line)
    return r if isinstance(r, Record) else None


def _line(line: str) -> Record | _Part | None:
    line = _PRI.sub("", line.rstrip("\n"))
    if line.startswith("{"):
        return _from_journal_json(line)
    m = _ISO.match(line) or _RFC3164.match(line)
    if not m:
        return None
    pid = int(m["pid"]) if m["pid"] else None
    return _message(_time(m["ts"]), m["host"] or "", m["tag"], pid, m["msg"])


def _from_journal_json(line: str) -> Record | _Part | None:
    try:
        entry = json.loads(line)
        stamp = datetime.fromtimestamp(int(entry["__REALTIME_TIMESTAMP"]) / 1e6, UTC)
        pid = entry.get("SYSLOG_PID") or entry.get("_PID")
        return _message(
            stamp,
            entry.get("_HOSTNAME", ""),
            entry.get("SYSLOG_IDENTIFIER", ""),
            int(pid) if pid else None,
            entry.get("MESSAGE", "") if isinstance(entry.get("MESSAGE"), str) else "",
        )
    except (ValueError, KeyError, TypeError):
        return None


def _message(stamp: datetime | None, host: str, tag: str, pid: int | None, msg: str) -> Record | _Part | None:
    if tag == TAG and (m := _V2.match(msg)):
        cwd, cmd = _decode(m["cwd"]), _decode(m["cmd"])
        return Record(stamp, host, _decode(m["user"]), int(m["pid"]), cwd, cmd, "webops")
    if tag == TAG and (m := _PART.match(msg)) and 1 <= int(m["k"]) <= int(m["n"]):
        return _Part(stamp, host, pid, int(m["seq"]), int(m["k"]), int(m["n"]), m["text"])
    if tag == TAG and (m := _OWN.match(msg)):
        return Record(stamp, host, m["user"], int(m["pid"]), unquote(m["cwd"]), m["cmd"], "webops")
    if tag == TAG and (m := _DROPPED.match(msg)):
        return Record(stamp, host, "", pid, "", msg, "dropped", int(m["n"]))
    if tag == "snoopy" and (m := _SNOOPY.match(msg)):
        fields = dict(f.split(":", 1) for f in m["fields"].split() if ":" in f)
        user = fields.get("username") or fields.get("login") or fields.get("uid", "")
        return Record(stamp, host, user, pid, fields.get("cwd", ""), m["cmd"], "snoopy")
    if m := _SEED.match(msg):
        return Record(stamp, host, tag, pid, "", m["cmd"], "seed")
    return None


def _joined(parts: _Parts) -> Record:
    """A record from all its parts, or, when parts are missing (or the whole does not parse), one
    dropped record that says which arrived (with the user, pid and cwd when the first did)."""
    first = parts.got[min(parts.got)]
    if len(parts.got) == parts.n and (
        m := _V2.match("".join(parts.got[k].text for k in range(1, parts.n + 1)))
    ):
        cwd, cmd = _decode(m["cwd"]), _decode(m["cmd"])
        return Record(first.time, first.host, _decode(m["user"]), int(m["pid"]), cwd, cmd, "webops")
    head = _V2_HEAD.match(parts.got[1].text) if 1 in parts.got else None
    got = ", ".join(map(str, sorted(parts.got)))
    return Record(
        first.time,
        first.host,
        _decode(head["user"]) if head else "",
        int(head["pid"]) if head else first.pid,
        _decode(head["cwd"]) if head else "",
        f"dropped 1 records: a command too long for one record arrived in part (parts {got} of {parts.n})",
        "dropped",
        1,
    )


def from_ausearch(lines: Iterable[str]) -> Iterator[Record]:
    """Audit events, from `ausearch -i` (interpreted) or raw from audit.log: one record per
    successful execve (its EXECVE arguments are the command; PROCTITLE when there is none), with
    the SYSCALL's user and pid and the CWD. Records of one event are grouped by its serial."""
    event: dict[str, dict[str, str]] = {}
    current = None
    for line in lines:
        m = _AUDIT.match(line.strip())
        if not m:
            continue
        if m["id"] != current and event:
            if (r := _event(event)) is not None:
                yield r
            event = {}
        current = m["id"]
        raw = _RAW_WHEN.match(m["when"]) is not None
        rest = m["rest"].split("\x1d")[0]  # an enriched raw log: the interpretations follow a GS
        fields = _execve_args(rest, raw) if m["type"] == "EXECVE" else _audit_fields(rest, raw)
        if m["type"] == "SYSCALL" and "\x1d" in m["rest"]:
            fields.update(_audit_fields(m["rest"].split("\x1d", 1)[1], True))
        fields["_when"], fields["_node"] = m["when"], m["node"] or ""
        event.setdefault(m["type"], fields)
    if event and (r := _event(event)) is not None:
        yield r


_RAW_WHEN = re.compile(r"^\d+\.\d+$")  # raw logs stamp events in epoch seconds
_HEX = re.compile(r"^(?:[0-9A-F]{2})+$")
_STRINGS = {"cwd", "name", "comm", "exe", "proctitle", "key"}  # raw logs may hex-encode these


def _value(text: str, raw: bool) -> str:
    """A field's value: raw logs quote plain strings and hex-encode those with spaces, quotes or
    control characters; `ausearch -i` has already decoded them."""
    if raw:
        if text.startswith('"') and text.endswith('"') and len(text) >= 2:
            return text[1:-1]
        if _HEX.match(text):
            return bytes.fromhex(text).decode("utf-8", "replace").replace("\0", " ")
    return text


def _audit_fields(rest: str, raw: bool) -> dict[str, str]:
    fields = re.finditer(r'(\w+)=("[^"]*"|\S*)', rest)
    return {m[1]: _value(m[2], raw) if m[1] in _STRINGS else m[2].strip('"') for m in fields}


def _execve_args(rest: str, raw: bool) -> dict[str, str]:
    """EXECVE's `argc=N a0=... a1=...`: interpreted values are not quoted and may hold spaces, so
    each argument runs up to the next ` a<i+1>=` (the last to the end of the line)."""
    m = re.match(r"argc=(\d+) ?", rest)
    if not m:
        return {}
    argc, out, pos = int(m[1]), {"argc": m[1]}, m.end()
    for i in range(argc):
        if not rest.startswith(f"a{i}=", pos):
            break  # an argument split into a<i>[0]= pieces (over the kernel's record size): stop
        start = pos + len(f"a{i}=")
        nxt = rest.find(f" a{i + 1}=", start) if i + 1 < argc else -1
        end = nxt if nxt >= 0 else len(rest)
        out[f"a{i}"] = _value(rest[start:end].rstrip(" ") if nxt < 0 else rest[start:end], raw)
        pos = end + 1
    return out


def _audit_time(when: str) -> datetime | None:
    """`ausearch -i` prints the local time as %x %T (11/23/26 20:39:04.037 in the C locale);
    raw logs print epoch seconds."""
    if _RAW_WHEN.match(when):
        return datetime.fromtimestamp(float(when), UTC)
    for fmt in ("%m/%d/%y %H:%M:%S", "%m/%d/%Y %H:%M:%S"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(when.split(".")[0], fmt)
    return None


def _event(event: dict[str, dict[str, str]]) -> Record | None:
    execve, syscall = event.get("EXECVE"), event.get("SYSCALL", {})
    if execve is None or syscall.get("success", "yes") != "yes":
        return None  # a failed execve ran nothing (a shell trying each directory of PATH)
    args = [execve[f"a{i}"] for i in range(int(execve.get("argc", "0"))) if f"a{i}" in execve]
    command = " ".join(args) or event.get("PROCTITLE", {}).get("proctitle", "")
    pid = syscall.get("pid")
    return Record(
        _audit_time(execve["_when"]),
        execve["_node"],
        # who ran it, by name where known (auid, the login, is unset for daemons such as NRPE)
        syscall.get("UID") or syscall.get("uid", ""),
        int(pid) if pid and pid.isdigit() else None,
        event.get("CWD", {}).get("cwd", ""),
        command,
        "audit",
    )


def read(lines: Iterable[str]) -> Iterator[Record]:
    """Records from any mix of the formats above (audit events are grouped as they come; the parts
    of a long record are joined as its last arrives, and those still missing parts at the end are
    dropped records)."""
    audit: list[str] = []
    pending: dict[tuple[str, int | None, int], _Parts] = {}
    for line in lines:
        if "msg=audit(" in line:
            audit.append(line)
            continue
        if line.startswith("----"):
            continue
        r = _line(line)
        if isinstance(r, _Part):
            key = (r.host, r.pid, r.seq)
            parts = pending.get(key)
            if parts is not None and (parts.n != r.n or r.k in parts.got):  # a new record, same key
                yield _joined(pending.pop(key))
                parts = None
            if parts is None:
                parts = pending[key] = _Parts(r.n)
            parts.got[r.k] = r
            if len(parts.got) == parts.n:
                yield _joined(pending.pop(key))
        elif r is not None:
            yield r
    for parts in pending.values():
        yield _joined(parts)
    yield from from_ausearch(audit)
