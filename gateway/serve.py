"""Writing responses: cache hits (sendfile), growing fills (streamed), rewritten manifests."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import aiofiles
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from gateway.answers import Answer, Conditions
from gateway.cache.entry import Entry
from gateway.cache.memory import InMemory
from gateway.errors import GatewayError
from gateway.fetcher import Joined, MediaHead
from gateway.manifests import Rewritten

log = logging.getLogger("gateway.serve")

SEGMENT_CACHE_CONTROL = "public, max-age=31536000, immutable"
# Manifests smaller than this go out as they are: compressing them saves less than it costs.
COMPRESS_ABOVE = 4096


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
    if len(body) <= BODY_SLICE or writes_by_reference():
        return web.Response(body=body, status=status, headers=headers)
    return BodyResponse(body, status=status, headers=headers)


def writes_by_reference(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Whether `loop`'s transports (default: the running loop's) queue buffers by reference."""
    return _queues_by_reference(type(loop or asyncio.get_running_loop()))


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


def as_response(answer: Answer) -> web.StreamResponse:
    if not answer.body:
        return web.Response(status=answer.status, headers=answer.headers)
    return body_response(answer.body, status=answer.status, headers=answer.headers)


def memory_answer(entry: Entry, item: InMemory, conditions: Conditions) -> Answer:
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
    if item.etag in conditions.if_none_match:
        return Answer(304, headers)
    wanted = conditions.range
    if wanted is None:
        return Answer(200, headers, body)
    span = _byte_span(wanted, len(body))
    if span is None:
        headers["Content-Range"] = f"bytes */{len(body)}"
        return Answer(416, headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
    return Answer(206, headers, body[start : end + 1])


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


def accel_answer(entry: Entry, location: str) -> Answer:
    """A hit for nginx to send itself (`X-Accel-Redirect`): sendfile, Range and HEAD in C."""
    return Answer(
        200,
        {
            "X-Accel-Redirect": location,
            "Content-Type": entry.content_type,
            "Cache-Control": SEGMENT_CACHE_CONTROL,
            "X-Cache": "HIT",
        },
    )


def fill_headers(head: MediaHead, state: str) -> dict[str, str]:
    """The headers of an object streamed while it is fetched (the length apart)."""
    headers = {
        "Content-Type": head.content_type,
        "Cache-Control": SEGMENT_CACHE_CONTROL,
        "Accept-Ranges": "bytes",
        "X-Cache": state,
    }
    if head.content_range:
        headers["Content-Range"] = head.content_range
    if head.last_modified:
        headers["Last-Modified"] = head.last_modified
    # A proxy in front must pass a growing fill on as it arrives, not buffer it whole.
    headers["X-Accel-Buffering"] = "no"
    return headers


async def stream_response(request: web.Request, joined: Joined) -> web.StreamResponse:
    """Stream a fill to this client as it grows. A failed fill cuts the connection short."""
    head = joined.head
    fill = joined.flight.fill
    assert isinstance(head, MediaHead) and fill is not None
    response = web.StreamResponse(status=head.status, headers=fill_headers(head, joined.state))
    if head.content_length is not None:
        response.content_length = head.content_length
    try:
        with cut_short_on_failure(request):
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            async for chunk in fill.read_from(0):
                await response.write(chunk)
            await response.write_eof()
    finally:
        joined.release()
    return response


class _Connected(Protocol):
    @property
    def transport(self) -> asyncio.Transport | None: ...


@contextlib.contextmanager
def cut_short_on_failure(connection: _Connected) -> Iterator[None]:
    """Around streaming a fill to a client: a failed fill aborts the connection (the head is
    out, so the only honest signal left is a truncated body); a client that went away ends
    it quietly (the fill carries on for the others)."""
    try:
        yield
    except GatewayError as exc:
        log.info("aborting client response: %s", exc.reason)
        if connection.transport is not None:
            connection.transport.abort()
    except (ConnectionError, RuntimeError):
        pass


def manifest_answer(rewritten: Rewritten, cache_state: str, conditions: Conditions) -> Answer:
    headers = {
        "Content-Type": rewritten.content_type,
        "Cache-Control": rewritten.cache_control,
        "ETag": rewritten.etag,
        "X-Cache": cache_state,
    }
    body = rewritten.body
    gzipped = False
    if len(body) > COMPRESS_ABOVE:
        # Caches in front must keep the two encodings apart.
        headers["Vary"] = "Accept-Encoding"
        if accepts_gzip(conditions.accept_encoding):
            # The compressed bytes are another representation: a weak validator, as nginx
            # gives them.
            headers["ETag"] = "W/" + rewritten.etag
            headers["Content-Encoding"] = "gzip"
            gzipped = True
    if rewritten.etag in conditions.if_none_match:
        return Answer(304, headers)
    # Compressed once per rewritten copy, not once per request.
    return Answer(200, headers, rewritten.gzipped() if gzipped else body)


def manifest_response(request: web.Request, rewritten: Rewritten, cache_state: str) -> web.Response:
    answer = manifest_answer(rewritten, cache_state, Conditions.of(request))
    return web.Response(status=answer.status, body=answer.body or None, headers=answer.headers)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether `Accept-Encoding` admits gzip (RFC 9110 12.5.3: a zero weight refuses it)."""
    if "gzip" not in accept_encoding:
        return False
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.partition(";")
        if coding.strip() not in ("gzip", "x-gzip"):
            continue
        weight = params.strip()
        if not weight.startswith("q="):
            return True
        try:
            return float(weight[2:]) > 0
        except ValueError:
            return False
    return False
