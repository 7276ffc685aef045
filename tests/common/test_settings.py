"""The one settings layer every tool reads through: defaults -> file -> environment -> flags, each
value checked by its key whatever the source, and the source of each value said."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from webops.common.config import ConfigError
from webops.common.settings import (
    Key,
    Settings,
    boolean,
    choice,
    comma_list,
    number,
    port,
    read_toml,
    string,
)

KEYS = {
    "port": Key(8000, port, "port", env="PORT", flag="--port", short="-p"),
    "workers": Key(3, number(1, integer=True), "workers", env="WORKERS", flag="--workers"),
    "preload": Key(True, boolean, "preload", flag="--no-preload", switch=False),
    "mode": Key("topic", choice("topic", "paraphrase"), "mode", flag="--mode"),
    "backends": Key(["console"], lambda v: v, "backends", flag="--backends", text=comma_list),
    "store": Key({}, lambda v: v, "a section", flag="--data-dir", text=lambda s: {"dir": s}),
    "name": Key("x", string, "no env, no flag"),
}
SETTINGS = Settings(KEYS)


def parse(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    SETTINGS.add_arguments(parser)
    return SETTINGS.flags(parser.parse_args(argv))


def test_each_layer_wins_over_the_one_before(tmp_path: Path) -> None:
    conf = tmp_path / "c.js"
    conf.write_text('{\n  port: 1111,\n  workers: 5,\n  mode: "paraphrase",\n  store: {keep: 1}\n}\n')
    env = {"PORT": "2222", "WORKERS": "7"}
    r = SETTINGS.resolve(
        str(conf), environ=env, flags=parse("-p", "3333", "--no-preload", "--data-dir", "/d")
    )
    assert r.values["port"] == 3333 and r.sources["port"] == "--port"
    assert r.values["workers"] == 7 and r.sources["workers"] == "$WORKERS"
    assert r.values["mode"] == "paraphrase" and r.sources["mode"] == f"{conf}:4"
    assert r.values["preload"] is False and r.sources["preload"] == "--no-preload"
    assert r.values["name"] == "x" and r.sources.get("name", "default") == "default"
    # a section: the flag sets one key of it, the file's others stay; both sources are said
    assert r.values["store"] == {"keep": 1, "dir": "/d"}
    assert r.sources["store"] == f"{conf}:5, --data-dir"


def test_flag_text_is_shaped_then_checked_by_the_same_check() -> None:
    r = SETTINGS.resolve(environ={}, flags=parse("--backends", "console, file,,store"))
    assert r.values["backends"] == ["console", "file", "store"]
    assert SETTINGS.resolve(environ={"WORKERS": "4"}).values["workers"] == 4


@pytest.mark.parametrize(
    ("where", "kwargs", "message"),
    [
        ("flag", {"flags": {"port": "abc"}}, r"^--port: port: expected a number, got 'abc'$"),
        ("env", {"environ": {"WORKERS": "0"}}, r"^\$WORKERS: workers: must be at least 1, got '0'$"),
        ("file", {"file": {"mode": "fast"}, "text": "{\n mode: 'fast'}"}, r"^c\.js:2: mode: expected one of"),
        (
            "unknown",
            {"file": {"mdoe": 1}, "text": "{mdoe: 1}"},
            r"^c\.js:1: unknown key 'mdoe' \(known: port,",
        ),
    ],
)
def test_a_bad_value_names_its_source_and_key(where: str, kwargs: dict, message: str) -> None:
    kwargs.setdefault("environ", {})
    path = "c.js" if "file" in kwargs else None
    with pytest.raises(ConfigError, match=message):
        SETTINGS.resolve(path, **kwargs)


def test_an_empty_environment_variable_is_unset() -> None:
    assert SETTINGS.resolve(environ={"PORT": ""}).values["port"] == 8000


def test_a_tool_may_keep_unknown_keys_and_say_so() -> None:
    seen: list[str] = []
    r = Settings(KEYS, unknown=seen.append).resolve(environ={}, file={"extra": 1})
    assert seen == ["extra"] and r.values["extra"] == 1


def test_lines_show_every_value_as_json_with_its_source() -> None:
    r = SETTINGS.resolve(environ={"PORT": "9"}, flags=parse("--mode", "paraphrase"))
    lines = r.lines()
    assert [line.split(" = ")[0] for line in lines] == list(KEYS)
    assert lines[0].startswith("port = 9 ") and lines[0].endswith("# $PORT")
    assert lines[3].startswith('mode = "paraphrase" ') and lines[3].endswith("# --mode")
    assert lines[6].endswith("# default")


def test_help_names_the_environment_variable_and_the_default() -> None:
    parser = argparse.ArgumentParser()
    SETTINGS.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "$PORT; default 8000" in text and "--check-config" in text and "--config FILE" in text


def test_toml_files(tmp_path: Path) -> None:
    conf = tmp_path / "g.toml"
    conf.write_text('port = 1\nmode = "topic"\n')
    r = Settings(KEYS, read=read_toml).resolve(str(conf), environ={})
    assert r.values["port"] == 1 and r.sources["port"] == f"{conf}:1"
    conf.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match="not TOML"):
        Settings(KEYS, read=read_toml).resolve(str(conf), environ={})


def test_the_line_named_is_the_keys_own_line() -> None:
    """A key at the start of a line (JS or TOML), after blank lines: its line, not the one before."""
    from webops.common.config import key_line

    assert key_line("{\na: 1,\n\nb: 2}", "b") == 4
    assert key_line("{\n  a: 1,\n  'b': 2}", "b") == 3
    assert key_line("a = 1\n\nb = 2\n", "b") == 3
    assert key_line("{ port: 1, keyFlush: {} }", "keyFlush") == 1
    assert key_line("{ port: 1 }", "keyFlush") is None


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e400"])
def test_a_number_is_finite(text: str) -> None:
    """inf as a whole number raised OverflowError (a traceback), and as seconds meant "never"."""
    for check in (number(1, integer=True), number(0)):
        with pytest.raises(ValueError, match="expected a finite number"):
            check(text)


def test_a_secret_is_said_to_be_set_not_shown() -> None:
    keys = {"webhook": Key(None, string, "a URL with a token in it", env="HOOK", secret=True)}
    lines = Settings(keys).resolve(environ={"HOOK": "https://hooks.example/T0/B0/token"}).lines()
    assert lines == ['webhook = "(set, not shown)"  # $HOOK']
    assert Settings(keys).resolve(environ={}).lines() == ["webhook = null  # default"]


# --- what an outsider tried on the files and values (each a one-line ConfigError, never a hang) ---


@pytest.mark.parametrize(
    ("name", "content"),
    [("deep.json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"), ("deep.toml", "a = " + "[" * 100_000)],
)
def test_a_deeply_nested_file_is_one_line(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match="nested too deeply"):
        Settings(KEYS, read=read_toml if name.endswith("toml") else Settings(KEYS).read).resolve(
            str(path), environ={}
        )


def test_a_fifo_nobody_writes_and_a_device_that_never_ends_are_refused(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="Empty strings are not legal"):  # no writer: empty, at once
        SETTINGS.resolve(str(fifo), environ={})
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        SETTINGS.resolve("/dev/zero", environ={})
    big = tmp_path / "big.json"
    big.write_text("{" + " " * (2 << 20) + "}")
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        SETTINGS.resolve(str(big), environ={})
    with pytest.raises(ConfigError, match="Is a directory"):
        SETTINGS.resolve(str(tmp_path), environ={})


def test_a_pipe_with_a_writer_is_read() -> None:
    """`--config <(generate-config)`: bash's process substitution hands a pipe, still read."""
    import subprocess
    import sys

    line = f"{sys.executable} -m webops statsd --check-config <(echo '{{port: 4242}}')"
    r = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "port = 4242" in r.stdout


def test_a_path_cannot_forge_lines(tmp_path: Path) -> None:
    path = tmp_path / "a\nrollout = 0   # default\x1b[31m"
    with pytest.raises(ConfigError) as e:
        SETTINGS.resolve(str(path), environ={})
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value) and "\\x1b" in str(e.value)


def test_a_bom_as_windows_editors_write_is_read(tmp_path: Path) -> None:
    for name, text in (("c.json", '\ufeff{"port": 7}'), ("c.toml", "\ufeffport = 7\n")):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        read = read_toml if name.endswith("toml") else Settings(KEYS).read
        assert Settings(KEYS, read=read).resolve(str(path), environ={}).values["port"] == 7


@pytest.mark.parametrize(
    "text", ["\u0661\u0662", "\uff11\uff12", "1_000", "0x10", "5 5"]
)  # Arabic-Indic, fullwidth
def test_numbers_are_written_in_ascii(text: str) -> None:
    with pytest.raises(ValueError, match="expected a number"):
        number()(text)


def test_numbers_may_have_spaces_around_them() -> None:
    assert number(integer=True)(" 5 ") == 5 and number()("1e3") == 1000.0 and number()("-.5") == -0.5


def test_a_refusal_never_shows_a_secret_and_is_bounded() -> None:
    keys = {
        "hook": Key(None, choice("https"), "a secret", env="HOOK", secret=True),
        "name": Key("x", choice("x"), "not one", env="NAME"),
    }
    with pytest.raises(ConfigError) as e:
        Settings(keys).resolve(environ={"HOOK": "notaurl-SECRETSECRET"})
    assert "SECRET" not in str(e.value) and "(not shown)" in str(e.value)
    with pytest.raises(ConfigError) as e:
        Settings(keys).resolve(environ={"NAME": "y" * 100_000})
    assert len(str(e.value)) < 400 and str(e.value).endswith("(cut)")


def test_a_variable_may_set_the_default_below_the_file() -> None:
    """statsd's WEBOPS_STATSD_HOTPATH: the default of every config, a file's value still wins;
    checked like any value, blank is unset."""
    keys = {"mode": Key("auto", choice("auto", "python"), "m", env="MODE", env_is_default=True)}
    assert Settings(keys).resolve(environ={"MODE": "python"}).sources["mode"] == "$MODE"
    assert Settings(keys).resolve(environ={"MODE": "python"}, file={"mode": "auto"}).values["mode"] == "auto"
    assert Settings(keys).resolve(environ={"MODE": " "}).values["mode"] == "auto"
    with pytest.raises(ConfigError, match=r"^\$MODE: mode: expected one of"):
        Settings(keys).resolve(environ={"MODE": "bogus"})
