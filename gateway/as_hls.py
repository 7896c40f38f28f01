"""`/s/<token>/<name>`: an MP4 file or a static MPD, served as HLS.

For an MP4 the gateway writes the playlists itself and cuts each segment on request from the
byte ranges its samples occupy, remuxed without transcoding:

- `index.m3u8`: a master playlist (one variant with CODECS, RESOLUTION, BANDWIDTH) when the
  file has several tracks, otherwise the media playlist itself;
- `media.m3u8` with `seg-<n>.ts` (MPEG-TS, what every TV plays), or `fmp4.m3u8` with
  `init.mp4` and `seg-<n>.m4s` (fMP4/CMAF; chosen by `index.m3u8` for codecs TS cannot carry).

Made segments go through the same cache and single-flight as fetched ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from typing import Protocol

from aiohttp import web

from gateway.errors import NotFound, UpstreamError
from gateway.links import AS_HLS_MODE, AS_HLS_PREFIX, open_token
from gateway.manifests import Rewritten
from gateway.proxy import ProxyHandler
from gateway.remux.errors import RemuxError
from gateway.remux.fmp4 import fmp4_init, mux_fmp4
from gateway.remux.ts import mux_ts, ts_reason
from gateway.segment_sources import Prepared, SegmentSources, segment_key
from gateway.serve import manifest_response
from gateway.settings import Settings
from gateway.signing import Grant, Signer
from playlists.vod import Variant, VodSegment, master_playlist, media_playlist

HLS_TYPE = "application/vnd.apple.mpegurl"
_SEGMENT = re.compile(r"^seg-(\d{1,6})\.(ts|m4s)$")


class DashRenderer(Protocol):
    async def render(self, grant: Grant, rest: str) -> bytes: ...


class AsHlsHandler:
    def __init__(
        self,
        settings: Settings,
        signer: Signer,
        sources: SegmentSources,
        proxy: ProxyHandler,
        dash: DashRenderer | None = None,
    ) -> None:
        self._settings = settings
        self._signer = signer
        self._sources = sources
        self._proxy = proxy
        self._dash = dash

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token, slash, rest = request.raw_path[len(AS_HLS_PREFIX) :].partition("?")[0].partition("/")
        if not slash:
            raise NotFound("a gateway URL needs a path after the token")
        grant = open_token(self._signer, token, mode=AS_HLS_MODE)
        source = await self._sources.source(grant)
        if isinstance(source, str):
            if self._dash is None:
                raise UpstreamError("serving DASH as HLS is not available")
            return self._playlist(request, await self._dash.render(grant, rest))
        if rest == "index.m3u8":
            return self._playlist(request, self._index(source))
        if rest == "media.m3u8":
            self._require_ts(source)
            return self._playlist(request, _media(source, "ts"))
        if rest == "fmp4.m3u8":
            return self._playlist(request, _media(source, "m4s", map_uri="init.mp4"))
        if rest == "init.mp4":
            key = segment_key(self._sources.key_of(grant), "fmp4/init")
            return await self._proxy.serve_made(
                request, key, "video/mp4", lambda: _made(fmp4_init, source.movie)
            )
        match = _SEGMENT.match(rest)
        if match is None:
            raise NotFound("no such file in this presentation")
        number, extension = int(match.group(1)), match.group(2)
        if number >= len(source.plan):
            raise NotFound("no such segment")
        if extension == "ts":
            self._require_ts(source)
        segment = source.plan[number]
        seconds = self._settings.segment_seconds
        key = segment_key(self._sources.key_of(grant), f"{extension}/{seconds:g}/{number}")
        mux = mux_ts if extension == "ts" else mux_fmp4
        content_type = "video/mp2t" if extension == "ts" else "video/iso.segment"

        async def make() -> bytes:
            spans = await self._sources.read_ranges(grant, source, segment)
            return await _made(mux, source.movie, segment, spans.read)

        return await self._proxy.serve_made(request, key, content_type, make)

    def _index(self, source: Prepared) -> str:
        media = "media.m3u8" if ts_reason(source.movie) is None else "fmp4.m3u8"
        if len(source.movie.tracks) < 2:
            return (
                _media(source, "ts")
                if media == "media.m3u8"
                else _media(source, "m4s", map_uri="init.mp4")
            )
        return master_playlist([_variant(source, media)])

    @staticmethod
    def _require_ts(source: Prepared) -> None:
        reason = ts_reason(source.movie)
        if reason is not None:
            raise NotFound(f"{reason}; use fmp4.m3u8")

    def _playlist(self, request: web.Request, body: str | bytes) -> web.Response:
        data = body.encode() if isinstance(body, str) else body
        rewritten = Rewritten(
            data,
            HLS_TYPE,
            self._settings.playlist_vod_ttl,
            '"' + hashlib.sha256(data).hexdigest()[:32] + '"',
            immutable=True,
        )
        return manifest_response(request, rewritten, "MISS")


def _media(source: Prepared, extension: str, map_uri: str | None = None) -> str:
    segments = [
        VodSegment(f"seg-{segment.number}.{extension}", segment.duration) for segment in source.plan
    ]
    return media_playlist(segments, map_uri=map_uri)


def _variant(source: Prepared, uri: str) -> Variant:
    movie = source.movie
    peak = max(
        sum(length for _, length in segment.ranges) * 8 / max(segment.duration, 0.001)
        for segment in source.plan
    )
    video = next((track for track in movie.tracks if track.kind == "video"), None)
    codecs = ",".join(track.codecs for track in movie.tracks if track.codecs)
    return Variant(
        uri,
        # MPEG-TS adds about a tenth in packet and PES headers.
        bandwidth=int(peak * 1.1) + 1,
        codecs=codecs,
        resolution=(video.width, video.height) if video is not None else None,
    )


async def _made(function: Callable[..., bytes], *args: object) -> bytes:
    """Remuxing is CPU work: off the event loop, and a remux failure is a one-line 502."""
    try:
        return await asyncio.to_thread(function, *args)
    except RemuxError as exc:
        raise UpstreamError(f"cannot segment the source: {exc}") from None
