"""Flush backends behind one small interface (see base.Backend); `create` maps a name to one."""

from __future__ import annotations

from ..config import StatsdConfig
from .base import Backend


def create(name: str, config: StatsdConfig, startup_time: float) -> Backend:
    """Instantiate the backend called `name` (a canonical name from config.backend_name)."""
    if name == "console":
        from .console import ConsoleBackend

        return ConsoleBackend(config, startup_time)
    if name == "file":
        from .file import FileBackend

        return FileBackend(config, startup_time)
    if name == "graphite":
        from .graphite import GraphiteBackend

        return GraphiteBackend(config, startup_time)
    if name == "repeater":
        from .repeater import RepeaterBackend

        return RepeaterBackend(config, startup_time)
    raise ValueError(f"unknown backend {name!r}")
