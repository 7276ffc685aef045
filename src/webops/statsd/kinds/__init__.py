"""Metric kinds, one module each (brubeck's metric-type table): a `|type` from the wire to the
summary a flush computes. Each module defines a `Kind` subclass decorated with @register: its wire
codes, how its values parse, accumulate, merge across reader processes and reset at a flush, what
a flush computes, and its own config keys.

How each output shows a kind is that output's own table, keyed by the kind's `table` name
(`outputs` below walks one); adding a metric type is a module here plus an entry in each output
that should show it (docs/development.md: Adding a metric kind)."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterator, Mapping
from typing import TypeVar

from ..validate import Key
from .base import Kind

_REGISTERED: list[type[Kind]] = []
T = TypeVar("T")
log = logging.getLogger("webops.statsd")


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
    return {name: key.default for name, key in CONFIG_KEYS.items()}


_UNSHOWN: set[tuple[str, str]] = set()


def outputs(output: str, table: Mapping[str, T]) -> Iterator[tuple[type[Kind], T]]:
    """Each kind with its entry in an output's table, in Etsy's order. A kind the output has no
    entry for is left out of it, said once in the log (tests/statsd/test_kinds.py checks that
    every kind has an entry in every output)."""
    for kind in KINDS:
        entry = table.get(kind.table)
        if entry is not None:
            yield kind, entry
        elif (output, kind.table) not in _UNSHOWN:
            _UNSHOWN.add((output, kind.table))
            log.warning("%s has no entry for the metric kind %s: left out of it", output, kind.table)
