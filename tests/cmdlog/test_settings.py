"""cmdlog's settings through the common layer, per subcommand (report, doctor): defaults ->
--config FILE -> the environment ($WEBOPS_CMDLOG_SOCKET, ...) -> flags, each value's source shown
by --check-config, and every bad value one line, exit 2. --user, --since, FILEs... stay the run's."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import checked_config
from webops.cli import main

CMDLOG = [sys.executable, "-m", "webops", "cmdlog"]
ENV = ["WEBOPS_CMDLOG_SOCKET", "WEBOPS_CMDLOG_LOG", "WEBOPS_CMDLOG_NRPE_CONFIG",
       "WEBOPS_CMDLOG_AUDIT_RULES", "WEBOPS_CMDLOG_CRONTABS"]  # fmt: skip
DOCTOR = ["doctor", "--user", "wo-nobody-here"]  # --check-config looks nothing up, not even the user


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cmdlog.json"
    path.write_text(text)
    return str(path)


def check(capsys, *args: str) -> dict[str, tuple[object, str]]:
    assert main(["cmdlog", *args, "--check-config"]) == 0
    return checked_config(capsys.readouterr().out)


def test_doctors_check_config_says_where_each_value_comes_from(tmp_path: Path, capsys, monkeypatch) -> None:
    path = write(
        tmp_path, '{\n  nrpe_config: "/srv/nrpe.cfg",\n  crontabs: "/srv/cron",\n  format: "json"\n}'
    )
    monkeypatch.setenv("WEBOPS_CMDLOG_SOCKET", "/run/syslog.sock")
    got = check(capsys, *DOCTOR, "--config", path, "--crontabs", "/x/cron")
    assert got == {
        "socket": ("/run/syslog.sock", "$WEBOPS_CMDLOG_SOCKET"),
        "log": (None, "default"),
        "nrpe_config": ("/srv/nrpe.cfg", f"{path}:2"),
        "audit_rules": ("/etc/audit/rules.d", "default"),
        "crontabs": ("/x/cron", "--crontabs"),
        "format": ("json", f"{path}:4"),
    }


def test_reports_check_config(tmp_path: Path, capsys) -> None:
    assert check(capsys, "report") == {"format": ("text", "default")}
    path = write(tmp_path, '{"format": "json"}')
    assert check(capsys, "report", "--config", path) == {"format": ("json", f"{path}:1")}
    assert check(capsys, "report", "--config", path, "--format", "text") == {"format": ("text", "--format")}


def test_file_then_environment_then_flag(tmp_path: Path, capsys, monkeypatch) -> None:
    path = write(tmp_path, '{"socket": "/file.sock", "log": "/file.log"}')
    got = check(capsys, *DOCTOR, "--config", path)
    assert got["socket"] == ("/file.sock", f"{path}:1")
    assert got["log"] == ("/file.log", f"{path}:1")
    monkeypatch.setenv("WEBOPS_CMDLOG_SOCKET", "/env.sock")
    monkeypatch.setenv("WEBOPS_CMDLOG_LOG", "/env.log")
    got = check(capsys, *DOCTOR, "--config", path)
    assert got["socket"] == ("/env.sock", "$WEBOPS_CMDLOG_SOCKET")
    assert got["log"] == ("/env.log", "$WEBOPS_CMDLOG_LOG")
    got = check(capsys, *DOCTOR, "--config", path, "--socket", "/flag.sock", "--log", "/flag.log")
    assert got["socket"] == ("/flag.sock", "--socket")
    assert got["log"] == ("/flag.log", "--log")


@pytest.mark.parametrize(
    ("command", "file", "env", "flags", "where", "key"),
    [
        (DOCTOR, '{\n "crontabs": 5\n}', {}, [], "{path}:2", "crontabs"),
        (DOCTOR, "{}", {}, ["--format", "xml"], "--format", "format"),
        (DOCTOR, "{}", {}, ["--socket", ""], "--socket", "socket"),
        (["report"], '{"format": "xml"}', {}, [], "{path}:1", "format"),
        (["report"], "{}", {}, ["--format", "csv"], "--format", "format"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_source_and_key(
    tmp_path: Path, capsys, monkeypatch, command, file: str, env: dict, flags: list, where: str, key: str
) -> None:
    path = write(tmp_path, file)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for args in (
        [*command, "--config", path, *flags],
        [*command, "--config", path, *flags, "--check-config"],
    ):
        assert main(["cmdlog", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith(f"webops cmdlog: {where.format(path=path)}: {key}: "), err


def test_an_unknown_key_in_the_file_is_an_error_naming_it(tmp_path: Path, capsys) -> None:
    """Each subcommand knows its own keys: report has no socket."""
    path = write(tmp_path, '{\n  format: "json",\n  socket: "/dev/log"\n}')
    assert main(["cmdlog", "report", "--config", path, "--check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"webops cmdlog: {path}:3: unknown key 'socket' (known: format)"), err
    assert err.count("\n") == 1


def test_doctor_uses_its_files_settings(tmp_path: Path) -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    path = write(tmp_path, json.dumps({"socket": str(tmp_path / "no.sock"), "format": "json"}))
    env = {**os.environ, "WEBOPS_CMDLOG_ROOT": str(tmp_path / "root")}
    env.pop("WEBOPS_CMDLOG_SOCKET", None)
    r = subprocess.run(
        [*CMDLOG, "doctor", "--user", me, "--config", path],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    checks = {c["what"]: c for c in map(json.loads, r.stdout.splitlines())}
    assert checks["syslog socket"]["state"] == "fail"
    assert str(tmp_path / "no.sock") in checks["syslog socket"]["detail"]


def test_doctors_settings_need_no_user(capsys) -> None:
    """The settings do not depend on the user: --check-config needs none; the check itself does."""
    assert check(capsys, "doctor")["socket"][1] == "default"
    assert main(["cmdlog", "doctor"]) == 2
    assert "--user is required" in capsys.readouterr().err
