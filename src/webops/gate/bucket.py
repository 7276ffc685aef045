"""The sticky rollout bucket of a user id, exactly as the VMOD's `gate.bucket` computes it."""

from __future__ import annotations

import hashlib


def bucket(user_id: str, salt: str = "") -> int:
    """0 to 99: the first 8 bytes of SHA-256(salt ":" user_id), big-endian, modulo 100. A salt
    per feature keeps one feature's first 10 % from being every feature's first 10 %."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100
