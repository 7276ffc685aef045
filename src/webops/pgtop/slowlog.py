"""Slow queries: each written once (per server, pid and query start) to a log file, and posted
once to Slack.

Each output keeps its own record of what it was given, in a state file shared by every pgtop using
that output: a log file's is `pgtop-seen.json` beside it (whoever writes that log shares it), a
webhook's is `$XDG_STATE_HOME/webops/pgtop-seen.json`, under a hash of its URL (never the URL).
So `--once` from cron every minute logs and posts a long query once, two pgtops writing one log
write each query once, and a pgtop with another log or webhook alerts on its own: no pgtop
silences another's alert. A pgtop with no output records nothing.

Every read-modify-write of a state file holds an flock (on `pgtop-seen.json.lock`), so two pgtops
at once never lose each other's entries nor both write one query; a post is claimed in the file
before it is sent, naming the claimer (host and pid). A log write or post that failed is not
recorded: it is reported (the screen's status line, `--once`'s stderr and exit status) and tried
again, by the next run or a minute later by a running screen, while the query is still slow. A post
not confirmed when pgtop exits (a webhook that does not answer) releases its claim: the next run
tries it again. A claim whose pgtop is gone (killed) is free at once; one of a live pgtop is
respected, and a run that left a post to it waits (up to its exit timeout) to know how it went and
says it when the post was not confirmed. Posting happens in a thread (a slow webhook must not
freeze the screen), at most `per_minute` posts a minute.

A state file that cannot be read (damaged, emptied, not pgtop's) is kept aside as
`pgtop-seen.json.corrupt` and started afresh, and that is said (some alerts may come twice); one
written by a newer pgtop (a higher version) is never overwritten: its outputs record nothing and
each run says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from .data import Backend

STATE_NAME = "pgtop-seen.json"
SEEN_MAX = 10_000  # remembered queries per output and server, the most recently seen kept
KEEP_SECONDS = 7 * 86400  # a query no pgtop has seen slow for a week is forgotten
CLAIM_SECONDS = 300  # a post claimed by a pgtop that never said how it went (killed) is free again
RETRY_SECONDS = 60  # a running pgtop tries a failed log write or post again after this
WAIT_SECONDS = 5  # a running pgtop looks again at a post another live pgtop has on its way after this
VERSION = 2  # of the state file
HOST = socket.gethostname()


class StateError(OSError):
    """A state file this pgtop must not write (a newer pgtop's)."""


def claimer_alive(by: object) -> bool:
    """Whether the pgtop that claimed a post may still be posting it: [host, pid] on this host,
    that pid running pgtop. Unknown (an older pgtop's claim, another host): assumed alive."""
    if not (isinstance(by, list) and len(by) == 2 and isinstance(by[1], int) and by[0] == HOST):
        return True
    pid = by[1]
    if pid == os.getpid():  # this process: its posts in flight are in `pending`, not claims to wait for
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return b"pgtop" in Path(f"/proc/{pid}/cmdline").read_bytes()  # not a reused pid
    except OSError:
        return True


def state_dir() -> Path:
    """$XDG_STATE_HOME/webops (~/.local/state/webops): logs and state, never the current directory."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "webops"


def default_log_path() -> str:
    return str(state_dir() / "pgtop-slow.log")


def describe(b: Backend, server: str) -> str:
    return (
        f"server={server} pid={b.pid} user={b.usename} db={b.datname} client={b.client or '-'} "
        f"duration={b.query_seconds or 0:.1f}s"
    )


def indented(query: str | None) -> str:
    """The query under its entry, every line indented: a line end in the SQL (chosen by whoever
    ran it) must not start a line that reads as an entry of its own."""
    return textwrap.indent((query or "").strip(), "    ", lambda line: True)


def _key(b: Backend) -> str:
    return f"{b.pid}@{b.query_start.isoformat() if b.query_start else '-'}"


def _claimer(by: object) -> str:
    return f"pgtop pid {by[1]}" if isinstance(by, list) and len(by) == 2 else "another pgtop"


def _why(e: OSError) -> str:
    return f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")


@dataclass
class Book:
    """What one output did for one server: query key -> when (time.time())."""

    done: dict[str, float] = field(default_factory=dict)  # written, or posted
    claimed: dict[str, float] = field(default_factory=dict)  # a post on its way
    by: dict[str, list] = field(default_factory=dict)  # its claimer: [host, pid]

    def claim_held(self, k: str, now: float) -> bool:
        """A post claimed by another pgtop that is still alive and may still post it."""
        return k in self.claimed and now - self.claimed[k] < CLAIM_SECONDS and claimer_alive(self.by.get(k))

    def release(self, k: str) -> None:
        self.claimed.pop(k, None)
        self.by.pop(k, None)

    def touch(self, keys) -> None:
        """Queries still slow: kept (the week counts from the last time one was seen)."""
        now = time.time()
        for k in keys:
            if k in self.done:
                self.done[k] = now


def _times(obj: object) -> dict[str, float]:
    if not isinstance(obj, dict):
        return {}
    return {k: float(v) for k, v in obj.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class StateFile:
    """A JSON file of Books by output and server, shared by pgtops: each change is a
    read-modify-write under an flock, so concurrent pgtops never lose each other's entries."""

    def __init__(self, path: Path, errors: list[str] | None = None) -> None:
        self.path = path
        self.errors = errors if errors is not None else []  # a damaged file set aside is said here
        self.mutex = threading.Lock()  # a screen and its Slack thread: one change at a time

    @contextlib.contextmanager
    def book(self, output: str, server: str) -> Iterator[Book]:
        """The Book of `output` for `server`, saved when the block ends without an exception."""
        with self.mutex:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
                state = self._load()
                servers = state.setdefault(output, {})
                book = servers.setdefault(server, Book())
                yield book
                self._save(state)

    def _load(self) -> dict[str, dict[str, Book]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            raw = json.loads(text)
            why = None
        except ValueError as e:
            raw, why = None, f"not JSON ({e})" if text.strip() else "empty"
        version = raw.get("version") if isinstance(raw, dict) else None
        if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
            raise StateError(
                f"{self.path} was written by a newer pgtop (version {version}, this one knows "
                f"{VERSION}): left as it is, nothing recorded nor alerted through it"
            )
        outputs = raw.get("outputs") if version == VERSION else None
        if not isinstance(outputs, dict):
            self._set_aside(why or f"not a pgtop state (version {VERSION}) file")
            return {}
        state: dict[str, dict[str, Book]] = {}
        for output, servers in outputs.items():
            for server, entry in servers.items() if isinstance(servers, dict) else ():
                if isinstance(entry, dict):
                    by = entry.get("by")
                    book = Book(
                        _times(entry.get("done")),
                        _times(entry.get("claimed")),
                        {k: v for k, v in by.items() if isinstance(v, list)} if isinstance(by, dict) else {},
                    )
                    state.setdefault(output, {})[server] = book
        return state

    def _set_aside(self, why: str) -> None:
        """A damaged state file: kept as .corrupt (for a look), said, and started afresh."""
        aside = self.path.with_name(self.path.name + ".corrupt")
        self.path.replace(aside)
        self.errors.append(
            f"{self.path}: unreadable ({why}): kept as {aside.name} and started afresh "
            "(slow queries already alerted may be alerted again)"
        )

    def _save(self, state: dict[str, dict[str, Book]]) -> None:
        now = time.time()
        outputs: dict[str, dict[str, dict]] = {}
        for output, servers in state.items():
            for server, book in servers.items():
                done = sorted(((t, k) for k, t in book.done.items() if now - t < KEEP_SECONDS), reverse=True)
                claimed = {k: t for k, t in book.claimed.items() if now - t < CLAIM_SECONDS}
                if done or claimed:
                    outputs.setdefault(output, {})[server] = {
                        "done": {k: t for t, k in done[:SEEN_MAX]},
                        "claimed": claimed,
                        "by": {k: book.by[k] for k in claimed if k in book.by},
                    }
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"version": VERSION, "outputs": outputs}))
        tmp.replace(self.path)


class Output:
    """One place slow queries go (a log file, a webhook), and what it has done: in memory, so a
    screen reads its state file only when a query needs something, and in the state file."""

    def __init__(self, state: StateFile, ident: str, server: str, errors: list[str]) -> None:
        self.state, self.ident, self.server, self.errors = state, ident, server, errors
        self.done: set[str] = set()  # done, by this pgtop or another one with this output
        self.pending: set[str] = set()  # posts queued by this pgtop, not answered yet
        self.retry_at: dict[str, float] = {}  # failed here: not again before (time.monotonic())
        self.lock = threading.Lock()

    def due(self, current: dict[str, Backend]) -> list[str]:
        """The slow queries this output may still have to do; forgets the others."""
        now = time.monotonic()
        with self.lock:
            self.done &= current.keys()
            self.retry_at = {k: t for k, t in self.retry_at.items() if k in current}
            return [
                k
                for k in current
                if k not in self.done and k not in self.pending and self.retry_at.get(k, 0.0) <= now
            ]

    def failed(self, keys, why: str | None) -> None:
        """Not done: tried again after RETRY_SECONDS (the next run, for `--once`)."""
        with self.lock:
            for k in keys:
                self.pending.discard(k)
                self.retry_at[k] = time.monotonic() + RETRY_SECONDS
        if why:
            self.errors.append(why)

    def offer(self, current: dict[str, Backend]) -> list[str]:
        raise NotImplementedError


class LogOutput(Output):
    def __init__(self, path: str, state: StateFile, ident: str, server: str, errors: list[str]) -> None:
        super().__init__(state, ident, server, errors)
        self.path = path

    def offer(self, current: dict[str, Backend]) -> list[str]:
        """Writes the slow queries this log does not have yet (under the state file's lock, so a
        second pgtop with this log does not write them too); returns their keys."""
        due = self.due(current)
        if not due:
            return []
        written: list[str] = []
        try:
            with self.state.book(self.ident, self.server) as book:
                book.touch(current)
                with self.lock:
                    self.done.update(k for k in due if k in book.done)
                todo = [k for k in due if k not in book.done]
                if todo:
                    text = "".join(
                        f"{datetime.now().isoformat(timespec='seconds')} "
                        f"{describe(current[k], self.server)}\n{indented(current[k].query)}\n"
                        for k in todo
                    )
                    try:
                        with open(self.path, "a", encoding="utf-8") as f:
                            f.write(text)
                    except OSError as e:
                        self.failed(todo, f"slow log {self.path}: {_why(e)}")
                    else:
                        now = time.time()
                        for k in todo:
                            book.done[k] = now
                        with self.lock:
                            self.done.update(todo)
                        written = todo
        except OSError as e:  # the state beside the log (its directory), or its lock
            self.failed(due, f"slow log {self.path}: {_why(e)}")
            return []
        return written


class SlackOutput(Output):
    def __init__(self, slack: Slack, state: StateFile, ident: str, server: str, errors: list[str]) -> None:
        super().__init__(state, ident, server, errors)
        self.slack = slack
        slack.on_result = self.result
        self.waiting: dict[
            str, tuple[Backend, str]
        ] = {}  # with its claimer  # left to another live pgtop's post: how did it go?

    def offer(self, current: dict[str, Backend]) -> list[str]:
        """Claims the slow queries not posted to this webhook yet nor on their way from another
        pgtop, and queues their posts; returns their keys. `result` says how each went."""
        due = self.due(current)
        if not due:
            return []
        try:
            with self.state.book(self.ident, self.server) as book:
                book.touch(current)
                now = time.time()
                with self.lock:
                    self.done.update(k for k in due if k in book.done)
                mine = [k for k in due if k not in book.done and not book.claim_held(k, now)]
                held = [k for k in due if k not in book.done and k not in mine]
                for k in mine:
                    book.claimed[k] = now
                    book.by[k] = [HOST, os.getpid()]
                with self.lock:
                    self.pending.update(mine)
                    self.waiting = {
                        k: b
                        for k, b in self.waiting.items()
                        if k in current and k not in self.done and k not in mine
                    }
                    self.waiting.update((k, (current[k], _claimer(book.by.get(k)))) for k in held)
                    for k in held:  # looked at again soon: done then, or free to post
                        self.retry_at[k] = time.monotonic() + WAIT_SECONDS
        except OSError as e:
            self.failed(due, f"slack: nothing posted, cannot keep track of posts: {_why(e)}")
            return []
        for k in mine:
            self.slack(current[k])
        return mine

    def result(self, b: Backend, ok: bool) -> None:
        """A post went (done for every pgtop with this webhook), or failed (its claim released:
        the next run, or this one a minute later, tries again)."""
        k = _key(b)
        if ok:
            with self.lock:
                self.pending.discard(k)
                self.done.add(k)
        else:
            self.failed([k], None)  # the Slack thread says why
        try:
            with self.state.book(self.ident, self.server) as book:
                book.release(k)
                if ok:
                    book.done[k] = time.time()
        except OSError as e:
            what = "posted, but not recorded (may be posted again)" if ok else "claim not released"
            self.errors.append(f"slack: pid {b.pid} {what}: {_why(e)}")

    def settle(self, deadline: float) -> None:
        """At exit: the posts left to another live pgtop, until each is posted (nothing to say),
        or not (said: this run did not alert, nor knows that one did) or `deadline` passes."""
        with self.lock:
            waiting = {k: b for k, b in self.waiting.items() if k not in self.done}
        while waiting:
            try:
                with self.state.book(self.ident, self.server) as book:
                    now = time.time()
                    for k in [k for k in waiting if k in book.done]:
                        del waiting[k]
                    gone = [k for k in waiting if not book.claim_held(k, now)]
                    late = time.monotonic() >= deadline
                    for k, (b, claimer) in list(waiting.items()):
                        if k in gone or late:
                            how = "did not post it" if k in gone else "has not confirmed it yet"
                            self.errors.append(
                                f"slack: pid {b.pid} not posted by this run: {claimer}, which claimed "
                                f"the post, {how} (the next run tries again if it was not posted)"
                            )
                            del waiting[k]
            except OSError as e:
                self.errors.append(f"slack: cannot know whether {len(waiting)} post(s) went: {_why(e)}")
                return
            if waiting:
                time.sleep(0.1)


class SlowLog:
    """The slow queries, to each output: a log file (`path`), a webhook (`slack`)."""

    def __init__(self, path: str | None, slack: Slack | None = None, server: str = "") -> None:
        self.path, self.slack, self.server = path, slack, server
        self.errors: list[str] = []  # not reported yet (problem() and close() take them)
        self.outputs: list[Output] = []
        files: dict[Path, StateFile] = {}

        def state(p: Path) -> StateFile:
            return files.setdefault(p, StateFile(p, self.errors))

        if path:
            real = Path(os.path.realpath(path))
            self.outputs.append(
                LogOutput(path, state(real.parent / STATE_NAME), f"log {real}", server, self.errors)
            )
        if slack is not None:
            ident = "slack " + hashlib.sha256(slack.url.encode()).hexdigest()  # never the URL: it is a secret
            self.outputs.append(
                SlackOutput(slack, state(state_dir() / STATE_NAME), ident, server, self.errors)
            )
        self.announced: set[str] = set()

    def record(self, slow: list[Backend]) -> list[Backend]:
        """Gives each output the slow queries it does not have yet; returns those new to this pgtop
        (none without an output: a screen with no log and no webhook records nothing)."""
        current = {_key(b): b for b in slow}
        handed: set[str] = set()
        for out in self.outputs:
            handed.update(out.offer(current))
        new = [b for k, b in current.items() if k in handed and k not in self.announced]
        self.announced = (self.announced & current.keys()) | handed
        return new

    def problem(self) -> str | None:
        """The latest failure not reported yet (the log, its state, Slack), for the status line."""
        if self.slack is not None and (failure := self.slack.take_failure()):
            self.errors.append(failure)
        return self.errors.pop() if self.errors else None

    def close(self, timeout: float = 10) -> list[str]:
        """Sends the posts queued (up to `timeout` s, also to learn how the posts left to another
        pgtop went); every failure not reported by problem() yet, and every failed post."""
        deadline = time.monotonic() + timeout
        failures = self.slack.close(timeout) if self.slack is not None else []
        for out in self.outputs:
            if isinstance(out, SlackOutput):
                out.settle(deadline)
        problems = list(self.errors)
        self.errors.clear()
        return problems + failures


def slack_escape(text: str) -> str:
    """Slack's markup: &, < and > must be escaped, and a ``` inside the SQL would end the code
    block (a zero-width space keeps it from being one)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("```", "`\u200b`\u200b`")


class Slack:
    """Posts to an incoming-webhook URL from a thread; failures are kept for the screen and
    `--once` to show, and each post's outcome goes to `on_result` (posted or not)."""

    def __init__(self, url: str, per_minute: int = 10, server: str = "") -> None:
        self.url, self.per_minute, self.server = url, per_minute, server
        self.on_result: Callable[[Backend, bool], None] | None = None
        self.queue: queue.Queue[Backend | None] = queue.Queue(maxsize=1000)
        self.sent: list[float] = []
        self.posted = 0
        self.held_back = 0  # not posted: over the rate limit or the queue's bound
        self.failures: list[str] = []  # every failed post, in order
        self.reported = 0  # failures already shown on the screen
        self.closed = False
        self.posting: Backend | None = None  # the post in flight
        self.abandoned = False  # close() gave up on the post in flight: its outcome is not recorded
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def __call__(self, b: Backend) -> None:
        try:
            self.queue.put_nowait(b)
        except queue.Full:
            self._fail(f"queue full (1,000 posts waiting): pid {b.pid} not posted")
            self._result(b, False)

    def message(self, b: Backend) -> dict:
        text = (
            f":snail: Slow query on {slack_escape(self.server or 'PostgreSQL')}: "
            f"{slack_escape(describe(b, self.server))}\n```{slack_escape((b.query or '').strip())}```"
        )
        return {"text": text}

    def _fail(self, why: str) -> None:
        with self.lock:
            self.failures.append(f"slack: {why}")

    def _result(self, b: Backend, ok: bool) -> None:
        if self.on_result is None:
            return
        try:
            self.on_result(b, ok)
        except Exception as e:  # the posting thread must go on whatever happens
            self._fail(f"cannot record the post for pid {b.pid}: {e!r}")

    def take_failure(self) -> str | None:
        with self.lock:
            if self.reported < len(self.failures):
                self.reported = len(self.failures)
                return self.failures[-1] + (
                    f" ({len(self.failures)} failures so far)" if self.reported > 1 else ""
                )
        return None

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while (b := self.queue.get()) is not None:
                now = time.monotonic()
                self.sent = [t for t in self.sent if now - t < 60]
                if len(self.sent) >= self.per_minute:
                    self.held_back += 1
                    self._fail(f"rate limit ({self.per_minute}/min): pid {b.pid} not posted")
                    self._result(b, False)
                    continue
                with self.lock:
                    self.posting = b
                try:
                    r = client.post(self.url, json=self.message(b))
                    r.raise_for_status()
                except Exception as e:
                    with self.lock:
                        self.posting = None
                        if self.abandoned:  # released at exit: the next run posts it
                            return
                    if isinstance(e, httpx.HTTPStatusError):
                        self._fail(f"post for pid {b.pid} refused: HTTP {e.response.status_code}")
                    elif isinstance(e, httpx.HTTPError | httpx.InvalidURL | ValueError):  # refused, timed out
                        self._fail(f"cannot post for pid {b.pid}: {e or type(e).__name__}")
                    else:
                        self._fail(f"cannot post for pid {b.pid}: {e!r}")
                    self._result(b, False)
                else:
                    with self.lock:
                        self.posting = None
                        if self.abandoned:
                            return
                    self.sent.append(now)
                    self.posted += 1
                    self._result(b, True)

    def close(self, timeout: float = 10) -> list[str]:
        """Send what is queued (up to `timeout` seconds), stop, and return every failure,
        including the posts still unsent (released: the next run posts them)."""
        if not self.closed:
            self.closed = True
            deadline = time.monotonic() + timeout
            with contextlib.suppress(queue.Full):
                self.queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
            self.thread.join(max(0.0, deadline - time.monotonic()))
            if self.thread.is_alive():  # stuck in a post: it and what is still queued are not sent
                with self.lock:
                    self.abandoned = True
                    stuck = self.posting
                unsent: list[Backend] = [stuck] if stuck is not None else []
                with contextlib.suppress(queue.Empty):
                    while True:
                        if (item := self.queue.get_nowait()) is not None:
                            unsent.append(item)
                with contextlib.suppress(queue.Full):
                    self.queue.put_nowait(None)  # the thread stops after the post it is in
                self._fail(
                    f"{max(len(unsent), 1)} post(s) not sent at exit (gave up after {timeout:g}s; "
                    "released: the next run posts them)"
                )
                for b in unsent:  # their claims released: the next run does not wait for them
                    self._result(b, False)
        with self.lock:
            return list(self.failures)
