"""One CLI contract for every tool: 0 ok, 1 a negative answer, 2 usage or config, 130 Ctrl-C,
mapped once in webops.cli."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.conftest import stop_process, wait_until
from tests.keytop.test_cli import unread
from webops import cli
from webops.cmdlog import cli as cmdlog_cli
from webops.common.config import ConfigError

WEBOPS = [sys.executable, "-m", "webops"]


def run_raising(monkeypatch, error: BaseException | int) -> int:
    """webops.cli.main with a tool (cmdlog) whose run raises `error` (or returns it)."""

    def run(args) -> int:
        if isinstance(error, int):
            return error
        raise error

    monkeypatch.setattr(cmdlog_cli, "run", run)
    try:
        return cli.main(["cmdlog", "report"])
    except KeyboardInterrupt:  # not mapped: it would stop pytest itself
        pytest.fail("KeyboardInterrupt went through webops.cli.main")


def test_a_config_error_is_one_line_and_exit_2(monkeypatch, capsys) -> None:
    assert run_raising(monkeypatch, ConfigError("/etc/x.conf:3: port: expected a number")) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "webops cmdlog: /etc/x.conf:3: port: expected a number\n")


def test_ctrl_c_is_130_without_a_traceback(monkeypatch, capsys) -> None:
    assert run_raising(monkeypatch, KeyboardInterrupt()) == 130
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("status", [0, 1])
def test_a_tools_own_answer_is_its_exit_status(monkeypatch, status: int) -> None:
    assert run_raising(monkeypatch, status) == status


def test_a_usage_error_is_2(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["keytop", "--no-such-flag"])
    assert e.value.code == 2


def test_the_contract_is_in_the_help() -> None:
    r = subprocess.run([*WEBOPS, "--help"], capture_output=True, text=True)
    assert "exit status: 0 ok; 1 a negative answer" in " ".join(r.stdout.split())
    assert "130" in r.stdout


# numeric flags: NaN, infinity, negative, zero where it means nothing, a port out of range. Each is
# refused by its name (not by what a bad value would lead to later: pgtop without a server fails too)
NUMERIC_FLAGS = [
    ["keytop", "--stdin", "--port", "99999"],
    ["keytop", "--stdin", "--port", "-1"],
    ["keytop", "--stdin", "--port", "0"],
    ["keytop", "--stdin", "--runtime", "nan"],
    ["keytop", "--stdin", "--runtime", "inf"],
    ["keytop", "--stdin", "--runtime", "-5"],
    ["keytop", "--stdin", "--runtime", "0"],
    ["keytop", "--stdin", "--time", "nan"],
    ["keytop", "--stdin", "--time", "inf"],
    ["keytop", "--stdin", "--limit", "-3"],
    ["keytop", "--stdin", "--max-keys", "nan"],
    ["keytop", "--field", "-1"],
    ["pgtop", "--slow-threshold", "-1", "--once"],
    ["pgtop", "--slow-threshold", "nan", "--once"],
    ["pgtop", "--slow-threshold", "inf", "--once"],
    ["pgtop", "--kill-slower-than", "-1"],
    ["pgtop", "--kill-slower-than", "nan"],
    ["pgtop", "--slack-per-minute", "0", "--once"],
    ["pgtop", "--slack-per-minute", "-1", "--once"],
    ["pgtop", "--min-duration", "-1", "--once"],
    ["pgtop", "--min-duration", "nan", "--once"],
    ["pgtop", "--refresh", "inf"],
    ["pgtop", "--refresh", "nan"],
    ["pgtop", "--port", "99999", "--once"],
    ["pgtop", "--port", "0", "--once"],
    ["vlogdump", "--max-pending", "-1", "/dev/null"],
    ["vlogdump", "--max-pending", "0", "/dev/null"],
    ["vlogdump", "--only-slow", "nan", "/dev/null"],
    ["vlogdump", "--only-slow", "-5", "/dev/null"],
    ["vlogdump", "-v", "only_slow=inf", "/dev/null"],
    ["vlogdump", "--join-wait", "-1", "/dev/null"],
    ["vlogdump", "--join-wait", "nan", "/dev/null"],
    ["vlogdump", "--slow", "nan", "/dev/null"],
    ["vlogdump", "--slow", "0", "/dev/null"],
]


@pytest.mark.parametrize(
    "args",
    [
        ["keytop", "--limit", "0"],
        ["keytop", "--field", "0"],
        ["keytop", "--time", "soon"],
        ["pgtop", "--refresh", "0"],
        ["pgtop", "--query-regex", "(", "--once"],
        ["pgtop", "--slack-webhook", "nope", "--once"],
        ["statsd", "--check-config", "/nonexistent/config.js"],
        ["statsd", "--port", "abc"],
        ["vlogdump", "-v", "only_mises=1"],
        ["cmdlog", "doctor", "--user", "wo-nobody-here"],
        ["gate", "install", "/nonexistent/profiles.sqlite", "--keep", "0"],
        ["gate", "vcl", "--config", "/nonexistent/gate.toml"],
        ["cluster", "serve", "--max-tokens", "99999999", "--timeout", "1"],
        ["cluster", "serve", "--access-log", "/nonexistent/dir/access.log"],
        *NUMERIC_FLAGS,
    ],
)
def test_every_tools_usage_and_config_errors_exit_2_with_one_line(args: list[str]) -> None:
    r = subprocess.run([*WEBOPS, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    error = r.stderr.splitlines()[-1]
    if r.stderr.startswith("usage: "):  # argparse's (a type function): the usage, then one error line
        assert error.startswith(f"webops {args[0]}: error: argument "), r.stderr
    else:
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"webops {args[0]}: "), r.stderr
    if args in NUMERIC_FLAGS:
        flag = next(a for a in args if a.startswith("-") and a != "--stdin" and a != "--once")
        name = flag if flag != "-v" else args[args.index("-v") + 1].partition("=")[0]
        assert name in error or name.lstrip("-").replace("-", "_") in error, r.stderr


def test_ctrl_c_prints_keytops_table_then_exits_130() -> None:
    proc = subprocess.Popen(
        [*WEBOPS, "keytop", "--field", "1", "--format", "json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write("GET /a\n" * 3)
        proc.stdin.flush()  # the input stays open: only ^C ends it
        wait_until(lambda: unread(proc.stdin) == 0, what="keytop reading the lines")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        proc.stdin.close()
        stop_process(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and '"GET"' in out  # the final table all the same


def test_a_reader_that_goes_early_ends_the_tool_quietly() -> None:
    """`webops statsd --check-config | head -1`: no BrokenPipeError traceback."""
    command = [*WEBOPS, "statsd", "--check-config"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()  # before it writes: its first write meets a closed pipe
        err = p.stderr.read().decode()
        assert p.wait(60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
