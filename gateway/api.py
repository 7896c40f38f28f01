"""The small JSON API: minting links for web apps, and health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from gateway.auth import require_key
from gateway.cache.index import IndexUnavailable
from gateway.cache.segments import SegmentCache
from gateway.errors import BadRequest
from gateway.links import Links
from gateway.signing import HeaderError, validate_headers
from playlists.urls import is_http_url


class LinkRequest(BaseModel):
    url: str = Field(max_length=8192)
    headers: dict[str, str] = Field(default_factory=dict)
    ttl: float | None = Field(default=None, gt=0)
    as_hls: bool = False


class LinksApi:
    """`POST /api/links` → `{"url": ...}`; bearer or `X-API-Key`; 404 when no key is configured."""

    def __init__(self, links: Links, api_key: str | None) -> None:
        self._links = links
        self._api_key = api_key

    def _authorize(self, request: web.Request) -> None:
        require_key(request, self._api_key, setting="GATEWAY_API_KEY")

    async def create(self, request: web.Request) -> web.Response:
        self._authorize(request)
        try:
            payload: Any = await request.json()
            spec = LinkRequest.model_validate(payload)
        except (ValueError, ValidationError) as exc:
            expected = "expected JSON {url, headers?, ttl?, as_hls?}"
            raise BadRequest(f"{expected}: {_first(exc)}") from None
        if not is_http_url(spec.url):
            raise BadRequest("url must be http(s)")
        try:
            headers = validate_headers(spec.headers.items())
        except HeaderError as exc:
            raise BadRequest(str(exc)) from None
        mint = self._links.mint_as_hls if spec.as_hls else self._links.mint
        return web.json_response({"url": mint(spec.url, headers, spec.ttl)})


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


STATIC_DIR = Path(__file__).parent / "static"


async def index_page(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


class Readiness:
    """`/readyz`: 200 when the shared index answers (if set) and the cache dir is writable."""

    def __init__(self, cache: SegmentCache) -> None:
        self._cache = cache

    async def handle(self, _request: web.Request) -> web.Response:
        problems: list[str] = []
        try:
            await self._cache.index.total_bytes()
        except IndexUnavailable:
            problems.append("cache index unreachable")
        probe = self._cache.store.new_temp()
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            problems.append(f"cache dir not writable ({exc.strerror or exc})")
        if problems:
            return web.Response(status=503, text="; ".join(problems) + "\n")
        return web.Response(text="ready\n")
