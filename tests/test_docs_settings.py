"""Every tool's settings are documented on its page: each key's name, flag and environment
variable appear in docs/<tool>.md (statsd's keys: tests/test_readme.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from webops.check import cli as check
from webops.cluster import cli as cluster
from webops.cmdlog import cli as cmdlog
from webops.common.settings import Key
from webops.gate import config as gate
from webops.keytop import cli as keytop
from webops.pgtop import cli as pgtop
from webops.vlogdump import cli as vlogdump

DOCS = Path(__file__).parent.parent / "docs"
TOOLS: dict[str, list[dict[str, Key]]] = {
    "pgtop": [dict(pgtop.SETTINGS.keys)],
    "gate": [gate.KEYS],
    "cluster": [dict(cluster.SETTINGS.keys)],
    "keytop": [keytop.KEYS],
    "vlogdump": [vlogdump.KEYS],
    "cmdlog": [cmdlog.REPORT_KEYS, cmdlog.DOCTOR_KEYS],
    "check": [check.KEYS],
}


@pytest.mark.parametrize("tool", TOOLS)
def test_every_setting_is_on_its_tools_page(tool: str) -> None:
    page = (DOCS / f"{tool}.md").read_text()
    settings = page.split("\n## Settings\n", 1)[1]
    for keys in TOOLS[tool]:
        for name, key in keys.items():
            assert f"| `{name}` |" in settings, name
            for word in (key.flag, key.short, key.env):
                assert word is None or f"`{word}`" in settings, (name, word)
    assert "--check-config" in settings and "settings.md" in settings
