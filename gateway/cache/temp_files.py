"""Temp files for fills, created ahead of need and off the event loop.

Creating a file costs a few hundred microseconds on some disks (journalled metadata, virtual
block devices), all of it on the event loop and ahead of a miss's first byte. Files made in a
worker thread beforehand take that out of both. They are made in batches: a worker thread
woken for every miss woke just as that miss's first byte was due, and took the interpreter
lock from the event loop each time it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from gateway.cache.store import DiskStore


class TempFiles:
    def __init__(self, store: DiskStore, ahead: int = 16, low: int = 4) -> None:
        """Keeps up to `ahead` files ready; a take that leaves fewer than `low` starts one
        worker-thread call that makes the pool full again."""
        self._store = store
        self._ahead = ahead
        self._low = min(low, ahead)
        self._ready: list[tuple[Path, int]] = []
        self._refilling: asyncio.Task[None] | None = None
        self._making: list[Path] = []
        self._closed = False

    def take(self) -> tuple[Path, int | None]:
        """A new temp file's path, and its open descriptor when one was made ahead (else the
        caller creates the file, and meets any disk error itself)."""
        ready = self._ready.pop() if self._ready else (self._store.new_temp(), None)
        self._refill()
        return ready

    def spares(self) -> frozenset[Path]:
        """The files made ahead, or being made, and not yet taken (empty; every other temp
        file is a fill's)."""
        return frozenset([*(path for path, _ in self._ready), *self._making])

    async def close(self) -> None:
        self._closed = True
        if self._refilling is not None:
            with contextlib.suppress(Exception):
                await self._refilling
        for path, fd in self._ready:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
        self._ready.clear()

    def _refill(self) -> None:
        if self._closed or self._refilling is not None or len(self._ready) >= self._low:
            return
        self._refilling = asyncio.get_running_loop().create_task(self._make())

    async def _make(self) -> None:
        self._making = [self._store.new_temp() for _ in range(self._ahead - len(self._ready))]
        try:
            made = await asyncio.to_thread(_create_all, self._making)
        finally:
            self._making = []
            self._refilling = None
        if self._closed:
            for path, fd in made:
                os.close(fd)
                path.unlink(missing_ok=True)
            return
        self._ready += made


def _create_all(paths: list[Path]) -> list[tuple[Path, int]]:
    """Each of `paths` created and open; stops at the first the disk refuses (a full or
    read-only disk: fills then create, and fail, on their own)."""
    made = []
    for path in paths:
        try:
            made.append((path, os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)))
        except OSError:
            break
    return made
