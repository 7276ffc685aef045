"""The fleet path with real parts: one publisher behind a static web server (Python's http.server),
three Varnish hosts (each its own varnishd, directory, settings), `webops gate pull` on each; a
host that was away catches up; install from a staged copy; rollback; what a bad copy does."""

from __future__ import annotations

import contextlib
import http.client
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, need, stop_process, wait_until
from tests.gate.conftest import GATE, Site, make_site


def gate(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([*GATE, *args], input=stdin, capture_output=True, text=True, timeout=120)


def decision(site: Site, user: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", site.varnish.port, timeout=10)
    try:
        conn.request("GET", "/api/recs", headers={"Cookie": f"userId={user}"})
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        return r.getheader("X-Gate") or ""
    finally:
        conn.close()


@contextlib.contextmanager
def publisher(root: Path) -> Iterator[tuple[Path, str]]:
    """The publisher's directory, served read-only over HTTP on loopback."""
    root.mkdir(mode=0o755)
    config = root / "gate.toml"
    config.write_text(f'db = "{root / "user_profiles.db"}"\n')
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _up(port), what="the publisher's web server")
        yield config, f"http://127.0.0.1:{port}/user_profiles.db"
    finally:
        stop_process(server)


def _up(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("HEAD", "/")
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def publish(config: Path, users: dict[str, int]) -> None:
    lines = "".join(f'{{"user_id": "{u}", "events": {n}}}\n' for u, n in users.items())
    r = gate("build", "--config", str(config), "--force", stdin=lines)
    assert r.returncode == 0, r.stderr


def test_one_publish_reaches_every_host_and_one_that_was_away_catches_up(vmod: Path, tmp_path: Path) -> None:
    with publisher(tmp_path / "pub") as (pub, url), contextlib.ExitStack() as stack:
        hosts = [stack.enter_context(contextlib.contextmanager(make_site)(vmod, "")) for _ in range(3)]
        publish(pub, {"alice": 10, "bob": 1})
        for host in hosts:
            r = gate("pull", url, "--config", str(host.config))
            assert r.returncode == 0 and "installed" in r.stdout, r.stderr
        for host in hosts:  # within check_interval (0.5 s here)
            wait_until(lambda h=host: decision(h, "alice") == "personalized", what="the first publish served")
            assert decision(host, "bob") == "generic: no profile"

        # the third host is away: its pull does not run (every profile changes: past max_change)
        publish(pub, {"alice": 1, "bob": 10})
        for host in hosts[:2]:
            refused = gate("pull", url, "--config", str(host.config))
            assert refused.returncode == 1 and "--force" in refused.stderr
            assert gate("pull", url, "--config", str(host.config), "--force").returncode == 0
            wait_until(lambda h=host: decision(h, "bob") == "personalized", what="the second publish served")
        assert decision(hosts[2], "alice") == "personalized"  # still the first file
        r = gate("pull", url, "--config", str(hosts[2].config), "--force")  # back: its next run catches up
        assert r.returncode == 0 and "+1 -1" in r.stdout, r.stdout + r.stderr
        wait_until(lambda: decision(hosts[2], "bob") == "personalized", what="the host that was away")

        again = gate("pull", url, "--config", str(hosts[0].config))
        assert again.returncode == 0 and "nothing to do" in again.stdout
        kept = list(hosts[0].db.parent.glob("user_profiles.db.versions/user_profiles.db.*"))
        assert len(kept) == 1  # the first file, replaced once; the same file again kept nothing

        back = gate("rollback", "--config", str(hosts[0].config))
        assert back.returncode == 0, back.stderr
        wait_until(lambda: decision(hosts[0], "alice") == "personalized", what="the rollback served")
        assert decision(hosts[1], "alice") == "generic: no profile"  # one host, one command


def test_a_staged_copy_is_installed_and_a_partial_one_is_refused(site: Site, tmp_path: Path) -> None:
    built = tmp_path / "built"
    built.mkdir()
    config = built / "gate.toml"
    config.write_text(f'db = "{built / "user_profiles.db"}"\n')
    publish(config, {"carol": 10})
    staged = site.db.parent / "incoming.db"  # rsync/scp to a staging name on the host, never the live one
    shutil.copyfile(built / "user_profiles.db", staged)
    data = staged.read_bytes()
    staged.write_bytes(data[: len(data) // 2])  # the copy was cut short
    r = gate("install", str(staged), "--config", str(site.config))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and not site.db.exists()
    staged.write_bytes(data)
    r = gate("install", str(staged), "--config", str(site.config))
    assert r.returncode == 0, r.stderr
    wait_until(lambda: decision(site, "carol") == "personalized", what="the installed file served")
    assert not [p for p in site.db.parent.iterdir() if p.name.startswith(".")]  # no temp file left


@pytest.mark.parametrize("command", ["rollback", "pull ftp://x/y", "pull http://127.0.0.1:{port}/none"])
def test_fleet_commands_fail_in_one_line(site: Site, command: str) -> None:
    """No previous version; not HTTP; nothing listening (a free port)."""
    r = gate(*command.format(port=free_port()).split(), "--config", str(site.config))
    assert (
        r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("webops gate: ")
    )


def test_versions_are_kept_to_keep_and_rollback_walks_back(tmp_path: Path) -> None:
    built = []
    for n in range(4):  # four publishes, each a different set of profiles
        d = tmp_path / f"b{n}"
        d.mkdir()
        (d / "gate.toml").write_text(f'db = "{d / "p.db"}"\n')
        publish(d / "gate.toml", {f"user{n}": 10})
        built.append(d / "p.db")
    host = tmp_path / "host"
    host.mkdir()
    config = host / "gate.toml"
    config.write_text(f'db = "{host / "p.db"}"\n')
    for path in built:
        r = gate("install", str(path), "--config", str(config), "--force", "--keep", "2")
        assert r.returncode == 0, r.stderr
    kept = sorted((host / "p.db.versions").iterdir())
    assert len(kept) == 2  # the second and third files; the first pruned

    def users() -> str:
        return (
            gate("check", "user1", "--config", str(config)).stdout
            + gate("check", "user2", "--config", str(config)).stdout
        )

    assert gate("rollback", "--config", str(config)).returncode == 0
    assert "user2: generic: outside" not in users() and "user2: personalized" in users()
    assert gate("rollback", "--config", str(config)).returncode == 0
    assert "user1: personalized" in users()
    assert gate("rollback", "--config", str(config)).returncode == 1  # nothing older kept


def built_files(root: Path, *sets: dict[str, int]) -> list[Path]:
    out = []
    for n, users in enumerate(sets):
        d = root / f"built{n}"
        d.mkdir()
        (d / "gate.toml").write_text(f'db = "{d / "p.db"}"\n')
        publish(d / "gate.toml", users)
        out.append(d / "p.db")
    return out


def a_host(root: Path) -> Path:
    host = root / "host"
    host.mkdir()
    config = host / "gate.toml"
    config.write_text(f'db = "{host / "p.db"}"\n')
    return config


def test_a_pull_that_trickles_stops_at_its_timeout(tmp_path: Path) -> None:
    """A server that promises 100 MB and sends a byte a second: --timeout bounds the whole
    transfer, not each read."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
        while not stop.wait(0.2):
            with contextlib.suppress(OSError):
                conn.send(b"x")
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        config = a_host(tmp_path)
        proc = subprocess.Popen(
            [
                *GATE,
                "pull",
                f"http://127.0.0.1:{server.getsockname()[1]}/p.db",
                "--config",
                str(config),
                "--timeout",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, err = proc.communicate(timeout=60)  # before the fix: still reading after minutes
        assert proc.returncode == 1 and "not downloaded within 2 s" in err
    finally:
        stop.set()
        server.close()


def test_concurrent_installs_take_turns_and_keep_only_real_versions(tmp_path: Path) -> None:
    a, c = built_files(tmp_path, {f"a{i}": 10 for i in range(50)}, {f"c{i}": 10 for i in range(50)})
    config = a_host(tmp_path)
    procs = [
        subprocess.Popen(
            [*GATE, "install", str(f), "--config", str(config), "--force", "--keep", "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in [a, c] * 6
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert not any("+0 -0" in out for out, _ in outs)  # each checked against the file it replaced
    installed = sum("installed" in out for out, _ in outs)
    assert len(list((tmp_path / "host" / "p.db.versions").iterdir())) == installed - 1


def test_each_rollback_keeps_the_file_it_replaced(tmp_path: Path) -> None:
    files = built_files(tmp_path, {"x": 10}, {"y": 10}, {"z": 10})
    config = a_host(tmp_path)
    for f in files:
        assert gate("install", str(f), "--config", str(config), "--force").returncode == 0
    for _ in range(2):
        assert gate("rollback", "--config", str(config)).returncode == 0
    rolled = list((tmp_path / "host" / "p.db.versions").glob("p.db.rolled-back.*"))
    assert len(rolled) == 2  # the z file and the y file: neither lost


def test_errors_name_the_file_given_not_a_temporary_one(tmp_path: Path) -> None:
    config = a_host(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    r = gate("install", str(junk), "--config", str(config))
    assert r.returncode == 1 and str(junk) in r.stderr and ".new-" not in r.stderr


def test_a_read_only_directory_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    import os

    need(os.geteuid() == 0, "a read-only bind mount needs root")
    (new,) = built_files(tmp_path, {"x": 10})
    config = a_host(tmp_path)
    host = tmp_path / "host"
    subprocess.run(["mount", "--bind", str(host), str(host)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(host)], check=True)
        for command in (["install", str(new)], ["rollback"]):
            r = gate(*command, "--config", str(config))
            assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert "Traceback" not in r.stderr
    finally:
        subprocess.run(["umount", "-l", str(host)], check=False)
