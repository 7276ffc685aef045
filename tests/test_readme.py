"""The README and the manuals in docs/ are part of the product: keep their promises checkable."""

from __future__ import annotations

import re
from pathlib import Path

from webops.statsd.settings import SCHEMA

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
TOOLS = ["statsd", "pgtop", "keytop", "vlogdump", "cluster", "cmdlog", "gate", "check"]


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    commands = [
        line.split("#")[0].strip() for line in first_block.splitlines() if line.strip() and line != "sh"
    ]
    assert commands == ["make run", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_every_statsd_config_key_is_documented() -> None:
    documented = set(re.findall(r"^\| `(\w+)` \|", (DOCS / "statsd.md").read_text(), re.M))
    assert set(SCHEMA) <= documented, set(SCHEMA) - documented


def test_make_test_runs_statsd_on_both_hot_paths() -> None:
    """The native hot path is the default; the Python reference must stay tested too."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\ntest: lint\n", 1)[1].split("\n\n", 1)[0]
    assert "cargo test" in recipe
    assert re.search(r"^\t\$\(BIN\)/pytest$", recipe, re.M)
    # every statsd test but those of what lies past the flush (fleet engines, store, dashboard)
    assert re.search(
        r"^\tWEBOPS_STATSD_HOTPATH=python \$\(BIN\)/pytest tests/statsd"
        r" --ignore-glob='tests/statsd/test_fleet_\*\.py' \\\n"
        r"\t  --ignore=tests/statsd/store --ignore=tests/statsd/dashboard$",
        recipe,
        re.M,
    )


def test_every_tool_in_the_readme_table_links_to_its_manual() -> None:
    linked = dict(re.findall(r"^\| \[`webops (\w+)`\]\(([^)]+)\) \|", README, re.M))
    assert sorted(linked) == sorted(TOOLS)
    for tool, target in linked.items():
        assert target == f"docs/{tool}.md"
        assert (ROOT / target).is_file(), target
        assert (ROOT / target).read_text().startswith(f"# `webops {tool}`\n")


def _relative_links(markdown: str) -> list[str]:
    """The targets of the inline links outside code blocks and code spans, without their #anchor;
    links to other sites and to an anchor of the same page left out."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)\s]+)\)", prose)]
    return [t for t in targets if t and not re.match(r"[a-z]+:", t)]


def test_every_relative_link_in_the_docs_resolves() -> None:
    pages = sorted(DOCS.glob("*.md"))
    assert pages
    broken = [
        f"{page.relative_to(ROOT)}: {target}"
        for page in pages
        for target in _relative_links(page.read_text())
        if not (page.parent / target).exists()
    ]
    assert not broken, broken
