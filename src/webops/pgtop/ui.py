"""The interactive screen: refresh, keys, confirmations. All data work is in data.py, the
layout in columns.py and render.py; this is state and events."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import psycopg
from rich.console import Console

from ..common import live
from ..common.live import Binding, KeyTable
from . import columns, data, render
from .actions import signal_backends, summary
from .procstats import Sampler, is_local
from .slowlog import SlowLog


@dataclass
class State:
    view: str = "all"
    sort: str = "duration"
    refresh: float = 2.0
    filters: data.Filters = field(default_factory=data.Filters)
    columns: tuple[str, ...] = columns.PROFILES["standard"]
    selected: int = 0
    selected_pid: int | None = None  # the selection follows its backend across refreshes
    offset: int = 0  # first row shown
    tagged: set[int] = field(default_factory=set)
    paused: bool = False
    message: str = ""
    overlay: list[str] | None = None
    confirm: list[data.Backend] | None = None  # backends about to be signalled, as listed
    confirm_what: str = ""
    confirm_key: str = "k"  # k (these sessions) or K (these slow queries): which signals are offered
    prompt: str | None = None  # text typed at the filter prompt


class Screen:
    def __init__(
        self, connect, state: State, slow_threshold: float, slowlog: SlowLog, title: str, conn=None
    ) -> None:
        self.connect, self.state, self.slow_threshold, self.slowlog = connect, state, slow_threshold, slowlog
        self.title = title
        self.conn = conn
        self.snap: data.Snapshot | None = None
        self.rows: list[data.Backend] = []
        self.console = Console()
        self.sampler = Sampler()
        self.local = conn is not None and is_local(conn.info.backend_pid)
        self.page: int | None = None  # the table's height on the last screen drawn

    # --- data ---------------------------------------------------------------------------

    def poll(self) -> None:
        """Fetch a snapshot; a lost connection clears the rows (nothing stale to act on) and is
        retried at the next refresh."""
        s = self.state
        try:
            if self.conn is None or self.conn.closed:
                self.conn = self.connect()
                self.local = is_local(self.conn.info.backend_pid)
            self.snap = data.fetch(self.conn, self.snap)
            if self.local:
                self.snap.procs = self.sampler.sample([b.pid for b in self.snap.backends])
            if s.message.startswith("connection lost"):
                s.message = "reconnected"
            new = self.slowlog.record(data.slow(self.snap.backends, self.slow_threshold))
            if new:
                s.message = f"{len(new)} new slow quer{'y' if len(new) == 1 else 'ies'} logged"
        except (psycopg.Error, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            s.message = f"connection lost: {first}; retrying every {s.refresh:g}s"
            if self.conn is not None:
                self.conn.close()
            self.conn, self.snap = None, None
        if problem := self.slowlog.problem():
            s.message = problem
        self._select()

    def _select(self) -> None:
        s = self.state
        self.rows = data.select(self.snap, s.view, s.filters, s.sort) if self.snap else []
        pids = [b.pid for b in self.rows]
        if s.selected_pid in pids:
            s.selected = pids.index(s.selected_pid)
        s.selected = max(0, min(s.selected, len(self.rows) - 1))
        s.selected_pid = self.rows[s.selected].pid if self.rows else None
        s.tagged &= set(pids) if self.snap else set()

    # --- drawing ------------------------------------------------------------------------

    def body_height(self) -> int:
        return self.page if self.page is not None else max(3, self.console.size.height - 6)

    def render(self, size: os.terminal_size):
        s = self.state
        status = s.message
        if s.prompt is not None:
            status = prompt_line(s.prompt, size.columns)
        elif s.confirm is not None:
            status = CONFIRM_STATUS[s.confirm_key]
            if len(status) > size.columns:
                status = CONFIRM_SHORT[s.confirm_key]
        elif s.paused:
            status = "paused (p resumes)" + (f"  {status}" if status else "")
        parts = [
            f"view {s.view}",
            f"sort {s.sort}",
            f"refresh {s.refresh:g}s",
            f"idle {'shown' if s.filters.show_idle else 'hidden'}",
        ]
        if s.filters.describe():
            parts.append(f"filter {s.filters.describe()}")
        if s.tagged:
            parts.append(f"tagged {len(s.tagged)}")
        overlay: list[str] | render.Listing | None = s.overlay
        if s.confirm is not None:
            overlay = confirmation(s.confirm, s.confirm_what, s.confirm_key)
        view = {
            "selected": s.selected,
            "offset": s.offset,
            "columns": s.columns,
            "local": self.local,
            "slow": self.slow_threshold,
            "tagged": s.tagged,
        }
        group, s.offset, self.page = render.screen(
            (self.title, parts), self.snap, self.rows, view, status, (size.columns, size.lines), overlay
        )
        return group

    # --- keys: the table (KEYS, below) names these methods -------------------------------

    def intercept(self, key: str) -> bool:
        """The filter prompt, a confirmation and an overlay take every key."""
        s = self.state
        if s.prompt is not None:
            self._prompt_key(key)
        elif s.confirm is not None:
            self._confirm_key(key)
        elif s.overlay is not None:
            s.overlay = None
        else:
            return False
        return True

    def move(self, key: str) -> None:
        s = self.state
        page = self.body_height() - 1
        moves = {
            "up": -1,
            "down": 1,
            "pgup": -page,
            "pgdn": page,
            "home": -len(self.rows),
            "end": len(self.rows),
        }
        s.selected = max(0, min(len(self.rows) - 1, s.selected + moves[key]))
        s.selected_pid = self.rows[s.selected].pid if self.rows else None

    def show_query(self) -> None:
        s = self.state
        if self.rows:
            b = self.rows[s.selected]
            s.overlay = [
                f"pid {b.pid}  {b.usename} @ {b.datname}  {columns.seconds(b.query_seconds)}"
                + (f"  {b.lock}" if b.lock else ""),
                "",
                *(b.query or "").splitlines(),
                "",
                "(any key returns)",
            ]

    def tag(self, key: str) -> None:
        s = self.state
        if key == "u":
            s.tagged.clear()
        elif self.rows:
            s.tagged ^= {self.rows[s.selected].pid}

    def filter(self) -> None:
        self.state.prompt = ""

    def cycle_sort(self) -> None:
        s = self.state
        s.sort = data.SORTS[(data.SORTS.index(s.sort) + 1) % len(data.SORTS)]
        self._select()

    def cycle_view(self) -> None:
        s = self.state
        s.view = data.VIEWS[(data.VIEWS.index(s.view) + 1) % len(data.VIEWS)]
        self._select()

    def cycle_columns(self) -> None:
        s = self.state
        names = list(columns.PROFILES)
        current = next((n for n, keys in columns.PROFILES.items() if keys == s.columns), names[-1])
        name = names[(names.index(current) + 1) % len(names)]
        s.columns = columns.PROFILES[name]
        s.message = f"columns: {name}"

    def toggle_idle(self) -> None:
        self.state.filters.show_idle = not self.state.filters.show_idle
        self._select()

    def pause(self) -> None:
        self.state.paused = not self.state.paused

    def speed(self, key: str) -> None:
        s = self.state
        s.refresh = min(60.0, s.refresh * 2) if key == "+" else max(0.25, s.refresh / 2)

    def help(self) -> None:
        self.state.overlay = KEYS.help_lines(self.console.size.width)

    def ask(self, key: str) -> None:
        """k: the tagged backends, or the selected one; K: the slow queries among the rows shown
        (the current view and filter). Either way the list is what will be checked at signal time."""
        s = self.state
        if self.snap is None or self.conn is None:
            s.message = "not connected: nothing to act on"
            return
        where = f"view {s.view}" + (f", filter {s.filters.describe()}" if s.filters.describe() else "")
        if key == "k":
            targets = [b for b in self.rows if b.pid in s.tagged] or self.rows[s.selected : s.selected + 1]
            what = f"{len(s.tagged)} tagged" if s.tagged else "the selected row"
        else:
            targets = data.slow(self.rows, self.slow_threshold)
            what = f"queries over {self.slow_threshold:g}s in {where}"
            if not targets:
                s.message = f"no query running longer than {self.slow_threshold:g}s in {where}"
                return
        if targets:
            s.confirm, s.confirm_what, s.confirm_key = targets, what, key

    def _confirm_key(self, key: str) -> None:
        """c: cancel the listed queries (each only if still running); after k also a: cancel
        whatever each session runs now, and t: terminate the sessions (each only if still the
        listed session: same pid and session start); after K, t ends a session only if it still
        runs the listed slow query."""
        s = self.state
        assert s.confirm is not None
        after_k = s.confirm_key == "k"
        if key in ("c", "t") or (key == "a" and after_k):
            how = "terminate" if key == "t" else "cancel"
            same_query = key == "c" or not after_k
            results = signal_backends(self.conn, s.confirm, how, same_query) if self.conn else []
            s.overlay = (
                [f"{how}:", ""]
                + [
                    f"  {r.pid:>7}  {'ok' if r.ok else 'skipped' if r.skipped else 'FAILED'}  {r.message}"
                    for r in results
                ]
                + [""]
                + (
                    ["(its query keeps changing? k then a cancels whatever it runs now, k then t ends it)"]
                    if key == "c" and after_k and any(r.skipped for r in results)
                    else []
                )
                + ["(any key returns)"]
            )
            s.message = summary(how, results)
            s.confirm = None
            s.tagged.clear()
        elif key in ("escape", "q", "n"):
            s.confirm = None
            s.message = "nothing signalled"

    def _prompt_key(self, key: str) -> None:
        s = self.state
        assert s.prompt is not None
        if key == "escape":
            s.prompt = None
        elif key in ("\n", "\r"):
            try:
                s.filters = data.parse_filter(s.prompt, s.filters)
                s.message = f"filter: {s.filters.describe() or 'none'}"
            except ValueError as e:
                s.message = str(e)
            s.prompt = None
            self._select()
        elif key in ("\x7f", "\b"):
            s.prompt = s.prompt[:-1]
        elif len(key) == 1 and key.isprintable():
            s.prompt += key

    # --- the loop (common/live.py) ------------------------------------------------------

    def refreshing(self) -> bool:
        """No refresh while paused, or while a confirmation lists what will be signalled."""
        return not self.state.paused and self.state.confirm is None

    def interval(self) -> float:
        return self.state.refresh

    def refresh(self) -> None:
        self.poll()

    def finished(self) -> bool:
        return False

    def run(self) -> int:
        try:
            live.run(self, KEYS, self.console)
        finally:
            if self.conn is not None:
                self.conn.close()
        return 0


KEYS = KeyTable(
    "pgtop keys",
    [
        Binding(("q", "Q"), "q", "quit", "quit"),
        Binding(
            ("up", "down", "pgup", "pgdn", "home", "end"),
            "up / down",
            "move",
            "select a backend (PgUp / PgDn, Home / End: a page, the first, the last)",
            with_key=True,
        ),
        Binding(
            ("\r", "\n"), "enter", "show_query", "show the selected backend's full query (any key returns)"
        ),
        Binding((" ", "u"), "space / u", "tag", "tag / untag the selected backend; untag all", with_key=True),
        Binding(
            ("k",),
            "k",
            "ask",
            "cancel or terminate the tagged backends, or the selected one (you confirm first)",
            with_key=True,
        ),
        Binding(
            ("K",),
            "K",
            "ask",
            "cancel or terminate the queries running longer than the slow threshold, among the rows of "
            "the current view and filter (you confirm first)",
            with_key=True,
        ),
        Binding(
            ("/",), "/", "filter", "filter: db=NAME user=NAME state=STATE min=SECONDS re=REGEX (empty: none)"
        ),
        Binding(("s",), "s", "cycle_sort", f"sort by {', '.join(data.SORTS)} (cycles)"),
        Binding(
            ("v",),
            "v",
            "cycle_view",
            "view all, running, waiting (blocked), blocking, tree (who blocks whom)",
        ),
        Binding(("C",), "C", "cycle_columns", f"columns: {', '.join(columns.PROFILES)} (cycles)"),
        Binding(("i",), "i", "toggle_idle", "show / hide idle sessions"),
        Binding(("p",), "p", "pause", "pause / resume the refresh"),
        Binding(("+", "-"), "+ / -", "speed", "refresh slower / faster", with_key=True),
        Binding(("?",), "?", "help", "this help (any key returns)"),
    ],
)


CONFIRM_STATUS = {
    "k": "c cancel listed queries  a cancel whatever runs now  t terminate  esc back out",
    "K": "c cancel the queries  t terminate their sessions  esc back out",
}
CONFIRM_SHORT = {  # the same keys on a narrow screen (40 columns)
    "k": "c cancel  a cancel now  t term  esc back",
    "K": "c cancel  t terminate  esc back",
}


def confirmation(targets: list[data.Backend], what: str, key: str) -> render.Listing:
    """What `k` or `K` is about to signal, and the keys that do it (a pure function)."""
    tail = [
        "",
        "c    cancel the listed queries (each only if it still runs that query)",
    ]
    if key == "k":
        tail += [
            "a    cancel whatever each session runs now (its query keeps changing)",
            "t    terminate the sessions (only the listed ones: same pid, same start)",
        ]
    else:
        tail += ["t    terminate their sessions (each only if it still runs the listed query)"]
    tail += ["esc  back out"]
    return render.Listing(
        head=[f"About to signal {len(targets)} backend(s) ({what}):", ""],
        items=[
            f"  {b.pid:>7}  {b.usename or ''}  {b.datname or ''}  {columns.seconds(b.query_seconds)}  "
            f"{' '.join((b.query or '').split())[:200]}"
            for b in targets
        ],
        tail=tail,
        total=f"all {len(targets)} are signalled",
        short_head=[f"About to signal {len(targets)} backend(s):"],
        short_tail=[CONFIRM_SHORT[key]],
    )


def prompt_line(text: str, width: int) -> str:
    """The filter prompt's status line: what is typed always shows (its end, when long)."""
    hint = "filter (db= user= state= min= re=; enter applies, esc backs out): "
    if len(hint) + len(text) + 1 > width:
        hint = "filter: "
    room = max(1, width - len(hint) - 1)
    return hint + (text if len(text) <= room else "…" + text[-(room - 1) :])
