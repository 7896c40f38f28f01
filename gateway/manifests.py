"""Rewritten playlists and MPDs, and how long each may be reused."""

from __future__ import annotations

import gzip
import hashlib
import time
from dataclasses import dataclass, field

from cachetools import TLRUCache

from gateway.answers import Answer, Conditions
from gateway.errors import UpstreamError, one_line
from gateway.fetcher import Manifest
from gateway.links import Links
from gateway.recent import put_newest
from gateway.settings import Settings
from gateway.signing import Grant
from gateway.sniff import DASH_TYPE, HLS_TYPE
from playlists import dash, hls
from playlists.errors import PlaylistError
from playlists.urls import directory_of

_DYNAMIC_MPD_TTL = 2.0
_IMMUTABLE_SECONDS = 86_400


@dataclass(slots=True)
class Rewritten:
    body: bytes
    content_type: str
    ttl: float
    etag: str
    # Live HLS only: how long this copy may stand in when upstream fails (one target duration).
    fallback_ttl: float = 0.0
    # A finished VOD media playlist never changes: caches in front may keep it for a day.
    immutable: bool = False
    _gzipped: bytes | None = field(default=None, repr=False, compare=False)
    # Its answers as a cached copy, per request conditions (`ProxyHandler`): made once.
    hit_answers: dict[Conditions, Answer] = field(default_factory=dict, repr=False, compare=False)

    def gzipped(self) -> bytes:
        """The body gzip-compressed, made on first use and kept with the copy."""
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped

    @property
    def cache_control(self) -> str:
        if self.immutable:
            return f"public, max-age={_IMMUTABLE_SECONDS}, immutable"
        seconds = int(self.ttl)
        return f"public, max-age={seconds}" if seconds > 0 else "no-cache"


class ManifestService:
    """Rewrites manifests for the URL they were requested under, and remembers the result."""

    def __init__(self, settings: Settings, links: Links) -> None:
        self._settings = settings
        self._links = links
        # Request key -> (monotonic expiry, copy). A plain dict, oldest insert evicted first:
        # this lookup is most of a cached playlist's cost, and an LRU's bookkeeping is not.
        self._fresh: dict[str, tuple[float, Rewritten]] = {}
        self._fresh_max = settings.playlist_cache_entries
        self._last_good: TLRUCache[str, Rewritten] = TLRUCache(
            maxsize=settings.playlist_cache_entries, ttu=_fallback_expiry
        )

    def cached(self, request_key: str) -> Rewritten | None:
        found = self._fresh.get(request_key)
        if found is None:
            return None
        if found[0] > time.monotonic():
            return found[1]
        del self._fresh[request_key]
        return None

    def clear(self) -> None:
        """Forget every rewritten copy (the next request of each is fetched again)."""
        self._fresh.clear()

    def fallback(self, request_key: str) -> Rewritten | None:
        """The last good copy of a live playlist, while it is younger than a target duration.

        A failed upstream reload then costs players nothing; an outage longer than that
        surfaces as the error, since an older playlist would only stall them.
        """
        return self._last_good.get(request_key)

    def rewrite(
        self,
        request_key: str,
        manifest: Manifest,
        *,
        grant: Grant,
        requested_url: str,
        request_rest: str,
        route: str = "",
    ) -> Rewritten:
        """`request_key` is the raw gateway path the client asked for (token, rest and query).

        `route` is empty for manifests served under `/p/<token>/`, whose relative URIs keep
        working; any other route (`/watch/`) gets every URI rewritten to lead to `/p/`.
        """
        # Relative URIs may stay as they are only if they still mean the same upstream URL,
        # i.e. no redirect moved the manifest to another directory.
        same_place = directory_of(manifest.final_url) == directory_of(requested_url)
        keep = grant.directory if same_place and not route else None
        make_ref = self._links.ref_maker(grant, request_rest, route=route)
        try:
            if manifest.kind == "hls":
                body = hls.rewrite(
                    manifest.body,
                    base_url=manifest.final_url,
                    keep_relative_inside=keep,
                    make_ref=make_ref,
                    directory_ref=make_ref.directory,
                )
                info = hls.inspect(manifest.body)
                ttl = self._hls_ttl(info)
                fallback_ttl = (info.target_duration or 2.0) if info.is_live else 0.0
                immutable = not info.is_master and info.has_endlist
                content_type = HLS_TYPE
            else:
                body = dash.rewrite_mpd(
                    manifest.body,
                    base_url=manifest.final_url,
                    keep_relative_inside=keep,
                    make_ref=make_ref,
                    max_bytes=self._settings.playlist_max_bytes,
                )
                ttl = self._dash_ttl(dash.inspect_mpd(manifest.body))
                fallback_ttl = 0.0
                immutable = False
                content_type = DASH_TYPE
        except PlaylistError as exc:
            raise UpstreamError(f"unusable manifest: {one_line(exc)}") from None
        rewritten = Rewritten(body, content_type, ttl, _etag(body), fallback_ttl, immutable)
        if ttl > 0:
            expiry = time.monotonic() + rewritten.ttl
            put_newest(self._fresh, request_key, (expiry, rewritten), self._fresh_max)
        if fallback_ttl > 0:
            self._last_good[request_key] = rewritten
        return rewritten

    def _hls_ttl(self, info: hls.PlaylistInfo) -> float:
        if not info.is_live:
            return self._settings.playlist_vod_ttl
        # A live playlist changes every target duration; half of it keeps players current.
        return max(0.5, (info.target_duration or 2.0) / 2)

    def _dash_ttl(self, info: dash.MpdInfo) -> float:
        if not info.is_dynamic:
            return self._settings.playlist_vod_ttl
        update = info.minimum_update_period
        return min(update, _DYNAMIC_MPD_TTL) if update is not None else _DYNAMIC_MPD_TTL


def _fallback_expiry(_key: str, value: Rewritten, now: float) -> float:
    return now + value.fallback_ttl


def _etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
