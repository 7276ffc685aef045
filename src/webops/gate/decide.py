"""`webops gate check USER_ID`: what the gate decides for a user and why, from the live file and
the rollout: the VCL's steps, one line each."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass

from .bucket import bucket
from .config import Config
from .publish import open_readonly


@dataclass(frozen=True)
class Decision:
    decision: str  # personalized, or generic: <why>
    steps: list[str]


def decide(user_id: str, cfg: Config) -> Decision:
    steps = []
    if not re.search(cfg.id_pattern, user_id):
        steps.append(f"id {user_id!r} is not well-formed ({cfg.id_pattern}): anonymous")
        return Decision("generic: anonymous", steps)
    steps.append(f"id {user_id!r} is well-formed")
    has, why = _lookup(user_id, cfg)
    steps.append(why)
    if not has:
        return Decision("generic: no profile", steps)
    b = bucket(user_id, cfg.salt)
    inside = b < cfg.rollout
    steps.append(
        f"rollout bucket {b} (salt {cfg.salt!r}) is {'inside' if inside else 'outside'} "
        f"the rollout of {cfg.rollout}% (buckets 0-{cfg.rollout - 1})"
        if cfg.rollout
        else f"rollout bucket {b}: the rollout is 0%"
    )
    if not inside:
        return Decision(f"generic: outside the rollout ({cfg.rollout}%)", steps)
    return Decision("personalized", steps)


def _lookup(user_id: str, cfg: Config) -> tuple[bool, str]:
    if not cfg.db.exists():
        return False, f"{cfg.db} is missing: nobody has a profile"
    try:
        with closing(open_readonly(cfg.db)) as db:
            row = db.execute("SELECT has_profile FROM user_profiles WHERE user_id = ?", (user_id,)).fetchone()
            try:  # what webops gate build records; another publisher's file may lack it
                meta = dict(db.execute("SELECT key, value FROM webops_gate").fetchall())
            except sqlite3.Error:
                meta = {}
    except sqlite3.Error as e:
        return False, f"{cfg.db} cannot be read ({e}): nobody has a profile"
    published = f" (published {meta['published_at']})" if "published_at" in meta else ""
    if row is None:
        return False, f"not in {cfg.db}{published}: no profile"
    if not row[0]:
        return False, f"in {cfg.db}{published} below min_events {meta.get('min_events', '?')}: no profile"
    return True, f"has a profile in {cfg.db}{published}"
