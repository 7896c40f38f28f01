"""A bounded RAM tier in front of the disk cache, for the objects everyone is watching.

On loopback and fast links, answering from a `bytes` object beats sendfile in aiohttp (no
executor hop, no file open per request). Admission is by popularity: an object enters on its
second hit within the tier's memory of recent hits, so one-off requests never push the live
edge out. Evictions from the disk cache are mirrored here.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from cachetools import LRUCache


@dataclass(frozen=True, slots=True)
class InMemory:
    body: bytes | memoryview
    # The validators of the file it came from (aiohttp's FileResponse format), so a client
    # that got an ETag from one tier can revalidate against another.
    etag: str
    last_modified: str


class MemoryTier:
    def __init__(self, max_bytes: int, max_object_bytes: int = 16 * 1024**2) -> None:
        self.max_bytes = max_bytes
        self.max_object_bytes = min(max_object_bytes, max_bytes)
        self.bytes = 0
        self._items: OrderedDict[str, InMemory] = OrderedDict()
        self._seen: LRUCache[str, int] = LRUCache(maxsize=65_536)

    def get(self, name: str) -> InMemory | None:
        item = self._items.get(name)
        if item is not None:
            self._items.move_to_end(name)
        return item

    def offer(self, name: str, source: InMemory) -> InMemory | None:
        """Count a hit served from `source` (a mapped file); on the second, keep a copy."""
        size = len(source.body)
        if self.max_bytes <= 0 or size > self.max_object_bytes:
            return None
        hits = self._seen.get(name, 0) + 1
        self._seen[name] = hits
        if hits < 2:
            return None
        # From the page cache after the first hit: a memory copy, no disk read.
        item = InMemory(bytes(source.body), source.etag, source.last_modified)
        self._items[name] = item
        self.bytes += size
        while self.bytes > self.max_bytes and self._items:
            _, dropped = self._items.popitem(last=False)
            self.bytes -= len(dropped.body)
        return item

    def discard(self, names: list[str]) -> None:
        for name in names:
            item = self._items.pop(name, None)
            if item is not None:
                self.bytes -= len(item.body)
            self._seen.pop(name, None)
