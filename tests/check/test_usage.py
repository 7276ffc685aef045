"""What an operator can type wrong, end to end as a process: every mistake is UNKNOWN (3) with one
status line that says what is wrong, never a traceback, exit 1 (WARNING) or CRITICAL."""

from __future__ import annotations

import pytest

from tests.check.helpers import run_check, run_plugin
from tests.conftest import free_port
from webops import __version__
from webops.check import paths
from webops.common.config import ConfigError

DEAD = ["-u", "http://127.0.0.1:1"]  # never reached: each case is refused before any request


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-t", "x", "-w=-5"], "above end"),
        (["-t", "x", "-w", "1", "--timeout", "1e308"], "at most 3600"),
        (["-t", "", "-w", "1"], "empty"),
        (["--gauge", "", "-w", "1"], "empty"),
        (["--gauge", "é'$", "-w", "1"], "empty"),  # nothing left once sanitized
        (["-t", "x", "-w", "1", "--uom", "furlongs"], "--uom"),
        (["-t", "x", "-w", "1", "-u", "not a url"], "not an http(s) URL"),
        (["-t", "x", "-w", "1", "-u", "http://[::1"], "not an http(s) URL"),
        (["-t", "x", "--holt-winters", "--seasonality", "0s"], "--seasonality 0s"),
        (["-t", "x", "-w", "1", "--from", "-100y"], "before 1970"),
        (["-t", "x", "--compare", "-100y", "--change-warning", "5"], "before 1970"),
        (["-t", "x", "--holt-winters", "--bootstrap", "100y"], "before 1970"),
        (["-t", "x", "-w", "-inf:"], "not a finite number"),
        (["-t", "x", "--compare", "+2min", "--change-warning", "5"], "not in the past"),
        (["--timer", "x", "--stat", "p99", "-w", "1"], "percentThreshold [90] (Etsy's default)"),
    ],
)
def test_a_mistake_is_unknown_and_says_what(args: list[str], says: str) -> None:
    rc, line = run_check(*(DEAD if "-u" not in args else []), *args)
    assert rc == 3 and line.startswith("WEBOPS CHECK UNKNOWN - ") and says in line, line


@pytest.mark.parametrize(
    "args",
    [
        ["-w", "-10:-1"],
        ["-c", "-.5:30"],
        ["-w", "-0:0"],
        ["-w", "~:-1"],
        ["--compare", "-1d", "--change-warning", "-10:"],
        ["--compare", "-1d", "--change-critical", "-10%"],
    ],
)
def test_negative_ranges_in_their_natural_form_are_values(args: list[str]) -> None:
    """As C plugins take `-w -10:-1`: the range reaches the check (here: an endpoint that refuses),
    it is not an unknown option."""
    rc, line = run_check("-u", f"http://127.0.0.1:{free_port()}", "-t", "x", *args)
    assert rc == 3 and "unreachable" in line, line


def test_version_and_help_end_unknown_as_the_monitoring_plugins_do() -> None:
    rc, out = run_plugin("-V")
    assert (rc, out) == (3, f"webops check {__version__}\n")
    rc, out = run_plugin("--help")
    assert rc == 3 and "--target" in out and "-V, --version" in out, out


def test_check_config_needs_no_target() -> None:
    rc, out = run_plugin("--check-config", "--timeout", "5")
    assert rc == 0 and "timeout = 5" in out, out


def test_statsd_percentiles_are_named_as_the_daemon_names_them() -> None:
    """p99.90 is percentThreshold 99.9, written `upper_99_9`; p095 is 95; p-10 (the slowest
    10 %) is `lower_top10`; each only when the daemon computes it."""
    assert paths.timer_stat("p99.90", {"percentThreshold": [99.9]}) == "upper_99_9"
    assert paths.timer_stat("p095", {"percentThreshold": [95]}) == "upper_95"
    assert paths.timer_stat("p-10", {"percentThreshold": [90, -10]}) == "lower_top10"
    assert paths.timer_stat("p90", {}) == "upper_90"
    with pytest.raises(ConfigError, match="give --statsd-config or use p90"):
        paths.timer_stat("p99", {})


def test_names_are_sanitized_as_the_daemon_does_unless_its_config_says_not() -> None:
    assert paths.resolve("gauge", "my metric/x'é", None, {}) == "stats.gauges.my_metric-x"
    assert paths.resolve("gauge", "my metric", None, {"keyNameSanitize": False}) == "stats.gauges.my metric"


def test_an_unexpected_error_is_unknown_with_one_line(tmp_path) -> None:
    """The top-level guard: a statsd config whose globalPrefix is a number is not caught by any
    check of ours (validating it is statsd's business) and fails deep in the layout; the plugin
    still ends UNKNOWN with one status line naming the error, not a traceback and exit 1."""
    config = tmp_path / "statsd.js"
    config.write_text("{ graphite: { globalPrefix: 5 } }")
    rc, line = run_check("--statsd-config", str(config), "--gauge", "x", "-w", "1")
    assert rc == 3 and line.startswith("WEBOPS CHECK UNKNOWN - webops check failed: TypeError"), line
