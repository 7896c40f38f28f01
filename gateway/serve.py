"""Writing responses: cache hits (sendfile), growing fills (streamed), rewritten manifests."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

import aiofiles
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from gateway.cache.entry import Entry
from gateway.cache.memory import InMemory
from gateway.errors import GatewayError
from gateway.fetcher import Joined, MediaHead
from gateway.manifests import Rewritten

log = logging.getLogger("gateway.serve")

SEGMENT_CACHE_CONTROL = "public, max-age=31536000, immutable"


async def hit_response(entry: Entry, path: Path) -> web.StreamResponse:
    """A cached object. Whole objects go out through sendfile with Range, HEAD and 304."""
    headers = {
        "Content-Type": entry.content_type,
        "Cache-Control": SEGMENT_CACHE_CONTROL,
        "X-Cache": "HIT",
    }
    if entry.status == 206:
        # One stored byte range of a larger object, answered as the range it is.
        headers["Content-Range"] = entry.content_range or ""
        async with aiofiles.open(path, "rb") as handle:
            body = await handle.read()
        return web.Response(status=206, body=body, headers=headers)
    return web.FileResponse(path, headers=headers)


# On asyncio's own loop, a big body goes out in slices of this size, each written only once
# the socket has taken the last: its transports copy whatever the socket does not take at
# once, so 500 slow clients would otherwise hold 500 copies of their segments. uvloop's
# transports queue the caller's buffer by reference, so there the body goes out in one write
# (measured faster: one syscall for headers and body, no wake-up per slice).
BODY_SLICE = 256 * 1024


def body_response(
    body: bytes | memoryview, *, status: int = 200, headers: dict[str, str]
) -> web.StreamResponse:
    if len(body) <= BODY_SLICE or _writes_by_reference():
        return web.Response(body=body, status=status, headers=headers)
    return BodyResponse(body, status=status, headers=headers)


def _writes_by_reference() -> bool:
    return _queues_by_reference(type(asyncio.get_running_loop()))


@functools.cache
def _queues_by_reference(loop_type: type) -> bool:
    return loop_type.__module__.startswith("uvloop")


class BodyResponse(web.StreamResponse):
    """A response whose body is already in memory (`bytes`, or a view of a mapped file)."""

    def __init__(
        self, body: bytes | memoryview, *, status: int = 200, headers: dict[str, str]
    ) -> None:
        super().__init__(status=status, headers=headers)
        self._view = body
        self.content_length = len(body)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        writer = await super().prepare(request)
        if writer is None or request.method == "HEAD":
            return writer
        body = self._view
        for offset in range(0, len(body), BODY_SLICE):
            await writer.write(body[offset : offset + BODY_SLICE])
        return writer


def memory_response(
    request: web.BaseRequest, entry: Entry, item: InMemory
) -> web.StreamResponse:
    """A hit held in memory (the RAM tier, or a mapped file), with validators and ranges."""
    body = item.body
    headers = {
        "Content-Type": entry.content_type,
        "Cache-Control": SEGMENT_CACHE_CONTROL,
        "X-Cache": "HIT",
        "Accept-Ranges": "bytes",
        "ETag": item.etag,
        "Last-Modified": item.last_modified,
    }
    if item.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    wanted = request.headers.get("Range")
    if wanted is None:
        return body_response(body, headers=headers)
    span = _byte_span(wanted, len(body))
    if span is None:
        headers["Content-Range"] = f"bytes */{len(body)}"
        return web.Response(status=416, headers=headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
    return body_response(body[start : end + 1], status=206, headers=headers)


def _byte_span(value: str, size: int) -> tuple[int, int] | None:
    first, _, last = value.strip().removeprefix("bytes=").partition("-")
    if not (first.isdigit() or (not first and last.isdigit())) or (last and not last.isdigit()):
        return None
    if not first:
        count = int(last)
        return (max(0, size - count), size - 1) if count and size else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start < size and start <= end else None


def accel_response(entry: Entry, location: str) -> web.Response:
    """A hit for nginx to send itself (`X-Accel-Redirect`): sendfile, Range and HEAD in C."""
    return web.Response(
        headers={
            "X-Accel-Redirect": location,
            "Content-Type": entry.content_type,
            "Cache-Control": SEGMENT_CACHE_CONTROL,
            "X-Cache": "HIT",
        }
    )


async def stream_response(request: web.Request, joined: Joined) -> web.StreamResponse:
    """Stream a fill to this client as it grows. A failed fill cuts the connection short."""
    head = joined.head
    fill = joined.flight.fill
    assert isinstance(head, MediaHead) and fill is not None
    response = web.StreamResponse(status=head.status)
    response.headers["Content-Type"] = head.content_type
    response.headers["Cache-Control"] = SEGMENT_CACHE_CONTROL
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["X-Cache"] = "COALESCED" if joined.coalesced else "MISS"
    if head.content_range:
        response.headers["Content-Range"] = head.content_range
    if head.last_modified:
        response.headers["Last-Modified"] = head.last_modified
    if head.content_length is not None:
        response.content_length = head.content_length
    # A proxy in front must pass a growing fill on as it arrives, not buffer it whole.
    response.headers["X-Accel-Buffering"] = "no"
    try:
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        async for chunk in fill.read_from(0):
            await response.write(chunk)
        await response.write_eof()
    except GatewayError as exc:
        # Headers are out: the only honest signal left is a truncated body.
        log.info("aborting client response: %s", exc.reason)
        if request.transport is not None:
            request.transport.abort()
    except (ConnectionError, RuntimeError):
        pass  # the client went away; the fill carries on for the others
    finally:
        joined.release()
    return response


def manifest_response(request: web.Request, rewritten: Rewritten, cache_state: str) -> web.Response:
    headers = {
        "Content-Type": rewritten.content_type,
        "Cache-Control": rewritten.cache_control,
        "ETag": rewritten.etag,
        "X-Cache": cache_state,
    }
    if rewritten.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    response = web.Response(body=rewritten.body, headers=headers)
    if len(rewritten.body) > 4096:
        response.enable_compression()
    return response
