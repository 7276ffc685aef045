"""What every source produces: one event per key operation, or per resolved reply."""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    """An operation on `key`. A source that sees requests before replies sends the call first and
    the outcome later (`call=False, hit=True`); the watch stream knows both at once."""

    key: str
    call: bool = True
    hit: bool = False
    miss: bool = False
    set: bool = False
    read: int = 0  # value bytes sent to the client (hits)
    written: int = 0  # value bytes stored (sets)
    server: str = ""  # the memcached it was seen on (watch mode with several --server)
