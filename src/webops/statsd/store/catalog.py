"""/functions: the render functions this store has, described as graphite-web 1.1 describes its
own (functions/views.py), so Grafana's query editor offers exactly these and no others.

Built from functions.FUNCTIONS by introspection, never a list of its own: a function added there
is offered here at once. Each entry is graphite-web's {name, function, description, module,
group, params}; a parameter's type comes from its annotation (list[Series] is a seriesList, int an
integer, int | str an intOrInterval...), its name in graphite-web's camelCase, required when it
has no default, multiple for *args. A function may say its group (`fn.group = "Combine"`) and
its parameters (`fn.params = [...]`, graphite-web's own dicts) where introspection cannot.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from typing import Any

from . import functions
from .functions import FUNCTIONS, Series
from .functions.core import graphite_name
from .functions.filter import OPERATORS

# annotation -> graphite-web's parameter type (functions/params.py's ParamTypes), checked in order
TYPES: list[tuple[Callable[[Any], bool], str]] = [
    (lambda a: a == list[Series], "seriesList"),
    (lambda a: a is bool, "boolean"),
    (lambda a: a is int, "integer"),
    (lambda a: a is float, "float"),
    (lambda a: a is str, "string"),
    (lambda a: _members(a) >= {int, str}, "intOrInterval"),
    (lambda a: _members(a) - {type(None)} in ({float}, {int, float}), "float"),
    (lambda a: _members(a) - {type(None)} == {int}, "integer"),
    (lambda a: _members(a) - {type(None)} == {str}, "string"),
    (lambda a: Series in _members(a) or list[Series] in _members(a), "seriesList"),
]


# A text parameter that takes one of a few words, by its (graphite-web) name: its type there
# (aggFunc, aggOrSeriesFunc...) and the words, from the tables the evaluator itself checks
# against, so the menu Grafana draws holds exactly what renders.
OPTIONS: dict[str, tuple[str, Callable[[], list[str]]]] = {
    "func": ("aggFunc", lambda: sorted(functions.AGG)),
    "aggFunc": ("aggFunc", lambda: sorted(functions.AGG)),
    "callback": ("aggOrSeriesFunc", lambda: sorted(functions.AGG)),
    "consolidationFunc": ("string", lambda: sorted(functions.CONSOLIDATE)),
    "operator": ("string", lambda: sorted(OPERATORS)),
    "valueTypes": ("string", lambda: [*sorted(functions.AGG), "si", "binary"]),
}
# A text parameter that is a time span ("1h", "-1d"), which graphite-web types as an interval.
INTERVALS = {"timeShift", "intervalString", "bootstrapInterval", "seasonality", "alignTo"}


def _members(annotation: Any) -> set[Any]:
    return set(typing.get_args(annotation)) if typing.get_args(annotation) else set()


def _type(annotation: Any, name: str) -> str:
    for test, kind in TYPES:
        try:
            if test(annotation):
                return kind
        except TypeError:
            continue
    return "any"


def params(fn: Callable[..., Any]) -> list[dict[str, Any]]:
    """graphite-web's Param.toJSON() for each parameter after the context."""
    if hasattr(fn, "params"):
        return list(fn.params)
    hints = typing.get_type_hints(fn)
    out = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:  # the first is the Context
        kind = _type(hints.get(p.name, Any), p.name)
        # graphite-web's name, which a keyword argument is matched to as well
        entry: dict[str, Any] = {"name": graphite_name(p, hints.get(p.name, Any)), "type": kind}
        if p.kind is p.VAR_POSITIONAL:
            entry["type"] = "seriesLists" if kind == "seriesList" else kind
            entry["required"] = True
            entry["multiple"] = True
        elif (kind == "seriesList" and p.name == "series") or p.default is p.empty:
            entry["required"] = True
        elif p.default is not None and not (isinstance(p.default, float) and not math.isfinite(p.default)):
            entry["default"] = p.default
        if kind == "string" and entry["name"] in INTERVALS:
            entry["type"] = "interval"
        elif kind == "string" and entry["name"] in OPTIONS:  # what the editor offers in a menu
            kind, options = OPTIONS[entry["name"]]
            entry.update(type=kind, options=options())
        out.append(entry)
    return out


def describe(name: str, fn: Callable[..., Any]) -> dict[str, Any]:
    """One entry of /functions, as graphite-web's functionInfo() writes it."""
    listed = params(fn)
    signature = ", ".join(p["name"] + (f"={p['default']!r}" if "default" in p else "") for p in listed)
    return {
        "name": name,
        "function": f"{name}({signature})",
        "description": inspect.getdoc(fn) or f"graphite-web's {name}, as webops evaluates it.",
        "module": "webops.statsd.store.functions",
        "group": functions.GROUPS.get(name) or getattr(fn, "group", "Ungrouped"),
        "params": listed,
    }


def catalog(group: str | None = None, grouped: bool = False) -> dict[str, Any]:
    """/functions' answer: {name: entry}, or {group: {name: entry}} with grouped, one group's
    entries with group (graphite-web's query parameters)."""
    out: dict[str, Any] = {}
    for name, fn in FUNCTIONS.items():
        entry = describe(name, fn)
        if group is not None and entry["group"] != group:
            continue
        if grouped:
            out.setdefault(entry["group"], {})[name] = entry
        else:
            out[name] = entry
    return out
