"""vlogdump's settings through the common layer: defaults -> --config FILE -> the environment
($WEBOPS_VLOGDUMP_*, NO_COLOR) -> flags, each value's source shown by --check-config, and every
bad value one line, exit 2. The awk options (filters) stay the run's own arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import checked_config
from webops.cli import main
from webops.vlogdump import cli as vlogdump_cli

DATA = Path(__file__).parent / "data"
VLOGDUMP = [sys.executable, "-m", "webops", "vlogdump"]
ENV = [key.env for key in vlogdump_cli.KEYS.values() if key.env]  # every variable the tool reads


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "vlogdump.json"
    path.write_text(text)
    return str(path)


def check(capsys, *args: str) -> dict[str, tuple[object, str]]:
    assert main(["vlogdump", *args, "--check-config"]) == 0
    return checked_config(capsys.readouterr().out)


def test_check_config_says_where_each_value_comes_from(tmp_path: Path, capsys, monkeypatch) -> None:
    path = write(tmp_path, "{\n  // this host's way\n  slow: 250,\n  summary: false,\n  join_wait: 1\n}")
    monkeypatch.setenv("WEBOPS_VLOGDUMP_FORMAT", "json")
    monkeypatch.setenv("NO_COLOR", "1")
    got = check(capsys, "--config", path, "--join-wait", "0.5")
    assert got == {
        "format": ("json", "$WEBOPS_VLOGDUMP_FORMAT"),
        "color": (False, "$NO_COLOR"),
        "slow": (250, f"{path}:3"),
        "max_pending": (10_000, "default"),
        "join_wait": (0.5, "--join-wait"),
        "summary": (False, f"{path}:4"),
    }


def test_file_then_environment_then_flag(tmp_path: Path, capsys, monkeypatch) -> None:
    path = write(tmp_path, '{"max_pending": 10, "summary": true, "color": true}')
    got = check(capsys, "--config", path)
    assert got["max_pending"] == (10, f"{path}:1")
    assert got["color"] == (True, f"{path}:1")
    monkeypatch.setenv("WEBOPS_VLOGDUMP_MAX_PENDING", "20")
    monkeypatch.setenv("WEBOPS_VLOGDUMP_SUMMARY", "no")
    monkeypatch.setenv("NO_COLOR", "")  # empty: unset, as no-color.org says
    got = check(capsys, "--config", path)
    assert got["max_pending"] == (20, "$WEBOPS_VLOGDUMP_MAX_PENDING")
    assert got["summary"] == (False, "$WEBOPS_VLOGDUMP_SUMMARY")
    assert got["color"] == (True, f"{path}:1")
    monkeypatch.setenv("NO_COLOR", "1")
    assert check(capsys, "--config", path)["color"] == (False, "$NO_COLOR")
    got = check(capsys, "--config", path, "--max-pending", "30", "--no-color")
    assert got["max_pending"] == (30, "--max-pending")
    assert got["color"] == (False, "--no-color")


@pytest.mark.parametrize(
    ("file", "env", "flags", "where", "key"),
    [
        ('{\n "slow": 0\n}', {}, [], "{path}:2", "slow"),
        ('{"format": "xml"}', {}, [], "{path}:1", "format"),
        ("{}", {"WEBOPS_VLOGDUMP_JOIN_WAIT": "-1"}, [], "$WEBOPS_VLOGDUMP_JOIN_WAIT", "join_wait"),
        ("{}", {"WEBOPS_VLOGDUMP_SUMMARY": "maybe"}, [], "$WEBOPS_VLOGDUMP_SUMMARY", "summary"),
        ("{}", {}, ["--max-pending", "0"], "--max-pending", "max_pending"),
        ("{}", {}, ["--slow", "nan"], "--slow", "slow"),
        ("{}", {}, ["--format", "xml"], "--format", "format"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_source_and_key(
    tmp_path: Path, capsys, monkeypatch, file: str, env: dict, flags: list, where: str, key: str
) -> None:
    path = write(tmp_path, file)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for args in (["--config", path, *flags, "/dev/null"], ["--config", path, *flags, "--check-config"]):
        assert main(["vlogdump", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith(f"webops vlogdump: {where.format(path=path)}: {key}: "), err


def test_an_unknown_key_in_the_file_is_an_error_naming_it(tmp_path: Path, capsys) -> None:
    """A filter (an awk option) is not a setting: a file that sets one is told so."""
    path = write(tmp_path, "{\n  slow: 5,\n  only_misses: 1\n}")
    assert main(["vlogdump", "--config", path, "--check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"webops vlogdump: {path}:3: unknown key 'only_misses'"), err
    assert err.count("\n") == 1


def test_check_config_reads_nothing(tmp_path: Path, capsys) -> None:
    assert main(["vlogdump", str(tmp_path / "no-such.log"), "--check-config"]) == 0


def test_the_files_settings_are_used(tmp_path: Path) -> None:
    path = write(tmp_path, '{format: "json", summary: false}')
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    r = subprocess.run(
        [*VLOGDUMP, "--config", path, str(DATA / "varnish71-vxid.txt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no summary
    lines = r.stdout.splitlines()
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)
