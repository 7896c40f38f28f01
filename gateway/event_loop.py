"""The event loop a worker runs on."""

from __future__ import annotations

import asyncio

from gateway.settings import SettingsError


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """`auto` takes uvloop when it is installed; `uvloop` insists on it."""
    if choice == "asyncio":
        return asyncio.new_event_loop()
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SettingsError("GATEWAY_EVENT_LOOP=uvloop, but uvloop is not installed") from None
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
