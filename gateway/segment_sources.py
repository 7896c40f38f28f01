"""Upstream files the gateway segments itself: what each one is, its index, its bytes.

An MP4 is read with HTTP Range requests only: the top-level boxes are walked from the start
(the `moov` may sit after a large `mdat`), the `moov` is parsed into a sample index, and a
segment fetches just the byte ranges its samples occupy. Parsed indexes are kept per worker
and, with Redis configured, shared, so that no worker reparses a `moov` another has read.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachetools import LRUCache
from redis.exceptions import RedisError

from gateway.broadcast import Broadcast
from gateway.cache.keys import storage_name
from gateway.cache.redis_connect import connect
from gateway.cache.segments import SegmentCache
from gateway.errors import UpstreamError
from gateway.fetcher import Fetcher, Manifest, MediaHead, Stored, Target
from gateway.remux.blob import BLOB_VERSION, dump_movie, load_movie
from gateway.remux.boxes import scan_top_level
from gateway.remux.errors import RemuxError
from gateway.remux.movie import Movie, parse_moov
from gateway.remux.plan import Segment, plan_segments
from gateway.settings import Settings
from gateway.signing import Grant
from gateway.upstream import UpstreamClient
from playlists import dash
from playlists.urls import directory_of

log = logging.getLogger("gateway.segmenting")

_PROBE_BYTES = 64 * 1024
# After the media data, a file usually holds just its moov: up to this many bytes left, they
# are read in one request, which saves the round trip of probing for the moov's header.
_WHOLE_TAIL_BYTES = 16 * 1024**2
_MAX_MOOV_BYTES = 256 * 1024**2
_MAX_BOX_HOPS = 64
_SHARED_TTL_SECONDS = 86_400


class NoRangeSupport(Exception):
    """The origin answered a Range request with the whole file."""

    def __init__(self, size: int | None) -> None:
        super().__init__("upstream ignores Range requests")
        self.size = size


@dataclass(frozen=True, slots=True)
class Version:
    """Which bytes an index was read from: a range from another version would corrupt."""

    size: int
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """An MP4 ready to be served as HLS: its index and its segment plan."""

    movie: Movie
    plan: list[Segment]
    version: Version
    whole_file: bool  # the origin has no Range support: bytes come from the cached file


Source = Prepared | str  # an MP4 ready to segment, or "dash"


class ByteRanges:
    """Bytes fetched for a set of ranges, read back by file offset."""

    def __init__(self, spans: Sequence[tuple[int, bytes]]) -> None:
        self._starts = [start for start, _ in spans]
        self._spans = list(spans)

    def read(self, offset: int, length: int) -> bytes:
        at = bisect.bisect_right(self._starts, offset) - 1
        if at < 0:
            raise RemuxError("a sample lies outside the fetched byte ranges")
        start, data = self._spans[at]
        end = offset - start + length
        if end > len(data):
            raise RemuxError("a sample lies outside the fetched byte ranges")
        return data[offset - start : end]


class SegmentSources:
    def __init__(
        self,
        settings: Settings,
        client: UpstreamClient,
        fetcher: Fetcher,
        cache: SegmentCache,
    ) -> None:
        self._settings = settings
        self._client = client
        self._fetcher = fetcher
        self._cache = cache
        self._local: LRUCache[str, Source] = LRUCache(maxsize=settings.segment_index_entries)
        self._loading: dict[str, Broadcast[Source]] = {}
        self._shared: Any = connect(settings.redis_url) if settings.redis_url else None
        # The version names the blob format: workers of another release never read it.
        self._shared_prefix = f"{settings.redis_prefix}:mp4index:v{BLOB_VERSION}:"
        self._sharing: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        if self._sharing:
            await asyncio.gather(*self._sharing, return_exceptions=True)
        if self._shared is not None:
            await self._shared.aclose()

    def key_of(self, grant: Grant) -> str:
        return self._fetcher.key_for(grant.directory)

    async def source(self, grant: Grant) -> Source:
        """What `grant.directory` is: an MPD ("dash") or a prepared MP4. One load per file."""
        key = self.key_of(grant)
        known = self._local.get(key)
        if known is not None:
            return known
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = Broadcast()
            try:
                loaded = await self._load(grant, key)
            except BaseException as exc:
                loading.set_exception(exc)
                raise
            finally:
                del self._loading[key]
            self._local[key] = loaded
            loading.set_result(loaded)
            return loaded
        return await loading.wait()

    async def read_ranges(self, grant: Grant, prepared: Prepared, segment: Segment) -> ByteRanges:
        if prepared.whole_file:
            return await self._ranges_of_whole(grant, segment.ranges)
        parts = await asyncio.gather(
            *(self._range(grant, offset, length) for offset, length in segment.ranges)
        )
        if any(version != prepared.version for _, version in parts):
            await self._forget(self.key_of(grant))
            raise UpstreamError("the source changed since its playlist was made; reload it")
        return ByteRanges(
            [(offset, data) for (offset, _), (data, _) in zip(segment.ranges, parts, strict=True)]
        )

    async def _forget(self, key: str) -> None:
        self._local.pop(key, None)
        if self._shared is not None:
            with contextlib.suppress(RedisError):
                await self._shared.delete(self._shared_key(key))

    # -- loading ----------------------------------------------------------------------------

    async def _load(self, grant: Grant, key: str) -> Source:
        shared = await self._shared_get(key)
        if shared is not None:
            with contextlib.suppress(RemuxError, ValueError, KeyError, TypeError):
                version, whole_file, blob = _unpack(shared)
                movie = await asyncio.to_thread(load_movie, blob)
                return await self._prepare(movie, version, whole_file=whole_file)
        whole: bytes | None = None
        try:
            head, version = await self._range(grant, 0, _PROBE_BYTES)
        except NoRangeSupport as exc:
            whole = await self._whole_within_limit(grant, exc.size)
            head, version = whole[:_PROBE_BYTES], Version(len(whole))
        if dash.is_mpd(head[:512]):
            return "dash"
        try:
            if whole is not None:
                movie = await asyncio.to_thread(_parse_from_whole, whole)
            else:
                movie = await self._read_movie(grant, head, version)
        except RemuxError as exc:
            raise UpstreamError(f"cannot segment the source: {exc}") from None
        whole_file = whole is not None
        prepared = await self._prepare(movie, version, whole_file=whole_file)
        if self._shared is not None:
            # Sharing the index is for the next worker; this request does not wait for it.
            task = asyncio.create_task(self._share(key, prepared))
            self._sharing.add(task)
            task.add_done_callback(self._sharing.discard)
        return prepared

    async def _prepare(self, movie: Movie, version: Version, *, whole_file: bool) -> Prepared:
        try:
            plan = await asyncio.to_thread(plan_segments, movie, self._settings.segment_seconds)
        except RemuxError as exc:
            raise UpstreamError(f"cannot segment the source: {exc}") from None
        return Prepared(movie, plan, version, whole_file)

    async def _read_movie(self, grant: Grant, head: bytes, version: Version) -> Movie:
        at, data, size = 0, head, version.size
        for _ in range(_MAX_BOX_HOPS):
            boxes = scan_top_level(data, at, size)
            if not boxes:
                raise RemuxError("not an MP4 file")
            moov = next((box for box in boxes if box.type == "moov"), None)
            if moov is not None:
                if moov.size > _MAX_MOOV_BYTES:
                    raise RemuxError(f"moov box of {moov.size} bytes is too large")
                start = moov.offset - at
                moov_bytes = data[start : start + moov.size]
                if len(moov_bytes) < moov.size:
                    # Only the part the probe did not bring.
                    rest, seen = await self._range(
                        grant, at + len(data), moov.size - len(moov_bytes)
                    )
                    _same(seen, version)
                    moov_bytes += rest
                # About 15 ms for an hour of video: off the event loop all the same.
                return await asyncio.to_thread(parse_moov, moov_bytes)
            last = boxes[-1]
            after = last.offset + last.size
            if after >= size:
                raise RemuxError("no moov box in the file")
            left = size - after
            length = left if left <= _WHOLE_TAIL_BYTES else _PROBE_BYTES
            data, seen = await self._range(grant, after, length)
            _same(seen, version)
            at = after
        raise RemuxError("too many top-level boxes before the moov")

    # -- bytes from upstream ----------------------------------------------------------------

    async def _range(self, grant: Grant, offset: int, length: int) -> tuple[bytes, Version]:
        """`length` bytes at `offset` (fewer at the end of the file), and whose bytes they are."""
        last = offset + length - 1
        response = await self._client.open(
            grant.directory, grant.headers, range_header=f"bytes={offset}-{last}"
        )
        try:
            if response.status != 206:
                response.abort()
                raise NoRangeSupport(response.content_length)
            size = _total_size(response.headers.get("Content-Range", ""))
            version = Version(size, response.headers.get("ETag"))
            data = await response.read(length)
        except BaseException:
            response.abort()
            raise
        response.release()
        return data, version

    async def _whole_within_limit(self, grant: Grant, size: int | None) -> bytes:
        limit = min(self._settings.segment_whole_file_max_bytes, self._cache.max_object_bytes)
        if size is None or size > limit:
            raise UpstreamError("upstream ignores Range requests and the file is too large")
        return await self._whole_file(grant)

    async def _whole_file(self, grant: Grant) -> bytes:
        stored = await self._cached_whole(grant)
        if isinstance(stored, bytes):
            return stored
        return await asyncio.to_thread(stored.read_bytes)

    async def _ranges_of_whole(self, grant: Grant, ranges: Sequence[tuple[int, int]]) -> ByteRanges:
        stored = await self._cached_whole(grant)
        if isinstance(stored, bytes):
            return ByteRanges([(0, stored)])

        def read() -> list[tuple[int, bytes]]:
            with stored.open("rb") as handle:
                spans = []
                for offset, length in ranges:
                    handle.seek(offset)
                    spans.append((offset, handle.read(length)))
                return spans

        return ByteRanges(await asyncio.to_thread(read))

    async def _cached_whole(self, grant: Grant) -> Path | bytes:
        """The whole source through the segment cache: its file, or its bytes when the cache
        could not keep it (an origin without Range support)."""
        url = grant.directory
        target = Target(Grant(directory_of(url), grant.headers, grant.expires), url)
        name = storage_name(self._fetcher.key_for(url))
        hit = await self._cache.lookup(name)
        if hit is not None:
            return hit[1]
        joined = await self._fetcher.join(target)
        try:
            head = joined.head
            if isinstance(head, Manifest):
                return head.body
            if isinstance(head, Stored):
                return head.path
            assert isinstance(head, MediaHead) and joined.flight.fill is not None
            data = b"".join([chunk async for chunk in joined.flight.fill.read_from(0)])
        finally:
            joined.release()
        hit = await self._cache.lookup(name)
        return hit[1] if hit is not None else data

    # -- the shared index -------------------------------------------------------------------

    def _shared_key(self, key: str) -> str:
        return self._shared_prefix + storage_name(key)

    async def _shared_get(self, key: str) -> bytes | None:
        if self._shared is None:
            return None
        try:
            value = await self._shared.get(self._shared_key(key))
        except RedisError:
            return None
        return bytes(value) if value else None

    async def _share(self, key: str, prepared: Prepared) -> None:
        blob = _pack(prepared, await asyncio.to_thread(dump_movie, prepared.movie))
        with contextlib.suppress(RedisError):
            await self._shared.set(self._shared_key(key), blob, ex=_SHARED_TTL_SECONDS)


def _same(seen: Version, expected: Version) -> None:
    if seen != expected:
        raise UpstreamError("the source changed while its index was being read")


def _pack(prepared: Prepared, movie_blob: bytes) -> bytes:
    meta = json.dumps([prepared.version.size, prepared.version.etag, prepared.whole_file]).encode()
    return len(meta).to_bytes(4, "big") + meta + movie_blob


def _unpack(blob: bytes) -> tuple[Version, bool, bytes]:
    length = int.from_bytes(blob[:4], "big")
    size, etag, whole_file = json.loads(blob[4 : 4 + length])
    version = Version(int(size), None if etag is None else str(etag))
    return version, bool(whole_file), blob[4 + length :]


def _parse_from_whole(data: bytes) -> Movie:
    for box in scan_top_level(data, 0, len(data)):
        if box.type == "moov":
            return parse_moov(data[box.offset : box.offset + box.size])
    raise RemuxError("no moov box in the file")


def _total_size(content_range: str) -> int:
    """`bytes 0-65535/1234567` → 1234567."""
    _, _, total = content_range.rpartition("/")
    if not total.isdigit():
        raise UpstreamError("upstream sent no usable Content-Range")
    return int(total)


def segment_key(source_key: str, what: str) -> str:
    """The cache key of an object made from a source (`what`: "ts/3", "fmp4/init", ...)."""
    digest = hashlib.sha256(source_key.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f"as-hls:{digest}:{what}"
