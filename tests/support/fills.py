"""Reading a fill the way a client's response does."""

from __future__ import annotations

import asyncio

from gateway.cache.fill import Fill


async def read_all(
    fill: Fill, offset: int = 0, pause: float = 0.0, into: bytearray | None = None
) -> bytes:
    """Every byte from `offset` to the end, pausing `pause` seconds after each chunk; `into`
    shows what has arrived so far."""
    fill.attach()
    received = bytearray() if into is None else into
    try:
        async for chunk in fill.read_from(offset):
            received += chunk
            if pause:
                await asyncio.sleep(pause)
        return bytes(received)
    finally:
        fill.detach()
