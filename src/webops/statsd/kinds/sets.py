"""Sets (`|s`): the distinct values seen in an interval; a flush counts them (Etsy sends how many).

A set holds at most `maxSetMembers` members an interval (reader batches and native receivers
too): a set fed unique ids costs about 100 bytes a member, so one busy set would otherwise take
hundreds of MiB. Past the limit new members are refused and counted
(`statsd.set_members_refused`), members already held go on, and the count sent is the limit: a
floor."""

from __future__ import annotations

import heapq
from typing import Any

from . import register
from .base import Kind, Value


@register
class Sets(Kind):
    table = "sets"
    codes = ("s",)
    order = 3
    delete_doc = "drop idle sets instead of sending 0"

    @staticmethod
    def parse(raw: str, code: str, rate: float) -> Value:
        return ("s", raw or "0", rate, False)  # any text is a member; Etsy counts `:|s` as "0"

    def add(self, key: str, value: str, rate: float, delta: bool) -> None:
        members = self.series.get(key)
        if members is None and (members := self.created(key)) is None:
            return
        if value not in members:
            if len(members) >= self.agg.settings.max_set_members:
                self.agg.refuse_members(1)
                return
            members.add(value)

    def merge(self, table: dict[str, set[str]]) -> None:
        """A batch's sets: adopted or absorbed as Kind.merge does, up to maxSetMembers each. At
        the limit the smallest new members get the room left, so which are kept depends on what
        came, not on the order a set iterates in (native and Python batches agree)."""
        limit = self.agg.settings.max_set_members
        for key, theirs in table.items():
            mine = self.series.get(key)
            if mine is None:
                if not self.agg.admit():
                    continue
                if len(theirs) <= limit:
                    self.series[key] = theirs
                    continue
                mine = self.series[key] = set()  # a batch built before a reload lowered the limit
            if len(mine) + len(theirs) <= limit:
                mine |= theirs
                continue
            new = theirs - mine
            room = max(0, limit - len(mine))
            if len(new) > room:
                self.agg.refuse_members(len(new) - room)
                new = set(heapq.nsmallest(room, new))
            mine |= new

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
