"""Sets (`|s`): the distinct values seen in an interval; Etsy sends how many. The console's
`sets` command and the console backend show the members, sorted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import register
from .base import Kind, Value


@register
class Sets(Kind):
    table = "sets"
    codes = ("s",)
    order = 3
    graphite_name = "Set"
    legacy_namespace = "sets"
    delete_doc = "drop idle sets instead of sending 0"

    @staticmethod
    def parse(raw: str, code: str, rate: float) -> Value:
        return ("s", raw or "0", rate, False)  # any text is a member; Etsy counts `:|s` as "0"

    def add(self, key: str, value: str, rate: float, delta: bool) -> None:
        members = self.series.get(key)
        if members is None and (members := self.created(key)) is None:
            return
        members.add(value)

    def empty(self) -> set[str]:
        return set()

    @staticmethod
    def copy(state: set[str]) -> set[str]:
        return set(state)

    @staticmethod
    def absorb(mine: set[str], theirs: set[str]) -> None:
        mine |= theirs

    @classmethod
    def summarize(cls, table: dict[str, set[str]], settings: Any) -> tuple[dict[str, int], list[str]]:
        return {k: len(v) for k, v in table.items()}, []

    @classmethod
    def fields(cls, table: dict[str, set[str]], summary: dict[str, int], full: bool) -> dict[str, Any]:
        return {"sets": cls.console(table) if full else summary}

    @classmethod
    def console(cls, table: dict[str, set[str]]) -> dict[str, list[str]]:
        return {k: sorted(v) for k, v in table.items()}

    @classmethod
    def graphite(cls, naming: Any, key: str, raw: set[str], summary: int) -> Iterator[tuple[str, float]]:
        yield naming.path(naming.namespace(cls), key, "count"), summary
