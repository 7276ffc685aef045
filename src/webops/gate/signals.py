"""User signals as a batch job has them, into events per user. Pure: lines in, counts out.

- JSONL: one object a line with `user_id` and, optionally, `events` (a count; 1 when absent, so
  a log of one event a line works as well as a per-user summary);
- CSV with a header: a `user_id` column and, optionally, `events` (what `psql --csv -c "SELECT
  user_id, count(*) AS events ..."` prints: a query result).
Lines for the same user add up.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable


class SignalError(ValueError):
    """Input that is not what it says: `where: what`, in one line."""


def _events(value: object, where: str) -> int:
    if value is None or value == "":
        return 1
    try:
        n = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise SignalError(f"{where}: events {value!r} is not a whole number") from None
    if n < 0 or isinstance(value, bool | float):
        raise SignalError(f"{where}: events {value!r} is not a count")
    return n


def from_jsonl(lines: Iterable[str], name: str, counts: Counter[str]) -> None:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{n}"
        try:
            row = json.loads(line)
        except ValueError:
            raise SignalError(f"{where}: not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("user_id"), str | int):
            raise SignalError(f"{where}: expected an object with a user_id")
        counts[str(row["user_id"])] += _events(row.get("events"), where)


def from_csv(lines: Iterable[str], name: str, counts: Counter[str]) -> None:
    reader = csv.DictReader(lines)
    if reader.fieldnames is None or "user_id" not in reader.fieldnames:
        raise SignalError(f"{name}:1: expected a header with a user_id column")
    for row in reader:
        where = f"{name}:{reader.line_num}"
        if not row.get("user_id"):
            raise SignalError(f"{where}: no user_id")
        counts[row["user_id"]] += _events(row.get("events"), where)


READERS = {"jsonl": from_jsonl, "csv": from_csv}
