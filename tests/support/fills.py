"""Reading a fill the way a client's response does."""

from __future__ import annotations

import asyncio

from gateway.cache.fill import Fill


async def read_all(fill: Fill, offset: int = 0, pause: float = 0.0) -> bytes:
    """Every byte from `offset` to the end, pausing `pause` seconds after each chunk."""
    fill.attach()
    try:
        parts = []
        async for chunk in fill.read_from(offset):
            parts.append(bytes(chunk))
            if pause:
                await asyncio.sleep(pause)
        return b"".join(parts)
    finally:
        fill.detach()
