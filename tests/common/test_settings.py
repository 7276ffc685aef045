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
