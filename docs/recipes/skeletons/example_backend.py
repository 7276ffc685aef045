"""A flush backend: every value of every flush appended to a file as `timestamp<TAB>path<TAB>value`.

Copy this file to src/webops/statsd/backends/tsv.py: backends/__init__.py imports every module of
the package, @register puts the class in the registry under `name`, and its CONFIG_KEYS join the
configuration schema (validated, printed by --check-config, checked against docs/statsd.md's key
table). Nothing else in the daemon needs to change. See docs/recipes/backend.md.

The absolute imports below work from anywhere (the recipe's test loads this file by its path);
inside the package the other backends write them relative (`from ..snapshot import Snapshot`).
"""

from __future__ import annotations

import os
from typing import ClassVar

from webops.statsd.backends.base import Backend, register
from webops.statsd.backends.naming import GraphiteNaming
from webops.statsd.jsfmt import number
from webops.statsd.snapshot import Snapshot
from webops.statsd.validate import Key, boolean, section, string

# The `tsv: {...}` section. Each key is (default, check, help): the check turns what the config
# file says into the value to use or raises ValueError with the sentence the user reads, and
# the help is what --check-config prints. Every key also needs a row in docs/statsd.md's table
# (tests/test_readme.py fails until it has one).
TSV_KEYS: dict[str, Key] = {
    "path": Key("statsd-flush.tsv", string, "file every flush is appended to"),
    "fsync": Key(False, boolean, "fsync after each flush: survives a power cut, costs a disk round trip"),
}


@register
class TsvBackend(Backend):
    """Named `tsv`, `./backends/tsv` or `Tsv` in `backends` (config.py's Schema.backend_name)."""

    name = "tsv"
    CONFIG_KEYS: ClassVar[dict[str, Key]] = {
        "tsv": Key({}, section(TSV_KEYS), "tsv backend: {path, fsync}"),
    }
    # A section listed here is what config.section("tsv") fills in with the defaults above.
    SECTIONS: ClassVar[dict[str, dict[str, Key]]] = {"tsv": TSV_KEYS}

    def __init__(self, config, startup_time: float) -> None:
        super().__init__(config, startup_time)
        settings = config.section("tsv")
        self.fsync: bool = settings["fsync"]
        # Etsy's metric names, whatever the namespace options say, for every kind that has a
        # GRAPHITE entry: a new metric kind shows up here without touching this backend.
        self.naming = GraphiteNaming(config)
        # Opened here, not at the first flush: a path that cannot be opened is an OSError from
        # the constructor, which stops the start (exit 2, with the reason) or makes a reload keep
        # the running backends, instead of failing every flush later.
        self.fd = os.open(settings["path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lines_written = 0

    def flush(self, snapshot: Snapshot) -> None:
        """Runs in this backend's own thread (base.BackendRunner), so it may block: a slow disk
        delays this backend only. It must not change `snapshot`: every backend shares it. An
        exception is logged and stamps `last_exception`; the next flush is still delivered."""
        ts = snapshot.timestamp
        lines = [f"{ts}\t{path}\t{number(value)}\n" for path, value in self.naming.metrics(snapshot)]
        view = memoryview("".join(lines).encode())
        while view:  # os.write may write less than asked
            view = view[os.write(self.fd, view) :]
        if self.fsync:
            os.fsync(self.fd)
        self.lines_written += len(lines)

    def status(self) -> dict[str, float]:
        """The console's `stats` shows these as `tsv.<stat>` (and /metrics exports them)."""
        return {**super().status(), "lines_written": self.lines_written}

    def close(self) -> None:
        """Called once, after the last flush this backend was given (the shutdown flush too)."""
        os.close(self.fd)
