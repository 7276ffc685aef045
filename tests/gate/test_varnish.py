"""The whole gate in a real varnishd (the VMOD built on this host, the generated VCL) in front of
a backend that counts what reaches it."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_until
from tests.gate.conftest import GATE, Site, child_pid, deleted_files, make_site, open_files
from webops.gate.bucket import bucket


def get(site: Site, path: str = "/api/recs", cookie: str | None = None) -> httpx.Response:
    headers = {"Cookie": cookie} if cookie is not None else {}
    return httpx.get(f"http://127.0.0.1:{site.varnish.port}{path}", headers=headers, timeout=30)


def backend_hits(site: Site, decision_prefix: str) -> int:
    return sum(n for (_, d), n in site.backend.seen.items() if d.startswith(decision_prefix))


def test_anonymous_no_profile_and_profile(site: Site) -> None:
    assert site.build({"alice": 9, "bob": 1}).returncode == 0  # bob: below min_events 5
    for cookie in (None, "other=1", "userId=", "userId=bob", "userId=nobody; theme=dark"):
        r = get(site, cookie=cookie)
        assert r.text == "generic" and r.headers["X-Gate"].startswith("generic"), (cookie, r.headers)
    # one generic object for all of them: the backend saw it once, without any cookie
    assert backend_hits(site, "generic") == 1 and site.backend.cookies == [""]
    assert get(site, cookie="userId=bob").headers["X-Gate"] == "generic: no profile"
    assert get(site, cookie="userId=nobody").headers["X-Gate"] == "generic: no profile"
    assert get(site, cookie="theme=dark").headers["X-Gate"] == "generic: anonymous"
    for _ in range(3):  # passed every time, with the user's cookies
        r = get(site, cookie="theme=dark; userId=alice")
        assert r.headers["X-Gate"] == "personalized" and "userId=alice" in r.text
    assert backend_hits(site, "personalized") == 3
    assert get(site, "/other", cookie="userId=alice").headers.get("X-Gate", "") == ""  # not a gated URL
    log = site.varnish.log("-g", "raw", "-i", "VCL_Log")
    assert "webops-gate: personalized" in log and "webops-gate: generic: no profile" in log


HOSTILE = [
    "userId=x' OR '1'='1",
    'userId="alice"',
    "userId=alice'--",
    "userId=alice%00",
    "userId=" + "a" * 10_000,
    "userId=alice; userId=' UNION SELECT 1 --",
]


@pytest.fixture
def roomy_site(vmod: Path) -> Iterator[Site]:
    """Headers up to 32 kB (Varnish's default refuses a 10 kB cookie itself, with a 400)."""
    yield from make_site(vmod, "", "http_req_hdr_len=32k", "http_req_size=64k")


def test_hostile_cookie_values_get_the_generic_answer(roomy_site: Site) -> None:
    site = roomy_site
    assert site.build({"alice": 9}).returncode == 0
    starts = site.child_starts()
    for cookie in HOSTILE:
        r = get(site, cookie=cookie)
        assert r.status_code == 200 and r.text == "generic", cookie[:80]
    # a NUL in the header, sent raw: Varnish refuses the request or answers generic; never passes
    with socket.create_connection(("127.0.0.1", site.varnish.port), timeout=30) as s:
        s.sendall(
            b"GET /api/recs HTTP/1.1\r\nHost: x\r\nCookie: userId=alice\x00x\r\nConnection: close\r\n\r\n"
        )
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert b"personalized" not in raw
    assert backend_hits(site, "personalized") == 0 and site.child_starts() == starts


@pytest.mark.parametrize("state", ["missing", "garbage", "wrong schema", "empty"])
def test_a_broken_file_means_no_profile(site: Site, state: str) -> None:
    if state == "garbage":
        site.db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    elif state == "wrong schema":
        import sqlite3

        with sqlite3.connect(site.db) as db:
            db.execute("CREATE TABLE user_profiles (profile_id TEXT PRIMARY KEY, data TEXT)")
            db.execute("INSERT INTO user_profiles VALUES ('alice', 'x')")
        site.db.chmod(0o644)
    elif state == "empty":
        site.db.write_bytes(b"")
    starts = site.child_starts()
    for _ in range(3):
        r = get(site, cookie="userId=alice")
        assert r.status_code == 200 and r.headers["X-Gate"] == "generic: no profile"
    assert site.child_starts() == starts
    log = site.varnish.log("-g", "raw", "-i", "VCL_Log")
    assert f"webops-gate: {site.db}: no profile: " in log, log


def test_a_file_swapped_under_load(site: Site) -> None:
    """Publishes while clients hammer: no error, no child restart, and the new answer arrives
    within the check interval (0.5 s here)."""
    assert site.build({"alice": 9}).returncode == 0
    starts = site.child_starts()
    errors: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                r = client.get(
                    f"http://127.0.0.1:{site.varnish.port}/api/recs", headers={"Cookie": "userId=alice"}
                )
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:80]}")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(5):  # carol gains a profile, loses it, gains it...
            users = {"alice": 9, "carol": 9 if n % 2 == 0 else 1}
            assert site.build(users, "--force").returncode == 0
            want = "personalized" if n % 2 == 0 else "generic: no profile"
            wait_until(lambda w=want: get(site, cookie="userId=carol").headers["X-Gate"] == w, what=want)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == [] and site.child_starts() == starts


@pytest.fixture
def rollout_site(vmod: Path) -> Iterator[Site]:
    yield from make_site(vmod, 'rollout = 30\nsalt = "recs-2026"\n')


def test_rollout_is_sticky_and_python_predicts_it(rollout_site: Site) -> None:
    site = rollout_site
    users = [f"user{i}" for i in range(200)]
    assert site.build(dict.fromkeys(users, 9)).returncode == 0
    passed = set()
    for u in users:
        first, second = (get(site, cookie=f"userId={u}").headers["X-Gate"] for _ in range(2))
        assert first == second
        if first == "personalized":
            passed.add(u)
    predicted = {u for u in users if bucket(u, "recs-2026") < 30}
    assert passed == predicted and 30 <= len(passed) <= 90  # about 30 % of 200
    for u in users[:10]:  # and check says the same, step by step
        r = subprocess.run(
            [*GATE, "check", "--config", str(site.config), "--format", "json", u],
            capture_output=True,
            text=True,
        )
        out = json.loads(r.stdout)
        assert (out["decision"] == "personalized") == (u in passed), out


def test_connections_are_released_when_the_vcl_goes_cold(site: Site) -> None:
    assert site.build({"alice": 9}).returncode == 0
    for _ in range(5):
        get(site, cookie="userId=alice")
    assert open_files(site, site.db) >= 1
    active = next(line.split()[-1] for line in site.adm("vcl.list").splitlines() if line.startswith("active"))
    plain = Path(site.varnish.root) / "plain.vcl"
    plain.write_text(f'vcl 4.1;\nbackend default {{ .host = "127.0.0.1"; .port = "{site.varnish.port}"; }}\n')
    site.adm("vcl.load", "plain", str(plain))
    site.adm("vcl.use", "plain")
    site.adm("vcl.state", active, "cold")

    def released() -> bool:
        # worker threads keep the VCL they last ran until they run another: traffic moves them on,
        # and the VCL goes cold (the event that closes connections) once no thread holds it
        get(site, cookie="userId=alice")
        return open_files(site, site.db) == 0

    wait_until(released, what="the cold VCL's connections closed", detail=lambda: site.adm("vcl.list"))
    site.adm("vcl.state", active, "warm")  # and warm again, it reopens on demand
    site.adm("vcl.use", active)
    assert get(site, cookie="userId=alice").headers["X-Gate"] == "personalized"
    site.adm("vcl.use", "plain")
    site.adm("vcl.discard", active)
    wait_until(released, what="the discarded VCL's connections closed", detail=lambda: site.adm("vcl.list"))


def test_no_sqlite_lock_is_taken_so_a_locked_file_still_answers(site: Site) -> None:
    """Another process holds the file's exclusive lock (what a writer in place would take): with
    SQLite's locking every lookup would be SQLITE_BUSY, so 'no profile'. The gate opens the file
    immutable (a publish replaces it, never writes it), so no lock is asked for, shared or not."""
    import sqlite3

    assert site.build({"alice": 9}).returncode == 0
    holder = sqlite3.connect(site.db, isolation_level=None)
    holder.execute("PRAGMA journal_mode = DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(5):
            assert get(site, cookie="userId=alice").headers["X-Gate"] == "personalized"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "database is locked" not in site.varnish.log("-g", "raw", "-i", "VCL_Log")


# --- the live file damaged in place, and replaced files released (issue 28, items 1 and 3) ---

FILLER = 20_000  # users in each test file: a file of ~100 pages, copied in place over ~50 ms


def profiles_file(path: Path, users: dict[str, int]) -> None:
    """A file of the published shape, written directly (faster than the CLI for many files)."""
    import sqlite3

    from webops.gate.publish import SCHEMA

    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("BEGIN")
    for statement in SCHEMA:
        db.execute(statement)
    db.executemany("INSERT INTO user_profiles VALUES (?, ?)", sorted(users.items()))
    db.execute("COMMIT")
    db.close()
    path.chmod(0o644)


def rename_over(site: Site, source: Path) -> None:
    """A publish: a copy beside the live file, renamed over it."""
    new = site.db.with_name(".swap.db.new")
    shutil.copyfile(source, new)
    new.chmod(0o644)
    os.replace(new, site.db)


def copy_in_place(source: Path, live: Path, limit: int | None = None) -> None:
    """What `cp source live` does to the live file (open with O_TRUNC, then write), in 16 kB
    chunks with a pause between them as on a loaded host; `limit`: stop there (a copy cut short)."""
    data = source.read_bytes()[:limit]
    with open(live, "wb", buffering=0) as f:
        for i in range(0, len(data), 16384):
            f.write(data[i : i + 16384])
            time.sleep(0.002)


ANSWERS = (b"generic", b"personalized for ")


def ask(port: int, user: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes, str, str]:
    """One gated request (http.client: light enough for many of them in Python threads), on
    `conn` (kept alive) or on a connection of its own: status, body, X-Gate, X-Gate-Errors."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", "/api/recs", headers={"Cookie": f"userId={user}"})
        r = c.getresponse()
        body = r.read()
        return r.status, body, r.getheader("X-Gate") or "", r.getheader("X-Gate-Errors") or ""
    finally:
        if own:
            c.close()


def decision(site: Site, user: str) -> str:
    return ask(site.varnish.port, user)[2]


class Load:
    """Clients asking for gated pages until stopped (or `limit` seconds): some on keep-alive
    connections, some on a new connection per request. Every answer must be a 200 with the
    generic or a personalized body; anything else, a reset connection included, is an error."""

    def __init__(self, site: Site, users: list[str], keepalive: int = 3, fresh: int = 2, limit: float = 60):
        self.port = site.varnish.port
        self.users, self.limit = users, limit
        self.errors: list[str] = []
        self.requests = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i, True)) for i in range(keepalive)]
        self.threads += [threading.Thread(target=self.run, args=(i, False)) for i in range(fresh)]

    def run(self, n: int, keepalive: bool) -> None:
        deadline = time.monotonic() + self.limit
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30) if keepalive else None
        i = n
        while not self.stop.is_set() and time.monotonic() < deadline:
            user = self.users[i % len(self.users)]
            i += 1
            try:
                status, body, _, _ = ask(self.port, user, conn)
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(f"{user}: {type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()  # and reconnect on the next request
                continue
            self.requests += 1
            if status != 200 or not body.startswith(ANSWERS):
                self.errors.append(f"{user}: {status} {body[:80]!r}")
        if conn is not None:
            conn.close()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def burst(site: Site, user: str = "alice", clients: int = 16) -> None:
    """Concurrent personalized requests (passed to the backend): many worker threads open a
    connection to the file, most of them idle afterwards."""
    with ThreadPoolExecutor(clients) as pool:
        for status, *_ in pool.map(lambda _: ask(site.varnish.port, user), range(clients)):
            assert status == 200


def errors_counted(site: Site) -> int:
    return int(ask(site.varnish.port, "nobody")[3])


def damage(site: Site, how: str, good: Path, other: Path) -> None:
    if how == "cp same bytes":
        copy_in_place(good, site.db)
    elif how == "cp another file":
        copy_in_place(other, site.db)
    elif how == "truncate -s 0":
        os.truncate(site.db, 0)
    elif how == "half a copy":
        copy_in_place(other, site.db, limit=other.stat().st_size // 2)
    elif how == "rm":
        site.db.unlink()


# what the damaged file answers (alice, carol) once every thread looked at it again
AFTER = {
    "cp same bytes": ("personalized", "generic: no profile"),
    "cp another file": ("generic: no profile", "personalized"),
    "truncate -s 0": ("generic: no profile", "generic: no profile"),
    "half a copy": ("generic: no profile", "generic: no profile"),
    "rm": ("generic: no profile", "generic: no profile"),
}


@pytest.mark.parametrize("how", list(AFTER))
def test_the_live_file_damaged_in_place_under_load(site: Site, how: str) -> None:
    """Written in place (cp, truncate, a copy cut short) or removed while clients hammer: never a
    crash, a reset or an error, at worst 'no profile' (counted, logged) until a good file is
    renamed over it, which is read within the check interval; nothing replaced stays open."""
    interval = 0.5
    filler = {f"user{i:05d}": i % 2 for i in range(FILLER)}
    good, other = site.db.with_name("good.db"), site.db.with_name("other.db")
    profiles_file(good, {"alice": 1, "carol": 0, **filler})
    profiles_file(
        other, {"alice": 0, "carol": 1, "dave": 1, **filler, **{f"more{i}": 1 for i in range(2000)}}
    )
    assert good.stat().st_size != other.stat().st_size
    rename_over(site, good)
    assert decision(site, "alice") == "personalized"
    pid, starts, errors = child_pid(site), site.child_starts(), errors_counted(site)
    burst(site)  # many threads hold the live file open, most of them idle from now on
    with Load(site, ["alice", "carol", "user00017", "user19998", "nobody"]) as load:
        time.sleep(0.3)
        damage(site, how, good, other)
        time.sleep(interval + 0.3)  # every thread has looked at the file again
        for _ in range(10):
            assert (decision(site, "alice"), decision(site, "carol")) == AFTER[how]
        if how in ("truncate -s 0", "half a copy", "rm"):  # no file that reads: counted and logged
            assert errors_counted(site) > errors
            assert f"webops-gate: {site.db}: no profile: " in site.varnish.log("-g", "raw", "-i", "VCL_Log")
        rename_over(site, good)
        time.sleep(interval + 0.1)
        for _ in range(20):  # every thread reads the good file again
            assert (decision(site, "alice"), decision(site, "carol")) == AFTER["cp same bytes"]
    assert load.errors == [] and load.requests > 100, (load.requests, load.errors[:5])
    assert (child_pid(site), site.child_starts(), site.counter("MGT.child_panic")) == (pid, starts, 0)
    assert site.panic() == ""
    # the damaged version was renamed over: closed by the first thread that saw the new file
    assert deleted_files(site) == {}


@pytest.fixture
def fast_site(vmod: Path) -> Iterator[Site]:
    yield from make_site(vmod, "", interval=0.05)


def test_replaced_files_are_released_even_by_idle_threads(fast_site: Site) -> None:
    """100 publishes under load, with bursts that leave many worker threads idle holding a
    connection: at any time at most one replaced version is still open (the one just replaced,
    until a thread looks again), and none once a request comes past the check interval."""
    site, interval = fast_site, 0.05
    sources = site.db.parent / "versions"
    sources.mkdir()
    for v in range(10):
        profiles_file(
            sources / f"v{v}.db", {"alice": 1, f"user{v}": 1, **{f"x{i}": 1 for i in range(50 * v)}}
        )
    rename_over(site, sources / "v0.db")
    pid, starts = child_pid(site), site.child_starts()
    held = []
    with Load(site, ["alice", "nobody", "user3"], keepalive=2, fresh=1) as load:
        for n in range(100):
            if n % 10 == 0:
                burst(site)
            rename_over(site, sources / f"v{n % 10}.db")
            time.sleep(interval / 2)
            held.append(deleted_files(site))
        time.sleep(interval + 0.05)
        assert decision(site, "alice") == "personalized"
    at_most_one = [h for h in held if len(h) > 1]
    assert at_most_one == [], (
        f"{len(at_most_one)} of 100 samples with more than one replaced version: {at_most_one[:3]}"
    )
    assert deleted_files(site) == {}
    assert load.errors == [] and (child_pid(site), site.child_starts()) == (pid, starts)


def test_at_varnish_defaults_a_10_kb_cookie_is_refused_before_the_vcl(site: Site) -> None:
    """What docs/gate.md says of 10 kB cookies: Varnish's own header limit (http_req_hdr_len, 8 kB)
    answers 400 first; past it (roomy_site) the gate treats them as anonymous."""
    assert get(site, cookie="userId=" + "a" * 10_000).status_code == 400
    assert get(site, cookie="userId=" + "a" * 100).status_code == 200
