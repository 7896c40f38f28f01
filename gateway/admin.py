"""Cache administration: stats, purge, warm. Shared by the CLI and the admin HTTP API."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from gateway.auth import require_key
from gateway.cache.keys import storage_name
from gateway.cache.segments import SegmentCache
from gateway.errors import BadRequest, GatewayError
from gateway.fetcher import Fetcher, Manifest, MediaHead, Stored, Target
from gateway.signing import Grant, HeaderError, Headers, validate_headers
from playlists import hls
from playlists.urls import directory_of, is_http_url, resolve

Progress = Callable[[int, int], None]
_URI_ATTRIBUTE = re.compile(r'URI="([^"]+)"')
_WARM_CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class CacheStats:
    node: str
    entries: int
    bytes: int
    budget: int
    disk_bytes: int


@dataclass(slots=True)
class WarmReport:
    playlists: int = 0
    segments: int = 0
    fetched: int = 0
    already_cached: int = 0
    failed: int = 0
    bytes: int = 0


async def cache_stats(cache: SegmentCache, node: str) -> CacheStats:
    names = await cache.index.names()
    return CacheStats(
        node=node,
        entries=len(names),
        bytes=await cache.index.total_bytes(),
        budget=cache.max_bytes,
        disk_bytes=cache.store.disk_usage(),
    )


async def purge(cache: SegmentCache, upstream_prefix: str | None = None) -> tuple[int, int]:
    """Remove every object (or those whose upstream URL starts with the prefix): (count, bytes)."""
    removed = size = 0
    for name in await cache.index.names():
        entry = await cache.index.get(name)
        if entry is None:
            continue
        if upstream_prefix and not entry.key.startswith(upstream_prefix):
            continue
        await cache.index.remove(name)
        cache.store.remove(name)
        cache.forget_hot(name)
        removed += 1
        size += entry.size
    return removed, size


async def warm(
    fetcher: Fetcher,
    cache: SegmentCache,
    playlist_url: str,
    headers: Headers = (),
    progress: Progress | None = None,
) -> WarmReport:
    """Fetch every segment of a VOD playlist, all variants and renditions, into the cache."""
    report = WarmReport()
    grant = Grant(directory_of(playlist_url), headers)
    segments = await _collect(fetcher, grant, playlist_url, report)
    report.segments = len(segments)
    gate = asyncio.Semaphore(_WARM_CONCURRENCY)
    done = 0

    async def one(url: str) -> None:
        nonlocal done
        async with gate:
            await _warm_one(fetcher, cache, Grant(directory_of(url), headers), url, report)
        done += 1
        if progress is not None:
            progress(done, len(segments))

    await asyncio.gather(*(one(url) for url in segments))
    return report


async def _collect(
    fetcher: Fetcher, grant: Grant, url: str, report: WarmReport, depth: int = 0
) -> list[str]:
    joined = await fetcher.join(Target(grant, url))
    joined.release()
    head = joined.head
    if not isinstance(head, Manifest) or head.kind != "hls":
        raise BadRequest("warm needs an HLS playlist")
    report.playlists += 1
    text = head.body.decode("utf-8", "replace")
    if hls.inspect(head.body).is_master:
        children: list[str] = []
        for line in text.splitlines():
            found = _URI_ATTRIBUTE.findall(line) if line.startswith("#EXT-X-") else [line.strip()]
            for uri in found:
                if uri and not uri.startswith("#"):
                    child = resolve(head.final_url, uri)
                    if is_http_url(child) and child not in children and depth < 2:
                        children.append(child)
        urls: list[str] = []
        for child in children:
            child_grant = grant.child(directory_of(child))
            for segment in await _collect(fetcher, child_grant, child, report, depth + 1):
                if segment not in urls:
                    urls.append(segment)
        return urls
    maps = [
        resolve(head.final_url, uri)
        for line in text.splitlines()
        if line.startswith("#EXT-X-MAP:") and "BYTERANGE" not in line
        for uri in _URI_ATTRIBUTE.findall(line)
    ]
    return list(dict.fromkeys(maps + hls.segment_urls(head.body, base_url=head.final_url)))


async def _warm_one(
    fetcher: Fetcher, cache: SegmentCache, grant: Grant, url: str, report: WarmReport
) -> None:
    if await cache.lookup(storage_name(fetcher.key_for(url))) is not None:
        report.already_cached += 1
        return
    try:
        joined = await fetcher.join(Target(grant, url))
    except GatewayError:
        report.failed += 1
        return
    try:
        fill = joined.flight.fill
        if isinstance(joined.head, Stored):
            report.already_cached += 1
        elif isinstance(joined.head, MediaHead) and fill is not None:
            await fill.wait()
            if fill.error is None:
                report.fetched += 1
                report.bytes += fill.written
            else:
                report.failed += 1
    finally:
        joined.release()


class WarmRequest(BaseModel):
    url: str = Field(max_length=8192)
    headers: dict[str, str] = Field(default_factory=dict)


class AdminApi:
    """`/admin/cache…` behind `GATEWAY_ADMIN_TOKEN` (404 when it is unset)."""

    def __init__(self, token: str | None, cache: SegmentCache, fetcher: Fetcher, node: str) -> None:
        self._token = token
        self._cache = cache
        self._fetcher = fetcher
        self._node = node

    def _authorize(self, request: web.Request) -> None:
        require_key(request, self._token, setting="GATEWAY_ADMIN_TOKEN", allow_header=False)

    async def stats(self, request: web.Request) -> web.Response:
        self._authorize(request)
        return web.json_response(asdict(await cache_stats(self._cache, self._node)))

    async def purge(self, request: web.Request) -> web.Response:
        self._authorize(request)
        payload = await _json(request)
        prefix = payload.get("upstream_prefix")
        if prefix is not None and not isinstance(prefix, str):
            raise BadRequest("upstream_prefix must be a string")
        removed, size = await purge(self._cache, prefix)
        return web.json_response({"removed": removed, "bytes": size})

    async def warm(self, request: web.Request) -> web.Response:
        self._authorize(request)
        try:
            spec = WarmRequest.model_validate(await _json(request))
            headers = validate_headers(spec.headers.items())
        except (ValidationError, HeaderError) as exc:
            reason = str(exc).splitlines()[0]
            raise BadRequest(f"expected JSON {{url, headers?}}: {reason}") from None
        if not is_http_url(spec.url):
            raise BadRequest("url must be http(s)")
        report = await warm(self._fetcher, self._cache, spec.url, headers)
        return web.json_response(asdict(report))


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        payload = await request.json()
    except ValueError:
        raise BadRequest("body must be JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    return payload
