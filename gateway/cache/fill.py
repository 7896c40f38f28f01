"""One upstream body being written to a temp file while any number of clients read it.

Readers follow the growing file with `pread`, so every waiting client gets bytes as they
arrive, and the download continues for the others (and for the cache) when one leaves. A
chunk reaches the readers before the disk: `append` hands it over in memory and `flush`
writes it once they had their turn, so no client's byte waits for a page-cache write. If
the disk refuses a write, the rest of the body is kept in memory for the readers already
attached and the object is simply not cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.http_client import BodyChunk

log = logging.getLogger("gateway.cache")

READ_CHUNK = 256 * 1024
# The newest upstream chunks stay in memory too: readers keeping up with the fill (the usual
# case, and all of them when hundreds wait on one segment) share those bytes objects instead
# of each copying them back out of the file.
RECENT_BYTES = 1024 * 1024


class Fill:
    """A temp file that grows; `done` once the body is complete (or `error` is set)."""

    def __init__(self, temp: Path, readers: int = 0, expected: int | None = None) -> None:
        """`temp` is created at the first `flush()`, once the readers had the first chunk:
        creating a file costs from a few microseconds to most of a millisecond, and no
        client's first byte should wait for it. `expected`: the body's length, when known;
        its last byte reaches the readers only at `finish()`, so a client that has every
        byte and asks again at once finds the entry committed, not this fill. Only the last
        byte: a small object arrives in one chunk, and holding all of it made its first byte
        wait for the commit (a 20 KB object's time to first byte was 1.9 ms, most of it
        creating the entry's files)."""
        self.temp = temp
        self.written = 0
        self._expected = expected
        self._readable = 0  # readers get bytes up to here: `written`, less the held-back byte
        self.done = False
        self.error: GatewayError | None = None
        self.disk_failed: OSError | None = None
        self._fd: int | None = None
        self._flushed = 0  # bytes in the temp file
        self._pending: list[BodyChunk] = []  # appended since, in order
        self._readers = readers
        self._spill: list[BodyChunk] = []
        self._spill_start = 0
        self._recent: deque[tuple[int, BodyChunk]] = deque()  # (offset, chunk), oldest first
        self._recent_bytes = 0
        self._changed = asyncio.Event()

    @property
    def on_disk(self) -> bool:
        """True while the disk took every byte flushed so far (the object can still be cached)."""
        return self.disk_failed is None

    def append(self, data: BodyChunk) -> None:
        """Give `data` to the readers now (the expected body's last byte: at `finish()`); it
        reaches the temp file at the next `flush()` (or when a reader needs it from there)."""
        if self.disk_failed is None:
            self._pending.append(data)
            self._remember(data)
        else:
            self._spill.append(data)
        self.written += len(data)
        self._readable = self.written - 1 if self.complete else self.written
        self._wake()

    @property
    def complete(self) -> bool:
        """Whether the expected length has arrived (never, when it is not known)."""
        return self._expected is not None and self.written >= self._expected

    def flush(self) -> None:
        """Write what was appended since the last flush, creating the temp file on the first
        (a short write is retried; a failed one, or a file the disk refuses, keeps the rest of
        the body in memory, for the readers only)."""
        if self.disk_failed is not None or self.done:
            return
        pending, self._pending = self._pending, []
        if self._fd is None:
            try:
                self._fd = os.open(self.temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError as exc:
                self.disk_failed = exc
                self._spill = pending
                return
        if not pending:
            return
        view = memoryview(b"".join(pending) if len(pending) > 1 else pending[0])
        try:
            while view:
                # Page-cache writes of a network chunk or two cost less than a thread hop.
                done = os.pwrite(self._fd, view, self._flushed)
                if done == 0:
                    raise OSError(errno.ENOSPC, "no space left for the fill")
                self._flushed += done
                view = view[done:]
        except OSError as exc:
            self.disk_failed = exc
            self._spill_start = self._flushed
            self._spill = [bytes(view)]

    def _remember(self, data: BodyChunk) -> None:
        recent = self._recent
        recent.append((self.written, data))
        self._recent_bytes += len(data)
        while self._recent_bytes - len(recent[0][1]) >= RECENT_BYTES:
            self._recent_bytes -= len(recent.popleft()[1])

    def finish(self, error: GatewayError | None = None) -> None:
        if error is None:
            self.flush()
        self._readable = self.written
        self.done = True
        self.error = error
        self._wake()
        self._maybe_close()

    def discard_temp(self) -> None:
        with contextlib.suppress(OSError):
            self.temp.unlink()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _maybe_close(self) -> None:
        if self.done and self._readers == 0:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._spill = []
            self._recent.clear()

    @property
    def readers(self) -> int:
        return self._readers

    def attach(self) -> None:
        """Reserve the bytes for one more reader (call before the first await)."""
        self._readers += 1

    def detach(self) -> None:
        self._readers -= 1
        self._maybe_close()

    async def wait(self) -> None:
        """Until the body is complete or failed, without reading it (prefetch needs no bytes)."""
        while not self.done:
            await self._changed.wait()

    async def read_from(self, offset: int = 0) -> AsyncIterator[bytes | memoryview]:
        """Yield the body from `offset` as it grows; raise the fill's error if it fails.

        The caller must have called `attach()` and must call `detach()` afterwards.
        """
        while True:
            if offset < self._readable:
                chunk = self._read(offset, min(READ_CHUNK, self._readable - offset))
                offset += len(chunk)
                yield chunk
            elif self.done:
                if self.error is not None:
                    raise self.error
                return
            else:
                await self._changed.wait()

    def _read(self, offset: int, size: int) -> bytes | memoryview:
        if self.disk_failed is not None and offset >= self._spill_start:
            return self._read_spill(offset, size)
        recent = self._recent
        if recent and offset >= recent[0][0]:
            for start, chunk in reversed(recent):
                if offset >= start:
                    if offset < start + len(chunk):
                        skip = offset - start
                        end = skip + size
                        if skip == 0 and end >= len(chunk):
                            return chunk
                        return memoryview(chunk)[skip:end]
                    break
        if self._pending and offset >= self._flushed:
            # Further behind than the in-memory window and not yet on disk (a writer that
            # appended more than the window between flushes): write it now, then read it.
            self.flush()
            return self._read(offset, size)
        assert self._fd is not None
        limit = self._spill_start if self.disk_failed is not None else self._flushed
        data = os.pread(self._fd, min(size, limit - offset), offset)
        if not data:
            raise GatewayError("cache file vanished during a fill", 502)
        return data

    def _read_spill(self, offset: int, size: int) -> BodyChunk:
        position = self._spill_start
        for piece in self._spill:
            if offset < position + len(piece):
                start = offset - position
                return piece[start : start + size]
            position += len(piece)
        raise GatewayError("fill buffer out of range", 502)


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)
