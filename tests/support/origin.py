"""A real HTTP origin on loopback that serves test media and records every request it sees.

Tests make it misbehave per path (`behave`): wrong status, slow headers, a body dripped out
over seconds, a connection reset mid-body, redirects, a lying content type.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".bin": "application/octet-stream",
}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]
    peer: str | None = None  # the client's address and port: one per connection


@dataclass
class Behaviour:
    status: int | None = None
    delay_headers: float = 0.0
    drip: tuple[int, float] | None = None
    chunked: bool = False
    reset_after: int | None = None
    redirect: str | None = None
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Content-Length promises the whole body; this many bytes are left out and the
    # connection is closed cleanly (FIN, not RST).
    short_by: int = 0
    # Content-Length promises the body; this many stray bytes follow it on the connection.
    long_by: int = 0
    # Answer every Range request with the whole body, as origins without Range support do.
    ignore_range: bool = False


class Origin:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[SeenRequest] = []
        self.base_url = ""
        self._files: dict[str, bytes] = {}
        self._behaviours: dict[str, Behaviour] = {}
        self._runner: web.AppRunner | None = None
        # Bytes handed to the socket per path, so a test can tell how much the gateway pulled.
        self.sent: dict[str, int] = {}
        # Every body (any path) is cut with a reset at a random point with this probability.
        self.reset_probability = 0.0
        self.resets_injected = 0
        self._random = random.Random(0)

    # -- what tests call -------------------------------------------------------------------
    def behave(self, path: str, **how: object) -> None:
        self._behaviours[path] = Behaviour(**how)  # type: ignore[arg-type]

    def unbehave(self, path: str) -> None:
        self._behaviours.pop(path, None)

    def set_file(self, path: str, body: bytes) -> None:
        self._files[path] = body

    def clear(self) -> None:
        self.requests.clear()

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.requests if r.path_qs.startswith(prefix))

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1") -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- serving ---------------------------------------------------------------------------
    def _body_for(self, path: str, behaviour: Behaviour) -> bytes | None:
        if behaviour.body is not None:
            return behaviour.body
        if path in self._files:
            return self._files[path]
        file = (self.root / unquote(path).lstrip("/")).resolve()
        if not file.is_relative_to(self.root.resolve()) or not file.is_file():
            return None
        return file.read_bytes()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(
            SeenRequest(
                request.method, raw, request.headers, f"{peer[0]}:{peer[1]}" if peer else None
            )
        )
        path = raw.split("?", 1)[0]
        behaviour = self._behaviours.get(path, Behaviour())
        if behaviour.delay_headers:
            await asyncio.sleep(behaviour.delay_headers)
        if behaviour.redirect is not None:
            raise web.HTTPFound(behaviour.redirect)
        if behaviour.status is not None and behaviour.status >= 400:
            return web.Response(
                status=behaviour.status,
                text=f"status {behaviour.status}\n",
                headers=behaviour.headers,
            )
        body = self._body_for(path, behaviour)
        if body is None:
            return web.Response(status=404, text="not found\n")

        suffix = Path(path).suffix.lower()
        headers = CIMultiDict(behaviour.headers)
        headers.setdefault(
            "Content-Type",
            behaviour.content_type or CONTENT_TYPES.get(suffix, "application/octet-stream"),
        )
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        headers["ETag"] = etag
        headers["Accept-Ranges"] = "bytes"
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})

        status = behaviour.status or 200
        wanted = request.headers.get("Range")
        if wanted is not None and not behaviour.ignore_range:
            span = _byte_span(wanted, len(body))
            if span is None:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
            body, status = body[start : end + 1], 206

        if (
            self.reset_probability
            and behaviour.reset_after is None
            and len(body) > 1
            and self._random.random() < self.reset_probability
        ):
            self.resets_injected += 1
            behaviour = Behaviour(**{**behaviour.__dict__, "reset_after": len(body) // 2})

        if behaviour.short_by or behaviour.long_by:
            await self._send_lying(request, status, headers, body, behaviour)
        response = web.StreamResponse(status=status, headers=headers)
        if behaviour.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(body)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        await self._send(request, response, body, behaviour)
        return response

    async def _send_lying(
        self,
        request: web.Request,
        status: int,
        headers: CIMultiDict[str],
        body: bytes,
        how: Behaviour,
    ) -> None:
        """A body whose length disagrees with its Content-Length, so written on the raw socket
        (aiohttp's own framing would correct it)."""
        transport = request.transport
        assert transport is not None
        lines = [f"HTTP/1.1 {status} OK", f"Content-Length: {len(body)}", "Connection: keep-alive"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        payload = body[: len(body) - how.short_by] if how.short_by else body + b"\x47" * how.long_by
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        self._count(request, len(payload))
        # A short body ends with a clean close; a long one leaves its stray bytes on a
        # connection the client may think reusable, until the client closes it.
        if how.short_by:
            await asyncio.sleep(0.05)
            transport.close()
        else:
            await asyncio.sleep(1)
        raise asyncio.CancelledError

    def _count(self, request: web.Request, n: int) -> None:
        path = request.raw_path.split("?", 1)[0]
        self.sent[path] = self.sent.get(path, 0) + n

    async def _send(
        self, request: web.Request, response: web.StreamResponse, body: bytes, how: Behaviour
    ) -> None:
        step, pause = how.drip or (len(body) or 1, 0.0)
        limit = how.reset_after if how.reset_after is not None else len(body)
        sent = 0
        while sent < limit:
            chunk = body[sent : min(sent + step, limit)]
            await response.write(chunk)
            sent += len(chunk)
            self._count(request, len(chunk))
            if pause and sent < limit:
                await asyncio.sleep(pause)
        if how.reset_after is not None:
            # Everything promised was not sent: the client must see a broken body.
            await asyncio.sleep(0.05)
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        await response.write_eof()


def _byte_span(value: str, size: int) -> tuple[int, int] | None:
    match = _RANGE.match(value.strip())
    if not match or size == 0:
        return None
    first, last = match.groups()
    if not first:
        if not last or int(last) == 0:
            return None
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end
