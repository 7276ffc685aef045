"""Gauges that survive a restart (`persistGauges`), which users of every statsd ask for (Etsy #501).

Written atomically (temporary file, fsync, rename) at every flush and at shutdown, so a crash
leaves either the previous file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
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
    gauges = {k: float(v) for k, v in data.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    log.info("persistGauges: %d gauges restored from %s", len(gauges), path)
    return gauges


def save_gauges(path: str, gauges: dict[str, float]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(gauges, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
