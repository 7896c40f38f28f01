"""`/resolve` and `/watch/<token>/…`: page URLs in, stable playable links out.

A watch token grants a *page* (and a yt-dlp format spec), not an upstream directory, so its
link outlives every URL an extraction yields. Each request uses the cached extraction; when
upstream refuses an extracted URL (403/410: an expired signature), the page is extracted once
more (single-flight) and the request retried, and segment requests under the old URLs are
carried over to the new ones.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from cachetools import TTLCache

from gateway.addresses import is_public_address
from gateway.auth import require_key
from gateway.errors import Forbidden, ForbiddenUpstream, Gone, UpstreamError
from gateway.fetcher import Fetcher, Manifest, Stored, Target
from gateway.links import Links
from gateway.manifests import ManifestService
from gateway.resolver import Extraction, Format, Resolver, check_page_url
from gateway.serve import manifest_response
from gateway.settings import Settings
from gateway.signing import Grant, TokenError, TokenExpired
from playlists.master import Rendition, build_master
from playlists.urls import directory_of

_WATCH_SCHEME = "watch:"
_REFUSED = (403, 410)
_RFC6381 = re.compile(r"^[A-Za-z0-9]{4}(\.[A-Za-z0-9.]+)?$")


@dataclass(frozen=True, slots=True)
class Carried:
    """Where an extraction's URLs came from, so a refused one can be re-resolved."""

    page_url: str
    spec: str
    format_id: str
    directory: str


class Watch:
    def __init__(
        self,
        settings: Settings,
        links: Links,
        resolver: Resolver,
        fetcher: Fetcher,
        manifests: ManifestService,
    ) -> None:
        self._settings = settings
        self._links = links
        self._resolver = resolver
        self._fetcher = fetcher
        self._manifests = manifests
        # Upstream directory of an extracted format -> its page, for carrying refused
        # segment requests over to a fresh extraction.
        self._origins: TTLCache[str, Carried] = TTLCache(maxsize=65_536, ttl=24 * 3600)

    # -- /resolve ----------------------------------------------------------------------------
    async def resolve(self, request: web.Request) -> web.Response:
        self._authorize(request)
        page_url = check_page_url(request.query.get("url", ""))
        spec = request.query.get("format") or self._settings.resolve_format
        await self.check_page_host(page_url)
        extraction = await self._resolver.resolve(page_url, spec)
        self._remember(extraction, spec)
        base = self._links.public_base
        formats = []
        for fmt in extraction.formats:
            described = fmt.describe()
            described["url"] = self._links.mint(fmt.url, fmt.headers)
            formats.append(described)
        return web.json_response(
            {
                "title": extraction.title,
                "duration": extraction.duration,
                "is_live": extraction.is_live,
                "thumbnail": extraction.thumbnail,
                "formats": formats,
                "selected": [fmt.format_id for fmt in extraction.selected],
                "play": base + watch_path(self._links, page_url, spec, extraction),
            }
        )

    # -- /watch/<token>/<name> ---------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        page_url, spec = self._page_of(request.match_info["token"])
        extraction = await self._resolver.resolve(page_url, spec)
        try:
            return await self._serve(request, extraction, spec)
        except UpstreamError as exc:
            if exc.status not in _REFUSED:
                raise
        fresh = await self._resolver.refresh(extraction, spec)
        return await self._serve(request, fresh, spec)

    async def recover(self, grant: Grant, upstream_url: str) -> tuple[Grant, str] | None:
        """For a refused upstream URL from an extraction: the same resource, freshly extracted."""
        carried = self._origins.get(grant.directory)
        if carried is None:
            return None
        stale = await self._resolver.resolve(carried.page_url, carried.spec)
        fresh = await self._resolver.refresh(stale, carried.spec)
        self._remember(fresh, carried.spec)
        for fmt in fresh.formats + fresh.selected:
            if fmt.format_id == carried.format_id:
                directory = directory_of(fmt.url)
                rest = upstream_url[len(carried.directory) :]
                return Grant(directory, fmt.headers, grant.expires), directory + rest
        return None

    async def _serve(
        self, request: web.Request, extraction: Extraction, spec: str
    ) -> web.StreamResponse:
        self._remember(extraction, spec)
        selected = extraction.selected
        videos = [f for f in selected if f.has_video]
        audios = [f for f in selected if f.has_audio and not f.has_video]
        if len(selected) == 2 and videos and audios and all(f.kind == "hls" for f in selected):
            return self._master(request, videos[0], audios[0])
        chosen = selected[0]
        if chosen.kind == "progressive":
            # A TV or Safari plays HLS, not a bare MP4: the gateway segments the file.
            raise web.HTTPFound(self._links.as_hls_path(Grant(chosen.url, chosen.headers)))
        return await self._manifest(request, chosen)

    def _master(self, request: web.Request, video: Format, audio: Format) -> web.Response:
        rest = request.match_info["name"]

        def ref(fmt: Format) -> str:
            grant, _ = _grant_for(fmt)
            return self._links.ref_maker(grant, rest, route="../p/")(fmt.url)

        body = build_master(
            [Rendition(ref(video), _bits(video), _codec(video.vcodec), video.resolution)],
            Rendition(ref(audio), _bits(audio), _codec(audio.acodec), name="audio"),
        )
        response = web.Response(body=body, content_type="application/vnd.apple.mpegurl")
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def _manifest(self, request: web.Request, fmt: Format) -> web.StreamResponse:
        grant, _ = _grant_for(fmt)
        joined = await self._fetcher.join(Target(grant, fmt.url))
        joined.release()
        if not isinstance(joined.head, Manifest):
            if isinstance(joined.head, Stored):
                raise web.HTTPFound(self._links.path(*_grant_for(fmt)))
            raise UpstreamError("the extracted URL is not a playlist or MPD")
        rewritten = self._manifests.rewrite(
            request.raw_path,
            joined.head,
            grant=grant,
            requested_url=fmt.url,
            request_rest=request.match_info["name"],
            route="../p/",
        )
        return manifest_response(request, rewritten, "MISS")

    # -- helpers -----------------------------------------------------------------------------
    def _remember(self, extraction: Extraction, spec: str) -> None:
        for fmt in extraction.formats + extraction.selected:
            directory = directory_of(fmt.url)
            self._origins[directory] = Carried(extraction.page_url, spec, fmt.format_id, directory)

    def _page_of(self, token: str) -> tuple[str, str]:
        try:
            grant = self._links.signer.verify(token)
        except TokenExpired:
            raise Gone("this link has expired") from None
        except TokenError as exc:
            raise Forbidden(f"invalid link: {exc}") from None
        if not grant.directory.startswith(_WATCH_SCHEME):
            raise Forbidden("invalid link: not a watch link")
        page_url, spec = json.loads(grant.directory[len(_WATCH_SCHEME) :])
        return str(page_url), str(spec)

    def _authorize(self, request: web.Request) -> None:
        require_key(request, self._settings.api_key, setting="GATEWAY_API_KEY")

    async def check_page_host(self, page_url: str) -> None:
        """The page's host passes the same private-address check as every upstream."""
        if self._settings.allow_private_upstreams:
            return
        host = urlsplit(page_url).hostname or ""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host.rstrip("."), None, type=socket.SOCK_STREAM
            )
        except OSError:
            raise UpstreamError(f"cannot resolve {host}") from None
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if not is_public_address(address):
                raise ForbiddenUpstream("upstream address is private")


def watch_path(links: Links, page_url: str, spec: str, extraction: Extraction) -> str:
    """The stable link for a page: it names the page, never an extracted URL."""
    name = "manifest.mpd" if _single_kind(extraction) == "dash" else "index.m3u8"
    grant = Grant(_WATCH_SCHEME + json.dumps([page_url, spec]))
    return f"/watch/{links.signer.mint(grant)}/{name}"


def _grant_for(fmt: Format) -> tuple[Grant, str]:
    directory = directory_of(fmt.url)
    return Grant(directory, fmt.headers), fmt.url[len(directory) :]


def _single_kind(extraction: Extraction) -> str:
    return extraction.selected[0].kind if len(extraction.selected) == 1 else "hls"


def _bits(fmt: Format) -> int | None:
    return int(fmt.tbr * 1000) if fmt.tbr else None


def _codec(value: str | None) -> str | None:
    return value if value and _RFC6381.match(value) else None
