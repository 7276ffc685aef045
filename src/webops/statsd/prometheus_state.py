"""/metrics' totals that survive a restart (`prometheus.stateFile`).

/metrics exposes counters, timers' `_sum`/`_count` and histogram buckets as totals since start
(prometheus.py). Without this file a restart loses to Prometheus every count flushed after its
last scrape (the final flush's included), and the new process's totals start from zero: a counter
reset, missed entirely when the new total soon passes the old one. With it, each flush's totals are
saved (persist.write_private: temporary file, fsync, rename, mode 0600) and read back at start, so
the new process goes on from the old one's last flush.

The file is JSON, versioned, one object per metric kind that keeps totals:

    {"version": 1,
     "counters": {"<key>": total},
     "timers": {"<key>": {"sum": s, "count": n,
                          "histogram": {"bounds": [...], "cumulative": [...], "sum": s, "count": n}}}}

Reading is forgiving: a file that cannot be parsed or has another version is set aside
(`<file>.bad`) with one log line, an entry that is not finite numbers is skipped and counted; the
daemon always starts. One daemon per file: an advisory lock beside it (`<file>.lock`, as the
store's), released by the kernel when the process ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import math
import os
import stat
from collections.abc import Mapping
from typing import IO, Any

from ..common.config import ConfigError
from ..common.ratelimit import RateLimitedLog
from .persist import write_private
from .prometheus import Histogram, TimerKept

log = logging.getLogger("webops.statsd")

VERSION = 1

Kept = dict[str, dict[str, Any]]  # PrometheusView.kept: per kind's table, key -> what it keeps


def _finite(v: Any) -> bool:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # a 400-digit integer
        return False


def _histogram_json(h: Histogram) -> dict[str, Any]:
    return {"bounds": list(h.bounds), "cumulative": list(h.cumulative), "sum": h.total, "count": h.count}


def dump(kept: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The file's bytes for `kept` (non-finite totals, which Prometheus would refuse anyway, left out)."""
    counters = {k: v for k, v in kept.get("counters", {}).items() if _finite(v)}
    timers = {}
    for key, t in kept.get("timers", {}).items():
        entry: dict[str, Any] = {"sum": t.total, "count": t.count}
        if t.histogram is not None:
            entry["histogram"] = _histogram_json(t.histogram)
        timers[key] = entry
    data = {"version": VERSION, "counters": counters, "timers": timers}
    return json.dumps(data, separators=(",", ":"), allow_nan=False, default=_refuse).encode()


def _refuse(v: Any) -> Any:
    raise TypeError(f"not JSON: {v!r}")


def _histogram(v: Any) -> Histogram | None:
    if not isinstance(v, dict):
        raise ValueError("histogram")
    bounds, cumulative = v.get("bounds"), v.get("cumulative")
    if not (isinstance(bounds, list) and isinstance(cumulative, list) and len(bounds) == len(cumulative)):
        raise ValueError("histogram")
    numbers = [*bounds, *cumulative, v.get("sum"), v.get("count")]
    if not all(_finite(x) for x in numbers) or any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ValueError("histogram")
    # cumulative counts: from 0, never going down, never past the count (the +Inf bucket)
    if any(a > b for a, b in itertools.pairwise([0, *cumulative, v["count"]])):
        raise ValueError("histogram")
    return Histogram(tuple(map(float, bounds)), tuple(map(float, cumulative)), v["sum"], v["count"])


def _timer(v: Any) -> TimerKept:
    if not (isinstance(v, dict) and _finite(v.get("sum")) and _finite(v.get("count"))):
        raise ValueError("timer")
    h = v.get("histogram")
    return TimerKept(v["sum"], v["count"], None if h is None else _histogram(h))


def parse(text: str | bytes) -> tuple[Kept, int]:
    """The kept totals in a file's text, and how many entries were skipped (not finite numbers, a
    histogram whose bounds do not go up...). ValueError: not this format (garbage, truncated,
    another version)."""
    data = json.loads(text)
    if not isinstance(data, dict) or type(data.get("version")) is not int or data["version"] != VERSION:
        version = data.get("version") if isinstance(data, dict) else None
        raise ValueError(f"not a version {VERSION} state file (version {version!r})")
    counters, timers, skipped = {}, {}, 0
    raw_counters, raw_timers = data.get("counters", {}), data.get("timers", {})
    if not isinstance(raw_counters, dict) or not isinstance(raw_timers, dict):
        raise ValueError("counters and timers must be objects")
    for k, v in raw_counters.items():
        if _finite(v) and v >= 0:
            counters[k] = v
        else:
            skipped += 1
    for k, v in raw_timers.items():
        try:
            timers[k] = _timer(v)
        except (ValueError, OverflowError):
            skipped += 1
    return {"counters": counters, "timers": timers}, skipped


class StateFile:
    """The daemon's state file: locked for this process at start, read once, written each flush."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors = RateLimitedLog(log, "prometheus.stateFile messages")
        self.lock = _lock(path)

    def load(self) -> Kept:
        """What the last process saved; {} when there is none or it cannot be used (said once)."""
        try:
            text = _read(self.path)
        except FileNotFoundError:
            return {}
        except OSError as e:
            log.error("prometheus.stateFile: cannot read %s (%s); /metrics starts from zero", self.path, e)
            return {}
        try:
            kept, skipped = parse(text)
        except (ValueError, RecursionError) as e:
            aside = f"{self.path}.bad"
            try:
                os.replace(self.path, aside)
                where = f"set aside as {aside}"
            except OSError as moved:
                where = f"left in place ({moved.strerror})"
            log.error(
                "prometheus.stateFile: %s is not usable (%s), %s; /metrics starts from zero",
                self.path,
                e,
                where,
            )
            return {}
        if skipped:
            log.error(
                "prometheus.stateFile: %d entries of %s are not valid totals; skipped", skipped, self.path
            )
        log.info(
            "prometheus.stateFile: totals of %d counters and %d timers restored from %s",
            len(kept["counters"]),
            len(kept["timers"]),
            self.path,
        )
        return kept

    def save(self, kept: Mapping[str, Mapping[str, Any]]) -> None:
        """Write `kept`; a failure (read-only directory, full disk) is logged at a bounded rate
        and the daemon goes on: the next flush tries again."""
        try:
            write_private(self.path, dump(kept))
        except OSError as e:
            self.errors.warning("prometheus.stateFile: cannot write %s: %s", self.path, e)
        self.errors.tick()

    def close(self) -> None:
        if self.lock is not None:
            self.lock.close()


def _read(path: str) -> bytes:
    """The file's bytes; OSError for what is not a regular file (a FIFO would wait for a writer
    for ever, /dev/zero be read until memory runs out)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"not a regular file: {path}")
        return f.read()


def _lock(path: str) -> IO[str] | None:
    """`path` for this daemon alone: two daemons writing one file would each overwrite the
    other's totals, and the one started next would take the wrong ones. ConfigError when another
    process holds it (exit 2 at start, as a port in use)."""
    try:
        lock = open(f"{path}.lock", "a+", encoding="utf-8")  # noqa: SIM115 (held open)
    except OSError as e:
        # a read-only directory: the daemon runs, saving fails (logged at each try, rate-limited)
        log.error("prometheus.stateFile: cannot lock %s.lock: %s", path, e)
        return None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise ConfigError(
            f"prometheus.stateFile: {path} is in use by another webops statsd (pid {holder})"
        ) from None
    with contextlib.suppress(OSError):
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
    return lock
