"""Config files written as JavaScript (Etsy evals them): the expressions real files use, no code run."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from webops.common.config import ConfigError, load_object


def load(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "config.js"
    path.write_text(text)
    return load_object(path)[0]


def test_the_expressions_real_etsy_configs_use(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GRAPHITE_HOST", "carbon.internal")
    monkeypatch.delenv("UNSET_THING", raising=False)
    got = load(
        tmp_path,
        """{
  flushInterval: 60 * 1000,            // a minute
  socket_mod: 0o660,
  mode: 0x1ff, big: 1e3, half: .5, neg: -2, frac: 10 / 4,
  graphiteHost: process.env.GRAPHITE_HOST || "127.0.0.1",
  fallback: process.env.UNSET_THING || 'default',
  persistGauges: process.env.UNSET_THING,
  graphite: { globalPrefix: "web" + "." + "eu" + 1, globalSuffix: require("os").hostname() },
  on: !0, tpl: `plain`, list: [1, "a", true, null],
}""",
    )
    assert got == {
        "flushInterval": 60000,
        "socket_mod": 0o660,
        "mode": 511,
        "big": 1000,
        "half": 0.5,
        "neg": -2,
        "frac": 2.5,
        "graphiteHost": "carbon.internal",
        "fallback": "default",
        "graphite": {"globalPrefix": "web.eu1", "globalSuffix": socket.gethostname()},
        "on": True,
        "tpl": "plain",
        "list": [1, "a", True, None],
    }


@pytest.mark.parametrize(
    "expression",
    ['require("child_process").execSync("id")', "(function () { return 1 })()", "this.x", "new Date()", "x"],
)
def test_anything_that_would_run_code_is_refused_by_name_and_line(tmp_path, expression: str) -> None:
    with pytest.raises(ConfigError, match=r"config\.js:3: \w+ is not supported in a config file"):
        load(tmp_path, f"{{\n  port: 8125,\n  x: {expression},\n}}")


def test_a_syntax_error_still_names_the_line(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"config\.js:2: not a valid JavaScript object literal"):
        load(tmp_path, "{\n  port: 8125 8126\n}")
