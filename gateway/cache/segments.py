"""The segment cache: disk store and index kept consistent, degrading instead of failing."""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from gateway.cache.entry import Entry
from gateway.cache.index import CacheIndex, IndexUnavailable, MemoryIndex, RedisIndex
from gateway.cache.mapped import MappedFiles
from gateway.cache.memory import InMemory, MemoryTier
from gateway.cache.store import DiskStore
from gateway.recent import LapsingMap
from gateway.settings import Settings

log = logging.getLogger("gateway.cache")

# A hit re-reads the shared index at most this often per object, and marks it used at most
# this often: the hot path stays free of Redis round trips.
_HOT_SECONDS = 2.0


class SegmentCache:
    """Looks up, admits and evicts complete objects. One per process."""

    def __init__(self, settings: Settings, index: CacheIndex | None = None) -> None:
        self.store = DiskStore(settings.cache_dir)
        self.max_bytes = settings.cache_max_bytes
        self.max_object_bytes = min(settings.cache_max_object_bytes, settings.cache_max_bytes)
        if index is None:
            index = (
                RedisIndex(
                    settings.redis_url,
                    settings.cache_max_bytes,
                    prefix=settings.redis_prefix,
                    node=settings.node_name,
                )
                if settings.redis_url
                else MemoryIndex(settings.cache_max_bytes)
            )
        self.index = index
        self._hot: LapsingMap[str, Entry] = LapsingMap(4096, _HOT_SECONDS)
        self._touched: LapsingMap[str, bool] = LapsingMap(16384, _HOT_SECONDS)
        self._degraded = False
        # Disk conditions (errno names) already logged, so a full disk is one line, not one
        # per request.
        self._disk_problems: set[str] = set()
        self.memory = MemoryTier(settings.cache_memory_bytes)
        self.mapped = MappedFiles(settings.cache_mapped_files)
        # Called with the names of evicted objects (metrics, prefetch accounting).
        self.on_evict: list[Callable[[list[str]], None]] = []

    async def start(self) -> None:
        self.store.prepare()
        await self.reconcile()

    async def close(self) -> None:
        await self.index.close()

    async def reconcile(self) -> None:
        """Index every committed object on disk that the index lacks (oldest first)."""
        found = sorted(self.store.scan(), key=lambda pair: pair[1])
        try:
            for entry, _mtime in found:
                if await self.index.get(entry.name) is None:
                    for victim in await self.index.put(entry):
                        self.store.remove(victim)
        except IndexUnavailable as exc:
            self._note_down(exc)

    def recent(self, name: str) -> Entry | None:
        """The entry if the index confirmed it within the last couple of seconds (no I/O)."""
        return self._hot.get(name)

    async def lookup(self, name: str, known: Entry | None = None) -> tuple[Entry, Path] | None:
        """The committed object `name` and its file, checked on disk. `known`: its entry as
        the index gave it a moment ago (in a claim), so it is not asked again."""
        entry = self._hot.get(name)
        if entry is None:
            if known is None:
                try:
                    known = await self.index.get(name)
                except IndexUnavailable as exc:
                    self._note_down(exc)
                    return None
                self._note_up()
                if known is None:
                    return None
            entry = self._hot[name] = known
        path = self.store.path_of(name)
        size = _size_of(path)
        if size != entry.size:
            # Evicted by another worker, cleaned or cut behind our back: a miss, never a
            # wrong body, and the entry goes so the refetch can replace it.
            self._hot.discard(name)
            self._drop_local([name])
            if size is not None:
                self.store.remove(name)
            await self._forget(name)
            return None
        if self._touched.get(name) is None:
            self._touched[name] = True
            try:
                await self.index.touch(name)
            except IndexUnavailable as exc:
                self._note_down(exc)
        return entry, path

    async def admit(self, temp: Path, entry: Entry, mtime: float | None = None) -> bool:
        """Commit a complete temp file as `entry`. Returns False if it was not cached."""
        if entry.size > self.max_object_bytes:
            self.store.discard(temp)
            return False
        try:
            # On the loop: in a worker thread the commit's file creation (0.2-1 ms on a
            # journalled disk) overlapped the next request and contended for the GIL, and
            # the cold-miss p50 came out 1 ms worse (bench/miss_ttfb.py).
            self.store.commit(temp, entry, mtime)
        except OSError as exc:
            self.disk_refused(exc)
            self.store.discard(temp)
            return False
        self._disk_ok()
        try:
            evicted = await self.index.put(entry)
        except IndexUnavailable as exc:
            # Without the index the budget cannot be enforced, so the object is not kept.
            self._note_down(exc)
            self.store.remove(entry.name)
            return False
        self._note_up()
        for victim in evicted:
            self._hot.discard(victim)
            self.store.remove(victim)
        if evicted:
            self._drop_local(evicted)
            for hook in self.on_evict:
                hook(evicted)
        return entry.name not in evicted

    def still_on_disk(self, entry: Entry) -> bool:
        """Whether the committed file is there whole (another node may have evicted it)."""
        return _size_of(self.store.text_path(entry.name)) == entry.size

    def held(self, name: str, path: Path | None = None, size: int = 0) -> InMemory | None:
        """The object in memory: the RAM tier's copy, else a map of its file (made from
        `path` when given, else only if already made). Every hit counts towards the RAM
        tier's admission."""
        item = self.memory.get(name)
        if item is not None:
            return item
        mapped = self.mapped.get(name) if path is None else self.mapped.open(name, path, size)
        if mapped is None:
            return None
        return self.memory.offer(name, mapped) or mapped

    def forget_hot(self, name: str) -> None:
        """Drop a purged object from the local maps, so it is not served a moment longer."""
        self._hot.discard(name)
        self._drop_local([name])

    def _drop_local(self, names: list[str]) -> None:
        self.memory.discard(names)
        self.mapped.discard(names)

    async def _forget(self, name: str) -> None:
        try:
            await self.index.remove(name)
        except IndexUnavailable as exc:
            self._note_down(exc)

    def disk_refused(self, exc: OSError) -> None:
        """A write into the cache directory failed: log it once per kind of failure."""
        condition = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        if condition not in self._disk_problems:
            self._disk_problems.add(condition)
            log.warning(
                "cache disk refuses writes (%s: %s): serving without caching",
                condition,
                exc.strerror or exc,
            )

    def _disk_ok(self) -> None:
        if self._disk_problems:
            self._disk_problems.clear()
            log.warning("cache disk accepts writes again")

    def _note_down(self, exc: Exception) -> None:
        if not self._degraded:
            self._degraded = True
            log.warning("cache index unavailable (%s): serving pass-through", exc)

    def _note_up(self) -> None:
        if self._degraded:
            self._degraded = False
            log.warning("cache index reachable again")

    @property
    def degraded(self) -> bool:
        return self._degraded


def new_entry(
    name: str,
    key: str,
    size: int,
    content_type: str,
    *,
    status: int = 200,
    content_range: str | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Entry:
    return Entry(
        name=name,
        key=key,
        size=size,
        content_type=content_type,
        status=status,
        content_range=content_range,
        etag=etag,
        last_modified=last_modified,
        stored_at=time.time(),
    )


def _size_of(path: Path | str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None
