"""asyncio helpers for the small TCP servers the tools run (consoles, HTTP endpoints)."""

from __future__ import annotations

import asyncio
import contextlib


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a connection, ignoring a peer that already went away."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
