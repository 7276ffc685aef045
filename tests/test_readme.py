"""The README is part of the product: keep its promises checkable."""

from __future__ import annotations

import re
from pathlib import Path

from webops.statsd.settings import SCHEMA

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    commands = [
        line.split("#")[0].strip() for line in first_block.splitlines() if line.strip() and line != "sh"
    ]
    assert commands == ["make run", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_every_statsd_config_key_is_documented() -> None:
    documented = set(re.findall(r"^\| `(\w+)` \|", README, re.M))
    assert set(SCHEMA) <= documented, set(SCHEMA) - documented


def test_make_test_runs_statsd_on_both_hot_paths() -> None:
    """The native hot path is the default; the Python reference must stay tested too."""
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    recipe = makefile.split("\ntest: lint\n", 1)[1].split("\n\n", 1)[0]
    assert "cargo test" in recipe
    assert re.search(r"^\t\$\(BIN\)/pytest$", recipe, re.M)
    assert re.search(r"^\tWEBOPS_STATSD_HOTPATH=python \$\(BIN\)/pytest tests/statsd$", recipe, re.M)
