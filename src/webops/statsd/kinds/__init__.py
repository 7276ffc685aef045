"""Metric kinds, one module each (brubeck's metric-type table): a `|type` from the wire to every
output. Each module defines a `Kind` subclass decorated with @register: its wire codes, how its
values parse, accumulate, merge across reader processes and reset at a flush, what a flush
computes, how Graphite, Prometheus, the console and files show it, and its own config keys.
Adding a metric type is adding a module (and its tests); nothing else changes."""

from __future__ import annotations

import importlib
import pkgutil

from ..validate import Key
from .base import Kind

_REGISTERED: list[type[Kind]] = []


def register(cls: type[Kind]) -> type[Kind]:
    _REGISTERED.append(cls)
    return cls


for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

KINDS: tuple[type[Kind], ...] = tuple(sorted(_REGISTERED, key=lambda k: k.order))
BY_TABLE: dict[str, type[Kind]] = {k.table: k for k in KINDS}
BY_CODE: dict[str, type[Kind]] = {code: k for k in KINDS for code in k.codes}
CONFIG_KEYS: dict[str, Key] = {name: key for k in KINDS for name, key in k.config_keys().items()}


def default_options() -> dict[str, object]:
    """The kinds' own config keys at their defaults (what a bare AggregationSettings uses)."""
    return {name: key[0] for name, key in CONFIG_KEYS.items()}
