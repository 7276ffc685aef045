"""Append every flush to a file (Net::Statsd::Server's File backend), logrotate-friendly.

Formats: `graphite` (the exact lines carbon would get) or `json` (one object per flush).
When logrotate moves or deletes the file, the next flush notices (inode changed) and reopens
the path, so no `copytruncate` or signal is needed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, ClassVar

from ..kinds import outputs
from ..snapshot import Snapshot
from ..validate import Key, choice, section, string
from .base import Backend, register
from .naming import GraphiteNaming

# The `json` format's entries per kind, by the kind's table name: (raw table, summary) -> fields.
# Etsy's names, the summaries only (a timer's samples and a set's members would make every line
# as large as the traffic).
JSON_FIELDS: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "counters": lambda table, summary: {"counters": table, "counter_rates": summary},
    "timers": lambda table, summary: {"timer_data": summary},
    "gauges": lambda table, summary: {"gauges": table},
    "sets": lambda table, summary: {"sets": summary},
}

FILE_KEYS: dict[str, Key] = {
    "path": Key("statsd-flush.log", string, "file to append every flush to"),
    "format": Key("graphite", choice("graphite", "json"), "graphite plaintext lines or JSON lines"),
}


@register
class FileBackend(Backend):
    name = "file"
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {
        "file": Key({}, section(FILE_KEYS), "file backend (webops / Net::Statsd::Server)"),
    }
    SECTIONS: ClassVar[dict[str, dict[str, Key]]] = {"file": FILE_KEYS}

    def __init__(self, config, startup_time: float) -> None:
        super().__init__(config, startup_time)
        section = config.section("file")
        self.path = section["path"]
        self.format = section["format"]
        self.naming = GraphiteNaming(config)
        self.fd: int | None = None
        self.inode: tuple[int, int] | None = None
        self.flush_length = 0

    def _open(self) -> int:
        """The fd to write to, reopening the path when it no longer names our open file."""
        try:
            st = os.stat(self.path)
            current = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self.fd is not None and current == self.inode:
            return self.fd
        if self.fd is not None:
            os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        st = os.fstat(self.fd)
        self.inode = (st.st_dev, st.st_ino)
        return self.fd

    def render(self, snap: Snapshot) -> str:
        if self.format == "graphite":
            return self.naming.plaintext(snap)
        record: dict[str, Any] = {"timestamp": snap.timestamp}
        for kind, fields in outputs("the file backend", JSON_FIELDS):
            record.update(fields(snap.tables[kind.table], snap.summaries[kind.table]))
        record["statsd_metrics"] = {**snap.statsd_metrics, "numStats": snap.num_stats}
        return json.dumps(record, separators=(",", ":")) + "\n"

    def flush(self, snapshot: Snapshot) -> None:
        data = self.render(snapshot).encode()
        fd = self._open()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        self.flush_length = len(data)

    def status(self) -> dict[str, float]:
        return {**super().status(), "flush_length": self.flush_length}

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
