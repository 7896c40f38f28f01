"""A static MPD under `/s/<token>/`, served as HLS playlists over the MPD's own segments.

`index.m3u8` is the multivariant playlist and `<rendition>.m3u8` each media playlist (see
`playlists.dash_hls`). Segment and init URIs are ordinary `/p/<token>/<file>` references, so
segments share the proxy's cache, single-flight and Range handling with DASH players of the
same MPD. A SegmentBase rendition's `sidx` is fetched (one Range request, cached like any
byte range) when its media playlist is first written.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from cachetools import TTLCache

from gateway.errors import NotFound, UpstreamError
from gateway.fetcher import Fetcher, Manifest, MediaHead, Stored, Target
from gateway.links import Links
from gateway.settings import Settings
from gateway.signing import Grant
from playlists.dash_hls import (
    DashToHlsError,
    HlsPresentation,
    master_playlist,
    media_playlist,
    read_mpd,
    sidx_byte_range,
)
from playlists.urls import directory_of

MASTER = "index.m3u8"
_PLAYLIST_SUFFIX = ".m3u8"
_PRESENTATIONS = 256


class DashAsHls:
    def __init__(self, fetcher: Fetcher, links: Links, settings: Settings) -> None:
        self._fetcher = fetcher
        self._links = links
        self._settings = settings
        # A player asks for the master and then one playlist per rendition: one MPD fetch
        # and parse serves them all while the MPD is as fresh as a VOD playlist may be.
        self._presentations: TTLCache[tuple[str, tuple[tuple[str, str], ...]], HlsPresentation]
        self._presentations = TTLCache(_PRESENTATIONS, max(settings.playlist_vod_ttl, 0.001))

    async def render(self, grant: Grant, rest: str) -> bytes:
        """The playlist `rest` names under the `/s/` token that carries `grant`."""
        if rest != MASTER and not rest.endswith(_PLAYLIST_SUFFIX):
            raise NotFound("no such file in this presentation")
        presentation = await self._presentation(grant)
        try:
            if rest == MASTER:
                text = master_playlist(presentation, lambda r: r.name + _PLAYLIST_SUFFIX)
            else:
                text = await self._media(grant, presentation, rest)
        except DashToHlsError as exc:
            raise UpstreamError(str(exc), 502) from None
        return text.encode("utf-8")

    async def _media(self, grant: Grant, presentation: HlsPresentation, rest: str) -> str:
        name = rest.removesuffix(_PLAYLIST_SUFFIX)
        try:
            index = sidx_byte_range(presentation, name)
        except KeyError:
            raise NotFound("no such rendition in this presentation") from None
        sidx = await self._read_range(grant, *index) if index is not None else None
        # From /s/<token>/<rest>, "../" leads to /s/ and "../p/" on to the proxy's route.
        make_ref = self._links.ref_maker(grant, playlist_rest=rest, route="../p/")
        return media_playlist(presentation, name, make_ref, sidx)

    async def _presentation(self, grant: Grant) -> HlsPresentation:
        key = (grant.directory, grant.headers)
        known = self._presentations.get(key)
        if known is not None:
            return known
        mpd_url = grant.directory
        joined = await self._fetcher.join(Target(_plain(grant, mpd_url), mpd_url))
        try:
            head = joined.head
        finally:
            joined.release()
        if not isinstance(head, Manifest) or head.kind != "dash":
            raise UpstreamError("the source is not a DASH MPD", 502)
        try:
            presentation = read_mpd(
                head.body, head.final_url, max_bytes=self._settings.playlist_max_bytes
            )
        except DashToHlsError as exc:
            raise UpstreamError(str(exc), 502) from None
        self._presentations[key] = presentation
        return presentation

    async def _read_range(self, grant: Grant, url: str, first: int, last: int) -> bytes:
        """Bytes `first`..`last` of `url`, through the fetcher (and so the segment cache)."""
        length = last - first + 1
        limit = self._settings.playlist_max_bytes
        if length > limit:
            raise UpstreamError(f"a segment index larger than {limit} bytes", 502)
        target = Target(_plain(grant, url), url, range_header=f"bytes={first}-{last}")
        joined = await self._fetcher.join(target)
        try:
            head = joined.head
            if isinstance(head, Stored):
                ranged = head.entry.status == 206
                return await asyncio.to_thread(
                    _read_file, head.path, 0 if ranged else first, length
                )
            if isinstance(head, Manifest):
                raise UpstreamError("a segment index that is a playlist", 502)
            fill = joined.flight.fill
            assert isinstance(head, MediaHead) and fill is not None
            # An origin without Range support sends the whole file: skip to the range.
            skip = 0 if head.status == 206 else first
            data = bytearray()
            async with contextlib.aclosing(fill.read_from(0)) as chunks:
                async for chunk in chunks:
                    data += chunk
                    if len(data) >= skip + length:
                        break
            return bytes(data[skip : skip + length])
        finally:
            joined.release()


def _plain(grant: Grant, url: str) -> Grant:
    """The ordinary directory grant the fetcher takes for `url`."""
    return Grant(directory_of(url), grant.headers, grant.expires)


def _read_file(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(length)
