"""Flush backends: each module here defines one (see base.Backend and @register). Adding a
backend is adding a module: it is found, and its config keys join the schema, without touching
anything else."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from ..validate import Key
from .base import REGISTRY, Backend

if TYPE_CHECKING:
    from ..config import StatsdConfig

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

CONFIG_KEYS: dict[str, Key] = {k: v for cls in REGISTRY.values() for k, v in cls.CONFIG_KEYS.items()}
SECTIONS: dict[str, dict[str, Key]] = {k: v for cls in REGISTRY.values() for k, v in cls.SECTIONS.items()}


def create(name: str, config: StatsdConfig, startup_time: float) -> Backend:
    """Instantiate the backend called `name` (a canonical name from config.backend_name)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r}")
    return REGISTRY[name](config, startup_time)
