"""Flushes the store has not written yet, kept on disk until it has: one file per flush.

A flush that reaches the store while it is still writing an earlier one, or while it cannot
write at all (a full disk, a file locked by a backup, a directory it may not write), is put here
before it waits in memory. So `kill -9` or a shutdown that runs out of time loses none of them:
the next start writes them, before anything new. Each file is the pickled snapshot, written to a
temporary name and renamed, so a file is whole or absent; the store records the sequence number
of the last spooled flush it wrote in the same transaction (db.Store.journal_seq), so a flush is
never written twice, whatever moment a crash picks.

The directory is created private (0700), files 0600: pickle must only ever read what this
daemon wrote.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

from ..snapshot import Snapshot

log = logging.getLogger("webops.statsd")
SUFFIX = ".flush"


class Spool:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:012d}{SUFFIX}"

    def seqs(self) -> list[int]:
        """The spooled flushes, oldest first (temporary files of a write cut short are removed)."""
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return []
        out = []
        for entry in entries:
            name = entry.name
            if name.endswith(SUFFIX) and name[: -len(SUFFIX)].isdigit():
                out.append(int(name[: -len(SUFFIX)]))
            elif name.endswith(".tmp"):
                Path(entry.path).unlink(missing_ok=True)
        return sorted(out)

    def put(self, seq: int, snapshot: Snapshot) -> None:
        """Raises OSError (a full disk, a read-only directory): the flush then waits in memory only."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(seq)
        tmp = path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                pickle.dump(snapshot, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def load(self, seqs: list[int]) -> Iterator[tuple[int, Snapshot | None]]:
        """Each spooled flush; None for one that cannot be read (set aside as `.damaged`)."""
        for seq in seqs:
            path = self._path(seq)
            try:
                with open(path, "rb") as f:
                    snapshot = pickle.load(f)
                if not isinstance(snapshot, Snapshot):
                    raise TypeError(f"not a flush: {type(snapshot).__name__}")
            except Exception as e:  # a damaged file must not stop the store: it is kept aside
                log.error("store: spooled flush %s cannot be read (%s): set aside as .damaged", path, e)
                with contextlib.suppress(OSError):
                    path.replace(path.with_suffix(".damaged"))
                yield seq, None
                continue
            yield seq, snapshot

    def drop(self, seqs: list[int]) -> None:
        for seq in seqs:
            self._path(seq).unlink(missing_ok=True)
