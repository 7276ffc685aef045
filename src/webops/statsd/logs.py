"""The daemon's log: where it goes and at what level, set at start and again at each reload."""

from __future__ import annotations

import logging
import sys
from logging.handlers import SysLogHandler

from .config import LOG_LEVELS, StatsdConfig


def setup_logging(config: StatsdConfig) -> None:
    """Etsy's `log` section: stdout (default), stderr or syslog, at LOG_* levels."""
    section = config.section("log")
    level = logging.DEBUG if config["debug"] else LOG_LEVELS[section["level"]]
    root = logging.getLogger("webops")
    root.setLevel(level)
    kind = section["backend"]
    current = getattr(root, "_webops_handler", None)
    if current is not None and getattr(current, "_webops_kind", None) == (kind, section["application"]):
        return
    if kind == "syslog":
        handler: logging.Handler = SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter(f"{section['application']}: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stdout if kind == "stdout" else sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s", "%d %b %H:%M:%S"))
    handler._webops_kind = (kind, section["application"])  # type: ignore[attr-defined]
    if current is not None:
        root.removeHandler(current)
    root.addHandler(handler)
    root._webops_handler = handler  # type: ignore[attr-defined]
    root.propagate = False
