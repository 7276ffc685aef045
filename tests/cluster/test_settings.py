"""`webops cluster serve` reads its settings through the one settings layer: defaults -> --config
FILE -> the environment (HOST, PORT, WORKERS, TIMEOUT, LOG_LEVEL, MODEL) -> flags, each value's
source shown by --check-config, which never loads the model (nor needs the cluster extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import checked_config
from webops import cli

ENV = ("HOST", "PORT", "WORKERS", "TIMEOUT", "LOG_LEVEL", "MODEL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def serve(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(["cluster", "serve", *args])
    out, err = capsys.readouterr()
    return status, out, err


def check(capsys, *args: str) -> dict[str, tuple[object, str]]:
    status, out, err = serve(capsys, "--check-config", *args)
    assert status == 0, err
    return checked_config(out)


def test_check_config_says_where_each_value_comes_from(capsys, monkeypatch, tmp_path: Path) -> None:
    conf = tmp_path / "cluster.js"
    conf.write_text(
        '{\n  // JS comments and bare keys, as in config.js\n  workers: 4,\n  "max_sentences": 500\n}\n'
    )
    monkeypatch.setenv("LOG_LEVEL", "warning")
    got = check(capsys, "--config", str(conf), "--port", "9001", "--no-preload")
    assert got["workers"] == (4, f"{conf}:3")
    assert got["max_sentences"] == (500, f"{conf}:4")
    assert got["log_level"] == ("warning", "$LOG_LEVEL")
    assert got["port"] == (9001, "--port")
    assert got["preload"] == (False, "--no-preload")
    # every other setting, with its default, the same as before the settings layer
    assert got["host"] == ("127.0.0.1", "default")
    assert got["timeout"] == (60, "default") and got["threads"] == (1, "default")
    assert got["mode"] == ("topic", "default") and got["threshold"] == (None, "default")
    assert got["max_tokens"] == (50_000, "default") and got["max_body"] == (1 << 20, "default")
    assert got["max_requests_jitter"] == (None, "default") and got["access_log"] == (None, "default")
    assert len(got) == 23


def test_the_flags_win_over_the_environment_which_wins_over_the_file(
    capsys, monkeypatch, tmp_path: Path
) -> None:
    conf = tmp_path / "cluster.json"
    conf.write_text('{"port": 7001, "workers": 5, "timeout": 70, "model": "/m/file", "preload": false}')
    monkeypatch.setenv("PORT", "7002")
    monkeypatch.setenv("WORKERS", "6")
    monkeypatch.setenv("MODEL", "/m/env")
    got = check(capsys, "--config", str(conf), "--port", "7003")
    assert got["port"] == (7003, "--port")
    assert got["workers"] == (6, "$WORKERS")
    assert got["model"] == ("/m/env", "$MODEL")
    assert got["timeout"] == (70, f"{conf}:1")
    assert got["preload"] == (False, f"{conf}:1")


@pytest.mark.parametrize(
    ("file", "env", "args", "says"),
    [
        ("", {}, ["--workers", "0"], "--workers: workers: must be at least 1"),
        ("", {}, ["--workers", "inf"], "--workers: workers: expected a whole number"),
        ("", {}, ["--port", "65536"], "--port: port: must be at most 65535"),
        ("", {}, ["--threshold", "nan"], "--threshold: threshold: "),
        ("", {}, ["--mode", "fast"], "--mode: mode: expected one of paraphrase, topic"),
        ("", {"PORT": "abc"}, [], "$PORT: port: expected a number, got 'abc'"),
        ("", {"TIMEOUT": "0"}, [], "$TIMEOUT: timeout: must be at least 1"),
        ('{\n  "max_chars": -1\n}', {}, [], "CONF:2: max_chars: must be at least 1"),
        ('{"threshold": 3}', {}, [], "CONF:1: threshold: 3 is not a cosine distance in (0, 2]"),
        ('{"preload": "maybe"}', {}, [], "CONF:1: preload: expected true or false"),
        ('{\n "workers": 2,\n "wrokers": 4}', {}, [], "CONF:3: unknown key 'wrokers'"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_source_and_key(
    capsys, monkeypatch, tmp_path: Path, file: str, env: dict, args: list[str], says: str
) -> None:
    conf = tmp_path / "cluster.json"
    if file:
        conf.write_text(file)
        args = ["--config", str(conf), *args]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for mode in (["--check-config"], []):  # the same error whether checking or serving
        status, out, err = serve(capsys, *mode, *args)
        assert status == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith("webops cluster: "), err
        assert says.replace("CONF", str(conf)) in err, err


def test_a_missing_config_file_is_an_error(capsys, tmp_path: Path) -> None:
    status, _, err = serve(capsys, "--check-config", "--config", str(tmp_path / "none.json"))
    assert status == 2 and "none.json: cannot read" in err


def test_check_config_neither_loads_the_model_nor_needs_the_extra() -> None:
    # fastapi, gunicorn, torch and sentence-transformers unimportable: as without the cluster extra
    code = (
        "import sys\n"
        "for m in ('fastapi', 'gunicorn', 'torch', 'sentence_transformers', 'uvicorn'):\n"
        "    sys.modules[m] = None\n"
        "from webops.cli import main\n"
        "sys.exit(main(['cluster', 'serve', '--check-config', '--workers', '2']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert checked_config(r.stdout)["workers"] == (2, "--workers")


def test_the_limits_check_names_where_the_values_come_from(capsys, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    conf = tmp_path / "cluster.json"
    conf.write_text('{"max_tokens": 100000}')
    status, _, err = serve(capsys, "--check-config", "--config", str(conf), "--timeout", "60")
    assert status == 2 and err.count("\n") == 1, err
    assert "cannot be encoded within --timeout 60 s" in err
    assert f"max_tokens from {conf}:1, timeout from --timeout" in err


def test_serve_gets_the_resolved_settings(capsys, monkeypatch, tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    pytest.importorskip("fastapi")
    from webops.cluster import serve as serving

    started = []

    class Server:
        def __init__(self, opts) -> None:
            started.append(opts)

        def run(self) -> None:
            pass

    monkeypatch.setattr(serving, "Server", Server)
    conf = tmp_path / "cluster.json"
    conf.write_text('{"max_sentences": 50, "preload": false, "max_requests": 10, "mode": "paraphrase"}')
    monkeypatch.setenv("HOST", "0.0.0.0")
    status, _, err = serve(capsys, "--config", str(conf), "--workers", "2", "--statsd", "127.0.0.1:8125")
    assert status == 0, err
    (o,) = started
    assert (o.host, o.port, o.workers, o.timeout, o.log_level) == ("0.0.0.0", 8000, 2, 60, "info")
    assert (o.preload, o.max_requests, o.max_requests_jitter, o.mode) == (False, 10, None, "paraphrase")
    assert (o.limits.max_sentences, o.limits.max_chars, o.limits.max_tokens) == (50, 2000, 50_000)
    assert o.statsd == "127.0.0.1:8125" and o.model is None and o.access_log is None


def test_the_log_level_is_one_gunicorn_knows(capsys, monkeypatch) -> None:
    """LOG_LEVEL=bogus passed --check-config and was then ignored by the run."""
    monkeypatch.setenv("LOG_LEVEL", "bogus")
    status, _, err = serve(capsys, "--check-config")
    assert status == 2 and "$LOG_LEVEL: log_level: expected one of debug, info, warning" in err
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    assert check(capsys)["log_level"] == ("debug", "$LOG_LEVEL")
