"""The gate's settings through the common layer: defaults, then `--config FILE` (TOML), then
$WEBOPS_GATE_<KEY>, then the subcommand's flags; `--check-config` shows each value and where it
comes from, and a bad value is one line naming its source and key (exit 2)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import checked_config
from tests.gate.conftest import GATE
from webops.common.config import ConfigError
from webops.gate.config import KEYS, load

COMMANDS = ["build", "install", "pull", "rollback", "vcl", "check"]


def gate(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    """`webops gate ...` with none of the caller's $WEBOPS_GATE_* and the given ones."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WEBOPS_GATE_")}
    return subprocess.run(
        [*GATE, *args], input=stdin, capture_output=True, text=True, env={**base, **(env or {})}
    )


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("webops gate: ") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def test_every_key_has_its_environment_variable_and_flag() -> None:
    for name, key in KEYS.items():
        assert key.env == f"WEBOPS_GATE_{name.upper()}"
        assert key.flag == "--" + name.replace("_", "-")


@pytest.mark.parametrize("command", COMMANDS)
def test_check_config_says_where_each_value_comes_from(tmp_path: Path, command: str) -> None:
    """Each subcommand: the default, the file's line, the environment variable or the flag;
    and the command itself is not run (nothing built, no FILE, URL or USER_ID needed)."""
    db = tmp_path / "p.db"
    conf = tmp_path / "gate.toml"
    conf.write_text(f'# the gate\ndb = "{db}"\n# 50 %\nrollout = 50\nsalt = "file"\n')
    r = gate(
        command,
        "--config",
        str(conf),
        "--check-config",
        "--min-events",
        "7",
        env={"WEBOPS_GATE_SALT": "env", "WEBOPS_GATE_MAX_CHANGE": "0.5"},
        stdin='{"user_id": "a", "events": 9}\n',
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert checked_config(r.stdout) == {
        "db": (str(db), f"{conf}:2"),
        "cookie": ("userId", "default"),
        "url": ("^/", "default"),
        "id_pattern": ("^[A-Za-z0-9_-]{1,64}$", "default"),
        "rollout": (50, f"{conf}:4"),
        "salt": ("env", "$WEBOPS_GATE_SALT"),
        "min_events": (7, "--min-events"),
        "max_change": (0.5, "$WEBOPS_GATE_MAX_CHANGE"),
        "check_interval": (5.0, "default"),
        "vmod": ("", "default"),
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gate.toml"]  # nothing built or installed


def test_the_file_then_the_environment_then_the_flag(tmp_path: Path) -> None:
    conf = tmp_path / "gate.toml"
    conf.write_text('cookie = "from_file"\nrollout = 10\n')
    env = {"WEBOPS_GATE_COOKIE": "from_env", "WEBOPS_GATE_ROLLOUT": "20"}
    seen = checked_config(gate("vcl", "--config", str(conf), "--check-config").stdout)
    assert seen["cookie"] == ("from_file", f"{conf}:1") and seen["rollout"] == (10, f"{conf}:2")
    seen = checked_config(gate("vcl", "--config", str(conf), "--check-config", env=env).stdout)
    assert seen["cookie"] == ("from_env", "$WEBOPS_GATE_COOKIE") and seen["rollout"] == (
        20,
        "$WEBOPS_GATE_ROLLOUT",
    )
    r = gate(
        "vcl", "--config", str(conf), "--check-config", "--cookie", "from_flag", "--rollout", "30", env=env
    )
    seen = checked_config(r.stdout)
    assert seen["cookie"] == ("from_flag", "--cookie") and seen["rollout"] == (30, "--rollout")
    vcl = gate("vcl", "--config", str(conf), "--cookie", "from_flag", env=env).stdout  # what is used
    assert "from_flag" in vcl and "from_env" not in vcl and "from_file" not in vcl


def test_the_environment_alone_sets_what_a_cron_job_needs(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    r = gate(
        "build",
        env={"WEBOPS_GATE_DB": str(db), "WEBOPS_GATE_MIN_EVENTS": "2"},
        stdin='{"user_id": "a", "events": 2}\n',
    )
    assert r.returncode == 0 and "1 with a profile" in r.stdout, r.stderr
    assert db.exists()


def test_a_bad_value_names_its_source_and_key(tmp_path: Path) -> None:
    conf = tmp_path / "gate.toml"
    conf.write_text('cookie = "userId"\nrollout = 150\n')
    assert f"{conf}:2: rollout: expected a whole percentage" in one_line_error(
        gate("vcl", "--config", str(conf))
    )
    err = one_line_error(gate("vcl", env={"WEBOPS_GATE_ROLLOUT": "many"}))
    assert "$WEBOPS_GATE_ROLLOUT: rollout: expected a whole percentage, 0 to 100, got 'many'" in err
    err = one_line_error(gate("vcl", "--rollout", "101"))
    assert "--rollout: rollout: expected a whole percentage, 0 to 100, got '101'" in err
    err = one_line_error(gate("vcl", "--check-config", env={"WEBOPS_GATE_URL": "^/("}))
    assert "$WEBOPS_GATE_URL: url: expected a regular expression" in err  # --check-config: exit 2 too
    err = one_line_error(gate("build", "--max-change", "-1"))
    assert "--max-change: max_change: expected a fraction" in err


def test_an_unknown_key_in_the_file_is_an_error_naming_it(tmp_path: Path) -> None:
    conf = tmp_path / "gate.toml"
    conf.write_text('db = "/tmp/p.db"\nrolout = 50\n')
    err = one_line_error(gate("vcl", "--config", str(conf)))
    assert f"{conf}:2: unknown key 'rolout'" in err and "rollout" in err.split("known:", 1)[1]


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    err = one_line_error(gate("vcl", "--config", str(tmp_path / "missing.toml")))
    assert "missing.toml: cannot read" in err


def test_the_commands_still_need_their_arguments_without_check_config() -> None:
    for command in ("install", "pull", "check"):
        r = gate(command)
        assert r.returncode == 2 and "the following arguments are required" in r.stderr, r.stderr


def test_load_checks_text_and_typed_values_alike(tmp_path: Path) -> None:
    """The same check for a file's typed value, the environment's text and a flag's text."""
    cfg = load(None, {"rollout": "30", "max_change": 0.05}, environ={"WEBOPS_GATE_CHECK_INTERVAL": "0.5"})
    assert (cfg.rollout, cfg.max_change, cfg.check_interval) == (30, 0.05, 0.5)
    assert load(None, {}, environ={}).db == Path("/var/lib/webops-gate/user_profiles.db")
    with pytest.raises(ConfigError, match=r"^\$WEBOPS_GATE_MIN_EVENTS: min_events: expected a whole number"):
        load(None, {}, environ={"WEBOPS_GATE_MIN_EVENTS": "0"})
    with pytest.raises(ConfigError, match=r"^--rollout: rollout: .*got '5\.5'"):
        load(None, {"rollout": "5.5"}, environ={})
