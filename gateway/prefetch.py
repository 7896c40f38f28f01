"""Segments fetched into the cache before a player asks for them.

Only playlists that clients actually play are followed: a media playlist registers a *watch*
when it is served, and the watch lapses once nobody has requested that playlist (or one of
its segments) for `prefetch_idle_seconds`. A master playlist never triggers prefetch, so only
the variant a player chose is warmed.

- Live: each fresh upstream copy of the playlist warms its newest segments, the ones players
  at the live edge ask for next.
- VOD: a cursor follows the last segment requested and warms the next ones.

Fetches go through the single-flight fetcher, so a prefetch and a player asking for the same
segment share one upstream request, and never more than `prefetch_per_host` prefetches run
against one upstream host at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cachetools import LRUCache

from gateway.cache.keys import storage_name
from gateway.cache.segments import SegmentCache
from gateway.errors import GatewayError
from gateway.fetcher import Fetcher, MediaHead, Target
from gateway.metrics import Metrics
from gateway.recent import put_newest
from gateway.settings import Settings
from gateway.signing import Grant

log = logging.getLogger("gateway.prefetch")

# A watch's idle timer restarts at most this often: re-inserting it on every request of a
# busy playlist would cost more than the request itself.
_KEEP_EVERY = 1.0
_MAX_WATCHES = 4096
_SETTLED_SECONDS = 30.0
_MAX_SETTLED = 65_536


@dataclass(slots=True)
class Watch:
    grant: Grant
    segments: list[str]
    live: bool
    cursor: int = -1
    last_seen: float = field(default_factory=time.monotonic)


class Prefetcher:
    def __init__(
        self, settings: Settings, fetcher: Fetcher, cache: SegmentCache, metrics: Metrics
    ) -> None:
        self._depth = settings.prefetch_segments
        self._per_host = settings.prefetch_per_host
        self._fetcher = fetcher
        self._cache = cache
        self._metrics = metrics
        self._idle = settings.prefetch_idle_seconds
        # Playlist URL -> watch, oldest keep first; a watch idle for `_idle` has lapsed.
        self._watches: dict[str, Watch] = {}
        # Plain LRU maps: they sit on every segment request, and the watch itself expires.
        self._playlist_of: LRUCache[str, str] = LRUCache(maxsize=262_144)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._pending: set[str] = set()
        # URL -> when it was last found cached or fetched: warming it again within
        # `_SETTLED_SECONDS` would only spend a task and a cache lookup per player request.
        self._settled: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Prefetched objects no client has asked for yet: name -> size.
        self._unused: LRUCache[str, int] = LRUCache(maxsize=65_536)

    @property
    def enabled(self) -> bool:
        return self._depth > 0

    def playlist_fetched(
        self, playlist_url: str, grant: Grant, segments: list[str], *, live: bool
    ) -> None:
        """A fresh upstream copy of a media playlist was just served to a client."""
        if not self.enabled or not segments:
            return
        watch = self._watch(playlist_url)
        if watch is None:
            watch = Watch(grant, segments, live)
        else:
            watch.segments, watch.live, watch.grant = segments, live, grant
        self._keep(playlist_url, watch)
        for url in segments:
            self._playlist_of[url] = playlist_url
        if live:
            self._warm(watch, segments[-self._depth :])
        else:
            self._warm(watch, segments[watch.cursor + 1 : watch.cursor + 1 + self._depth])

    def playlist_requested(self, playlist_url: str) -> None:
        """A client asked for a playlist that may be served from memory: keep its watch."""
        watch = self._watch(playlist_url)
        if watch is not None:
            self._seen(playlist_url, watch)

    def segment_requested(self, url: str, name: str) -> None:
        """A client asked for `url`: move the VOD cursor and warm what follows."""
        if not self._unused and not self._playlist_of:
            return
        if name in self._unused:
            del self._unused[name]
            self._metrics.prefetch_hits.inc()
        playlist_url = self._playlist_of.get(url)
        watch = self._watch(playlist_url) if playlist_url else None
        if watch is None or playlist_url is None:
            return
        self._seen(playlist_url, watch)
        if watch.live:
            return
        with contextlib.suppress(ValueError):
            position = watch.segments.index(url, max(watch.cursor, 0))
            watch.cursor = position
            self._warm(watch, watch.segments[position + 1 : position + 1 + self._depth])

    def _settle(self, url: str) -> None:
        put_newest(self._settled, url, time.monotonic(), _MAX_SETTLED)

    def evicted(self, names: list[str]) -> None:
        for name in names:
            size = self._unused.pop(name, None)
            if size is not None:
                self._metrics.prefetch_wasted_bytes.inc(size)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _watch(self, playlist_url: str) -> Watch | None:
        watch = self._watches.get(playlist_url)
        if watch is not None and time.monotonic() - watch.last_seen > self._idle:
            del self._watches[playlist_url]
            return None
        return watch

    def _keep(self, playlist_url: str, watch: Watch) -> None:
        watch.last_seen = time.monotonic()
        put_newest(self._watches, playlist_url, watch, _MAX_WATCHES)

    def _seen(self, playlist_url: str, watch: Watch) -> None:
        """A client asked for the playlist or one of its segments: restart its idle timer."""
        if time.monotonic() - watch.last_seen >= _KEEP_EVERY:
            self._keep(playlist_url, watch)

    def _warm(self, watch: Watch, urls: list[str]) -> None:
        now = time.monotonic()
        for url in urls:
            if now - self._settled.get(url, -_SETTLED_SECONDS) < _SETTLED_SECONDS:
                continue
            key = self._fetcher.key_for(url)
            if key in self._pending or self._fetcher.in_flight(key):
                continue
            self._pending.add(key)
            task = asyncio.create_task(self._prefetch(watch.grant, url, key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _prefetch(self, grant: Grant, url: str, key: str) -> None:
        name = storage_name(key)
        host = urlsplit(url).netloc
        gate = self._hosts.setdefault(host, asyncio.Semaphore(self._per_host))
        try:
            async with gate:
                if await self._cache.lookup(name) is not None:
                    self._settle(url)
                    return
                joined = await self._fetcher.join(Target(grant, url))
                try:
                    fill = joined.flight.fill
                    if isinstance(joined.head, MediaHead) and fill is not None:
                        await fill.wait()
                        if fill.error is None:
                            self._settle(url)
                        if fill.error is None and not joined.coalesced:
                            self._unused[name] = fill.written
                            self._metrics.prefetch_requests.inc()
                            self._metrics.prefetch_bytes.inc(fill.written)
                finally:
                    joined.release()
        except GatewayError as exc:
            log.info("prefetch of %s failed: %s", url.split("?", 1)[0], exc.reason)
        finally:
            self._pending.discard(key)
