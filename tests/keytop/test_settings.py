"""keytop's settings through the common layer: defaults -> --config FILE -> $WEBOPS_KEYTOP_* ->
flags, each value's source shown by --check-config, and every bad value one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import checked_config
from webops.cli import main
from webops.keytop import cli as keytop_cli

KEYTOP = [sys.executable, "-m", "webops", "keytop"]

ENV = [key.env for key in keytop_cli.KEYS.values() if key.env]  # every variable the tool reads


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "keytop.json"
    path.write_text(text)
    return str(path)


def check(capsys, *args: str) -> dict[str, tuple[object, str]]:
    assert main(["keytop", *args, "--check-config"]) == 0
    return checked_config(capsys.readouterr().out)


def test_check_config_says_where_each_value_comes_from(tmp_path: Path, capsys, monkeypatch) -> None:
    path = write(tmp_path, '{\n  limit: 10,\n  sort: "misses",\n  max_keys: 500\n}')
    monkeypatch.setenv("WEBOPS_KEYTOP_TIME", "2.5")
    monkeypatch.setenv("WEBOPS_KEYTOP_SORT", "hits")
    got = check(capsys, "--config", path, "--max-keys", "50", "--server", "a:1", "--server", "b:2")
    assert got == {
        "server": (["a:1", "b:2"], "--server"),
        "port": (11211, "default"),
        "limit": (10, f"{path}:2"),
        "time": (2.5, "$WEBOPS_KEYTOP_TIME"),
        "sort": ("hits", "$WEBOPS_KEYTOP_SORT"),
        "max_keys": (50, "--max-keys"),
    }


def test_defaults_are_the_old_flag_defaults(capsys) -> None:
    got = check(capsys)
    assert {k: v for k, (v, _) in got.items()} == {
        "server": ["127.0.0.1:11211"],
        "port": 11211,
        "limit": 40,
        "time": 1.0,
        "sort": "calls",
        "max_keys": 100_000,
    }
    assert {source for _, source in got.values()} == {"default"}


def test_file_then_environment_then_flag(tmp_path: Path, capsys, monkeypatch) -> None:
    path = write(tmp_path, '{"port": 1111, "server": ["f:1"]}')
    assert check(capsys, "--config", path)["port"] == (1111, f"{path}:1")
    monkeypatch.setenv("WEBOPS_KEYTOP_PORT", "2222")
    monkeypatch.setenv("WEBOPS_KEYTOP_SERVER", "e:1, e:2")
    got = check(capsys, "--config", path)
    assert got["port"] == (2222, "$WEBOPS_KEYTOP_PORT")
    assert got["server"] == (["e:1", "e:2"], "$WEBOPS_KEYTOP_SERVER")
    got = check(capsys, "--config", path, "--port", "3333", "--server", "c:1")
    assert got["port"] == (3333, "--port")
    assert got["server"] == (["c:1"], "--server")


@pytest.mark.parametrize(
    ("file", "env", "flags", "where", "key"),
    [
        ('{\n "limit": 0\n}', {}, [], "{path}:2", "limit"),
        ("{}", {"WEBOPS_KEYTOP_TIME": "0"}, [], "$WEBOPS_KEYTOP_TIME", "time"),
        ("{}", {}, ["--max-keys", "9"], "--max-keys", "max_keys"),
        ("{}", {}, ["--limit", "0"], "--limit", "limit"),
        ("{}", {}, ["--time", "nan"], "--time", "time"),
        ("{}", {}, ["--port", "0"], "--port", "port"),
        ('{"sort": "loudest"}', {}, [], "{path}:1", "sort"),
        ("{}", {"WEBOPS_KEYTOP_MAX_KEYS": "lots"}, [], "$WEBOPS_KEYTOP_MAX_KEYS", "max_keys"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_source_and_key(
    tmp_path: Path, capsys, monkeypatch, file: str, env: dict, flags: list, where: str, key: str
) -> None:
    path = write(tmp_path, file)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for args in (["--config", path, *flags], ["--config", path, *flags, "--check-config"]):
        assert main(["keytop", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith(f"webops keytop: {where.format(path=path)}: {key}: "), err


def test_an_unknown_key_in_the_file_is_an_error_naming_it(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "{\n  limit: 5,\n  refresh: 2\n}")
    assert main(["keytop", "--config", path, "--check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"webops keytop: {path}:3: unknown key 'refresh'"), err
    assert err.count("\n") == 1


def test_check_config_reads_and_captures_nothing(tmp_path: Path, capsys) -> None:
    """Not the capture file, not stdin, not a memcached (port 1 would be an error)."""
    assert main(["keytop", "--pcap", str(tmp_path / "none.pcap"), "--check-config"]) == 0
    assert main(["keytop", "--server", "127.0.0.1:1", "--check-config"]) == 0


def test_field_still_counts_from_1() -> None:
    """--field is a run's argument (which input), not a setting: still refused below 1, exit 2."""
    r = subprocess.run([*KEYTOP, "--field", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "--field" in r.stderr.splitlines()[-1]


def test_a_server_that_is_no_host_port_is_refused_by_check_config(capsys) -> None:
    """--check-config said 0 for what the run then refused."""
    assert main(["keytop", "--server", "nonsense", "--check-config"]) == 2
    assert "--server: server: expected HOST:PORT, got 'nonsense'" in capsys.readouterr().err
