"""Temp files for fills, created ahead of need and off the event loop.

Creating a file costs a few hundred microseconds on some disks (journalled metadata, virtual
block devices), all of it on the event loop and ahead of a miss's first byte. A few files
made in a worker thread beforehand take that out of both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from gateway.cache.store import DiskStore


class TempFiles:
    def __init__(self, store: DiskStore, ahead: int = 4) -> None:
        self._store = store
        self._ahead = ahead
        self._ready: list[tuple[Path, int]] = []
        self._refilling: asyncio.Task[None] | None = None
        self._making: Path | None = None
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
        making = () if self._making is None else (self._making,)
        return frozenset([*(path for path, _ in self._ready), *making])

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
        if self._closed or self._refilling is not None or len(self._ready) >= self._ahead:
            return
        self._refilling = asyncio.get_running_loop().create_task(self._make())

    async def _make(self) -> None:
        try:
            while not self._closed and len(self._ready) < self._ahead:
                path = self._making = self._store.new_temp()
                try:
                    fd = await asyncio.to_thread(_create, path)
                except OSError:
                    return  # a full or read-only disk: fills create (and fail) on their own
                finally:
                    self._making = None
                if self._closed:
                    os.close(fd)
                    path.unlink(missing_ok=True)
                    return
                self._ready.append((path, fd))
        finally:
            self._refilling = None


def _create(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
