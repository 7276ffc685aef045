"""Config files: Etsy's JS object literals and Net::Statsd::Server's JSON, unchanged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import checked_config
from webops.cli import main
from webops.common.config import ConfigError
from webops.statsd import settings as statsd_config

ETSY = """/* Etsy-style config: comments, unquoted keys, trailing commas */
{ graphitePort: 2003
, graphiteHost: "graphite.localdomain"
, port: 8125
, backends: [ "./backends/graphite", "./backends/console", ]
, mgmt_address: "0.0.0.0"   // management console
, mgmt_port: 8126
, percentThreshold: [90, 99.9, -10]
, graphite: { legacyNamespace: false, globalPrefix: 'app' }
, deleteIdleStats: true
, deleteGauges: false
}
"""

PERL = """{ "graphitePort": 2003,
  "graphiteHost": "graphite.localdomain",
  "host" : "0.0.0.0",
  "port": 8125,
  "mgmt_address" : "0.0.0.0",
  "mgmt_port": 8126,
  "backends": [ "Graphite", "Console" ],
  "log" : {
    "backend" : "stdout",
    "level" : "LOG_WARN",
  }
}
"""


def write(tmp_path: Path, text: str, name: str = "config.js") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_etsy_config_js_works_unchanged(tmp_path: Path) -> None:
    cfg = statsd_config.load(write(tmp_path, ETSY))
    assert cfg.backends == ["graphite", "console"]
    assert cfg["percentThreshold"] == [90, 99.9, -10]
    assert cfg.section("graphite")["globalPrefix"] == "app"
    assert cfg.section("graphite")["prefixCounter"] == "counters"
    agg = cfg.aggregation()
    assert agg.deletes == {"counters", "timers", "sets"}
    assert cfg["mgmt_address"] == "0.0.0.0"


def test_perl_json_config_works_unchanged(tmp_path: Path) -> None:
    cfg = statsd_config.load(write(tmp_path, PERL, "statsd.json"))
    assert cfg.backends == ["graphite", "console"]
    assert cfg["address"] == "0.0.0.0"  # Perl's "host"
    assert cfg.section("log")["level"] == "LOG_WARN"


def test_defaults_listen_on_loopback_only() -> None:
    cfg = statsd_config.load(None)
    assert [(s.kind, s.address, s.port) for s in cfg.listeners] == [("udp", "127.0.0.1", 8125)]
    assert (cfg["mgmt_address"], cfg["mgmt_port"]) == ("127.0.0.1", 8126)
    assert cfg.backends == ["console", "store"]  # make run: the flushes shown, and kept
    assert cfg["flushInterval"] == 10000


def test_the_store_lives_in_the_users_data_dir_unless_told(tmp_path) -> None:
    import subprocess
    import sys

    code = "from webops.statsd.settings import load; print(load(None).section('store')['dir'])"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"{tmp_path}/.local/share/webops/statsd"
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"{tmp_path}/xdg/webops/statsd"
    r = subprocess.run(
        [sys.executable, "-m", "webops", "statsd", "--check-config", "--data-dir", "/srv/statsd"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and checked_config(r.stdout)["store"] == ({"dir": "/srv/statsd"}, "--data-dir")


def test_the_data_dir_flag_sets_one_key_of_the_store_section(tmp_path) -> None:
    conf = tmp_path / "c.js"
    conf.write_text('{store: {retentions: [["^stats\\\\.", "1s:1h"]]}, backends: ["store"]}')
    cfg = statsd_config.load(str(conf), {"store": {"dir": "/var/lib/x"}})
    assert cfg.section("store") == {"retentions": [["^stats\\.", "1s:1h"]], "dir": "/var/lib/x"}


def test_servers_list() -> None:
    cfg = statsd_config.build(
        {
            "servers": [
                {"server": "./servers/udp", "port": 9000},
                {"server": "./servers/tcp", "address": "::1", "port": 9001},
                {"server": "./servers/tcp", "socket": "/tmp/s.sock", "socket_mod": 0o660},
                {"address_ipv6": True, "port": 9002},
            ]
        }
    )
    got = [(s.kind, s.address, s.port, s.path) for s in cfg.listeners]
    assert got == [
        ("udp", "127.0.0.1", 9000, None),
        ("tcp", "::1", 9001, None),
        ("unix", "", 0, "/tmp/s.sock"),
        ("udp", "::1", 9002, None),
    ]


def test_numbers_given_as_strings_are_accepted() -> None:
    cfg = statsd_config.build({"port": "8125", "flushInterval": "5000", "debug": "true"})
    assert (cfg["port"], cfg["flushInterval"], cfg["debug"]) == (8125, 5000, True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{\n  port: 8125,\n  flushInterval: 'soon',\n}",
            "config.js:3: flushInterval: expected a number, got 'soon'",
        ),
        ("{ port: 70000 }", "config.js:1: port: must be at most 65535, got 70000"),
        ("{\n backends: ['./backends/nope'] }", "config.js:2: backends: unknown backend './backends/nope'"),
        ("{\n percentThreshold: [90, 0] }", "config.js:2: percentThreshold: percentiles must be"),
        (
            "{\n graphite: { legacyNamespace: 'maybe' } }",
            "config.js:2: graphite: legacyNamespace: expected true",
        ),
        ("{ a: 1,\n b: }", "config.js:2: not a valid JavaScript object literal / JSON"),
        ("[1, 2]", "config.js: the file must hold one object"),
        ("{ servers: [{ port: -1 }] }", "config.js:1: servers: servers[0]: port: must be at least 0"),
    ],
)
def test_invalid_config_names_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        statsd_config.load(write(tmp_path, text))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.js: cannot read"):
        statsd_config.load(str(tmp_path / "missing.js"))


def test_unknown_key_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "{ flushIntervall: 1000, graphite: { globalPrefx: 'x' } }")
    with caplog.at_level(logging.WARNING, logger="webops.statsd"):
        statsd_config.load(path)
        statsd_config.load(path)
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("'flushIntervall'" in w for w in warnings) == 1
    assert sum("'globalPrefx'" in w for w in warnings) == 1


def test_check_config_prints_effective_config_with_flags_winning(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "{ port: 9999, flushInterval: 2000 }")
    assert main(["statsd", "--check-config", path, "--port", "7000", "--backends", "console,file"]) == 0
    effective = checked_config(capsys.readouterr().out)
    assert effective["port"] == (7000, "--port")
    assert effective["flushInterval"] == (2000, f"{path}:1")
    assert effective["backends"] == (["console", "file"], "--backends")


def test_check_config_says_where_each_value_comes_from(tmp_path: Path, capsys) -> None:
    """The source of every value: a default, the file's line, a flag, both for a section that a
    flag completes, and the key a derived value follows (the common settings layer)."""
    path = write(tmp_path, '{\n  host: "::1",\n  store: {retentions: []},\n  deleteIdleStats: true\n}')
    assert main(["statsd", "--check-config", path, "--data-dir", "/srv/x", "--debug"]) == 0
    effective = checked_config(capsys.readouterr().out)
    assert effective["mgmt_port"] == (8126, "default")
    assert effective["host"] == ("::1", f"{path}:2")
    assert effective["address"] == ("::1", "host")
    assert effective["store"] == ({"retentions": [], "dir": "/srv/x"}, f"{path}:3, --data-dir")
    assert effective["deleteCounters"] == (True, "deleteIdleStats")
    assert effective["debug"] == (True, "--debug")
    assert effective["backends"] == (["./backends/console", "store"], "default")


def test_check_config_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "{ flushInterval: -5 }")
    assert main(["statsd", "--check-config", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "flushInterval" in err and path in err


def test_a_misspelt_server_module_is_an_error_not_udp() -> None:
    with pytest.raises(ConfigError, match=r"server: expected one of \./servers/udp, \./servers/tcp"):
        statsd_config.build({"server": "./servers/tpc"})
    with pytest.raises(ConfigError, match=r"servers\[0\]: server"):
        statsd_config.build({"servers": [{"server": "./servers/tpc"}]})


def test_socket_mod_as_an_octal_string() -> None:
    cfg = statsd_config.build(
        {"servers": [{"server": "./servers/tcp", "socket": "/s", "socket_mod": "0660"}]}
    )
    assert cfg.listeners[0].mode == 0o660
    assert statsd_config.build({"socket_mod": 0o640})["socket_mod"] == 0o640
    with pytest.raises(ConfigError, match="octal"):
        statsd_config.build({"socket_mod": "rw-rw----"})


def test_a_bad_environment_variable_breaks_only_the_tool_that_reads_it() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PORT": "abc", "WORKERS": "x"}
    ok = subprocess.run(
        [sys.executable, "-m", "webops", "statsd", "--check-config"], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "webops", "cluster", "serve"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "$PORT: port: expected a number, got 'abc'" in bad.stderr


def test_http_address_and_port_flags_set_one_key_each_of_the_http_section(tmp_path: Path, capsys) -> None:
    """--http-address / --http-port (issue 33): each sets its key of `http`, the file's limits stay."""
    path = write(tmp_path, "{\n  http: {renderThreads: 4}\n}")
    assert main(["statsd", "--check-config", path, "--http-port", "9127", "--http-address", "::1"]) == 0
    value, source = checked_config(capsys.readouterr().out)["http"]
    assert isinstance(value, dict)
    assert (value["address"], value["port"], value["renderThreads"]) == ("::1", 9127, 4)
    assert source == f"{path}:2, --http-address, --http-port"
    assert main(["statsd", "--check-config", "--http-port", "http"]) == 2
    assert "--http-port: http: port: expected a number" in capsys.readouterr().err


def test_the_start_log_says_where_the_dashboard_is(start_daemon) -> None:
    """The HTTP flags reach the daemon, which says the dashboard's URL when it starts."""
    import urllib.request

    from tests.conftest import free_port, wait_until

    port = free_port()
    d = start_daemon(http=False, _popen={"args": ["--http-address", "127.0.0.1", "--http-port", str(port)]})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
        assert r.status == 200
    wait_until(lambda: f"dashboard: http://127.0.0.1:{port}/" in d.logs(), what="the dashboard's URL logged")


def test_the_dashboard_url_is_one_a_browser_opens() -> None:
    import socket

    from webops.statsd.dashboard import url

    assert url("127.0.0.1", 8127) == "http://127.0.0.1:8127/"
    assert url("::1", 8127) == "http://[::1]:8127/"
    assert url("0.0.0.0", 80) == f"http://{socket.gethostname()}:80/"


def test_the_hot_path_variable_is_checked_and_named(monkeypatch, capsys) -> None:
    """WEBOPS_STATSD_HOTPATH sets the default (a file's hotPath wins): checked like a file's
    value, named as the source, blank is unset. It was shown as the default, unchecked."""
    monkeypatch.setenv("WEBOPS_STATSD_HOTPATH", "bogus")
    assert main(["statsd", "--check-config"]) == 2
    assert "$WEBOPS_STATSD_HOTPATH: hotPath: expected one of auto, native, python" in capsys.readouterr().err
    monkeypatch.setenv("WEBOPS_STATSD_HOTPATH", "python")
    assert main(["statsd", "--check-config"]) == 0
    assert checked_config(capsys.readouterr().out)["hotPath"] == ("python", "$WEBOPS_STATSD_HOTPATH")
    assert statsd_config.build({"hotPath": "auto"})["hotPath"] == "auto"


def test_two_config_files_are_a_usage_error(tmp_path: Path, capsys) -> None:
    """Which of two files won depended on where each was written; the second was ignored silently."""
    a, b = write(tmp_path, "{ port: 1 }"), str(tmp_path / "b.js")
    Path(b).write_text("{ port: 2 }")
    for argv in (
        [a, "--config", b, "--check-config"],
        ["--check-config", a, "--config", b],
        [a, "--check-config", b],
    ):
        assert main(["statsd", *argv]) == 2
        assert "one config file, please" in capsys.readouterr().err
