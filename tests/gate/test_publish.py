"""`webops gate build`, `check`, `vcl` and the settings, against real files (and a real
PostgreSQL query result): what is published, what is refused, and that a refusal touches nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.gate.conftest import GATE
from tests.servers import Postgres
from webops.gate.bucket import bucket


def gate(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([*GATE, *args], input=stdin, capture_output=True, text=True)


def rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as c:
        out = dict(c.execute("SELECT user_id, has_profile FROM user_profiles").fetchall())
    c.close()
    return out


def test_jsonl_and_csv_add_up_per_user_and_the_threshold_decides(tmp_path: Path) -> None:
    db = tmp_path / "user_profiles.db"
    (tmp_path / "a.jsonl").write_text(
        '{"user_id": "alice", "events": 3}\n{"user_id": "alice"}\n\n{"user_id": 42, "events": 5}\n'
        '{"user_id": "bad id; DROP TABLE", "events": 9}\n'
    )
    (tmp_path / "b.csv").write_text("user_id,events\nalice,1\nbob,2\n")
    r = gate("build", "--db", str(db), str(tmp_path / "a.jsonl"))
    assert r.returncode == 0, r.stderr
    assert "2 users, 1 with a profile" in r.stdout and "skipped 1 ids" in r.stdout  # alice 4 < 5, 42: 5
    r = gate("build", "--db", str(db), "--format", "csv", str(tmp_path / "b.csv"), "--min-events", "2")
    assert r.returncode == 1 and "+1 -1" in r.stderr  # one profile for another: a churn of 200 %
    r = gate(
        "build", "--db", str(db), "--format", "csv", str(tmp_path / "b.csv"), "--min-events", "2", "--force"
    )
    assert r.returncode == 0, r.stderr
    assert rows(db) == {"alice": 0, "bob": 1}  # a publish replaces, it does not merge
    assert "since the last publish: 1 -> 1 profiles, +1 -1" in r.stdout
    assert oct(db.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.csv", "user_profiles.db"]


def test_a_big_change_is_refused_unless_forced_and_a_refusal_touches_nothing(tmp_path: Path) -> None:
    db = tmp_path / "user_profiles.db"
    many = "".join(f'{{"user_id": "u{i}", "events": 9}}\n' for i in range(100))
    assert gate("build", "--db", str(db), stdin=many).returncode == 0
    before = (db.stat().st_ino, db.read_bytes())
    few = "".join(f'{{"user_id": "u{i}", "events": 9}}\n' for i in range(70))  # -30 %
    r = gate("build", "--db", str(db), stdin=few)
    assert r.returncode == 1 and "100 to 70" in r.stderr and "--force" in r.stderr
    assert r.stderr.count("\n") == 1 and (db.stat().st_ino, db.read_bytes()) == before
    r = gate("build", "--db", str(db), "--max-change", "0.5", stdin=few)
    assert r.returncode == 0 and "+0 -30" in r.stdout
    assert gate("build", "--db", str(db), "--force", stdin="").returncode == 0 and rows(db) == {}


@pytest.mark.parametrize(
    ("args", "stdin", "error"),
    [
        ([], '{"user_id": "a"}\n{"user_id": \n', "stdin:2: not JSON"),
        ([], '{"user": "a"}\n', "stdin:1: expected an object with a user_id"),
        ([], '{"user_id": "a", "events": -1}\n', "stdin:1: events -1 is not a count"),
        (["--format", "csv"], "id,events\na,1\n", "stdin:1: expected a header with a user_id column"),
        (["--format", "csv"], "user_id,events\na,many\n", "stdin:2: events 'many' is not a whole number"),
        (["--rollout", "150"], "", "--rollout: rollout: expected a whole percentage"),
        (["--db", "relative.db"], "", "--db: db: expected an absolute path"),
        (["--db", '/tmp/x";}sub vcl_recv{return(pass);}".db'], "", "without double quotes"),
        (["--db", "/nonexistent/dir/p.db"], "", "/nonexistent/dir: no such directory"),
    ],
)
def test_bad_input_is_one_line_and_publishes_nothing(
    tmp_path: Path, args: list[str], stdin: str, error: str
) -> None:
    db = tmp_path / "p.db"
    r = gate("build", "--db", str(db), *args, stdin=stdin) if "--db" not in args else gate("build", *args)
    assert r.returncode in (1, 2) and error in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_config_file_is_shared_and_checked(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    conf = tmp_path / "gate.toml"
    conf.write_text(f'db = "{db}"\nrollout = 50\nsalt = "s1"\ncookie = "uid"\nurl = "^/api/recs"\n')
    assert gate("build", "--config", str(conf), stdin='{"user_id": "alice", "events": 5}\n').returncode == 0
    vcl = gate("vcl", "--config", str(conf)).stdout
    assert 'cookie.get("uid")' in vcl and 'gate.bucket(req.http.X-Webops-Gate-Id, "s1") >= 50' in vcl
    assert f'gate.db("{db}", 5s)' in vcl and "import gate;" in vcl
    out = json.loads(gate("check", "--config", str(conf), "--format", "json", "alice").stdout)
    inside = bucket("alice", "s1") < 50
    assert out["decision"] == ("personalized" if inside else "generic: outside the rollout (50%)")
    text = gate("check", "--config", str(conf), "--rollout", "0", "alice").stdout
    assert text.startswith("alice: generic: outside the rollout (0%)") and "has a profile" in text
    assert "not well-formed" in gate("check", "--config", str(conf), "x' OR 1=1").stdout
    assert "nobody has a profile" in gate("check", "--db", str(tmp_path / "none.db"), "alice").stdout
    conf.write_text('db = "/x.db"\nroll_out = 5\n')
    r = gate("vcl", "--config", str(conf))
    assert r.returncode == 2 and "unknown key 'roll_out'" in r.stderr
    conf.write_text('url = "^/a"b"\n')
    assert "not TOML" in gate("vcl", "--config", str(conf)).stderr


def test_a_query_result_from_postgresql(tmp_path: Path) -> None:
    """What a batch job has: events in PostgreSQL, counted by a query, psql --csv into build."""
    pg = Postgres()
    try:
        dsn = pg.dsn
        sql = (
            "CREATE TABLE reads (user_id text, article int);"
            "INSERT INTO reads SELECT 'u' || (i % 10), i FROM generate_series(1, 95) i;"
        )
        subprocess.run(["psql", dsn, "-q", "-c", sql], check=True, capture_output=True)
        query = "SELECT user_id, count(*) AS events FROM reads GROUP BY user_id"
        csv = subprocess.run(["psql", dsn, "--csv", "-c", query], check=True, capture_output=True, text=True)
    finally:
        pg.stop()
    db = tmp_path / "p.db"
    r = gate("build", "--db", str(db), "--format", "csv", "--min-events", "10", stdin=csv.stdout)
    assert r.returncode == 0, r.stderr
    # reads 1..95 by u(i % 10): u1-u5 read 10 articles each, the others 9
    assert rows(db) == {f"u{i}": int(1 <= i <= 5) for i in range(10)}


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (lambda path: path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8192), "not a database"),
        (
            lambda path: (
                sqlite3.connect(path)
                .execute("CREATE TABLE user_profiles (profile_id TEXT)")
                .connection.commit()
            ),
            r"not a profiles file: table user_profiles has columns \(profile_id TEXT\)",
        ),
    ],
    ids=["corrupt", "wrong schema"],
)
def test_a_file_that_fails_its_checks_is_never_published(tmp_path: Path, monkeypatch, damage, error) -> None:
    """The checks read the new file back as varnishd will: a file that is damaged or shaped
    wrongly (a disk error, another writer) stops the publish, and the live file stays."""
    from collections import Counter

    from webops.gate import publish
    from webops.gate.config import load

    db = tmp_path / "p.db"
    assert gate("build", "--db", str(db), stdin='{"user_id": "a", "events": 9}\n').returncode == 0
    before = db.read_bytes()
    monkeypatch.setattr(publish, "_write", lambda path, rows, cfg, source: damage(path))
    with pytest.raises(publish.PublishError, match=error):
        publish.publish(Counter({"a": 9}), load(None, {"db": str(db)}))
    assert db.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["p.db"]


def users(prefix: str, n: int) -> str:
    return "".join(f'{{"user_id": "{prefix}{i}", "events": 9}}\n' for i in range(n))


def test_the_guard_measures_churn_not_the_count(tmp_path: Path) -> None:
    """500 profiles replaced by 500 others is a change of 200 %, not 0 %: refused unless forced,
    the live file untouched and no temporary file left."""
    db = tmp_path / "user_profiles.db"
    assert gate("build", "--db", str(db), stdin=users("a", 500)).returncode == 0
    before = (db.stat().st_ino, db.read_bytes())
    r = gate("build", "--db", str(db), stdin=users("b", 500))
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stdout + r.stderr
    assert "+500 -500" in r.stderr and "nothing published; --force to publish anyway" in r.stderr
    assert (db.stat().st_ino, db.read_bytes()) == before and [p.name for p in tmp_path.iterdir()] == [db.name]
    r = gate("build", "--db", str(db), stdin=users("a", 450) + users("b", 50))  # 100 of 500: 20 %
    assert r.returncode == 0 and "500 -> 500 profiles, +50 -50" in r.stdout, r.stderr
    r = gate("build", "--db", str(db), "--force", stdin=users("b", 500))
    assert r.returncode == 0 and "+450 -450" in r.stdout, r.stderr


def test_check_is_the_public_check_of_a_built_file(tmp_path: Path) -> None:
    """What `install` runs on a copied file against a host's live file: counts, churn, refusals."""
    from webops.gate import publish
    from webops.gate.config import load

    live, built = tmp_path / "live.db", tmp_path / "built.db"
    assert gate("build", "--db", str(live), stdin=users("a", 10)).returncode == 0
    assert (
        gate("build", "--db", str(built), stdin=users("a", 9) + '{"user_id": "z", "events": 1}\n').returncode
        == 0
    )
    cfg = load(None, {"db": str(live)})
    assert publish.check(built, None, cfg, force=False) == publish.Checked(10, 9, None, 9, 0)
    assert publish.check(built, live, cfg, force=False) == publish.Checked(10, 9, 10, 0, 1)
    big = load(None, {"db": str(live), "max_change": 0.05})
    with pytest.raises(publish.PublishError, match=r"\+0 -1 .*--force"):
        publish.check(built, live, big, force=False)
    assert publish.check(built, live, big, force=True).removed == 1
    with sqlite3.connect(built) as c:
        c.execute("DROP TABLE webops_gate")
    c.close()
    with pytest.raises(publish.PublishError, match="webops_gate"):
        publish.check(built, live, cfg, force=True)
    built.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8192)
    with pytest.raises(publish.PublishError, match="not a database"):
        publish.check(built, live, cfg, force=True)
    with pytest.raises(publish.PublishError, match=r"missing\.db"):
        publish.check(tmp_path / "missing.db", live, cfg, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["built.db", "live.db"]  # nothing created


def temp_files(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.iterdir() if p.name.startswith(f".{db.name}.new-"))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_the_temporary_file_of_a_killed_publish_is_removed_by_the_next(tmp_path: Path) -> None:
    db = tmp_path / "user_profiles.db"
    signals = tmp_path / "signals.jsonl"
    signals.write_text(users("u", 100_000))
    proc = subprocess.Popen([*GATE, "build", "--db", str(db), str(signals)], stderr=subprocess.PIPE)
    try:
        while not temp_files(db) and proc.poll() is None:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)  # mid-write (or mid-check): its temporary file stays
    finally:
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL and temp_files(db) == [f".{db.name}.new-{proc.pid}"]
    (tmp_path / f".{db.name}.new-{dead_pid()}").write_bytes(b"half a file")  # another dead one
    running = tmp_path / f".{db.name}.new-{os.getpid()}"  # a publish still running (this process)
    running.write_bytes(b"being written")
    assert gate("build", "--db", str(db), stdin=users("u", 3)).returncode == 0
    assert temp_files(db) == [running.name] and db.exists()
    os.utime(running, (time.time() - 2 * 86400,) * 2)  # two days untouched: its pid is someone else's
    assert gate("build", "--db", str(db), stdin=users("u", 3)).returncode == 0
    assert temp_files(db) == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--url", "^/\x01"], "--url: url: expected"),
        (["--url", "^/a\nb"], "got '^/a\\nb'"),
        (["--url", "^/\x7f"], "got '^/\\x7f'"),
        (["--id-pattern", "^[a-z]{1,9}\t$"], "--id-pattern: id_pattern: "),
        (["--url", "^/\udcff"], "--url: url: "),  # not UTF-8 on the command line
        (["--url", "^/caf\u00e9"], "printable ASCII"),
        (["--url", "^/\\u0041"], "PCRE2"),  # Python reads \u, Varnish's PCRE2 refuses it
        (["--id-pattern", "(?a)^\\w+$"], "PCRE2"),
        (["--id-pattern", "^[[:alpha:]]+$"], "--id-pattern: id_pattern: "),  # Python reads another set
        (["--db", "/tmp/x\x7f.db"], "--db: db: "),
        (["--db", "/"], "--db: db: expected"),
        (["--vmod", "/usr/lib/\x9b2Jlibvmod_gate.so"], "--vmod: vmod: "),  # a C1 control
        (["--check-interval", "1e-05"], "got '1e-05'"),  # rendered 1e-05s
        (["--check-interval", "0.0015"], "got '0.0015'"),  # "Too many digits for real"
        (["--check-interval", "1.23456789"], "got '1.23456789'"),
        (["--db", "/tmp/"], "got '/tmp/'"),  # a directory
    ],
)
def test_every_setting_that_reaches_the_vcl_is_checked(args: list[str], error: str) -> None:
    r = gate("vcl", *args)
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr.startswith("webops gate: ") and r.stderr.count("\n") == 1 and error in r.stderr, r.stderr


def test_settings_from_the_file_are_checked_the_same(tmp_path: Path) -> None:
    conf = tmp_path / "gate.toml"
    conf.write_text('url = "^/\\u0001"\n')  # TOML's escape: a control character in the value
    r = gate("vcl", "--config", str(conf))
    assert (
        r.returncode == 2
        and r.stdout == ""
        and f"{conf}:1: url: " in r.stderr
        and "got '^/\\x01'" in r.stderr
        and r.stderr.count("\n") == 1
    )


def test_the_readme_install_path_works_as_written(tmp_path: Path) -> None:
    """docs/gate.md's install block: webops from a venv (Debian 12 refuses a system pip install), every
    `webops gate` command it runs exists, and its settings give VCL."""
    import re
    import subprocess
    import sys

    readme = (Path(__file__).parent.parent.parent / "docs" / "gate.md").read_text()
    block = readme.split("# `webops gate`", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    assert "python3-venv" in block.splitlines()[0] or "pipx" in block
    installs = [line for line in block.splitlines() if "pip install" in line]
    assert installs and all(re.search(r"(/bin/pip|pipx) install", line) for line in installs)
    for command in sorted(set(re.findall(r"webops gate (\w+)", readme))):
        r = subprocess.run([sys.executable, "-m", "webops", "gate", command, "--help"], capture_output=True)
        assert r.returncode == 0, command
    toml = block.split("<<'TOML'\n", 1)[1].split("\nTOML", 1)[0]
    config = tmp_path / "gate.toml"
    config.write_text(toml.replace("/var/lib/webops-gate", str(tmp_path)))
    r = subprocess.run(
        [sys.executable, "-m", "webops", "gate", "vcl", "--config", str(config)], capture_output=True
    )
    assert r.returncode == 0 and b"webops_gate_recv" in r.stdout, r.stderr
