"""CPU, memory and I/O of each backend process, when the server runs on this host (as
pg_activity shows them): read from /proc through psutil, rates between two refreshes."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil


@dataclass
class Usage:
    cpu: float | None  # percent of one core since the last refresh
    rss: int | None  # bytes
    read_per_s: float | None  # bytes/s from storage since the last refresh
    write_per_s: float | None


def is_local(backend_pid: int) -> bool:
    """Is our own backend (pg_backend_pid()) a postgres process of this host? Then the server
    is local and its backends' pids are this host's."""
    try:
        return "postgres" in psutil.Process(backend_pid).name()
    except (psutil.Error, OSError):
        return False


class Sampler:
    """Keeps the previous counters per pid, so each sample gives rates since the last one."""

    def __init__(self) -> None:
        self.previous: dict[int, tuple[float, float, int | None, int | None, int]] = {}

    def sample(self, pids: list[int]) -> dict[int, Usage]:
        now = time.monotonic()
        current: dict[int, tuple[float, float, int | None, int | None, int]] = {}
        out: dict[int, Usage] = {}
        for pid in pids:
            try:
                p = psutil.Process(pid)
                with p.oneshot():
                    times = p.cpu_times()
                    rss = p.memory_info().rss
                    read: int | None = None
                    write: int | None = None
                    try:
                        io = p.io_counters()
                        read, write = io.read_bytes, io.write_bytes
                    except (psutil.AccessDenied, AttributeError):
                        pass  # another user's process: no I/O figures
            except (psutil.Error, OSError):
                continue
            cpu = times.user + times.system
            current[pid] = (now, cpu, read, write, rss)
            before = self.previous.get(pid)
            if before is None or now <= before[0]:
                out[pid] = Usage(None, rss, None, None)
                continue
            elapsed = now - before[0]
            out[pid] = Usage(
                100 * (cpu - before[1]) / elapsed,
                rss,
                None if read is None or before[2] is None else (read - before[2]) / elapsed,
                None if write is None or before[3] is None else (write - before[3]) / elapsed,
            )
        self.previous = current
        return out
