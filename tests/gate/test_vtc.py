"""The VMOD's own varnishtest suite (tests/gate/vtc/*.vtc), as real VMODs are tested: each file
run by Debian's varnishtest against the library `webops gate vmod` built, with its test files."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need
from webops.gate.bucket import bucket

VTC = sorted((Path(__file__).parent / "vtc").glob("*.vtc"))


def profiles_file(path: Path, rows: list[tuple[str, int]]) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE user_profiles (user_id TEXT PRIMARY KEY NOT NULL, has_profile INTEGER NOT NULL) "
            "WITHOUT ROWID"
        )
        db.executemany("INSERT INTO user_profiles VALUES (?, ?)", rows)
    db.close()
    path.chmod(0o644)


@pytest.fixture(scope="module")
def files() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="webops-vtc-"))
    top.chmod(0o777)  # varnishd's worker user reads here; swap.vtc writes here
    profiles_file(top / "good.db", [("alice", 1), ("bob", 0)])
    profiles_file(top / "new.db", [("alice", 1), ("carol", 1)])
    (top / "garbage.db").write_bytes(b"\x00garbage" * 512)
    with sqlite3.connect(top / "schema.db") as db:
        db.execute("CREATE TABLE user_profiles (profile_id TEXT PRIMARY KEY, data TEXT)")
    for p in top.iterdir():
        p.chmod(0o644)
    yield top
    shutil.rmtree(top)


@pytest.mark.parametrize("vtc", VTC, ids=[p.stem for p in VTC])
def test_varnishtest(vtc: Path, vmod: Path, files: Path) -> None:
    need(shutil.which("varnishtest") is not None, "varnishtest (apt-get install varnish)")
    macros = {
        "vmod": vmod,
        "dir": files,
        "good": files / "good.db",
        "new": files / "new.db",
        "garbage": files / "garbage.db",
        "schema": files / "schema.db",
        "missing": files / "missing.db",
        "bucket_alice_recs": bucket("alice", "recs"),
        "bucket_bob": bucket("bob"),
    }
    r = subprocess.run(
        ["varnishtest", "-q", *(f"-D{k}={v}" for k, v in macros.items()), str(vtc)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
