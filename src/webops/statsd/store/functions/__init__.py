"""Graphite's render functions: the parser and evaluator in core, the functions by family in the
modules beside it; importing this package registers them all in FUNCTIONS."""

from . import calculate, combine, filter, transform  # noqa: F401 - they register their functions
from .core import (
    AGG,
    CONSOLIDATE,
    FUNCTIONS,
    GROUPS,
    MS,
    UNITS,
    Budget,
    Call,
    Context,
    Expired,
    Path,
    Refused,
    Series,
    TargetError,
    Value,
    evaluate,
    normalize,
    parse,
    paths,
)

__all__ = [
    "AGG", "CONSOLIDATE", "FUNCTIONS", "GROUPS", "MS", "UNITS", "Budget", "Call", "Context", "Expired",
    "Path",    "Refused", "Series", "TargetError", "Value", "evaluate", "normalize", "parse",
    "paths",
]  # fmt: skip
