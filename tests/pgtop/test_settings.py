"""pgtop's settings through the common layer: defaults, then --config FILE, then the environment,
then the flags; `--check-config` says where each value comes from, and never connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import checked_config
from webops.cli import main

ENV = "WEBOPS_PGTOP_SLACK_WEBHOOK"
UNREACHABLE = "host=127.0.0.1 port=1 connect_timeout=1"  # --check-config must not even try it


HIDDEN = "(set, not shown)"  # --check-config never prints a secret


@pytest.fixture(autouse=True)
def no_webhook_in_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pgtop.json"
    path.write_text(text)
    return str(path)


def check(capsys, *args: str) -> dict[str, tuple[object, str]]:
    assert main(["pgtop", "--check-config", *args]) == 0, capsys.readouterr().err
    return checked_config(capsys.readouterr().out)


def one_line_error(capsys, *args: str) -> str:
    assert main(["pgtop", "--check-config", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("webops pgtop: ")
    return captured.err


def test_check_config_says_where_each_value_comes_from(tmp_path: Path, capsys, monkeypatch) -> None:
    path = write(
        tmp_path,
        '{\n  "view": "running",\n  slow_threshold: 3,\n  "log-file": "",\n  terminate: true,\n'
        '  "columns": "db,duration"\n}\n',
    )
    monkeypatch.setenv(ENV, "https://hooks.example/T0/B0/x")
    got = check(capsys, UNREACHABLE, "--config", path, "--sort", "pid", "-p", "5433", "--idle")
    assert got["refresh"] == (2.0, "default")
    assert got["profile"] == ("standard", "default")
    assert got["view"] == ("running", f"{path}:2")
    assert got["slow-threshold"] == (3.0, f"{path}:3")  # the underscore spelling, still by its line
    assert got["log-file"] == ("", f"{path}:4")
    assert got["columns"] == (["pid", "db", "duration", "query"], f"{path}:6")
    assert got["slack-webhook"] == (HIDDEN, f"${ENV}")  # a secret: where it comes from, not what it is
    assert got["sort"] == ("pid", "--sort")
    assert got["port"] == (5433, "--port")
    assert got["idle"] == (True, "--idle")
    assert got["dsn"] == (HIDDEN, "command line")  # a DSN may hold a password
    assert got["how"] == ("terminate", f"{path}:5")  # `terminate: true` in the file, as before


def test_the_file_loses_to_the_environment_which_loses_to_the_flag(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    path = write(tmp_path, '{"slack-webhook": "https://file.example/x", "refresh": 7, "terminate": true}')
    assert check(capsys, "--config", path)["slack-webhook"] == (HIDDEN, f"{path}:1")
    monkeypatch.setenv(ENV, "https://env.example/x")
    got = check(capsys, "--config", path, "--refresh", "0.5", "--cancel")
    assert got["slack-webhook"] == (HIDDEN, f"${ENV}")
    assert got["refresh"] == (0.5, "--refresh")
    assert got["how"] == ("cancel", "--cancel")  # the command line's switch wins over the file's
    got = check(capsys, "--config", path, "--slack-webhook", "https://flag.example/x")
    assert got["slack-webhook"] == (HIDDEN, "--slack-webhook")


def test_a_bad_value_from_each_source_is_one_line_naming_it(tmp_path: Path, capsys, monkeypatch) -> None:
    path = write(tmp_path, '{\n  "view": "running",\n  "slack-per-minute": 0\n}')
    err = one_line_error(capsys, "--config", path)
    assert f"{path}:3: slack-per-minute: " in err and "at least 1" in err
    err = one_line_error(capsys, "--port", "0")
    assert "--port: port: " in err
    err = one_line_error(capsys, "--query-regex", "(")
    assert "--query-regex: query-regex: not a valid regular expression" in err
    monkeypatch.setenv(ENV, "hooks.example/x")
    err = one_line_error(capsys)
    assert f"${ENV}: slack-webhook: not an http(s) URL" in err


def test_an_unknown_key_in_the_file_is_named(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, '{\n  "view": "running",\n  "refresh_rate": 1\n}')
    err = one_line_error(capsys, "--config", path)
    assert f"{path}:3: unknown key 'refresh_rate'" in err


def test_a_dsn_and_a_bad_webhook_never_show_a_password(capsys, monkeypatch) -> None:
    """A DSN may hold a password and a mistyped webhook is still a token: named, never shown."""
    got = check(capsys, "postgresql://u:S3cretPW@h/db")
    assert got["dsn"] == (HIDDEN, "command line")
    monkeypatch.setenv(ENV, "notaurl-SECRETSECRET")
    assert main(["pgtop", "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "SECRET" not in err and f"${ENV}: slack-webhook: " in err
