"""Gauges that survive a restart (`persistGauges`), which users of every statsd ask for (Etsy #501).

Written atomically (temporary file, fsync, rename) at every flush and at shutdown, so a crash
leaves either the previous file or the new one, never half of one. The file is created with mode
0600 (metric names can tell a lot), never through the umask. Reading is forgiving: an entry that is
not a finite number is skipped and said, and never stops the daemon from starting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path

log = logging.getLogger("webops.statsd")


def load_gauges(path: str) -> dict[str, float]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.error("persistGauges: cannot read %s (%s); starting without saved gauges", path, e)
        return {}
    if not isinstance(data, dict):
        log.error("persistGauges: %s does not hold an object; starting without saved gauges", path)
        return {}
    gauges: dict[str, float] = {}
    skipped = 0
    for k, v in data.items():
        try:
            value = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
        except OverflowError:  # a 400-digit integer
            value = math.nan
        if math.isfinite(value):
            gauges[k] = value
        else:
            skipped += 1
    if skipped:
        log.error("persistGauges: %d entries of %s are not finite numbers; skipped", skipped, path)
    log.info("persistGauges: %d gauges restored from %s", len(gauges), path)
    return gauges


def save_gauges(path: str, gauges: dict[str, float]) -> None:
    text = json.dumps({k: v for k, v in gauges.items() if math.isfinite(v)}, separators=(",", ":"))
    write_private(path, text.encode())


def write_private(path: str, data: bytes) -> None:
    """Replace `path` atomically with `data`, mode 0600 from the moment the file exists."""
    tmp = f"{path}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # left by a crash, maybe with another mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:  # a full disk: no partial file left holding the space the next write needs
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
