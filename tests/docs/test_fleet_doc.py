"""docs/fleet.md's configuration snippets are ones the engines accept as written: each webops
config passes `webops statsd --check-config`, the carbon-c-relay config parses and hashes a name
with `carbon_ch`, the carbon-relay section names the consistent-hashing method over instances, the
prometheus.yml passes promtool. (The topologies themselves run in tests/statsd/test_fleet_*.py.)"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need

DOC = Path(__file__).parent.parent.parent / "docs" / "fleet.md"


def blocks(language: str) -> list[str]:
    found = [
        body
        for lang, body in re.findall(r"^```(\w*)\n(.*?)^```$", DOC.read_text(), re.S | re.M)
        if lang == language
    ]
    assert found, f"no {language} block in {DOC.name}"
    return found


@pytest.mark.parametrize("index", range(len(blocks("js"))))
def test_each_webops_config_is_accepted(index: int, tmp_path: Path) -> None:
    config = tmp_path / "statsd.js"
    config.write_text(blocks("js")[index])
    r = subprocess.run(
        [sys.executable, "-m", "webops", "statsd", "--config", str(config), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr


def test_the_carbon_c_relay_config_parses_and_hashes_with_carbon_ch(tmp_path: Path) -> None:
    need(shutil.which("carbon-c-relay") is not None, "carbon-c-relay (apt-get install carbon-c-relay)")
    (conf,) = (b for b in blocks("") if b.startswith("listen type linemode"))
    (tmp_path / "relay.conf").write_text(conf)
    r = subprocess.run(
        ["carbon-c-relay", "-t", "-f", str(tmp_path / "relay.conf")],
        input="stats.web1.counters.api.hits.count 1 1\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "carbon_ch(caches)" in r.stdout, r.stdout


def test_the_carbon_relay_section_hashes_over_named_instances() -> None:
    (ini,) = blocks("ini")
    relay = configparser.ConfigParser(inline_comment_prefixes=("#",))
    relay.read_string(ini)
    assert relay["relay"]["RELAY_METHOD"] == "consistent-hashing"
    destinations = [d.strip() for d in relay["relay"]["DESTINATIONS"].split(",")]
    assert all(len(d.split(":")) == 3 for d in destinations), destinations  # host:port:instance


def test_the_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    need(shutil.which("promtool") is not None, "promtool (apt-get install prometheus)")
    (yml,) = blocks("yaml")
    (tmp_path / "prometheus.yml").write_text(yml)
    r = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
