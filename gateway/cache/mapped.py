"""Read-only maps of committed cache files, so a disk hit is written from the page cache.

Measured on loopback with 1.1 MB segments, a response body that is a `memoryview` of an
`mmap` goes out as fast as one held in a `bytes` object, and twice as fast as aiohttp's
sendfile path (which stats and opens the file in an executor on every request). A map costs
no file descriptor once made, and its pages are the kernel's page cache, shared by every
worker, not memory of this process.

Committed files are never written again (a commit is a rename; eviction is an unlink), so a
map can never see its file shrink under it. A map outlives an unlink: an object evicted by
another worker is still served intact for the moment the local hot map vouches for it, as
the RAM tier does.
"""

from __future__ import annotations

import email.utils
import mmap
import os
from collections import OrderedDict
from pathlib import Path

from gateway.cache.memory import InMemory


class MappedFiles:
    def __init__(self, max_files: int) -> None:
        self.max_files = max_files
        self._maps: OrderedDict[str, InMemory] = OrderedDict()

    def get(self, name: str) -> InMemory | None:
        """The map of `name` if it is already made (no I/O)."""
        item = self._maps.get(name)
        if item is not None:
            self._maps.move_to_end(name)
        return item

    def open(self, name: str, path: Path, size: int) -> InMemory | None:
        """Map `path`, which must hold exactly `size` bytes; None if it does not (any more).
        With `max_files` 0 the map serves this hit only."""
        item = self.get(name)
        if item is not None:
            return item
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            stat = os.fstat(fd)
            if stat.st_size != size:
                return None  # replaced or cut behind our back: never serve a mismatch
            # The validators aiohttp's FileResponse sends, so a client holding an ETag from
            # any tier can revalidate against another.
            etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
            last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
            if size == 0:
                item = InMemory(b"", etag, last_modified)
            else:
                item = InMemory(
                    memoryview(mmap.mmap(fd, size, prot=mmap.PROT_READ)), etag, last_modified
                )
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        if self.max_files <= 0:
            return item
        self._maps[name] = item
        while len(self._maps) > self.max_files:
            # Never closed explicitly: a response may still be sending from it. The map goes
            # when its last view does.
            self._maps.popitem(last=False)
        return item

    def discard(self, names: list[str]) -> None:
        for name in names:
            self._maps.pop(name, None)

    def __len__(self) -> int:
        return len(self._maps)
